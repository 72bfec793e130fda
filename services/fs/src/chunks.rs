//! A tmpfs file's bytes, in chunks of [`CHUNK`] bytes.
//!
//! A file held in one `Vec` needs one contiguous block of heap as big as the file (twice that
//! while it grows): a 31 MiB file asked for 32 MiB at once and the allocator's failure killed
//! the service. In chunks, no allocation is bigger than a chunk (plus the chunk index, 24 bytes
//! per chunk), every allocation is made with `try_reserve` and a failure is `ENOMEM` with the
//! file as it was. A chunk holds only the bytes written into it: shorter chunks, and chunks
//! past the end of the index, read as zeros up to the file's length (holes cost nothing).

use alloc::vec::Vec;
use keel_rt::errno::Errno;

/// Bytes per chunk: one page.
pub const CHUNK: usize = 4096;

/// A file's bytes.
#[derive(Default)]
pub struct Chunks {
    len: u64,
    /// Chunk `i` holds bytes `i * CHUNK ..`; it is never longer than `CHUNK`.
    chunks: Vec<Vec<u8>>,
    /// The chunks' capacities together (kept as they change: asked after every write).
    held: u64,
}

fn no_mem<T>(_: T) -> Errno {
    Errno::NoMem
}

impl Chunks {
    /// A copy of `bytes`.
    pub fn from_slice(bytes: &[u8]) -> Result<Chunks, Errno> {
        let mut c = Chunks::default();
        c.write(0, bytes)?;
        Ok(c)
    }

    pub fn len(&self) -> u64 {
        self.len
    }

