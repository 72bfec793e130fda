//! The virtual-machine system calls (numbers and registers: docs/ABI.md, "Virtual machines"):
//! their decoding and their invocation (the steps are described in `syscall/mod.rs`).

use super::Result;
use alloc::vec::Vec;
use super::caps::{billed_quota, control, guest_ram_capable, notif, pmo, vcpu, vm, vm_irq_line};
use crate::cap::Rights;
use crate::hal;
use crate::kernel::Kernel;
use crate::object::thread::{Outcome, UserRegs};
use crate::object::{Id, ObjRef};
use crate::virt::syndrome::load_value;
use crate::virt::vcpu::{Pending, Power, VCpu};
use crate::virt::vm::{IoEvent, IpaTarget, RegionKind, StatusReg, TxReg, Vm, VmIoEvent, VmIrqLine};
use keel_abi::vm::{COUNTERS, ExitReason, VCPU_POWER_ON, ioevent, layout, map};
use keel_abi::{Error, syscall as nr};

/// A decoded virtual-machine call.
#[derive(Clone, Copy, Debug)]
pub enum VmCall {
    /// `quota`: where its stage-2 tables are charged.
    Create { vcpus: usize, quota: Id },
    /// Guest RAM from `pmo` (`None`: an MMIO region whose accesses exit to the monitor).
    Map { vm: Id, ipa: u64, size: u64, ram: Option<(Id, u64, u64)> },
    VCpuCreate { vm: Id, index: usize },
    VCpuInit { vcpu: Id, pc: u64, x0: u64, power_on: bool },
    VCpuRun { vcpu: Id, results: [u64; 4] },
    VCpuKick { vcpu: Id },
    /// `status`: the status register's IPA and whether it is a plain value register; `tx`: the
    /// IPA of a transmit register to buffer (with a value register only).
    IrqLineCreate { vm: Id, intid: u32, status: Option<(u64, bool)>, tx: Option<u64> },
    IrqLine { line: Id, level: u64, bits: u32, tx_open: bool },
    TxTake { line: Id, va: u64, len: u64 },
    VCpuStat { vcpu: Id, first: usize },
    IoEvent { vm: Id, event: IoEvent },
}

