//! The process table: decodes the process manager's PS payload ([`PsLine`]) and formats it for
//! people, with each process's cgroup when resmgr says which quota is which group.

use alloc::collections::BTreeMap;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt::Write;
pub use keel_rt::proto::procmgr::PsLine as ProcessRow;

/// The rows of a PS payload, and how many lines were malformed (skipped).
pub fn parse_ps(payload: &[u8]) -> (Vec<ProcessRow>, usize) {
    ProcessRow::parse_all(&String::from_utf8_lossy(payload))
}

/// resmgr's `ids` answer (`ID<TAB>PATH` lines): quota number → group path.
pub fn parse_group_ids(text: &str) -> BTreeMap<u64, String> {
    text.lines().filter_map(|l| l.split_once('\t')).filter_map(|(id, path)| Some((id.trim().parse().ok()?, String::from(path)))).collect()
}

fn table_line(out: &mut String, pid: &dyn core::fmt::Display, name: &str, state: &str, mem: &str, group: Option<&str>) {
    let _ = write!(out, "{pid:>5} {name:<16} {state:<8} {mem:>10}");
    match group {
        Some(g) => {
            let _ = writeln!(out, "  {g}");
        }
        None => out.push('\n'),
    }
}

/// The table `ps` prints: a header, then one line per process; a CGROUP column when `groups`
/// (quota number → path) is known (a process in a quota no group names shows `?`).
pub fn format_table(rows: &[ProcessRow], groups: Option<&BTreeMap<u64, String>>) -> String {
    let mut out = String::new();
    table_line(&mut out, &"PID", "NAME", "STATE", "MEM", groups.map(|_| "CGROUP"));
    for r in rows {
        let group = groups.map(|g| g.get(&r.quota).map_or("?", String::as_str));
        table_line(&mut out, &r.pid, &r.name, &r.state, &alloc::format!("{} KiB", r.mem_kib), group);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_decode_from_tab_separated_lines() {
        let (rows, bad) = parse_ps(b"1\tinit\trunning\t512\n12\tshell\trunning\t1024\n");
        assert_eq!(bad, 0);
        assert_eq!(rows[1], ProcessRow { pid: 12, name: "shell".into(), state: "running".into(), mem_kib: 1024, quota: 0 });
    }

    #[test]
    fn malformed_lines_are_skipped_and_counted_and_blank_lines_ignored() {
        let (rows, bad) = parse_ps(b"1\tinit\trunning\t512\n\nx\tbad\trunning\t1\n2\tonly-three\trunning\n");
        assert_eq!(rows.len(), 1);
        assert_eq!(bad, 2);
    }

    #[test]
    fn the_table_has_a_header_and_aligned_columns() {
        let rows = [
            ProcessRow { pid: 1, name: "init".into(), state: "running".into(), mem_kib: 512, quota: 1 },
            ProcessRow { pid: 23, name: "namesrv".into(), state: "exited".into(), mem_kib: 12345, quota: 1 },
        ];
        let table = format_table(&rows, None);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines[0], "  PID NAME             STATE           MEM");
        assert_eq!(lines[1], "    1 init             running     512 KiB");
        assert_eq!(lines[2], "   23 namesrv          exited    12345 KiB");
        assert_eq!(lines.len(), 3);
    }

    #[test]
    fn a_long_name_widens_its_line_but_keeps_every_field() {
        let rows = [ProcessRow { pid: 7, name: "a-very-long-program-name".into(), state: "running".into(), mem_kib: 8, quota: 0 }];
        assert_eq!(format_table(&rows, None).lines().nth(1), Some("    7 a-very-long-program-name running       8 KiB"));
    }

    #[test]
    fn with_resmgr_s_numbers_each_process_shows_its_group() {
        let (rows, bad) = parse_ps(b"1\tinit\trunning\t512\t1\n40\thog\trunning\t64\t9\n41\tx\trunning\t4\t77\n");
        assert_eq!(bad, 0);
        let groups = parse_group_ids("1\t/\n9\t/jobs/a\nbad line\nx\t/y\n");
        assert_eq!(groups.len(), 2);
        let table = format_table(&rows, Some(&groups));
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines[0], "  PID NAME             STATE           MEM  CGROUP");
        assert_eq!(lines[1], "    1 init             running     512 KiB  /");
        assert_eq!(lines[2], "   40 hog              running      64 KiB  /jobs/a");
        assert_eq!(lines[3], "   41 x                running       4 KiB  ?", "a quota no group names");
    }
}
