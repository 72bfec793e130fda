//! The network device (virtio 1.2, section 5.1), one queue pair: queue 0 (receiveq) holds
//! device-writable buffers the device fills with frames for the guest, queue 1 (transmitq)
//! device-readable buffers of frames from it. Each buffer starts with a 12-byte
//! `virtio_net_hdr` (modern devices always have its `num_buffers` field). Features: `MAC` (the
//! address is in configuration space) and `STATUS` (the link is up); no checksum or
//! segmentation offload, so every frame is a plain Ethernet frame of at most [`MAX_FRAME`]
//! bytes and the header the device writes is all zeros but `num_buffers` = 1.

use crate::mem::GuestMemory;
use crate::mmio::{Device, Transport};
use crate::queue::QueueError;
use alloc::collections::VecDeque;
use alloc::vec::Vec;

/// Virtio device ID of a network card.
pub const DEVICE_ID: u32 = 1;
/// The size of each queue.
pub const QUEUE_SIZE: u16 = 256;
/// The receive queue (frames to the guest).
pub const RECEIVE: u16 = 0;
/// The transmit queue (frames from the guest).
pub const TRANSMIT: u16 = 1;
/// The `virtio_net_hdr` in front of every frame.
pub const HEADER: usize = 12;
/// The shortest frame: destination, source, EtherType.
pub const MIN_FRAME: usize = 14;
/// The longest frame: a 1500-byte payload with an 802.1Q tag.
pub const MAX_FRAME: usize = 1518;
/// Most frames taken from the transmit queue in one [`take_frames`] (the rest wait).
pub const MAX_BATCH: usize = 64;

/// Feature bits (virtio 1.2, section 5.1.3).
pub mod feature {
    /// The device has a MAC address in configuration space.
    pub const MAC: u64 = 1 << 5;
    /// The configuration space has a link status.
    pub const STATUS: u64 = 1 << 16;
}

/// `status` in configuration space: the link is up.
pub const LINK_UP: u16 = 1;

/// The device model: its MAC address.
pub struct Net {
    /// The address the guest's driver uses.
    pub mac: [u8; 6],
}

impl Device for Net {
    fn id(&self) -> u32 {
        DEVICE_ID
    }
    fn features(&self) -> u64 {
        feature::MAC | feature::STATUS
    }
    fn queue_max_sizes(&self) -> &[u16] {
        &[QUEUE_SIZE, QUEUE_SIZE]
    }
    /// `mac[6]` at 0, `status` (little-endian) at 6; everything after reads as 0.
    fn read_config(&self, offset: u64, out: &mut [u8]) {
        let mut space = [0u8; 8];
        space[..6].copy_from_slice(&self.mac);
        space[6..8].copy_from_slice(&LINK_UP.to_le_bytes());
        for (i, b) in out.iter_mut().enumerate() {
            *b = usize::try_from(offset).ok().and_then(|o| o.checked_add(i)).and_then(|o| space.get(o)).copied().unwrap_or(0);
        }
    }
}

/// What serving the queues did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Served {
    /// Frames moved (either way).
    pub frames: u64,
    /// Their bytes (without the header).
    pub bytes: u64,
    /// Frames dropped: malformed or too long from the guest, too long for the guest's buffer.
    pub dropped: u64,
    /// Whether the driver wants an interrupt.
    pub interrupt: bool,
}

/// Takes up to [`MAX_BATCH`] frames the guest transmitted into `out` (headers stripped) and
/// returns their buffers. A frame shorter than [`MIN_FRAME`] or longer than [`MAX_FRAME`] is
/// dropped and counted. A malformed queue is an error and the transport needs a reset.
pub fn take_frames(t: &mut Transport<Net>, mem: &mut impl GuestMemory, out: &mut Vec<Vec<u8>>) -> Result<Served, QueueError> {
    let mut served = Served::default();
    if !ready(t, TRANSMIT) {
        return Ok(served);
    }
    let mut buf = [0u8; HEADER + MAX_FRAME];
    for _ in 0..MAX_BATCH {
        let Some(chain) = t.pop(TRANSMIT, mem)? else { break };
        let len = chain.readable_len();
        if (len as usize) < HEADER + MIN_FRAME || len > (HEADER + MAX_FRAME) as u64 {
            served.dropped += 1;
        } else {
            let got = chain.read_at(mem, 0, &mut buf[..len as usize])?;
            out.push(buf[HEADER..got].to_vec());
            served.frames += 1;
            served.bytes += (got - HEADER) as u64;
        }
        served.interrupt |= t.complete(TRANSMIT, mem, chain.head, 0)?;
    }
    Ok(served)
}

/// Whether the driver enabled queue `n` (a driver may use one direction only: the other queue
/// is then left alone, not an error).
fn ready(t: &mut Transport<Net>, n: u16) -> bool {
    t.queue(n).is_some_and(|q| q.ready())
}

/// Whether the guest has transmitted frames [`take_frames`] has not taken yet (it stopped at
/// [`MAX_BATCH`]).
pub fn more_to_take(t: &mut Transport<Net>, mem: &impl GuestMemory) -> bool {
    t.queue(TRANSMIT).is_some_and(|q| q.ready() && q.pending(mem).unwrap_or(false))
}

/// Moves frames from `frames` into the guest's receive buffers, one frame per buffer, while
/// it has buffers. A frame longer than the buffer it would go to is dropped and counted (a
/// driver without mergeable buffers posts buffers for its MTU).
pub fn give_frames(t: &mut Transport<Net>, mem: &mut impl GuestMemory, frames: &mut VecDeque<Vec<u8>>) -> Result<Served, QueueError> {
    let mut served = Served::default();
    let mut header = [0u8; HEADER];
    // num_buffers (the last field): one buffer per frame.
    header[10] = 1;
    while !frames.is_empty() && ready(t, RECEIVE) {
        let Some(chain) = t.pop(RECEIVE, mem)? else { break };
        let Some(frame) = frames.pop_front() else { break };
        let room = chain.writable_len();
        let mut written = 0;
        if room < (HEADER + frame.len()) as u64 {
            served.dropped += 1;
        } else {
            written = chain.write_at(mem, 0, &header)?;
            written += chain.write_at(mem, HEADER as u64, &frame)?;
            served.frames += 1;
            served.bytes += frame.len() as u64;
        }
        served.interrupt |= t.complete(RECEIVE, mem, chain.head, written as u32)?;
    }
    Ok(served)
}
