//! Allocation failure injection, for testing that every system call does all of its work or none.
//!
//! Every place where the kernel can run out of something while serving a call (the heap-reserve
//! check, a frame allocation, an ASID or a VMID, a buffer for a user copy) calls [`hit`] first and
//! fails as if out of memory when it returns true. [`hit`] returns true only while an armed
//! system call runs: `fault_inject(control, n)` (docs/ABI.md) arms the *calling thread's next*
//! system call to fail its `n`-th allocation point; the call after that reads back whether the
//! failure fired and how many points the armed call passed. Nothing else ever sees a failure, so
//! it is compiled in always and costs one relaxed load per allocation point when unarmed.
//!
//! State lives in atomics: it is changed only under the big kernel lock (system-call entry and
//! exit), and [`hit`] is reached from inside that lock or at boot, before any call is armed.
//! Invariant: `ACTIVE` is set only between [`begin`] and [`end`] of the armed call.

use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// Thread whose next system call is armed (0 = none).
static ARMED_TID: AtomicU64 = AtomicU64::new(0);
/// Which allocation point (1-based) of the armed call fails.
static NTH: AtomicU64 = AtomicU64::new(0);
/// The armed call is running now.
static ACTIVE: AtomicBool = AtomicBool::new(false);
/// Allocation points the armed call has passed so far (the failing one included).
static PASSED: AtomicU64 = AtomicU64::new(0);
/// The injected failure happened.
static FIRED: AtomicBool = AtomicBool::new(false);

/// What the last armed call did.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Report {
    /// Its `n`-th allocation point was reached and failed.
    pub fired: bool,
    /// Allocation points it reached (with `fired`, the last of them failed).
    pub passed: u64,
}

/// Arms the next system call of thread `tid` to fail its `nth` allocation point (`nth == 0`
/// disarms). Returns the report of the previously armed call.
pub fn arm(tid: u64, nth: u64) -> Report {
    let report = Report { fired: FIRED.load(Ordering::Relaxed), passed: PASSED.load(Ordering::Relaxed) };
    ACTIVE.store(false, Ordering::Relaxed);
    FIRED.store(false, Ordering::Relaxed);
    PASSED.store(0, Ordering::Relaxed);
    NTH.store(nth, Ordering::Relaxed);
    ARMED_TID.store(if nth == 0 { 0 } else { tid }, Ordering::Relaxed);
    report
}

/// A system call of thread `tid` starts: if it is the armed one, its allocation points count.
pub fn begin(tid: u64) {
    if ARMED_TID.load(Ordering::Relaxed) == tid && tid != 0 {
        ARMED_TID.store(0, Ordering::Relaxed);
        ACTIVE.store(true, Ordering::Relaxed);
    }
}

/// The system call that [`begin`] saw has finished (it may have blocked or switched threads).
pub fn end() {
    ACTIVE.store(false, Ordering::Relaxed);
}

/// An allocation point: true when it must fail (the armed call reached its `n`-th point).
pub fn hit() -> bool {
    if !ACTIVE.load(Ordering::Relaxed) {
        return false;
    }
    let passed = PASSED.fetch_add(1, Ordering::Relaxed) + 1;
    if passed == NTH.load(Ordering::Relaxed) {
        FIRED.store(true, Ordering::Relaxed);
        true
    } else {
        false
    }
}

/// Host tests share these globals: they take this lock while they arm anything.
#[cfg(test)]
pub static TEST_LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_armed_threads_next_call_fails_at_its_nth_point() {
        let _g = TEST_LOCK.lock().unwrap_or_else(|e| e.into_inner());
        arm(7, 2);
        // Another thread's call is not affected.
        begin(8);
        assert!(!hit() && !hit() && !hit());
        end();
        begin(7);
        assert!(!hit(), "first point passes");
        assert!(hit(), "second point fails");
        assert!(!hit(), "later points pass");
        end();
        // The following call of the same thread is not armed any more.
        begin(7);
        assert!(!hit() && !hit());
        end();
        assert_eq!(arm(7, 0), Report { fired: true, passed: 3 });
        assert_eq!(arm(7, 0), Report { fired: false, passed: 0 });
    }

    #[test]
    fn a_call_with_fewer_points_than_nth_reports_not_fired() {
        let _g = TEST_LOCK.lock().unwrap_or_else(|e| e.into_inner());
        arm(3, 5);
        begin(3);
        assert!(!hit() && !hit());
        end();
        assert!(!hit(), "outside the armed call nothing counts");
        assert_eq!(arm(3, 0), Report { fired: false, passed: 2 });
    }
}
