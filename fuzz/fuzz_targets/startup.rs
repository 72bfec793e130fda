//! The startup block every process reads at entry (`keel_formats::startup`) and the
//! `initrd=<offset>:<size>` argument: parse, render, parse gives the same block.
#![no_main]

use keel_formats::startup::{Startup, parse_initrd_arg};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = core::str::from_utf8(data) else { return };
    if let Ok(s) = Startup::parse(text) {
        let rendered = s.render();
        assert_eq!(Startup::parse(&rendered), Ok(s.clone()), "render/parse round trip of {rendered:?}");
        for a in &s.args {
            if let Some(v) = a.strip_prefix("initrd=") {
                check_initrd(v);
            }
        }
    }
    check_initrd(text);
});

fn check_initrd(value: &str) {
    if let Some((offset, size)) = parse_initrd_arg(value) {
        let canonical = format!("{offset:#x}:{size:#x}");
        assert_eq!(parse_initrd_arg(&canonical), Some((offset, size)), "{value:?} -> {canonical:?}");
    }
}
