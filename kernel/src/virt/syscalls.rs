//! The virtual-machine system calls (numbers and registers: docs/ABI.md, "Virtual machines").
//! Each decodes every argument and capability first and changes nothing when it fails.

use super::syndrome::load_value;
use super::vcpu::{Pending, Power, VCpu};
use super::vm::{RegionKind, Vm, VmIrqLine};
use crate::cap::Rights;
use crate::hal;
use crate::kernel::Kernel;
use crate::syscall::{lookup, slot};
use crate::object::pmo::Backing;
use crate::object::thread::{UserRegs, set_return};
use crate::object::{Id, ObjRef};
use keel_abi::vm::{COUNTERS, ExitReason, VCPU_POWER_ON, layout, map};
use keel_abi::{Error, syscall as nr};

type Result<T = ()> = core::result::Result<T, Error>;

fn vm_of(k: &Kernel, pid: Id, slot: u32, need: Rights) -> Result<Id> {
    match lookup(k, pid, slot, need)? {
        ObjRef::Vm(v) => Ok(v),
        _ => Err(Error::WrongType),
    }
}

fn vcpu_of(k: &Kernel, pid: Id, slot: u32, need: Rights) -> Result<Id> {
    match lookup(k, pid, slot, need)? {
        ObjRef::VCpu(v) => Ok(v),
        _ => Err(Error::WrongType),
    }
}

/// Handles VM calls; `None` when `frame` holds another call.
pub fn dispatch(k: &mut Kernel, cpu: usize, tid: Id, pid: Id, frame: &mut UserRegs) -> Option<Result> {
    let a = frame.x;
    Some(match a[8] {
        nr::VM_CREATE => slot(a[0]).and_then(|s| vm_create(k, pid, frame, s, a[1])),
        nr::VM_MAP => vm_map(k, pid, frame, &a),
        nr::VCPU_CREATE => slot(a[0]).and_then(|s| vcpu_create(k, pid, frame, s, a[1])),
        nr::VCPU_INIT => slot(a[0]).and_then(|s| vcpu_init(k, pid, frame, s, a[1], a[2], a[3])),
        nr::VCPU_RUN => slot(a[0]).and_then(|s| vcpu_run(k, cpu, tid, pid, frame, s, [a[1], a[2], a[3], a[4]])),
        nr::VCPU_KICK => slot(a[0]).and_then(|s| vcpu_kick(k, pid, frame, s)),
        nr::VM_IRQ_LINE_CREATE => slot(a[0]).and_then(|s| vm_irq_line_create(k, pid, frame, s, a[1])),
        nr::VM_IRQ_LINE => slot(a[0]).and_then(|s| vm_irq_line(k, pid, frame, s, a[1])),
        nr::VCPU_STAT => slot(a[0]).and_then(|s| vcpu_stat(k, pid, frame, s, a[1])),
        _ => return None,
    })
}

/// vm_create(control, vcpus) -> vm slot. Needs the machine's control cap.
fn vm_create(k: &mut Kernel, pid: Id, frame: &mut UserRegs, control: u32, vcpus: u64) -> Result {
    match lookup(k, pid, control, Rights::MANAGE)? {
        ObjRef::Control => {}
        _ => return Err(Error::WrongType),
    }
    if vcpus == 0 || vcpus > u64::from(layout::MAX_VCPUS) {
        return Err(Error::Invalid);
    }
    k.check_heap()?;
    let vmid = k.alloc_vmid()?;
    let vm = match Vm::new(vmid, vcpus as usize, hal::now_ticks()) {
        Ok(vm) => vm,
        Err(e) => {
            k.free_vmid(vmid);
            return Err(e);
        }
    };
    let id = k.new_id();
    k.vms.insert(id, vm);
    match k.install_cap(pid, ObjRef::Vm(id), Rights::ALL) {
        Ok(s) => {
            set_return(frame, 0, &[u64::from(s)]);
            Ok(())
        }
        Err(e) => {
            k.destroy_vm(id);
            Err(e)
        }
    }
}

