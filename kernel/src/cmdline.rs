//! The kernel command line (`/chosen/bootargs`): space-separated `key=value` words and flags.
//!
//! Keel reads `loglevel=` (error, warn, info, debug, trace) and `scenario=` (which boot scenario
//! to run). Unknown words are ignored: they may be meant for a guest or a service.

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

    /// The log level from `loglevel=`, or `default` when absent or not a level name.
    pub fn log_level(&self, default: log::LevelFilter) -> log::LevelFilter {
        match self.value("loglevel") {
            Some("off") => log::LevelFilter::Off,
            Some("error") => log::LevelFilter::Error,
            Some("warn") => log::LevelFilter::Warn,
            Some("info") => log::LevelFilter::Info,
            Some("debug") => log::LevelFilter::Debug,
            Some("trace") => log::LevelFilter::Trace,
            _ => default,
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
        assert_eq!(c.log_level(LevelFilter::Info), LevelFilter::Debug);
    }

    #[test]
    fn bad_or_missing_log_level_falls_back_to_default() {
        assert_eq!(CommandLine::new("loglevel=loud").log_level(LevelFilter::Info), LevelFilter::Info);
        assert_eq!(CommandLine::new("").log_level(LevelFilter::Warn), LevelFilter::Warn);
        assert_eq!(CommandLine::new("loglevel=").log_level(LevelFilter::Warn), LevelFilter::Warn);
    }

    #[test]
    fn first_occurrence_wins() {
        let c = CommandLine::new("scenario=a scenario=b");
        assert_eq!(c.value("scenario"), Some("a"));
    }
}
