//! The cgroup tree: groups named by paths, each backed by one kernel quota, and the text commands
//! the shell's `cgroup` command sends.
//!
//! Rules (cgroup v2's, where Keel has the same thing): a group's limits bind everything below
//! it (the kernel checks every level); the root group has no limits of its own; a group with
//! child groups or processes cannot be removed (`BadState`); a limit may be set below the usage
//! (new charges are refused until usage falls).
//!
//! Controllers (`cpu`, `memory`, `pids`; `threads.*` go with `pids`) are enabled top-down: a
//! group's `cgroup.controllers` is its parent's `cgroup.subtree_control` (the root has all of
//! them, and starts with all of them in its `subtree_control`, as systemd sets it up), and only
//! those controllers' files are in the group. `subtree_control` takes `+name`/`-name` words; a
//! controller can be enabled only if the group has it, disabled only while no child enables it
//! further down (`BadState`), and disabling it puts the children's limits of it back to `max`
//! (their files are gone). No internal processes: a group other than the root with controllers
//! in its `subtree_control` holds no processes — enabling one in a group with processes, and
//! moving or starting a process in such a group, is refused (`BadState`). The kernel counts every
//! resource at every level whatever is enabled: a controller that is off only has no files.
//!
//! Commands (`args[0]`; every path is absolute):
//! - `ls [PATH]`: the files and child groups (with a trailing `/`) of a group;
//! - `mkdir PATH`, `rmdir PATH`;
//! - `cat PATH FILE`, `set PATH FILE VALUE` (`set PATH cgroup.procs PID` moves a process);
//! - `stat`: every group with its memory and process counts;
//! - `ids`: `ID<TAB>PATH` per group, ID the kernel's number of its quota (how `ps` shows each
//!   process's group).
//!
//! A reply is the text to print, or an error code with a one-line message.

use alloc::collections::BTreeMap;
use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::fmt::Write;
use keel_rt::Error;
use keel_rt::abi::quota::{CPU_PERIOD_NS, CPU_WEIGHTS, CpuStat, MEMORY, NO_LIMIT, PROCESSES, QuotaStat, THREADS};

/// The kernel's quota calls, as the tree needs them (a fake on the host).
pub trait Quotas {
    /// A quota capability.
    type Handle: Copy + core::fmt::Debug;
    fn create_child(&mut self, parent: Self::Handle) -> Result<Self::Handle, Error>;
    fn set(&mut self, quota: Self::Handle, resource: u64, limit: u64) -> Result<(), Error>;
    fn stat(&mut self, quota: Self::Handle, resource: u64) -> Result<QuotaStat, Error>;
    /// `cpu.max` in nanoseconds (quota `NO_LIMIT`: none).
    fn set_cpu(&mut self, quota: Self::Handle, quota_ns: u64, period_ns: u64) -> Result<(), Error>;
    fn set_weight(&mut self, quota: Self::Handle, weight: u64) -> Result<(), Error>;
    fn stat_cpu(&mut self, quota: Self::Handle) -> Result<CpuStat, Error>;
    /// Lets go of the capability (the kernel removes the quota once nothing else holds it).
    fn release(&mut self, quota: Self::Handle);
    /// The running processes: (pid, the number of the quota each is charged to).
    fn processes(&mut self) -> Result<Vec<(u64, u64)>, Error>;
    /// Moves process `pid` into `quota` (`NotFound`: no such process; `BadState`: init).
    fn move_process(&mut self, quota: Self::Handle, pid: u64) -> Result<(), Error>;
}

/// Most bytes in a group name.
pub const MAX_NAME: usize = 64;
/// Most groups the tree keeps (the kernel also limits the depth).
pub const MAX_GROUPS: usize = 1024;

/// A failed command: the error code and what to tell the user.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommandError {
    pub code: Error,
    pub message: String,
}

fn fail<T>(code: Error, message: impl Into<String>) -> Result<T, CommandError> {
    Err(CommandError { code, message: message.into() })
}

/// The controllers, as bits of a set.
const CPU_CTL: u8 = 1;
const MEMORY_CTL: u8 = 2;
const PIDS_CTL: u8 = 4;
const ALL_CTL: u8 = CPU_CTL | MEMORY_CTL | PIDS_CTL;
const CONTROLLERS: [(&str, u8); 3] = [("cpu", CPU_CTL), ("memory", MEMORY_CTL), ("pids", PIDS_CTL)];

/// A set of controllers as cgroup v2 prints it (`cpu memory pids`).
fn controller_names(set: u8) -> String {
    let names: Vec<&str> = CONTROLLERS.iter().filter(|(_, c)| set & c != 0).map(|(n, _)| *n).collect();
    format!("{}\n", names.join(" "))
}

/// A control file: its name and what it reads or sets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum File {
    Procs,
    Controllers,
    SubtreeControl,
    Current(u64),
    Max(u64),
    Peak(u64),
    Events(u64),
    CpuMax,
    CpuWeight,
    CpuStat,
}

const FILES: &[(&str, File)] = &[
    ("cgroup.procs", File::Procs),
    ("cgroup.controllers", File::Controllers),
    ("cgroup.subtree_control", File::SubtreeControl),
    ("cpu.max", File::CpuMax),
    ("cpu.weight", File::CpuWeight),
    ("cpu.stat", File::CpuStat),
    ("memory.current", File::Current(MEMORY)),
    ("memory.max", File::Max(MEMORY)),
    ("memory.peak", File::Peak(MEMORY)),
    ("memory.events", File::Events(MEMORY)),
    ("pids.current", File::Current(PROCESSES)),
    ("pids.max", File::Max(PROCESSES)),
    ("pids.peak", File::Peak(PROCESSES)),
    ("pids.events", File::Events(PROCESSES)),
    ("threads.current", File::Current(THREADS)),
    ("threads.max", File::Max(THREADS)),
];

