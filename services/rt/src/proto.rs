//! The protocols of Keel's core services: labels, word layouts and helpers shared by servers and
//! clients. A reply's label is 0 for success or a negative `Error` code (see `ipc::status`).
//! Short strings (names up to 32 bytes) travel in the four data words ([`pack_name`]); longer data
//! in the connection's bulk buffer (`ipc::Client::call_bulk`).

use alloc::string::String;
use keel_abi::Error;

/// Process manager (init). Capability name in the startup block: `procmgr`.
pub mod procmgr {
    /// Bulk payload: program path, then its arguments, NUL-separated (`/bin/shell\0-x`). data[0]:
    /// flags ([`SPAWN_UNPRIVILEGED`]). caps: none, or a quota (MANAGE | GRANT) the child starts in;
    /// without one it starts in the caller's quota (`Limit` or `NoMemory` when that has no room).
    /// Reply: data[0] = pid; caps: the child process (READ |
    /// WAIT | MANAGE | GRANT). The child gets capabilities to procmgr and namesrv; only a caller
    /// with the admin right (the shell, ktest) gives a service program its device and initrd
    /// capabilities and its rights, and only without [`SPAWN_UNPRIVILEGED`].
    pub const SPAWN: u64 = 1;
    /// data[0] = pid. Kills a process the caller SPAWNed (or one of their descendants); callers
    /// with the kill-any right (the shell, the console for Ctrl-C) may kill any process but init.
    /// `NoRights` for a process that is not the caller's, `NotFound` for no such process,
    /// `BadState` for init itself.
    pub const KILL: u64 = 2;
    /// Reply payload: one line per process ([`PsLine`]).
    pub const PS: u64 = 3;
    /// data[0] = 1 to reset instead of powering off. Admin right only (else `NoRights`).
    pub const POWER_OFF: u64 = 4;
    /// namesrv only: data[0..4] = a name, caps: [its connection]. init keeps a copy of every
    /// registration, so a restarted namesrv gets them back ([`NAMES_RESTORE`]).
    pub const NAMES_SAVE: u64 = 5;
    /// namesrv only: data[0] = index. Reply: data[0..4] = the index-th saved name, caps: [its
    /// connection]; `NotFound` past the last one.
    pub const NAMES_RESTORE: u64 = 6;
    /// Admin right only. Reply caps: [a connection to the console badged
    /// [`super::console::CONTROL_BADGE`]], the one that may SET_FOREGROUND; `NotFound` before
    /// the console has registered.
    pub const CONSOLE_CONTROL: u64 = 7;
    /// A service keeps state for its next start: bulk payload = the state (at most
    /// [`MAX_SAVED`] bytes), replacing what it saved before. `NoRights` for a process that is
    /// not a service init started from the manifest.
    pub const STATE_SAVE: u64 = 8;
    /// Reply payload: what this service's earlier start last saved (empty if nothing).
    pub const STATE_LOAD: u64 = 9;
    /// A process the caller started itself (with `process::spawn`, to give it capabilities
    /// SPAWN cannot) joins the process list: caps[0] = the process (READ | WAIT | MANAGE),
    /// data = its name ([`crate::proto::pack_name`]). `ps` lists it, `kill` reaches it (the
    /// caller may kill it as its SPAWNed child), and its record goes when it exits. `Invalid`
    /// without the capability or for a process that already ended.
    pub const ADOPT: u64 = 10;
    /// data[0] = pid, caps[0] = a quota (MANAGE): moves the process into it (cgroup v2's `echo
    /// PID > cgroup.procs`); with data[1] = [`MOVE_TO_ROOT`] and no cap, into the root quota
    /// (which nobody else holds). Allowed as KILL is (the caller's own descendants, or any process
    /// but init for the shell): `NoRights`, `NotFound`, `BadState` for init; `Invalid` for a
    /// missing or extra cap.
    pub const MOVE: u64 = 11;
    pub const MOVE_TO_ROOT: u64 = 1;
    /// data[0] = pid. Reply data[0]: the rights bits init gave that process ([`KILL_ANY`],
    /// [`ADMIN`], [`MOVE_ANY`]; 0 for a process procmgr does not know). The file service asks it
    /// before it lets a client change cgroup files.
    pub const RIGHTS_OF: u64 = 12;
    /// Rights bits in the badge of a process's procmgr capability (services/init/src/access.rs):
    /// kill any process but init (the shell, the console);
    pub const KILL_ANY: u64 = 1 << 62;
    /// power off, console control, privileged spawns, cgroup changes (the shell, ktest);
    pub const ADMIN: u64 = 1 << 61;
    /// move any process but init between quotas (resmgr).
    pub const MOVE_ANY: u64 = 1 << 60;
    /// Most bytes STATE_SAVE keeps (one bulk buffer).
    pub const MAX_SAVED: usize = crate::ipc::BULK_SIZE as usize;
    /// Flag for SPAWN, reserved: children look up "console" by name, so there is nothing to inherit.
    pub const SPAWN_INHERIT_CONSOLE: u64 = 1;
    /// Flag for SPAWN: start the program with no rights and no device capabilities, even when
    /// the caller could give them.
    pub const SPAWN_UNPRIVILEGED: u64 = 2;
    /// Flag for SPAWN: the child is pid 1 of a new pid namespace below the caller's (it and its
    /// descendants see only their namespace's processes, by its numbers; when it ends, the rest
    /// of the namespace is killed).
    pub const SPAWN_NEW_PID_NS: u64 = 4;

