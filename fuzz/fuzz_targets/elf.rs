//! The ELF loader's parser (`keel_formats::elf`): accepted executables have segments inside the
//! file and inside the user window, and the entry point in an executable segment.
#![no_main]

use keel_formats::elf::{Executable, UserLimits};
use libfuzzer_sys::fuzz_target;

const LIMITS: UserLimits = UserLimits { min_vaddr: 0x1000, max_vaddr: 0x0000_8000_0000_0000 };

fuzz_target!(|data: &[u8]| {
    let Ok(exe) = Executable::parse(data, &LIMITS) else { return };
    let mut entry_ok = false;
    for s in exe.segments.iter() {
        let end = s.vaddr.checked_add(s.mem_size).expect("segment wraps");
        assert!(s.vaddr >= LIMITS.min_vaddr && end <= LIMITS.max_vaddr, "segment outside the user window: {s:?}");
        assert!(s.file_size <= s.mem_size, "file bytes beyond the segment: {s:?}");
        let file_end = s.file_offset.checked_add(s.file_size).expect("file range wraps");
        assert!(file_end <= data.len() as u64, "segment bytes past the file: {s:?}");
        assert_eq!(exe.segment_bytes(s).len() as u64, s.file_size);
        if s.exec && exe.entry >= s.vaddr && exe.entry - s.vaddr < s.mem_size {
            entry_ok = true;
        }
    }
    assert!(entry_ok, "entry {:#x} not in an executable segment", exe.entry);
});
