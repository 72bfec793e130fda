//! Behaviour of the ELF64 executable parser: a valid static AArch64 file is accepted with the
//! right segments, every rule in the module docs rejects the file that breaks it, and mutated
//! files either fail or still satisfy every invariant the loader relies on.

use keel_formats::FormatError;
use keel_formats::elf::{Executable, MAX_SEGMENTS, Segment, UserLimits};

const LIMITS: UserLimits = UserLimits {
    min_vaddr: 0x1000,
    max_vaddr: 0x0000_8000_0000_0000,
};

const PT_LOAD: u32 = 1;
const PT_DYNAMIC: u32 = 2;
const PT_INTERP: u32 = 3;
const PT_NOTE: u32 = 4;
const PT_GNU_STACK: u32 = 0x6474_e551;
const R: u32 = 4;
const W: u32 = 2;
const X: u32 = 1;

const TEXT_VADDR: u64 = 0x40_0000;
const DATA_VADDR: u64 = 0x41_0000;
const ENTRY: u64 = TEXT_VADDR + 0x100;

#[derive(Clone, Copy)]
struct Phdr {
    p_type: u32,
    flags: u32,
    offset: u64,
    vaddr: u64,
    filesz: u64,
    memsz: u64,
}

fn load(flags: u32, offset: u64, vaddr: u64, filesz: u64, memsz: u64) -> Phdr {
    Phdr {
        p_type: PT_LOAD,
        flags,
        offset,
        vaddr,
        filesz,
        memsz,
    }
}

fn other(p_type: u32) -> Phdr {
    Phdr {
        p_type,
        flags: R,
        offset: 0,
        vaddr: 0,
        filesz: 0,
        memsz: 0,
    }
}

/// Writes an ELF64 header, program headers at offset 64, and a body, field by field, so each
/// test can break exactly one thing.
#[derive(Clone)]
struct ElfFile {
    class: u8,
    data_encoding: u8,
    ident_version: u8,
    e_type: u16,
    machine: u16,
    version: u32,
    entry: u64,
    phoff: u64,
    ehsize: u16,
    phentsize: u16,
    phnum: Option<u16>,
    phdrs: Vec<Phdr>,
    len: usize,
}

impl ElfFile {
    /// A valid static executable: text (R+X, file offset 0, covering the headers) at 0x40_0000
    /// and data (R+W, 0x10 file bytes then bss) at 0x41_0000, file offset 0x1000.
    fn valid() -> Self {
        Self {
            class: 2,
            data_encoding: 1,
            ident_version: 1,
            e_type: 2,
            machine: 183,
            version: 1,
            entry: ENTRY,
            phoff: 64,
            ehsize: 64,
            phentsize: 56,
            phnum: None,
            phdrs: vec![
                load(R | X, 0, TEXT_VADDR, 0x400, 0x400),
                other(PT_GNU_STACK),
                load(R | W, 0x1000, DATA_VADDR, 0x10, 0x2000),
            ],
            len: 0x1010,
        }
    }

    fn with_phdrs(mut self, phdrs: Vec<Phdr>) -> Self {
        self.phdrs = phdrs;
        self
    }

    fn bytes(&self) -> Vec<u8> {
        let table_end = 64 + 56 * self.phdrs.len();
        let mut out: Vec<u8> = (0..self.len.max(table_end))
            .map(|i| (i * 7) as u8)
            .collect();
        out[..16].copy_from_slice(&[0; 16]);
        out[..4].copy_from_slice(b"\x7fELF");
        out[4] = self.class;
        out[5] = self.data_encoding;
        out[6] = self.ident_version;
        put(&mut out, 16, &self.e_type.to_le_bytes());
        put(&mut out, 18, &self.machine.to_le_bytes());
        put(&mut out, 20, &self.version.to_le_bytes());
        put(&mut out, 24, &self.entry.to_le_bytes());
        put(&mut out, 32, &self.phoff.to_le_bytes());
        put(&mut out, 40, &0u64.to_le_bytes());
        put(&mut out, 48, &0u32.to_le_bytes());
        put(&mut out, 52, &self.ehsize.to_le_bytes());
        put(&mut out, 54, &self.phentsize.to_le_bytes());
        let phnum = self.phnum.unwrap_or(self.phdrs.len() as u16);
        put(&mut out, 56, &phnum.to_le_bytes());
        put(&mut out, 58, &[0; 6]);
        for (i, p) in self.phdrs.iter().enumerate() {
            let at = 64 + 56 * i;
            put(&mut out, at, &p.p_type.to_le_bytes());
            put(&mut out, at + 4, &p.flags.to_le_bytes());
            put(&mut out, at + 8, &p.offset.to_le_bytes());
            put(&mut out, at + 16, &p.vaddr.to_le_bytes());
            put(&mut out, at + 24, &p.vaddr.to_le_bytes());
            put(&mut out, at + 32, &p.filesz.to_le_bytes());
            put(&mut out, at + 40, &p.memsz.to_le_bytes());
            put(&mut out, at + 48, &0x1000u64.to_le_bytes());
        }
        out
    }

