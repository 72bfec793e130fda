//! The initrd archive: a reader (and, in [`write_newc`], a writer) for the cpio "newc" format.
//!
//! An archive is a sequence of entries, each a 110-byte ASCII header — the magic `070701`
//! (`070702`, the "crc" variant, is accepted too and its checksum ignored) then 13 fields of 8
//! hex digits: ino, mode, uid, gid, nlink, mtime, filesize, devmajor, devminor, rdevmajor,
//! rdevminor, namesize, check — followed by the name (`namesize` bytes including its NUL, and
//! possibly more NULs after it: a writer may pad the name so the data starts page-aligned), padded
//! so that header and name end on a 4-byte boundary, then `filesize` bytes of data padded to 4.
//! The entry named `TRAILER!!!` ends the archive; whatever follows it (block padding, usually) is
//! ignored.
//!
//! This module owns decoding that layout from untrusted bytes. It never copies: an [`Entry`]
//! borrows its name and data from the archive. It never panics or reads outside the buffer, and
//! every step forward is at least 112 bytes, so a walk always ends. An archive that ends without
//! its trailer is an error, never a silently short listing. Names are reported without their
//! leading `/` or `./`. Hard links are not resolved (newc stores the data with one of the links
//! only), nor are symbolic links: [`Archive::find`] answers for regular files alone.

mod writer;

pub use writer::write_newc;

use crate::FormatError;
use alloc::collections::BTreeMap;

/// Length of a newc header.
const HEADER_LEN: usize = 110;
/// The name of the entry that ends an archive.
const TRAILER_NAME: &str = "TRAILER!!!";
/// The file-type bits of `mode`.
const S_IFMT: u32 = 0o170000;
/// The file-type value of a regular file.
const S_IFREG: u32 = 0o100000;

/// The 13 hex fields of a header, by name, in order (the names appear in errors).
const FIELDS: [&str; 13] = [
    "ino",
    "mode",
    "uid",
    "gid",
    "nlink",
    "mtime",
    "filesize",
    "devmajor",
    "devminor",
    "rdevmajor",
    "rdevminor",
    "namesize",
    "check",
];
const MODE: usize = 1;
const FILESIZE: usize = 6;
const NAMESIZE: usize = 11;

/// Whether `mode` (an entry's `st_mode`) describes a regular file.
pub fn is_regular(mode: u32) -> bool {
    mode & S_IFMT == S_IFREG
}

/// One archive member, borrowed from the archive bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry<'a> {
    /// Path inside the archive, without a leading `/` or `./` (so `./bin/init` is `bin/init`).
    pub name: &'a str,
    /// `st_mode`: file type and permission bits.
    pub mode: u32,
    /// The file contents (the link target for a symbolic link; empty for a directory).
    pub data: &'a [u8],
}

/// A newc cpio archive, borrowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Archive<'a> {
    bytes: &'a [u8],
}

impl<'a> Archive<'a> {
    /// Wraps `bytes` after checking that it starts with a well-formed newc header (magic and hex
    /// fields). Cheap: the rest of the archive is checked as [`Archive::entries`] walks it.
    pub fn new(bytes: &'a [u8]) -> Result<Self, FormatError> {
        parse_header(bytes, 0)?;
        Ok(Self { bytes })
    }

    /// The entries in archive order, trailer excluded. Iteration stops after `TRAILER!!!`; a
    /// malformed entry (or the end of the buffer before the trailer) is yielded once as an error
    /// and ends iteration.
    pub fn entries(&self) -> impl Iterator<Item = Result<Entry<'a>, FormatError>> + use<'a> {
        Entries {
            bytes: self.bytes,
            offset: 0,
            done: false,
        }
    }

    /// The regular file at `path` (with or without a leading `/` or `./`).
    ///
    /// The whole archive is walked (so any malformed entry is an error, even one after the
    /// match), and the *last* entry named `path` decides, as it does when the kernel unpacks an
    /// initramfs: if it is a regular file it is returned, and if it is anything else — a
    /// directory, a symbolic link (never followed), a device — the answer is `Ok(None)`, as it is
    /// when no entry has that name. Callers that need to tell these apart use [`Archive::entries`].
    pub fn find(&self, path: &str) -> Result<Option<Entry<'a>>, FormatError> {
        let wanted = strip_root(path);
        let mut found = None;
        for entry in self.entries() {
            let entry = entry?;
            if entry.name == wanted {
                found = Some(entry);
            }
        }
        Ok(found.filter(|e| is_regular(e.mode)))
    }

    /// Whether `mode` describes a regular file (the same as the free function [`is_regular`]).
    pub fn is_regular(mode: u32) -> bool {
        is_regular(mode)
    }

    /// Walks the archive once and keeps what [`Archive::find`] would answer for every name: a
    /// process that looks files up again and again (init, at each spawn) pays for the walk once.
    /// An error anywhere in the archive is the same error `find` gives.
    pub fn index(&self) -> Result<Index<'a>, FormatError> {
        let mut files = BTreeMap::new();
        for entry in self.entries() {
            let entry = entry?;
            // The last entry of a name decides, regular file or not (see `find`).
            files.insert(entry.name, entry);
        }
        files.retain(|_, e| is_regular(e.mode));
        Ok(Index { files })
    }
}

/// The regular files of an archive by name, from [`Archive::index`].
#[derive(Clone, Debug)]
pub struct Index<'a> {
    files: BTreeMap<&'a str, Entry<'a>>,
}

impl<'a> Index<'a> {
    /// What [`Archive::find`] answers for `path` (which the walk found valid).
    pub fn find(&self, path: &str) -> Option<Entry<'a>> {
        self.files.get(strip_root(path)).copied()
    }
}

