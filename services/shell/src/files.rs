//! The file commands: ls, cat, cp, mv, rm, mkdir, rmdir, touch, ln, stat, df, mount, umount,
//! sync, cd, pwd, and writing a command's output to a file (`> f`, `>> f`).
//!
//! They run against [`Files`], the libc-like calls of `keel_rt::fs`, so they are tested on the
//! host against the real VFS. Every failure prints one line, `cmd: path: reason`, and the
//! command goes on with its other arguments.

use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::fmt::Write;
use keel_rt::errno::Errno;
use keel_rt::fs::{DirEntry, Fd, Stat, StatFs, flags::*};
use keel_rt::proto::fs::{KIND_DIR, KIND_FILE, KIND_SYMLINK};

/// Bytes moved per read or write.
const CHUNK: usize = 64 * 1024;

/// The file calls the commands need (`keel_rt::fs` under Keel).
pub trait Files {
    fn open(&mut self, path: &str, flags: u32, mode: u16) -> Result<Fd, Errno>;
    fn close(&mut self, fd: Fd) -> Result<(), Errno>;
    fn read(&mut self, fd: Fd, buf: &mut [u8]) -> Result<usize, Errno>;
    fn write(&mut self, fd: Fd, data: &[u8]) -> Result<usize, Errno>;
    fn stat(&mut self, path: &str) -> Result<Stat, Errno>;
    fn lstat(&mut self, path: &str) -> Result<Stat, Errno>;
    /// Every entry of a directory, `.` and `..` included.
    fn read_dir(&mut self, path: &str) -> Result<Vec<DirEntry>, Errno>;
    fn mkdir(&mut self, path: &str, mode: u16) -> Result<(), Errno>;
    fn rmdir(&mut self, path: &str) -> Result<(), Errno>;
    fn unlink(&mut self, path: &str) -> Result<(), Errno>;
    /// Sets a file's size (cut, or extended with zeros).
    fn truncate(&mut self, path: &str, size: u64) -> Result<(), Errno>;
    fn rename(&mut self, old: &str, new: &str) -> Result<(), Errno>;
    fn symlink(&mut self, target: &str, path: &str) -> Result<(), Errno>;
    fn link(&mut self, old: &str, new: &str) -> Result<(), Errno>;
    fn readlink(&mut self, path: &str) -> Result<String, Errno>;
    fn statfs(&mut self, path: &str) -> Result<StatFs, Errno>;
    /// Lines `source point type rw|ro`.
    fn mounts(&mut self) -> Result<String, Errno>;
    /// Mounts the ext2 on `device`, or with `tmpfs` a new tmpfs of `size` bytes (0: default).
    fn mount(&mut self, device: &str, path: &str, read_only: bool, size: u64) -> Result<(), Errno>;
    fn unmount(&mut self, path: &str) -> Result<(), Errno>;
    fn sync(&mut self) -> Result<(), Errno>;
    fn chdir(&mut self, path: &str) -> Result<(), Errno>;
    fn getcwd(&mut self) -> String;
    /// `path` made absolute against the working directory.
    fn absolute(&mut self, path: &str) -> String;
}

/// The names of the file commands, with usage and what they do (for `help`).
pub const COMMANDS: &[(&str, &str)] = &[
    ("ls [-l] [-a] [path...]", "list directories"),
    ("cat <file...>", "print files"),
    ("cmd ... > file | >> file", "write (append) a command's output to a file"),
    ("cp <from> <to>", "copy a file (into a directory too)"),
    ("mv <from> <to>", "move or rename"),
    ("rm [-r] <path...>", "remove files (-r: directories too)"),
    ("mkdir [-p] <dir...>", "make directories"),
    ("rmdir <dir...>", "remove empty directories"),
    ("touch <file...>", "create empty files"),
    ("truncate -s <size> <file...>", "set files' sizes (created if missing; size like 64M): a blank disk for vm run --disk"),
    ("ln [-s] <target> <name>", "make a hard (-s: symbolic) link"),
    ("stat <path...>", "show a file's attributes"),
    ("df", "space on each file system"),
    ("mount [<dev> <dir> [-r]]", "list mounts, or mount the ext2 on blk<N>"),
    ("mount tmpfs <dir> [size]", "mount a new tmpfs (size like 16M; default: an eighth of RAM)"),
    ("umount <dir>", "unmount"),
    ("sync", "write everything to disk"),
    ("cd [dir] | pwd", "change / show the working directory"),
];

