//! The kernel command line (`/chosen/bootargs`): space-separated `key=value` words and flags.
//!
//! Keel reads `loglevel=` (off, error, warn, info, debug, trace; another word is refused with a
//! message at boot) and `scenario=` (which boot scenario to run). Unknown words are ignored: they may be meant for a guest or a service.

/// A parsed view of the command line; borrows the DTB's string.
#[derive(Clone, Copy, Debug)]
pub struct CommandLine<'a> {
    text: &'a str,
}

impl<'a> CommandLine<'a> {
    pub fn new(text: &'a str) -> Self {
        Self { text }
    }

    /// The value of the first `key=value` word, if any.
    pub fn value(&self, key: &str) -> Option<&'a str> {
        self.text.split_ascii_whitespace().find_map(|word| {
            let (k, v) = word.split_once('=')?;
            (k == key).then_some(v)
        })
    }

    /// Every word, in order.
    pub fn words(&self) -> impl Iterator<Item = &'a str> {
        self.text.split_ascii_whitespace()
    }

    /// Whether the bare word `flag` is present.
    pub fn has_flag(&self, flag: &str) -> bool {
        self.text.split_ascii_whitespace().any(|w| w == flag)
    }

    /// The log level from `loglevel=`: `default` when absent, `Err(word)` when the value is no
    /// level name (the caller says so and uses the default).
    pub fn log_level(&self, default: log::LevelFilter) -> Result<log::LevelFilter, &'a str> {
        match self.value("loglevel") {
            None => Ok(default),
            Some("off") => Ok(log::LevelFilter::Off),
            Some("error") => Ok(log::LevelFilter::Error),
            Some("warn") => Ok(log::LevelFilter::Warn),
            Some("info") => Ok(log::LevelFilter::Info),
            Some("debug") => Ok(log::LevelFilter::Debug),
            Some("trace") => Ok(log::LevelFilter::Trace),
            Some(other) => Err(other),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use log::LevelFilter;

    #[test]
    fn finds_values_and_flags_among_other_words() {
        let c = CommandLine::new("console=ttyAMA0  loglevel=debug scenario=smp quiet");
        assert_eq!(c.value("scenario"), Some("smp"));
        assert_eq!(c.value("console"), Some("ttyAMA0"));
        assert_eq!(c.value("missing"), None);
        assert!(c.has_flag("quiet"));
        assert!(!c.has_flag("loglevel"));
        assert_eq!(c.log_level(LevelFilter::Info), Ok(LevelFilter::Debug));
    }

    #[test]
    fn every_level_is_known_and_other_words_are_refused() {
        for (word, level) in [("off", LevelFilter::Off), ("error", LevelFilter::Error), ("warn", LevelFilter::Warn), ("info", LevelFilter::Info), ("debug", LevelFilter::Debug), ("trace", LevelFilter::Trace)] {
            assert_eq!(CommandLine::new(&alloc::format!("loglevel={word}")).log_level(LevelFilter::Info), Ok(level));
        }
        assert_eq!(CommandLine::new("loglevel=loud").log_level(LevelFilter::Info), Err("loud"));
        assert_eq!(CommandLine::new("loglevel=").log_level(LevelFilter::Warn), Err(""));
        assert_eq!(CommandLine::new("").log_level(LevelFilter::Warn), Ok(LevelFilter::Warn));
    }

    #[test]
    fn first_occurrence_wins() {
        let c = CommandLine::new("scenario=a scenario=b");
        assert_eq!(c.value("scenario"), Some("a"));
    }
}
