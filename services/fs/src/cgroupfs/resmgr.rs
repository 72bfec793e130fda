//! The cgroup file system's side of resmgr's protocol (`keel_rt::proto::resmgr::COMMAND`): the
//! [`Resmgr`] trait the IPC glue implements (a fake in the tests), one command run with the
//! recovery a restarted resmgr needs, resmgr's errors as errno values, its `ls` listing parsed,
//! and a written value made into a `set` argument.
//!
//! It never names a control file: whatever resmgr lists is read with `cat` and written with
//! `set` the same way.
//!
//! A restarted resmgr: init keeps the connection, so the same capability reaches the new
//! process, but the new process does not know this client's bulk buffer (set up with the old
//! one). It then sees a command without words and answers an error without a message, which
//! resmgr never sends otherwise: the link sets its buffer up again ([`Resmgr::reset`]) and the
//! command, which did nothing, is sent once more. A call cut by resmgr dying under it
//! (`PeerDied`) is not repeated (it may have taken effect): EIO, and the next call sets up again.

use crate::node::Kind;
use alloc::string::String;
use alloc::vec::Vec;
use keel_rt::Error;
use keel_rt::errno::Errno;

/// The longest value a write may carry (a page, as Linux's cgroup files take).
pub const MAX_VALUE: usize = 4096;

/// resmgr's answer to one command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    /// 0, or the error (`keel_rt::Error::code`, as resmgr sends it in data[1]).
    pub code: u64,
    /// The text (success) or the one-line message (failure).
    pub text: String,
}

/// A line to resmgr.
pub trait Resmgr: Send {
    /// Sends one command (its words, NUL-separated on the wire); the reply, or why the call
    /// itself failed (`PeerDied`: resmgr died while handling it).
    fn command(&mut self, words: &[&str]) -> Result<Reply, Error>;
    /// Forgets what the connection set up with the resmgr that answered so far (its bulk
    /// buffer), so the next call sets it up with whichever resmgr serves then.
    fn reset(&mut self);
}

/// resmgr's error as the errno cgroup v2 gives for the same failure.
pub fn errno_of(e: Error) -> Errno {
    match e {
        // A value that does not parse, a bad group name, a read-only file written.
        Error::Invalid => Errno::Inval,
        Error::NotFound => Errno::NoEnt,
        Error::Exists => Errno::Exist,
        Error::NoRights => Errno::Perm,
        // rmdir of a group with children or processes; a move of init.
        Error::BadState => Errno::Busy,
        // A pid written to cgroup.procs that names no process.
        Error::PeerDied => Errno::Srch,
        // Too many groups or too deep: cgroup v2's mkdir past cgroup.max.descendants/depth.
        Error::Limit => Errno::Again,
        Error::NoMemory => Errno::NoMem,
        _ => Errno::Io,
    }
}

/// Runs one command on `link`: resmgr's text, or the errno of its failure; `Io` if there is
/// no resmgr (no capability) or the call failed.
pub fn run(link: Option<&mut (dyn Resmgr + 'static)>, words: &[&str]) -> Result<String, Errno> {
    let link = link.ok_or(Errno::Io)?;
    let mut reply = call(link, words)?;
    if reply.code != 0 && reply.text.is_empty() {
        // A restarted resmgr that never saw our buffer (see the module's comment).
        link.reset();
        reply = call(link, words)?;
    }
    if reply.code == 0 {
        return Ok(reply.text);
    }
    Err(Error::from_code(reply.code as i64).map_or(Errno::Io, errno_of))
}

fn call(link: &mut dyn Resmgr, words: &[&str]) -> Result<Reply, Errno> {
    match link.command(words) {
        Ok(r) => Ok(r),
        Err(Error::PeerDied) => {
            link.reset();
            Err(Errno::Io)
        }
        Err(_) => Err(Errno::Io),
    }
}

/// One line of `ls`: a control file, or a child group (listed with a trailing `/`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Listed {
    pub name: String,
    pub kind: Kind,
}

