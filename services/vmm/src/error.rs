//! `VmmError`: the one error type of the VM monitor's host-testable core.
//!
//! Each variant names one broken rule and carries the offending value, so the message the user
//! sees (through `Display`) says what to change. Variants are grouped by the module that returns
//! them. Errors found on a line of a config file are wrapped in [`VmmError::ConfigLine`] so the
//! message points at the line. Nothing here borrows from the input it describes.

use crate::fdt::FdtError;
use crate::layout::{MAX_VCPUS, RAM_MAX_SIZE};
use alloc::boxed::Box;
use alloc::string::String;
use core::fmt;

/// Why a guest could not be described, planned or configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VmmError {
    // ---- device tree ----
    /// The device-tree writer was misused (a bug in the caller, reported rather than panicking).
    Fdt(FdtError),
    /// A vCPU count outside `1..=MAX_VCPUS`.
    VcpuCount {
        /// The count asked for.
        count: u64,
    },
    /// A `--cpu` that is not a host CPU index Keel can name (0..=63).
    HostCpu {
        /// The index asked for.
        cpu: u64,
    },
    /// Guest RAM that is empty, not a whole number of 4 KiB pages, or larger than 4 GiB.
    GuestRamSize {
        /// The size asked for, in bytes.
        bytes: u64,
    },
    /// A kernel command line longer than the guest kernel accepts.
    BootargsTooLong {
        /// Its length in bytes.
        len: usize,
    },
    /// A kernel command line holding a NUL byte.
    BootargsNul,
    /// A virtio-mmio slot number past the last slot, or listed twice.
    VirtioSlot {
        /// The slot number.
        slot: u32,
    },
    /// The initrd range given to the device tree is empty, wraps or is not inside guest RAM.
    InitrdOutsideRam {
        /// First byte.
        start: u64,
        /// Length in bytes.
        len: u64,
    },

    // ---- kernel image and memory plan ----
    /// The kernel file is empty.
    ImageEmpty,
    /// The kernel file is shorter than the 64-byte arm64 `Image` header.
    ImageTruncated {
        /// Length of the file.
        len: usize,
    },
    /// The arm64 `Image` header's magic (offset 0x38) is not `ARM\x64`.
    ImageBadMagic {
        /// The little-endian word found.
        found: u32,
    },
    /// The `Image` header says the kernel is big endian (flags bit 0).
    ImageBigEndian,
    /// The kernel (with its BSS) does not fit in guest RAM from its load address.
    ImageTooLarge {
        /// Bytes the kernel needs from its load address.
        size: u64,
        /// Bytes of guest RAM.
        ram: u64,
    },
    /// A raw kernel's load address is outside guest RAM.
    LoadOutsideRam {
        /// The load address.
        addr: u64,
    },
    /// A raw kernel's load address is not 64 KiB aligned.
    RawLoadMisaligned {
        /// The load address.
        addr: u64,
    },
    /// Guest RAM is too small (or badly placed) for the fixed DTB slot at its top.
    RamTooSmall {
        /// Bytes of guest RAM.
        ram: u64,
    },
    /// A DTB larger than the 2 MiB the arm64 boot protocol allows.
    DtbTooLarge {
        /// Its length in bytes.
        len: usize,
    },
    /// Two parts of the guest's initial memory would overlap.
    Overlap {
        /// The part placed first.
        first: &'static str,
        /// The part that collides with it.
        second: &'static str,
    },

    // ---- configuration ----
    /// `vm run` without a VM name or config file.
    MissingTarget,
    /// A word starting with `-` that is not a `vm run` option.
    UnknownOption {
        /// The word.
        word: String,
    },
    /// A second positional word after the VM name or config file.
    UnexpectedArgument {
        /// The word.
        word: String,
    },
    /// An option or config key given twice.
    Duplicate {
        /// The option (`--mem`) or key (`mem`).
        what: String,
    },
    /// An option or config key without its value.
    MissingValue {
        /// The option or key.
        what: &'static str,
    },
    /// A value that is not a number of the expected form.
    BadNumber {
        /// The option or key it was given to.
        what: &'static str,
        /// The text given.
        value: String,
    },
    /// A `--disk`/`disk =` value that is not an absolute path (with `:ro` after it, maybe).
    BadDisk {
        /// The option or key.
        what: &'static str,
        /// The text given.
        value: String,
    },
    /// A `--cgroup`/`cgroup =` value that is not an absolute group path.
    BadCgroup {
        /// The option or key.
        what: &'static str,
        /// The text given.
        value: String,
    },
    /// A `--net`/`net =` value that is not a switch's name.
    BadNet {
        /// The option or key.
        what: &'static str,
        /// The text given.
        value: String,
    },
    /// A console that is neither `virtio` nor `pl011`.
    BadConsole {
        /// The option or key.
        what: &'static str,
        /// The text given.
        value: String,
    },
    /// More virtio devices than a VM may have.
    TooManyDevices {
        /// How many were asked for.
        count: usize,
    },
    /// A config value that must be `yes` or `no`.
    BadValue {
        /// The key.
        what: &'static str,
        /// The text given.
        value: String,
    },
    /// A memory size outside 16 MiB..=4 GiB, or not a multiple of 4 KiB.
    MemOutOfRange {
        /// The size asked for, in bytes.
        bytes: u64,
    },
    /// `--attach` together with `--wait` or `--timeout`.
    AttachAndWait,
    /// A `--timeout` outside 1..=86400 seconds.
    TimeoutRange {
        /// The seconds asked for.
        secs: u64,
    },
    /// A kernel-only option (`--initrd`, `--append`, `--raw`, `--load`) without `--kernel`.
    NeedsKernel {
        /// The option.
        option: &'static str,
    },
    /// `--raw` without `--load ADDR`, or the reverse.
    RawNeedsLoad,
    /// A VM name that is empty, too long, or holds characters other than `[A-Za-z0-9._-]`.
    BadName {
        /// The name.
        name: String,
    },
    /// A config file that names no kernel.
    MissingKernel,
    /// A config-file line that is not `key = value`.
    ConfigSyntax,
    /// A config-file key this parser does not know.
    UnknownKey {
        /// The key.
        key: String,
    },
    /// An error on a line of a config file.
    ConfigLine {
        /// 1-based line number.
        line: usize,
        /// What is wrong with it.
        error: Box<VmmError>,
    },
}

