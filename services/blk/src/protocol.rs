//! The server side of the `blk` IPC protocol (`keel_rt::proto::blk`): every call is decoded into
//! a checked [`Command`] first (no side effects; an errno for anything malformed), then carried
//! out on the device. Replies carry errors as negative errno labels.
//!
//! One writer per disk ([`WriteClaim`]): the client that opened the disk for writing (fs when
//! it mounts it) is the only one whose WRITEs go through until it releases it or exits; every
//! other client may still read. So a test or a second file system can never write under a
//! mounted file system.

use crate::device::{BlkDevice, Interrupt};
use crate::dma::DmaMemory;
use crate::regs::Registers;
use crate::request::SECTOR;
use alloc::vec::Vec;
use keel_rt::abi::ipc::Message;
use keel_rt::errno::Errno;
use keel_rt::ipc::{LABEL_CLIENT_GONE, Reply, Request};
use keel_rt::proto::{blk, errno_label};

/// A decoded, checked call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Command {
    Info,
    /// `count` sectors from `sector` into the bulk buffer.
    Read { sector: u64, count: u64 },
    /// `count` sectors from the bulk buffer to `sector`.
    Write { sector: u64, count: u64 },
    Flush,
    OpenWrite,
    Release,
}

/// Which client (badge) may write the disk. Pure bookkeeping, tested on the host.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WriteClaim {
    writer: Option<u64>,
}

impl WriteClaim {
    pub fn writer(&self) -> Option<u64> {
        self.writer
    }

    /// `badge` becomes (or stays) the writer; EBUSY while another client is. `watched`: the
    /// service will hear when the client exits; a claim nobody could ever drop is EPERM.
    pub fn claim(&mut self, badge: u64, watched: bool) -> Result<(), Errno> {
        match self.writer {
            Some(w) if w == badge => Ok(()),
            Some(_) => Err(Errno::Busy),
            None if !watched => Err(Errno::Perm),
            None => {
                self.writer = Some(badge);
                Ok(())
            }
        }
    }

    /// `badge` stops being the writer (its RELEASE, or its process exited).
    pub fn release(&mut self, badge: u64) {
        if self.writer == Some(badge) {
            self.writer = None;
        }
    }
}

/// What decoding needs to know about the disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Disk {
    pub capacity: u64,
    pub read_only: bool,
}

/// A sector count one READ or WRITE may carry.
fn check_count(count: u64) -> Result<(), Errno> {
    if count == 0 || count > blk::MAX_SECTORS { Err(Errno::Inval) } else { Ok(()) }
}

/// `count` sectors from `sector` lie inside a disk of `capacity` sectors.
fn check_range(sector: u64, count: u64, capacity: u64) -> Result<(), Errno> {
    match sector.checked_add(count) {
        Some(end) if end <= capacity => Ok(()),
        _ => Err(Errno::Inval),
    }
}

/// Decodes a call: its label, data words and the length of the caller's bulk buffer (None: the
/// caller set up none).
///
/// WRITE takes its sector count from the payload length (`data[3]`); a non-zero `data[1]` must
/// agree with it.
pub fn decode(label: u64, data: [u64; 4], bulk_len: Option<usize>, disk: Disk) -> Result<Command, Errno> {
    match label {
        blk::INFO => Ok(Command::Info),
        blk::FLUSH => Ok(Command::Flush),
        blk::OPEN_WRITE if disk.read_only => Err(Errno::RoFs),
        blk::OPEN_WRITE => Ok(Command::OpenWrite),
        blk::RELEASE => Ok(Command::Release),
        blk::READ => {
            let (sector, count) = (data[0], data[1]);
            check_count(count)?;
            check_range(sector, count, disk.capacity)?;
            let bulk = bulk_len.ok_or(Errno::Inval)?;
            if count as usize * SECTOR > bulk {
                return Err(Errno::Inval);
            }
            Ok(Command::Read { sector, count })
        }
        blk::WRITE => {
            let (sector, claimed, len) = (data[0], data[1], data[3]);
            let bulk = bulk_len.ok_or(Errno::Inval)?;
            if len == 0 || len % SECTOR as u64 != 0 || len > bulk as u64 {
                return Err(Errno::Inval);
            }
            let count = len / SECTOR as u64;
            check_count(count)?;
            if claimed != 0 && claimed != count {
                return Err(Errno::Inval);
            }
            check_range(sector, count, disk.capacity)?;
            if disk.read_only {
                return Err(Errno::RoFs);
            }
            Ok(Command::Write { sector, count })
        }
        _ => Err(Errno::NoSys),
    }
}

/// A reply carrying `e`.
pub fn error_reply(e: Errno) -> Reply {
    Reply { msg: Message::new(errno_label(e), [0; 4]), caps: Vec::new() }
}

