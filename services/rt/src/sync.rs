//! Locks for threads of one process. `Mutex` spins; a lock held across a blocking call, or
//! contended by threads of different priorities on one CPU, needs the holder to be able to run.
pub use spin::Once;

/// How a thread waits on a [`Mutex`]: the `yield` hint rather than `core::hint::spin_loop` (an
/// `isb` on AArch64). Under QEMU without MTTCG (always under `-icount`) one host thread runs the
/// vCPUs in turn, each up to its next timer deadline: `yield` ends the spinner's turn so the
/// holder on another CPU runs at once; an `isb` spin keeps it for the whole turn.
pub struct Relax;

impl spin::RelaxStrategy for Relax {
    #[inline(always)]
    fn relax() {
        #[cfg(target_arch = "aarch64")]
        // SAFETY: a hint instruction; no memory, stack or flags are touched.
        unsafe {
            core::arch::asm!("yield", options(nomem, nostack, preserves_flags));
        }
        #[cfg(not(target_arch = "aarch64"))]
        core::hint::spin_loop();
    }
}

/// A spin lock whose waiters [`Relax`].
pub type Mutex<T> = spin::mutex::Mutex<T, Relax>;
/// Its guard.
pub type MutexGuard<'a, T> = spin::mutex::MutexGuard<'a, T, Relax>;

/// One wait step of a hand-written spin loop (as [`Mutex`] waits).
#[inline(always)]
pub fn relax() {
    <Relax as spin::RelaxStrategy>::relax();
}