/// vm_map(vm, pmo, ipa, size, pmo_offset, flags): guest RAM from a PMO, or with `map::MMIO` a
/// region whose accesses exit to the monitor (the PMO slot is then ignored).
fn vm_map(k: &mut Kernel, pid: Id, frame: &mut UserRegs, a: &[u64; 31]) -> Result {
    let vm_id = vm_of(k, pid, slot(a[0])?, Rights::WRITE)?;
    let (ipa, size, offset, flags) = (a[2], a[3], a[4], a[5]);
    if flags & !(map::READ | map::WRITE | map::EXEC | map::MMIO) != 0 {
        return Err(Error::Invalid);
    }
    let vm = k.vms.get(&vm_id).ok_or(Error::BadState)?;
    vm.check_free_range(ipa, size)?;
    if flags & map::MMIO != 0 {
        k.check_heap()?;
        if let Some(vm) = k.vms.get_mut(&vm_id) {
            vm.add_region(ipa, size, RegionKind::Mmio);
        }
        set_return(frame, 0, &[]);
        return Ok(());
    }
    let pmo_id = match lookup(k, pid, slot(a[1])?, Rights::MAP | Rights::READ | Rights::WRITE)? {
        ObjRef::Pmo(p) => p,
        _ => return Err(Error::WrongType),
    };
    let pmo = k.pmos.get(&pmo_id).ok_or(Error::BadState)?;
    if matches!(pmo.backing, Backing::Phys { .. }) {
        return Err(Error::Invalid);
    }
    if offset % keel_abi::PAGE_SIZE != 0 {
        return Err(Error::Unaligned);
    }
    match offset.checked_add(size) {
        Some(end) if end <= pmo.size.next_multiple_of(keel_abi::PAGE_SIZE) => {}
        _ => return Err(Error::Invalid),
    }
    k.check_heap()?;
    let perms = flags & (map::READ | map::WRITE | map::EXEC);
    if let Some(vm) = k.vms.get_mut(&vm_id) {
        vm.add_region(ipa, size, RegionKind::Ram { pmo: pmo_id, offset, perms });
    }
    k.inc_ref(ObjRef::Pmo(pmo_id));
    set_return(frame, 0, &[]);
    Ok(())
}

/// vcpu_create(vm, index) -> vcpu slot. The vCPU starts powered off.
fn vcpu_create(k: &mut Kernel, pid: Id, frame: &mut UserRegs, vm_slot: u32, index: u64) -> Result {
    let vm_id = vm_of(k, pid, vm_slot, Rights::WRITE)?;
    let vm = k.vms.get(&vm_id).ok_or(Error::BadState)?;
    let i = usize::try_from(index).map_err(|_| Error::Invalid)?;
    match vm.vcpus.get(i) {
        Some(None) => {}
        Some(Some(_)) => return Err(Error::Exists),
        None => return Err(Error::Invalid),
    }
    k.check_heap()?;
    let id = k.new_id();
    k.vcpus.insert(id, VCpu::new(vm_id, i, hal::guest_lr_count()));
    match k.install_cap(pid, ObjRef::VCpu(id), Rights::ALL) {
        Ok(s) => {
            if let Some(vm) = k.vms.get_mut(&vm_id) {
                vm.vcpus[i] = Some(id);
            }
            k.inc_ref(ObjRef::Vm(vm_id));
            set_return(frame, 0, &[u64::from(s)]);
            Ok(())
        }
        Err(e) => {
            k.vcpus.remove(&id);
            Err(e)
        }
    }
}

/// vcpu_init(vcpu, pc, x0, flags): resets a vCPU nobody is running to enter at `pc` with x0;
/// `VCPU_POWER_ON` powers it on (otherwise it waits for PSCI CPU_ON).
fn vcpu_init(k: &mut Kernel, pid: Id, frame: &mut UserRegs, s: u32, pc: u64, x0: u64, flags: u64) -> Result {
    let id = vcpu_of(k, pid, s, Rights::WRITE)?;
    if flags & !VCPU_POWER_ON != 0 {
        return Err(Error::Invalid);
    }
    let v = k.vcpus.get_mut(&id).ok_or(Error::BadState)?;
    if v.runner.is_some() {
        return Err(Error::BadState);
    }
    v.reset_to(pc, x0);
    v.pending = Pending::None;
    v.power = if flags & VCPU_POWER_ON != 0 { Power::On } else { Power::Off };
    set_return(frame, 0, &[]);
    Ok(())
}

