//! The kernel's DTB reader (`keel_platform::dtb`): any blob is refused or yields a machine whose
//! values respect what `Machine` documents.
#![no_main]

use keel_platform::dtb::{Machine, dtb_total_size};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|blob: &[u8]| {
    let Ok(m) = Machine::from_dtb(blob) else { return };
    // Only the header's totalsize bytes were looked at, and they were all there.
    assert_eq!(dtb_total_size(blob), Ok(m.dtb_size));
    assert!(m.dtb_size <= blob.len());
    // Every region is non-empty and does not wrap.
    for r in m.memory.iter().chain(m.reserved.iter()) {
        assert!(r.size > 0, "empty region {r:?}");
        assert!(r.base.checked_add(r.size).is_some(), "wrapping region {r:?}");
    }
    if let Some(i) = m.initrd {
        assert!(i.size > 0, "empty initrd {i:?}");
    }
    // Transports are sorted by base address.
    assert!(m.virtio_mmio.as_slice().windows(2).all(|w| w[0].region.base <= w[1].region.base), "virtio-mmio not sorted");
    // Parsing is a pure function of the bytes.
    let again = Machine::from_dtb(blob).expect("second parse of an accepted DTB failed");
    assert_eq!(format!("{again:?}"), format!("{m:?}"));
});
