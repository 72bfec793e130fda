//! `FormatError`: the one error type for malformed cpio archives and ELF executables.
//!
//! Each variant names one broken rule and carries where it was found (a byte offset into the
//! archive, a program-header index) so a log line can point at the culprit. It is `Copy` and
//! holds no borrowed data, so it outlives the input it describes. Manifest errors are their own
//! [`ManifestError`] (a line number and a reason) and convert into [`FormatError::Manifest`] for
//! callers that want a single error type.

use crate::manifest::ManifestError;
use core::fmt;

/// Why an archive or executable was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FormatError {
    // ---- cpio (newc) ----
    /// The header at `offset` does not start with `070701` or `070702`.
    CpioBadMagic {
        /// Byte offset of the header in the archive.
        offset: usize,
    },
    /// A header field of the header at `offset` is not eight ASCII hex digits.
    CpioBadHexField {
        /// Byte offset of the header in the archive.
        offset: usize,
        /// The field's name in the newc header (`"filesize"`, `"namesize"`, ...).
        field: &'static str,
    },
    /// The name of the entry at `offset` is not one string ending in a NUL byte (followed by
    /// nothing but NULs).
    CpioNameNotTerminated {
        /// Byte offset of the header in the archive.
        offset: usize,
    },
    /// The name of the entry at `offset` is not UTF-8.
    CpioNameNotUtf8 {
        /// Byte offset of the header in the archive.
        offset: usize,
    },
    /// The header, name or data of the entry at `offset` runs past the end of the archive.
    CpioTruncated {
        /// Byte offset of the header in the archive.
        offset: usize,
        /// Which part does not fit: `"header"`, `"name"` or `"data"`.
        part: &'static str,
    },
    /// The archive ends at `offset` without a `TRAILER!!!` entry.
    CpioMissingTrailer {
        /// Byte offset at which the next header was expected.
        offset: usize,
    },

    // ---- ELF ----
    /// The file is shorter than the 64-byte ELF64 header.
    ElfTooShort,
    /// The file does not start with `\x7fELF`.
    ElfBadMagic,
    /// The file is not ELFCLASS64.
    ElfNotClass64,
    /// The file is not little endian.
    ElfNotLittleEndian,
    /// `EI_VERSION` or `e_version` is not 1.
    ElfBadVersion,
    /// `e_machine` is not `EM_AARCH64` (183).
    ElfWrongMachine {
        /// The `e_machine` found.
        machine: u16,
    },
    /// `e_type` is `ET_DYN`: position-independent executables are not supported.
    ElfPositionIndependent,
    /// `e_type` is neither `ET_EXEC` nor `ET_DYN` (a relocatable object, a core file...).
    ElfNotExecutable {
        /// The `e_type` found.
        e_type: u16,
    },
    /// `e_ehsize` is not 64 or `e_phentsize` is not 56.
    ElfBadHeaderSize,
    /// `e_phnum` exceeds the 64 program headers this parser reads.
    ElfTooManyProgramHeaders {
        /// The `e_phnum` found.
        count: u16,
    },
    /// The program-header table lies (partly) outside the file.
    ElfProgramHeadersOutsideFile,
    /// A `PT_INTERP` or `PT_DYNAMIC` header: dynamic linking is not supported.
    ElfDynamicLinking {
        /// Index of the offending program header.
        index: usize,
    },
    /// A `PT_LOAD` segment has `p_filesz > p_memsz`.
    ElfFileSizeExceedsMemSize {
        /// Index of the program header.
        index: usize,
    },
    /// A `PT_LOAD` segment's file bytes lie (partly) outside the file.
    ElfSegmentOutsideFile {
        /// Index of the program header.
        index: usize,
    },
    /// A `PT_LOAD` segment's pages wrap or lie (partly) outside the user address limits.
    ElfSegmentOutsideLimits {
        /// Index of the program header.
        index: usize,
    },
    /// A `PT_LOAD` segment has `p_offset % 4096 != p_vaddr % 4096`, so it cannot be mapped.
    ElfSegmentNotPageCongruent {
        /// Index of the program header.
        index: usize,
    },
    /// A `PT_LOAD` segment is both writable and executable (W^X).
    ElfWritableAndExecutable {
        /// Index of the program header.
        index: usize,
    },
    /// Two `PT_LOAD` segments share a page.
    ElfSegmentsOverlap {
        /// Index of the earlier program header.
        first: usize,
        /// Index of the later program header.
        second: usize,
    },
    /// More `PT_LOAD` segments than [`crate::elf::MAX_SEGMENTS`].
    ElfTooManySegments,
    /// No non-empty `PT_LOAD` segment.
    ElfNoLoadableSegment,
    /// The entry point is not inside an executable segment.
    ElfEntryNotExecutable {
        /// The `e_entry` found.
        entry: u64,
    },

    // ---- manifest ----
    /// A boot-manifest error, for callers that fold everything into one type.
    Manifest(ManifestError),
}

