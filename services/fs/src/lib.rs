//! The file-system service's logic, built for the host too (where `cargo test` runs it).
//!
//! - `node`: the interface every file system implements (inode numbers, single-name operations);
//! - `block`: block devices (the virtio-blk service under Keel, memory or image files on the host);
//! - `tmpfs`: files in memory (the root: the initrd's files are copied into it at boot), their
//!   bytes in `chunks` of a page;
//! - `ext2`: the second extended file system on a block device, with a block cache and ordered
//!   write-back;
//! - `vfs`: mounts, path resolution (`.`, `..`, symlinks), permission checks, open files and the
//!   per-client descriptor tables;
//! - `server`: the IPC protocol decoded and run against the VFS;
//! - `billing`: what the service keeps for a client charged to the client's quota;
//! - `cgroupfs`: the cgroup v2 files (`cgroup2` at /sys/fs/cgroup), forwarded to resmgr;
//! - `boot`: the root tmpfs filled from the initrd.
//!
//! The service's Keel-only parts (the IPC loop, the virtio-blk client) are in `main.rs`.
#![cfg_attr(target_os = "none", no_std)]
#![forbid(unsafe_code)]

extern crate alloc;

pub mod billing;
pub mod block;
pub mod boot;
pub mod cgroupfs;
pub mod chunks;
pub mod ext2;
pub mod node;
pub mod server;
pub mod tmpfs;
pub mod vfs;

pub use keel_rt::errno::Errno;