    fn parse_err(&self) -> FormatError {
        let bytes = self.bytes();
        match Executable::parse(&bytes, &LIMITS) {
            Ok(_) => panic!("expected the file to be rejected"),
            Err(e) => e,
        }
    }
}

fn put(out: &mut [u8], at: usize, bytes: &[u8]) {
    out[at..at + bytes.len()].copy_from_slice(bytes);
}

#[test]
fn valid_two_segment_executable_parses_into_its_segments() {
    let bytes = ElfFile::valid().bytes();
    let exe = Executable::parse(&bytes, &LIMITS).expect("the reference file is valid");
    assert_eq!(exe.entry, ENTRY);
    assert_eq!(
        &exe.segments[..],
        &[
            Segment {
                vaddr: TEXT_VADDR,
                mem_size: 0x400,
                file_offset: 0,
                file_size: 0x400,
                read: true,
                write: false,
                exec: true,
            },
            Segment {
                vaddr: DATA_VADDR,
                mem_size: 0x2000,
                file_offset: 0x1000,
                file_size: 0x10,
                read: true,
                write: true,
                exec: false,
            },
        ]
    );
    assert_eq!(exe.segment_bytes(&exe.segments[0]), &bytes[..0x400]);
    assert_eq!(exe.segment_bytes(&exe.segments[1]), &bytes[0x1000..0x1010]);
}

#[test]
fn segment_bytes_of_a_foreign_segment_outside_the_file_is_empty() {
    let bytes = ElfFile::valid().bytes();
    let exe = Executable::parse(&bytes, &LIMITS).unwrap();
    let foreign = Segment {
        file_offset: u64::MAX,
        file_size: 2,
        ..exe.segments[0]
    };
    assert!(exe.segment_bytes(&foreign).is_empty());
}

#[test]
fn non_load_headers_other_than_interp_and_dynamic_are_ignored() {
    let mut file = ElfFile::valid();
    file.phdrs.push(other(PT_NOTE));
    file.phdrs.push(other(7)); // PT_TLS
    let bytes = file.bytes();
    let exe = Executable::parse(&bytes, &LIMITS).unwrap();
    assert_eq!(exe.segments.len(), 2);
}

#[test]
fn empty_load_segment_is_skipped() {
    let mut file = ElfFile::valid();
    file.phdrs.push(load(R, 0, 0x50_0000, 0, 0));
    let bytes = file.bytes();
    let exe = Executable::parse(&bytes, &LIMITS).unwrap();
    assert_eq!(exe.segments.len(), 2);
}

#[test]
fn file_shorter_than_a_header_is_rejected() {
    let bytes = ElfFile::valid().bytes();
    for len in [0, 4, 63] {
        assert_eq!(
            Executable::parse(&bytes[..len], &LIMITS).unwrap_err(),
            FormatError::ElfTooShort
        );
    }
}

#[test]
fn identification_bytes_are_checked() {
    let mut bytes = ElfFile::valid().bytes();
    bytes[1] = b'X';
    assert_eq!(
        Executable::parse(&bytes, &LIMITS).unwrap_err(),
        FormatError::ElfBadMagic
    );
    let mut file = ElfFile::valid();
    file.class = 1;
    assert_eq!(file.parse_err(), FormatError::ElfNotClass64);
    let mut file = ElfFile::valid();
    file.data_encoding = 2;
    assert_eq!(file.parse_err(), FormatError::ElfNotLittleEndian);
    let mut file = ElfFile::valid();
    file.ident_version = 0;
    assert_eq!(file.parse_err(), FormatError::ElfBadVersion);
    let mut file = ElfFile::valid();
    file.version = 2;
    assert_eq!(file.parse_err(), FormatError::ElfBadVersion);
}

