//! The guest's command line (`/chosen/bootargs`): which scenario to run and the few flags the
//! scenarios read. Words are separated by ASCII whitespace; nothing here allocates.

/// The scenario named by the first word that starts with `guest=`, if any.
pub fn scenario(bootargs: &str) -> Option<&str> {
    bootargs
        .split_ascii_whitespace()
        .find_map(|word| word.strip_prefix("guest="))
}

/// Whether `flag` appears as a whole word.
pub fn has_flag(bootargs: &str, flag: &str) -> bool {
    bootargs.split_ascii_whitespace().any(|word| word == flag)
}

/// The number in the word `<key>=<n>` (the first such word); None when absent or not a number.
pub fn number(bootargs: &str, key: &str) -> Option<u64> {
    bootargs
        .split_ascii_whitespace()
        .find_map(|word| word.strip_prefix(key)?.strip_prefix('='))
        .and_then(|n| n.parse().ok())
}

/// `guest.ops=<n>`: how many operations a scenario that counts them (`hostile`) makes.
pub const OPS: &str = "guest.ops";

/// `guest.plain`: running on plain QEMU (no Keel, no VM monitor). Scenarios then accept the
/// answers QEMU gives where Keel's would differ, and say so.
pub const PLAIN: &str = "guest.plain";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_guest_word_names_the_scenario() {
        assert_eq!(scenario("console=ttyAMA0 guest=hvc guest=smp"), Some("hvc"));
        assert_eq!(scenario("guest=timer"), Some("timer"));
        assert_eq!(scenario("  guest=\tguest=wfi"), Some(""));
    }

    #[test]
    fn no_guest_word_means_no_scenario() {
        assert_eq!(scenario(""), None);
        assert_eq!(scenario("guest.plain guesthvc xguest=hvc"), None);
    }

    #[test]
    fn numbers_are_read_from_their_word() {
        assert_eq!(number("guest=hostile guest.ops=1000000", OPS), Some(1_000_000));
        assert_eq!(number("guest.ops=5 guest.ops=7", OPS), Some(5));
        assert_eq!(number("guest=hostile", OPS), None);
        assert_eq!(number("guest.ops=lots", OPS), None);
        assert_eq!(number("guest.opsx=3 guest.ops", OPS), None);
    }

    #[test]
    fn flags_match_whole_words_only() {
        assert!(has_flag("guest=hvc guest.plain", PLAIN));
        assert!(!has_flag("guest=hvc guest.plainer", PLAIN));
        assert!(!has_flag("", PLAIN));
    }
}