    /// One process in a [`PS`] payload: `pid<TAB>name<TAB>state<TAB>mem_kib<TAB>quota` per
    /// line. `state` is `running` or `exited(CODE)`; `quota` is the number of the quota it is
    /// charged to (`QuotaStat::id`; 0 from a procmgr that does not say).
    #[derive(Clone, Debug, PartialEq, Eq)]
    pub struct PsLine {
        pub pid: u64,
        pub name: alloc::string::String,
        pub state: alloc::string::String,
        pub mem_kib: u64,
        pub quota: u64,
    }

    impl PsLine {
        /// The line, newline included.
        pub fn format(&self) -> alloc::string::String {
            alloc::format!("{}\t{}\t{}\t{}\t{}\n", self.pid, self.name, self.state, self.mem_kib, self.quota)
        }

        /// One line (without its newline); `None` if it is not one.
        pub fn parse(line: &str) -> Option<Self> {
            let f: alloc::vec::Vec<&str> = line.split('\t').collect();
            let (pid, name, state, mem, quota) = match f.as_slice() {
                [pid, name, state, mem] => (pid, name, state, mem, "0"),
                [pid, name, state, mem, quota] => (pid, name, state, mem, *quota),
                _ => return None,
            };
            Some(Self {
                pid: pid.trim().parse().ok()?,
                name: (*name).into(),
                state: (*state).into(),
                mem_kib: mem.trim().parse().ok()?,
                quota: quota.trim().parse().ok()?,
            })
        }

        /// Every line of a payload (blank lines skipped), and how many did not parse.
        pub fn parse_all(text: &str) -> (alloc::vec::Vec<Self>, usize) {
            let mut bad = 0;
            let rows = text.lines().filter(|l| !l.trim().is_empty()).filter_map(|l| Self::parse(l).or_else(|| { bad += 1; None })).collect();
            (rows, bad)
        }

        /// Whether the process has not exited.
        pub fn is_running(&self) -> bool {
            self.state == "running"
        }

        /// Whether this is the program `program` (the name may be a path).
        pub fn is_program(&self, program: &str) -> bool {
            self.name == program || self.name.rsplit('/').next() == Some(program)
        }
    }
}

/// The cgroup service (resmgr). Capability name: `resmgr`, given by init to the shell and ktest
/// only (a connection init keeps, so it outlives a restart of resmgr).
pub mod resmgr {
    /// Bulk payload: a command's words, NUL-separated (`mkdir\0/jobs`; see keel_resmgr::tree).
    /// Reply: data[1] = 0 and the text to print as payload, or data[1] = an error code
    /// (`Error::code`) and a one-line message as payload. data[3] = payload length.
    pub const COMMAND: u64 = 1;
    /// Bulk payload: a group's path. Reply caps: its quota (READ | MANAGE | GRANT), for SPAWN
    /// into the group; `NotFound` for no such group.
    pub const QUOTA: u64 = 2;

