//! The console device (virtio 1.2, section 5.3), single port: queue 0 (receiveq) holds
//! device-writable buffers the device fills with input, queue 1 (transmitq) device-readable
//! buffers of output. No feature bits (no multiport, no size); the configuration space reads as
//! zeros. Output is taken a whole buffer at a time (a line, or whatever the driver batched), so
//! the guest's console costs one doorbell per write, not one exit per byte.

use crate::mem::GuestMemory;
use crate::mmio::{Device, Transport};
use crate::queue::QueueError;
use alloc::collections::VecDeque;
use alloc::vec::Vec;

/// Virtio device ID of a console.
pub const DEVICE_ID: u32 = 3;
/// The size of each queue.
pub const QUEUE_SIZE: u16 = 64;
/// The receive queue (input to the guest).
pub const RECEIVE: u16 = 0;
/// The transmit queue (output from the guest).
pub const TRANSMIT: u16 = 1;
/// Most output bytes taken in one [`take_output`] (the rest stays in the ring until the next).
pub const MAX_OUTPUT: usize = 16 * 1024;

/// The device model.
pub struct Console;

impl Device for Console {
    fn id(&self) -> u32 {
        DEVICE_ID
    }
    fn features(&self) -> u64 {
        0
    }
    fn queue_max_sizes(&self) -> &[u16] {
        &[QUEUE_SIZE, QUEUE_SIZE]
    }
    fn read_config(&self, _offset: u64, out: &mut [u8]) {
        out.fill(0);
    }
}

pub use crate::Served;

/// Appends the guest's output waiting in the transmit queue to `out` (whole buffers, until at
/// least [`MAX_OUTPUT`] bytes are taken) and returns the buffers. A malformed queue is an error
/// and the transport needs a reset.
pub fn take_output(t: &mut Transport<Console>, mem: &mut impl GuestMemory, out: &mut Vec<u8>) -> Result<Served, QueueError> {
    let mut served = Served::default();
    let start = out.len();
    while out.len() - start < MAX_OUTPUT {
        let Some(chain) = t.pop(TRANSMIT, mem)? else { break };
        // One buffer is at most what the chain holds, and never more than MAX_OUTPUT at once.
        let len = chain.readable_len().min(MAX_OUTPUT as u64) as usize;
        let at = out.len();
        out.resize(at + len, 0);
        let got = chain.read_at(mem, 0, &mut out[at..])?;
        out.truncate(at + got);
        served.interrupt |= t.complete(TRANSMIT, mem, chain.head, 0)?;
        served.requests += 1;
        served.bytes += got as u64;
    }
    Ok(served)
}

/// Moves as much of `input` as the guest's receive buffers hold into them and returns them.
pub fn give_input(t: &mut Transport<Console>, mem: &mut impl GuestMemory, input: &mut VecDeque<u8>) -> Result<Served, QueueError> {
    let mut served = Served::default();
    while !input.is_empty() {
        let Some(chain) = t.pop(RECEIVE, mem)? else { break };
        let room = chain.writable_len().min(MAX_OUTPUT as u64) as usize;
        let n = room.min(input.len());
        let bytes: Vec<u8> = input.drain(..n).collect();
        let written = chain.write_at(mem, 0, &bytes)?;
        served.interrupt |= t.complete(RECEIVE, mem, chain.head, written as u32)?;
        served.requests += 1;
        served.bytes += written as u64;
    }
    Ok(served)
}
