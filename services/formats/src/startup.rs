//! The startup block a process finds at entry (docs/ABI.md): its arguments and the capabilities
//! its creator placed in its table, by name. Written by the kernel (for init) and by
//! `keel_rt::process::spawn`, read by `keel_rt` at entry.
//!
//! ```text
//! keel-startup 1
//! arg <text>          (one per argument, in order)
//! cap <name> <slot>   (one per named capability)
//! ```

use alloc::string::{String, ToString};
use alloc::vec::Vec;

/// What a program was started with.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Startup {
    /// The arguments, argv[0] first.
    pub args: Vec<String>,
    /// Named capabilities: (name, slot in the process's table).
    pub caps: Vec<(String, u32)>,
}

/// Why a startup block could not be read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StartupError {
    /// The first line is not `keel-startup 1`.
    BadHeader,
    /// This (1-based) line is neither `arg ...` nor `cap <name> <slot>`.
    BadLine(usize),
}

impl Startup {
    /// Parses a startup block. Lines end at `\n` only: a `\r` is part of the line (an argument
    /// may end in one), so whatever [`Startup::render`] writes parses back the same.
    pub fn parse(text: &str) -> Result<Self, StartupError> {
        let mut lines = text.split('\n');
        if lines.next() != Some("keel-startup 1") {
            return Err(StartupError::BadHeader);
        }
        let mut s = Startup::default();
        for (i, line) in lines.enumerate() {
            if let Some(arg) = line.strip_prefix("arg ") {
                s.args.push(arg.to_string());
            } else if let Some(rest) = line.strip_prefix("cap ") {
                let (name, slot) = rest.rsplit_once(' ').ok_or(StartupError::BadLine(i + 2))?;
                let slot = slot.parse().map_err(|_| StartupError::BadLine(i + 2))?;
                s.caps.push((name.to_string(), slot));
            } else if !line.is_empty() {
                return Err(StartupError::BadLine(i + 2));
            }
        }
        Ok(s)
    }

    /// Renders the block (the inverse of `parse`).
    pub fn render(&self) -> String {
        let mut out = String::from("keel-startup 1\n");
        for a in &self.args {
            out.push_str("arg ");
            out.push_str(&a.replace('\n', " "));
            out.push('\n');
        }
        for (name, slot) in &self.caps {
            out.push_str(&alloc::format!("cap {name} {slot}\n"));
        }
        out
    }

    /// The slot of the capability named `name`.
    pub fn cap(&self, name: &str) -> Option<u32> {
        self.caps.iter().find(|(n, _)| n == name).map(|&(_, s)| s)
    }

    /// The value of the first `key=value` argument.
    pub fn arg_value(&self, key: &str) -> Option<&str> {
        self.args.iter().find_map(|a| a.strip_prefix(key)?.strip_prefix('='))
    }
}

/// The `initrd=<offset>:<size>` startup argument (hex, `0x`-prefixed): where the archive sits
/// inside the initrd memory object (init and the VM monitor are given it).
pub fn parse_initrd_arg(value: &str) -> Option<(u64, u64)> {
    let hex = |s: &str| u64::from_str_radix(s.strip_prefix("0x")?, 16).ok();
    let (off, size) = value.split_once(':')?;
    Some((hex(off)?, hex(size)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_args_and_caps_and_renders_back() {
        let text = "keel-startup 1\narg shell\narg scenario=ipc\ncap control 2\ncap initrd 3\n";
        let s = Startup::parse(text).unwrap();
        assert_eq!(s.args, ["shell", "scenario=ipc"]);
        assert_eq!(s.cap("initrd"), Some(3));
        assert_eq!(s.cap("nothing"), None);
        assert_eq!(s.arg_value("scenario"), Some("ipc"));
        assert_eq!(s.render(), text);
    }

    #[test]
    fn malformed_blocks_are_errors() {
        assert_eq!(Startup::parse(""), Err(StartupError::BadHeader));
        assert_eq!(Startup::parse("keel-startup 2\n"), Err(StartupError::BadHeader));
        assert_eq!(Startup::parse("keel-startup 1\ncap x y\n"), Err(StartupError::BadLine(2)));
        assert_eq!(Startup::parse("keel-startup 1\narg a\nbogus\n"), Err(StartupError::BadLine(3)));
    }
}