    /// A COMMAND or QUOTA call over `client`. Both always carry a payload; a call resmgr gets
    /// without a bulk buffer it knows it answers `BadAddress` (a restarted resmgr: init keeps the
    /// connection, so the client's capability still reaches the new process, which never saw
    /// the buffer set up with the old one). The buffer is then set up again and the call sent
    /// once more: it had no effect.
    pub fn call(client: &mut crate::ipc::Client, label: u64, payload: &[u8]) -> Result<(crate::ipc::Received, alloc::vec::Vec<u8>), keel_abi::Error> {
        let lost = |r: &crate::ipc::Received| r.msg.label == keel_abi::Error::BadAddress.code() as u64;
        let (r, text) = client.call_bulk(label, [0; 3], payload)?;
        if !lost(&r) {
            return Ok((r, text));
        }
        client.forget_buffer();
        client.call_bulk(label, [0; 3], payload)
    }
}

/// Name service. Capability name: `namesrv`.
pub mod namesrv {
    /// data[0..4] = name ([`super::pack_name`]); caps: [the connection to register]. A later
    /// registration of a name replaces the earlier one (a restarted service re-registers).
    pub const REGISTER: u64 = 1;
    /// data[0..4] = name. Reply caps: [a connection capability (CALL | GRANT) with a badge unique
    /// to this lookup]; `NotFound` if nobody registered the name.
    pub const LOOKUP: u64 = 2;
}

/// Console (line discipline over the UART). Registered as `console`.
pub mod console {
    /// Reply payload: one line without its newline. data[0] = [`INTERRUPTED`] if Ctrl-C ended the
    /// read instead, [`TIMED_OUT`] if the timeout passed, [`TOO_LONG`] for a line too long. Request data[0] = timeout in ns (0:
    /// none), data[1] = flags ([`INTERRUPT_ONLY`]: wait for Ctrl-C only, leaving lines queued).
    pub const READ_LINE: u64 = 1;
    pub const INTERRUPTED: u64 = 1;
    pub const TIMED_OUT: u64 = 2;
    /// data[1] = the bytes typed: a line over [`MAX_LINE`] bytes was discarded.
    pub const TOO_LONG: u64 = 3;
    /// Longest line READ_LINE hands on.
    pub const MAX_LINE: usize = 1024;
    pub const INTERRUPT_ONLY: u64 = 1;
    /// data[0] = pid of the foreground program (0 = none): Ctrl-C kills it through the process
    /// manager. Only over the control connection ([`CONTROL_BADGE`], from procmgr's
    /// CONSOLE_CONTROL); `NoRights` over a connection namesrv gave.
    pub const SET_FOREGROUND: u64 = 2;
    /// SET_FOREGROUND's data[0] while a program is being started (before its pid is known): a
    /// Ctrl-C typed meanwhile is kept, and kills the program as soon as its pid is set.
    pub const FOREGROUND_STARTING: u64 = u64::MAX;
    /// The badge of the console control connection (namesrv's badges start at 2^32).
    pub const CONTROL_BADGE: u64 = 1;
}

/// VM monitor. Registered as `vmm`.
pub mod vmm {
    /// A `vm` shell command: bulk payload = its words after `vm`, NUL-separated (`run\0linux`).
    /// Reply payload: the text to print. `vm run --wait` replies when the guest has stopped.
    pub const COMMAND: u64 = 1;
    /// From a console device's backend (its capability's badge says which VM): bulk payload =
    /// output the guest wrote, for that VM's console. `NoRights` from anyone else.
    pub const CONSOLE_OUTPUT: u64 = 2;
    /// From a network device's backend (its badge says which VM and slot) whose switch port
    /// died with the switch service: the monitor opens a port again (on the restarted service)
    /// and replies with it in caps[0]. `NoRights` from anyone else.
    pub const PORT_LOST: u64 = 3;
}