    /// The bytes of memory the chunks hold (what a write or a cut changes).
    pub fn allocated(&self) -> u64 {
        self.held
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Copies bytes from `offset` into `buf`; how many (0 at or past the end).
    pub fn read(&self, offset: u64, buf: &mut [u8]) -> usize {
        if offset >= self.len {
            return 0;
        }
        let n = buf.len().min((self.len - offset) as usize);
        let mut done = 0;
        while done < n {
            let at = offset + done as u64;
            let (i, within) = ((at / CHUNK as u64) as usize, (at % CHUNK as u64) as usize);
            let step = (CHUNK - within).min(n - done);
            let out = &mut buf[done..done + step];
            let stored = self
                .chunks
                .get(i)
                .map_or(&[][..], |c| c.get(within..).unwrap_or(&[]));
            let k = stored.len().min(step);
            out[..k].copy_from_slice(&stored[..k]);
            out[k..].fill(0);
            done += step;
        }
        n
    }

    /// Writes `data` at `offset`, growing the file. Either all of it is written or, when memory
    /// runs out (`NoMem`), none: room is made for every chunk before any byte is copied.
    pub fn write(&mut self, offset: u64, data: &[u8]) -> Result<(), Errno> {
        if data.is_empty() {
            return Ok(());
        }
        let end = offset.checked_add(data.len() as u64).ok_or(Errno::FBig)?;
        let last = usize::try_from((end - 1) / CHUNK as u64).map_err(|_| Errno::FBig)?;
        let first = (offset / CHUNK as u64) as usize;
        if self.chunks.len() <= last {
            self.chunks
                .try_reserve(last + 1 - self.chunks.len())
                .map_err(no_mem)?;
            self.chunks.resize_with(last + 1, Vec::new);
        }
        for i in first..=last {
            let want = (end - i as u64 * CHUNK as u64).min(CHUNK as u64) as usize;
            let c = &mut self.chunks[i];
            if c.capacity() < want {
                // Grow by doubling (appends stay cheap), never past one chunk.
                let target = want.max(c.capacity() * 2).min(CHUNK);
                let before = c.capacity();
                c.try_reserve_exact(target - c.len()).map_err(no_mem)?;
                self.held += (c.capacity() - before) as u64;
            }
        }
        let mut done = 0;
        while done < data.len() {
            let at = offset + done as u64;
            let (i, within) = ((at / CHUNK as u64) as usize, (at % CHUNK as u64) as usize);
            let step = (CHUNK - within).min(data.len() - done);
            let c = &mut self.chunks[i];
            if c.len() < within + step {
                c.resize(within + step, 0);
            }
            c[within..within + step].copy_from_slice(&data[done..done + step]);
            done += step;
        }
        self.len = self.len.max(end);
        Ok(())
    }

    /// Cuts or extends the file to `size` bytes (an extension reads as zeros).
    pub fn truncate(&mut self, size: u64) -> Result<(), Errno> {
        if size < self.len {
            let keep = usize::try_from(size.div_ceil(CHUNK as u64)).map_err(|_| Errno::FBig)?;
            self.held -= self.chunks.iter().skip(keep).map(|c| c.capacity() as u64).sum::<u64>();
            self.chunks.truncate(keep);
            let tail = (size % CHUNK as u64) as usize;
            if tail != 0 {
                if let Some(c) = self.chunks.last_mut() {
                    c.truncate(tail);
                }
            }
            self.chunks.shrink_to_fit();
        }
        self.len = size;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    fn all(c: &Chunks) -> Vec<u8> {
        let mut v = vec![0xAA; c.len() as usize];
        assert_eq!(c.read(0, &mut v), c.len() as usize);
        v
    }

    #[test]
    fn writes_reads_holes_and_truncation_match_a_plain_vector() {
        let mut c = Chunks::default();
        let mut model: Vec<u8> = Vec::new();
        let put = |c: &mut Chunks, model: &mut Vec<u8>, at: usize, data: &[u8]| {
            c.write(at as u64, data).unwrap();
            if model.len() < at + data.len() {
                model.resize(at + data.len(), 0);
            }
            model[at..at + data.len()].copy_from_slice(data);
        };
        put(&mut c, &mut model, 0, b"hello");
        put(&mut c, &mut model, 3 * CHUNK + 100, &[7; 5000]);
        put(&mut c, &mut model, CHUNK - 2, b"across");
        assert_eq!(all(&c), model);
        c.truncate(CHUNK as u64 + 1).unwrap();
        model.truncate(CHUNK + 1);
        assert_eq!(all(&c), model);
        // Growing again: what was cut off reads as zeros.
        c.truncate(5 * CHUNK as u64).unwrap();
        model.resize(5 * CHUNK, 0);
        assert_eq!(all(&c), model);
        let held = |c: &Chunks| c.chunks.iter().map(|x| x.capacity() as u64).sum::<u64>();
        assert_eq!(c.allocated(), held(&c), "the running count is the chunks' capacities");
        put(&mut c, &mut model, 7 * CHUNK + 1, &[9; 3 * CHUNK]);
        assert_eq!(c.allocated(), held(&c));
        c.truncate(2).unwrap();
        model.truncate(2);
        assert_eq!((c.allocated(), held(&c)), (held(&c), c.chunks[0].capacity() as u64));
        let mut buf = [1u8; 10];
        assert_eq!(c.read(5 * CHUNK as u64 - 4, &mut buf), 0);
        assert_eq!(all(&c), model);
        assert_eq!(
            Chunks::from_slice(b"abc").map(|c| all(&c)),
            Ok(b"abc".to_vec())
        );
    }

    #[test]
    fn a_big_file_never_asks_for_more_than_a_chunk_at_once() {
        let mut c = Chunks::default();
        let block = vec![3u8; 64 * 1024];
        for i in 0..64 {
            c.write(i * block.len() as u64, &block).unwrap();
        }
        assert_eq!(c.len(), 4 << 20);
        assert!(c.chunks.iter().all(|ch| ch.capacity() <= CHUNK));
    }

    #[test]
    fn an_offset_past_what_memory_can_index_is_refused() {
        let mut c = Chunks::default();
        assert_eq!(c.write(u64::MAX - 1, b"xy"), Err(Errno::FBig));
        assert!(c.write(u64::MAX / 2, b"x").is_err());
        assert_eq!(c.len(), 0);
    }
}