/// A size: bytes, or a number with a `K`, `M` or `G` suffix (binary units).
fn parse_size(s: &str) -> Option<u64> {
    let (digits, unit) = match s.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((i, _)) => (&s[..i], &s[i..]),
        None => (s, ""),
    };
    let shift = match unit {
        "" => 0,
        "K" | "k" => 10,
        "M" | "m" => 20,
        "G" | "g" => 30,
        _ => return None,
    };
    digits.parse::<u64>().ok()?.checked_mul(1 << shift)
}

/// Whether `name` is a file command.
pub fn is_file_command(name: &str) -> bool {
    matches!(
        name,
"ls" | "cat" | "cp" | "mv" | "rm" | "mkdir" | "rmdir" | "touch" | "truncate" | "ln" | "stat" | "df" | "mount" | "umount" | "sync" | "cd" | "pwd"
    )
}

fn fail(out: &mut String, cmd: &str, what: &str, e: Errno) {
    let _ = writeln!(out, "{cmd}: {what}: {}", e.message());
}

fn usage(out: &mut String, text: &str) {
    let _ = writeln!(out, "usage: {text}");
}

/// Splits `-x` options (each letter must be in `allowed`) from operands.
fn options<'a>(args: &'a [String], allowed: &str) -> Result<(String, Vec<&'a str>), char> {
    let mut opts = String::new();
    let mut rest = Vec::new();
    for a in args {
        match a.strip_prefix('-') {
            Some(letters) if !letters.is_empty() && rest.is_empty() => {
                for c in letters.chars() {
                    if !allowed.contains(c) {
                        return Err(c);
                    }
                    opts.push(c);
                }
            }
            _ => rest.push(a.as_str()),
        }
    }
    Ok((opts, rest))
}