impl fmt::Display for FormatError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::CpioBadMagic { offset } => write!(
                f,
                "cpio: header at offset {offset:#x}: bad magic (expected 070701 or 070702)"
            ),
            Self::CpioBadHexField { offset, field } => write!(
                f,
                "cpio: header at offset {offset:#x}: field {field} is not 8 hex digits"
            ),
            Self::CpioNameNotTerminated { offset } => write!(
                f,
                "cpio: entry at offset {offset:#x}: name is not NUL-terminated (or has bytes after its NUL)"
            ),
            Self::CpioNameNotUtf8 { offset } => {
                write!(f, "cpio: entry at offset {offset:#x}: name is not UTF-8")
            }
            Self::CpioTruncated { offset, part } => write!(
                f,
                "cpio: entry at offset {offset:#x}: {part} runs past the end of the archive"
            ),
            Self::CpioMissingTrailer { offset } => write!(
                f,
                "cpio: archive ends at offset {offset:#x} without a TRAILER!!! entry"
            ),
            Self::ElfTooShort => write!(f, "elf: file is shorter than an ELF64 header"),
            Self::ElfBadMagic => write!(f, "elf: bad magic (not an ELF file)"),
            Self::ElfNotClass64 => write!(f, "elf: not a 64-bit (ELFCLASS64) file"),
            Self::ElfNotLittleEndian => write!(f, "elf: not little endian"),
            Self::ElfBadVersion => write!(f, "elf: ELF version is not 1"),
            Self::ElfWrongMachine { machine } => {
                write!(f, "elf: machine {machine} is not AArch64 (183)")
            }
            Self::ElfPositionIndependent => {
                write!(f, "elf: position-independent executables are not supported")
            }
            Self::ElfNotExecutable { e_type } => {
                write!(f, "elf: type {e_type} is not a static executable (ET_EXEC)")
            }
            Self::ElfBadHeaderSize => write!(
                f,
                "elf: header sizes are not ELF64 (e_ehsize 64, e_phentsize 56)"
            ),
            Self::ElfTooManyProgramHeaders { count } => {
                write!(f, "elf: {count} program headers (at most 64 are accepted)")
            }
            Self::ElfProgramHeadersOutsideFile => {
                write!(f, "elf: program-header table lies outside the file")
            }
            Self::ElfDynamicLinking { index } => write!(
                f,
                "elf: program header {index} is PT_INTERP/PT_DYNAMIC; dynamic linking is not supported"
            ),
            Self::ElfFileSizeExceedsMemSize { index } => {
                write!(f, "elf: segment {index}: file size exceeds memory size")
            }
            Self::ElfSegmentOutsideFile { index } => {
                write!(f, "elf: segment {index}: file bytes lie outside the file")
            }
            Self::ElfSegmentOutsideLimits { index } => write!(
                f,
                "elf: segment {index}: address range wraps or lies outside user space"
            ),
            Self::ElfSegmentNotPageCongruent { index } => write!(
                f,
                "elf: segment {index}: file offset and address differ modulo the 4 KiB page"
            ),
            Self::ElfWritableAndExecutable { index } => write!(
                f,
                "elf: segment {index}: both writable and executable (W^X)"
            ),
            Self::ElfSegmentsOverlap { first, second } => {
                write!(f, "elf: segments {first} and {second} share a page")
            }
            Self::ElfTooManySegments => write!(
                f,
                "elf: more than {} loadable segments",
                crate::elf::MAX_SEGMENTS
            ),
            Self::ElfNoLoadableSegment => write!(f, "elf: no loadable segment"),
            Self::ElfEntryNotExecutable { entry } => write!(
                f,
                "elf: entry point {entry:#x} is not inside an executable segment"
            ),
            Self::Manifest(e) => write!(f, "manifest: {e}"),
        }
    }
}

impl From<ManifestError> for FormatError {
    fn from(e: ManifestError) -> Self {
        Self::Manifest(e)
    }
}
