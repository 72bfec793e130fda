//! Virtual machines: a stage-2 address space (IPA to PA, VMID-tagged), the guest's RAM regions
//! (windows of PMOs, entered in the stage-2 table on first touch), the MMIO regions whose accesses
//! go to the VM monitor, and the in-kernel vGIC.
//!
//! Invariants: regions never overlap each other or the vGIC's distributor/redistributor range;
//! every stage-2 leaf maps a frame of the PMO its region names; the VMID is this VM's alone until
//! the VM is destroyed and its TLB entries are invalidated.

use super::vgic::VGic;
use crate::hal;
use crate::mm::pagetable::{Attrs, MapError, MemType, PageTable, Stage2};
use crate::object::vmspace::UserTables;
use crate::object::Id;
use crate::object::pmo::Pmo;
use alloc::collections::BTreeMap;
use alloc::vec::Vec;
use keel_abi::vm::{layout, map};
use keel_abi::{Error, PAGE_SIZE};

/// What a guest region is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RegionKind {
    /// Guest RAM: a window of a PMO, with `map::{READ, WRITE, EXEC}` permissions.
    Ram { pmo: Id, offset: u64, perms: u64 },
    /// Accesses exit to the VM monitor.
    Mmio,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GuestRegion {
    pub end: u64,
    pub kind: RegionKind,
}

/// Where a guest physical address lands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IpaTarget {
    Ram { start: u64, region: GuestRegion },
    Mmio,
    /// The vGIC distributor, at this offset.
    Gicd(u64),
    /// A redistributor frame pair: vCPU index and offset in its pair.
    Gicr(usize, u64),
    Nothing,
}

pub struct Vm {
    pub stage2: PageTable<Stage2>,
    /// Where the stage-2 table's frames come from and are charged (the creator's quota).
    pub tables: UserTables,
    pub vmid: u16,
    pub regions: BTreeMap<u64, GuestRegion>,
    pub vgic: VGic,
    /// The vCPU objects, by index (None until created).
    pub vcpus: Vec<Option<Id>>,
    /// CNTVOFF_EL2: the guest's virtual counter starts near zero.
    pub cntvoff: u64,
    /// Pages entered in the stage-2 table.
    pub mapped_pages: usize,
    /// References: caps plus one per VCpu, per irq line and per ioevent.
    pub refs: u32,
    /// Guest writes the kernel turns into a signal instead of an exit (at most
    /// `ioevent::MAX_PER_VM`; looked up on each MMIO write exit).
    pub ioevents: Vec<IoEvent>,
    /// Virtio-mmio interrupt status registers the kernel answers (one per irq line made with
    /// one; looked up on MMIO exits after the ioevents).
    pub status_regs: Vec<StatusReg>,
    /// The transmit register the kernel buffers, if a line has one (at most one per VM).
    pub tx: Option<TxReg>,
}

/// A device's transmit data register (the PL011's UARTDR) whose stores the kernel buffers for
/// the monitor of irq line `line` instead of exiting on each byte, KVM's coalesced MMIO for one
/// register: a store of 1, 2 or 4 bytes at `ipa` appends its low byte while `open` (the line's
/// owner says when a store changes nothing but the output: `vm_irq_line` level 3, x3), unless
/// the byte is a newline or the buffer is full; those exit as before, with the count of bytes
/// buffered, as does every exit to the monitor. A vCPU that waits for an interrupt, or is
/// interrupted, while bytes are buffered returns to the monitor ([`ExitReason::Transmit`]),
/// so none wait for long.
///
/// [`ExitReason::Transmit`]: keel_abi::vm::ExitReason::Transmit
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TxReg {
    pub line: Id,
    pub ipa: u64,
    pub open: bool,
    pub bytes: Vec<u8>,
}

/// A virtio-mmio InterruptStatus register (`ipa`) and its InterruptACK (`ipa + 4`), kept by the
/// kernel for irq line `line`: the line's raises OR bits in (`vm_irq_line`'s status bits), a
/// guest's 32-bit load of `ipa` reads them and its 32-bit store to `ipa + 4` clears the bits
/// it names, all without the monitor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StatusReg {
    pub line: Id,
    pub ipa: u64,
    pub status: u32,
    /// A plain value register instead (a device's flags, e.g. the PL011's UARTFR): loads of 1,
    /// 2 or 4 bytes read the value the line's owner set last; no acknowledge register.
    pub value: bool,
}

/// A registered guest write: `len` bytes at `ipa` (with `data`, only that value) signal `bits`
/// on notification `notif`. `id` is its `VmIoEvent` object.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IoEvent {
    pub id: Id,
    pub ipa: u64,
    pub len: u8,
    pub data: Option<u64>,
    pub notif: Id,
    pub bits: u64,
}