/// A virtual device backend (`/bin/vdev`), as the VM monitor that started it calls it: the
/// monitor forwards each guest access to the device's virtio-mmio window that is not a doorbell
/// (doorbells reach the backend as ioevents, without the monitor).
pub mod vdev {
    /// data[0] = offset in the window, data[1] = size (1, 2, 4 or 8). Reply: data[0] = the value.
    pub const MMIO_READ: u64 = 1;
    /// data[0] = offset, data[1] = size, data[2] = the value written.
    pub const MMIO_WRITE: u64 = 2;
    /// Reply: data[0] requests served, data[1] bytes moved, data[2] notifications, data[3]
    /// interrupts raised.
    pub const STATS: u64 = 3;
    /// Reply: data[0] errors (malformed queues and requests), data[1] the device status
    /// register, data[2] whether the entropy comes from RNDR (1) or the seeded generator (0)
    /// (entropy devices only).
    pub const STATE: u64 = 4;
    /// The VM is ending: a disk's backend makes its writes durable and closes its file, and the
    /// backend exits (the reply may not arrive). Reply label 0, or `BadState` when the flush
    /// failed.
    pub const STOP: u64 = 5;
    /// Input for a console device: bulk payload = the bytes (typed at `vm console`/`--attach`).
    pub const INPUT: u64 = 6;
    /// Bits of the backend's notification: queue `n`'s doorbell is bit `n` (the monitor
    /// registers one ioevent per queue), and the monitor's exit is [`MONITOR_GONE`].
    pub const MONITOR_GONE: u64 = 1 << 63;
}

/// The virtual switches (`/bin/netsw`). Registered as `net`. A switch exists while it has
/// ports; its name is 1 to 15 bytes of `a-z`, `0-9` and `-`.
///
/// Frames travel as a bulk payload of records, each a little-endian `u16` length and that many
/// bytes of Ethernet frame ([`net::push_frame`], [`net::frames`]).
pub mod net {
    use alloc::vec::Vec;

    /// Opens a port on a switch (made if it is new). Bulk payload: the switch's name; data[0]
    /// = the VM it is for (0: the uplink, the network driver's port), data[1] = the MAC address (its 6 bytes, first in the low byte).
    /// Reply: data[0] = the port's number, caps[0] = the port (the capability its backend
    /// calls with). `Invalid` for a bad name, `Exists` for a MAC already on that switch,
    /// `TableFull` at [`MAX_PORTS`].
    pub const OPEN: u64 = 1;
    /// Closes a port (only its opener may): data[0] = the port's number.
    pub const CLOSE: u64 = 2;
    /// From a port: caps[0] = a notification the switch signals (data[0] = its bits) when
    /// frames wait for the port.
    pub const ATTACH: u64 = 3;
    /// From a port: bulk payload = frames it sends. Reply data[0] = frames taken (malformed
    /// records end the payload).
    pub const SEND: u64 = 4;
    /// From a port: data[0] = most frames it takes now. Reply payload = frames for it; data[0]
    /// = their number, data[1] = frames still waiting.
    pub const RECV: u64 = 5;
    /// A `net` shell command: bulk payload = its words after `net`, NUL-separated. Reply
    /// payload = the text to print.
    pub const COMMAND: u64 = 6;
    /// Most ports over all switches.
    pub const MAX_PORTS: usize = 64;
    /// The longest frame (an 802.1Q-tagged 1500-byte payload).
    pub const MAX_FRAME: usize = 1518;
    /// The shortest frame (two addresses and an EtherType).
    pub const MIN_FRAME: usize = 14;

    /// Appends `frame` as a record if it fits in a payload of at most `limit` bytes.
    pub fn push_frame(payload: &mut Vec<u8>, frame: &[u8], limit: usize) -> bool {
        let Ok(len) = u16::try_from(frame.len()) else { return false };
        if payload.len() + 2 + frame.len() > limit {
            return false;
        }
        payload.extend_from_slice(&len.to_le_bytes());
        payload.extend_from_slice(frame);
        true
    }

    /// The frames in a payload, up to the first record that does not fit in it.
    pub fn frames(mut payload: &[u8]) -> impl Iterator<Item = &[u8]> {
        core::iter::from_fn(move || {
            let (len, rest) = payload.split_first_chunk::<2>()?;
            let len = usize::from(u16::from_le_bytes(*len));
            let frame = rest.get(..len)?;
            payload = &rest[len..];
            Some(frame)
        })
    }

    /// A MAC address as `data[1]` carries it.
    pub fn mac_word(mac: [u8; 6]) -> u64 {
        let mut w = [0u8; 8];
        w[..6].copy_from_slice(&mac);
        u64::from_le_bytes(w)
    }

    /// The MAC address in a `data[1]` word.
    pub fn word_mac(word: u64) -> [u8; 6] {
        let b = word.to_le_bytes();
        [b[0], b[1], b[2], b[3], b[4], b[5]]
    }

