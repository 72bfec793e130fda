//! Locks for threads of one process (spinning, with a yield after a while).
pub use spin::{Mutex, MutexGuard, Once};
