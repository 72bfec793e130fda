//! The cgroup file system as a user reaches it: through the VFS, mounted at /sys/fs/cgroup of a
//! tmpfs, over the fake resmgr.

use super::CgroupFs;
use super::resmgr::fake::{Link, Tree};
use crate::node::Kind;
use crate::tmpfs::Tmpfs;
use crate::vfs::{Cred, Vfs, flags::*};
use alloc::boxed::Box;
use alloc::string::String;
use alloc::vec::Vec;
use keel_rt::errno::Errno;
use std::sync::{Arc, Mutex};

const ROOT: u64 = 1;
const USER: u64 = 2;
/// Root in the file service, but not an administrator (a program the shell ran).
const PROGRAM: u64 = 3;
const CG: &str = "/sys/fs/cgroup";

fn mounted(resmgr: Option<Arc<Mutex<Tree>>>) -> Vfs {
    let mut v = Vfs::new(Box::new(Tmpfs::new(1 << 20, 100)), "rootfs");
    v.open_session(ROOT, Cred::ROOT).unwrap();
    v.open_session(USER, Cred::ROOT.become_user(1000, 1000)).unwrap();
    v.open_session(PROGRAM, Cred::CLIENT).unwrap();
    v.set_admin(PROGRAM, false);
    for d in ["/sys", "/sys/fs", CG] {
        v.mkdir(ROOT, d, 0o755).unwrap();
    }
    let link = resmgr.map(|t| Box::new(Link(t)) as Box<dyn super::resmgr::Resmgr>);
    v.mount(CG, Box::new(CgroupFs::new(link, 1000)), "cgroup2", false)
        .unwrap();
    v
}

/// `echo VALUE > path`: open with O_TRUNC, one write.
fn echo(v: &mut Vfs, sid: u64, path: &str, text: &str) -> Result<(), Errno> {
    let fd = v.open(sid, path, O_WRONLY | O_CREAT | O_TRUNC, 0o644)?;
    let r = v
        .write(sid, fd, text.as_bytes())
        .map(|n| assert_eq!(n, text.len()));
    v.close(sid, fd)?;
    r
}

/// `cat path`, in reads of 3 bytes.
fn cat(v: &mut Vfs, path: &str) -> Result<String, Errno> {
    let fd = v.open(ROOT, path, O_RDONLY, 0)?;
    let mut out = Vec::new();
    let mut buf = [0u8; 3];
    loop {
        let n = v.read(ROOT, fd, &mut buf)?;
        if n == 0 {
            break;
        }
        out.extend_from_slice(&buf[..n]);
    }
    v.close(ROOT, fd)?;
    Ok(String::from_utf8(out).unwrap())
}

fn ls(v: &mut Vfs, path: &str) -> Result<Vec<(String, Kind)>, Errno> {
    let fd = v.open(ROOT, path, O_RDONLY | O_DIRECTORY, 0)?;
    let mut out = Vec::new();
    loop {
        let batch = v.readdir(ROOT, fd, 4096)?;
        if batch.is_empty() {
            break;
        }
        out.extend(
            batch
                .into_iter()
                .filter(|e| e.name != "." && e.name != "..")
                .map(|e| (e.name, e.kind)),
        );
    }
    v.close(ROOT, fd)?;
    Ok(out)
}

fn p(rel: &str) -> String {
    alloc::format!("{CG}{rel}")
}