#[test]
fn only_aarch64_is_accepted() {
    let mut file = ElfFile::valid();
    file.machine = 62; // EM_X86_64
    assert_eq!(
        file.parse_err(),
        FormatError::ElfWrongMachine { machine: 62 }
    );
}

#[test]
fn position_independent_executables_are_refused_by_name() {
    let mut file = ElfFile::valid();
    file.e_type = 3; // ET_DYN
    let error = file.parse_err();
    assert_eq!(error, FormatError::ElfPositionIndependent);
    assert_eq!(
        error.to_string(),
        "elf: position-independent executables are not supported"
    );
}

#[test]
fn relocatable_objects_and_core_files_are_not_executables() {
    for e_type in [0u16, 1, 4] {
        let mut file = ElfFile::valid();
        file.e_type = e_type;
        assert_eq!(file.parse_err(), FormatError::ElfNotExecutable { e_type });
    }
}

#[test]
fn header_sizes_must_be_elf64() {
    let mut file = ElfFile::valid();
    file.phentsize = 64;
    assert_eq!(file.parse_err(), FormatError::ElfBadHeaderSize);
    let mut file = ElfFile::valid();
    file.ehsize = 52;
    assert_eq!(file.parse_err(), FormatError::ElfBadHeaderSize);
}

#[test]
fn program_header_count_is_capped_at_64() {
    let mut file = ElfFile::valid();
    file.phnum = Some(65);
    assert_eq!(
        file.parse_err(),
        FormatError::ElfTooManyProgramHeaders { count: 65 }
    );
    let mut file = ElfFile::valid();
    file.phnum = Some(0xffff); // PN_XNUM
    assert_eq!(
        file.parse_err(),
        FormatError::ElfTooManyProgramHeaders { count: 0xffff }
    );
}

#[test]
fn program_header_table_must_lie_inside_the_file() {
    for phoff in [0x1000 - 56, 0x2000, u64::MAX - 10] {
        let mut file = ElfFile::valid();
        file.phoff = phoff;
        assert_eq!(
            file.parse_err(),
            FormatError::ElfProgramHeadersOutsideFile,
            "phoff {phoff:#x}"
        );
    }
    let mut file = ElfFile::valid();
    file.phnum = Some(60); // more headers than the file holds
    file.len = 0x800;
    file.phdrs.truncate(1);
    assert_eq!(file.parse_err(), FormatError::ElfProgramHeadersOutsideFile);
}

#[test]
fn interpreter_or_dynamic_section_means_dynamic_linking_which_is_refused() {
    for p_type in [PT_INTERP, PT_DYNAMIC] {
        let mut file = ElfFile::valid();
        file.phdrs.push(other(p_type));
        assert_eq!(
            file.parse_err(),
            FormatError::ElfDynamicLinking { index: 3 }
        );
    }
}

#[test]
fn file_size_may_not_exceed_memory_size() {
    let file = ElfFile::valid().with_phdrs(vec![load(R | X, 0, TEXT_VADDR, 0x400, 0x3ff)]);
    assert_eq!(
        file.parse_err(),
        FormatError::ElfFileSizeExceedsMemSize { index: 0 }
    );
}

#[test]
fn segment_file_bytes_must_lie_inside_the_file() {
    let file = ElfFile::valid().with_phdrs(vec![load(R | X, 0x1000, TEXT_VADDR, 0x11, 0x11)]);
    assert_eq!(
        file.parse_err(),
        FormatError::ElfSegmentOutsideFile { index: 0 }
    );
    let file = ElfFile::valid().with_phdrs(vec![load(
        R | X,
        u64::MAX - 0xfff,
        TEXT_VADDR,
        0x1000,
        0x1000,
    )]);
    assert_eq!(
        file.parse_err(),
        FormatError::ElfSegmentOutsideFile { index: 0 }
    );
}