/// Runs file command `name` with `args`, appending what it prints to `out`.
pub fn run(f: &mut dyn Files, name: &str, args: &[String], out: &mut String) {
    let allowed = match name {
        "ls" => "la",
        "rm" => "rf",
        "mkdir" => "p",
        "ln" => "s",
        "mount" => "r",
        "truncate" => "s",
        _ => "",
    };
    let (opts, ops) = match options(args, allowed) {
        Ok(x) => x,
        Err(c) => {
            let _ = writeln!(out, "{name}: unknown option -{c}");
            return;
        }
    };
    let has = |c| opts.contains(c);
    match (name, ops.as_slice()) {
        ("ls", []) => ls(f, ".", has('l'), has('a'), false, out),
        ("ls", paths) => {
            for p in paths {
                ls(f, p, has('l'), has('a'), paths.len() > 1, out);
            }
        }
        ("cat", paths) if !paths.is_empty() => {
            for p in paths {
                cat(f, p, out);
            }
        }
        ("cp", [from, to]) => {
            if let Err((what, e)) = copy(f, from, to) {
                fail(out, "cp", &what, e);
            }
        }
        ("mv", [from, to]) => mv(f, from, to, out),
        ("rm", paths) if !paths.is_empty() => {
            for p in paths {
                if let Err((what, e)) = remove(f, p, has('r')) {
                    if !(has('f') && e == Errno::NoEnt) {
                        fail(out, "rm", &what, e);
                    }
                }
            }
        }
        ("mkdir", dirs) if !dirs.is_empty() => {
            for d in dirs {
                let r = if has('p') { mkdir_p(f, d) } else { f.mkdir(d, 0o755) };
                if let Err(e) = r {
                    fail(out, "mkdir", d, e);
                }
            }
        }
        ("rmdir", dirs) if !dirs.is_empty() => {
            for d in dirs {
                if let Err(e) = f.rmdir(d) {
                    fail(out, "rmdir", d, e);
                }
            }
        }
        ("touch", files) if !files.is_empty() => {
            for p in files {
                match f.open(p, O_WRONLY | O_CREAT, 0o644) {
                    Ok(fd) => {
                        let _ = f.close(fd);
                    }
                    Err(e) => fail(out, "touch", p, e),
                }
            }
        }
        ("truncate", [size, files @ ..]) if has('s') && !files.is_empty() => match parse_size(size) {
            Some(size) => {
                for p in files {
                    let r = f.open(p, O_WRONLY | O_CREAT, 0o644).and_then(|fd| {
                        let _ = f.close(fd);
                        f.truncate(p, size)
                    });
                    if let Err(e) = r {
                        fail(out, "truncate", p, e);
                    }
                }
            }
            None => usage(out, "truncate -s <size> <file...> (size: bytes, or with K, M or G)"),
        },
        ("ln", [target, link]) => {
            let r = if has('s') { f.symlink(target, link) } else { f.link(target, link) };
            if let Err(e) = r {
                fail(out, "ln", link, e);
            }
        }
        ("stat", paths) if !paths.is_empty() => {
            for p in paths {
                match f.lstat(p) {
                    Ok(st) => stat_text(f, p, &st, out),
                    Err(e) => fail(out, "stat", p, e),
                }
            }
        }
        ("df", []) => df(f, out),
        ("mount", []) => match f.mounts() {
            Ok(text) => {
                for line in text.lines() {
                    let w: Vec<&str> = line.split(' ').collect();
                    if let [src, point, ty, mode] = w.as_slice() {
                        let _ = writeln!(out, "{src} on {point} type {ty} ({mode})");
                    }
                }
            }
            Err(e) => fail(out, "mount", "table", e),
        },
        ("mount", [dev, dir]) => {
            if let Err(e) = f.mount(dev, dir, has('r'), 0) {
                fail(out, "mount", dev, e);
            }
        }
        ("mount", ["tmpfs", dir, size]) => match parse_size(size) {
            Some(bytes) if bytes > 0 => {
                if let Err(e) = f.mount("tmpfs", dir, has('r'), bytes) {
                    fail(out, "mount", "tmpfs", e);
                }
            }
            _ => {
                let _ = writeln!(out, "mount: {size}: not a size (bytes, or a number with K, M or G)");
            }
        },
        ("umount", [dir]) => {
            if let Err(e) = f.unmount(dir) {
                fail(out, "umount", dir, e);
            }
        }
        ("sync", []) => {
            if let Err(e) = f.sync() {
                fail(out, "sync", "write-back", e);
            }
        }
        ("cd", []) => {
            if let Err(e) = f.chdir("/") {
                fail(out, "cd", "/", e);
            }
        }
        ("cd", [dir]) => {
            if let Err(e) = f.chdir(dir) {
                fail(out, "cd", dir, e);
            }
        }
        ("pwd", []) => {
            let _ = writeln!(out, "{}", f.getcwd());
        }
        _ => {
            let text = COMMANDS.iter().find(|(u, _)| u.split(' ').next() == Some(name)).map_or(name, |(u, _)| u);
            usage(out, text);
        }
    }
}

fn kind_letter(st: &Stat) -> char {
    match st.kind {
        KIND_DIR => 'd',
        KIND_SYMLINK => 'l',
        KIND_FILE => '-',
        _ => '?',
    }
}

/// `rwxr-xr-x` with setuid/setgid/sticky as `s`/`t`.
pub fn mode_string(st: &Stat) -> String {
    let mut s = String::new();
    s.push(kind_letter(st));
    let p = st.perm;
    for (shift, special, letter) in [(6, 0o4000, 's'), (3, 0o2000, 's'), (0, 0o1000, 't')] {
        let bits = (p >> shift) & 7;
        s.push(if bits & 4 != 0 { 'r' } else { '-' });
        s.push(if bits & 2 != 0 { 'w' } else { '-' });
        s.push(match (bits & 1 != 0, p & special != 0) {
            (true, true) => letter,
            (false, true) => letter.to_ascii_uppercase(),
            (true, false) => 'x',
            (false, false) => '-',
        });
    }
    s
}

/// `YYYY-MM-DD HH:MM` (UTC) for seconds since the epoch.
pub fn date(secs: u64) -> String {
    let days = (secs / 86400) as i64;
    let rem = secs % 86400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + if m <= 2 { 1 } else { 0 };
    alloc::format!("{y:04}-{m:02}-{d:02} {:02}:{:02}", rem / 3600, rem % 3600 / 60)
}

fn join(dir: &str, name: &str) -> String {
    if dir.ends_with('/') { alloc::format!("{dir}{name}") } else { alloc::format!("{dir}/{name}") }
}

