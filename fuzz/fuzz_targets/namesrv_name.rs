//! namesrv's request decoder (`keel_rt::proto::unpack_name`, the only thing namesrv reads from a
//! REGISTER or LOOKUP message): a name it accepts packs back to the same four words, and any
//! string `pack_name` accepts unpacks to itself.
#![no_main]

use keel_rt::proto::{pack_name, unpack_name};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut words = [0u64; 4];
    for (i, w) in words.iter_mut().enumerate() {
        let mut a = [0u8; 8];
        if let Some(s) = data.get(i * 8..) {
            let n = s.len().min(8);
            a[..n].copy_from_slice(&s[..n]);
        }
        *w = u64::from_le_bytes(a);
    }
    if let Ok(name) = unpack_name(&words) {
        assert_eq!(pack_name(&name), Ok(words), "name {name:?} packs differently");
    }
    if let Ok(text) = core::str::from_utf8(data) {
        if let Ok(w) = pack_name(text) {
            assert_eq!(unpack_name(&w).as_deref(), Ok(text), "pack/unpack of {text:?}");
        }
    }
});
