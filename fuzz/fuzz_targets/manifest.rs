//! The boot manifest (`keel_formats::manifest`): any text is refused with a line inside the text,
//! or gives services with unique, bounded names and absolute paths.
#![no_main]

use keel_formats::manifest::{MAX_NAME_LEN, parse};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = core::str::from_utf8(data) else { return };
    match parse(text) {
        Err(e) => assert!(e.line >= 1 && e.line <= text.lines().count(), "error line {} outside the text", e.line),
        Ok(specs) => {
            for (i, s) in specs.iter().enumerate() {
                assert!(!s.name.is_empty() && s.name.len() <= MAX_NAME_LEN, "bad name {:?}", s.name);
                assert!(specs[..i].iter().all(|o| o.name != s.name), "duplicate name {:?}", s.name);
                assert!(s.path.starts_with('/'), "relative path {:?}", s.path);
            }
        }
    }
});
