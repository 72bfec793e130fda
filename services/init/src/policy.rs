//! When to restart a service that exited: its `restart=` policy and a bounded back-off.

use keel_formats::manifest::Restart;

/// First delay before a restart, and the most it grows to.
pub const FIRST_DELAY_MS: u64 = 100;
pub const MAX_DELAY_MS: u64 = 5_000;
/// A service that ran at least this long before exiting starts over with the first delay.
pub const STABLE_MS: u64 = 10_000;

/// Whether a service with `policy` that exited with `code` is started again.
pub fn should_restart(policy: Restart, code: i64) -> bool {
    match policy {
        Restart::Always => true,
        Restart::OnFailure => code != 0,
        Restart::Never => false,
    }
}

/// The delay before the next restart, given the previous delay and how long the service ran.
pub fn next_delay_ms(previous_ms: u64, ran_ms: u64) -> u64 {
    if previous_ms == 0 || ran_ms >= STABLE_MS { FIRST_DELAY_MS } else { (previous_ms * 2).min(MAX_DELAY_MS) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policies_decide_by_exit_code() {
        assert!(should_restart(Restart::Always, 0));
        assert!(should_restart(Restart::OnFailure, -11));
        assert!(!should_restart(Restart::OnFailure, 0));
        assert!(!should_restart(Restart::Never, -11));
    }

    #[test]
    fn back_off_doubles_up_to_a_bound_and_resets_after_a_stable_run() {
        let mut d = 0;
        let mut seen = alloc::vec::Vec::new();
        for _ in 0..10 {
            d = next_delay_ms(d, 50);
            seen.push(d);
        }
        assert_eq!(&seen[..7], &[100, 200, 400, 800, 1600, 3200, 5000]);
        assert!(seen.iter().all(|&x| x <= MAX_DELAY_MS));
        assert_eq!(next_delay_ms(5000, STABLE_MS), FIRST_DELAY_MS);
    }
}