/// Decodes a VM call; `NoSys` for a number that is no call at all.
pub(super) fn decode(k: &Kernel, pid: Id, a: &[u64; 31]) -> Result<VmCall> {
    Ok(match a[8] {
        nr::VM_CREATE => {
            control(k, pid, a[0])?;
            if a[1] == 0 || a[1] > u64::from(layout::MAX_VCPUS) {
                return Err(Error::Invalid);
            }
            VmCall::Create { vcpus: a[1] as usize, quota: billed_quota(k, pid, a[2])? }
        }
        nr::VM_MAP => {
            let vm = vm(k, pid, a[0], Rights::WRITE)?;
            let (ipa, size, offset, flags) = (a[2], a[3], a[4], a[5]);
            if flags & !(map::READ | map::WRITE | map::EXEC | map::MMIO) != 0 {
                return Err(Error::Invalid);
            }
            k.vms.get(&vm).ok_or(Error::BadState)?.check_free_range(ipa, size)?;
            if flags & map::MMIO != 0 {
                return Ok(VmCall::Map { vm, ipa, size, ram: None });
            }
            let pmo = pmo(k, pid, a[1], Rights::MAP | Rights::READ | Rights::WRITE)?;
            let pmo_size = guest_ram_capable(k, pmo)?;
            if offset % keel_abi::PAGE_SIZE != 0 {
                return Err(Error::Unaligned);
            }
            match offset.checked_add(size) {
                Some(end) if end <= pmo_size.next_multiple_of(keel_abi::PAGE_SIZE) => {}
                _ => return Err(Error::Invalid),
            }
            let perms = flags & (map::READ | map::WRITE | map::EXEC);
            VmCall::Map { vm, ipa, size, ram: Some((pmo, offset, perms)) }
        }
        nr::VCPU_CREATE => {
            let vm_id = vm(k, pid, a[0], Rights::WRITE)?;
            let index = usize::try_from(a[1]).map_err(|_| Error::Invalid)?;
            match k.vms.get(&vm_id).ok_or(Error::BadState)?.vcpus.get(index) {
                Some(None) => {}
                Some(Some(_)) => return Err(Error::Exists),
                None => return Err(Error::Invalid),
            }
            VmCall::VCpuCreate { vm: vm_id, index }
        }
        nr::VCPU_INIT => {
            let vcpu = vcpu(k, pid, a[0], Rights::WRITE)?;
            if a[3] & !VCPU_POWER_ON != 0 {
                return Err(Error::Invalid);
            }
            VmCall::VCpuInit { vcpu, pc: a[1], x0: a[2], power_on: a[3] & VCPU_POWER_ON != 0 }
        }
        nr::VCPU_RUN => VmCall::VCpuRun { vcpu: vcpu(k, pid, a[0], Rights::WRITE)?, results: [a[1], a[2], a[3], a[4]] },
        nr::VCPU_KICK => VmCall::VCpuKick { vcpu: vcpu(k, pid, a[0], Rights::WRITE)? },
        nr::VM_IRQ_LINE_CREATE => {
            let vm = vm(k, pid, a[0], Rights::WRITE)?;
            let intid = u32::try_from(a[1]).map_err(|_| Error::Invalid)?;
            if !(32..32 + layout::NR_SPIS).contains(&intid) {
                return Err(Error::Invalid);
            }
            // A virtio-mmio InterruptStatus register the kernel keeps for the line: 4-aligned,
            // it and InterruptACK after it in an MMIO region, and no other line's.
            // x3 = 1: a plain value register (`vm_irq_line` level 3 sets it) instead; x4 with
            // it: a transmit register the kernel buffers (4-aligned, in an MMIO region, no
            // other register of the kernel's, one per VM).
            if a[3] > 1 || (a[4] != 0 && (a[3] != 1 || a[2] == 0)) {
                return Err(Error::Invalid);
            }
            let v = k.vms.get(&vm).ok_or(Error::BadState)?;
            let mmio = |x: u64| matches!(v.target(x), IpaTarget::Mmio);
            let status = match a[2] {
                0 => None,
                ipa => {
                    if !ipa.is_multiple_of(4) || !mmio(ipa) || !mmio(ipa + 4) || v.status_regs.iter().any(|r| r.ipa == ipa) {
                        return Err(Error::Invalid);
                    }
                    Some((ipa, a[3] == 1))
                }
            };
            let tx = match a[4] {
                0 => None,
                _ if v.tx.is_some() => return Err(Error::Exists),
                ipa if !ipa.is_multiple_of(4) || !mmio(ipa) || ipa == a[2] || v.status_regs.iter().any(|r| r.ipa == ipa || r.ipa + 4 == ipa) => return Err(Error::Invalid),
                ipa => Some(ipa),
            };
            VmCall::IrqLineCreate { vm, intid, status, tx }
        }
        nr::VM_IRQ_LINE => {
            let line = vm_irq_line(k, pid, a[0], Rights::SIGNAL)?;
            if a[1] > 3 {
                return Err(Error::Invalid);
            }
            let bits = u32::try_from(a[2]).map_err(|_| Error::Invalid)?;
            // Level 3's x3: whether the transmit register buffers stores from now on.
            if level_tx_flag_bad(a[1], a[3]) {
                return Err(Error::Invalid);
            }
            VmCall::IrqLine { line, level: a[1], bits, tx_open: a[3] == 1 }
        }
        nr::VM_TX_TAKE => {
            let line = vm_irq_line(k, pid, a[0], Rights::SIGNAL)?;
            if a[2] == 0 || a[2] > keel_abi::vm::TX_BUFFER as u64 {
                return Err(Error::Invalid);
            }
            VmCall::TxTake { line, va: a[1], len: a[2] }
        }
        nr::VCPU_STAT => {
            let vcpu = vcpu(k, pid, a[0], Rights::READ)?;
            let first = usize::try_from(a[1]).map_err(|_| Error::Invalid)?;
            if first >= COUNTERS {
                return Err(Error::Invalid);
            }
            VmCall::VCpuStat { vcpu, first }
        }
        nr::VM_IOEVENT => decode_ioevent(k, pid, a)?,
        _ => return Err(Error::NoSys),
    })
}