/// Parses `ls`'s reply: one name a line, groups ending in `/`. Lines that could not be a name
/// (empty, `.`, `..`, holding a `/` inside) are skipped, not trusted.
pub fn parse_listing(text: &str) -> Vec<Listed> {
    text.lines()
        .filter_map(|line| {
            let (name, kind) = match line.strip_suffix('/') {
                Some(n) => (n, Kind::Dir),
                None => (line, Kind::File),
            };
            crate::node::check_name(name).ok()?;
            Some(Listed {
                name: String::from(name),
                kind,
            })
        })
        .collect()
}

/// The value a write carries, as `set` takes it: UTF-8 without its trailing newline or
/// blanks (`echo 64M > memory.max` writes `64M\n`). Empty, too long, or holding a NUL (which
/// would split the command's words): `Inval`.
pub fn value_of(data: &[u8]) -> Result<&str, Errno> {
    if data.len() > MAX_VALUE {
        return Err(Errno::Inval);
    }
    let text = core::str::from_utf8(data).map_err(|_| Errno::Inval)?;
    let value = text.trim_end();
    if value.is_empty() || value.contains('\0') {
        return Err(Errno::Inval);
    }
    Ok(value)
}

/// Whether cgroup v2 shows the control file `name` read-only (0444): by its naming convention,
/// what ends in `.current`, `.peak`, `.events` or `.stat`, and `cgroup.controllers`. It only
/// sets the mode `ls -l` shows: every write still goes to resmgr, which decides (a file it
/// refuses to set answers EINVAL), and a new file resmgr lists shows 0644 unless it follows
/// the convention.
pub fn reads_only(name: &str) -> bool {
    name == "cgroup.controllers"
        || [".current", ".peak", ".events", ".stat"]
            .iter()
            .any(|s| name.ends_with(s))
}

#[cfg(test)]
pub mod fake {
    //! resmgr in memory, for the tests: a [`Tree`] of groups behind the same protocol, with a
    //! switch to play a restarted resmgr that lost the client's buffer, or one that died.

    use super::*;
    use alloc::collections::BTreeMap;
    use alloc::format;
    use alloc::string::ToString;
    use std::sync::{Arc, Mutex};

    /// What the fake resmgr holds; shared with the test through an `Arc`.
    #[derive(Default)]
    pub struct Tree {
        /// Group path → (file name → value).
        pub groups: BTreeMap<String, BTreeMap<String, String>>,
        /// Every command received, words joined by spaces.
        pub log: Vec<String>,
        /// The next call fails as if resmgr died under it.
        pub die_next: bool,
        /// The client's buffer is not known (a restarted resmgr): commands arrive without words.
        pub lost_buffer: bool,
        pub resets: u32,
    }

    fn files(root: bool) -> BTreeMap<String, String> {
        let mut f = BTreeMap::new();
        f.insert(
            "cgroup.controllers".to_string(),
            "cpu memory pids\n".to_string(),
        );
        f.insert("memory.current".to_string(), "0\n".to_string());
        if !root {
            f.insert("pids.max".to_string(), "max\n".to_string());
            f.insert("memory.max".to_string(), "max\n".to_string());
        }
        f
    }

    impl Tree {
        pub fn new() -> Arc<Mutex<Tree>> {
            let mut t = Tree::default();
            t.groups.insert("/".to_string(), files(true));
            Arc::new(Mutex::new(t))
        }

        fn children(&self, path: &str) -> Vec<String> {
            self.groups
                .keys()
                .filter_map(|k| {
                    let cut = k.rfind('/')?;
                    let parent = if cut == 0 { "/" } else { &k[..cut] };
                    (k.as_str() != "/" && parent == path).then(|| k[cut + 1..].to_string())
                })
                .collect()
        }

