//! Printing: `print!`/`println!` write whole formatted strings to the console through the
//! kernel's `debug_write`, so lines from different processes never interleave within a call.

use alloc::string::String;
use core::fmt::Write;

/// Writes formatted text (one system call per 4 KiB).
pub fn print(args: core::fmt::Arguments) {
    let mut s = String::new();
    let _ = s.write_fmt(args);
    write_str(&s);
}

/// Writes a string.
pub fn write_str(s: &str) {
    for chunk in s.as_bytes().chunks(4096) {
        let _ = crate::sys::debug_write(chunk);
    }
}

#[macro_export]
macro_rules! print {
    ($($arg:tt)*) => { $crate::io::print(format_args!($($arg)*)) };
}

#[macro_export]
macro_rules! println {
    () => { $crate::io::write_str("\n") };
    ($($arg:tt)*) => { $crate::io::print(format_args!("{}\n", format_args!($($arg)*))) };
}
