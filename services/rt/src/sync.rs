//! Locks for threads of one process. `Mutex` spins; a lock held across a blocking call, or
//! contended by threads of different priorities on one CPU, needs the holder to be able to run.
pub use spin::{Mutex, MutexGuard, Once};
