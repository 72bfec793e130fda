//! Checks of keel-mem's `memcpy`, `memmove` and `memset` (the kernel runs the same code): every
//! length to 300 bytes at every source and destination alignment to 16, overlapping moves in
//! both directions (offsets to 24 apart), fills of varied byte values; against byte-by-byte references. The
//! bytes around each destination must stay as they were.

use crate::check::Checks;
use alloc::format;
use alloc::vec;

const MAX_LEN: usize = 300;
const ALIGNS: usize = 16;
const GUARD: usize = 32;

fn pattern(i: usize) -> u8 {
    (i.wrapping_mul(131) ^ (i >> 3)) as u8
}

pub fn run(c: &mut Checks) {
    let src: alloc::vec::Vec<u8> = (0..MAX_LEN + ALIGNS + 2 * GUARD).map(pattern).collect();
    let mut bad = None;
    'copy: for len in 0..=MAX_LEN {
        for s in 0..ALIGNS {
            for d in 0..ALIGNS {
                let mut dst = vec![0xA5u8; MAX_LEN + ALIGNS + 2 * GUARD];
                let at = GUARD + d;
                dst[at..at + len].copy_from_slice(&src[s..s + len]);
                let ok = dst[..at].iter().all(|&b| b == 0xA5)
                    && dst[at..at + len] == src[s..s + len]
                    && dst[at + len..].iter().all(|&b| b == 0xA5);
                if !ok {
                    bad = Some(format!("memcpy of {len} bytes from offset {s} to offset {d}"));
                    break 'copy;
                }
            }
        }
    }
    c.check(bad.is_none(), || format!("{} went wrong", bad.clone().unwrap_or_default()));

    let mut bad = None;
    'moves: for len in 0..=MAX_LEN / 2 {
        for from in 0..ALIGNS + 8 {
            for to in 0..ALIGNS + 8 {
                let mut buf: alloc::vec::Vec<u8> = (0..MAX_LEN + 4 * ALIGNS).map(pattern).collect();
                let mut want = buf.clone();
                // From the untouched `buf`: as if through a temporary, which memmove promises.
                for i in 0..len {
                    want[to + i] = buf[from + i];
                }
                buf.copy_within(from..from + len, to);
                if buf != want {
                    bad = Some(format!("memmove of {len} bytes from offset {from} to offset {to}"));
                    break 'moves;
                }
            }
        }
    }
    c.check(bad.is_none(), || format!("{} went wrong", bad.clone().unwrap_or_default()));

    let mut bad = None;
    'fill: for len in 0..=MAX_LEN {
        for d in 0..ALIGNS {
            let value = pattern(len + d) | 0x81;
            let mut dst = vec![0x5Au8; MAX_LEN + ALIGNS + 2 * GUARD];
            let at = GUARD + d;
            dst[at..at + len].fill(value);
            let ok = dst[..at].iter().all(|&b| b == 0x5A)
                && dst[at..at + len].iter().all(|&b| b == value)
                && dst[at + len..].iter().all(|&b| b == 0x5A);
            if !ok {
                bad = Some(format!("memset of {len} bytes of {value:#x} at offset {d}"));
                break 'fill;
            }
        }
    }
    c.check(bad.is_none(), || format!("{} went wrong", bad.clone().unwrap_or_default()));
}
