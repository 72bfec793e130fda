//! A split virtqueue (`keel_virtio::queue`) over guest RAM the guest wrote as it liked: whatever
//! the bytes and the queue's placement, popping and using chains never panics or loops, and
//! every chain accepted lies inside RAM, within the length limits, readable buffers first.
//!
//! Input: byte 0 the queue size's log2 (mod 16), byte 1 the features (bit 0 INDIRECT_DESC, bit 1
//! EVENT_IDX), bytes 2-7 the descriptor table, available ring and used ring offsets (in 16-, 2-
//! and 4-byte units, little-endian u16); the rest is the guest's RAM at 0x4000_0000.
#![no_main]

use keel_virtio::features::{EVENT_IDX, INDIRECT_DESC};
use keel_virtio::mem::{GuestMemory, Ram};
use keel_virtio::queue::{MAX_INDIRECT, Queue};
use libfuzzer_sys::fuzz_target;

const BASE: u64 = 0x4000_0000;

fuzz_target!(|bytes: &[u8]| {
    if bytes.len() < 8 {
        return;
    }
    let word = |i: usize| u64::from(u16::from_le_bytes([bytes[i], bytes[i + 1]]));
    let mut q = Queue::new(1 << 15);
    q.size = 1 << (bytes[0] % 16);
    let features = if bytes[1] & 1 != 0 { INDIRECT_DESC } else { 0 } | if bytes[1] & 2 != 0 { EVENT_IDX } else { 0 };
    (q.desc, q.avail, q.used) = (BASE + 16 * word(2), BASE + 2 * word(4), BASE + 4 * word(6));
    let mut mem = Ram::new(BASE, bytes[8..].to_vec());
    if q.enable(&mem, features).is_err() {
        return;
    }
    let limit = usize::from(q.size).max(MAX_INDIRECT as usize);
    for _ in 0..64 {
        let Ok(Some(chain)) = q.pop(&mut mem) else { return };
        assert!(!chain.descriptors.is_empty() && chain.descriptors.len() <= limit, "chain of {}", chain.descriptors.len());
        assert!(chain.head < q.size);
        let mut seen_writable = false;
        let mut total = 0u64;
        for d in &chain.descriptors {
            assert!(mem.contains(d.addr, u64::from(d.len)), "{d:?} outside RAM");
            assert!(d.writable || !seen_writable, "readable after writable");
            seen_writable |= d.writable;
            total += u64::from(d.len);
        }
        assert!(total <= u64::from(u32::MAX));
        let mut buf = [0u8; 64];
        let n = chain.read_at(&mem, 0, &mut buf).expect("a checked chain reads");
        assert!(n as u64 <= chain.readable_len());
        let w = chain.write_at(&mut mem, 0, &buf[..n]).expect("a checked chain writes");
        assert!(w as u64 <= chain.writable_len());
        if q.add_used(&mut mem, chain.head, w as u32).is_err() || q.needs_interrupt(&mem).is_err() {
            return;
        }
    }
});
