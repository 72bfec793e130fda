//! The initrd reader (`keel_formats::cpio`): whatever the bytes, iteration ends; the members it
//! accepts, written back with the crate's writer, read back the same.
#![no_main]

use keel_formats::cpio::{Archive, is_regular, write_newc};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    let Ok(archive) = Archive::new(bytes) else { return };
    let mut members = Vec::new();
    for entry in archive.entries() {
        match entry {
            Ok(e) => members.push(e),
            Err(_) => return,
        }
    }
    for e in &members {
        // `find`: the last member of a name decides, and only a regular file is found.
        let last = members.iter().rev().find(|m| m.name == e.name).copied().filter(|m| is_regular(m.mode));
        assert_eq!(archive.find(e.name), Ok(last), "find({:?}) disagrees with entries()", e.name);
    }
    let triples: Vec<(&str, u32, &[u8])> = members.iter().map(|e| (e.name, e.mode, e.data)).collect();
    let written = write_newc(&triples);
    let reread = Archive::new(&written).expect("writer's archive refused");
    let back: Vec<_> = reread.entries().collect::<Result<_, _>>().expect("writer's member refused");
    assert_eq!(back, members, "cpio round trip changed the members");
});