fn long_line(f: &mut dyn Files, path: &str, name: &str, st: &Stat, out: &mut String) {
    let _ = write!(out, "{} {:>3} {:>5} {:>5} {:>9} {} {name}", mode_string(st), st.nlink, st.uid, st.gid, st.size, date(st.mtime));
    if st.kind == KIND_SYMLINK {
        if let Ok(t) = f.readlink(path) {
            let _ = write!(out, " -> {t}");
        }
    }
    out.push('\n');
}

fn ls(f: &mut dyn Files, path: &str, long: bool, all: bool, header: bool, out: &mut String) {
    let st = match f.lstat(path) {
        Ok(st) => st,
        Err(e) => return fail(out, "ls", path, e),
    };
    // A symlink to a directory lists the directory.
    let is_dir = st.kind == KIND_DIR || (st.kind == KIND_SYMLINK && f.stat(path).is_ok_and(|s| s.is_dir()));
    if !is_dir {
        if long {
            long_line(f, path, path, &st, out);
        } else {
            let _ = writeln!(out, "{path}");
        }
        return;
    }
    let mut entries = match f.read_dir(path) {
        Ok(e) => e,
        Err(e) => return fail(out, "ls", path, e),
    };
    entries.retain(|e| all || !e.name.starts_with('.'));
    entries.sort_by(|a, b| a.name.cmp(&b.name));
    if header {
        let _ = writeln!(out, "{path}:");
    }
    for e in &entries {
        let full = join(path, &e.name);
        if long {
            match f.lstat(&full) {
                Ok(st) => long_line(f, &full, &e.name, &st, out),
                Err(err) => fail(out, "ls", &full, err),
            }
        } else {
            let _ = writeln!(out, "{}{}", e.name, if e.kind == KIND_DIR { "/" } else { "" });
        }
    }
}

fn cat(f: &mut dyn Files, path: &str, out: &mut String) {
    let fd = match f.open(path, O_RDONLY, 0) {
        Ok(fd) => fd,
        Err(e) => return fail(out, "cat", path, e),
    };
    let mut buf = alloc::vec![0u8; CHUNK];
    let mut bytes = Vec::new();
    loop {
        match f.read(fd, &mut buf) {
            Ok(0) => break,
            Ok(n) => bytes.extend_from_slice(&buf[..n]),
            Err(e) => {
                fail(out, "cat", path, e);
                break;
            }
        }
    }
    let _ = f.close(fd);
    out.push_str(&String::from_utf8_lossy(&bytes));
}

/// Copies the file `from` to `to` (or into `to` if it is a directory).
fn copy(f: &mut dyn Files, from: &str, to: &str) -> Result<(), (String, Errno)> {
    let st = f.stat(from).map_err(|e| (from.to_string(), e))?;
    if st.is_dir() {
        return Err((from.to_string(), Errno::IsDir));
    }
    let dest = match f.stat(to) {
        Ok(t) if t.is_dir() => join(to, from.rsplit('/').next().unwrap_or(from)),
        _ => to.to_string(),
    };
    if f.stat(&dest).is_ok_and(|d| d.dev == st.dev && d.ino == st.ino) {
        return Err((dest, Errno::Inval)); // the same file
    }
    let src = f.open(from, O_RDONLY, 0).map_err(|e| (from.to_string(), e))?;
    let dst = match f.open(&dest, O_WRONLY | O_CREAT | O_TRUNC, st.perm) {
        Ok(fd) => fd,
        Err(e) => {
            let _ = f.close(src);
            return Err((dest, e));
        }
    };
    let mut buf = alloc::vec![0u8; CHUNK];
    let r = loop {
        match f.read(src, &mut buf) {
            Ok(0) => break Ok(()),
            Ok(n) => {
                if let Err(e) = f.write(dst, &buf[..n]) {
                    break Err((dest.clone(), e));
                }
            }
            Err(e) => break Err((from.to_string(), e)),
        }
    };
    let _ = f.close(src);
    let closed = f.close(dst).map_err(|e| (dest.clone(), e));
    r.and(closed)
}

fn mv(f: &mut dyn Files, from: &str, to: &str, out: &mut String) {
    let dest = match f.stat(to) {
        Ok(t) if t.is_dir() => join(to, from.trim_end_matches('/').rsplit('/').next().unwrap_or(from)),
        _ => to.to_string(),
    };
    match f.rename(from, &dest) {
        Ok(()) => {}
        // Across file systems: copy, then remove (files only).
        Err(Errno::XDev) => match copy(f, from, &dest).and_then(|()| f.unlink(from).map_err(|e| (from.to_string(), e))) {
            Ok(()) => {}
            Err((what, e)) => fail(out, "mv", &what, e),
        },
        Err(e) => fail(out, "mv", from, e),
    }
}

