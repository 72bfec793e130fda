//! `guest_ioevent_doorbell`: a guest's 32-bit store to a doorbell registered with `vm_ioevent`
//! (as a virtio driver's QueueNotify), which the kernel finishes by signalling a notification,
//! without an exit to the monitor. The guest times each store itself (the two counter reads
//! around it included); nobody waits on the notification, so no thread is woken: the figure is
//! the exit, the lookup, the signal and the return to the guest. Compare `guest_mmio_read_user`,
//! an access the monitor answers.

use super::guest::{BUFFER, GUEST_RAM, delete_all, make_vm, read_u64s, run_to_off};
use alloc::vec::Vec;
use keel_rt::abi::PAGE_SIZE;
use keel_rt::abi::vm::{VCPU_POWER_ON, map};
use keel_rt::{Error, Slot, sys};

/// Stores the guest makes (the `movz x20, #200` below); the first `WARMUP` are left out.
const ROUNDS: usize = 200;
const WARMUP: usize = 20;
/// The doorbell: the first word of an MMIO region.
const DOORBELL: u64 = 0x1000_0000;

/// The guest, entered at GUEST_RAM with its MMU off and x0 = its buffer's address.
const GUEST_CODE: [u32; 16] = [
    0xAA00_03F3, // mov  x19, x0                  the buffer
    0xD280_1914, // movz x20, #200                ROUNDS
    0xD2A2_0002, // movz x2, #0x1000, lsl #16     DOORBELL
    0xD503_3FDF, // loop: isb
    0xD53B_E041, // mrs  x1, cntvct_el0
    0xB900_0054, // str  w20, [x2]                the doorbell
    0xD503_3FDF, // isb
    0xD53B_E043, // mrs  x3, cntvct_el0
    0xCB01_0063, // sub  x3, x3, x1
    0xF800_8663, // str  x3, [x19], #8
    0xF100_0694, // subs x20, x20, #1
    0x54FF_FF01, // b.ne loop
    0xD280_0100, // movz x0, #8
    0xF2B0_8000, // movk x0, #0x8400, lsl #16     PSCI SYSTEM_OFF
    0xD400_0002, // hvc  #0
    0x1400_0000, // b .
];

/// Costs of the guest's doorbell stores, run on this thread.
pub fn doorbell_stores(control: Slot) -> Result<Vec<u64>, Error> {
    let mut made = Vec::new();
    let r = run(control, &mut made);
    delete_all(made);
    r
}

fn run(control: Slot, made: &mut Vec<Slot>) -> Result<Vec<u64>, Error> {
    let (vm, ram) = make_vm(control, 1, &GUEST_CODE, made)?;
    sys::vm_map(vm, 0, DOORBELL, PAGE_SIZE, 0, map::MMIO)?;
    let bell = sys::notif_create()?;
    made.push(bell);
    made.push(sys::vm_ioevent(vm, bell, DOORBELL, 4, None, 1)?);
    let vcpu = sys::vcpu_create(vm, 0)?;
    made.push(vcpu);
    sys::vcpu_init(vcpu, GUEST_RAM, GUEST_RAM + BUFFER, VCPU_POWER_ON)?;
    // Every store matched the ioevent: the guest never left for this thread until SYSTEM_OFF.
    run_to_off(vcpu)?;
    if sys::notif_wait(bell, 1_000_000_000)? != 1 {
        return Err(Error::BadState);
    }
    Ok(read_u64s(ram, BUFFER, ROUNDS)?[WARMUP..].to_vec())
}
