//! The VM list a restarted monitor reads back from init (`keel_vmm::saved`): any bytes decode to
//! a list or an error, and a decoded list encodes back to the same bytes.
#![no_main]

use keel_vmm::saved::{MAX_VMS, SavedList};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(list) = SavedList::decode(data) {
        assert!(list.vms.len() as u32 <= MAX_VMS);
        if !data.is_empty() {
            assert_eq!(list.encode(), data, "a decoded list does not encode back to its bytes");
        }
    }
});