impl File {
    /// The controller the file belongs to (0: the core `cgroup.*` files).
    fn controller(self) -> u8 {
        match self {
            File::Procs | File::Controllers | File::SubtreeControl => 0,
            File::CpuMax | File::CpuWeight | File::CpuStat => CPU_CTL,
            File::Current(MEMORY) | File::Max(MEMORY) | File::Peak(MEMORY) | File::Events(MEMORY) => MEMORY_CTL,
            _ => PIDS_CTL,
        }
    }
}

fn file(name: &str) -> Result<File, CommandError> {
    FILES.iter().find(|(n, _)| *n == name).map(|&(_, f)| f).map_or_else(|| fail(Error::NotFound, format!("{name}: no such file")), Ok)
}

/// Parses a limit: `max`, or a number; for memory, bytes with an optional `K`, `M`, `G` or `T`
/// (powers of 1024), rounded down to whole pages as cgroup v2 does.
pub fn parse_limit(resource: u64, text: &str) -> Result<u64, CommandError> {
    let text = text.trim();
    if text == "max" {
        return Ok(NO_LIMIT);
    }
    let (digits, shift) = match (resource, text.as_bytes().last()) {
        (MEMORY, Some(b'K' | b'k')) => (&text[..text.len() - 1], 10),
        (MEMORY, Some(b'M' | b'm')) => (&text[..text.len() - 1], 20),
        (MEMORY, Some(b'G' | b'g')) => (&text[..text.len() - 1], 30),
        (MEMORY, Some(b'T' | b't')) => (&text[..text.len() - 1], 40),
        _ => (text, 0),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return fail(Error::Invalid, format!("{text:?} is not a number or max"));
    }
    let n: u64 = digits.parse().map_err(|_| CommandError { code: Error::Invalid, message: format!("{text} is too large") })?;
    let value = n.checked_mul(1u64 << shift).ok_or(CommandError { code: Error::Invalid, message: format!("{text} is too large") })?;
    if value == NO_LIMIT {
        return fail(Error::Invalid, format!("{text} is too large (use max)"));
    }
    Ok(if resource == MEMORY { value & !(keel_rt::abi::PAGE_SIZE - 1) } else { value })
}

/// Parses `cpu.max`: `QUOTA [PERIOD]` in microseconds, QUOTA `max` or at least 1000, PERIOD
/// 1000 to 1000000 (kept as `period_ns` when left out); (quota, period) in nanoseconds.
pub fn parse_cpu_max(text: &str, period_ns: u64) -> Result<(u64, u64), CommandError> {
    let usec = |w: &str| w.bytes().all(|b| b.is_ascii_digit()).then(|| w.parse::<u64>().ok()).flatten().and_then(|u| u.checked_mul(1000));
    let words: Vec<&str> = text.split_whitespace().collect();
    let (quota, period) = match words.as_slice() {
        [q] => (*q, None),
        [q, p] => (*q, Some(*p)),
        _ => return fail(Error::Invalid, format!("{text:?}: cpu.max is QUOTA [PERIOD] in microseconds (QUOTA may be max)")),
    };
    let period = match period {
        None => period_ns,
        Some(p) => usec(p).filter(|p| CPU_PERIOD_NS.contains(p)).ok_or(CommandError {
            code: Error::Invalid,
            message: format!("{p:?}: the period is 1000 to 1000000 microseconds"),
        })?,
    };
    let quota = if quota == "max" {
        NO_LIMIT
    } else {
        usec(quota).filter(|q| *q >= 1_000_000 && *q != NO_LIMIT).ok_or(CommandError {
            code: Error::Invalid,
            message: format!("{quota:?}: the quota is max or at least 1000 microseconds"),
        })?
    };
    Ok((quota, period))
}

fn show_limit(limit: u64) -> String {
    if limit == NO_LIMIT { "max".to_string() } else { limit.to_string() }
}

/// Checks a group name: 1 to [`MAX_NAME`] bytes of letters, digits, `-`, `_` and `.`, not `.` or
/// `..`, and not the name of a control file.
fn check_name(name: &str) -> Result<(), CommandError> {
    let ok_bytes = name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.');
    if name.is_empty() || name.len() > MAX_NAME || !ok_bytes || name == "." || name == ".." {
        return fail(Error::Invalid, format!("{name:?}: a group name is 1 to {MAX_NAME} letters, digits, '-', '_' or '.'"));
    }
    if FILES.iter().any(|(n, _)| *n == name) {
        return fail(Error::Invalid, format!("{name}: that is a control file's name"));
    }
    Ok(())
}

/// A path in canonical form (`/`, `/a/b`): absolute, no empty, `.` or `..` components.
fn canonical(path: &str) -> Result<String, CommandError> {
    if !path.starts_with('/') {
        return fail(Error::Invalid, format!("{path}: a group path starts with /"));
    }
    let mut out = String::new();
    for part in path.split('/').filter(|p| !p.is_empty()) {
        check_name(part)?;
        out.push('/');
        out.push_str(part);
    }
    if out.is_empty() {
        out.push('/');
    }
    Ok(out)
}

fn parent_of(path: &str) -> &str {
    match path.rfind('/') {
        Some(0) => "/",
        Some(i) => &path[..i],
        None => "/",
    }
}

