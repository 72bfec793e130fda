//! Static AArch64 ELF64 executables for EL0: decodes the file header and program headers of an
//! untrusted file into an [`Executable`] — an entry point and up to [`MAX_SEGMENTS`] loadable
//! segments — that a loader can map without further checks.
//!
//! Accepted: ELFCLASS64, little endian, version 1, `EM_AARCH64`, `ET_EXEC` (static, non-PIE;
//! `ET_DYN` is refused, as are `PT_INTERP` and `PT_DYNAMIC`, since there is no dynamic linker),
//! `e_ehsize` 64, `e_phentsize` 56, at most 64 program headers, all inside the file. Program
//! headers other than `PT_LOAD`, `PT_INTERP` and `PT_DYNAMIC` (`PT_GNU_STACK`, `PT_NOTE`,
//! `PT_TLS`...) are ignored, as are the section headers. A `PT_LOAD` with `p_memsz == 0` maps
//! nothing and is skipped once its sizes are checked.
//!
//! Invariants of every [`Executable`] returned — what the loader may rely on:
//! - each segment's `file_size <= mem_size`, and its file bytes lie inside the file;
//! - each segment's page-rounded range `[vaddr & !0xfff, align_up(vaddr + mem_size))` lies inside
//!   the [`UserLimits`] and does not wrap; `file_offset % 4096 == vaddr % 4096`;
//! - no two segments share a page, so each page gets exactly one set of permissions;
//! - no segment is both writable and executable (W^X);
//! - there is at least one segment, and `entry` lies inside an executable one.
//!
//! Bytes of a segment between `file_size` and `mem_size` (the `.bss`) are the loader's to zero.
//! Parsing never allocates, never panics and reads only through bounds-checked accessors.

mod segments;

pub use segments::Segments;

use crate::FormatError;

/// The most `PT_LOAD` segments an executable may have.
pub const MAX_SEGMENTS: usize = 16;
/// The most program headers (of any type) an executable may have.
pub const MAX_PROGRAM_HEADERS: u16 = 64;
/// The page size segments are mapped with.
pub const PAGE_SIZE: u64 = 4096;

const EHDR_SIZE: usize = 64;
const PHDR_SIZE: usize = 56;
const ELFCLASS64: u8 = 2;
const ELFDATA2LSB: u8 = 1;
const EV_CURRENT: u8 = 1;
const ET_EXEC: u16 = 2;
const ET_DYN: u16 = 3;
const EM_AARCH64: u16 = 183;
const PT_LOAD: u32 = 1;
const PT_DYNAMIC: u32 = 2;
const PT_INTERP: u32 = 3;
const PF_X: u32 = 1;
const PF_W: u32 = 2;
const PF_R: u32 = 4;

/// The user virtual-address window every segment must lie in: `min_vaddr..max_vaddr`
/// (for example `0x1000..0x0000_8000_0000_0000`, which keeps page 0 unmapped).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UserLimits {
    /// Lowest address a segment page may start at.
    pub min_vaddr: u64,
    /// One past the highest address a segment page may cover.
    pub max_vaddr: u64,
}

/// One loadable (`PT_LOAD`) segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segment {
    /// Virtual address of the first byte.
    pub vaddr: u64,
    /// Bytes of memory the segment occupies (file bytes, then zeros).
    pub mem_size: u64,
    /// Offset of the segment's bytes in the file.
    pub file_offset: u64,
    /// Bytes taken from the file.
    pub file_size: u64,
    /// `PF_R`.
    pub read: bool,
    /// `PF_W`.
    pub write: bool,
    /// `PF_X`.
    pub exec: bool,
}

impl Segment {
    const EMPTY: Segment = Segment {
        vaddr: 0,
        mem_size: 0,
        file_offset: 0,
        file_size: 0,
        read: false,
        write: false,
        exec: false,
    };

    /// The page-rounded address range `[start, end)`, or `None` if it wraps.
    fn pages(&self) -> Option<(u64, u64)> {
        let start = self.vaddr & !(PAGE_SIZE - 1);
        let end = self
            .vaddr
            .checked_add(self.mem_size)?
            .checked_add(PAGE_SIZE - 1)?
            & !(PAGE_SIZE - 1);
        Some((start, end))
    }

    fn contains(&self, addr: u64) -> bool {
        // `vaddr + mem_size` was checked not to wrap when the segment was accepted.
        addr >= self.vaddr && addr - self.vaddr < self.mem_size
    }
}

/// A validated static executable, borrowing the file it came from.
#[derive(Debug, Clone, Copy)]
pub struct Executable<'a> {
    /// The entry point; inside an executable segment.
    pub entry: u64,
    /// The loadable segments, in program-header order.
    pub segments: Segments,
    data: &'a [u8],
}

