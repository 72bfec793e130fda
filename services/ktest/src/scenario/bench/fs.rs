//! File benchmarks through the whole stack: client library → IPC → VFS → tmpfs, or → ext2 →
//! block cache → IPC → virtio-blk driver → QEMU's disk.
//!
//! - sequential write of `mib` MiB in 64 KiB writes, then fsync (instructions per KiB);
//! - sequential read of the same file in 64 KiB reads (instructions per KiB);
//! - create + stat + unlink of `files` small files (instructions per file).
//!
//! Each figure is one pass; `samples` passes give min/median/max. The counter counts every
//! CPU's instructions, the file and block services' included. While QEMU's disk works, every CPU
//! may wait at once, and QEMU (icount, sleep=off) then jumps the counter to the next timer
//! deadline, as often as the host takes time: a figure is the pass's elapsed ticks minus those
//! stretches (`mem_info` page IDLE), i.e. the instructions executed.

use alloc::format;
use alloc::vec::Vec;
use keel_rt::errno::Errno;
use keel_rt::fs::{self, flags::*};
use keel_rt::sys;

const CHUNK: usize = 64 * 1024;

/// The counter less the ticks every CPU spent waiting at once: under icount, the instructions
/// executed so far (a pass's figure is the difference of two readings).
fn busy_counter() -> u64 {
    let idle = sys::all_idle_ticks().unwrap_or(0);
    sys::counter() - idle
}

/// Writes then reads `mib` MiB at `path`, `samples` times: (write, read) costs per KiB.
pub fn sequential(path: &str, mib: usize, samples: usize) -> Result<(Vec<u64>, Vec<u64>), Errno> {
    let buf: Vec<u8> = (0..CHUNK).map(|i| (i * 7) as u8).collect();
    let mut rbuf = alloc::vec![0u8; CHUNK];
    let kib = (mib * 1024) as u64;
    let (mut writes, mut reads) = (Vec::new(), Vec::new());
    for _ in 0..samples {
        let _ = fs::unlink(path);
        let t0 = busy_counter();
        let fd = fs::open(path, O_WRONLY | O_CREAT | O_TRUNC, 0o644)?;
        for _ in 0..mib * 1024 * 1024 / CHUNK {
            fs::write(fd, &buf)?;
        }
        fs::fsync(fd)?;
        fs::close(fd)?;
        let t1 = busy_counter();
        let fd = fs::open(path, O_RDONLY, 0)?;
        let mut total = 0;
        loop {
            let n = fs::read(fd, &mut rbuf)?;
            if n == 0 {
                break;
            }
            total += n;
        }
        fs::close(fd)?;
        let t2 = busy_counter();
        if total != mib * 1024 * 1024 || rbuf[..16] != buf[..16] {
            return Err(Errno::Io);
        }
        writes.push((t1 - t0) / kib);
        reads.push((t2 - t1) / kib);
    }
    fs::unlink(path)?;
    Ok((writes, reads))
}

/// Creates, stats and unlinks `files` files in `dir`, `samples` times: costs per file.
pub fn create_stat_unlink(dir: &str, files: usize, samples: usize) -> Result<Vec<u64>, Errno> {
    let _ = fs::mkdir(dir, 0o755);
    let names: Vec<alloc::string::String> = (0..files).map(|i| format!("{dir}/f{i}")).collect();
    let mut costs = Vec::new();
    for _ in 0..samples {
        let t0 = busy_counter();
        for n in &names {
            let fd = fs::open(n, O_WRONLY | O_CREAT | O_EXCL, 0o644)?;
            fs::close(fd)?;
        }
        for n in &names {
            fs::stat(n)?;
        }
        for n in &names {
            fs::unlink(n)?;
        }
        costs.push((busy_counter() - t0) / files as u64);
    }
    fs::rmdir(dir)?;
    Ok(costs)
}
