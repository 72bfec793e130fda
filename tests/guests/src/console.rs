//! The guest's console: PL011 transmit at the fixed UART address, one lock so lines from several
//! CPUs never interleave, and `say!`, which prints one `guest: `-prefixed line.
//!
//! The lock is Lamport's bakery lock over plain `ldar`/`stlr` (see `percpu` for why the guest
//! avoids exclusives). It is re-entrant on one CPU (a fatal exception while printing still gets
//! its report out), and a waiter that has waited a second assumes the holder is dead (a CPU that
//! crashed mid-line) and prints anyway. The console writes only DR and reads only FR.

use crate::arch::mmio;
use crate::machine::{MAX_CPUS, UART_BASE};
use core::fmt::{self, Write};
use core::sync::atomic::{AtomicU32, Ordering::SeqCst};

const UARTDR: u64 = 0x00;
const UARTFR: u64 = 0x18;
const FR_TXFF: u32 = 1 << 5;
/// FR polls before a byte is written even though the FIFO still reads full.
const TXFF_POLLS: u32 = 100_000;

/// Prints one line: `guest: ` and the formatted arguments.
macro_rules! say {
    ($($arg:tt)*) => {
        $crate::console::print_line(format_args!($($arg)*))
    };
}

struct Bakery {
    choosing: [AtomicU32; MAX_CPUS],
    number: [AtomicU32; MAX_CPUS],
    /// Holder's CPU index + 1, 0 when free.
    owner: AtomicU32,
}

static LOCK: Bakery = Bakery {
    choosing: [const { AtomicU32::new(0) }; MAX_CPUS],
    number: [const { AtomicU32::new(0) }; MAX_CPUS],
    owner: AtomicU32::new(0),
};

/// Held console lock; `nested` when this CPU already held it.
struct Guard {
    me: usize,
    nested: bool,
}

impl Bakery {
    fn lock(&self, me: usize) -> Guard {
        if self.owner.load(SeqCst) == me as u32 + 1 {
            return Guard { me, nested: true };
        }
        let deadline = crate::timer::now().saturating_add(crate::timer::frequency());
        let timed_out = || crate::timer::now() > deadline;
        self.choosing[me].store(1, SeqCst);
        let ticket = 1 + self
            .number
            .iter()
            .map(|n| n.load(SeqCst))
            .max()
            .unwrap_or(0);
        self.number[me].store(ticket, SeqCst);
        self.choosing[me].store(0, SeqCst);
        'others: for other in 0..MAX_CPUS {
            if other == me {
                continue;
            }
            while self.choosing[other].load(SeqCst) != 0 {
                if timed_out() {
                    break 'others;
                }
            }
            loop {
                let theirs = self.number[other].load(SeqCst);
                if theirs == 0 || (theirs, other) > (ticket, me) {
                    break;
                }
                if timed_out() {
                    break 'others;
                }
            }
        }
        self.owner.store(me as u32 + 1, SeqCst);
        Guard { me, nested: false }
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        if !self.nested {
            LOCK.owner.store(0, SeqCst);
            LOCK.number[self.me].store(0, SeqCst);
        }
    }
}

fn put_byte(byte: u8) {
    let mut polls = 0;
    // SAFETY: FR is a read-only PL011 register without read side effects.
    while unsafe { mmio::read32(UART_BASE + UARTFR) } & FR_TXFF != 0 && polls < TXFF_POLLS {
        polls += 1;
    }
    // SAFETY: writing DR transmits one byte; the console owns the UART's transmit side.
    unsafe { mmio::write32(UART_BASE + UARTDR, u32::from(byte)) }
}

struct Uart;

impl Write for Uart {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        s.bytes().for_each(put_byte);
        Ok(())
    }
}

/// Prints `guest: <args>\n` as one uninterrupted line.
pub fn print_line(args: fmt::Arguments<'_>) {
    let _guard = LOCK.lock(crate::arch::cpu_index());
    let _ = Uart.write_str("guest: ");
    let _ = Uart.write_fmt(args);
    let _ = Uart.write_str("\n");
}
