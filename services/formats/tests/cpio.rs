//! Behaviour of the newc cpio reader and writer on well-formed, GNU-made and hostile archives.
//!
//! `fixtures/gnu-newc.cpio` was made by GNU cpio 2.13 in an empty directory holding `a`
//! ("hello\n"), a directory `b`, `b/c` ("nested file\n") and a symlink `link -> a`:
//! `printf 'a\nb\nb/c\nlink\n' | cpio -o -H newc -R 0:0 --reproducible`.

use keel_formats::FormatError;
use keel_formats::cpio::{Archive, Entry, is_regular, write_newc};
use std::path::PathBuf;
use std::process::{Command, Stdio};

const REGULAR: u32 = 0o100644;
const DIRECTORY: u32 = 0o040755;
const SYMLINK: u32 = 0o120777;
const HEADER_LEN: usize = 110;

const GNU_FIXTURE: &[u8] = include_bytes!("fixtures/gnu-newc.cpio");

/// Collects every entry, panicking (in the test) on an error.
fn all_entries<'a>(archive: &Archive<'a>) -> Vec<Entry<'a>> {
    archive
        .entries()
        .collect::<Result<Vec<_>, _>>()
        .expect("archive should be well formed")
}

/// A small deterministic generator for mutation tests (Knuth's MMIX LCG).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// Archive with names of every length modulo 4 and data of every length modulo 4, so every
/// padding case occurs.
fn padding_archive() -> Vec<u8> {
    write_newc(&[
        ("a", REGULAR, b""),
        ("bb", REGULAR, b"1"),
        ("ccc", REGULAR, b"22"),
        ("dddd", REGULAR, b"333"),
        ("eeeee", REGULAR, b"4444"),
        ("dir", DIRECTORY, b""),
        ("dir/f", REGULAR, b"nested"),
    ])
}

#[test]
fn written_archive_reads_back_every_entry_in_order() {
    let bytes = padding_archive();
    assert_eq!(bytes.len() % 4, 0, "newc archives are 4-byte aligned");
    let archive = Archive::new(&bytes).expect("writer output is valid");
    let entries = all_entries(&archive);
    let summary: Vec<(&str, u32, &[u8])> =
        entries.iter().map(|e| (e.name, e.mode, e.data)).collect();
    assert_eq!(
        summary,
        vec![
            ("a", REGULAR, &b""[..]),
            ("bb", REGULAR, b"1"),
            ("ccc", REGULAR, b"22"),
            ("dddd", REGULAR, b"333"),
            ("eeeee", REGULAR, b"4444"),
            ("dir", DIRECTORY, b""),
            ("dir/f", REGULAR, b"nested"),
        ]
    );
}

#[test]
fn empty_archive_is_only_a_trailer_and_has_no_entries() {
    let bytes = write_newc(&[]);
    let archive = Archive::new(&bytes).expect("a lone trailer is a valid archive");
    assert_eq!(archive.entries().count(), 0);
}

#[test]
fn names_are_reported_without_leading_slash_or_dot_slash() {
    let bytes = write_newc(&[
        ("./sbin/init", REGULAR, b"x"),
        ("/etc/manifest", REGULAR, b"y"),
    ]);
    let archive = Archive::new(&bytes).unwrap();
    let names: Vec<&str> = all_entries(&archive).iter().map(|e| e.name).collect();
    assert_eq!(names, ["sbin/init", "etc/manifest"]);
}

#[test]
fn find_accepts_paths_with_and_without_leading_slash() {
    let bytes = write_newc(&[
        ("sbin/init", REGULAR, b"ELF..."),
        ("./etc/manifest", REGULAR, b"m"),
    ]);
    let archive = Archive::new(&bytes).unwrap();
    for path in ["sbin/init", "/sbin/init", "./sbin/init"] {
        let entry = archive.find(path).unwrap().expect("init is in the archive");
        assert_eq!(entry.data, b"ELF...", "looking up {path}");
    }
    for path in ["etc/manifest", "/etc/manifest"] {
        assert_eq!(archive.find(path).unwrap().map(|e| e.data), Some(&b"m"[..]));
    }
    assert_eq!(archive.find("/sbin/missing").unwrap(), None);
    assert_eq!(archive.find("/sbin").unwrap(), None, "no prefix matches");
}