/// vcpu_run(vcpu, results...): completes the previous exit with `results` (the value of an MMIO
/// read, or x0..x3 of a forwarded hypercall), then runs the guest until an exit the kernel does
/// not finish. Returns the exit record in x1..x6.
fn vcpu_run(k: &mut Kernel, cpu: usize, tid: Id, pid: Id, frame: &mut UserRegs, s: u32, results: [u64; 4]) -> Result {
    let id = vcpu_of(k, pid, s, Rights::WRITE)?;
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
        set_return(frame, 0, &[ExitReason::Kicked as u64]);
        return Ok(());
    }
    k.enter_guest(cpu, frame, tid, id);
    Ok(())
}

/// vcpu_kick(vcpu): the vCPU's `vcpu_run` returns `Kicked` as soon as possible (at once if it is
/// waiting or off; the next call returns it if nobody runs the vCPU now).
fn vcpu_kick(k: &mut Kernel, pid: Id, frame: &mut UserRegs, s: u32) -> Result {
    let id = vcpu_of(k, pid, s, Rights::WRITE)?;
    let v = k.vcpus.get_mut(&id).ok_or(Error::BadState)?;
    v.kick = true;
    k.nudge_vcpu(id, hal::this_cpu());
    set_return(frame, 0, &[]);
    Ok(())
}

/// vm_irq_line_create(vm, intid) -> slot of a capability for SPI `intid` of the VM (32..96), for
/// a device backend: it drives that line and reaches nothing else of the VM.
fn vm_irq_line_create(k: &mut Kernel, pid: Id, frame: &mut UserRegs, s: u32, intid: u64) -> Result {
    let vm_id = vm_of(k, pid, s, Rights::WRITE)?;
    let intid = u32::try_from(intid).map_err(|_| Error::Invalid)?;
    if !(32..32 + layout::NR_SPIS).contains(&intid) {
        return Err(Error::Invalid);
    }
    k.check_heap()?;
    let id = k.new_id();
    k.vm_irq_lines.insert(id, VmIrqLine { vm: vm_id, intid, refs: 0 });
    match k.install_cap(pid, ObjRef::VmIrqLine(id), Rights::ALL) {
        Ok(slot) => {
            k.inc_ref(ObjRef::Vm(vm_id));
            set_return(frame, 0, &[u64::from(slot)]);
            Ok(())
        }
        Err(e) => {
            k.vm_irq_lines.remove(&id);
            Err(e)
        }
    }
}

/// vm_irq_line(line, level): sets the line's SPI low (0) or high (1), or pulses it (2, for an
/// edge-triggered interrupt).
fn vm_irq_line(k: &mut Kernel, pid: Id, frame: &mut UserRegs, s: u32, level: u64) -> Result {
    let line = match lookup(k, pid, s, Rights::SIGNAL)? {
        ObjRef::VmIrqLine(l) => l,
        _ => return Err(Error::WrongType),
    };
    if level > 2 {
        return Err(Error::Invalid);
    }
    let (vm_id, intid) = k.vm_irq_lines.get(&line).map(|l| (l.vm, l.intid)).ok_or(Error::BadState)?;
    let vm = k.vms.get_mut(&vm_id).ok_or(Error::BadState)?;
    let kicks = match level {
        2 => vm.vgic.trigger_spi_edge(intid),
        l => vm.vgic.set_spi_level(intid, l == 1),
    }
    .map_err(|_| Error::Invalid)?;
    k.kick_vcpus(vm_id, kicks);
    set_return(frame, 0, &[]);
    Ok(())
}

/// vcpu_stat(vcpu, first) -> exit counters first..first+6 in x1..x7 (see `keel_abi::vm::Counter`).
fn vcpu_stat(k: &mut Kernel, pid: Id, frame: &mut UserRegs, s: u32, first: u64) -> Result {
    let id = vcpu_of(k, pid, s, Rights::READ)?;
    let v = k.vcpus.get(&id).ok_or(Error::BadState)?;
    let first = usize::try_from(first).map_err(|_| Error::Invalid)?;
    if first >= COUNTERS {
        return Err(Error::Invalid);
    }
    let mut out = [0u64; 7];
    for (o, c) in out.iter_mut().zip(&v.counters[first..]) {
        *o = *c;
    }
    set_return(frame, 0, &out);
    Ok(())
}
