//! The VM monitor's arm64 `Image` header decoder (`keel_vmm::image::ImageHeader::parse`): the
//! guest kernel file is outside input. Decoding is pure and looks only at the header.
#![no_main]

use keel_vmm::image::ImageHeader;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|kernel: &[u8]| {
    let Ok(h) = ImageHeader::parse(kernel) else { return };
    // Only the 64-byte header decides.
    let again = ImageHeader::parse(&kernel[..64]).expect("the header alone was refused");
    assert_eq!(format!("{again:?}"), format!("{h:?}"));
});
