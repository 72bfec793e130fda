//! vCPU switches on one host CPU, between two VMs (`vcpu_yield_round_trip_two_vms`) and within
//! one VM (`vcpu_yield_round_trip_same_vm`). Two vCPUs, each run by its own thread pinned to the
//! measuring CPU, execute the same guest loop: Keel's yield hypercall, then a counter read stored
//! to the vCPU's buffer in guest RAM. Each yield hands the host CPU to the other vCPU's thread,
//! so the time between two of a vCPU's counter reads is a round trip: two yield exits and two
//! switches between vCPUs (with two VMs, each switch also changes the VMID and the stage-2
//! table). Two VMs against one shows what a VM switch adds to a vCPU switch.
//!
//! The guests time themselves (the counter is the VM's virtual counter; under icount it counts
//! every instruction of the machine); this side sets them up, runs them to SYSTEM_OFF and reads
//! the buffers. The first vCPU's rounds in the middle of the run are the samples: at its start and
//! end the other vCPU may not be running yet or any more.

use super::guest::{BUFFER, GUEST_RAM, delete_all, make_vm, read_u64s, run_to_off};
use crate::worker::{self, cpu_mask};
use alloc::vec::Vec;
use keel_rt::abi::vm::VCPU_POWER_ON;
use keel_rt::{Error, Slot, println, sys};

/// Rounds each guest runs (the `movz x20, #200` below).
const ROUNDS: usize = 200;
/// Rounds left out at the start and at the end.
const EDGE: usize = 20;
/// One 2 KiB buffer per vCPU (ROUNDS counter values each).
const BUFFER_STRIDE: u64 = 0x800;
const JOIN_TIMEOUT_NS: u64 = 60_000_000_000;

/// The guest, entered at GUEST_RAM with its MMU off and x0 = its buffer's address.
const GUEST_CODE: [u32; 14] = [
    0xAA00_03F3, // mov  x19, x0                  the buffer
    0xD280_1914, // movz x20, #200                ROUNDS
    0xD280_2000, // loop: movz x0, #0x100
    0xF2B0_C000, // movk x0, #0x8600, lsl #16     Keel's yield
    0xD400_0002, // hvc  #0
    0xD503_3FDF, // isb
    0xD53B_E041, // mrs  x1, cntvct_el0
    0xF800_8661, // str  x1, [x19], #8
    0xF100_0694, // subs x20, x20, #1
    0x54FF_FF21, // b.ne loop
    0xD280_0100, // movz x0, #8
    0xF2B0_8000, // movk x0, #0x8400, lsl #16     PSCI SYSTEM_OFF
    0xD400_0002, // hvc  #0
    0x1400_0000, // b .
];
const _: () = assert!(ROUNDS as u64 * 8 <= BUFFER_STRIDE && BUFFER + 2 * BUFFER_STRIDE <= super::guest::RAM_SIZE);

/// Round-trip costs of two vCPUs taking turns on `cpu`, in two VMs or in one.
pub fn yield_round_trips(control: Slot, cpu: u32, two_vms: bool) -> Result<Vec<u64>, Error> {
    let mut made = Vec::new();
    let r = run(control, cpu, two_vms, &mut made);
    delete_all(made);
    r
}

fn run(control: Slot, cpu: u32, two_vms: bool, made: &mut Vec<Slot>) -> Result<Vec<u64>, Error> {
    // (vcpu, the RAM holding its buffer, the buffer's offset in that RAM)
    let mut vcpus: Vec<(Slot, Slot, u64)> = Vec::new();
    if two_vms {
        for _ in 0..2 {
            let (vm, ram) = make_vm(control, 1, &GUEST_CODE, made)?;
            let vcpu = sys::vcpu_create(vm, 0)?;
            made.push(vcpu);
            vcpus.push((vcpu, ram, BUFFER));
        }
    } else {
        let (vm, ram) = make_vm(control, 2, &GUEST_CODE, made)?;
        for i in 0..2 {
            let vcpu = sys::vcpu_create(vm, i)?;
            made.push(vcpu);
            vcpus.push((vcpu, ram, BUFFER + u64::from(i) * BUFFER_STRIDE));
        }
    }
    for &(vcpu, _, buffer) in &vcpus {
        sys::vcpu_init(vcpu, GUEST_RAM, GUEST_RAM + buffer, VCPU_POWER_ON)?;
    }
    // Both threads queue on `cpu` before either runs (this thread is pinned there too, and
    // blocks in the first join); the first started runs first.
    let mut runners = Vec::new();
    for &(vcpu, ..) in &vcpus {
        runners.push(worker::start(cpu_mask(cpu), move || run_to_off(vcpu))?);
    }
    for r in runners {
        r.join(JOIN_TIMEOUT_NS)??;
    }
    let mut stamps = Vec::new();
    for &(_, ram, buffer) in &vcpus {
        stamps.push(read_u64s(ram, buffer, ROUNDS)?);
    }
    // Within one VM both vCPUs read one counter: each of the first vCPU's rounds must contain a
    // read by the other (a yield that switched). VMs' counters differ by their offsets.
    if !two_vms {
        let (a, b) = (&stamps[0], &stamps[1]);
        let lone = (EDGE + 1..ROUNDS - EDGE).filter(|&i| !b.iter().any(|&t| a[i - 1] < t && t < a[i])).count();
        if lone != 0 {
            println!("ktest: vcpu_yield_round_trip_same_vm: in {lone} rounds the other vCPU did not run");
            return Err(Error::BadState);
        }
    }
    Ok(stamps[0][EDGE..ROUNDS - EDGE].windows(2).map(|w| w[1].wrapping_sub(w[0])).collect())
}
