//! The kernel console: the DTB's PL011, shared by all CPUs, and the `log` backend.
//!
//! Lines are written whole under a lock with IRQs masked, so CPUs never interleave within a line
//! and an interrupt handler that logs cannot deadlock against the code it interrupted. A panic
//! takes the console even from a CPU that died holding it.

use super::cpu;
use core::fmt::{self, Write};
use keel_platform::pl011::Pl011;
use crate::hal::Mutex;

static UART: Mutex<Option<Pl011>> = Mutex::new(None);
static LOGGER: Logger = Logger;

/// Takes over the PL011 mapped at `va` and installs the logger at `level`.
pub fn init(va: usize, level: log::LevelFilter) {
    // SAFETY: kspace mapped the DTB's PL011 at `va` as Device memory for good; this is the only
    // driver of it.
    let uart = unsafe { Pl011::new(va) };
    uart.init();
    *UART.lock() = Some(uart);
    let _ = log::set_logger(&LOGGER);
    log::set_max_level(level);
}

struct UartWriter<'a>(&'a Pl011);

impl Write for UartWriter<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.0.write_bytes(s.as_bytes());
        Ok(())
    }
}

/// Writes formatted text as is (no prefix), as one unit.
pub fn print(args: fmt::Arguments) {
    let daif = cpu::irq_save();
    if let Some(uart) = UART.lock().as_ref() {
        let _ = UartWriter(uart).write_fmt(args);
    }
    cpu::irq_restore(daif);
}

/// Writes raw bytes (user output through `debug_write`) as one unit.
pub fn write_bytes(bytes: &[u8]) {
    let daif = cpu::irq_save();
    if let Some(uart) = UART.lock().as_ref() {
        uart.write_bytes(bytes);
    }
    cpu::irq_restore(daif);
}

/// Writes from a dying CPU: waits a bounded time for the lock, then takes it anyway.
pub fn print_panic(args: fmt::Arguments) {
    cpu::irq_save();
    let mut guard = None;
    for _ in 0..10_000_000 {
        if let Some(g) = UART.try_lock() {
            guard = Some(g);
            break;
        }
        core::hint::spin_loop();
    }
    if guard.is_none() {
        // SAFETY: the holder is another CPU that has not released the console for ~10^7 spins
        // (stuck or dead); a garbled line beats a silent panic.
        unsafe { UART.force_unlock() };
        guard = UART.try_lock();
    }
    if let Some(uart) = guard.as_ref().and_then(|g| g.as_ref()) {
        let _ = UartWriter(uart).write_fmt(args);
    }
}

/// Reads one byte from the console, if one is waiting.
pub fn read_byte() -> Option<u8> {
    UART.lock().as_ref().and_then(|u| u.get_byte())
}

struct Logger;

impl log::Log for Logger {
    fn enabled(&self, metadata: &log::Metadata) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &log::Record) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let daif = cpu::irq_save();
        if let Some(uart) = UART.lock().as_ref() {
            let mut w = UartWriter(uart);
            let _ = crate::klog::write_prefix(&mut w, cpu::counter(), cpu::counter_freq(), cpu::cpu_id(), record.level());
            let _ = writeln!(w, "{}", record.args());
        }
        cpu::irq_restore(daif);
    }

    fn flush(&self) {}
}