        fn answer(&mut self, words: &[&str]) -> Result<String, (Error, String)> {
            let no_group = |p: &str| (Error::NotFound, format!("{p}: no such group"));
            match words {
                ["ls", p] => {
                    let files = self.groups.get(*p).ok_or_else(|| no_group(p))?;
                    let mut out: String = files.keys().map(|f| format!("{f}\n")).collect();
                    for c in self.children(p) {
                        out.push_str(&format!("{c}/\n"));
                    }
                    Ok(out)
                }
                ["mkdir", p] => {
                    let parent = &p[..p.rfind('/').unwrap().max(1)];
                    if self.groups.contains_key(*p) {
                        return Err((Error::Exists, format!("{p}: exists")));
                    }
                    if !self.groups.contains_key(parent) {
                        return Err(no_group(parent));
                    }
                    if p.contains('$') {
                        return Err((Error::Invalid, "bad name".into()));
                    }
                    self.groups.insert(p.to_string(), files(false));
                    Ok(String::new())
                }
                ["rmdir", p] => {
                    self.groups.get(*p).ok_or_else(|| no_group(p))?;
                    if !self.children(p).is_empty() {
                        return Err((Error::BadState, format!("{p}: has child groups")));
                    }
                    self.groups.remove(*p);
                    Ok(String::new())
                }
                ["cat", p, f] => {
                    let files = self.groups.get(*p).ok_or_else(|| no_group(p))?;
                    files
                        .get(*f)
                        .cloned()
                        .ok_or((Error::NotFound, format!("{f}: no such file")))
                }
                ["set", p, f, v] => {
                    let files = self.groups.get_mut(*p).ok_or_else(|| no_group(p))?;
                    let old = files
                        .get_mut(*f)
                        .ok_or((Error::NotFound, format!("{f}: no such file")))?;
                    if f.ends_with(".current") || f.starts_with("cgroup.") {
                        return Err((Error::Invalid, format!("{f}: read-only")));
                    }
                    if *v != "max" && !v.bytes().all(|b| b.is_ascii_digit()) {
                        return Err((Error::Invalid, format!("{v:?} is not a number or max")));
                    }
                    *old = format!("{v}\n");
                    Ok(String::new())
                }
                _ => Err((Error::Invalid, "usage: ...".into())),
            }
        }
    }

    /// The fake's [`Resmgr`]: a handle on a shared [`Tree`].
    pub struct Link(pub Arc<Mutex<Tree>>);

