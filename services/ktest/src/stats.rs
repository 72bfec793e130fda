//! Benchmark statistics: per-iteration costs from batch timings, and their min/median/max.

use alloc::vec::Vec;
use core::fmt;

/// Minimum, median and maximum of a set of samples.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Summary {
    pub min: u64,
    pub median: u64,
    pub max: u64,
}

impl Summary {
    /// The summary of `samples` (None if there are none). An even count's median is the mean of
    /// the two middle samples, rounded down.
    pub fn of(samples: &[u64]) -> Option<Self> {
        if samples.is_empty() {
            return None;
        }
        let mut s: Vec<u64> = samples.to_vec();
        s.sort_unstable();
        let n = s.len();
        let median =
            if n % 2 == 1 { s[n / 2] } else { s[n / 2 - 1] / 2 + s[n / 2] / 2 + (s[n / 2 - 1] % 2 + s[n / 2] % 2) / 2 };
        Some(Self { min: s[0], median, max: s[n - 1] })
    }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "{} {} {}", self.min, self.median, self.max)
    }
}

/// Times `batches` batches of `per_batch` runs of `op` with `clock` (after `warmup` untimed
/// runs); the per-run cost of each batch. Stops at the first error `op` returns.
pub fn time_batches<E>(
    clock: impl Fn() -> u64,
    warmup: u64,
    batches: u64,
    per_batch: u64,
    mut op: impl FnMut() -> Result<(), E>,
) -> Result<Vec<u64>, E> {
    for _ in 0..warmup {
        op()?;
    }
    let mut costs = Vec::with_capacity(batches as usize);
    for _ in 0..batches {
        let start = clock();
        for _ in 0..per_batch {
            op()?;
        }
        let end = clock();
        costs.push(end.wrapping_sub(start) / per_batch.max(1));
    }
    Ok(costs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::cell::Cell;

    #[test]
    fn summary_of_odd_and_even_counts() {
        assert_eq!(Summary::of(&[5, 1, 3]), Some(Summary { min: 1, median: 3, max: 5 }));
        assert_eq!(Summary::of(&[4, 1, 3, 10]), Some(Summary { min: 1, median: 3, max: 10 }));
        assert_eq!(
            Summary::of(&[u64::MAX, u64::MAX]),
            Some(Summary { min: u64::MAX, median: u64::MAX, max: u64::MAX })
        );
        assert_eq!(Summary::of(&[3, 4]).unwrap().median, 3);
        assert_eq!(Summary::of(&[]), None);
        assert_eq!(Summary { min: 1, median: 2, max: 3 }.to_string(), "1 2 3");
    }

    #[test]
    fn batches_divide_by_their_size_after_the_warmup() {
        // A clock that advances 10 per op and 1 per reading.
        let t = Cell::new(0u64);
        let clock = || {
            t.set(t.get() + 1);
            t.get()
        };
        let mut ops = 0;
        let costs = time_batches::<()>(clock, 5, 3, 100, || {
            ops += 1;
            t.set(t.get() + 10);
            Ok(())
        })
        .unwrap();
        assert_eq!(ops, 5 + 300);
        assert_eq!(costs, vec![10, 10, 10]);
    }

    #[test]
    fn an_error_stops_the_timing() {
        let mut n = 0;
        let r = time_batches(
            || 0,
            0,
            10,
            10,
            || {
                n += 1;
                if n == 15 { Err("boom") } else { Ok(()) }
            },
        );
        assert_eq!(r, Err("boom"));
        assert_eq!(n, 15);
    }
}
