//! The real hardware behind the driver's traits: a transport slot's registers through
//! `keel_rt::mmio`, a contiguous memory object for DMA, and an interrupt line bound to a
//! notification. This and `service` are the only modules that make system calls.

use crate::device::{Interrupt, Wait};
use crate::dma::DmaMemory;
use crate::regs::{Registers, SLOT_SIZE};
use keel_rt::abi::{PmoKind, perm};
use keel_rt::errno::Errno;
use keel_rt::{Error, Slot, mmio, sys, vm};

/// How long one wait for a completion interrupt lasts before the used ring is polled anyway.
const IRQ_WAIT_NS: u64 = 1_000_000_000;
/// The notification bit the interrupt sets.
const IRQ_BIT: u64 = 1;

/// One transport slot in the mapped register window.
#[derive(Clone, Copy, Debug)]
pub struct SlotRegisters {
    base: u64,
}

impl SlotRegisters {
    /// Slot `n` of the window this process mapped at `window_va`.
    pub fn new(window_va: u64, n: u32) -> Self {
        Self { base: window_va + u64::from(n) * SLOT_SIZE }
    }
}

impl Registers for SlotRegisters {
    fn read(&self, offset: u32) -> u32 {
        mmio::read32(self.base + u64::from(offset))
    }
    fn write(&self, offset: u32, value: u32) {
        mmio::write32(self.base + u64::from(offset), value)
    }
}

/// A physically contiguous memory object mapped read-write here.
pub struct ContiguousDma {
    pmo: Slot,
    va: u64,
    bus: u64,
    len: usize,
}

impl ContiguousDma {
    /// A fresh zeroed region of `len` bytes (rounded up to pages).
    pub fn create(len: usize) -> Result<Self, (&'static str, Error)> {
        let size = (len as u64).next_multiple_of(keel_rt::abi::PAGE_SIZE);
        let pmo = sys::pmo_create(PmoKind::Contiguous, size).map_err(|e| ("pmo_create(contiguous)", e))?;
        let mapped = sys::pmo_phys(pmo)
            .map_err(|e| ("pmo_phys", e))
            .and_then(|bus| vm::map_pmo(pmo, size, perm::READ | perm::WRITE).map(|va| (bus, va)).map_err(|e| ("map DMA region", e)));
        match mapped {
            Ok((bus, va)) => Ok(Self { pmo, va, bus, len: size as usize }),
            Err(e) => {
                let _ = sys::cap_delete(pmo);
                Err(e)
            }
        }
    }
}

impl DmaMemory for ContiguousDma {
    fn bus_address(&self) -> u64 {
        self.bus
    }
    fn size(&self) -> usize {
        self.len
    }
    fn read32(&self, offset: usize) -> u32 {
        mmio::read32(self.va + offset as u64)
    }
    fn write32(&self, offset: usize, value: u32) {
        mmio::write32(self.va + offset as u64, value)
    }
    fn read_bytes(&self, offset: usize, out: &mut [u8]) -> Result<(), Errno> {
        sys::pmo_read(self.pmo, offset as u64, out).map_err(|_| Errno::Io)
    }
    fn write_bytes(&self, offset: usize, bytes: &[u8]) -> Result<(), Errno> {
        sys::pmo_write(self.pmo, offset as u64, bytes).map_err(|_| Errno::Io)
    }
    fn barrier(&self) {
        // A full barrier (DMB ISH): on QEMU's virt machine the device sees memory in program
        // order once this completes. Real hardware wants DMB OSH here, which keel_rt lacks.
        core::sync::atomic::fence(core::sync::atomic::Ordering::SeqCst);
    }
}

/// A device interrupt claimed from the kernel and bound to a notification.
pub struct IrqLine {
    irq: Slot,
    notif: Slot,
}

impl IrqLine {
    /// Claims INTID `intid` and enables it.
    pub fn claim(control: Slot, intid: u32) -> Result<Self, (&'static str, Error)> {
        let notif = sys::notif_create().map_err(|e| ("notif_create", e))?;
        let irq = match sys::irq_create(control, intid) {
            Ok(irq) => irq,
            Err(e) => {
                let _ = sys::cap_delete(notif);
                return Err(("irq_create", e));
            }
        };
        if let Err(e) = sys::irq_bind(irq, notif, IRQ_BIT) {
            let _ = sys::cap_delete(irq);
            let _ = sys::cap_delete(notif);
            return Err(("irq_bind", e));
        }
        Ok(Self { irq, notif })
    }
}

impl Interrupt for IrqLine {
    fn wait(&mut self) -> Wait {
        match sys::notif_wait(self.notif, IRQ_WAIT_NS) {
            Ok(_) => Wait::Signalled,
            Err(_) => Wait::TimedOut,
        }
    }
    fn rearm(&mut self) {
        let _ = sys::irq_ack(self.irq);
    }
}
