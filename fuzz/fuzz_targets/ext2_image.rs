//! Mounts, walks, changes and unmounts an arbitrary ext2 image: it must never panic or hang.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|image: &[u8]| {
    keel_fs::ext2::check::exercise(image);
});
