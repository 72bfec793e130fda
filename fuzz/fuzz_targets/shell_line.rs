//! The shell's line parser (`keel_shell::command`): any line decodes or gets a usage error, and
//! the words `split_words` finds, quoted again, split back to the same words.
#![no_main]

use keel_shell::command::{parse, split_words};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(line) = core::str::from_utf8(data) else { return };
    let parsed = parse(line);
    let Ok(words) = split_words(line) else {
        assert!(parsed.is_err(), "parse accepted a line split_words refused");
        return;
    };
    if let Err(e) = &parsed
        && !line.contains(['\n', '\r'])
    {
        // Every refusal of a line (the console ends lines at CR or LF) is one line.
        assert!(!e.to_string().contains('\n'), "multi-line error {e}");
    }
    // Quote each word with the quote it does not contain, and split again.
    let mut quoted = String::new();
    for w in &words {
        let q = if w.contains('\'') { '"' } else { '\'' };
        if w.contains(q) {
            return; // a word with both quotes cannot be written back
        }
        quoted.push(q);
        quoted.push_str(w);
        quoted.push(q);
        quoted.push(' ');
    }
    assert_eq!(split_words(&quoted).as_ref(), Ok(&words), "requoted {quoted:?}");
});