#[test]
fn groups_are_made_set_read_and_removed_through_files() {
    let tree = Tree::new();
    let mut v = mounted(Some(tree.clone()));
    assert!(
        v.mounts()
            .iter()
            .any(|m| m.point == CG && m.fs_type == "cgroup2")
    );
    v.mkdir(ROOT, &p("/jobs"), 0o755).unwrap();
    assert!(
        tree.lock().unwrap().groups.contains_key("/jobs"),
        "mkdir made the group in resmgr"
    );
    let root = ls(&mut v, CG).unwrap();
    assert!(root.contains(&("jobs".into(), Kind::Dir)));
    assert!(root.contains(&("memory.current".into(), Kind::File)));
    let jobs = ls(&mut v, &p("/jobs")).unwrap();
    assert!(jobs.contains(&("pids.max".into(), Kind::File)));
    echo(&mut v, ROOT, &p("/jobs/pids.max"), "20\n").unwrap();
    assert_eq!(
        tree.lock().unwrap().log.last().unwrap(),
        "set /jobs pids.max 20",
        "the newline is dropped"
    );
    assert_eq!(cat(&mut v, &p("/jobs/pids.max")).unwrap(), "20\n");
    assert_eq!(
        echo(&mut v, ROOT, &p("/jobs/pids.max"), "garbage\n"),
        Err(Errno::Inval)
    );
    assert_eq!(
        cat(&mut v, &p("/jobs/pids.max")).unwrap(),
        "20\n",
        "a refused value changes nothing"
    );
    assert_eq!(
        echo(&mut v, ROOT, &p("/jobs/memory.current"), "5\n"),
        Err(Errno::Inval),
        "read-only"
    );
    v.rmdir(ROOT, &p("/jobs")).unwrap();
    assert!(!tree.lock().unwrap().groups.contains_key("/jobs"));
    assert_eq!(cat(&mut v, &p("/jobs/pids.max")), Err(Errno::NoEnt));
}

#[test]
fn each_read_from_the_start_sees_the_current_value() {
    let tree = Tree::new();
    let mut v = mounted(Some(tree.clone()));
    v.mkdir(ROOT, &p("/a"), 0o755).unwrap();
    assert_eq!(cat(&mut v, &p("/a/memory.current")).unwrap(), "0\n");
    let fd = v.open(ROOT, &p("/a/memory.current"), O_RDONLY, 0).unwrap();
    tree.lock()
        .unwrap()
        .groups
        .get_mut("/a")
        .unwrap()
        .insert("memory.current".into(), "8192\n".into());
    let mut buf = [0u8; 16];
    assert_eq!(v.pread(ROOT, fd, 0, &mut buf).unwrap(), 5);
    assert_eq!(&buf[..5], b"8192\n");
    tree.lock()
        .unwrap()
        .groups
        .get_mut("/a")
        .unwrap()
        .insert("memory.current".into(), "4096\n".into());
    assert_eq!(cat(&mut v, &p("/a/memory.current")).unwrap(), "4096\n");
    v.close(ROOT, fd).unwrap();
}

#[test]
fn attributes_are_root_owned_with_cgroup_modes_and_size_zero() {
    let mut v = mounted(Some(Tree::new()));
    v.set_time(1234);
    v.mkdir(ROOT, &p("/a"), 0o700).unwrap();
    v.mkdir(ROOT, &p("/a/b"), 0o700).unwrap();
    let a = v.stat(ROOT, &p("/a"), true).unwrap().attr;
    assert_eq!(
        (a.kind, a.perm, a.uid, a.gid, a.nlink),
        (Kind::Dir, 0o755, 0, 0, 3)
    );
    let max = v.stat(ROOT, &p("/a/pids.max"), true).unwrap().attr;
    assert_eq!((max.kind, max.perm, max.size), (Kind::File, 0o644, 0));
    let cur = v.stat(ROOT, &p("/a/memory.current"), true).unwrap().attr;
    assert_eq!(cur.perm, 0o444);
    assert_eq!(cur.mtime, 1234, "the time it was first seen");
    assert_eq!(
        v.stat(ROOT, CG, true).unwrap().attr.mtime,
        1000,
        "the root: mount time"
    );
    assert_eq!(
        v.stat(ROOT, &p("/a/nosuch"), true).map(|_| ()),
        Err(Errno::NoEnt)
    );
}