/// vm_ioevent's arguments (out of line: the hot `vcpu_run` decodes through the same match).
#[inline(never)]
fn decode_ioevent(k: &Kernel, pid: Id, a: &[u64; 31]) -> Result<VmCall> {
    let vm_id = vm(k, pid, a[0], Rights::WRITE)?;
    let notif = notif(k, pid, a[1], Rights::SIGNAL)?;
    let (ipa, len, flags, bits) = (a[2], a[3] & 0xff, a[3] & !0xff, a[5]);
    if !matches!(len, 1 | 2 | 4 | 8) || flags & !ioevent::MATCH != 0 || bits == 0 {
        return Err(Error::Invalid);
    }
    if ipa % len != 0 {
        return Err(Error::Unaligned);
    }
    let data = (flags & ioevent::MATCH != 0).then_some(a[4]);
    // A value wider than the write could never match: refused rather than registered dead.
    if data.is_some_and(|d| len < 8 && d >> (8 * len) != 0) {
        return Err(Error::Invalid);
    }
    let v = k.vms.get(&vm_id).ok_or(Error::BadState)?;
    // Only writes that would exit to the monitor: never RAM, never the vGIC. (Regions are whole
    // pages and the write is aligned and at most 8 bytes: it lies in the region of its first byte.)
    if !matches!(v.target(ipa), IpaTarget::Mmio) {
        return Err(Error::Invalid);
    }
    let len = len as u8;
    // One event per write: an overlapping registration would make the outcome depend on order.
    if v.ioevents.iter().any(|e| e.ipa == ipa && e.len == len && (e.data.is_none() || data.is_none() || e.data == data)) {
        return Err(Error::Exists);
    }
    if v.ioevents.len() >= ioevent::MAX_PER_VM {
        return Err(Error::TableFull);
    }
    Ok(VmCall::IoEvent { vm: vm_id, event: IoEvent { id: 0, ipa, len, data, notif, bits } })
}

