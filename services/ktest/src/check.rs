//! Counting checks and reporting failures.
//!
//! A failed check prints its `ktest: <scenario>: FAILED: <what>` line at once (so a later hang
//! still leaves it in the log) and is counted; [`Checks::finish`] prints the success line or a
//! summary and gives the exit code. Every message names the call and the expected and actual
//! results.

use alloc::string::String;
use core::fmt::{Debug, Display};
use keel_rt::{Error, println};

/// The checks of one scenario.
pub struct Checks {
    scenario: &'static str,
    passed: u64,
    failed: u64,
}

impl Checks {
    pub fn new(scenario: &'static str) -> Self {
        Self { scenario, passed: 0, failed: 0 }
    }

    pub fn scenario(&self) -> &'static str {
        self.scenario
    }

    /// Checks made so far (passed and failed).
    pub fn count(&self) -> u64 {
        self.passed + self.failed
    }

    pub fn failures(&self) -> u64 {
        self.failed
    }

    pub fn pass(&mut self) {
        self.passed += 1;
    }

    /// Records a failed check.
    pub fn fail(&mut self, what: impl Display) {
        self.failed += 1;
        println!("ktest: {}: FAILED: {}", self.scenario, what);
    }

    /// Records a check that `ok` holds; `what` describes the failure.
    pub fn check(&mut self, ok: bool, what: impl FnOnce() -> String) -> bool {
        if ok {
            self.pass();
        } else {
            self.fail(what());
        }
        ok
    }

    /// Expects `call` to have failed with `want`.
    pub fn expect_err<T: Debug>(&mut self, call: impl Display, got: Result<T, Error>, want: Error) -> bool {
        match got {
            Err(e) if e == want => {
                self.pass();
                true
            }
            other => {
                self.fail(format_args!("{call}: expected Err({want:?}), got {other:?}"));
                false
            }
        }
    }

    /// Expects `call` to have succeeded; its value.
    pub fn expect_ok<T>(&mut self, call: impl Display, got: Result<T, Error>) -> Option<T> {
        match got {
            Ok(v) => {
                self.pass();
                Some(v)
            }
            Err(e) => {
                self.fail(format_args!("{call}: expected Ok, got Err({e:?})"));
                None
            }
        }
    }

    /// Expects `got == want`.
    pub fn expect_eq<T: PartialEq + Debug>(&mut self, what: impl Display, got: T, want: T) -> bool {
        if got == want {
            self.pass();
            true
        } else {
            self.fail(format_args!("{what}: expected {want:?}, got {got:?}"));
            false
        }
    }

    /// Prints the outcome line; the exit code (0 when every check passed).
    pub fn finish(self, details: impl Display) -> i32 {
        if self.failed == 0 {
            println!("ktest: {}: ok ({})", self.scenario, details);
            0
        } else {
            println!("ktest: {}: FAILED: {} of {} checks failed", self.scenario, self.failed, self.count());
            crate::EXIT_FAILED
        }
    }
}
