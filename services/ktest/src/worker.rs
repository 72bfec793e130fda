//! Running a closure on a thread pinned to chosen CPUs and waiting for its result, with a
//! timeout so that a hang in the kernel shows up as a failed check instead of a stuck test.

use alloc::sync::Arc;
use keel_rt::sync::Mutex;
use keel_rt::{Error, Slot, sys, thread};

/// Priority of worker threads (the runtime's default).
pub const PRIORITY: u8 = 32;

/// The affinity mask of one CPU.
pub fn cpu_mask(cpu: u32) -> u64 {
    1u64 << cpu
}

/// A started worker thread.
pub struct Worker<T> {
    thread: Slot,
    done: Slot,
    result: Arc<Mutex<Option<T>>>,
}

/// Starts `f` on a new thread with affinity mask `affinity` (0 = any CPU).
pub fn start<T: Send + 'static>(affinity: u64, f: impl FnOnce() -> T + Send + 'static) -> Result<Worker<T>, Error> {
    let done = sys::notif_create()?;
    let result = Arc::new(Mutex::new(None));
    let slot = result.clone();
    let spawned = thread::spawn_with(PRIORITY, affinity, move || {
        let v = f();
        *slot.lock() = Some(v);
        let _ = sys::notif_signal(done, 1);
    });
    match spawned {
        Ok(thread) => Ok(Worker { thread, done, result }),
        Err(e) => {
            let _ = sys::cap_delete(done);
            Err(e)
        }
    }
}

impl<T> Worker<T> {
    /// Waits up to `timeout_ns` for the result. On `TimedOut` the thread is left running (and
    /// its capabilities in place, since it still uses them).
    pub fn join(self, timeout_ns: u64) -> Result<T, Error> {
        self.wait(timeout_ns)?;
        self.take()
    }

    /// Whether the thread has finished (its result is ready).
    pub fn is_finished(&self) -> bool {
        self.result.lock().is_some()
    }

    /// Waits up to `timeout_ns` (0 = forever) for the thread to finish, without taking its result.
    pub fn wait(&self, timeout_ns: u64) -> Result<(), Error> {
        if self.is_finished() {
            return Ok(());
        }
        sys::notif_wait(self.done, timeout_ns).map(|_| ())
    }

    /// The result of a finished thread (`BadState` if it has not finished).
    pub fn take(self) -> Result<T, Error> {
        let v = self.result.lock().take().ok_or(Error::BadState)?;
        let _ = sys::cap_delete(self.done);
        let _ = sys::cap_delete(self.thread);
        Ok(v)
    }
}