#[test]
fn find_answers_none_for_directories_and_does_not_follow_symlinks() {
    let bytes = write_newc(&[
        ("bin", DIRECTORY, b""),
        ("bin/real", REGULAR, b"payload"),
        ("bin/alias", SYMLINK, b"real"),
    ]);
    let archive = Archive::new(&bytes).unwrap();
    assert_eq!(archive.find("/bin").unwrap(), None);
    assert_eq!(archive.find("/bin/alias").unwrap(), None);
    assert!(archive.find("/bin/real").unwrap().is_some());
}

#[test]
fn find_uses_the_last_entry_with_the_name_as_unpacking_would() {
    let bytes = write_newc(&[("init", REGULAR, b"old"), ("init", REGULAR, b"new")]);
    let archive = Archive::new(&bytes).unwrap();
    assert_eq!(
        archive.find("/init").unwrap().map(|e| e.data),
        Some(&b"new"[..])
    );

    let replaced_by_dir = write_newc(&[("init", REGULAR, b"old"), ("init", DIRECTORY, b"")]);
    let archive = Archive::new(&replaced_by_dir).unwrap();
    assert_eq!(archive.find("/init").unwrap(), None);
}

#[test]
fn find_reports_corruption_even_after_the_match() {
    let mut bytes = write_newc(&[("init", REGULAR, b"code"), ("other", REGULAR, b"x")]);
    let second = bytes
        .windows(6)
        .enumerate()
        .filter(|(_, w)| *w == b"070701")
        .nth(1)
        .map(|(i, _)| i)
        .unwrap();
    bytes[second] = b'9';
    let archive = Archive::new(&bytes).unwrap();
    assert_eq!(
        archive.find("/init"),
        Err(FormatError::CpioBadMagic { offset: second })
    );
}

#[test]
fn the_index_answers_as_find_for_every_name_of_random_archives() {
    let names = ["init", "bin/a", "./bin/b", "/etc/x", "dir", "bin/a/b"];
    let modes = [REGULAR, DIRECTORY, SYMLINK];
    let mut rng = Lcg(11);
    for round in 0..300 {
        let members: Vec<(&str, u32, Vec<u8>)> = (0..rng.below(8))
            .map(|i| (names[rng.below(names.len())], modes[rng.below(modes.len())], vec![i as u8; rng.below(9)]))
            .collect();
        let refs: Vec<(&str, u32, &[u8])> = members.iter().map(|(n, m, d)| (*n, *m, d.as_slice())).collect();
        let bytes = write_newc(&refs);
        let archive = Archive::new(&bytes).unwrap();
        let index = archive.index().unwrap();
        for name in names.iter().chain(&["/init", "bin", "missing", "/bin/b"]) {
            assert_eq!(index.find(name), archive.find(name).unwrap(), "round {round}: {name}");
        }
    }
    // A corrupt archive has no index, whatever comes before the corruption.
    let mut bytes = write_newc(&[("init", REGULAR, b"code"), ("other", REGULAR, b"x")]);
    let second = bytes.windows(6).enumerate().filter(|(_, w)| *w == b"070701").nth(1).map(|(i, _)| i).unwrap();
    bytes[second] = b'9';
    let archive = Archive::new(&bytes).unwrap();
    assert_eq!(archive.index().map(|_| ()), Err(FormatError::CpioBadMagic { offset: second }));
}

#[test]
fn regular_file_test_looks_only_at_the_file_type_bits() {
    assert!(is_regular(0o100755));
    assert!(is_regular(0o100000));
    assert!(!is_regular(DIRECTORY));
    assert!(!is_regular(SYMLINK));
    assert!(!is_regular(0o020666), "character device");
    assert!(Archive::is_regular(REGULAR));
}

#[test]
fn gnu_cpio_fixture_lists_files_directories_and_symlinks() {
    let archive = Archive::new(GNU_FIXTURE).expect("GNU cpio output is valid newc");
    let entries = all_entries(&archive);
    let names: Vec<&str> = entries.iter().map(|e| e.name).collect();
    assert_eq!(names, ["a", "b", "b/c", "link"]);
    assert!(is_regular(entries[0].mode));
    assert_eq!(entries[1].mode & 0o170000, 0o040000, "b is a directory");
    assert_eq!(entries[3].mode & 0o170000, 0o120000, "link is a symlink");
    assert_eq!(entries[3].data, b"a", "a symlink's data is its target");

    assert_eq!(archive.find("/a").unwrap().unwrap().data, b"hello\n");
    assert_eq!(archive.find("b/c").unwrap().unwrap().data, b"nested file\n");
    assert_eq!(archive.find("/link").unwrap(), None);
}

