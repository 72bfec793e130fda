//! resmgr: Keel's cgroup tree. It holds the root of the kernel's quota tree (given by init) and
//! keeps one kernel quota per group, named by a path (`/`, `/jobs`, `/jobs/a`), with cgroup v2's
//! file names and value formats: `memory.max`, `memory.current`, `memory.peak`, `memory.events`,
//! `pids.max`, `pids.current`, `pids.peak`, `pids.events`, and Keel's `threads.max`,
//! `threads.current` (the kernel counts threads apart from processes).
//!
//! It is reached through a connection init makes and gives only to the shell and ktest (nobody
//! else may change a limit); requests are text commands ([`keel_rt::proto::resmgr`]), so the
//! shell's `cgroup` command is a thin client and [`tree`] is tested on the host.
//!
//! [`tree`] is the cgroup logic over a [`tree::Quotas`] trait; [`service`] the system-call glue.
#![cfg_attr(target_os = "none", no_std)]
#![forbid(unsafe_code)]

extern crate alloc;

pub mod service;
pub mod tree;