#[test]
fn segments_must_lie_inside_the_user_limits_without_wrapping() {
    let cases = [
        (0, 0x1000),                              // page 0 is below min_vaddr
        (0xfff, 0x10),                            // starts in page 0
        (0x0000_7fff_ffff_f000, 0x1001),          // ends past max_vaddr
        (0x0000_8000_0000_0000, 0x1000),          // starts at max_vaddr
        (u64::MAX - 0xfff, 0x1000),               // vaddr + size wraps
        (0x0000_7fff_ffff_f000, u64::MAX - 0x10), // size alone wraps
    ];
    for (vaddr, memsz) in cases {
        let offset = vaddr % 0x1000;
        let file = ElfFile::valid().with_phdrs(vec![load(R | X, offset, vaddr, 0, memsz)]);
        assert_eq!(
            file.parse_err(),
            FormatError::ElfSegmentOutsideLimits { index: 0 },
            "vaddr {vaddr:#x} size {memsz:#x}"
        );
    }
}

#[test]
fn segment_touching_the_top_limit_exactly_is_accepted() {
    let vaddr = LIMITS.max_vaddr - 0x1000;
    let mut file = ElfFile::valid().with_phdrs(vec![load(R | X, 0, vaddr, 0x100, 0x1000)]);
    file.entry = vaddr;
    assert!(Executable::parse(&file.bytes(), &LIMITS).is_ok());
}

#[test]
fn file_offset_and_address_must_agree_modulo_the_page() {
    let file = ElfFile::valid().with_phdrs(vec![load(R | X, 0x10, TEXT_VADDR, 0x100, 0x100)]);
    assert_eq!(
        file.parse_err(),
        FormatError::ElfSegmentNotPageCongruent { index: 0 }
    );
}

#[test]
fn segments_sharing_a_page_are_rejected_even_without_byte_overlap() {
    let mut file = ElfFile::valid();
    // Data starts right after text's last byte, in text's page.
    file.phdrs[2] = load(R | W, 0x400, TEXT_VADDR + 0x400, 0x10, 0x10);
    assert_eq!(
        file.parse_err(),
        FormatError::ElfSegmentsOverlap {
            first: 0,
            second: 2
        }
    );
    let mut file = ElfFile::valid();
    file.phdrs[2] = load(R | W, 0x1000, TEXT_VADDR - 0x1000, 0x10, 0x1001);
    assert_eq!(
        file.parse_err(),
        FormatError::ElfSegmentsOverlap {
            first: 0,
            second: 2
        }
    );
}

#[test]
fn writable_and_executable_segment_violates_w_xor_x() {
    let file = ElfFile::valid().with_phdrs(vec![load(R | W | X, 0, TEXT_VADDR, 0x400, 0x400)]);
    assert_eq!(
        file.parse_err(),
        FormatError::ElfWritableAndExecutable { index: 0 }
    );
}

/// `count` one-page R+X segments, one per page from TEXT_VADDR, all mapping file page 0.
fn many_segments(count: u64) -> ElfFile {
    ElfFile::valid().with_phdrs(
        (0..count)
            .map(|i| load(R | X, 0, TEXT_VADDR + i * 0x1000, 0x400, 0x400))
            .collect(),
    )
}

#[test]
fn sixteen_load_segments_are_accepted_and_seventeen_are_not() {
    let bytes = many_segments(MAX_SEGMENTS as u64).bytes();
    let exe = Executable::parse(&bytes, &LIMITS).expect("16 segments fit");
    assert_eq!(exe.segments.len(), MAX_SEGMENTS);
    assert_eq!(
        many_segments(MAX_SEGMENTS as u64 + 1).parse_err(),
        FormatError::ElfTooManySegments
    );
}

#[test]
fn file_without_a_load_segment_is_rejected() {
    let file = ElfFile::valid().with_phdrs(vec![other(PT_GNU_STACK), other(PT_NOTE)]);
    assert_eq!(file.parse_err(), FormatError::ElfNoLoadableSegment);
    let file = ElfFile::valid().with_phdrs(vec![]);
    assert_eq!(file.parse_err(), FormatError::ElfNoLoadableSegment);
}

