//! The protocols of Keel's core services: labels, word layouts and helpers shared by servers and
//! clients. A reply's label is 0 for success or a negative `Error` code (see `ipc::status`).
//! Short strings (names up to 32 bytes) travel in the four data words ([`pack_name`]); longer data
//! in the connection's bulk buffer (`ipc::Client::call_bulk`).

use alloc::string::String;
use keel_abi::Error;

/// Process manager (init). Capability name in the startup block: `procmgr`.
pub mod procmgr {
    /// Bulk payload: program path, then its arguments, NUL-separated (`/bin/shell\0-x`). data[0]:
    /// flags (none defined yet; every program finds the console through namesrv). Reply: data[0]
    /// = pid; caps: the child process (READ | WAIT | MANAGE | GRANT).
    pub const SPAWN: u64 = 1;
    /// data[0] = pid. Kills a process init started (or anything under it).
    pub const KILL: u64 = 2;
    /// Reply payload: one line per process: `pid name state mem_kib`, tab-separated.
    pub const PS: u64 = 3;
    /// data[0] = 1 to reset instead of powering off.
    pub const POWER_OFF: u64 = 4;
    /// Flag for SPAWN, reserved: children look up "console" by name, so there is nothing to inherit.
    pub const SPAWN_INHERIT_CONSOLE: u64 = 1;
}

/// Name service. Capability name: `namesrv`.
pub mod namesrv {
    /// data[0..4] = name ([`super::pack_name`]); caps: [the connection to register]. A later
    /// registration of a name replaces the earlier one (a restarted service re-registers).
    pub const REGISTER: u64 = 1;
    /// data[0..4] = name. Reply caps: [a connection capability (CALL | GRANT) with a badge unique
    /// to this lookup]; `NotFound` if nobody registered the name.
    pub const LOOKUP: u64 = 2;
}

/// Console (line discipline over the UART). Registered as `console`.
pub mod console {
    /// Reply payload: one line without its newline. data[0] = 1 if Ctrl-C ended the read instead.
    pub const READ_LINE: u64 = 1;
    /// data[0] = pid of the foreground program (0 = none): Ctrl-C kills it through the process manager.
    pub const SET_FOREGROUND: u64 = 2;
}

/// VM monitor. Registered as `vmm`.
pub mod vmm {
    /// A `vm` shell command: bulk payload = its words after `vm`, NUL-separated (`run\0linux`).
    /// Reply payload: the text to print. `vm run --wait` replies when the guest has stopped.
    pub const COMMAND: u64 = 1;
}

/// Packs a name of at most 32 bytes into four words (NUL-padded).
pub fn pack_name(name: &str) -> Result<[u64; 4], Error> {
    let b = name.as_bytes();
    if b.is_empty() || b.len() > 32 || b.contains(&0) {
        return Err(Error::Invalid);
    }
    let mut bytes = [0u8; 32];
    bytes[..b.len()].copy_from_slice(b);
    let mut w = [0u64; 4];
    for (i, chunk) in bytes.chunks(8).enumerate() {
        w[i] = u64::from_le_bytes(chunk.try_into().unwrap_or([0; 8]));
    }
    Ok(w)
}

/// The inverse of [`pack_name`]; an error for empty, non-UTF-8 or badly padded names.
pub fn unpack_name(words: &[u64; 4]) -> Result<String, Error> {
    let mut bytes = [0u8; 32];
    for (i, w) in words.iter().enumerate() {
        bytes[i * 8..i * 8 + 8].copy_from_slice(&w.to_le_bytes());
    }
    let len = bytes.iter().position(|&b| b == 0).unwrap_or(32);
    if len == 0 || bytes[len..].iter().any(|&b| b != 0) {
        return Err(Error::Invalid);
    }
    core::str::from_utf8(&bytes[..len]).map(String::from).map_err(|_| Error::Invalid)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_up_to_32_bytes() {
        for n in ["a", "console", "exactly-thirty-two-bytes-long-xx"] {
            assert_eq!(unpack_name(&pack_name(n).unwrap()).unwrap(), n);
        }
    }

    #[test]
    fn bad_names_are_refused_both_ways() {
        assert_eq!(pack_name(""), Err(Error::Invalid));
        assert_eq!(pack_name(&"x".repeat(33)), Err(Error::Invalid));
        assert_eq!(pack_name("a\0b"), Err(Error::Invalid));
        assert_eq!(unpack_name(&[0; 4]), Err(Error::Invalid));
        assert_eq!(unpack_name(&[0x61, 0x62, 0, 0]), Err(Error::Invalid)); // "a" then garbage after NUL
        assert_eq!(unpack_name(&[0xff, 0, 0, 0]), Err(Error::Invalid)); // not UTF-8
    }
}
