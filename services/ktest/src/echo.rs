//! The protocol between the ktest scenarios and the `ipc-server` helper process.
//!
//! A call whose label is below [`ECHO_LABELS`] is an echo: the reply's label is the label plus
//! one and each data word is rotated and xored with the caller's badge ([`reply_to`]), so the
//! client checks every word of every reply and that the kernel delivered the right badge.
//! The other labels exercise capability transfer; their layouts are documented on each label.
//! A reply to a control label carries 0 or a negative error code in its label.

use alloc::vec::Vec;
use keel_rt::abi::ipc::Message;

/// Labels below this are echoes.
pub const ECHO_LABELS: u64 = 1 << 32;

/// caps: [a PMO]; data[0] = bytes to sum from offset 0. Reply data: [FNV-1a of the bytes (read
/// with `pmo_read`), rights of the received cap, its object kind, result of a one-byte
/// `pmo_write` into it (0 or a negative error code)].
pub const PMO_SUM: u64 = 0x4b54_0000_0000_0001;
/// Reply caps: [a notification the server keeps, with rights SIGNAL | GRANT]. Replaces the
/// notification an earlier call created.
pub const GIVE_NOTIF: u64 = 0x4b54_0000_0000_0002;
/// data[0] = timeout in ns. The server waits on its notification; reply data[0] = the bits.
pub const WAIT_NOTIF: u64 = 0x4b54_0000_0000_0003;
/// Reply data[0] = calls this server received so far, this one included; data[1] = of them,
/// calls that carried capabilities.
pub const COUNT: u64 = 0x4b54_0000_0000_0004;
/// The server thread never replies (it sleeps until its process dies): the caller stays blocked
/// in its call, to check that the server's death ends the call with `PeerDied`.
pub const HOLD: u64 = 0x4b54_0000_0000_0005;

/// The echo reply to `msg` from a client whose capability carries `badge`.
pub fn reply_to(msg: &Message, badge: u64) -> Message {
    let mut data = [0; 4];
    for (i, (out, w)) in data.iter_mut().zip(msg.data).enumerate() {
        *out = w.rotate_left(8 * i as u32 + 7) ^ badge ^ (i as u64 + 1);
    }
    Message::new(msg.label + 1, data)
}

/// A well-mixed 64-bit value of `x` (splitmix64's finaliser).
pub fn mix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The `seq`th echo request of client `client`: distinct data for every client and call.
pub fn request(client: u64, seq: u64) -> Message {
    let base = (client << 40) ^ (seq << 2);
    let data = [mix(base), mix(base + 1), mix(base + 2), mix(base + 3)];
    Message::new(seq % ECHO_LABELS, data)
}

/// FNV-1a, 64 bits.
pub fn checksum(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3))
}

/// `len` bytes of a pattern that depends on `seed`.
pub fn pattern(len: usize, seed: u64) -> Vec<u8> {
    (0..len).map(|i| (mix(seed ^ (i as u64 / 8)) >> (8 * (i % 8))) as u8).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn echo_replies_change_every_word_and_depend_on_the_badge() {
        let m = request(3, 17);
        let r = reply_to(&m, 0x55);
        assert_eq!(r.label, m.label + 1);
        for i in 0..4 {
            assert_ne!(r.data[i], m.data[i]);
        }
        assert_ne!(reply_to(&m, 0x56).data, r.data);
        // A reply for other data is different in the words that differ.
        let mut other = m;
        other.data[2] ^= 1;
        let r2 = reply_to(&other, 0x55);
        assert_eq!(r2.data[..2], r.data[..2]);
        assert_ne!(r2.data[2], r.data[2]);
    }

    #[test]
    fn requests_are_distinct_across_clients_and_calls() {
        let mut seen = std::collections::HashSet::new();
        for client in 0..4 {
            for seq in 0..1000 {
                let m = request(client, seq);
                assert!(m.label < ECHO_LABELS);
                for w in m.data {
                    assert!(seen.insert(w), "word repeated: client {client} seq {seq}");
                }
            }
        }
    }

    #[test]
    fn control_labels_are_not_echoes() {
        for l in [PMO_SUM, GIVE_NOTIF, WAIT_NOTIF, COUNT, HOLD] {
            assert!(l >= ECHO_LABELS);
        }
    }

    #[test]
    fn checksum_is_fnv1a() {
        assert_eq!(checksum(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(checksum(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_ne!(checksum(&pattern(4096, 1)), checksum(&pattern(4096, 2)));
        assert_eq!(pattern(100, 9), pattern(100, 9));
    }
}