#[test]
fn entry_must_be_inside_an_executable_segment() {
    for entry in [
        DATA_VADDR + 4,     // in the (non-executable) data segment
        TEXT_VADDR + 0x400, // one past the end of text
        TEXT_VADDR - 1,     // just before text
        0,
    ] {
        let mut file = ElfFile::valid();
        file.entry = entry;
        assert_eq!(
            file.parse_err(),
            FormatError::ElfEntryNotExecutable { entry },
            "entry {entry:#x}"
        );
    }
}

#[test]
fn every_error_displays_as_one_line() {
    let bytes = ElfFile::valid().bytes();
    let mut rng = 7u64;
    let mut seen = std::collections::HashSet::new();
    for _ in 0..20_000 {
        let mut mutated = bytes.clone();
        rng = rng
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let at = (rng >> 33) as usize % 0x100;
        mutated[at] ^= (rng >> 20) as u8 | 1;
        if let Err(e) = Executable::parse(&mutated, &LIMITS) {
            let text = e.to_string();
            assert!(text.starts_with("elf: ") && !text.contains('\n'), "{text}");
            seen.insert(std::mem::discriminant(&e));
        }
    }
    assert!(seen.len() > 5, "mutations should reach many distinct rules");
}

/// Asserts everything `Executable` promises a loader.
fn assert_loader_invariants(exe: &Executable<'_>, file: &[u8]) {
    assert!(!exe.segments.is_empty() && exe.segments.len() <= MAX_SEGMENTS);
    for (i, s) in exe.segments.iter().enumerate() {
        assert!(s.file_size <= s.mem_size && s.mem_size > 0);
        assert_eq!(exe.segment_bytes(s).len() as u64, s.file_size);
        assert!(s.file_offset + s.file_size <= file.len() as u64);
        let start = s.vaddr & !0xfff;
        let end = (s.vaddr.checked_add(s.mem_size).unwrap() + 0xfff) & !0xfff;
        assert!(start >= LIMITS.min_vaddr && end <= LIMITS.max_vaddr);
        assert_eq!(s.file_offset % 0x1000, s.vaddr % 0x1000);
        assert!(!(s.write && s.exec));
        for t in &exe.segments[i + 1..] {
            let t_start = t.vaddr & !0xfff;
            let t_end = (t.vaddr + t.mem_size + 0xfff) & !0xfff;
            assert!(end <= t_start || t_end <= start, "segments share a page");
        }
    }
    assert!(
        exe.segments
            .iter()
            .any(|s| s.exec && exe.entry >= s.vaddr && exe.entry - s.vaddr < s.mem_size)
    );
}

#[test]
fn thousands_of_byte_flips_either_fail_or_keep_every_loader_invariant() {
    let originals = [ElfFile::valid().bytes(), many_segments(4).bytes()];
    for original in &originals {
        assert!(Executable::parse(original, &LIMITS).is_ok());
    }
    let mut rng = 0x0065_6c66_u64;
    let mut next = move || {
        rng = rng
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        rng >> 33
    };
    let mut accepted = 0;
    for round in 0..20_000 {
        let mut bytes = originals[round % 2].clone();
        for _ in 0..1 + next() % 6 {
            // Mostly the headers, where the decisions are; sometimes anywhere.
            let span = if next() % 4 == 0 {
                bytes.len()
            } else {
                64 + 56 * 5
            };
            let at = next() as usize % span.min(bytes.len());
            bytes[at] = match next() % 3 {
                0 => bytes[at] ^ (1 << (next() % 8)),
                1 => next() as u8,
                _ => [0, 0xff, 1, 0x10, 0x40][next() as usize % 5],
            };
        }
        if let Ok(exe) = Executable::parse(&bytes, &LIMITS) {
            accepted += 1;
            assert_loader_invariants(&exe, &bytes);
        }
        // Truncations of a mutated file must be just as safe.
        let cut = next() as usize % (bytes.len() + 1);
        if let Ok(exe) = Executable::parse(&bytes[..cut], &LIMITS) {
            assert_loader_invariants(&exe, &bytes[..cut]);
        }
    }
    assert!(
        accepted > 0,
        "some mutations (e.g. of padding) must still parse"
    );
}
