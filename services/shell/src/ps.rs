//! The process table: decodes the process manager's PS payload (one line per process,
//! `pid name state mem_kib`, tab-separated) and formats it for people.

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt::Write;

/// One process as PS reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProcessRow {
    pub pid: u64,
    pub name: String,
    pub state: String,
    pub mem_kib: u64,
}

/// The rows of a PS payload, and how many lines were malformed (skipped).
pub fn parse_ps(payload: &[u8]) -> (Vec<ProcessRow>, usize) {
    let text = String::from_utf8_lossy(payload);
    let mut rows = Vec::new();
    let mut bad = 0;
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let fields: Vec<&str> = line.split('\t').collect();
        let row = match fields.as_slice() {
            [pid, name, state, mem] => pid.trim().parse().ok().zip(mem.trim().parse().ok()).map(|(pid, mem_kib)| ProcessRow {
                pid,
                name: String::from(*name),
                state: String::from(*state),
                mem_kib,
            }),
            _ => None,
        };
        match row {
            Some(r) => rows.push(r),
            None => bad += 1,
        }
    }
    (rows, bad)
}

fn table_line(out: &mut String, pid: &dyn core::fmt::Display, name: &str, state: &str, mem: &str) {
    let _ = writeln!(out, "{pid:>5} {name:<16} {state:<8} {mem:>10}");
}

/// The table `ps` prints: a header, then one line per process.
pub fn format_table(rows: &[ProcessRow]) -> String {
    let mut out = String::new();
    table_line(&mut out, &"PID", "NAME", "STATE", "MEM");
    for r in rows {
        table_line(&mut out, &r.pid, &r.name, &r.state, &alloc::format!("{} KiB", r.mem_kib));
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
        assert_eq!(rows[1], ProcessRow { pid: 12, name: "shell".into(), state: "running".into(), mem_kib: 1024 });
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
            ProcessRow { pid: 1, name: "init".into(), state: "running".into(), mem_kib: 512 },
            ProcessRow { pid: 23, name: "namesrv".into(), state: "exited".into(), mem_kib: 12345 },
        ];
        let table = format_table(&rows);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines[0], "  PID NAME             STATE           MEM");
        assert_eq!(lines[1], "    1 init             running     512 KiB");
        assert_eq!(lines[2], "   23 namesrv          exited    12345 KiB");
        assert_eq!(lines.len(), 3);
    }

    #[test]
    fn a_long_name_widens_its_line_but_keeps_every_field() {
        let rows = [ProcessRow { pid: 7, name: "a-very-long-program-name".into(), state: "running".into(), mem_kib: 8 }];
        assert_eq!(format_table(&rows).lines().nth(1), Some("    7 a-very-long-program-name running       8 KiB"));
    }
}