    /// Whether `name` is a switch's name.
    pub fn valid_switch_name(name: &str) -> bool {
        (1..=15).contains(&name.len()) && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    }
}

/// Block devices (the virtio-blk driver). Registered as `blk0`, `blk1`, ... one name per disk.
/// Sectors are 512 bytes. A failed request's reply label is a negative *errno*
/// ([`crate::errno::Errno`], see [`errno_status`]): EINVAL for a range past the end, a count of 0
/// or more than [`blk::MAX_SECTORS`], or a payload that is not whole sectors; EIO when the
/// device reports a failure; EROFS for a write to a read-only disk.
pub mod blk {
    /// Reply: data[0] = capacity in sectors, data[1] = [`READ_ONLY`] flag, data[2] = most
    /// sectors per request.
    pub const INFO: u64 = 1;
    /// data[0] = first sector, data[1] = sectors. Reply payload: the data.
    pub const READ: u64 = 2;
    /// data[0] = first sector; bulk payload: the data (a whole number of sectors).
    pub const WRITE: u64 = 3;
    /// Replies when every write completed before it is durable.
    pub const FLUSH: u64 = 4;
    /// Open the disk for writing: this client (badge) becomes its only writer until it sends
    /// [`RELEASE`] or its process exits. EBUSY while another client holds it, EROFS on a
    /// read-only disk, EPERM for a client without a bulk buffer (blk could not see it exit).
    /// A WRITE from a client while nobody holds the disk opens it so; from any other client
    /// it gets EBUSY. READ, INFO and FLUSH stay open to every client.
    pub const OPEN_WRITE: u64 = 5;
    /// Give up being the disk's writer (nothing happens if this client is not).
    pub const RELEASE: u64 = 6;
    /// INFO flag: the device refuses writes.
    pub const READ_ONLY: u64 = 1;
    /// Most sectors in one READ or WRITE (what fits the bulk buffer).
    pub const MAX_SECTORS: u64 = crate::ipc::BULK_SIZE / 512;
}

