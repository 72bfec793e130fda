//! The file service's request decoder and dispatcher (`keel_fs::server`): a sequence of
//! arbitrary requests from two sessions against a tmpfs root. Every reply is label 0 or a
//! negative errno, its payload fits the bulk buffer, and records it returns decode.
#![no_main]

use keel_fs::server::{Disks, Server};
use keel_fs::node::FileSystem;
use keel_fs::tmpfs::Tmpfs;
use keel_fs::vfs::Vfs;
use keel_fs::Errno;
use keel_rt::abi::ipc::Message;
use keel_rt::ipc::BULK_SIZE;
use keel_rt::proto::fs as p;
use libfuzzer_sys::fuzz_target;

/// No disks: MOUNT gets ENOENT, which is a reply like any other.
struct NoDisks;
impl Disks for NoDisks {
    fn attach(&mut self, _device: &str, _read_only: bool) -> Result<Box<dyn FileSystem>, Errno> {
        Err(Errno::NoEnt)
    }
}

/// Takes `n` bytes (fewer at the end of the input).
fn take<'a>(input: &mut &'a [u8], n: usize) -> &'a [u8] {
    let (head, tail) = input.split_at(n.min(input.len()));
    *input = tail;
    head
}

/// A data word: mostly small (descriptors, modes, flags, lengths), sometimes any value.
fn word(input: &mut &[u8]) -> u64 {
    let b = take(input, 1).first().copied().unwrap_or(0);
    match b >> 6 {
        0 | 1 => (b & 0x7f) as u64,
        2 => {
            let t = take(input, 2);
            let mut a = [0u8; 2];
            a[..t.len()].copy_from_slice(t);
            u16::from_le_bytes(a) as u64
        }
        _ => {
            let t = take(input, 8);
            let mut a = [0u8; 8];
            a[..t.len()].copy_from_slice(t);
            u64::from_le_bytes(a)
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let mut input = data;
    let mut server = Server::new(Vfs::new(Box::new(Tmpfs::new(1 << 20, 256)), "rootfs"), NoDisks);
    let mut out = Vec::new();
    for _ in 0..64 {
        if input.is_empty() {
            break;
        }
        let head = take(&mut input, 2);
        let label = head[0] as u64 % 48;
        let sid = 1 + (head.get(1).copied().unwrap_or(0) & 1) as u64;
        let words = [word(&mut input), word(&mut input), word(&mut input), word(&mut input)];
        let plen = take(&mut input, 1).first().copied().unwrap_or(0) as usize;
        let payload = take(&mut input, plen);
        let reply = server.handle(sid, &Message::new(label, words), payload, &mut out);
        let l = reply.label as i64;
        assert!(l == 0 || (-4095..0).contains(&l), "label {label}: reply label {:#x}", reply.label);
        assert!(out.len() <= BULK_SIZE as usize, "label {label}: {} payload bytes", out.len());
        if l != 0 {
            assert!(out.is_empty(), "label {label}: an error reply with a payload");
            continue;
        }
        match label {
            p::STAT | p::FSTAT => {
                assert!(p::Stat::decode(&out).is_some(), "label {label}: stat record does not decode")
            }
            p::STATFS => assert!(p::StatFs::decode(&out).is_some(), "statfs record does not decode"),
            p::READ | p::PREAD => {
                assert_eq!(reply.data[3] as usize, out.len());
                assert!(out.len() as u64 <= words[1], "read returned more than asked");
            }
            p::READDIR => check_entries(&out),
            _ => {}
        }
    }
    let _ = server.shutdown();
});

/// READDIR's payload is a whole number of entries, each `ino, kind, len, name`.
fn check_entries(mut b: &[u8]) {
    while !b.is_empty() {
        assert!(b.len() >= p::ENTRY_HEADER, "truncated entry header");
        let len = b[9] as usize;
        assert!(b.len() >= p::ENTRY_HEADER + len, "truncated entry name");
        assert!(core::str::from_utf8(&b[p::ENTRY_HEADER..p::ENTRY_HEADER + len]).is_ok(), "entry name not UTF-8");
        b = &b[p::ENTRY_HEADER + len..];
    }
}