impl<'a> Executable<'a> {
    /// Decodes and validates `data` against every rule in the module documentation, with
    /// segments confined to `limits`.
    pub fn parse(data: &'a [u8], limits: &UserLimits) -> Result<Self, FormatError> {
        let header = FileHeader::parse(data)?;
        let mut segments = Segments::new();
        // The program-header index of each accepted segment, for error messages.
        let mut header_indices = [0usize; MAX_SEGMENTS];
        for index in 0..usize::from(header.phnum) {
            let phdr = ProgramHeader::read(data, header.phoff, index)?;
            match phdr.p_type {
                PT_LOAD => {
                    let Some(segment) = check_load(&phdr, index, data.len(), limits)? else {
                        continue;
                    };
                    let accepted = segments.len();
                    check_no_overlap(&segment, index, &segments, &header_indices)?;
                    segments
                        .push(segment)
                        .map_err(|_| FormatError::ElfTooManySegments)?;
                    if let Some(slot) = header_indices.get_mut(accepted) {
                        *slot = index;
                    }
                }
                PT_DYNAMIC | PT_INTERP => return Err(FormatError::ElfDynamicLinking { index }),
                _ => {}
            }
        }
        if segments.is_empty() {
            return Err(FormatError::ElfNoLoadableSegment);
        }
        if !segments.iter().any(|s| s.exec && s.contains(header.entry)) {
            return Err(FormatError::ElfEntryNotExecutable {
                entry: header.entry,
            });
        }
        Ok(Self {
            entry: header.entry,
            segments,
            data,
        })
    }

    /// The `file_size` bytes of `segment` as stored in the file. For a segment of this
    /// executable they are always present; for any other `Segment` whose file range is not
    /// inside this file the result is empty.
    pub fn segment_bytes(&self, segment: &Segment) -> &'a [u8] {
        let range = usize::try_from(segment.file_offset).ok().and_then(|start| {
            let len = usize::try_from(segment.file_size).ok()?;
            Some(start..start.checked_add(len)?)
        });
        range.and_then(|r| self.data.get(r)).unwrap_or(&[])
    }
}

/// The fields of the ELF64 file header the loader needs, after validation.
struct FileHeader {
    entry: u64,
    phoff: usize,
    phnum: u16,
}

impl FileHeader {
    fn parse(data: &[u8]) -> Result<Self, FormatError> {
        let ehdr = data.get(..EHDR_SIZE).ok_or(FormatError::ElfTooShort)?;
        if ehdr.get(..4) != Some(b"\x7fELF".as_slice()) {
            return Err(FormatError::ElfBadMagic);
        }
        if u8_at(ehdr, 4) != Some(ELFCLASS64) {
            return Err(FormatError::ElfNotClass64);
        }
        if u8_at(ehdr, 5) != Some(ELFDATA2LSB) {
            return Err(FormatError::ElfNotLittleEndian);
        }
        if u8_at(ehdr, 6) != Some(EV_CURRENT) || u32_at(ehdr, 20) != Some(u32::from(EV_CURRENT)) {
            return Err(FormatError::ElfBadVersion);
        }
        let machine = u16_at(ehdr, 18).ok_or(FormatError::ElfTooShort)?;
        if machine != EM_AARCH64 {
            return Err(FormatError::ElfWrongMachine { machine });
        }
        match u16_at(ehdr, 16).ok_or(FormatError::ElfTooShort)? {
            ET_EXEC => {}
            ET_DYN => return Err(FormatError::ElfPositionIndependent),
            e_type => return Err(FormatError::ElfNotExecutable { e_type }),
        }
        let ehsize = u16_at(ehdr, 52).map(usize::from);
        let phentsize = u16_at(ehdr, 54).map(usize::from);
        if ehsize != Some(EHDR_SIZE) || phentsize != Some(PHDR_SIZE) {
            return Err(FormatError::ElfBadHeaderSize);
        }
        let phnum = u16_at(ehdr, 56).ok_or(FormatError::ElfTooShort)?;
        if phnum > MAX_PROGRAM_HEADERS {
            return Err(FormatError::ElfTooManyProgramHeaders { count: phnum });
        }
        let phoff = u64_at(ehdr, 32)
            .and_then(|off| usize::try_from(off).ok())
            .ok_or(FormatError::ElfProgramHeadersOutsideFile)?;
        let table_end = usize::from(phnum)
            .checked_mul(PHDR_SIZE)
            .and_then(|len| phoff.checked_add(len))
            .ok_or(FormatError::ElfProgramHeadersOutsideFile)?;
        if table_end > data.len() {
            return Err(FormatError::ElfProgramHeadersOutsideFile);
        }
        Ok(Self {
            entry: u64_at(ehdr, 24).ok_or(FormatError::ElfTooShort)?,
            phoff,
            phnum,
        })
    }
}

