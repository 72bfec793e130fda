//! The shell's reader of procmgr's PS payload (`keel_shell::ps::parse_ps`, then `format_table`):
//! any payload gives rows and a count of malformed lines that together account for every
//! non-blank line; rows written back in procmgr's format (`keel_init::request::ps_line`, or by
//! hand for any state and size) read back the same; the table has one line per row under its
//! header.
#![no_main]

use keel_init::request::ps_line;
use keel_shell::ps::{ProcessRow, format_table, parse_ps};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|payload: &[u8]| {
    let (rows, bad) = parse_ps(payload);
    let text = String::from_utf8_lossy(payload);
    let lines = text.lines().filter(|l| !l.trim().is_empty()).count();
    assert_eq!(rows.len() + bad, lines, "{} rows and {bad} malformed lines of {lines}", rows.len());
    for r in &rows {
        assert!(!r.name.contains(['\t', '\n']) && !r.state.contains(['\t', '\n']), "separator inside {r:?}");
    }

    // The rows, written as procmgr writes a PS payload, read back the same.
    let written: String = rows.iter().map(ProcessRow::format).collect();
    assert_eq!(parse_ps(written.as_bytes()), (rows.clone(), 0), "rows written back as {written:?}");
    // procmgr's own writer, for a running and an exited process of each name.
    for r in &rows {
        let running = ps_line(r.pid, &r.name, true, 0, r.mem_kib / 4, r.quota);
        let want = ProcessRow { state: "running".into(), mem_kib: r.mem_kib / 4 * 4, ..r.clone() };
        assert_eq!(parse_ps(running.as_bytes()), (vec![want], 0), "ps_line {running:?}");
        let code = r.pid as i64;
        let exited = ps_line(r.pid, &r.name, false, code, 0, r.quota);
        let want = ProcessRow { state: format!("exited({code})"), mem_kib: 0, ..r.clone() };
        assert_eq!(parse_ps(exited.as_bytes()), (vec![want], 0), "ps_line {exited:?}");
    }

    let table = format_table(&rows, None);
    assert_eq!(table.lines().count(), rows.len() + 1, "table {table:?}");
    // With group names (resmgr's ids: the quota numbers seen, one of them unnamed).
    let groups: std::collections::BTreeMap<u64, String> = rows.iter().skip(1).map(|r| (r.quota, format!("/g{}", r.quota))).collect();
    let table = format_table(&rows, Some(&groups));
    assert_eq!(table.lines().count(), rows.len() + 1, "table {table:?}");
});