impl fmt::Display for VmmError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Fdt(e) => write!(f, "{e}"),
            Self::VcpuCount { count } => {
                write!(f, "{count} vCPUs: a VM has 1 to {MAX_VCPUS} vCPUs")
            }
            Self::HostCpu { cpu } => write!(f, "--cpu {cpu}: a host CPU index is 0 to 63"),
            Self::GuestRamSize { bytes } => write!(
                f,
                "guest RAM of {bytes:#x} bytes: it must be nonzero, a multiple of 4 KiB and at most \
                 4 GiB ({RAM_MAX_SIZE:#x})"
            ),
            Self::BootargsTooLong { len } => write!(
                f,
                "kernel command line is {len} bytes; at most {} fit",
                crate::dtb::MAX_BOOTARGS_LEN
            ),
            Self::BootargsNul => write!(f, "kernel command line holds a NUL byte"),
            Self::VirtioSlot { slot } => write!(
                f,
                "virtio-mmio slot {slot}: slots are 0 to {} and each is listed once",
                crate::layout::VIRTIO_MMIO_SLOTS - 1
            ),
            Self::InitrdOutsideRam { start, len } => write!(
                f,
                "initrd at {start:#x} ({len:#x} bytes) is empty or not inside guest RAM"
            ),
            Self::ImageEmpty => write!(f, "kernel file is empty"),
            Self::ImageTruncated { len } => write!(
                f,
                "kernel is {len} bytes, shorter than the 64-byte arm64 Image header"
            ),
            Self::ImageBadMagic { found } => write!(
                f,
                "kernel is not an arm64 Image: magic at 0x38 is {found:#010x}, not 0x644d5241 \
                 (\"ARM\\x64\"); use --raw --load ADDR for a raw binary"
            ),
            Self::ImageBigEndian => write!(
                f,
                "kernel is a big-endian arm64 Image; guests are little endian"
            ),
            Self::ImageTooLarge { size, ram } => write!(
                f,
                "kernel needs {size:#x} bytes from its load address but guest RAM is {ram:#x} bytes"
            ),
            Self::LoadOutsideRam { addr } => {
                write!(f, "load address {addr:#x} is outside guest RAM")
            }
            Self::RawLoadMisaligned { addr } => {
                write!(f, "load address {addr:#x} is not 64 KiB aligned")
            }
            Self::RamTooSmall { ram } => write!(
                f,
                "guest RAM of {ram:#x} bytes has no room for the kernel and the 2 MiB DTB slot"
            ),
            Self::DtbTooLarge { len } => {
                write!(
                    f,
                    "device tree is {len} bytes; the boot protocol allows 2 MiB"
                )
            }
            Self::Overlap { first, second } => write!(
                f,
                "the {second} would overlap the {first}; give the guest more memory"
            ),
            Self::MissingTarget => write!(
                f,
                "usage: vm run <name|config> [--vcpus N] [--mem M] [--attach | --wait] \
                 [--kernel FILE [--raw --load ADDR] [--initrd FILE] [--append ARGS]]"
            ),
            Self::UnknownOption { word } => write!(f, "unknown option {word}"),
            Self::UnexpectedArgument { word } => {
                write!(
                    f,
                    "unexpected argument {word} (only one VM name or config file)"
                )
            }
            Self::Duplicate { what } => write!(f, "{what} given twice"),
            Self::MissingValue { what } => write!(f, "{what} needs a value"),
            Self::BadDisk { what, value } => write!(f, "{what} {value}: give a file's absolute path or a block device (blk0, blk1, ...), with :ro after it for a read-only disk"),
            Self::BadCgroup { what, value } => write!(f, "{what} {value}: a cgroup is an absolute path like /vms/a (see cgroup ls)"),
            Self::BadNet { what, value } => write!(f, "{what} {value}: a switch's name is 1 to 15 characters of a-z, 0-9 and -"),
            Self::BadConsole { what, value } => write!(f, "{what} {value}: the console is virtio or pl011"),
            Self::TooManyDevices { count } => write!(f, "{count} virtio devices: a VM has at most {}", crate::config::MAX_DEVICES),
            Self::BadValue { what, value } => write!(f, "{what} = {value}: expected yes or no"),
            Self::BadNumber { what, value } => write!(f, "{what}: {value:?} is not a valid number"),
            Self::MemOutOfRange { bytes } => write!(
                f,
                "memory of {bytes} bytes: a VM has 16 MiB to 4 GiB, in whole 4 KiB pages"
            ),
            Self::AttachAndWait => write!(f, "--attach and --wait (or --timeout) cannot be used together"),
            Self::TimeoutRange { secs } => write!(f, "--timeout {secs}: give 1 to {} seconds", crate::config::MAX_TIMEOUT_SECS),
            Self::NeedsKernel { option } => write!(
                f,
                "{option} is only valid with --kernel (a config file sets it otherwise)"
            ),
            Self::RawNeedsLoad => write!(f, "--raw and --load ADDR must be given together"),
            Self::BadName { name } => write!(
                f,
                "VM name {name:?}: use 1 to {} characters from A-Z a-z 0-9 . _ -",
                crate::config::MAX_NAME_LEN
            ),
            Self::MissingKernel => write!(f, "no kernel: the config needs a `kernel = FILE` line"),
            Self::ConfigSyntax => write!(f, "expected `key = value`"),
            Self::UnknownKey { key } => write!(
                f,
                "unknown key {key:?} (known: name, kernel, initrd, append, vcpus, mem, raw_load)"
            ),
            Self::ConfigLine { line, error } => write!(f, "config line {line}: {error}"),
        }
    }
}

impl From<FdtError> for VmmError {
    fn from(e: FdtError) -> Self {
        Self::Fdt(e)
    }
}
