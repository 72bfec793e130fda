//! Errno-style error codes: what every file-system operation returns, on the wire too (the file
//! service, its clients through `keel_rt::fs`, and the block drivers use them).

use core::fmt;

/// A POSIX-style error. The numbers are Linux's, so they mean what a C programmer expects; they
/// travel in IPC replies as the negative code (`-ENOENT`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(i32)]
pub enum Errno {
    Perm = 1,
    NoEnt = 2,
    /// No such process (a pid written to `cgroup.procs`).
    Srch = 3,
    Io = 5,
    BadF = 9,
    Again = 11,
    NoMem = 12,
    Acces = 13,
    Busy = 16,
    Exist = 17,
    XDev = 18,
    NotDir = 20,
    IsDir = 21,
    Inval = 22,
    NFile = 23,
    MFile = 24,
    FBig = 27,
    NoSpc = 28,
    SPipe = 29,
    RoFs = 30,
    MLink = 31,
    Range = 34,
    NameTooLong = 36,
    NoSys = 38,
    NotEmpty = 39,
    Loop = 40,
    /// The service restarted while handling the call: it may or may not have taken effect.
    ConnReset = 104,
    /// The on-disk structure is inconsistent (Linux's EFSCORRUPTED).
    Corrupt = 117,
}

const ALL: [Errno; 28] = [
    Errno::Perm,
    Errno::NoEnt,
    Errno::Srch,
    Errno::Io,
    Errno::BadF,
    Errno::Again,
    Errno::NoMem,
    Errno::Acces,
    Errno::Busy,
    Errno::Exist,
    Errno::XDev,
    Errno::NotDir,
    Errno::IsDir,
    Errno::Inval,
    Errno::NFile,
    Errno::MFile,
    Errno::FBig,
    Errno::NoSpc,
    Errno::SPipe,
    Errno::RoFs,
    Errno::MLink,
    Errno::Range,
    Errno::NameTooLong,
    Errno::NoSys,
    Errno::NotEmpty,
    Errno::Loop,
    Errno::ConnReset,
    Errno::Corrupt,
];

impl Errno {
    /// The positive errno number.
    pub fn code(self) -> i32 {
        self as i32
    }

    /// The error with this errno number; `Io` for numbers we do not define.
    pub fn from_code(code: i32) -> Errno {
        ALL.iter().copied().find(|e| e.code() == code).unwrap_or(Errno::Io)
    }

    /// The C name (`ENOENT`).
    pub fn name(self) -> &'static str {
        match self {
            Errno::Perm => "EPERM",
            Errno::NoEnt => "ENOENT",
            Errno::Srch => "ESRCH",
            Errno::Io => "EIO",
            Errno::BadF => "EBADF",
            Errno::Again => "EAGAIN",
            Errno::NoMem => "ENOMEM",
            Errno::Acces => "EACCES",
            Errno::Busy => "EBUSY",
            Errno::Exist => "EEXIST",
            Errno::XDev => "EXDEV",
            Errno::NotDir => "ENOTDIR",
            Errno::IsDir => "EISDIR",
            Errno::Inval => "EINVAL",
            Errno::NFile => "ENFILE",
            Errno::MFile => "EMFILE",
            Errno::FBig => "EFBIG",
            Errno::NoSpc => "ENOSPC",
            Errno::SPipe => "ESPIPE",
            Errno::RoFs => "EROFS",
            Errno::MLink => "EMLINK",
            Errno::Range => "ERANGE",
            Errno::NameTooLong => "ENAMETOOLONG",
            Errno::NoSys => "ENOSYS",
            Errno::NotEmpty => "ENOTEMPTY",
            Errno::Loop => "ELOOP",
            Errno::ConnReset => "ECONNRESET",
            Errno::Corrupt => "EUCLEAN",
        }
    }

    /// What strerror() says.
    pub fn message(self) -> &'static str {
        match self {
            Errno::Perm => "operation not permitted",
            Errno::NoEnt => "no such file or directory",
            Errno::Srch => "no such process",
            Errno::Io => "input/output error",
            Errno::BadF => "bad file descriptor",
            Errno::Again => "resource temporarily unavailable",
            Errno::NoMem => "out of memory",
            Errno::Acces => "permission denied",
            Errno::Busy => "device or resource busy",
            Errno::Exist => "file exists",
            Errno::XDev => "cross-device link",
            Errno::NotDir => "not a directory",
            Errno::IsDir => "is a directory",
            Errno::Inval => "invalid argument",
            Errno::NFile => "too many open files in system",
            Errno::MFile => "too many open files",
            Errno::FBig => "file too large",
            Errno::NoSpc => "no space left on device",
            Errno::SPipe => "illegal seek",
            Errno::RoFs => "read-only file system",
            Errno::MLink => "too many links",
            Errno::Range => "result out of range",
            Errno::NameTooLong => "file name too long",
            Errno::NoSys => "function not implemented",
            Errno::NotEmpty => "directory not empty",
            Errno::Loop => "too many levels of symbolic links",
            Errno::ConnReset => "the service restarted during the call; it may not have completed",
            Errno::Corrupt => "structure needs cleaning (corrupt file system)",
        }
    }
}

impl fmt::Display for Errno {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.message(), self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_and_unknown_codes_are_eio() {
        for e in ALL {
            assert_eq!(Errno::from_code(e.code()), e);
        }
        assert_eq!(Errno::from_code(9999), Errno::Io);
        assert_eq!(Errno::NoEnt.to_string(), "no such file or directory (ENOENT)");
    }
}
