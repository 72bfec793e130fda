//! Decoding what init is given and asked: its startup arguments and spawn requests.

use alloc::string::String;
use alloc::vec::Vec;

pub use keel_formats::startup::parse_initrd_arg;

/// A spawn request's payload: the program path, then its arguments, NUL-separated.
#[derive(Debug, PartialEq, Eq)]
pub struct SpawnRequest {
    pub path: String,
    pub args: Vec<String>,
}

/// Why a spawn request is refused.
#[derive(Debug, PartialEq, Eq)]
pub enum SpawnError {
    Empty,
    NotUtf8,
    RelativePath,
    TooManyArgs,
}

/// Most arguments a program may be given.
pub const MAX_ARGS: usize = 32;

pub fn parse_spawn(payload: &[u8]) -> Result<SpawnRequest, SpawnError> {
    let text = core::str::from_utf8(payload).map_err(|_| SpawnError::NotUtf8)?;
    let mut parts = text.split('\0').filter(|p| !p.is_empty());
    let path = parts.next().ok_or(SpawnError::Empty)?;
    if !path.starts_with('/') {
        return Err(SpawnError::RelativePath);
    }
    let args: Vec<String> = parts.map(String::from).collect();
    if args.len() > MAX_ARGS {
        return Err(SpawnError::TooManyArgs);
    }
    Ok(SpawnRequest { path: String::from(path), args })
}

/// The program's name: the last component of its path.
pub fn program_name(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

/// One `ps` line ([`keel_rt::proto::procmgr::PsLine`]).
pub fn ps_line(pid: u64, name: &str, running: bool, exit_code: i64, pages: u64, quota: u64) -> String {
    let state = if running { String::from("running") } else { alloc::format!("exited({exit_code})") };
    keel_rt::proto::procmgr::PsLine { pid, name: name.into(), state, mem_kib: pages * 4, quota }.format()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn initrd_argument_is_two_hex_numbers() {
        assert_eq!(parse_initrd_arg("0x0:0x44ac00"), Some((0, 0x44ac00)));
        assert_eq!(parse_initrd_arg("0x10:zz"), None);
        assert_eq!(parse_initrd_arg("16:32"), None);
        assert_eq!(parse_initrd_arg("0x10"), None);
    }

    #[test]
    fn spawn_payload_splits_path_and_args() {
        let r = parse_spawn(b"/bin/ktest\0ipc\0-v").unwrap();
        assert_eq!(r.path, "/bin/ktest");
        assert_eq!(r.args, ["ipc", "-v"]);
        assert_eq!(program_name(&r.path), "ktest");
    }

    #[test]
    fn bad_spawn_payloads_are_refused() {
        assert_eq!(parse_spawn(b""), Err(SpawnError::Empty));
        assert_eq!(parse_spawn(b"\0\0"), Err(SpawnError::Empty));
        assert_eq!(parse_spawn(b"bin/x"), Err(SpawnError::RelativePath));
        assert_eq!(parse_spawn(&[0x2f, 0xff, 0xfe]), Err(SpawnError::NotUtf8));
        let many: Vec<u8> = b"/bin/x".iter().copied().chain((0..40).flat_map(|_| *b"\0a")).collect();
        assert_eq!(parse_spawn(&many), Err(SpawnError::TooManyArgs));
    }

    #[test]
    fn ps_lines_show_state_and_memory_in_kib() {
        assert_eq!(ps_line(3, "shell", true, 0, 10, 1), "3\tshell\trunning\t40\t1\n");
        assert_eq!(ps_line(9, "crash", false, -11, 0, 4), "9\tcrash\texited(-11)\t0\t4\n");
    }
}
