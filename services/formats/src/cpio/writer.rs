//! The newc writer, for tests and host tools that build initrds.
//!
//! It writes exactly the layout the reader accepts: `070701` headers with upper-case hex fields,
//! each name NUL-terminated and padded so header plus name is a multiple of 4, each file's data
//! padded to 4, then the `TRAILER!!!` entry. Inode numbers are the entry's 1-based position,
//! `nlink` is 1, owner, times and devices are zero. Names are written as given.

use alloc::vec::Vec;

use super::TRAILER_NAME;

/// A newc archive holding `entries` — `(name, mode, data)` — in order, followed by the trailer.
///
/// # Panics
///
/// If a name (plus its NUL) or a file is 4 GiB or larger: newc sizes are 32-bit, and writing a
/// truncated size would produce a corrupt archive. This is a tool for trusted input; the kernel
/// never writes archives.
pub fn write_newc(entries: &[(&str, u32, &[u8])]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut ino: u32 = 0;
    for &(name, mode, data) in entries {
        ino = ino.wrapping_add(1);
        append_entry(&mut out, ino, name, mode, data);
    }
    append_entry(&mut out, 0, TRAILER_NAME, 0, &[]);
    out
}

fn append_entry(out: &mut Vec<u8>, ino: u32, name: &str, mode: u32, data: &[u8]) {
    let namesize = name
        .len()
        .checked_add(1)
        .and_then(|n| u32::try_from(n).ok())
        .expect("write_newc precondition: cpio newc names are shorter than 4 GiB");
    let filesize = u32::try_from(data.len())
        .expect("write_newc precondition: cpio newc files are smaller than 4 GiB");
    let nlink = 1;
    let fields = [ino, mode, 0, 0, nlink, 0, filesize, 0, 0, 0, 0, namesize, 0];

    out.extend_from_slice(b"070701");
    for field in fields {
        out.extend_from_slice(&hex8(field));
    }
    out.extend_from_slice(name.as_bytes());
    out.push(0);
    pad4(out);
    out.extend_from_slice(data);
    pad4(out);
}

/// `value` as eight upper-case ASCII hex digits.
fn hex8(value: u32) -> [u8; 8] {
    const DIGITS: &[u8; 16] = b"0123456789ABCDEF";
    let mut text = [0u8; 8];
    for (i, digit) in text.iter_mut().enumerate() {
        let shift = 28 - 4 * i;
        *digit = DIGITS[((value >> shift) & 0xf) as usize];
    }
    text
}

/// Zero bytes up to the next multiple of 4 (the archive starts at offset 0, so the buffer length
/// is the archive offset).
fn pad4(out: &mut Vec<u8>) {
    while !out.len().is_multiple_of(4) {
        out.push(0);
    }
}