/// The tree: every group's quota by canonical path (the root is `/`).
pub struct Tree<Q: Quotas> {
    quotas: Q,
    groups: BTreeMap<String, Q::Handle>,
    /// Each group's `cgroup.subtree_control` (a group not here has none enabled).
    subtree: BTreeMap<String, u8>,
}

impl<Q: Quotas> Tree<Q> {
    pub fn new(quotas: Q, root: Q::Handle) -> Self {
        let mut groups = BTreeMap::new();
        groups.insert("/".to_string(), root);
        let mut subtree = BTreeMap::new();
        subtree.insert("/".to_string(), ALL_CTL);
        Self { quotas, groups, subtree }
    }

    /// The controllers group `path` has (its `cgroup.controllers`).
    fn controllers(&self, path: &str) -> u8 {
        if path == "/" { ALL_CTL } else { self.subtree_of(parent_of(path)) }
    }

    fn subtree_of(&self, path: &str) -> u8 {
        self.subtree.get(path).copied().unwrap_or(0)
    }

    /// Whether `f` is one of `path`'s files: a core file, or one of a controller it has (the
    /// root: no limit files).
    fn has_file(&self, path: &str, f: File) -> bool {
        if path == "/" && matches!(f, File::Max(_) | File::CpuMax | File::CpuWeight) {
            return false;
        }
        f.controller() == 0 || self.controllers(path) & f.controller() != 0
    }

    /// The processes in group `quota` itself (not below it), by pid.
    fn own_processes(&mut self, quota: Q::Handle) -> Result<Vec<u64>, CommandError> {
        let id = self.read(quota, MEMORY)?.id;
        let procs = self.quotas.processes().map_err(|e| CommandError { code: e, message: format!("the process list: {e}") })?;
        let mut pids: Vec<u64> = procs.iter().filter(|&&(_, q)| q == id).map(|&(pid, _)| pid).collect();
        pids.sort_unstable();
        Ok(pids)
    }

    /// The quota of the group at `path` to put a process in: not a group (other than the root)
    /// with controllers enabled for its children (no internal processes).
    pub fn quota_for_processes(&self, path: &str) -> Result<Q::Handle, CommandError> {
        let path = canonical(path)?;
        let quota = self.quota(&path)?;
        if path != "/" && self.subtree_of(&path) != 0 {
            return fail(Error::BadState, format!("{path}: has controllers enabled for its children (cgroup.subtree_control), so it holds no processes; use a group below it"));
        }
        Ok(quota)
    }

    /// The quota of the group at `path`.
    pub fn quota(&self, path: &str) -> Result<Q::Handle, CommandError> {
        let path = canonical(path)?;
        self.groups.get(&path).copied().map_or_else(|| fail(Error::NotFound, format!("{path}: no such group")), Ok)
    }