/// Answers one call on `dev`, whose writer is recorded in `claim`.
pub fn handle<R: Registers, M: DmaMemory, I: Interrupt>(
    dev: &mut BlkDevice<R, M>,
    irq: &mut I,
    claim: &mut WriteClaim,
    req: &mut Request,
) -> Reply {
    if req.msg.label == LABEL_CLIENT_GONE {
        claim.release(req.badge);
        return Reply::ok([0; 4]);
    }
    let info = *dev.info();
    let disk = Disk { capacity: info.capacity, read_only: info.read_only };
    let command = match decode(req.msg.label, req.msg.data, req.bulk.as_ref().map(|b| b.len()), disk) {
        Ok(c) => c,
        Err(e) => return error_reply(e),
    };
    if let Command::Write { .. } | Command::OpenWrite = command {
        if let Err(e) = claim.claim(req.badge, req.watched) {
            return error_reply(e);
        }
    }
    let result = match (command, req.bulk.as_deref_mut()) {
        (Command::OpenWrite, _) => Ok(0),
        (Command::Release, _) => {
            claim.release(req.badge);
            Ok(0)
        }
        (Command::Info, _) => {
            let ro = if info.read_only { blk::READ_ONLY } else { 0 };
            return Reply::ok([info.capacity, ro, blk::MAX_SECTORS, 0]);
        }
        (Command::Flush, _) => dev.flush(irq).map(|()| 0),
        (Command::Read { sector, count }, Some(bulk)) => {
            let n = count as usize * SECTOR;
            dev.read(sector, &mut bulk[..n], irq).map(|()| n as u64)
        }
        (Command::Write { sector, count }, Some(bulk)) => dev.write(sector, &bulk[..count as usize * SECTOR], irq).map(|()| 0),
        // decode() refuses READ and WRITE without a bulk buffer.
        (Command::Read { .. } | Command::Write { .. }, None) => Err(Errno::Inval),
    };
    match result {
        Ok(payload_len) => Reply::ok([0, 0, 0, payload_len]),
        Err(e) => error_reply(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DISK: Disk = Disk { capacity: 1000, read_only: false };
    const BULK: Option<usize> = Some(keel_rt::ipc::BULK_SIZE as usize);

    #[test]
    fn good_calls_decode() {
        assert_eq!(decode(blk::INFO, [0; 4], None, DISK), Ok(Command::Info));
        assert_eq!(decode(blk::FLUSH, [0; 4], None, DISK), Ok(Command::Flush));
        assert_eq!(decode(blk::READ, [999, 1, 0, 0], BULK, DISK), Ok(Command::Read { sector: 999, count: 1 }));
        assert_eq!(decode(blk::READ, [0, 128, 0, 0], BULK, DISK), Ok(Command::Read { sector: 0, count: 128 }));
        assert_eq!(decode(blk::WRITE, [872, 0, 0, 65536], BULK, DISK), Ok(Command::Write { sector: 872, count: 128 }));
        assert_eq!(decode(blk::WRITE, [5, 2, 0, 1024], BULK, DISK), Ok(Command::Write { sector: 5, count: 2 }));
    }

    #[test]
    fn bad_ranges_and_counts_are_einval() {
        for data in [[1000, 1, 0, 0], [999, 2, 0, 0], [u64::MAX, 1, 0, 0], [0, 0, 0, 0], [0, 129, 0, 0], [0, u64::MAX, 0, 0]] {
            assert_eq!(decode(blk::READ, data, BULK, DISK), Err(Errno::Inval), "READ {data:?}");
        }
        assert_eq!(decode(blk::READ, [0, 1, 0, 0], None, DISK), Err(Errno::Inval), "no bulk buffer");
        assert_eq!(decode(blk::READ, [0, 4, 0, 0], Some(1024), DISK), Err(Errno::Inval), "bulk buffer too small");
        for data in [[0, 0, 0, 0], [0, 0, 0, 511], [0, 0, 0, 513], [0, 0, 0, 65536 + 512], [1000, 0, 0, 512], [u64::MAX, 0, 0, 512]] {
            assert_eq!(decode(blk::WRITE, data, BULK, DISK), Err(Errno::Inval), "WRITE {data:?}");
        }
        assert_eq!(decode(blk::WRITE, [0, 3, 0, 1024], BULK, DISK), Err(Errno::Inval), "count disagrees with payload");
        assert_eq!(decode(blk::WRITE, [0, 0, 0, 512], None, DISK), Err(Errno::Inval));
        assert_eq!(decode(99, [0; 4], BULK, DISK), Err(Errno::NoSys));
    }

    #[test]
    fn writes_to_a_read_only_disk_are_erofs_after_the_argument_checks() {
        let ro = Disk { capacity: 1000, read_only: true };
        assert_eq!(decode(blk::WRITE, [0, 0, 0, 512], BULK, ro), Err(Errno::RoFs));
        assert_eq!(decode(blk::WRITE, [1000, 0, 0, 512], BULK, ro), Err(Errno::Inval));
        assert_eq!(decode(blk::READ, [0, 1, 0, 0], BULK, ro), Ok(Command::Read { sector: 0, count: 1 }));
        assert_eq!(decode(blk::OPEN_WRITE, [0; 4], None, ro), Err(Errno::RoFs));
        assert_eq!(decode(blk::OPEN_WRITE, [0; 4], None, DISK), Ok(Command::OpenWrite));
        assert_eq!(decode(blk::RELEASE, [0; 4], None, ro), Ok(Command::Release));
    }

    #[test]
    fn one_writer_at_a_time_until_it_releases() {
        let mut c = WriteClaim::default();
        assert_eq!(c.claim(7, false), Err(Errno::Perm), "a client blk cannot watch may not hold the disk");
        assert_eq!(c.writer(), None);
        assert_eq!(c.claim(7, true), Ok(()));
        assert_eq!(c.claim(7, true), Ok(()), "claiming again is harmless");
        assert_eq!(c.claim(8, true), Err(Errno::Busy));
        c.release(8);
        assert_eq!(c.writer(), Some(7), "another client's RELEASE changes nothing");
        c.release(7);
        assert_eq!(c.claim(8, true), Ok(()));
        assert_eq!(c.writer(), Some(8));
    }
}