#[test]
fn inodes_are_stable_per_path_and_a_removed_groups_inode_is_enoent() {
    let tree = Tree::new();
    let mut v = mounted(Some(tree.clone()));
    v.mkdir(ROOT, &p("/a"), 0o755).unwrap();
    let ino = |v: &mut Vfs, path: &str| v.stat(ROOT, path, true).map(|s| s.attr.ino);
    let a = ino(&mut v, &p("/a")).unwrap();
    let max = ino(&mut v, &p("/a/pids.max")).unwrap();
    assert_eq!(ino(&mut v, &p("/a")).unwrap(), a);
    assert_eq!(ino(&mut v, &p("/a/pids.max")).unwrap(), max);
    assert_ne!(a, max);
    // An open descriptor outlives its group, removed behind the file system's back (the shell's
    // `cgroup rmdir`): it answers ENOENT, and the group made again is a new inode.
    let fd = v.open(ROOT, &p("/a/pids.max"), O_RDONLY, 0).unwrap();
    let dirfd = v.open(ROOT, &p("/a"), O_RDONLY | O_DIRECTORY, 0).unwrap();
    tree.lock().unwrap().groups.remove("/a");
    let mut buf = [0u8; 8];
    assert_eq!(v.read(ROOT, fd, &mut buf), Err(Errno::NoEnt));
    assert_eq!(v.fstat(ROOT, fd).map(|_| ()), Err(Errno::NoEnt));
    assert_eq!(v.fstat(ROOT, dirfd).map(|_| ()), Err(Errno::NoEnt));
    assert_eq!(v.readdir(ROOT, dirfd, 4096).map(|_| ()), Err(Errno::NoEnt));
    v.mkdir(ROOT, &p("/a"), 0o755).unwrap();
    assert_ne!(ino(&mut v, &p("/a")).unwrap(), a);
    assert_eq!(
        v.fstat(ROOT, dirfd).map(|_| ()),
        Err(Errno::NoEnt),
        "the old inode stays gone"
    );
    v.close(ROOT, fd).unwrap();
    v.close(ROOT, dirfd).unwrap();
}

#[test]
fn resmgr_errors_come_back_as_cgroup_v2_errnos() {
    let mut v = mounted(Some(Tree::new()));
    v.mkdir(ROOT, &p("/a"), 0o755).unwrap();
    v.mkdir(ROOT, &p("/a/b"), 0o755).unwrap();
    assert_eq!(
        v.rmdir(ROOT, &p("/a")),
        Err(Errno::Busy),
        "a group with children"
    );
    assert_eq!(v.mkdir(ROOT, &p("/a"), 0o755), Err(Errno::Exist));
    assert_eq!(v.mkdir(ROOT, &p("/bad$name"), 0o755), Err(Errno::Inval));
    assert_eq!(v.mkdir(ROOT, &p("/nosuch/b"), 0o755), Err(Errno::NoEnt));
    assert_eq!(v.rmdir(ROOT, &p("/a/pids.max")), Err(Errno::NotDir));
    assert_eq!(
        echo(&mut v, ROOT, &p("/a/pids.max"), "\n"),
        Err(Errno::Inval),
        "an empty value"
    );
}

#[test]
fn files_cannot_be_made_removed_renamed_or_linked() {
    let mut v = mounted(Some(Tree::new()));
    v.mkdir(ROOT, &p("/a"), 0o755).unwrap();
    assert_eq!(echo(&mut v, ROOT, &p("/a/new"), "1\n"), Err(Errno::Acces));
    assert_eq!(v.unlink(ROOT, &p("/a/pids.max")), Err(Errno::Perm));
    assert_eq!(v.rename(ROOT, &p("/a"), &p("/b")), Err(Errno::Perm));
    assert_eq!(
        v.rename(ROOT, &p("/a/pids.max"), &p("/a/x")),
        Err(Errno::Perm)
    );
    assert_eq!(v.symlink(ROOT, "/tmp", &p("/a/l")), Err(Errno::Perm));
    assert_eq!(
        v.link(ROOT, &p("/a/pids.max"), &p("/a/l")),
        Err(Errno::Perm)
    );
    assert_eq!(v.chmod(ROOT, &p("/a/pids.max"), 0o600), Err(Errno::Perm));
    // Truncating a control file does nothing (O_TRUNC above), and the value stays.
    v.truncate(ROOT, &p("/a/pids.max"), 0).unwrap();
    assert_eq!(cat(&mut v, &p("/a/pids.max")).unwrap(), "max\n");
}