/// Runs a decoded VM call made by thread `tid` of process `pid`, current on `cpu`.
pub(super) fn invoke(k: &mut Kernel, cpu: usize, tid: Id, pid: Id, frame: &mut UserRegs, call: VmCall) -> Result<Outcome> {
    match call {
        VmCall::Create { vcpus, quota } => vm_create(k, pid, vcpus, quota),
        VmCall::Map { vm, ipa, size, ram } => {
            k.check_heap()?;
            let kind = match ram {
                Some((pmo, offset, perms)) => RegionKind::Ram { pmo, offset, perms },
                None => RegionKind::Mmio,
            };
            k.vms.get_mut(&vm).ok_or(Error::BadState)?.add_region(ipa, size, kind);
            if let Some((pmo, ..)) = ram {
                k.inc_ref(ObjRef::Pmo(pmo));
            }
            Ok(Outcome::Done)
        }
        VmCall::VCpuCreate { vm, index } => vcpu_create(k, pid, vm, index),
        VmCall::VCpuInit { vcpu, pc, x0, power_on } => {
            let v = k.vcpus.get_mut(&vcpu).ok_or(Error::BadState)?;
            if v.runner.is_some() {
                return Err(Error::BadState);
            }
            v.reset_to(pc, x0);
            v.pending = Pending::None;
            v.power = if power_on { Power::On } else { Power::Off };
            Ok(Outcome::Done)
        }
        VmCall::VCpuRun { vcpu, results } => vcpu_run(k, cpu, tid, frame, vcpu, results),
        VmCall::VCpuKick { vcpu } => {
            k.vcpus.get_mut(&vcpu).ok_or(Error::BadState)?.kick = true;
            k.nudge_vcpu(vcpu, hal::this_cpu());
            Ok(Outcome::Done)
        }
        VmCall::IrqLineCreate { vm, intid, status, tx } => {
            k.check_heap()?;
            if status.is_some() {
                k.vms.get_mut(&vm).ok_or(Error::BadState)?.status_regs.try_reserve(1).map_err(|_| Error::NoMemory)?;
            }
            let mut tx_bytes = Vec::new();
            if tx.is_some() {
                tx_bytes.try_reserve_exact(keel_abi::vm::TX_BUFFER).map_err(|_| Error::NoMemory)?;
            }
            let id = k.new_id();
            k.vm_irq_lines.insert(id, VmIrqLine { vm, intid, refs: 0 });
            match k.install_cap(pid, ObjRef::VmIrqLine(id), Rights::ALL) {
                Ok(slot) => {
                    if let (Some((ipa, value)), Some(v)) = (status, k.vms.get_mut(&vm)) {
                        v.status_regs.push(StatusReg { line: id, ipa, status: 0, value });
                        if let Some(tx) = tx {
                            v.tx = Some(TxReg { line: id, ipa: tx, open: false, bytes: tx_bytes });
                        }
                    }
                    k.inc_ref(ObjRef::Vm(vm));
                    Ok(Outcome::words(&[u64::from(slot)]))
                }
                Err(e) => {
                    k.vm_irq_lines.remove(&id);
                    Err(e)
                }
            }
        }
        VmCall::IrqLine { line, level, bits, tx_open } => {
            let (vm_id, intid) = k.vm_irq_lines.get(&line).map(|l| (l.vm, l.intid)).ok_or(Error::BadState)?;
            let vm = k.vms.get_mut(&vm_id).ok_or(Error::BadState)?;
            // Level 3: only the line's value register (and transmit gate) change.
            if level == 3 {
                vm.status_set(line, bits, tx_open);
                return Ok(Outcome::Done);
            }
            // The status first: a guest the edge interrupts reads it.
            vm.status_raise(line, bits);
            let kicks = match level {
                2 => vm.vgic.trigger_spi_edge(intid),
                l => vm.vgic.set_spi_level(intid, l == 1),
            }
            .map_err(|_| Error::Invalid)?;
            k.kick_vcpus(vm_id, kicks);
            Ok(Outcome::Done)
        }
        VmCall::IoEvent { vm, event } => vm_ioevent(k, pid, vm, event),
        // The oldest `len` bytes (at most) of the line's transmit buffer, to the caller's memory.
        VmCall::TxTake { line, va, len } => {
            let vm_id = k.vm_irq_lines.get(&line).map(|l| l.vm).ok_or(Error::BadState)?;
            let t = k.vms.get(&vm_id).and_then(|v| v.tx.as_ref()).filter(|t| t.line == line).ok_or(Error::WrongType)?;
            // Copied out before they leave the buffer: a bad address loses none.
            let n = t.bytes.len().min(len as usize);
            let mut out = [0u8; keel_abi::vm::TX_BUFFER];
            out[..n].copy_from_slice(&t.bytes[..n]);
            k.copy_to_user(pid, va, &out[..n])?;
            if let Some(t) = k.vms.get_mut(&vm_id).and_then(|v| v.tx.as_mut()) {
                t.bytes.drain(..n);
            }
            Ok(Outcome::words(&[n as u64]))
        }
        VmCall::VCpuStat { vcpu, first } => {
            let v = k.vcpus.get(&vcpu).ok_or(Error::BadState)?;
            let mut out = [0u64; 7];
            for (o, c) in out.iter_mut().zip(&v.counters[first..]) {
                *o = *c;
            }
            Ok(Outcome::words(&out))
        }
    }
}