/// The iterator behind [`Archive::entries`].
struct Entries<'a> {
    bytes: &'a [u8],
    /// Offset of the next header: a multiple of 4, or the buffer length.
    offset: usize,
    /// Set once the trailer or an error has been seen.
    done: bool,
}

impl<'a> Iterator for Entries<'a> {
    type Item = Result<Entry<'a>, FormatError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        match parse_entry(self.bytes, self.offset) {
            Ok((entry, _)) if entry.name == TRAILER_NAME => {
                self.done = true;
                None
            }
            Ok((entry, next)) => {
                self.offset = next;
                Some(Ok(entry))
            }
            Err(e) => {
                self.done = true;
                Some(Err(e))
            }
        }
    }
}

/// The decoded fields of one header.
struct Header {
    mode: u32,
    filesize: usize,
    namesize: usize,
}

/// Decodes the header at `offset`.
fn parse_header(bytes: &[u8], offset: usize) -> Result<Header, FormatError> {
    if offset == bytes.len() {
        return Err(FormatError::CpioMissingTrailer { offset });
    }
    let header = offset
        .checked_add(HEADER_LEN)
        .and_then(|end| bytes.get(offset..end))
        .ok_or(FormatError::CpioTruncated {
            offset,
            part: "header",
        })?;
    let (magic, fields) = header.split_at(6);
    if magic != b"070701" && magic != b"070702" {
        return Err(FormatError::CpioBadMagic { offset });
    }
    let mut values = [0u32; 13];
    for ((value, digits), field) in values.iter_mut().zip(fields.chunks_exact(8)).zip(FIELDS) {
        *value = parse_hex(digits).ok_or(FormatError::CpioBadHexField { offset, field })?;
    }
    let size = |index: usize| {
        usize::try_from(values[index]).map_err(|_| FormatError::CpioTruncated {
            offset,
            part: if index == NAMESIZE { "name" } else { "data" },
        })
    };
    Ok(Header {
        mode: values[MODE],
        filesize: size(FILESIZE)?,
        namesize: size(NAMESIZE)?,
    })
}

/// Decodes the entry at `offset` and returns it with the offset of the next header.
fn parse_entry(bytes: &[u8], offset: usize) -> Result<(Entry<'_>, usize), FormatError> {
    let header = parse_header(bytes, offset)?;
    let truncated = |part| FormatError::CpioTruncated { offset, part };

    // `offset + HEADER_LEN` fits: parse_header read that far.
    let name_start = offset + HEADER_LEN;
    let name_end = name_start
        .checked_add(header.namesize)
        .ok_or(truncated("name"))?;
    let raw_name = bytes.get(name_start..name_end).ok_or(truncated("name"))?;
    // The name ends at its first NUL; any bytes after that one are NUL too (a writer that
    // aligns file data pads the name field so, as dracut-cpio's --data-align does).
    let name = match raw_name.iter().position(|&b| b == 0) {
        Some(end) if raw_name[end..].iter().all(|&b| b == 0) => &raw_name[..end],
        _ => return Err(FormatError::CpioNameNotTerminated { offset }),
    };
    let name = core::str::from_utf8(name).map_err(|_| FormatError::CpioNameNotUtf8 { offset })?;

    let data_start = align4(name_end).ok_or(truncated("name"))?;
    let data_end = data_start
        .checked_add(header.filesize)
        .ok_or(truncated("data"))?;
    let data = bytes.get(data_start..data_end).ok_or(truncated("data"))?;
    // The padding after the data may be missing at the very end of the buffer (after the
    // trailer); the next header read reports anything else.
    let next = align4(data_end).ok_or(truncated("data"))?.min(bytes.len());

    let entry = Entry {
        name: strip_root(name),
        mode: header.mode,
        data,
    };
    Ok((entry, next))
}

/// Eight ASCII hex digits (either case) as a number.
fn parse_hex(digits: &[u8]) -> Option<u32> {
    digits.iter().try_fold(0u32, |acc, &d| {
        let nibble = char::from(d).to_digit(16)?;
        Some((acc << 4) | nibble)
    })
}

/// `n` rounded up to a multiple of 4, or `None` on overflow.
fn align4(n: usize) -> Option<usize> {
    Some(n.checked_add(3)? & !3)
}

/// `path` without any leading `/` and `./` components.
fn strip_root(mut path: &str) -> &str {
    loop {
        if let Some(rest) = path.strip_prefix('/') {
            path = rest;
        } else if let Some(rest) = path.strip_prefix("./") {
            path = rest;
        } else {
            return path;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_fields_accept_both_cases_and_reject_other_characters() {
        assert_eq!(parse_hex(b"0000abCD"), Some(0xabcd));
        assert_eq!(parse_hex(b"FFFFFFFF"), Some(u32::MAX));
        assert_eq!(parse_hex(b"0000 12g"), None);
        assert_eq!(parse_hex(b"+0000001"), None);
    }

    #[test]
    fn strip_root_removes_every_leading_slash_and_dot_slash() {
        assert_eq!(strip_root("/bin/init"), "bin/init");
        assert_eq!(strip_root("./bin/init"), "bin/init");
        assert_eq!(strip_root(".//./bin"), "bin");
        assert_eq!(strip_root("."), ".");
        assert_eq!(strip_root("..hidden"), "..hidden");
    }

    #[test]
    fn align4_reports_overflow_instead_of_wrapping() {
        assert_eq!(align4(5), Some(8));
        assert_eq!(align4(8), Some(8));
        assert_eq!(align4(usize::MAX), None);
    }
}