/// The file service. Registered as `fs`. Each client process is one session (namesrv gives
/// every lookup its own badge): its own descriptor table and credentials (root at first).
/// Paths travel in the bulk payload and must be absolute; two paths are NUL-separated. A failed
/// call's reply label is a negative errno ([`errno_status`]).
pub mod fs {
    /// Payload: path. data[0] = flags (Linux `O_*` values), data[1] = mode. Reply data[0] = fd.
    pub const OPEN: u64 = 1;
    /// data[0] = fd.
    pub const CLOSE: u64 = 2;
    /// data[0] = fd, data[1] = most bytes. Reply payload: the bytes (empty at the end).
    pub const READ: u64 = 3;
    /// data[0] = fd; payload: the bytes. Reply data[0] = bytes written.
    pub const WRITE: u64 = 4;
    /// data[0] = fd, data[1] = offset (i64), data[2] = whence (0 set, 1 cur, 2 end). Reply
    /// data[0] = the new offset.
    pub const LSEEK: u64 = 5;
    /// Payload: path; data[0] = 1 to follow a final symlink (stat) or 0 (lstat). Reply payload:
    /// a [`Stat`] record.
    pub const STAT: u64 = 6;
    /// data[0] = fd. Reply payload: a [`Stat`] record.
    pub const FSTAT: u64 = 7;
    /// Payload: path; data[0] = mode.
    pub const MKDIR: u64 = 8;
    /// Payload: path.
    pub const RMDIR: u64 = 9;
    /// Payload: path.
    pub const UNLINK: u64 = 10;
    /// Payload: `old\0new`.
    pub const RENAME: u64 = 11;
    /// Payload: `target\0path`.
    pub const SYMLINK: u64 = 12;
    /// Payload: path. Reply payload: the link's target.
    pub const READLINK: u64 = 13;
    /// Payload: `old\0new` (a hard link).
    pub const LINK: u64 = 14;
    /// data[0] = fd of a directory. Reply payload: entries, each inode (u64 LE), kind (u8: 0
    /// file, 1 dir, 2 symlink, 3 other), name length (u8), name; empty at the end.
    pub const READDIR: u64 = 15;
    /// Payload: path; data[0] = size.
    pub const TRUNCATE: u64 = 16;
    /// data[0] = fd, data[1] = size.
    pub const FTRUNCATE: u64 = 17;
    /// data[0] = fd.
    pub const FSYNC: u64 = 18;
    /// Writes back every file system.
    pub const SYNC: u64 = 19;
    /// Payload: path. Reply payload: a [`StatFs`] record.
    pub const STATFS: u64 = 20;
    /// Reply payload: the mount table, one line each: `source point type rw|ro`.
    pub const MOUNTS: u64 = 21;
    /// Payload: path; data[0] = mode.
    pub const CHMOD: u64 = 22;
    /// Payload: path; data[0] = uid, data[1] = gid.
    pub const CHOWN: u64 = 23;
    /// Payload: path. Ok if it is a directory the session may enter (for `chdir`).
    pub const CHDIR: u64 = 24;
    /// data[0] = uid, data[1] = gid: the session's new identity (root only; no way back).
    pub const SETUID: u64 = 25;
    /// data[0] = fd, data[1] = most bytes, data[2] = offset. Like READ, without moving the offset.
    pub const PREAD: u64 = 26;
    /// data[0] = fd, data[2] = offset; payload: the bytes. Like WRITE, without moving the offset.
    pub const PWRITE: u64 = 27;
    /// Payload: `device\0path` (`blk0\0/mnt`); data[0] = 1 for read-only. Mounts the ext2 on
    /// that block device, or with device `tmpfs` a new tmpfs of data[1] bytes (0: the default,
    /// an eighth of RAM within fs's budget; `ENOMEM` past the budget). Root only.
    pub const MOUNT: u64 = 28;
    /// Payload: path of a mount point. Root only.
    pub const UNMOUNT: u64 = 29;
    /// Writes back and unmounts every disk (marking it clean): init sends this before power-off,
    /// over a connection badged [`SHUTDOWN_BADGE`]; from anyone else it is `EPERM`.
    pub const SHUTDOWN: u64 = 30;
    /// The badge of init's SHUTDOWN connection (namesrv's badges start at 2^32).
    pub const SHUTDOWN_BADGE: u64 = 1;
    /// Ends the session: its descriptors are closed (the runtime sends it at exit).
    pub const END_SESSION: u64 = 31;
    /// Reply data[0]: how many mounts made at start (the disk on /disk) have not landed yet;
    /// 0 once the tree is complete. Until then their directories answer `EAGAIN`.
    pub const PENDING_MOUNTS: u64 = 32;

    /// `stat` as it travels: 12 little-endian u64.
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
    pub struct Stat {
        pub dev: u64,
        pub ino: u64,
        /// 0 file, 1 directory, 2 symlink, 3 other.
        pub kind: u8,
        pub perm: u16,
        pub nlink: u32,
        pub uid: u32,
        pub gid: u32,
        pub size: u64,
        /// 512-byte units allocated.
        pub blocks: u64,
        pub atime: u64,
        pub mtime: u64,
        pub ctime: u64,
    }

    pub const KIND_FILE: u8 = 0;
    pub const KIND_DIR: u8 = 1;
    pub const KIND_SYMLINK: u8 = 2;
    pub const KIND_OTHER: u8 = 3;

    /// Bytes of an encoded [`Stat`].
    pub const STAT_BYTES: usize = 12 * 8;

    /// `words` as little-endian bytes.
    fn put_words<const B: usize>(words: &[u64]) -> [u8; B] {
        let mut out = [0u8; B];
        for (chunk, w) in out.chunks_exact_mut(8).zip(words) {
            chunk.copy_from_slice(&w.to_le_bytes());
        }
        out
    }

    /// Word `i` of a record of little-endian words (the caller checked the length).
    fn word(b: &[u8], i: usize) -> u64 {
        u64::from_le_bytes(b[i * 8..i * 8 + 8].try_into().unwrap_or([0; 8]))
    }

    impl Stat {
        pub fn encode(&self) -> [u8; STAT_BYTES] {
            put_words(&[
                self.dev,
                self.ino,
                self.kind as u64,
                self.perm as u64,
                self.nlink as u64,
                self.uid as u64,
                self.gid as u64,
                self.size,
                self.blocks,
                self.atime,
                self.mtime,
                self.ctime,
            ])
        }