impl Vm {
    /// A VM whose stage-2 tables are charged to `quota`.
    pub fn new(vmid: u16, nr_vcpus: usize, now: u64, quota: Id) -> Result<Self, Error> {
        let vgic = VGic::new(nr_vcpus, layout::NR_SPIS).map_err(|_| Error::Invalid)?;
        let mut vcpus = Vec::new();
        vcpus.try_reserve_exact(nr_vcpus).map_err(|_| Error::NoMemory)?;
        let mut tables = UserTables::new(quota);
        let stage2 = PageTable::new(&mut tables).map_err(|_| Error::NoMemory)?;
        vcpus.resize(nr_vcpus, None);
        Ok(Self { stage2, tables, vmid, regions: BTreeMap::new(), vgic, vcpus, cntvoff: now, mapped_pages: 0, refs: 0, ioevents: Vec::new(), status_regs: Vec::new(), tx: None })
    }

    /// VTTBR_EL2 for this VM.
    pub fn vttbr(&self) -> u64 {
        self.stage2.root() | (u64::from(self.vmid) << 48)
    }

    /// End of the vGIC's register range (distributor, then all redistributors).
    fn gic_range(&self) -> (u64, u64) {
        (layout::GICD_BASE, layout::GICR_BASE + layout::GICR_STRIDE * self.vcpus.len() as u64)
    }

    /// Checks that [ipa, ipa+size) is page aligned, inside the IPA space, and overlaps no region
    /// and not the vGIC.
    pub fn check_free_range(&self, ipa: u64, size: u64) -> Result<(), Error> {
        if ipa % PAGE_SIZE != 0 || size % PAGE_SIZE != 0 {
            return Err(Error::Unaligned);
        }
        let end = ipa.checked_add(size).ok_or(Error::Invalid)?;
        let (ipa_bits, _) = hal::stage2_limits();
        if size == 0 || end > 1u64 << ipa_bits.min(48) {
            return Err(Error::Invalid);
        }
        let (gic_start, gic_end) = self.gic_range();
        if ipa < gic_end && gic_start < end {
            return Err(Error::Exists);
        }
        if let Some((_, r)) = self.regions.range(..end).next_back() {
            if r.end > ipa {
                return Err(Error::Exists);
            }
        }
        Ok(())
    }

    /// Adds a region (range already checked).
    pub fn add_region(&mut self, ipa: u64, size: u64, kind: RegionKind) {
        self.regions.insert(ipa, GuestRegion { end: ipa + size, kind });
    }

    /// Classifies a guest physical address.
    pub fn target(&self, ipa: u64) -> IpaTarget {
        if let Some(gic) = self.gic_target(ipa) {
            return gic;
        }
        match self.regions.range(..=ipa).next_back() {
            Some((&start, r)) if ipa < r.end => match r.kind {
                RegionKind::Ram { .. } => IpaTarget::Ram { start, region: *r },
                RegionKind::Mmio => IpaTarget::Mmio,
            },
            _ => IpaTarget::Nothing,
        }
    }

    /// The notification and bits of the ioevent a guest write of `len` bytes of `value` at
    /// `ipa` matches, if any.
    pub fn doorbell(&self, ipa: u64, len: u8, value: u64) -> Option<(Id, u64)> {
        self.ioevents.iter().find(|e| e.ipa == ipa && e.len == len && e.data.is_none_or(|d| d == value)).map(|e| (e.notif, e.bits))
    }

    /// A 32-bit guest load of `ipa`: the interrupt status it reads, if `ipa` is one the kernel
    /// keeps.
    pub fn status_read(&self, ipa: u64, len: u8) -> Option<u32> {
        self.status_regs.iter().find(|r| r.ipa == ipa && (len == 4 || r.value && len <= 4)).map(|r| r.status)
    }

    /// A 32-bit guest store of `value` to `ipa`: whether it was an InterruptACK the kernel
    /// keeps (the bits it names are cleared).
    pub fn status_ack(&mut self, ipa: u64, len: u8, value: u64) -> bool {
        match self.status_regs.iter_mut().find(|r| len == 4 && !r.value && r.ipa + 4 == ipa) {
            Some(r) => {
                r.status &= !(value as u32);
                true
            }
            None => false,
        }
    }

    /// A guest store of `len` bytes of `value` at `ipa`: whether the transmit buffer took it.
    pub fn tx_store(&mut self, ipa: u64, len: u8, value: u64) -> bool {
        match &mut self.tx {
            Some(t) if t.ipa == ipa && t.open && matches!(len, 1 | 2 | 4) && value as u8 != b'\n' && t.bytes.len() < keel_abi::vm::TX_BUFFER => {
                t.bytes.push(value as u8);
                true
            }
            _ => false,
        }
    }

    /// Bytes in the transmit buffer.
    pub fn tx_pending(&self) -> u64 {
        self.tx.as_ref().map_or(0, |t| t.bytes.len() as u64)
    }

    /// Irq line `line` raises `bits` of its status register (if it has one).
    pub fn status_raise(&mut self, line: Id, bits: u32) {
        if let Some(r) = self.status_regs.iter_mut().find(|r| r.line == line) {
            r.status |= bits;
        }
    }