/// vm_create(control, vcpus, quota) -> vm slot. Its stage-2 tables are charged to `quota` (the
/// creator's, or the group a monitor runs the VM in); guest RAM to whoever its memory objects
/// are billed to. The root table is charged from the start, so the quota stays while the VM does.
fn vm_create(k: &mut Kernel, pid: Id, vcpus: usize, quota: Id) -> Result<Outcome> {
    k.check_heap()?;
    let vmid = k.alloc_vmid()?;
    let vm = match Vm::new(vmid, vcpus, hal::now_ticks(), quota) {
        Ok(vm) => vm,
        Err(e) => {
            k.free_vmid(vmid);
            return Err(e);
        }
    };
    let id = k.new_id();
    k.vms.insert(id, vm);
    match k.install_cap(pid, ObjRef::Vm(id), Rights::ALL) {
        Ok(s) => Ok(Outcome::words(&[u64::from(s)])),
        Err(e) => {
            k.destroy_vm(id);
            Err(e)
        }
    }
}

/// vm_ioevent(vm, notif, ipa, len | flags, data, bits) -> slot of the registration.
fn vm_ioevent(k: &mut Kernel, pid: Id, vm_id: Id, mut event: IoEvent) -> Result<Outcome> {
    k.check_heap()?;
    let vm = k.vms.get_mut(&vm_id).ok_or(Error::BadState)?;
    vm.ioevents.try_reserve(1).map_err(|_| Error::NoMemory)?;
    event.id = k.new_id();
    k.vm_ioevents.insert(event.id, VmIoEvent { vm: vm_id, notif: event.notif, refs: 0 });
    match k.install_cap(pid, ObjRef::VmIoEvent(event.id), Rights::ALL) {
        Ok(slot) => {
            if let Some(vm) = k.vms.get_mut(&vm_id) {
                vm.ioevents.push(event);
            }
            k.inc_ref(ObjRef::Vm(vm_id));
            k.inc_ref(ObjRef::Notif(event.notif));
            Ok(Outcome::words(&[u64::from(slot)]))
        }
        Err(e) => {
            k.vm_ioevents.remove(&event.id);
            Err(e)
        }
    }
}

/// vcpu_create(vm, index) -> vcpu slot. The vCPU starts powered off.
fn vcpu_create(k: &mut Kernel, pid: Id, vm_id: Id, index: usize) -> Result<Outcome> {
    k.check_heap()?;
    let id = k.new_id();
    k.vcpus.insert(id, VCpu::new(vm_id, index, hal::guest_lr_count()));
    match k.install_cap(pid, ObjRef::VCpu(id), Rights::ALL) {
        Ok(s) => {
            if let Some(vm) = k.vms.get_mut(&vm_id) {
                vm.vcpus[index] = Some(id);
            }
            k.inc_ref(ObjRef::Vm(vm_id));
            Ok(Outcome::words(&[u64::from(s)]))
        }
        Err(e) => {
            k.vcpus.remove(&id);
            Err(e)
        }
    }
}

/// vcpu_run(vcpu, results...): completes the previous exit with `results` (the value of an MMIO
/// read, or x0..x3 of a forwarded hypercall), then runs the guest until an exit the kernel does
/// not finish. The exit record comes back in x1..x6 when the thread leaves guest mode.
fn vcpu_run(k: &mut Kernel, cpu: usize, tid: Id, frame: &mut UserRegs, id: Id, results: [u64; 4]) -> Result<Outcome> {
    let v = k.vcpus.get_mut(&id).ok_or(Error::BadState)?;
    if v.runner.is_some() {
        return Err(Error::BadState);
    }
    match core::mem::replace(&mut v.pending, Pending::None) {
        Pending::MmioRead(a) => {
            if a.reg != 31 {
                v.regs.x[a.reg as usize] = load_value(results[0], a);
            }
        }
        Pending::Hypercall => v.regs.x[..4].copy_from_slice(&results),
        Pending::None => {}
    }
    if v.kick {
        v.kick = false;
        return Ok(Outcome::words(&[ExitReason::Kicked as u64]));
    }
    k.enter_guest(cpu, frame, tid, id);
    Ok(Outcome::Suspended)
}

/// `vm_irq_line`'s x3 is a transmit gate (0 or 1) for level 3 and must be 0 otherwise.
fn level_tx_flag_bad(level: u64, x3: u64) -> bool {
    if level == 3 { x3 > 1 } else { x3 != 0 }
}