    fn children<'a>(&'a self, path: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.groups.keys().filter(move |k| k.as_str() != "/" && parent_of(k) == path).map(|k| &k[k.rfind('/').map_or(0, |i| i + 1)..])
    }

    /// Runs one command.
    pub fn command(&mut self, args: &[&str]) -> Result<String, CommandError> {
        match args {
            ["ls"] => self.ls("/"),
            ["ls", path] => self.ls(path),
            ["mkdir", path] => self.mkdir(path).map(|()| String::new()),
            ["rmdir", path] => self.rmdir(path).map(|()| String::new()),
            ["cat", path, name] => self.cat(path, name),
            ["set", path, name, value] => self.set(path, name, value).map(|()| String::new()),
            ["stat"] => self.stat(),
            ["ids"] => self.ids(),
            _ => fail(Error::Invalid, "usage: ls [PATH] | mkdir PATH | rmdir PATH | cat PATH FILE | set PATH FILE VALUE | stat | ids"),
        }
    }

    fn ls(&self, path: &str) -> Result<String, CommandError> {
        let path = canonical(path)?;
        self.quota(&path)?;
        let mut out = String::new();
        for &(name, f) in FILES {
            if self.has_file(&path, f) {
                let _ = writeln!(out, "{name}");
            }
        }
        for child in self.children(&path) {
            let _ = writeln!(out, "{child}/");
        }
        Ok(out)
    }

    fn mkdir(&mut self, path: &str) -> Result<(), CommandError> {
        let path = canonical(path)?;
        if path == "/" || self.groups.contains_key(&path) {
            return fail(Error::Exists, format!("{path}: exists"));
        }
        let parent = self.quota(parent_of(&path))?;
        if self.groups.len() >= MAX_GROUPS {
            return fail(Error::Limit, format!("{path}: the tree has {MAX_GROUPS} groups already"));
        }
        let quota = match self.quotas.create_child(parent) {
            Ok(q) => q,
            Err(Error::Limit) => return fail(Error::Limit, format!("{path}: too deep (the kernel keeps 32 levels)")),
            Err(e) => return fail(e, format!("{path}: {e}")),
        };
        self.groups.insert(path, quota);
        Ok(())
    }

    fn rmdir(&mut self, path: &str) -> Result<(), CommandError> {
        let path = canonical(path)?;
        if path == "/" {
            return fail(Error::BadState, "/: the root group cannot be removed");
        }
        let quota = self.quota(&path)?;
        if self.children(&path).next().is_some() {
            return fail(Error::BadState, format!("{path}: has child groups"));
        }
        let procs = self.quotas.stat(quota, PROCESSES).map_err(|e| CommandError { code: e, message: format!("{path}: {e}") })?;
        if procs.usage != 0 {
            return fail(Error::BadState, format!("{path}: has {} processes", procs.usage));
        }
        self.groups.remove(&path);
        self.subtree.remove(&path);
        self.quotas.release(quota);
        Ok(())
    }

    fn read(&mut self, quota: Q::Handle, resource: u64) -> Result<QuotaStat, CommandError> {
        self.quotas.stat(quota, resource).map_err(|e| CommandError { code: e, message: format!("{e}") })
    }

    fn read_cpu(&mut self, quota: Q::Handle) -> Result<CpuStat, CommandError> {
        self.quotas.stat_cpu(quota).map_err(|e| CommandError { code: e, message: format!("{e}") })
    }

    fn cat(&mut self, path: &str, name: &str) -> Result<String, CommandError> {
        let path = canonical(path)?;
        let quota = self.quota(&path)?;
        let f = file(name)?;
        if !self.has_file(&path, f) {
            return fail(Error::NotFound, format!("{path}: no {name} (the root group has no limits; a controller's files are in a group whose parent enables it in cgroup.subtree_control)"));
        }
        Ok(match f {
            File::Procs => self.own_processes(quota)?.iter().map(|p| format!("{p}\n")).collect(),
            File::Controllers => controller_names(self.controllers(&path)),
            File::SubtreeControl => controller_names(self.subtree_of(&path)),
            File::CpuMax => {
                let c = self.read_cpu(quota)?;
                let q = if c.quota_ns == NO_LIMIT { "max".to_string() } else { (c.quota_ns / 1000).to_string() };
                format!("{q} {}\n", c.period_ns / 1000)
            }
            File::CpuWeight => format!("{}\n", self.read_cpu(quota)?.weight),
            File::CpuStat => {
                let c = self.read_cpu(quota)?;
                format!(
                    "usage_usec {}\nnr_periods {}\nnr_throttled {}\nthrottled_usec {}\n",
                    c.usage_ns / 1000,
                    c.nr_periods,
                    c.nr_throttled,
                    c.throttled_ns / 1000
                )
            }
            File::Current(r) => format!("{}\n", self.read(quota, r)?.usage),
            File::Max(r) => format!("{}\n", show_limit(self.read(quota, r)?.limit)),
            File::Peak(r) => format!("{}\n", self.read(quota, r)?.peak),
            File::Events(MEMORY) => {
                let s = self.read(quota, MEMORY)?;
                format!("max {}\noom {}\noom_kill {}\n", s.refused, s.oom_kills, s.oom_kills)
            }
            File::Events(r) => format!("max {}\n", self.read(quota, r)?.refused),
        })
    }

    fn set(&mut self, path: &str, name: &str, value: &str) -> Result<(), CommandError> {
        let path = canonical(path)?;
        let quota = self.quota(&path)?;
        let f = file(name)?;
        if !self.has_file(&path, f) {
            let why = if path == "/" { "the root group has no limits".to_string() } else { format!("{path}'s parent does not enable its controller (cgroup.subtree_control)") };
            return fail(if path == "/" { Error::Invalid } else { Error::NotFound }, format!("{name}: {why}"));
        }
        match f {
            File::CpuMax => {
                let (quota_ns, period_ns) = parse_cpu_max(value, self.read_cpu(quota)?.period_ns)?;
                self.quotas.set_cpu(quota, quota_ns, period_ns).map_err(|e| CommandError { code: e, message: format!("{name}: {e}") })
            }
            File::CpuWeight => {
                let w = value.trim().parse::<u64>().ok().filter(|w| CPU_WEIGHTS.contains(w) && value.trim().bytes().all(|b| b.is_ascii_digit()));
                let Some(w) = w else { return fail(Error::Invalid, format!("{value:?}: cpu.weight is 1 to 10000")) };
                self.quotas.set_weight(quota, w).map_err(|e| CommandError { code: e, message: format!("{name}: {e}") })
            }
            File::Max(r) => {
                let limit = parse_limit(r, value)?;
                self.quotas.set(quota, r, limit).map_err(|e| CommandError { code: e, message: format!("{name}: {e}") })
            }
            File::Procs => {
                let quota = self.quota_for_processes(&path)?;
                let v = value.trim();
                let pid = v.parse::<u64>().ok().filter(|_| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()));
                let Some(pid) = pid else { return fail(Error::Invalid, format!("{value:?}: cgroup.procs takes one process id")) };
                self.quotas.move_process(quota, pid).map_err(|e| match e {
                    // Not NotFound, which is a group or file that is not there (ENOENT): the
                    // process is gone (the file service answers ESRCH, as Linux does).
                    Error::NotFound => CommandError { code: Error::PeerDied, message: format!("{pid}: no such process") },
                    Error::BadState => CommandError { code: e, message: format!("{pid}: init stays in the root group") },
                    e => CommandError { code: e, message: format!("cgroup.procs: moving {pid}: {e}") },
                })
            }
            File::SubtreeControl => self.set_subtree(&path, quota, value),
            _ => fail(Error::Invalid, format!("{name}: read-only")),
        }
    }

    /// `cgroup.subtree_control`: `+name` enables a controller for the children, `-name`
    /// disables it (and puts their limits of it back to max).
    fn set_subtree(&mut self, path: &str, quota: Q::Handle, value: &str) -> Result<(), CommandError> {
        let (mut on, mut off) = (0u8, 0u8);
        for word in value.split_whitespace() {
            let (sign, name) = word.split_at(word.len().min(1));
            let Some(&(_, c)) = CONTROLLERS.iter().find(|(n, _)| *n == name) else {
                return fail(Error::Invalid, format!("{word:?}: +name or -name of cpu, memory, pids"));
            };
            match sign {
                "+" => on |= c,
                "-" => off |= c,
                _ => return fail(Error::Invalid, format!("{word:?}: +name or -name of cpu, memory, pids")),
            }
        }
        if on & off != 0 || (on | off) == 0 {
            return fail(Error::Invalid, format!("{value:?}: each controller once, +name or -name"));
        }
        if on & !self.controllers(path) != 0 {
            return fail(Error::NotFound, format!("{value}: {path} does not have it (cgroup.controllers: {})", controller_names(self.controllers(path)).trim_end()));
        }
        let now = self.subtree_of(path);
        let children: Vec<String> = self.children(path).map(|c| if path == "/" { format!("/{c}") } else { format!("{path}/{c}") }).collect();
        if children.iter().any(|c| self.subtree_of(c) & off != 0) {
            return fail(Error::BadState, format!("{value}: a child group enables it for its own children"));
        }
        if path != "/" && now == 0 && on != 0 && !self.own_processes(quota)?.is_empty() {
            return fail(Error::BadState, format!("{path}: has processes; a group that enables controllers for its children holds none (move them to a child first)"));
        }
        // The children's files of a controller turned off go, and their limits with them.
        for child in &children {
            let q = self.quota(child)?;
            let reset = |r: Result<(), Error>| r.map_err(|e| CommandError { code: e, message: format!("{child}: {e}") });
            if off & MEMORY_CTL != 0 {
                reset(self.quotas.set(q, MEMORY, NO_LIMIT))?;
            }
            if off & PIDS_CTL != 0 {
                reset(self.quotas.set(q, PROCESSES, NO_LIMIT))?;
                reset(self.quotas.set(q, THREADS, NO_LIMIT))?;
            }
            if off & CPU_CTL != 0 {
                reset(self.quotas.set_cpu(q, NO_LIMIT, keel_rt::abi::quota::DEFAULT_CPU_PERIOD_NS))?;
                reset(self.quotas.set_weight(q, keel_rt::abi::quota::DEFAULT_CPU_WEIGHT))?;
            }
        }
        self.subtree.insert(path.to_string(), (now | on) & !off);
        Ok(())
    }

    fn ids(&mut self) -> Result<String, CommandError> {
        let groups: Vec<(String, Q::Handle)> = self.groups.iter().map(|(p, q)| (p.clone(), *q)).collect();
        let mut out = String::new();
        for (path, quota) in groups {
            let _ = writeln!(out, "{}\t{path}", self.read(quota, MEMORY)?.id);
        }
        Ok(out)
    }

    fn stat(&mut self) -> Result<String, CommandError> {
        let mut out = String::from("GROUP                     MEMORY        MAX   PROCS    MAX  OOM-KILLS     CPU-MS  CPU.MAX\n");
        let groups: Vec<(String, Q::Handle)> = self.groups.iter().map(|(p, q)| (p.clone(), *q)).collect();
        for (path, quota) in groups {
            let m = self.read(quota, MEMORY)?;
            let p = self.read(quota, PROCESSES)?;
            let c = self.read_cpu(quota)?;
            let cpu_max = if c.quota_ns == NO_LIMIT { "max".to_string() } else { format!("{}/{}", c.quota_ns / 1000, c.period_ns / 1000) };
            let _ = writeln!(
                out,
                "{path:<20} {:>11} {:>10} {:>7} {:>6} {:>10} {:>10}  {cpu_max}",
                m.usage,
                show_limit(m.limit),
                p.usage,
                show_limit(p.limit),
                m.oom_kills,
                c.usage_ns / 1_000_000
            );
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    /// Quotas as the kernel keeps them, hierarchical limits included.
    #[derive(Default)]
    struct Fake {
        next: u32,
        parent: HashMap<u32, Option<u32>>,
        usage: HashMap<(u32, u64), u64>,
        limit: HashMap<(u32, u64), u64>,
        released: Vec<u32>,
        cpu: HashMap<u32, (u64, u64)>,
        weight: HashMap<u32, u64>,
        /// Running processes: pid → quota.
        procs: std::collections::BTreeMap<u64, u32>,
    }

    /// The fake's quota numbers differ from its handles, as the kernel's ids differ from slots.
    fn fake_id(q: u32) -> u64 {
        u64::from(q) + 100
    }

    impl Fake {
        fn root() -> (Self, u32) {
            let mut f = Fake::default();
            f.parent.insert(0, None);
            f.next = 1;
            (f, 0)
        }

        fn charge(&mut self, q: u32, r: u64, n: u64) {
            let mut at = Some(q);
            while let Some(x) = at {
                *self.usage.entry((x, r)).or_default() += n;
                at = self.parent[&x];
            }
        }
    }

    impl Quotas for &mut Fake {
        type Handle = u32;
        fn create_child(&mut self, parent: u32) -> Result<u32, Error> {
            let mut depth = 0;
            let mut at = Some(parent);
            while let Some(x) = at {
                depth += 1;
                at = self.parent[&x];
            }
            if depth > 32 {
                return Err(Error::Limit);
            }
            let id = self.next;
            self.next += 1;
            self.parent.insert(id, Some(parent));
            Ok(id)
        }
        fn set(&mut self, q: u32, r: u64, limit: u64) -> Result<(), Error> {
            self.limit.insert((q, r), limit);
            Ok(())
        }
        fn stat(&mut self, q: u32, r: u64) -> Result<QuotaStat, Error> {
            if self.released.contains(&q) {
                return Err(Error::BadSlot);
            }
            Ok(QuotaStat {
                usage: self.usage.get(&(q, r)).copied().unwrap_or(0),
                limit: self.limit.get(&(q, r)).copied().unwrap_or(NO_LIMIT),
                id: fake_id(q),
                ..QuotaStat::default()
            })
        }
        fn release(&mut self, q: u32) {
            self.released.push(q);
        }
        fn set_cpu(&mut self, q: u32, quota_ns: u64, period_ns: u64) -> Result<(), Error> {
            self.cpu.insert(q, (quota_ns, period_ns));
            Ok(())
        }
        fn set_weight(&mut self, q: u32, weight: u64) -> Result<(), Error> {
            self.weight.insert(q, weight);
            Ok(())
        }
        fn stat_cpu(&mut self, q: u32) -> Result<CpuStat, Error> {
            let (quota_ns, period_ns) = self.cpu.get(&q).copied().unwrap_or((NO_LIMIT, 100_000_000));
            Ok(CpuStat { usage_ns: 1_500_000, quota_ns, period_ns, weight: self.weight.get(&q).copied().unwrap_or(100), ..CpuStat::default() })
        }
        fn processes(&mut self) -> Result<Vec<(u64, u64)>, Error> {
            Ok(self.procs.iter().map(|(&pid, &q)| (pid, fake_id(q))).collect())
        }
        fn move_process(&mut self, q: u32, pid: u64) -> Result<(), Error> {
            match self.procs.get_mut(&pid) {
                Some(_) if pid == 1 => Err(Error::BadState),
                Some(at) => {
                    *at = q;
                    Ok(())
                }
                None => Err(Error::NotFound),
            }
        }
    }

    fn run(t: &mut Tree<&mut Fake>, line: &str) -> Result<String, Error> {
        let args: Vec<&str> = line.split_whitespace().collect();
        t.command(&args).map_err(|e| e.code)
    }

    #[test]
    fn groups_are_made_listed_limited_and_removed() {
        let (mut f, root) = Fake::root();
        let mut t = Tree::new(&mut f, root);
        run(&mut t, "mkdir /jobs").unwrap();
        run(&mut t, "mkdir /jobs/a").unwrap();
        run(&mut t, "mkdir /vms").unwrap();
        let ls = run(&mut t, "ls /").unwrap();
        assert!(ls.contains("jobs/\n") && ls.contains("vms/\n") && !ls.contains("a/"));
        assert!(!ls.contains("memory.max") && !ls.contains("cpu.max"), "the root has no limit files");
        assert!(run(&mut t, "ls /jobs").unwrap().contains("memory.max\n"));
        run(&mut t, "set /jobs memory.max 64M").unwrap();
        assert_eq!(run(&mut t, "cat /jobs memory.max").unwrap(), "67108864\n");
        run(&mut t, "set /jobs pids.max 50").unwrap();
        assert_eq!(run(&mut t, "cat /jobs/ pids.max").unwrap(), "50\n", "a trailing slash names the same group");
        run(&mut t, "set /jobs pids.max max").unwrap();
        assert_eq!(run(&mut t, "cat /jobs pids.max").unwrap(), "max\n");
        assert_eq!(run(&mut t, "rmdir /jobs"), Err(Error::BadState), "it has a child");
        run(&mut t, "rmdir /jobs/a").unwrap();
        run(&mut t, "rmdir /jobs").unwrap();
        assert_eq!(run(&mut t, "cat /jobs memory.max"), Err(Error::NotFound));
        assert_eq!(f.released.len(), 2);
    }

    #[test]
    fn usage_and_events_read_as_cgroup_v2_prints_them() {
        let (mut f, root) = Fake::root();
        let mut t = Tree::new(&mut f, root);
        run(&mut t, "mkdir /a").unwrap();
        let a = t.quota("/a").unwrap();
        drop(t);
        f.charge(a, MEMORY, 8192);
        f.charge(a, PROCESSES, 2);
        let mut t = Tree::new(&mut f, root);
        t.groups.insert("/a".into(), a);
        assert_eq!(run(&mut t, "cat /a memory.current").unwrap(), "8192\n");
        assert_eq!(run(&mut t, "cat / memory.current").unwrap(), "8192\n", "the root counts everything");
        assert_eq!(run(&mut t, "cat /a memory.events").unwrap(), "max 0\noom 0\noom_kill 0\n");
        assert_eq!(run(&mut t, "cat /a pids.events").unwrap(), "max 0\n");
        assert_eq!(run(&mut t, "cat /a cgroup.controllers").unwrap(), "cpu memory pids\n");
        assert_eq!(run(&mut t, "rmdir /a"), Err(Error::BadState), "it has processes");
        let stat = run(&mut t, "stat").unwrap();
        assert!(stat.lines().any(|l| l.starts_with("/a ") && l.contains("8192")), "{stat}");
    }

    #[test]
    fn cgroup_procs_lists_a_groups_own_processes_and_a_write_moves_one() {
        let (mut f, root) = Fake::root();
        f.procs.extend([(1, root), (5, root), (9, root)]);
        let mut t = Tree::new(&mut f, root);
        run(&mut t, "mkdir /a").unwrap();
        run(&mut t, "mkdir /a/b").unwrap();
        assert_eq!(run(&mut t, "cat / cgroup.procs").unwrap(), "1\n5\n9\n");
        assert_eq!(run(&mut t, "cat /a cgroup.procs").unwrap(), "");
        run(&mut t, "set /a/b cgroup.procs 9").unwrap();
        run(&mut t, "set /a cgroup.procs 5\n").unwrap();
        assert_eq!(run(&mut t, "cat /a cgroup.procs").unwrap(), "5\n", "its own processes, not its children's");
        assert_eq!(run(&mut t, "cat /a/b cgroup.procs").unwrap(), "9\n");
        assert_eq!(run(&mut t, "cat / cgroup.procs").unwrap(), "1\n");
        for bad in ["", "x", "-5", "5 9", "0x5", "99999999999999999999"] {
            let args = ["set", "/a", "cgroup.procs", bad];
            assert_eq!(t.command(&args).map_err(|e| e.code), Err(Error::Invalid), "cgroup.procs {bad:?}");
        }
        assert_eq!(run(&mut t, "set /a cgroup.procs 77"), Err(Error::PeerDied), "no such process");
        assert_eq!(run(&mut t, "set /a cgroup.procs 1"), Err(Error::BadState), "init stays at the root");
        assert!(run(&mut t, "ls /").unwrap().contains("cgroup.procs\n"));
        // Each group's number, for ps.
        let ids = run(&mut t, "ids").unwrap();
        let a = t.quota("/a").unwrap();
        assert!(ids.lines().any(|l| l == format!("{}\t/a", fake_id(a))), "{ids}");
        assert!(ids.lines().any(|l| l == format!("{}\t/", fake_id(root))), "{ids}");
        assert_eq!(ids.lines().count(), 3);
    }

    #[test]
    fn controllers_are_enabled_top_down_and_a_group_that_enables_them_holds_no_processes() {
        let (mut f, root) = Fake::root();
        f.procs.extend([(1, root), (5, root)]);
        let mut t = Tree::new(&mut f, root);
        assert_eq!(run(&mut t, "cat / cgroup.subtree_control").unwrap(), "cpu memory pids\n");
        run(&mut t, "mkdir /jobs").unwrap();
        run(&mut t, "mkdir /jobs/a").unwrap();
        // /jobs has every controller (the root enables them); its children none yet.
        assert_eq!(run(&mut t, "cat /jobs cgroup.controllers").unwrap(), "cpu memory pids\n");
        assert_eq!(run(&mut t, "cat /jobs cgroup.subtree_control").unwrap(), "\n");
        assert_eq!(run(&mut t, "cat /jobs/a cgroup.controllers").unwrap(), "\n");
        assert!(!run(&mut t, "ls /jobs/a").unwrap().contains("memory.max"), "no controller, no files");
        assert_eq!(run(&mut t, "set /jobs/a memory.max 8M"), Err(Error::NotFound));
        // A process in /jobs keeps it from enabling controllers for its children.
        run(&mut t, "set /jobs cgroup.procs 5").unwrap();
        assert_eq!(run(&mut t, "set /jobs cgroup.subtree_control +memory"), Err(Error::BadState));
        run(&mut t, "set /jobs/a cgroup.procs 5").unwrap();
        t.command(&["set", "/jobs", "cgroup.subtree_control", "+memory +pids"]).unwrap();
        assert_eq!(run(&mut t, "cat /jobs cgroup.subtree_control").unwrap(), "memory pids\n");
        assert_eq!(run(&mut t, "cat /jobs/a cgroup.controllers").unwrap(), "memory pids\n");
        run(&mut t, "set /jobs/a memory.max 8M").unwrap();
        assert!(!run(&mut t, "ls /jobs/a").unwrap().contains("cpu.max"), "cpu is not enabled");
        // Now /jobs holds no processes: neither a move nor a start.
        assert_eq!(run(&mut t, "set /jobs cgroup.procs 1"), Err(Error::BadState));
        assert_eq!(t.quota_for_processes("/jobs").map_err(|e| e.code), Err(Error::BadState));
        assert!(t.quota_for_processes("/jobs/a").is_ok());
        assert!(t.quota_for_processes("/").is_ok(), "the root is exempt");
        // Enabling needs the controller in the group; disabling needs no child using it below.
        run(&mut t, "mkdir /jobs/a/b").unwrap();
        assert_eq!(run(&mut t, "set /jobs/a cgroup.subtree_control +cpu"), Err(Error::NotFound));
        run(&mut t, "set /jobs/a cgroup.procs 1").unwrap_err();
        run(&mut t, "set / cgroup.procs 5").unwrap();
        run(&mut t, "set /jobs/a cgroup.subtree_control +memory").unwrap();
        assert_eq!(run(&mut t, "set /jobs cgroup.subtree_control -memory"), Err(Error::BadState), "/jobs/a uses it");
        run(&mut t, "set /jobs/a cgroup.subtree_control -memory").unwrap();
        // Disabling takes the children's files and limits away.
        let a = t.quota("/jobs/a").unwrap();
        run(&mut t, "set /jobs cgroup.subtree_control -memory").unwrap();
        assert_eq!(run(&mut t, "cat /jobs/a memory.max"), Err(Error::NotFound));
        drop(t);
        assert_eq!(f.limit.get(&(a, MEMORY)).copied(), Some(NO_LIMIT), "its limit went with its file");
        let mut t = Tree::new(&mut f, root);
        for bad in ["", "memory", "+mem", "+memory -memory", "*cpu", "+"] {
            let args = ["set", "/", "cgroup.subtree_control", bad];
            assert_eq!(t.command(&args).map_err(|e| e.code), Err(Error::Invalid), "subtree_control {bad:?}");
        }
    }

    #[test]
    fn bad_input_is_refused_and_changes_nothing() {
        let (mut f, root) = Fake::root();
        let mut t = Tree::new(&mut f, root);
        run(&mut t, "mkdir /a").unwrap();
        for bad in ["-1", "12Q", "", "max1", "1.5G", "99999999999999999999", "16777216T", "0x10"] {
            let args = ["set", "/a", "memory.max", bad];
            assert_eq!(t.command(&args).map_err(|e| e.code), Err(Error::Invalid), "memory.max {bad:?}");
        }
        assert_eq!(run(&mut t, "set /a pids.max 5K"), Err(Error::Invalid), "suffixes are for memory only");
        assert_eq!(run(&mut t, "cat /a memory.max").unwrap(), "max\n");
        assert_eq!(run(&mut t, "set /a memory.current 5"), Err(Error::Invalid), "read-only");
        assert_eq!(run(&mut t, "set / memory.max 5"), Err(Error::Invalid), "the root has no limits");
        assert_eq!(run(&mut t, "cat /a nosuch.file"), Err(Error::NotFound));
        assert_eq!(run(&mut t, "mkdir /a"), Err(Error::Exists));
        assert_eq!(run(&mut t, "mkdir /"), Err(Error::Exists));
        assert_eq!(run(&mut t, "mkdir /nosuch/b"), Err(Error::NotFound));
        assert_eq!(run(&mut t, "mkdir relative"), Err(Error::Invalid));
        assert_eq!(run(&mut t, "mkdir /a/.."), Err(Error::Invalid));
        assert_eq!(run(&mut t, "mkdir /a/memory.max"), Err(Error::Invalid));
        assert_eq!(run(&mut t, "mkdir /a/b$c"), Err(Error::Invalid));
        let long = format!("mkdir /{}", "x".repeat(MAX_NAME + 1));
        assert_eq!(run(&mut t, &long), Err(Error::Invalid));
        assert_eq!(run(&mut t, "rmdir /"), Err(Error::BadState));
        assert_eq!(run(&mut t, "frobnicate"), Err(Error::Invalid));
        assert_eq!(run(&mut t, "set /a cgroup.subtree_control +io"), Err(Error::Invalid));
        t.command(&["set", "/a", "cgroup.subtree_control", "+memory +pids"]).unwrap();
        assert_eq!(run(&mut t, "ls /").unwrap().matches('/').count(), 1);
    }

    #[test]
    fn a_deep_tree_stops_at_the_kernels_depth() {
        let (mut f, root) = Fake::root();
        let mut t = Tree::new(&mut f, root);
        let mut path = String::new();
        let mut made = 0;
        for _ in 0..10_000 {
            path.push_str("/d");
            match run(&mut t, &format!("mkdir {path}")) {
                Ok(_) => made += 1,
                Err(e) => {
                    assert_eq!(e, Error::Limit);
                    break;
                }
            }
        }
        assert_eq!(made, 32);
    }

    #[test]
    fn cpu_files_read_and_write_as_cgroup_v2() {
        let (mut f, root) = Fake::root();
        let mut t = Tree::new(&mut f, root);
        run(&mut t, "mkdir /a").unwrap();
        assert_eq!(run(&mut t, "cat /a cpu.max").unwrap(), "max 100000\n");
        t.command(&["set", "/a", "cpu.max", "20000 100000"]).unwrap();
        assert_eq!(run(&mut t, "cat /a cpu.max").unwrap(), "20000 100000\n");
        run(&mut t, "set /a cpu.max 50000").unwrap();
        assert_eq!(run(&mut t, "cat /a cpu.max").unwrap(), "50000 100000\n", "the period is kept");
        run(&mut t, "set /a cpu.max max").unwrap();
        assert_eq!(run(&mut t, "cat /a cpu.max").unwrap(), "max 100000\n");
        run(&mut t, "set /a cpu.weight 300").unwrap();
        assert_eq!(run(&mut t, "cat /a cpu.weight").unwrap(), "300\n");
        assert!(run(&mut t, "cat /a cpu.stat").unwrap().starts_with("usage_usec 1500\nnr_periods 0\n"));
        for bad in ["0", "999", "-5", "x", "20000 999", "20000 2000000", "1 2 3", ""] {
            assert_eq!(t.command(&["set", "/a", "cpu.max", bad]).map_err(|e| e.code), Err(Error::Invalid), "cpu.max {bad:?}");
        }
        for bad in ["0", "10001", "-1", "1e3", "max"] {
            assert_eq!(t.command(&["set", "/a", "cpu.weight", bad]).map_err(|e| e.code), Err(Error::Invalid), "cpu.weight {bad:?}");
        }
        assert_eq!(run(&mut t, "set / cpu.max 20000"), Err(Error::Invalid));
        assert_eq!(run(&mut t, "cat / cpu.weight"), Err(Error::NotFound));
        assert!(run(&mut t, "cat / cpu.stat").is_ok(), "the root has cpu.stat");
    }

    #[test]
    fn limits_parse_like_cgroup_v2() {
        assert_eq!(parse_limit(MEMORY, "max"), Ok(NO_LIMIT));
        assert_eq!(parse_limit(MEMORY, "64M"), Ok(64 << 20));
        assert_eq!(parse_limit(MEMORY, "1g"), Ok(1 << 30));
        assert_eq!(parse_limit(MEMORY, "4097"), Ok(4096), "rounded down to pages");
        assert_eq!(parse_limit(MEMORY, " 2K\n"), Ok(0), "2 KiB is less than a page");
        assert_eq!(parse_limit(PROCESSES, "50"), Ok(50));
        assert!(parse_limit(PROCESSES, "18446744073709551615").is_err(), "u64::MAX is spelled max");
    }
}