#[test]
fn only_root_changes_groups() {
    let mut v = mounted(Some(Tree::new()));
    assert_eq!(v.mkdir(USER, &p("/a"), 0o755), Err(Errno::Acces));
    v.mkdir(ROOT, &p("/a"), 0o755).unwrap();
    assert_eq!(
        echo(&mut v, USER, &p("/a/pids.max"), "5\n"),
        Err(Errno::Acces)
    );
    assert_eq!(v.rmdir(USER, &p("/a")), Err(Errno::Acces));
    assert!(cat(&mut v, &p("/a/pids.max")).is_ok());
}

#[test]
fn root_that_is_not_an_administrator_reads_but_changes_nothing() {
    let mut v = mounted(Some(Tree::new()));
    v.mkdir(ROOT, &p("/a"), 0o755).unwrap();
    echo(&mut v, ROOT, &p("/a/pids.max"), "8\n").unwrap();
    // A program in /a must not lift its own limit, make or remove groups.
    assert_eq!(echo(&mut v, PROGRAM, &p("/a/pids.max"), "max\n"), Err(Errno::Acces));
    assert_eq!(v.mkdir(PROGRAM, &p("/b"), 0o755), Err(Errno::Acces));
    assert_eq!(v.rmdir(PROGRAM, &p("/a")), Err(Errno::Acces));
    assert_eq!(v.truncate(PROGRAM, &p("/a/pids.max"), 0), Err(Errno::Acces));
    assert_eq!(cat(&mut v, &p("/a/pids.max")).unwrap(), "8\n");
    // Reading is fine, and the rest of the tree is its as root's.
    let fd = v.open(PROGRAM, &p("/a/pids.max"), O_RDONLY, 0).unwrap();
    v.close(PROGRAM, fd).unwrap();
    v.mkdir(PROGRAM, "/sys/x", 0o755).unwrap();
    // Giving up root gives up the administrator right too, for good.
    v.set_user(ROOT, 1000, 1000).unwrap();
    assert_eq!(v.mkdir(ROOT, &p("/c"), 0o755), Err(Errno::Acces));
}

#[test]
fn without_resmgr_groups_answer_eio_and_the_rest_of_the_tree_works() {
    let mut v = mounted(None);
    assert_eq!(
        v.stat(ROOT, CG, true).unwrap().attr.kind,
        Kind::Dir,
        "the mount point answers"
    );
    assert_eq!(ls(&mut v, CG).map(|_| ()), Err(Errno::Io));
    assert_eq!(v.mkdir(ROOT, &p("/a"), 0o755), Err(Errno::Io));
    assert_eq!(cat(&mut v, &p("/cgroup.controllers")), Err(Errno::Io));
    echo(&mut v, ROOT, "/sys/other", "still a tree\n").unwrap();
    assert_eq!(v.mounts().len(), 2);
}

#[test]
fn a_resmgr_that_died_and_came_back_is_reached_again() {
    let tree = Tree::new();
    let mut v = mounted(Some(tree.clone()));
    tree.lock().unwrap().die_next = true;
    assert_eq!(
        ls(&mut v, CG).map(|_| ()),
        Err(Errno::Io),
        "the call it died in"
    );
    // The restarted resmgr does not know the buffer set up with the old one.
    tree.lock().unwrap().lost_buffer = true;
    v.mkdir(ROOT, &p("/a"), 0o755).unwrap();
    assert!(tree.lock().unwrap().groups.contains_key("/a"));
    assert!(ls(&mut v, CG).unwrap().contains(&("a".into(), Kind::Dir)));
}
