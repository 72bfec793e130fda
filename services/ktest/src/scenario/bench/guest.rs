//! Tiny guests for the VM benchmarks: AArch64 code run at EL1 with the MMU off from the start of
//! one VM's RAM, timing itself with the virtual counter into a buffer in its RAM; the host side
//! runs each vCPU to the guest's SYSTEM_OFF and reads the buffer back.

use alloc::vec::Vec;
use keel_rt::abi::vm::{ExitReason, map};
use keel_rt::abi::{PAGE_SIZE, PmoKind};
use keel_rt::{Error, Slot, println, sys};

pub const GUEST_RAM: u64 = 0x4000_0000;
/// Guest RAM: the code's page, then the buffers.
pub const RAM_SIZE: u64 = 2 * PAGE_SIZE;
/// Offset of the first buffer in guest RAM.
pub const BUFFER: u64 = PAGE_SIZE;

/// A VM with `vcpus` vCPUs and its RAM holding `code`; (vm, ram). Every slot made is pushed on
/// `made` (for the caller to delete).
pub fn make_vm(control: Slot, vcpus: u32, code: &[u32], made: &mut Vec<Slot>) -> Result<(Slot, Slot), Error> {
    let vm = sys::vm_create(control, vcpus)?;
    made.push(vm);
    let ram = sys::pmo_create(PmoKind::Anonymous, RAM_SIZE)?;
    made.push(ram);
    let bytes: Vec<u8> = code.iter().flat_map(|w| w.to_le_bytes()).collect();
    sys::pmo_write(ram, 0, &bytes)?;
    sys::vm_map(vm, ram, GUEST_RAM, RAM_SIZE, 0, map::READ | map::WRITE | map::EXEC)?;
    Ok((vm, ram))
}

/// Runs a vCPU until its guest switches itself off (any other exit is an error).
pub fn run_to_off(vcpu: Slot) -> Result<(), Error> {
    let exit = sys::vcpu_run(vcpu, [0; 4])?;
    if exit.reason == ExitReason::SystemOff as u64 {
        Ok(())
    } else {
        println!("ktest: benchmark guest: exit {} ({:#x?}) instead of SYSTEM_OFF", exit.reason, exit.details);
        Err(Error::BadState)
    }
}

/// `n` 64-bit values the guest stored at `offset` of its RAM.
pub fn read_u64s(ram: Slot, offset: u64, n: usize) -> Result<Vec<u64>, Error> {
    let mut bytes = alloc::vec![0u8; n * 8];
    sys::pmo_read(ram, offset, &mut bytes)?;
    Ok(bytes.chunks_exact(8).map(|c| u64::from_le_bytes(c.try_into().unwrap_or([0; 8]))).collect())
}

/// Deletes every slot in `made`, last first.
pub fn delete_all(made: Vec<Slot>) {
    for s in made.into_iter().rev() {
        let _ = sys::cap_delete(s);
    }
}
