//! The block service's request decoder (`keel_blk::protocol::decode`): a command it accepts
//! names whole sectors inside the disk, fits the caller's bulk buffer, and never writes (or
//! opens for writing) a read-only disk.
#![no_main]

use keel_blk::protocol::{Command, Disk, decode};
use keel_rt::proto::blk;
use libfuzzer_sys::fuzz_target;

fn u64_at(b: &[u8], i: usize) -> u64 {
    let mut a = [0u8; 8];
    if let Some(s) = b.get(i * 8..) {
        let n = s.len().min(8);
        a[..n].copy_from_slice(&s[..n]);
    }
    u64::from_le_bytes(a)
}

fuzz_target!(|b: &[u8]| {
    let label = u64_at(b, 0) % 8;
    let data = [u64_at(b, 1), u64_at(b, 2), u64_at(b, 3), u64_at(b, 4)];
    let flags = u64_at(b, 5);
    let bulk = (flags & 1 == 1).then_some((u64_at(b, 6) % (2 * blk::MAX_SECTORS * 512 + 1)) as usize);
    let disk = Disk { capacity: u64_at(b, 7), read_only: flags & 2 == 2 };
    let Ok(cmd) = decode(label, data, bulk, disk) else { return };
    match cmd {
        Command::Info => assert_eq!(label, blk::INFO),
        Command::Flush => assert_eq!(label, blk::FLUSH),
        Command::OpenWrite => {
            assert_eq!(label, blk::OPEN_WRITE);
            assert!(!disk.read_only, "a read-only disk opened for writing");
        }
        Command::Release => assert_eq!(label, blk::RELEASE),
        Command::Read { sector, count } | Command::Write { sector, count } => {
            assert!(count >= 1 && count <= blk::MAX_SECTORS, "{cmd:?}: bad count");
            assert!(sector.checked_add(count).is_some_and(|end| end <= disk.capacity), "{cmd:?} past a disk of {} sectors", disk.capacity);
            let bulk = bulk.expect("a transfer without a bulk buffer");
            assert!(count as usize * 512 <= bulk, "{cmd:?} does not fit a {bulk}-byte buffer");
            if let Command::Write { .. } = cmd {
                assert_eq!(label, blk::WRITE);
                assert!(!disk.read_only, "write to a read-only disk accepted");
                assert_eq!(data[3], count * 512, "sector count disagrees with the payload");
            } else {
                assert_eq!(label, blk::READ);
            }
        }
    }
});