    impl Resmgr for Link {
        fn command(&mut self, words: &[&str]) -> Result<Reply, Error> {
            let mut t = self.0.lock().unwrap();
            if core::mem::take(&mut t.die_next) {
                return Err(Error::PeerDied);
            }
            if t.lost_buffer {
                // What resmgr's handler makes of an empty payload: usage, with no room to say so.
                return Ok(Reply {
                    code: Error::Invalid.code() as u64,
                    text: String::new(),
                });
            }
            t.log.push(words.join(" "));
            Ok(match t.answer(words) {
                Ok(text) => Reply { code: 0, text },
                Err((e, text)) => Reply {
                    code: e.code() as u64,
                    text,
                },
            })
        }
        fn reset(&mut self) {
            let mut t = self.0.lock().unwrap();
            t.resets += 1;
            t.lost_buffer = false;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::fake::{Link, Tree};
    use super::*;

    #[test]
    fn resmgr_errors_become_cgroup_v2_errnos() {
        assert_eq!(errno_of(Error::Invalid), Errno::Inval);
        assert_eq!(errno_of(Error::NotFound), Errno::NoEnt);
        assert_eq!(errno_of(Error::Exists), Errno::Exist);
        assert_eq!(errno_of(Error::NoRights), Errno::Perm);
        assert_eq!(errno_of(Error::BadState), Errno::Busy);
        assert_eq!(errno_of(Error::Limit), Errno::Again);
        assert_eq!(errno_of(Error::PeerDied), Errno::Srch);
        assert_eq!(errno_of(Error::TimedOut), Errno::Io);
    }

    #[test]
    fn a_command_returns_text_or_errno_and_no_link_is_eio() {
        let tree = Tree::new();
        let mut link = Link(tree.clone());
        assert_eq!(run(Some(&mut link), &["mkdir", "/a"]), Ok(String::new()));
        assert_eq!(run(Some(&mut link), &["mkdir", "/a"]), Err(Errno::Exist));
        assert_eq!(
            run(Some(&mut link), &["cat", "/a", "pids.max"]).as_deref(),
            Ok("max\n")
        );
        assert_eq!(
            run(Some(&mut link), &["set", "/a", "pids.max", "x"]),
            Err(Errno::Inval)
        );
        assert_eq!(run(None, &["ls", "/"]), Err(Errno::Io));
        // A reply code resmgr does not define is an I/O error, not a panic.
        struct Odd;
        impl Resmgr for Odd {
            fn command(&mut self, _: &[&str]) -> Result<Reply, Error> {
                Ok(Reply {
                    code: 12345,
                    text: "odd".into(),
                })
            }
            fn reset(&mut self) {}
        }
        assert_eq!(run(Some(&mut Odd), &["ls", "/"]), Err(Errno::Io));
    }

    #[test]
    fn a_restarted_resmgr_that_lost_our_buffer_is_set_up_again_and_the_command_sent_once_more() {
        let tree = Tree::new();
        let mut link = Link(tree.clone());
        tree.lock().unwrap().lost_buffer = true;
        assert_eq!(run(Some(&mut link), &["mkdir", "/a"]), Ok(String::new()));
        let t = tree.lock().unwrap();
        assert_eq!(t.resets, 1);
        assert_eq!(t.log, ["mkdir /a"], "done once, after the set-up");
    }

    #[test]
    fn a_call_cut_by_resmgr_dying_is_eio_not_repeated_and_the_next_call_works() {
        let tree = Tree::new();
        let mut link = Link(tree.clone());
        tree.lock().unwrap().die_next = true;
        assert_eq!(run(Some(&mut link), &["mkdir", "/a"]), Err(Errno::Io));
        assert_eq!(
            tree.lock().unwrap().resets,
            1,
            "the next call sets up again"
        );
        assert!(tree.lock().unwrap().log.is_empty(), "not repeated");
        assert_eq!(run(Some(&mut link), &["mkdir", "/a"]), Ok(String::new()));
    }

    #[test]
    fn listings_parse_into_files_and_groups_and_bad_lines_are_skipped() {
        let l = parse_listing("memory.max\npids.max\njobs/\n\n../\n.\na/b\nvms/\n");
        let names: Vec<(&str, Kind)> = l.iter().map(|e| (e.name.as_str(), e.kind)).collect();
        assert_eq!(
            names,
            [
                ("memory.max", Kind::File),
                ("pids.max", Kind::File),
                ("jobs", Kind::Dir),
                ("vms", Kind::Dir)
            ]
        );
    }

    #[test]
    fn written_values_lose_their_trailing_newline_and_bad_ones_are_refused() {
        assert_eq!(value_of(b"64M\n"), Ok("64M"));
        assert_eq!(value_of(b"20000 100000 \r\n"), Ok("20000 100000"));
        assert_eq!(
            value_of(b" +memory"),
            Ok(" +memory"),
            "leading blanks are resmgr's to judge"
        );
        assert_eq!(value_of(b"\n"), Err(Errno::Inval));
        assert_eq!(value_of(b""), Err(Errno::Inval));
        assert_eq!(value_of(b"1\x002"), Err(Errno::Inval));
        assert_eq!(value_of(&[0xff, 0xfe]), Err(Errno::Inval));
        assert_eq!(value_of(&[b'1'; MAX_VALUE + 1]), Err(Errno::Inval));
    }

    #[test]
    fn read_only_modes_follow_cgroup_v2_names() {
        for ro in [
            "memory.current",
            "pids.peak",
            "memory.events",
            "cpu.stat",
            "cgroup.controllers",
        ] {
            assert!(reads_only(ro), "{ro}");
        }
        for rw in [
            "memory.max",
            "cpu.max",
            "cpu.weight",
            "cgroup.subtree_control",
            "cgroup.procs",
        ] {
            assert!(!reads_only(rw), "{rw}");
        }
    }
}
