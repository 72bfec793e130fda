//! Threads of this process.

use crate::{sys, vm};
use alloc::boxed::Box;
use keel_abi::{Error, slots};

/// Stack of a thread started with `spawn`.
const STACK_SIZE: u64 = 64 * 1024;

/// Starts `f` on a new thread of this process (priority 32, any CPU); its thread slot.
pub fn spawn(f: impl FnOnce() + Send + 'static) -> Result<keel_abi::Slot, Error> {
    spawn_with(32, 0, f)
}

/// Starts `f` on a new thread with a priority and an affinity mask (0 = any CPU).
pub fn spawn_with(priority: u8, affinity: u64, f: impl FnOnce() + Send + 'static) -> Result<keel_abi::Slot, Error> {
    let (stack, _pmo) = vm::map_anonymous(STACK_SIZE)?;
    let boxed: Box<Box<dyn FnOnce() + Send>> = Box::new(Box::new(f));
    let arg = Box::into_raw(boxed) as u64;
    let entry = thread_start as *const () as u64;
    sys::thread_create(slots::SELF_PROCESS, entry, stack + STACK_SIZE, arg, priority, affinity).map(|(slot, _)| slot)
}

extern "C" fn thread_start(arg: u64) -> ! {
    // SAFETY: `arg` is the pointer `spawn_with` made with Box::into_raw for this thread alone.
    let f: Box<Box<dyn FnOnce() + Send>> = unsafe { Box::from_raw(arg as *mut Box<dyn FnOnce() + Send>) };
    f();
    sys::thread_exit()
}
