/// Error codes returned (negated) in x0. Values are stable ABI.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(i64)]
pub enum Error {
    /// Unknown system call number.
    NoSys = 1,
    /// The slot is out of range or empty.
    BadSlot = 2,
    /// The capability names the wrong kind of object.
    WrongType = 3,
    /// The capability lacks a right the call needs.
    NoRights = 4,
    /// An argument is out of range or malformed.
    Invalid = 5,
    /// An address or size is not page aligned.
    Unaligned = 6,
    /// A user pointer is not mapped with the needed access, or is a kernel address.
    BadAddress = 7,
    /// Out of memory (frames, slots or a quota).
    NoMemory = 8,
    /// The range is already mapped / the thing already exists.
    Exists = 9,
    /// Nothing is mapped / nothing by that name.
    NotFound = 10,
    /// The peer of an IPC died or the object is gone.
    PeerDied = 11,
    /// The call would block and the caller asked not to.
    WouldBlock = 12,
    /// The process or thread is not in a state that allows this.
    BadState = 13,
    /// The caller's slot table is full.
    TableFull = 14,
    /// A capability cannot be given more rights or a new badge.
    Escalation = 15,
    /// The operation timed out.
    TimedOut = 16,
    /// A quota's count limit (processes, threads) would be exceeded, or a quota tree would grow
    /// deeper than the kernel allows. (A memory limit reached is `NoMemory`.)
    Limit = 17,
}

impl Error {
    /// The value placed in x0.
    pub const fn code(self) -> i64 {
        -(self as i64)
    }

    /// The error a negative x0 stands for (None for success or an unknown code).
    pub fn from_code(code: i64) -> Option<Self> {
        Some(match -code {
            1 => Self::NoSys,
            2 => Self::BadSlot,
            3 => Self::WrongType,
            4 => Self::NoRights,
            5 => Self::Invalid,
            6 => Self::Unaligned,
            7 => Self::BadAddress,
            8 => Self::NoMemory,
            9 => Self::Exists,
            10 => Self::NotFound,
            11 => Self::PeerDied,
            12 => Self::WouldBlock,
            13 => Self::BadState,
            14 => Self::TableFull,
            15 => Self::Escalation,
            16 => Self::TimedOut,
            17 => Self::Limit,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::NoSys => "no such system call",
            Self::BadSlot => "bad capability slot",
            Self::WrongType => "wrong object type",
            Self::NoRights => "missing rights",
            Self::Invalid => "invalid argument",
            Self::Unaligned => "unaligned address or size",
            Self::BadAddress => "bad address",
            Self::NoMemory => "out of memory",
            Self::Exists => "already exists",
            Self::NotFound => "not found",
            Self::PeerDied => "peer died",
            Self::WouldBlock => "would block",
            Self::BadState => "bad state",
            Self::TableFull => "capability table full",
            Self::Escalation => "rights escalation",
            Self::TimedOut => "timed out",
            Self::Limit => "over a quota limit",
        }
    }
}

impl core::fmt::Display for Error {
    fn fmt(&self, f: &mut core::fmt::Formatter) -> core::fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_and_unknown_codes_are_none() {
        for e in [Error::NoSys, Error::BadSlot, Error::TimedOut, Error::Escalation, Error::Limit] {
            assert!(e.code() < 0);
            assert_eq!(Error::from_code(e.code()), Some(e));
        }
        assert_eq!(Error::from_code(0), None);
        assert_eq!(Error::from_code(-999), None);
        assert_eq!(Error::from_code(-18), None);
        assert_eq!(Error::from_code(5), None);
    }
}