/// One ELF64 program header, raw.
struct ProgramHeader {
    p_type: u32,
    p_flags: u32,
    p_offset: u64,
    p_vaddr: u64,
    p_filesz: u64,
    p_memsz: u64,
}

impl ProgramHeader {
    /// Reads program header `index` of the table at `phoff` (already checked to be in the file).
    fn read(data: &[u8], phoff: usize, index: usize) -> Result<Self, FormatError> {
        let outside = FormatError::ElfProgramHeadersOutsideFile;
        let start = index
            .checked_mul(PHDR_SIZE)
            .and_then(|rel| phoff.checked_add(rel))
            .ok_or(outside)?;
        let raw = start
            .checked_add(PHDR_SIZE)
            .and_then(|end| data.get(start..end))
            .ok_or(outside)?;
        let field = |offset| u64_at(raw, offset).ok_or(outside);
        Ok(Self {
            p_type: u32_at(raw, 0).ok_or(outside)?,
            p_flags: u32_at(raw, 4).ok_or(outside)?,
            p_offset: field(8)?,
            p_vaddr: field(16)?,
            p_filesz: field(32)?,
            p_memsz: field(40)?,
        })
    }
}

/// Checks one `PT_LOAD` header; `None` for an empty one (nothing to map).
fn check_load(
    phdr: &ProgramHeader,
    index: usize,
    file_len: usize,
    limits: &UserLimits,
) -> Result<Option<Segment>, FormatError> {
    if phdr.p_filesz > phdr.p_memsz {
        return Err(FormatError::ElfFileSizeExceedsMemSize { index });
    }
    let inside_file = phdr
        .p_offset
        .checked_add(phdr.p_filesz)
        .and_then(|end| usize::try_from(end).ok())
        .is_some_and(|end| end <= file_len);
    if !inside_file {
        return Err(FormatError::ElfSegmentOutsideFile { index });
    }
    if phdr.p_memsz == 0 {
        return Ok(None);
    }
    let segment = Segment {
        vaddr: phdr.p_vaddr,
        mem_size: phdr.p_memsz,
        file_offset: phdr.p_offset,
        file_size: phdr.p_filesz,
        read: phdr.p_flags & PF_R != 0,
        write: phdr.p_flags & PF_W != 0,
        exec: phdr.p_flags & PF_X != 0,
    };
    match segment.pages() {
        Some((start, end)) if start >= limits.min_vaddr && end <= limits.max_vaddr => {}
        _ => return Err(FormatError::ElfSegmentOutsideLimits { index }),
    }
    if phdr.p_offset % PAGE_SIZE != phdr.p_vaddr % PAGE_SIZE {
        return Err(FormatError::ElfSegmentNotPageCongruent { index });
    }
    if segment.write && segment.exec {
        return Err(FormatError::ElfWritableAndExecutable { index });
    }
    Ok(Some(segment))
}

/// Fails if `segment` (from program header `index`) shares a page with one already accepted;
/// `accepted_indices[k]` is the program-header index of `accepted[k]`.
fn check_no_overlap(
    segment: &Segment,
    index: usize,
    accepted: &[Segment],
    accepted_indices: &[usize],
) -> Result<(), FormatError> {
    // Accepted segments' page ranges were checked not to wrap.
    let Some((start, end)) = segment.pages() else {
        return Err(FormatError::ElfSegmentOutsideLimits { index });
    };
    for (other, &other_index) in accepted.iter().zip(accepted_indices) {
        let (other_start, other_end) = other.pages().unwrap_or((0, u64::MAX));
        if start < other_end && other_start < end {
            return Err(FormatError::ElfSegmentsOverlap {
                first: other_index,
                second: index,
            });
        }
    }
    Ok(())
}

fn u8_at(bytes: &[u8], offset: usize) -> Option<u8> {
    bytes.get(offset).copied()
}

fn u16_at(bytes: &[u8], offset: usize) -> Option<u16> {
    let raw = bytes.get(offset..offset.checked_add(2)?)?;
    Some(u16::from_le_bytes(raw.try_into().ok()?))
}

fn u32_at(bytes: &[u8], offset: usize) -> Option<u32> {
    let raw = bytes.get(offset..offset.checked_add(4)?)?;
    Some(u32::from_le_bytes(raw.try_into().ok()?))
}

fn u64_at(bytes: &[u8], offset: usize) -> Option<u64> {
    let raw = bytes.get(offset..offset.checked_add(8)?)?;
    Some(u64::from_le_bytes(raw.try_into().ok()?))
}