        /// None for a record of the wrong length or with out-of-range fields.
        pub fn decode(b: &[u8]) -> Option<Stat> {
            if b.len() != STAT_BYTES {
                return None;
            }
            let w = |i| word(b, i);
            Some(Stat {
                dev: w(0),
                ino: w(1),
                kind: u8::try_from(w(2)).ok().filter(|&k| k <= KIND_OTHER)?,
                perm: u16::try_from(w(3)).ok().filter(|&p| p <= 0o7777)?,
                nlink: u32::try_from(w(4)).ok()?,
                uid: u32::try_from(w(5)).ok()?,
                gid: u32::try_from(w(6)).ok()?,
                size: w(7),
                blocks: w(8),
                atime: w(9),
                mtime: w(10),
                ctime: w(11),
            })
        }

        pub fn is_dir(&self) -> bool {
            self.kind == KIND_DIR
        }
    }

    /// `statfs` as it travels: 6 little-endian u64 in this order.
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
    pub struct StatFs {
        pub block_size: u64,
        pub blocks: u64,
        pub free_blocks: u64,
        pub files: u64,
        pub free_files: u64,
        pub name_max: u64,
    }

    impl StatFs {
        pub fn encode(&self) -> [u8; 48] {
            put_words(&[self.block_size, self.blocks, self.free_blocks, self.files, self.free_files, self.name_max])
        }

        pub fn decode(b: &[u8]) -> Option<StatFs> {
            if b.len() != 48 {
                return None;
            }
            let w = |i| word(b, i);
            Some(StatFs { block_size: w(0), blocks: w(1), free_blocks: w(2), files: w(3), free_files: w(4), name_max: w(5) })
        }
    }

    /// Bytes before the name in a READDIR entry: inode (u64 LE), kind (u8), name length (u8).
    pub const ENTRY_HEADER: usize = 10;

    /// Appends one READDIR entry (names are at most 255 bytes).
    pub fn put_entry(out: &mut alloc::vec::Vec<u8>, ino: u64, kind: u8, name: &str) {
        out.extend_from_slice(&ino.to_le_bytes());
        out.push(kind);
        out.push(name.len() as u8);
        out.extend_from_slice(name.as_bytes());
    }

    /// Splits a two-path payload (`a\0b`); None unless there are exactly two non-empty UTF-8 parts.
    pub fn split_pair(payload: &[u8]) -> Option<(&str, &str)> {
        let s = core::str::from_utf8(payload).ok()?;
        let (a, b) = s.split_once('\0')?;
        (!a.is_empty() && !b.is_empty() && !b.contains('\0')).then_some((a, b))
    }
}

/// The status of a reply from a service whose errors are errno codes (`blk`, `fs`): Ok for label
/// 0, else the errno. `EIO` for a label that is no errno.
pub fn errno_status(r: &crate::sys::Received) -> Result<keel_abi::ipc::Message, crate::errno::Errno> {
    match r.msg.label as i64 {
        0 => Ok(r.msg),
        l if l < 0 && l > -4096 => Err(crate::errno::Errno::from_code(-l as i32)),
        _ => Err(crate::errno::Errno::Io),
    }
}

/// A reply label carrying an errno.
pub fn errno_label(e: crate::errno::Errno) -> u64 {
    (-(e.code() as i64)) as u64
}

/// Packs a name of at most 32 bytes into four words (NUL-padded).
pub fn pack_name(name: &str) -> Result<[u64; 4], Error> {
    let b = name.as_bytes();
    if b.is_empty() || b.len() > 32 || b.contains(&0) {
        return Err(Error::Invalid);
    }
    let mut bytes = [0u8; 32];
    bytes[..b.len()].copy_from_slice(b);
    let mut w = [0u64; 4];
    for (i, chunk) in bytes.chunks(8).enumerate() {
        w[i] = u64::from_le_bytes(chunk.try_into().unwrap_or([0; 8]));
    }
    Ok(w)
}

