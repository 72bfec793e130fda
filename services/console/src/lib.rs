//! console: owns UART input. It maps the PL011's registers, takes the UART interrupt through an
//! Irq capability, runs the line discipline (echo, backspace, Ctrl-C) and hands finished lines to
//! whoever calls READ_LINE on the connection it registers as `console` with namesrv. Ctrl-C kills
//! the foreground program (set with SET_FOREGROUND) through the process manager.
//!
//! It never writes the UART's data or control registers: output is the kernel's `debug_write`
//! (echo included). Startup: caps `control`, `procmgr`, `namesrv`; argument
//! `uart=<base hex>:<size hex>:<intid>`.
//!
//! Pure logic (argument parsing, line discipline, shared state) is host-tested; `service` and
//! `pl011` are the system-call and register glue.
#![cfg_attr(target_os = "none", no_std)]
#![forbid(unsafe_code)]

extern crate alloc;

pub mod discipline;
pub mod pl011;
pub mod service;
pub mod state;
pub mod uart_arg;

use core::fmt;
use keel_rt::Error;
use keel_rt::startup::Startup;
use uart_arg::{UartArgError, UartConfig};

/// Why the console could not start or stopped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConsoleError {
    /// No `uart=` argument.
    MissingUartArg,
    BadUartArg(UartArgError),
    /// A startup capability is missing; its name.
    MissingCap(&'static str),
    /// A system call failed during setup: what was being done, and the error.
    Sys(&'static str, Error),
    /// namesrv refused the registration.
    Register(Error),
}

impl ConsoleError {
    /// The exit code: 2 for a bad startup (arguments or capabilities), 1 for a failure at run time.
    pub fn exit_code(&self) -> i32 {
        match self {
            Self::MissingUartArg | Self::BadUartArg(_) | Self::MissingCap(_) => 2,
            Self::Sys(..) | Self::Register(_) => 1,
        }
    }
}

impl fmt::Display for ConsoleError {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self {
            Self::MissingUartArg => f.write_str("no uart=<base hex>:<size hex>:<intid> argument"),
            Self::BadUartArg(e) => write!(f, "bad uart= argument: {e}"),
            Self::MissingCap(name) => write!(f, "no '{name}' capability in the startup block"),
            Self::Sys(what, e) => write!(f, "{what} failed: {e}"),
            Self::Register(e) => write!(f, "cannot register 'console' with namesrv: {e}"),
        }
    }
}

/// The startup block, decoded.
#[derive(Debug, PartialEq, Eq)]
pub struct Config {
    pub uart: UartConfig,
    pub control: keel_rt::Slot,
    pub procmgr: keel_rt::Slot,
    pub namesrv: keel_rt::Slot,
}

impl Config {
    pub fn from_startup(s: &Startup) -> Result<Self, ConsoleError> {
        let arg = s.arg_value("uart").ok_or(ConsoleError::MissingUartArg)?;
        let uart = UartConfig::parse(arg).map_err(ConsoleError::BadUartArg)?;
        let cap = |name: &'static str| s.cap(name).ok_or(ConsoleError::MissingCap(name));
        Ok(Self { uart, control: cap("control")?, procmgr: cap("procmgr")?, namesrv: cap("namesrv")? })
    }
}

pub fn main(startup: &Startup) -> i32 {
    let result = Config::from_startup(startup).and_then(|c| {
        let caps = service::Caps { control: c.control, procmgr: c.procmgr, namesrv: c.namesrv };
        service::run(c.uart, caps)
    });
    match result {
        Ok(never) => match never {},
        Err(e) => {
            keel_rt::println!("console: {e}");
            e.exit_code()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn startup(text: &str) -> Startup {
        Startup::parse(text).unwrap()
    }

    #[test]
    fn a_complete_startup_block_decodes() {
        let s = startup("keel-startup 1\narg console\narg uart=0x9000000:0x1000:33\ncap control 2\ncap procmgr 3\ncap namesrv 4\n");
        let c = Config::from_startup(&s).unwrap();
        assert_eq!((c.uart.base, c.control, c.procmgr, c.namesrv), (0x900_0000, 2, 3, 4));
    }

    #[test]
    fn a_missing_or_bad_uart_argument_exits_with_code_2() {
        let none = startup("keel-startup 1\ncap control 2\ncap procmgr 3\ncap namesrv 4\n");
        let e = Config::from_startup(&none).unwrap_err();
        assert_eq!(e, ConsoleError::MissingUartArg);
        assert_eq!(e.exit_code(), 2);
        let bad = startup("keel-startup 1\narg uart=nonsense\ncap control 2\ncap procmgr 3\ncap namesrv 4\n");
        let e = Config::from_startup(&bad).unwrap_err();
        assert_eq!(e.exit_code(), 2);
        assert_eq!(e.to_string(), "bad uart= argument: expected uart=<base hex>:<size hex>:<intid>");
    }

    #[test]
    fn a_missing_capability_is_named() {
        let s = startup("keel-startup 1\narg uart=0x9000000:0x1000:33\ncap control 2\ncap namesrv 4\n");
        assert_eq!(Config::from_startup(&s), Err(ConsoleError::MissingCap("procmgr")));
    }
}