    /// Irq line `line`'s value register (if it has one) reads `value` from now on, and its
    /// transmit register (if it has one) buffers stores while `tx_open`.
    pub fn status_set(&mut self, line: Id, value: u32, tx_open: bool) {
        if let Some(r) = self.status_regs.iter_mut().find(|r| r.line == line) {
            r.status = value;
        }
        if let Some(t) = self.tx.as_mut().filter(|t| t.line == line) {
            t.open = tx_open;
        }
    }

    /// The vGIC register `ipa` names (distributor or a redistributor frame), if any.
    pub fn gic_target(&self, ipa: u64) -> Option<IpaTarget> {
        if (layout::GICD_BASE..layout::GICD_BASE + layout::GICD_SIZE).contains(&ipa) {
            return Some(IpaTarget::Gicd(ipa - layout::GICD_BASE));
        }
        let (_, gic_end) = self.gic_range();
        if (layout::GICR_BASE..gic_end).contains(&ipa) {
            let off = ipa - layout::GICR_BASE;
            return Some(IpaTarget::Gicr((off / layout::GICR_STRIDE) as usize, off % layout::GICR_STRIDE));
        }
        None
    }

    /// Enters the page of RAM region `region` (starting at `start`) holding `ipa` in the stage-2
    /// table, allocating the PMO's frame, and with it the other pages of its aligned group of
    /// [`FAULT_AROUND`] (within the region; stopping quietly at the first that cannot be
    /// allocated): a guest that touches one page of RAM touches its neighbours next, and each
    /// page entered here is a stage-2 fault exit saved. `Forbidden` when the region's
    /// permissions do not allow the access (the kernel injects an abort).
    pub fn fault_in(&mut self, start: u64, region: GuestRegion, ipa: u64, write: bool, exec: bool, pmo: &mut Pmo) -> Result<(), FaultIn> {
        let RegionKind::Ram { offset, perms, .. } = region.kind else { return Err(FaultIn::Forbidden) };
        if (write && perms & map::WRITE == 0) || (exec && perms & map::EXEC == 0) || perms & map::READ == 0 {
            return Err(FaultIn::Forbidden);
        }
        let attrs = Attrs {
            mem: if pmo.is_device() { MemType::Device } else { MemType::Normal },
            read: true,
            write: perms & map::WRITE != 0,
            exec: perms & map::EXEC != 0,
            user: true,
            global: true,
        };
        let page = ipa & !(PAGE_SIZE - 1);
        let enter = |vm: &mut Self, pmo: &mut Pmo, page: u64| -> Result<(), FaultIn> {
            let index = (offset + (page - start)) / PAGE_SIZE;
            let pa = match pmo.frame(index, true) {
                Ok(Some(pa)) => pa,
                Ok(None) | Err(Error::NoMemory) => return Err(FaultIn::NoMemory),
                Err(_) => return Err(FaultIn::Forbidden),
            };
            match vm.stage2.map(&mut vm.tables, page, pa, PAGE_SIZE, attrs, false) {
                Ok(()) => {
                    vm.mapped_pages += 1;
                    Ok(())
                }
                // Another vCPU entered it first (or an earlier fault entered it around its own).
                Err(MapError::AlreadyMapped) => Ok(()),
                Err(_) => {
                    vm.tables.settle();
                    Err(FaultIn::NoMemory)
                }
            }
        };
        enter(self, pmo, page)?;
        let group = page & !(FAULT_AROUND * PAGE_SIZE - 1);
        for around in (0..FAULT_AROUND).map(|i| group + i * PAGE_SIZE) {
            if around != page && around >= start && around < region.end && enter(self, pmo, around).is_err() {
                break;
            }
        }
        Ok(())
    }

    /// The PMOs behind RAM regions (each holds one reference from this VM).
    pub fn region_pmos(&self) -> Vec<Id> {
        self.regions
            .values()
            .filter_map(|r| match r.kind {
                RegionKind::Ram { pmo, .. } => Some(pmo),
                RegionKind::Mmio => None,
            })
            .collect()
    }

    /// Frees the stage-2 tables and drops the VMID's TLB entries (the caller then frees the VMID
    /// and drops the PMO references).
    pub fn destroy(mut self) {
        hal::tlb_flush_vmid(self.vmid);
        self.stage2.destroy(&mut self.tables);
        self.tables.settle();
    }
}

/// Pages of guest RAM a stage-2 fault enters at once: its aligned group of 64 KiB.
pub const FAULT_AROUND: u64 = 16;

/// One SPI of a VM, as a capability a device backend holds (it can drive that line and nothing
/// else of the VM). Holds a reference on the VM.
pub struct VmIrqLine {
    pub vm: Id,
    pub intid: u32,
    /// References: caps.
    pub refs: u32,
}

/// A registered ioevent, as a capability: deleting it unregisters the write. Holds a
/// reference on the VM and on the notification.
pub struct VmIoEvent {
    pub vm: Id,
    pub notif: Id,
    /// References: caps.
    pub refs: u32,
}

/// Why a stage-2 fault on RAM could not be resolved.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultIn {
    Forbidden,
    NoMemory,
}