/// The inverse of [`pack_name`]; an error for empty, non-UTF-8 or badly padded names.
pub fn unpack_name(words: &[u64; 4]) -> Result<String, Error> {
    let mut bytes = [0u8; 32];
    for (i, w) in words.iter().enumerate() {
        bytes[i * 8..i * 8 + 8].copy_from_slice(&w.to_le_bytes());
    }
    let len = bytes.iter().position(|&b| b == 0).unwrap_or(32);
    if len == 0 || bytes[len..].iter().any(|&b| b != 0) {
        return Err(Error::Invalid);
    }
    core::str::from_utf8(&bytes[..len]).map(String::from).map_err(|_| Error::Invalid)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_up_to_32_bytes() {
        for n in ["a", "console", "exactly-thirty-two-bytes-long-xx"] {
            assert_eq!(unpack_name(&pack_name(n).unwrap()).unwrap(), n);
        }
    }

    #[test]
    fn fs_records_round_trip_and_bad_ones_are_refused() {
        let st = fs::Stat { dev: 1, ino: 2, kind: fs::KIND_DIR, perm: 0o1777, nlink: 3, uid: 4, gid: 5, size: 6, blocks: 7, atime: 8, mtime: 9, ctime: 10 };
        assert_eq!(fs::Stat::decode(&st.encode()), Some(st));
        assert_eq!(fs::Stat::decode(&st.encode()[..95]), None);
        let mut bad = st.encode();
        bad[16] = 9; // kind 9
        assert_eq!(fs::Stat::decode(&bad), None);
        let sf = fs::StatFs { block_size: 4096, blocks: 2, free_blocks: 1, files: 9, free_files: 8, name_max: 255 };
        assert_eq!(fs::StatFs::decode(&sf.encode()), Some(sf));
        assert_eq!(fs::split_pair(b"/a\0/b"), Some(("/a", "/b")));
        assert_eq!(fs::split_pair(b"/a"), None);
        assert_eq!(fs::split_pair(b"/a\0"), None);
        assert_eq!(fs::split_pair(b"/a\0/b\0/c"), None);
    }

    #[test]
    fn frame_records_round_trip_and_a_cut_record_ends_them() {
        let mut p = alloc::vec::Vec::new();
        assert!(net::push_frame(&mut p, &[1; 60], 200));
        assert!(net::push_frame(&mut p, &[2; 100], 200));
        assert!(!net::push_frame(&mut p, &[3; 60], 200), "past the limit");
        let got: alloc::vec::Vec<&[u8]> = net::frames(&p).collect();
        assert_eq!(got, [&[1u8; 60][..], &[2u8; 100][..]]);
        assert_eq!(net::frames(&p[..p.len() - 1]).count(), 1, "a record cut short is not a frame");
        assert_eq!(net::word_mac(net::mac_word([2, 0x4b, 0x65, 0, 1, 9])), [2, 0x4b, 0x65, 0, 1, 9]);
        assert!(net::valid_switch_name("sw0") && net::valid_switch_name("lab-net-2"));
        assert!(!net::valid_switch_name("") && !net::valid_switch_name("Sw0") && !net::valid_switch_name("a/b") && !net::valid_switch_name("sixteen-chars-xx"));
    }

    #[test]
    fn process_lines_round_trip_and_old_four_field_lines_still_parse() {
        let l = procmgr::PsLine { pid: 7, name: "ktest".into(), state: "exited(-9)".into(), mem_kib: 64, quota: 12 };
        assert_eq!(l.format(), "7\tktest\texited(-9)\t64\t12\n");
        assert_eq!(procmgr::PsLine::parse(l.format().trim_end()), Some(l.clone()));
        assert!(!l.is_running());
        assert_eq!(procmgr::PsLine::parse("1\tinit\trunning\t5").map(|p| (p.quota, p.is_running())), Some((0, true)));
        let (rows, bad) = procmgr::PsLine::parse_all("1\tinit\trunning\t5\t1\n\nx\ta\trunning\t1\n2\tthree\trunning\n1 a b 2\n3\tb\trunning\t1\tq\n");
        assert_eq!((rows.len(), bad), (1, 4));
    }

    #[test]
    fn bad_names_are_refused_both_ways() {
        assert_eq!(pack_name(""), Err(Error::Invalid));
        assert_eq!(pack_name(&"x".repeat(33)), Err(Error::Invalid));
        assert_eq!(pack_name("a\0b"), Err(Error::Invalid));
        assert_eq!(unpack_name(&[0; 4]), Err(Error::Invalid));
        assert_eq!(unpack_name(&[0x61, 0x62, 0, 0]), Err(Error::Invalid)); // "a" then garbage after NUL
        assert_eq!(unpack_name(&[0xff, 0, 0, 0]), Err(Error::Invalid)); // not UTF-8
    }
}