/// A fresh, empty directory for one test.
fn scratch_dir(tag: &str) -> PathBuf {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let dir =
        std::env::temp_dir().join(format!("keel-formats-{tag}-{}-{nanos}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A tool a cross-check needs is not installed: the test fails (scripts/deps.sh installs every
/// tool the tests use, so in CI nothing skips), unless `KEEL_ALLOW_SKIP=1`, when it prints
/// `skipped: <why>` on the terminal (past the test harness's output capture) and the caller
/// returns.
fn missing_tool(why: &str) {
    if std::env::var("KEEL_ALLOW_SKIP").as_deref() == Ok("1") {
        use std::io::Write;
        let _ = writeln!(std::io::stderr(), "skipped: {why} (KEEL_ALLOW_SKIP=1)");
    } else {
        panic!("{why}: run scripts/deps.sh (make deps), or set KEEL_ALLOW_SKIP=1 to skip this check");
    }
}

/// Runs GNU cpio in `dir` with `list` on stdin and the given format; `None` if cpio is absent
/// and skipping is allowed ([`missing_tool`]).
fn gnu_cpio(dir: &PathBuf, list: &str, format: &str) -> Option<Vec<u8>> {
    let mut child = match Command::new("cpio")
        .args(["-o", "-H", format, "--quiet"])
        .current_dir(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
    {
        Ok(child) => child,
        Err(e) => {
            missing_tool(&format!("GNU cpio cannot be run ({e}), so archives made by it now are not checked"));
            return None;
        }
    };
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(list.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success(), "cpio failed");
    Some(output.stdout)
}

#[test]
fn archives_made_by_gnu_cpio_now_are_read_in_newc_and_crc_formats() {
    let dir = scratch_dir("gnu");
    std::fs::write(dir.join("a"), b"first\n").unwrap();
    std::fs::create_dir(dir.join("b")).unwrap();
    std::fs::write(dir.join("b/c"), b"second file, odd length").unwrap();

    for format in ["newc", "crc"] {
        let Some(bytes) = gnu_cpio(&dir, "a\nb/c\n", format) else {
            break;
        };
        let expected_magic: &[u8] = if format == "newc" {
            b"070701"
        } else {
            b"070702"
        };
        assert_eq!(&bytes[..6], expected_magic);
        let archive = Archive::new(&bytes).expect("GNU cpio output is accepted");
        let names: Vec<&str> = all_entries(&archive).iter().map(|e| e.name).collect();
        assert_eq!(names, ["a", "b/c"], "format {format}");
        assert_eq!(archive.find("/a").unwrap().unwrap().data, b"first\n");
        assert_eq!(
            archive.find("/b/c").unwrap().unwrap().data,
            b"second file, odd length"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn archive_without_trailer_is_an_error_not_a_short_listing() {
    let full = write_newc(&[("init", REGULAR, b"code")]);
    let trailer_len = (HEADER_LEN + "TRAILER!!!\0".len()).next_multiple_of(4);
    let cut = &full[..full.len() - trailer_len];
    let archive = Archive::new(cut).unwrap();
    let results: Vec<_> = archive.entries().collect();
    assert_eq!(results.len(), 2);
    assert!(results[0].is_ok());
    assert_eq!(
        results[1],
        Err(FormatError::CpioMissingTrailer { offset: cut.len() })
    );
    assert_eq!(
        archive.find("/init"),
        Err(FormatError::CpioMissingTrailer { offset: cut.len() })
    );
}

#[test]
fn bytes_after_the_trailer_are_ignored() {
    let mut bytes = write_newc(&[("init", REGULAR, b"code")]);
    bytes.extend_from_slice(&[0; 500]);
    bytes.extend_from_slice(b"garbage that is not a header");
    let archive = Archive::new(&bytes).unwrap();
    assert_eq!(all_entries(&archive).len(), 1);
}

#[test]
fn an_error_is_yielded_once_and_then_iteration_ends() {
    let mut bytes = write_newc(&[("a", REGULAR, b"1"), ("b", REGULAR, b"2")]);
    let second = HEADER_LEN + 2 + 4; // header + "a\0" + data padded to 4
    bytes[second + 3] = b'X';
    let mut entries = Archive::new(&bytes).unwrap().entries();
    assert!(matches!(entries.next(), Some(Ok(e)) if e.name == "a"));
    assert_eq!(
        entries.next(),
        Some(Err(FormatError::CpioBadMagic { offset: second }))
    );
    assert_eq!(entries.next(), None);
    assert_eq!(entries.next(), None);
}

#[test]
fn new_rejects_a_first_header_with_bad_magic_or_short_length() {
    assert_eq!(
        Archive::new(b""),
        Err(FormatError::CpioMissingTrailer { offset: 0 })
    );
    assert_eq!(
        Archive::new(b"070701000"),
        Err(FormatError::CpioTruncated {
            offset: 0,
            part: "header"
        })
    );
    let mut bytes = write_newc(&[]);
    bytes[..6].copy_from_slice(b"070707"); // the old binary-ish "odc" magic
    assert_eq!(
        Archive::new(&bytes),
        Err(FormatError::CpioBadMagic { offset: 0 })
    );
}

/// Byte offset of field `index` (0 = ino ... 12 = check) in the header at `header`.
fn field_at(header: usize, index: usize) -> usize {
    header + 6 + 8 * index
}

#[test]
fn non_hex_digit_is_reported_with_the_field_name() {
    let mut bytes = write_newc(&[("a", REGULAR, b"1")]);
    bytes[field_at(0, 6) + 7] = b'g';
    assert_eq!(
        Archive::new(&bytes),
        Err(FormatError::CpioBadHexField {
            offset: 0,
            field: "filesize"
        })
    );
    let mut bytes = write_newc(&[("a", REGULAR, b"1")]);
    bytes[field_at(0, 11)] = b' ';
    assert_eq!(
        Archive::new(&bytes).unwrap_err(),
        FormatError::CpioBadHexField {
            offset: 0,
            field: "namesize"
        }
    );
}

#[test]
fn lower_case_hex_fields_are_accepted() {
    let mut bytes = write_newc(&[("a", REGULAR, b"1")]);
    for b in &mut bytes[6..HEADER_LEN] {
        *b = b.to_ascii_lowercase();
    }
    let archive = Archive::new(&bytes).unwrap();
    assert_eq!(all_entries(&archive)[0].mode, REGULAR);
}

/// Overwrites field `index` of the first header with `value`.
fn set_field(bytes: &mut [u8], index: usize, value: u32) {
    let at = field_at(0, index);
    bytes[at..at + 8].copy_from_slice(format!("{value:08X}").as_bytes());
}

fn first_entry(bytes: &[u8]) -> Result<Entry<'_>, FormatError> {
    Archive::new(bytes)?.entries().next().expect("one result")
}

#[test]
fn name_must_end_in_its_only_nul() {
    // "abc\0" with namesize 3 cuts the NUL off.
    let mut bytes = write_newc(&[("abc", REGULAR, b"")]);
    set_field(&mut bytes, 11, 3);
    assert_eq!(
        first_entry(&bytes),
        Err(FormatError::CpioNameNotTerminated { offset: 0 })
    );
    // A NUL inside the name.
    let mut bytes = write_newc(&[("abc", REGULAR, b"")]);
    bytes[HEADER_LEN + 1] = 0;
    assert_eq!(
        first_entry(&bytes),
        Err(FormatError::CpioNameNotTerminated { offset: 0 })
    );
    // namesize 0: no NUL at all.
    let mut bytes = write_newc(&[("abc", REGULAR, b"")]);
    set_field(&mut bytes, 11, 0);
    assert_eq!(
        first_entry(&bytes),
        Err(FormatError::CpioNameNotTerminated { offset: 0 })
    );
}

#[test]
fn a_name_padded_with_nuls_aligns_the_data_and_reads_as_the_name() {
    // As mkinitrd.py (and dracut-cpio --data-align) write it: "bin/x" plus NULs up to where the
    // data starts on a 4 KiB boundary.
    let data = vec![7u8; 5000];
    let namesize = 4096 - HEADER_LEN;
    let mut bytes = format!("070701{:08X}{:08X}{}{:08X}{}{:08X}{:08X}", 1, REGULAR, "00000000".repeat(4), data.len(), "00000000".repeat(4), namesize, 0).into_bytes();
    assert_eq!(bytes.len(), HEADER_LEN);
    bytes.extend_from_slice(b"bin/x");
    bytes.resize(4096, 0);
    bytes.extend_from_slice(&data);
    bytes.resize(bytes.len().next_multiple_of(4), 0);
    bytes.extend_from_slice(&write_newc(&[]));
    let archive = Archive::new(&bytes).unwrap();
    let entry = archive.find("bin/x").unwrap().unwrap();
    assert_eq!(entry.data, &data[..]);
    assert_eq!(entry.data.as_ptr() as usize - bytes.as_ptr() as usize, 4096);
    // A byte other than NUL after the name's NUL is still an error.
    bytes[HEADER_LEN + 100] = b'y';
    assert_eq!(first_entry(&bytes), Err(FormatError::CpioNameNotTerminated { offset: 0 }));
}

#[test]
fn name_must_be_utf8() {
    let mut bytes = write_newc(&[("abc", REGULAR, b"")]);
    bytes[HEADER_LEN + 1] = 0xff;
    assert_eq!(
        first_entry(&bytes),
        Err(FormatError::CpioNameNotUtf8 { offset: 0 })
    );
}

#[test]
fn sizes_past_the_end_of_the_buffer_name_the_part() {
    let mut bytes = write_newc(&[("abc", REGULAR, b"data")]);
    set_field(&mut bytes, 6, 0xffff_ffff);
    assert_eq!(
        first_entry(&bytes),
        Err(FormatError::CpioTruncated {
            offset: 0,
            part: "data"
        })
    );
    let mut bytes = write_newc(&[("abc", REGULAR, b"data")]);
    set_field(&mut bytes, 11, 0xffff_ffff);
    assert_eq!(
        first_entry(&bytes),
        Err(FormatError::CpioTruncated {
            offset: 0,
            part: "name"
        })
    );
}

/// Walks every entry and `find`s one path; returns the `Ok` entries seen before the first
/// error and whether an error ended the walk. Asserts the walk is bounded by the input size.
fn walk(bytes: &[u8]) -> (Vec<Entry<'_>>, bool) {
    let Ok(archive) = Archive::new(bytes) else {
        return (Vec::new(), true);
    };
    let _ = archive.find("/a");
    let mut ok = Vec::new();
    let mut failed = false;
    for (steps, result) in archive.entries().enumerate() {
        assert!(steps <= bytes.len() / 112 + 1, "walk must advance");
        match result {
            Ok(entry) => ok.push(entry),
            Err(_) => failed = true,
        }
    }
    (ok, failed)
}

#[test]
fn truncation_at_every_length_gives_an_error_and_never_invents_entries() {
    for full in [padding_archive(), GNU_FIXTURE.to_vec()] {
        let (expected, failed) = walk(&full);
        assert!(!failed);
        // The GNU fixture is padded to 512-byte blocks after its trailer; cuts inside that
        // padding still hold the whole archive.
        let trailer_end = if full.len() == GNU_FIXTURE.len() {
            full.windows(10).position(|w| w == b"TRAILER!!!").unwrap() + 11
        } else {
            full.len()
        };
        for len in 0..full.len() {
            let (entries, failed) = walk(&full[..len]);
            assert!(
                expected.starts_with(&entries),
                "cut at {len}: entries must be a prefix of the real ones"
            );
            if len < trailer_end {
                assert!(
                    failed,
                    "cut at {len} loses the trailer, which must be an error"
                );
            } else {
                assert_eq!(entries, expected, "cut at {len} is after the trailer");
            }
        }
    }
}

#[test]
fn thousands_of_header_mutations_never_panic_or_hang() {
    let originals = [padding_archive(), GNU_FIXTURE.to_vec()];
    let mut rng = Lcg(0x6b65_656c);
    for round in 0..6000 {
        let mut bytes = originals[round % 2].clone();
        for _ in 0..1 + rng.below(4) {
            let at = rng.below(bytes.len());
            bytes[at] = match rng.below(3) {
                // A plausible hex digit keeps the header parseable and moves sizes around.
                0 => b"0123456789abcdefF"[rng.below(17)],
                1 => rng.next() as u8,
                _ => bytes[at] ^ (1 << rng.below(8)),
            };
        }
        let (entries, _) = walk(&bytes);
        for entry in entries {
            // Every slice handed out lies inside the buffer.
            let range = bytes.as_ptr_range();
            assert!(range.contains(&entry.data.as_ptr()) || entry.data.is_empty());
        }
    }
}

#[test]
fn every_error_displays_as_one_line() {
    let errors = [
        FormatError::CpioBadMagic { offset: 4 },
        FormatError::CpioBadHexField {
            offset: 0,
            field: "mode",
        },
        FormatError::CpioNameNotTerminated { offset: 8 },
        FormatError::CpioNameNotUtf8 { offset: 8 },
        FormatError::CpioTruncated {
            offset: 12,
            part: "data",
        },
        FormatError::CpioMissingTrailer { offset: 16 },
    ];
    for error in errors {
        let text = error.to_string();
        assert!(text.starts_with("cpio: ") && !text.contains('\n'), "{text}");
    }
    assert_eq!(
        FormatError::CpioTruncated {
            offset: 0x74,
            part: "data"
        }
        .to_string(),
        "cpio: entry at offset 0x74: data runs past the end of the archive"
    );
}
