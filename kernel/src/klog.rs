//! Kernel log line formatting: `[seconds.micros] cpuN LEVEL message`.
//!
//! The formatting is pure (host-tested); the `log::Log` implementation that writes lines to the
//! console lives with the console. Timestamps are counter ticks since boot converted with the
//! counter frequency; under `-icount shift=0` a tick is one instruction.

use core::fmt::{self, Write};

/// Writes the line prefix for a record at `ticks` of a `freq` Hz counter, logged by `cpu`.
pub fn write_prefix(out: &mut impl Write, ticks: u64, freq: u64, cpu: usize, level: log::Level) -> fmt::Result {
    let freq = freq.max(1);
    let secs = ticks / freq;
    let micros = (ticks % freq) * 1_000_000 / freq;
    let level = match level {
        log::Level::Error => "ERROR",
        log::Level::Warn => "WARN ",
        log::Level::Info => "INFO ",
        log::Level::Debug => "DEBUG",
        log::Level::Trace => "TRACE",
    };
    write!(out, "[{secs:5}.{micros:06}] cpu{cpu} {level} ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prefix(ticks: u64, freq: u64, cpu: usize, level: log::Level) -> String {
        let mut s = String::new();
        write_prefix(&mut s, ticks, freq, cpu, level).unwrap();
        s
    }

    #[test]
    fn formats_seconds_and_microseconds_of_a_1ghz_counter() {
        assert_eq!(prefix(1_234_567_890, 1_000_000_000, 2, log::Level::Info), "[    1.234567] cpu2 INFO  ");
        assert_eq!(prefix(0, 1_000_000_000, 0, log::Level::Error), "[    0.000000] cpu0 ERROR ");
    }

    #[test]
    fn handles_slow_counters_and_a_zero_frequency() {
        assert_eq!(prefix(62_500_000 + 31_250, 62_500_000, 1, log::Level::Debug), "[    1.000500] cpu1 DEBUG ");
        assert_eq!(prefix(5, 0, 3, log::Level::Warn), "[    5.000000] cpu3 WARN  ");
    }
}
