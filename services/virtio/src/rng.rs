//! The entropy device (virtio 1.2, section 5.4): one queue of device-writable buffers, which the
//! device fills with random bytes. No feature bits and no configuration space.

use crate::mem::GuestMemory;
use crate::mmio::{Device, Transport};
use crate::queue::QueueError;

/// Virtio device ID of an entropy source.
pub const DEVICE_ID: u32 = 4;
/// The size of its one queue.
pub const QUEUE_SIZE: u16 = 64;
/// Most bytes given for one buffer (a driver asking for more gets this many).
pub const MAX_PER_REQUEST: usize = 4096;

/// The device model.
pub struct Rng;

impl Device for Rng {
    fn id(&self) -> u32 {
        DEVICE_ID
    }
    fn features(&self) -> u64 {
        0
    }
    fn queue_max_sizes(&self) -> &[u16] {
        &[QUEUE_SIZE]
    }
    fn read_config(&self, _offset: u64, out: &mut [u8]) {
        out.fill(0);
    }
}

pub use crate::Served;

/// Fills every available buffer of the entropy queue with bytes from `fill` (at most
/// [`MAX_PER_REQUEST`] each) and returns them. A malformed queue is an error and the transport
/// needs a reset.
pub fn serve(t: &mut Transport<Rng>, mem: &mut impl GuestMemory, mut fill: impl FnMut(&mut [u8])) -> Result<Served, QueueError> {
    let mut served = Served::default();
    let mut buf = [0u8; 256];
    while let Some(chain) = t.pop(0, mem)? {
        let want = chain.writable_len().min(MAX_PER_REQUEST as u64) as usize;
        let mut done = 0;
        while done < want {
            let n = (want - done).min(buf.len());
            fill(&mut buf[..n]);
            let written = chain.write_at(mem, done as u64, &buf[..n])?;
            if written == 0 {
                break;
            }
            done += written;
        }
        served.interrupt |= t.complete(0, mem, chain.head, done as u32)?;
        served.requests += 1;
        served.bytes += done as u64;
    }
    Ok(served)
}
