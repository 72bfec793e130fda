//! The kernel command line (`keel_kernel::cmdline::CommandLine`, `/chosen/bootargs` from the
//! DTB): words, flags and `key=value` look-ups agree with one another.
#![no_main]

use keel_kernel::cmdline::CommandLine;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = core::str::from_utf8(data) else { return };
    let c = CommandLine::new(text);
    let words: Vec<&str> = c.words().collect();
    for w in &words {
        assert!(!w.is_empty() && !w.contains(|ch: char| ch.is_ascii_whitespace()), "word {w:?}");
        assert!(c.has_flag(w), "word {w:?} not found as a flag");
        if let Some((k, _)) = w.split_once('=') {
            // The first word with this key gives the value.
            let first = words.iter().find_map(|x| x.split_once('=').filter(|(xk, _)| *xk == k).map(|(_, v)| v));
            assert_eq!(c.value(k), first, "value({k:?})");
        }
    }
});