/// `rm [-r] path`. The tree is walked with a stack of its own, not by recursion: any depth the
/// file system let `mkdir -p` make (paths up to its length limit), `rm -r` removes. Stops at the
/// first error, naming the path.
fn remove(f: &mut dyn Files, path: &str, recursive: bool) -> Result<(), (String, Errno)> {
    // (path, whether its entries are already on the stack above it)
    let mut stack: Vec<(String, bool)> = Vec::from([(path.to_string(), false)]);
    while let Some((p, emptied)) = stack.pop() {
        if emptied {
            f.rmdir(&p).map_err(|e| (p.clone(), e))?;
            continue;
        }
        let st = f.lstat(&p).map_err(|e| (p.clone(), e))?;
        if st.kind != KIND_DIR {
            f.unlink(&p).map_err(|e| (p.clone(), e))?;
            continue;
        }
        if !recursive {
            return Err((p, Errno::IsDir));
        }
        let entries = f.read_dir(&p).map_err(|e| (p.clone(), e))?;
        let children: Vec<(String, bool)> =
            entries.iter().filter(|e| e.name != "." && e.name != "..").map(|e| (join(&p, &e.name), false)).collect();
        stack.push((p, true));
        stack.extend(children);
    }
    Ok(())
}

fn mkdir_p(f: &mut dyn Files, path: &str) -> Result<(), Errno> {
    let abs = f.absolute(path);
    let mut at = String::new();
    for part in abs.split('/').filter(|p| !p.is_empty()) {
        at.push('/');
        at.push_str(part);
        match f.mkdir(&at, 0o755) {
            Ok(()) => {}
            Err(Errno::Exist) if f.stat(&at).is_ok_and(|s| s.is_dir()) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

fn stat_text(f: &mut dyn Files, path: &str, st: &Stat, out: &mut String) {
    let kind = match st.kind {
        KIND_DIR => "directory",
        KIND_SYMLINK => "symbolic link",
        KIND_FILE => "regular file",
        _ => "other",
    };
    let _ = write!(out, "  File: {path}");
    if st.kind == KIND_SYMLINK {
        if let Ok(t) = f.readlink(path) {
            let _ = write!(out, " -> {t}");
        }
    }
    let _ = writeln!(out);
    let _ = writeln!(out, "  Size: {:<10} Blocks: {:<8} {kind}", st.size, st.blocks);
    let _ = writeln!(out, "Device: {:<8} Inode: {:<10} Links: {}", st.dev, st.ino, st.nlink);
    let _ = writeln!(out, "Access: ({:04o}/{})  Uid: {}  Gid: {}", st.perm, mode_string(st), st.uid, st.gid);
    let _ = writeln!(out, "Access: {}\nModify: {}\nChange: {}", date(st.atime), date(st.mtime), date(st.ctime));
}

fn df(f: &mut dyn Files, out: &mut String) {
    let table = match f.mounts() {
        Ok(t) => t,
        Err(e) => return fail(out, "df", "mounts", e),
    };
    let _ = writeln!(out, "{:<12} {:>10} {:>10} {:>10} {:>4}  Mounted on", "Filesystem", "1K-blocks", "Used", "Available", "Use%");
    for line in table.lines() {
        let w: Vec<&str> = line.split(' ').collect();
        let [src, point, ..] = w.as_slice() else { continue };
        match f.statfs(point) {
            Ok(s) => {
                let k = s.block_size / 1024;
                let (total, free) = (s.blocks * k, s.free_blocks * k);
                let used = total.saturating_sub(free);
                let pct = if total == 0 { 0 } else { (used * 100).div_ceil(total) };
                let _ = writeln!(out, "{src:<12} {total:>10} {used:>10} {free:>10} {pct:>3}%  {point}");
            }
            Err(e) => fail(out, "df", point, e),
        }
    }
}

/// Writes `text` to `path`, replacing it or (`append`) adding to its end.
pub fn write_output(f: &mut dyn Files, path: &str, text: &str, append: bool) -> Result<(), Errno> {
    let flags = O_WRONLY | O_CREAT | if append { O_APPEND } else { O_TRUNC };
    let fd = f.open(path, flags, 0o644)?;
    let r = f.write(fd, text.as_bytes()).map(|_| ());
    let c = f.close(fd);
    r.and(c)
}

/// [`Files`] over the real VFS (on a tmpfs), for host tests.
#[cfg(test)]
pub mod testfs {
    use super::*;
    use keel_fs::server::{stat_record, wire_kind};
    use keel_fs::tmpfs::Tmpfs;
    use keel_fs::vfs::{Cred, Vfs};
    use keel_rt::fs::DirEntry;
    use keel_rt::proto::fs::StatFs as WireStatFs;

    pub struct VfsFiles {
        pub vfs: Vfs,
        pub cwd: String,
    }

    const SID: u64 = 1;

    impl Default for VfsFiles {
        fn default() -> Self {
            Self::new()
        }
    }

    impl VfsFiles {
        pub fn new() -> Self {
            let mut vfs = Vfs::new(alloc::boxed::Box::new(Tmpfs::new(1 << 24, 1000)), "rootfs");
            vfs.open_session(SID, Cred::ROOT).unwrap();
            VfsFiles { vfs, cwd: "/".into() }
        }
    }

    impl Files for VfsFiles {
        fn open(&mut self, path: &str, flags: u32, mode: u16) -> Result<Fd, Errno> {
            let p = self.absolute(path);
            self.vfs.open(SID, &p, flags, mode)
        }
        fn close(&mut self, fd: Fd) -> Result<(), Errno> {
            self.vfs.close(SID, fd)
        }
        fn read(&mut self, fd: Fd, buf: &mut [u8]) -> Result<usize, Errno> {
            self.vfs.read(SID, fd, buf)
        }
        fn write(&mut self, fd: Fd, data: &[u8]) -> Result<usize, Errno> {
            self.vfs.write(SID, fd, data)
        }
        fn stat(&mut self, path: &str) -> Result<Stat, Errno> {
            let p = self.absolute(path);
            self.vfs.stat(SID, &p, true).map(|s| stat_record(&s))
        }
        fn lstat(&mut self, path: &str) -> Result<Stat, Errno> {
            let p = self.absolute(path);
            self.vfs.stat(SID, &p, false).map(|s| stat_record(&s))
        }
        fn read_dir(&mut self, path: &str) -> Result<Vec<DirEntry>, Errno> {
            let fd = self.open(path, O_RDONLY | O_DIRECTORY, 0)?;
            let mut all = Vec::new();
            loop {
                let batch = self.vfs.readdir(SID, fd, 65536)?;
                if batch.is_empty() {
                    break;
                }
                all.extend(batch.into_iter().map(|e| DirEntry { ino: e.ino, kind: wire_kind(e.kind), name: e.name }));
            }
            self.vfs.close(SID, fd)?;
            Ok(all)
        }
        fn mkdir(&mut self, path: &str, mode: u16) -> Result<(), Errno> {
            let p = self.absolute(path);
            self.vfs.mkdir(SID, &p, mode)
        }
        fn rmdir(&mut self, path: &str) -> Result<(), Errno> {
            let p = self.absolute(path);
            self.vfs.rmdir(SID, &p)
        }
        fn unlink(&mut self, path: &str) -> Result<(), Errno> {
            let p = self.absolute(path);
            self.vfs.unlink(SID, &p)
        }
        fn truncate(&mut self, path: &str, size: u64) -> Result<(), Errno> {
            let p = self.absolute(path);
            self.vfs.truncate(SID, &p, size)
        }
        fn rename(&mut self, old: &str, new: &str) -> Result<(), Errno> {
            let (a, b) = (self.absolute(old), self.absolute(new));
            self.vfs.rename(SID, &a, &b)
        }
        fn symlink(&mut self, target: &str, path: &str) -> Result<(), Errno> {
            let p = self.absolute(path);
            self.vfs.symlink(SID, target, &p)
        }
        fn link(&mut self, old: &str, new: &str) -> Result<(), Errno> {
            let (a, b) = (self.absolute(old), self.absolute(new));
            self.vfs.link(SID, &a, &b)
        }
        fn readlink(&mut self, path: &str) -> Result<String, Errno> {
            let p = self.absolute(path);
            self.vfs.readlink(SID, &p)
        }
        fn statfs(&mut self, path: &str) -> Result<StatFs, Errno> {
            let p = self.absolute(path);
            let s = self.vfs.statfs(SID, &p)?;
            Ok(WireStatFs { block_size: s.block_size as u64, blocks: s.blocks, free_blocks: s.free_blocks, files: s.files, free_files: s.free_files, name_max: s.name_max as u64 })
        }
        fn mounts(&mut self) -> Result<String, Errno> {
            Ok(self.vfs.mounts().iter().map(|m| alloc::format!("{} {} {} {}\n", m.source, m.point, m.fs_type, if m.read_only { "ro" } else { "rw" })).collect())
        }
        fn mount(&mut self, _device: &str, path: &str, read_only: bool, _size: u64) -> Result<(), Errno> {
            let p = self.absolute(path);
            self.vfs.mount(&p, alloc::boxed::Box::new(Tmpfs::new(1 << 20, 100)), "blk9", read_only)
        }
        fn unmount(&mut self, path: &str) -> Result<(), Errno> {
            let p = self.absolute(path);
            self.vfs.unmount(&p).map(|_| ())
        }
        fn sync(&mut self) -> Result<(), Errno> {
            self.vfs.sync()
        }
        fn chdir(&mut self, path: &str) -> Result<(), Errno> {
            let p = keel_rt::fs::normalize(&self.absolute(path));
            self.vfs.check_dir(SID, &p)?;
            self.cwd = p;
            Ok(())
        }
        fn getcwd(&mut self) -> String {
            self.cwd.clone()
        }
        fn absolute(&mut self, path: &str) -> String {
            if path.starts_with('/') { path.to_string() } else { join(&self.cwd, path) }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::testfs::VfsFiles;
    use super::*;

    fn sh(f: &mut VfsFiles, line: &str) -> String {
        let words: Vec<String> = line.split_whitespace().map(String::from).collect();
        let mut out = String::new();
        run(f, &words[0], &words[1..], &mut out);
        out
    }

    #[test]
    fn files_are_made_listed_copied_moved_and_removed() {
        let mut f = VfsFiles::new();
        assert_eq!(sh(&mut f, "mkdir -p /a/b/c"), "");
        write_output(&mut f, "/a/hello", "hi\n", false).unwrap();
        write_output(&mut f, "/a/hello", "there\n", true).unwrap();
        assert_eq!(sh(&mut f, "cat /a/hello"), "hi\nthere\n");
        assert_eq!(sh(&mut f, "ls /a"), "b/\nhello\n");
        assert_eq!(sh(&mut f, "cp /a/hello /a/b"), "");
        assert_eq!(sh(&mut f, "cat /a/b/hello"), "hi\nthere\n");
        assert_eq!(sh(&mut f, "mv /a/b/hello /a/b/c/moved"), "");
        assert_eq!(sh(&mut f, "ls /a/b/c"), "moved\n");
        assert_eq!(sh(&mut f, "cd /a/b"), "");
        assert_eq!(sh(&mut f, "pwd"), "/a/b\n");
        assert_eq!(sh(&mut f, "cat c/moved"), "hi\nthere\n");
        assert_eq!(sh(&mut f, "rmdir c"), "rmdir: c: directory not empty\n");
        assert_eq!(sh(&mut f, "rm c"), "rm: c: is a directory\n");
        assert_eq!(sh(&mut f, "rm -r c"), "");
        assert_eq!(sh(&mut f, "ls"), "");
        assert_eq!(sh(&mut f, "cat /nope"), "cat: /nope: no such file or directory\n");
        assert_eq!(sh(&mut f, "rm -f /nope"), "");
        assert_eq!(sh(&mut f, "ln -s /a/hello /link"), "");
        assert!(sh(&mut f, "ls -l /link").starts_with("lrwxrwxrwx   1     0     0         8 1970-01-01 00:00 /link -> /a/hello"));
        assert!(sh(&mut f, "stat /a/hello").contains("Size: 9"));
        assert_eq!(sh(&mut f, "cp /a /x"), "cp: /a: is a directory\n");
        assert_eq!(sh(&mut f, "cp /a/hello /a/hello"), "cp: /a/hello: invalid argument\n");
        assert_eq!(sh(&mut f, "ls -z"), "ls: unknown option -z\n");
        assert_eq!(sh(&mut f, "mv /a"), "usage: mv <from> <to>\n");
    }

    #[test]
    fn truncate_makes_a_blank_file_of_a_size_and_cuts_one() {
        let mut f = VfsFiles::new();
        assert_eq!(sh(&mut f, "truncate -s 1M /disk.img /b.img"), "");
        assert!(sh(&mut f, "stat /disk.img").contains("Size: 1048576"));
        assert!(sh(&mut f, "stat /b.img").contains("Size: 1048576"));
        write_output(&mut f, "/t", "0123456789", false).unwrap();
        assert_eq!(sh(&mut f, "truncate -s 4 /t"), "");
        assert_eq!(sh(&mut f, "cat /t"), "0123");
        assert_eq!(sh(&mut f, "truncate -s 64Q /t"), "usage: truncate -s <size> <file...> (size: bytes, or with K, M or G)\n");
        assert_eq!(sh(&mut f, "truncate /t"), "usage: truncate -s <size> <file...>\n");
        assert_eq!(sh(&mut f, "truncate -s 1K /nodir/x"), "truncate: /nodir/x: no such file or directory\n");
    }

    #[test]
    fn rm_r_removes_a_tree_as_deep_as_mkdir_p_could_make() {
        let mut f = VfsFiles::new();
        // 900 levels (the test tmpfs has 1,000 inodes; rm -r used to stop at 64 with ELOOP).
        let depth = 900;
        let deep: String = "/d".repeat(depth);
        assert_eq!(sh(&mut f, &format!("mkdir -p {deep}")), "");
        write_output(&mut f, &format!("{deep}/f"), "at depth\n", false).unwrap();
        assert_eq!(sh(&mut f, &format!("mkdir -p {}/x", "/d".repeat(10))), "");
        assert_eq!(sh(&mut f, "rm -r /d"), "");
        assert_eq!(sh(&mut f, "ls /"), "");
        assert_eq!(sh(&mut f, "rm -r /d"), "rm: /d: no such file or directory\n");
    }

    #[test]
    fn mounts_show_in_mount_and_df_and_mv_copies_across_them() {
        let mut f = VfsFiles::new();
        sh(&mut f, "mkdir /mnt");
        assert_eq!(sh(&mut f, "mount blk9 /mnt"), "");
        assert_eq!(sh(&mut f, "mount"), "rootfs on / type tmpfs (rw)\nblk9 on /mnt type tmpfs (rw)\n");
        let df = sh(&mut f, "df");
        assert!(df.contains("blk9") && df.contains("/mnt"), "{df}");
        write_output(&mut f, "/f", "data", false).unwrap();
        assert_eq!(sh(&mut f, "mv /f /mnt"), "");
        assert_eq!(sh(&mut f, "cat /mnt/f"), "data");
        assert_eq!(sh(&mut f, "cat /f"), "cat: /f: no such file or directory\n");
        assert_eq!(sh(&mut f, "umount /mnt"), "");
        assert_eq!(sh(&mut f, "umount /mnt"), "umount: /mnt: invalid argument\n");
    }

    #[test]
    fn dates_and_modes_read_like_ls() {
        assert_eq!(date(0), "1970-01-01 00:00");
        assert_eq!(date(1_795_219_200), "2026-11-21 00:00");
        assert_eq!(date(951_782_400 + 3661), "2000-02-29 01:01");
        let st = Stat { kind: KIND_DIR, perm: 0o1777, ..Stat::default() };
        assert_eq!(mode_string(&st), "drwxrwxrwt");
        let st = Stat { kind: KIND_FILE, perm: 0o4644, ..Stat::default() };
        assert_eq!(mode_string(&st), "-rwSr--r--");
    }

    #[test]
    fn options_come_before_operands() {
        let args: Vec<String> = ["-la", "/x", "-y"].iter().map(|s| s.to_string()).collect();
        let (o, rest) = options(&args, "la").unwrap();
        assert_eq!((o.as_str(), rest), ("la", alloc::vec!["/x", "-y"]));
        assert_eq!(options(&args[..1], "l").unwrap_err(), 'a');
    }

    #[test]
    fn sizes_take_binary_suffixes_and_nothing_else() {
        assert_eq!(parse_size("4096"), Some(4096));
        assert_eq!(parse_size("16M"), Some(16 << 20));
        assert_eq!(parse_size("2k"), Some(2048));
        assert_eq!(parse_size("1G"), Some(1 << 30));
        assert_eq!(parse_size("16MB"), None);
        assert_eq!(parse_size("M"), None);
        assert_eq!(parse_size("99999999999999999G"), None);
    }
}
