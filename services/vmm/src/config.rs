//! VM configuration: the `vm run` command line and the config files it can name, decoded into
//! one checked [`VmConfig`].
//!
//! It owns only text decoding; it reads no files (the VMM main reads the file
//! [`RunCommand::config_path`] names and hands its text back). Every mistake is a [`VmmError`]
//! whose message names the option, key or line, and a returned `VmConfig` always holds a valid
//! name, 1..=8 vCPUs and 16 MiB..=4 GiB of memory in whole 4 KiB pages.
//!
//! Command line (the words after `vm run`; the shell passes a quoted string as one word):
//!
//! ```text
//! vm run <name|config> [--vcpus N] [--mem M] [--attach | --wait | --timeout SECONDS]
//!        [--kernel FILE [--raw --load ADDR] [--initrd FILE] [--append ARGS]]
//! ```
//!
//! With `--kernel` the positional word is the VM's name and the options describe it all; without,
//! it is a config file, and `--vcpus`/`--mem`/`--attach`/`--wait` override it, and `--append`
//! adds to its `append`. Devices: `--disk FILE[:ro]`, `--net SWITCH` (each repeatable),
//! `--console virtio|pl011`, `--rng`. `--append` consumes exactly the next word, whatever it is. `--timeout S` waits like `--wait` and stops
//! the guest if it is still running after S seconds (1 to 86400).
//!
//! Config file: `key = value` lines; blank lines and lines whose first non-blank character is `#`
//! are ignored (there are no trailing comments, so `#` may appear in `append`); a value may be
//! wrapped in double quotes. Keys: `name` (default: the file name without directory and
//! extension), `kernel` (required), `initrd`, `append`, `vcpus` (default 1), `mem` (default
//! 256M), `raw_load` (makes the kernel a raw binary loaded there). Each key at most once.
//!
//! Numbers: counts are decimal; memory sizes are bytes (decimal or `0x` hex) or a number with a
//! `K`, `M` or `G` suffix (binary units, optionally followed by `B` or `iB`); addresses are
//! decimal or `0x` hex. `_` may separate digits.

use crate::error::VmmError;
use crate::image::KernelFormat;
use crate::layout::{MAX_VCPUS, PAGE_SIZE, RAM_MAX_SIZE};
use alloc::boxed::Box;
use alloc::string::{String, ToString};
use alloc::vec::Vec;

/// Longest VM name.
pub const MAX_NAME_LEN: usize = 32;
/// Least memory a VM may have.
pub const MIN_MEM: u64 = 16 << 20;
/// Most memory a VM may have (4 GiB, the guest RAM window).
pub const MAX_MEM: u64 = RAM_MAX_SIZE;
/// Memory of a VM whose config does not say.
pub const DEFAULT_MEM: u64 = 256 << 20;
/// vCPUs of a VM whose config does not say.
pub const DEFAULT_VCPUS: u32 = 1;

/// What `vm run` does with the terminal once the guest starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RunMode {
    /// Start the guest and return to the shell.
    #[default]
    Background,
    /// Connect the terminal to the guest's console until it stops or the user detaches.
    Attach,
    /// Wait until the guest stops (or Ctrl-C, or the timeout), showing its console output.
    Wait,
}

/// Most virtio devices a VM has (a quarter of the board's 32 slots; each is a process).
pub const MAX_DEVICES: usize = 8;

/// Longest `--timeout`: a day.
pub const MAX_TIMEOUT_SECS: u64 = 86_400;

/// Everything needed to start a VM, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmConfig {
    /// The VM's name.
    pub name: String,
    /// Path of the kernel file.
    pub kernel: String,
    /// How to load the kernel.
    pub format: KernelFormat,
    /// Path of the initrd, if any.
    pub initrd: Option<String>,
    /// Kernel command line.
    pub append: String,
    /// Number of vCPUs, 1..=8.
    pub vcpus: u32,
    /// Guest RAM in bytes.
    pub mem_bytes: u64,
    /// What happens to the terminal.
    pub mode: RunMode,
    /// `--timeout S`: with [`RunMode::Wait`], stop the guest after this many seconds.
    pub timeout_secs: Option<u64>,
    /// `--cpu N`: every vCPU thread runs on host CPU N only (None: wherever the scheduler puts
    /// it).
    pub host_cpu: Option<u32>,
    /// The guest's virtio devices, in slot order (slot 0 first).
    pub devices: Vec<VirtioDevice>,
    /// `--cgroup PATH`, `cgroup = PATH`: the cgroup its RAM, stage-2 tables, vCPU threads and
    /// device backends are charged to (None: the monitor's own).
    pub cgroup: Option<String>,
}

/// A virtio device a VM can have, each served by its own backend process (`/bin/vdev`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VirtioDevice {
    /// virtio-blk (`--disk FILE[:ro]`, `disk = FILE[:ro]`): a disk kept in a file of Keel's
    /// file system; `/dev/vda`, `/dev/vdb`, ... in Linux, in the order given.
    Disk {
        /// Absolute path of the file.
        path: String,
        /// Writes are refused.
        read_only: bool,
    },
    /// virtio-console (`--console virtio`, `console = virtio`): the guest's console is `hvc0`
    /// (`console=hvc0` is put on its command line); the PL011 stays.
    Console,
    /// virtio-rng (`--rng`, `rng = yes`): an entropy source, `/dev/hwrng` in Linux.
    Rng,
    /// virtio-net (`--net SWITCH`, `net = SWITCH`): a port on a virtual switch of the `net`
    /// service; `eth0`, `eth1`, ... in Linux, in the order given.
    Net {
        /// The switch's name.
        switch: String,
    },
}

impl VirtioDevice {
    /// The name the backend is started with and `vm stat` shows.
    pub fn name(&self) -> &'static str {
        match self {
            VirtioDevice::Disk { .. } => "blk",
            VirtioDevice::Console => "console",
            VirtioDevice::Rng => "rng",
            VirtioDevice::Net { .. } => "net",
        }
    }

    /// Its virtio device ID.
    pub fn device_id(&self) -> u32 {
        match self {
            VirtioDevice::Disk { .. } => 2,
            VirtioDevice::Console => 3,
            VirtioDevice::Rng => 4,
            VirtioDevice::Net { .. } => 1,
        }
    }

    /// Its number of queues (one doorbell each).
    pub fn queues(&self) -> u16 {
        match self {
            VirtioDevice::Console | VirtioDevice::Net { .. } => 2,
            _ => 1,
        }
    }

    /// A `--disk` / `disk =` value: `FILE` or `FILE:ro`, FILE an absolute path.
    pub fn parse_disk(what: &'static str, value: &str) -> Result<VirtioDevice, VmmError> {
        let (path, read_only) = match value.strip_suffix(":ro") {
            Some(path) => (path, true),
            None => (value, false),
        };
        if !(path.starts_with('/') && path.len() >= 2 && !path.contains('\0') || is_block_device(path)) {
            return Err(VmmError::BadDisk { what, value: value.to_string() });
        }
        Ok(VirtioDevice::Disk { path: path.to_string(), read_only })
    }

    /// A disk that is a whole Keel block device (`blk0`, `blk1`, ...: the virtio-blk driver's
    /// disks) rather than a file.
    pub fn block_device(&self) -> Option<&str> {
        match self {
            VirtioDevice::Disk { path, .. } if is_block_device(path) => Some(path),
            _ => None,
        }
    }

    /// A `--net` / `net =` value: a switch's name.
    pub fn parse_net(what: &'static str, value: &str) -> Result<VirtioDevice, VmmError> {
        if !keel_rt::proto::net::valid_switch_name(value) {
            return Err(VmmError::BadNet { what, value: value.to_string() });
        }
        Ok(VirtioDevice::Net { switch: value.to_string() })
    }

    /// Where the device goes among a VM's devices (slot order): disks, the console, network
    /// devices, the entropy source.
    fn rank(&self) -> u8 {
        match self {
            VirtioDevice::Disk { .. } => 0,
            VirtioDevice::Console => 1,
            VirtioDevice::Net { .. } => 2,
            VirtioDevice::Rng => 3,
        }
    }
}

impl VmConfig {
    /// Decodes the config file at `path` (used only for the default name) whose text is `text`.
    pub fn from_file(path: &str, text: &str) -> Result<VmConfig, VmmError> {
        let mut name: Option<String> = None;
        let mut kernel: Option<String> = None;
        let mut initrd: Option<String> = None;
        let mut append: Option<String> = None;
        let mut vcpus: Option<u32> = None;
        let mut mem_bytes: Option<u64> = None;
        let mut raw_load: Option<u64> = None;
        let mut rng: Option<bool> = None;
        let mut console: Option<bool> = None;
        let mut cgroup: Option<String> = None;
        let mut listed: Vec<VirtioDevice> = Vec::new();

        for (index, line) in text.lines().enumerate() {
            let at_line = |error: VmmError| VmmError::ConfigLine {
                line: index + 1,
                error: Box::new(error),
            };
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (key, value) = line
                .split_once('=')
                .ok_or(VmmError::ConfigSyntax)
                .map_err(at_line)?;
            let (key, value) = (key.trim(), unquote(value.trim()));
            if key.is_empty() {
                return Err(at_line(VmmError::ConfigSyntax));
            }
            let result = match key {
                "name" => set(
                    &mut name,
                    "name",
                    required("name", value).and_then(checked_name),
                ),
                "kernel" => set(
                    &mut kernel,
                    "kernel",
                    required("kernel", value).map(String::from),
                ),
                "initrd" => set(
                    &mut initrd,
                    "initrd",
                    required("initrd", value).map(String::from),
                ),
                "append" => set(&mut append, "append", Ok(value.to_string())),
                "vcpus" => set(
                    &mut vcpus,
                    "vcpus",
                    required("vcpus", value).and_then(|v| parse_vcpus("vcpus", v)),
                ),
                "mem" => set(
                    &mut mem_bytes,
                    "mem",
                    required("mem", value).and_then(|v| parse_mem("mem", v)),
                ),
                "raw_load" => set(
                    &mut raw_load,
                    "raw_load",
                    required("raw_load", value).and_then(|v| parse_address("raw_load", v)),
                ),
                "rng" => set(&mut rng, "rng", parse_yes_no("rng", value)),
                "cgroup" => set(&mut cgroup, "cgroup", required("cgroup", value).and_then(|v| parse_cgroup("cgroup", v))),
                "console" => set(&mut console, "console", parse_console("console", value)),
                // One line per disk.
                "disk" => VirtioDevice::parse_disk("disk", value).map(|d| listed.push(d)),
                // One line per network device.
                "net" => VirtioDevice::parse_net("net", value).map(|d| listed.push(d)),
                _ => Err(VmmError::UnknownKey {
                    key: key.to_string(),
                }),
            };
            result.map_err(at_line)?;
        }

        let name = match name {
            Some(name) => name,
            None => checked_name(file_stem(path))?,
        };
        Ok(VmConfig {
            name,
            kernel: kernel.ok_or(VmmError::MissingKernel)?,
            format: match raw_load {
                Some(load) => KernelFormat::Raw { load },
                None => KernelFormat::LinuxImage,
            },
            initrd,
            append: append.unwrap_or_default(),
            vcpus: vcpus.unwrap_or(DEFAULT_VCPUS),
            mem_bytes: mem_bytes.unwrap_or(DEFAULT_MEM),
            mode: RunMode::Background,
            timeout_secs: None,
            host_cpu: None,
            cgroup,
            devices: listed
                .into_iter()
                .chain((console == Some(true)).then_some(VirtioDevice::Console))
                .chain((rng == Some(true)).then_some(VirtioDevice::Rng))
                .collect::<Vec<_>>()
                .sorted_by_rank(),
        })
    }
}

/// The kernel described on the command line (`--kernel` and what goes with it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InlineKernel {
    /// `--kernel FILE`.
    pub path: String,
    /// `--raw --load ADDR`, else a Linux `Image`.
    pub format: KernelFormat,
    /// `--initrd FILE`.
    pub initrd: Option<String>,
    /// `--append ARGS`.
    pub append: String,
}

/// A decoded `vm run` command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunCommand {
    /// The VM name (with `--kernel`) or the config file's path (without).
    pub target: String,
    /// `--vcpus N`.
    pub vcpus: Option<u32>,
    /// `--mem M`.
    pub mem_bytes: Option<u64>,
    /// `--attach` / `--wait` (`--timeout` implies `--wait`).
    pub mode: RunMode,
    /// `--timeout S`.
    pub timeout_secs: Option<u64>,
    /// `--cpu N`.
    pub host_cpu: Option<u32>,
    /// `--rng`: add an entropy device (if the config file has none).
    pub rng: bool,
    /// `--disk FILE[:ro]`, in order: disks after the config file's.
    pub disks: Vec<VirtioDevice>,
    /// `--console virtio|pl011` (None: as the config file says).
    pub console: Option<bool>,
    /// `--net SWITCH`, in order: network devices after the config file's.
    pub nets: Vec<VirtioDevice>,
    /// `--append ARGS` without `--kernel`: words added to the config file's `append`.
    pub extra_append: Option<String>,
    /// `--kernel FILE ...`, if given.
    pub kernel: Option<InlineKernel>,
    /// `--cgroup PATH` (over the config file's `cgroup`).
    pub cgroup: Option<String>,
}

impl RunCommand {
    /// Decodes the words after `vm run`.
    pub fn parse(words: &[&str]) -> Result<RunCommand, VmmError> {
        let mut target: Option<&str> = None;
        let mut vcpus = None;
        let mut mem_bytes = None;
        let mut mode = None;
        let mut kernel: Option<&str> = None;
        let mut raw = false;
        let mut load = None;
        let mut initrd: Option<&str> = None;
        let mut append: Option<&str> = None;
        let mut timeout_secs = None;
        let mut host_cpu = None;
        let mut rng = false;
        let mut disks = Vec::new();
        let mut nets = Vec::new();
        let mut console = None;
        let mut cgroup = None;

        let mut words = words.iter().copied();
        while let Some(word) = words.next() {
            match word {
                "--vcpus" => {
                    let value = option_value(&mut words, "--vcpus")?;
                    set(&mut vcpus, "--vcpus", parse_vcpus("--vcpus", value))?;
                }
                "--mem" => {
                    let value = option_value(&mut words, "--mem")?;
                    set(&mut mem_bytes, "--mem", parse_mem("--mem", value))?;
                }
                "--attach" | "--wait" => {
                    let wanted = if word == "--attach" {
                        RunMode::Attach
                    } else {
                        RunMode::Wait
                    };
                    match mode {
                        None => mode = Some(wanted),
                        Some(m) if m == wanted => {
                            return Err(VmmError::Duplicate {
                                what: word.to_string(),
                            });
                        }
                        Some(_) => return Err(VmmError::AttachAndWait),
                    }
                }
                "--timeout" => {
                    let value = option_value(&mut words, "--timeout")?;
                    set(&mut timeout_secs, "--timeout", parse_timeout(value))?;
                }
                "--cpu" => {
                    let value = option_value(&mut words, "--cpu")?;
                    set(&mut host_cpu, "--cpu", parse_host_cpu(value))?;
                }
                "--cgroup" => {
                    let value = option_value(&mut words, "--cgroup")?;
                    set(&mut cgroup, "--cgroup", parse_cgroup("--cgroup", value))?;
                }
                "--rng" if rng => return Err(VmmError::Duplicate { what: "--rng".to_string() }),
                "--rng" => rng = true,
                "--console" => {
                    let value = option_value(&mut words, "--console")?;
                    set(&mut console, "--console", parse_console("--console", value))?;
                }
                "--disk" => {
                    let value = option_value(&mut words, "--disk")?;
                    disks.push(VirtioDevice::parse_disk("--disk", value)?);
                }
                "--net" => {
                    let value = option_value(&mut words, "--net")?;
                    nets.push(VirtioDevice::parse_net("--net", value)?);
                }
                "--kernel" => {
                    let value = option_value(&mut words, "--kernel")?;
                    set(&mut kernel, "--kernel", Ok(value))?;
                }
                "--raw" => {
                    if raw {
                        return Err(VmmError::Duplicate {
                            what: word.to_string(),
                        });
                    }
                    raw = true;
                }
                "--load" => {
                    let value = option_value(&mut words, "--load")?;
                    set(&mut load, "--load", parse_address("--load", value))?;
                }
                "--initrd" => {
                    let value = option_value(&mut words, "--initrd")?;
                    set(&mut initrd, "--initrd", Ok(value))?;
                }
                "--append" => {
                    let value = words
                        .next()
                        .ok_or(VmmError::MissingValue { what: "--append" })?;
                    set(&mut append, "--append", Ok(value))?;
                }
                _ if word.starts_with('-') => {
                    return Err(VmmError::UnknownOption {
                        word: word.to_string(),
                    });
                }
                _ if target.is_some() => {
                    return Err(VmmError::UnexpectedArgument {
                        word: word.to_string(),
                    });
                }
                _ => target = Some(word),
            }
        }

        let target = target.ok_or(VmmError::MissingTarget)?;
        let kernel = match kernel {
            Some(path) => {
                checked_name(target)?;
                let format = match (raw, load) {
                    (true, Some(load)) => KernelFormat::Raw { load },
                    (false, None) => KernelFormat::LinuxImage,
                    _ => return Err(VmmError::RawNeedsLoad),
                };
                Some(InlineKernel {
                    path: path.to_string(),
                    format,
                    initrd: initrd.map(String::from),
                    append: append.unwrap_or("").to_string(),
                })
            }
            None => {
                let stray = [
                    ("--raw", raw),
                    ("--load", load.is_some()),
                    ("--initrd", initrd.is_some()),
                ];
                if let Some(&(option, _)) = stray.iter().find(|(_, given)| *given) {
                    return Err(VmmError::NeedsKernel { option });
                }
                None
            }
        };
        let mode = match (mode, timeout_secs) {
            (Some(RunMode::Attach), Some(_)) => return Err(VmmError::AttachAndWait),
            (None, Some(_)) => RunMode::Wait,
            (mode, _) => mode.unwrap_or_default(),
        };
        Ok(RunCommand {
            target: target.to_string(),
            vcpus,
            mem_bytes,
            mode,
            timeout_secs,
            host_cpu,
            rng,
            disks,
            console,
            nets,
            extra_append: if kernel.is_none() { append.map(String::from) } else { None },
            kernel,
            cgroup,
        })
    }

    /// The config file the VMM must read and pass to [`RunCommand::into_config`], if any.
    pub fn config_path(&self) -> Option<&str> {
        match self.kernel {
            Some(_) => None,
            None => Some(&self.target),
        }
    }

    /// The VM to start: the inline kernel, or the config file's text (`config_text`, ignored
    /// with `--kernel`) with the command line's overrides applied.
    pub fn into_config(self, config_text: Option<&str>) -> Result<VmConfig, VmmError> {
        let mut config = match self.kernel {
            Some(kernel) => VmConfig {
                name: self.target,
                kernel: kernel.path,
                format: kernel.format,
                initrd: kernel.initrd,
                append: kernel.append,
                vcpus: DEFAULT_VCPUS,
                mem_bytes: DEFAULT_MEM,
                mode: RunMode::Background,
                timeout_secs: None,
                host_cpu: None,
                devices: Vec::new(),
                cgroup: None,
            },
            None => VmConfig::from_file(&self.target, config_text.ok_or(VmmError::MissingKernel)?)?,
        };
        if let Some(vcpus) = self.vcpus {
            config.vcpus = vcpus;
        }
        if let Some(mem_bytes) = self.mem_bytes {
            config.mem_bytes = mem_bytes;
        }
        config.mode = self.mode;
        config.timeout_secs = self.timeout_secs;
        config.host_cpu = self.host_cpu;
        if self.cgroup.is_some() {
            config.cgroup = self.cgroup;
        }
        // Disks first (vda, vdb, ... in the order given), then the rest.
        let (mut devices, others): (Vec<_>, Vec<_>) = config.devices.drain(..).partition(|d| matches!(d, VirtioDevice::Disk { .. }));
        devices.extend(self.disks);
        devices.extend(others);
        devices.extend(self.nets);
        if let Some(extra) = self.extra_append {
            if !config.append.is_empty() && !extra.is_empty() {
                config.append.push(' ');
            }
            config.append.push_str(&extra);
        }
        match self.console {
            Some(true) if !devices.contains(&VirtioDevice::Console) => {
                let at = devices.iter().take_while(|d| matches!(d, VirtioDevice::Disk { .. })).count();
                devices.insert(at, VirtioDevice::Console);
            }
            Some(false) => devices.retain(|d| *d != VirtioDevice::Console),
            _ => {}
        }
        if self.rng && !devices.contains(&VirtioDevice::Rng) {
            devices.push(VirtioDevice::Rng);
        }
        let devices = devices.sorted_by_rank();
        if devices.contains(&VirtioDevice::Console) {
            config.append = with_console(&config.append, "hvc0");
        }
        let mut paths: Vec<&str> = Vec::new();
        for d in &devices {
            if let VirtioDevice::Disk { path, .. } = d {
                if paths.contains(&path.as_str()) {
                    return Err(VmmError::Duplicate { what: alloc::format!("disk {path}") });
                }
                paths.push(path);
            }
        }
        if devices.len() > MAX_DEVICES {
            return Err(VmmError::TooManyDevices { count: devices.len() });
        }
        config.devices = devices;
        Ok(config)
    }
}

/// Whether `name` names a block device of the virtio-blk driver: `blk` and a number.
pub fn is_block_device(name: &str) -> bool {
    name.strip_prefix("blk").is_some_and(|n| !n.is_empty() && n.len() <= 3 && n.bytes().all(|b| b.is_ascii_digit()))
}

/// A MAC address as `02:4b:65:00:01:00`.
pub fn mac_text(mac: &[u8; 6]) -> String {
    let mut s = String::new();
    for (i, b) in mac.iter().enumerate() {
        if i > 0 {
            s.push(':');
        }
        s.push_str(&alloc::format!("{b:02x}"));
    }
    s
}

/// Device lists in slot order ([`VirtioDevice::rank`]; the order given kept within a kind).
trait SortedByRank {
    fn sorted_by_rank(self) -> Self;
}

impl SortedByRank for Vec<VirtioDevice> {
    fn sorted_by_rank(mut self) -> Self {
        self.sort_by_key(VirtioDevice::rank);
        self
    }
}

/// A cgroup path (resmgr checks that the group exists when the VM starts).
fn parse_cgroup(what: &'static str, value: &str) -> Result<String, VmmError> {
    if value.starts_with('/') && value.len() <= 256 && value.bytes().all(|b| b.is_ascii_graphic()) {
        Ok(value.to_string())
    } else {
        Err(VmmError::BadCgroup { what, value: value.to_string() })
    }
}

/// `virtio` (true) or `pl011` (false).
fn parse_console(what: &'static str, value: &str) -> Result<bool, VmmError> {
    match value {
        "virtio" => Ok(true),
        "pl011" => Ok(false),
        _ => Err(VmmError::BadConsole { what, value: value.to_string() }),
    }
}

/// `append` with its `console=` words replaced by `console=<name>` (one added if it had none;
/// `earlycon` is left alone).
pub fn with_console(append: &str, name: &str) -> String {
    let mut words: Vec<String> = append.split_whitespace().filter(|w| !w.starts_with("console=")).map(String::from).collect();
    words.insert(0, alloc::format!("console={name}"));
    words.join(" ")
}

/// A config file's yes/no value.
fn parse_yes_no(key: &'static str, value: &str) -> Result<bool, VmmError> {
    match value {
        "yes" | "on" | "true" => Ok(true),
        "no" | "off" | "false" => Ok(false),
        _ => Err(VmmError::BadValue { what: key, value: value.to_string() }),
    }
}

/// The next word as the value of `option`; a missing word or another option is an error.
fn option_value<'a>(
    words: &mut impl Iterator<Item = &'a str>,
    option: &'static str,
) -> Result<&'a str, VmmError> {
    match words.next() {
        Some(value) if !value.starts_with("--") && !value.is_empty() => Ok(value),
        _ => Err(VmmError::MissingValue { what: option }),
    }
}

/// Stores `value` in an unset `slot`; a set slot is a duplicate `what`.
fn set<T>(slot: &mut Option<T>, what: &str, value: Result<T, VmmError>) -> Result<(), VmmError> {
    if slot.is_some() {
        return Err(VmmError::Duplicate {
            what: what.to_string(),
        });
    }
    *slot = Some(value?);
    Ok(())
}

/// A config value that must not be empty.
fn required<'a>(key: &'static str, value: &'a str) -> Result<&'a str, VmmError> {
    if value.is_empty() {
        return Err(VmmError::MissingValue { what: key });
    }
    Ok(value)
}

/// `value` without one pair of surrounding double quotes.
fn unquote(value: &str) -> &str {
    value
        .strip_prefix('"')
        .and_then(|inner| inner.strip_suffix('"'))
        .unwrap_or(value)
}

/// The file name of `path` without its directory and last extension.
fn file_stem(path: &str) -> &str {
    let file = path.rsplit('/').next().unwrap_or(path);
    match file.rsplit_once('.') {
        Some((stem, _)) if !stem.is_empty() => stem,
        _ => file,
    }
}

/// `name` if it is a valid VM name.
fn checked_name(name: &str) -> Result<String, VmmError> {
    let valid_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
    if name.is_empty() || name.len() > MAX_NAME_LEN || !name.chars().all(valid_char) {
        return Err(VmmError::BadName {
            name: name.to_string(),
        });
    }
    Ok(name.to_string())
}

fn parse_timeout(text: &str) -> Result<u64, VmmError> {
    let secs = parse_number("--timeout", text, 10)?;
    if (1..=MAX_TIMEOUT_SECS).contains(&secs) { Ok(secs) } else { Err(VmmError::TimeoutRange { secs }) }
}

fn parse_host_cpu(text: &str) -> Result<u32, VmmError> {
    let cpu = parse_number("--cpu", text, 10)?;
    match u32::try_from(cpu) {
        Ok(n) if n < 64 => Ok(n),
        _ => Err(VmmError::HostCpu { cpu }),
    }
}

fn parse_vcpus(what: &'static str, text: &str) -> Result<u32, VmmError> {
    let count = parse_number(what, text, 10)?;
    match u32::try_from(count) {
        Ok(vcpus) if (1..=MAX_VCPUS).contains(&vcpus) => Ok(vcpus),
        _ => Err(VmmError::VcpuCount { count }),
    }
}

fn parse_mem(what: &'static str, text: &str) -> Result<u64, VmmError> {
    let bad = || VmmError::BadNumber {
        what,
        value: text.to_string(),
    };
    let lower = text.to_ascii_lowercase();
    let digits = lower
        .strip_suffix("ib")
        .or_else(|| lower.strip_suffix('b'))
        .unwrap_or(&lower);
    let (digits, shift) = match digits.as_bytes().last() {
        Some(b'k') => (&digits[..digits.len() - 1], 10),
        Some(b'm') => (&digits[..digits.len() - 1], 20),
        Some(b'g') => (&digits[..digits.len() - 1], 30),
        _ if digits.len() != lower.len() => return Err(bad()), // "B" without a unit
        _ => (digits, 0),
    };
    let number = parse_address(what, digits).map_err(|_| bad())?;
    let bytes = number.checked_mul(1 << shift).ok_or_else(bad)?;
    if !(MIN_MEM..=MAX_MEM).contains(&bytes) || !bytes.is_multiple_of(PAGE_SIZE) {
        return Err(VmmError::MemOutOfRange { bytes });
    }
    Ok(bytes)
}

/// A decimal or `0x` hexadecimal number.
fn parse_address(what: &'static str, text: &str) -> Result<u64, VmmError> {
    match text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")) {
        Some(hex) => parse_number(what, hex, 16),
        None => parse_number(what, text, 10),
    }
    .map_err(|_| VmmError::BadNumber {
        what,
        value: text.to_string(),
    })
}

/// Digits in `radix`, `_` allowed between them.
fn parse_number(what: &'static str, text: &str, radix: u32) -> Result<u64, VmmError> {
    let bad = || VmmError::BadNumber {
        what,
        value: text.to_string(),
    };
    if text.is_empty() || text.starts_with('_') || text.ends_with('_') {
        return Err(bad());
    }
    let mut value: u64 = 0;
    for c in text.chars().filter(|&c| c != '_') {
        let digit = c.to_digit(radix).ok_or_else(bad)?;
        value = value
            .checked_mul(u64::from(radix))
            .and_then(|v| v.checked_add(u64::from(digit)))
            .ok_or_else(bad)?;
    }
    Ok(value)
}

/// The words of a `vm run` command without its `--attach`, `--wait` and `--timeout S` (what
/// `vm start` runs again, with the mode the user gives it then). Values of the other options are
/// kept as they are, even one that looks like a mode option (`--append --wait`).
pub fn without_mode(words: &[&str]) -> Vec<String> {
    let mut out = Vec::new();
    let mut words = words.iter().copied();
    while let Some(word) = words.next() {
        match word {
            "--attach" | "--wait" => {}
            "--timeout" => {
                words.next();
            }
            "--vcpus" | "--mem" | "--kernel" | "--load" | "--initrd" | "--append" | "--disk" | "--console" => {
                out.push(word.to_string());
                if let Some(value) = words.next() {
                    out.push(value.to_string());
                }
            }
            _ => out.push(word.to_string()),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;
    use alloc::vec::Vec;

    const MIB: u64 = 1 << 20;

    fn run(line: &str) -> Result<RunCommand, VmmError> {
        let words: Vec<&str> = line.split_whitespace().collect();
        RunCommand::parse(&words)
    }

    #[test]
    fn inline_kernel_with_everything() {
        let words = [
            "linux",
            "--vcpus",
            "4",
            "--mem",
            "1G",
            "--attach",
            "--kernel",
            "/boot/Image",
            "--initrd",
            "/boot/initrd",
            "--append",
            "console=ttyAMA0 root=/dev/vda",
        ];
        let command = RunCommand::parse(&words).unwrap();
        assert_eq!(command.config_path(), None);
        let config = command.into_config(Some("ignored = x")).unwrap();
        assert_eq!(
            config,
            VmConfig {
                name: "linux".to_string(),
                kernel: "/boot/Image".to_string(),
                format: KernelFormat::LinuxImage,
                initrd: Some("/boot/initrd".to_string()),
                append: "console=ttyAMA0 root=/dev/vda".to_string(),
                vcpus: 4,
                mem_bytes: 1 << 30,
                mode: RunMode::Attach,
                timeout_secs: None,
                host_cpu: None,
                devices: Vec::new(),
                cgroup: None,
            }
        );
    }

    #[test]
    fn inline_raw_kernel_and_defaults() {
        let config = run("bare --kernel /b.bin --raw --load 0x4008_0000 --wait")
            .and_then(|c| c.into_config(None))
            .unwrap();
        assert_eq!(config.format, KernelFormat::Raw { load: 0x4008_0000 });
        assert_eq!(
            (config.vcpus, config.mem_bytes),
            (DEFAULT_VCPUS, DEFAULT_MEM)
        );
        assert_eq!(
            (config.mode, config.append.as_str(), config.initrd),
            (RunMode::Wait, "", None)
        );
    }

    #[test]
    fn timeout_implies_wait_and_reaches_the_config() {
        for line in ["linux --timeout 30", "linux --wait --timeout 30", "linux --timeout 30 --wait"] {
            let config = run(line).and_then(|c| c.into_config(Some("kernel = /k"))).unwrap();
            assert_eq!((config.mode, config.timeout_secs), (RunMode::Wait, Some(30)), "{line}");
        }
        let config = run("linux --wait").and_then(|c| c.into_config(Some("kernel = /k"))).unwrap();
        assert_eq!(config.timeout_secs, None);
    }

    #[test]
    fn network_devices_come_after_disks_and_the_console_and_append_adds_to_a_config() {
        let run = |line: &str| RunCommand::parse(&line.split(' ').collect::<Vec<_>>());
        let net = |s: &str| VirtioDevice::Net { switch: s.to_string() };
        let config = run("linux --rng --net sw1 --disk /d --append keel.x=1")
            .and_then(|c| c.into_config(Some("kernel = /k\nappend = quiet\nnet = sw0\nconsole = virtio")))
            .unwrap();
        let disk = VirtioDevice::Disk { path: "/d".to_string(), read_only: false };
        assert_eq!(config.devices, [disk, VirtioDevice::Console, net("sw0"), net("sw1"), VirtioDevice::Rng]);
        assert_eq!(config.append, "console=hvc0 quiet keel.x=1");
        assert_eq!(run("v --kernel /k --net sw0 --net sw0").and_then(|c| c.into_config(None)).unwrap().devices, [net("sw0"), net("sw0")]);
        for bad in ["Sw0", "a/b", "sixteen-chars-xx"] {
            let e = run(&alloc::format!("v --kernel /k --net {bad}")).unwrap_err();
            assert_eq!(e.to_string(), alloc::format!("--net {bad}: a switch's name is 1 to 15 characters of a-z, 0-9 and -"));
        }
        let e = run("linux").and_then(|c| c.into_config(Some("kernel = /k\nnet = x y"))).unwrap_err();
        assert_eq!(e.to_string(), "config line 2: net x y: a switch's name is 1 to 15 characters of a-z, 0-9 and -");
        assert_eq!(run("v --net"), Err(VmmError::MissingValue { what: "--net" }));
    }

    #[test]
    fn append_takes_exactly_one_word_even_a_dashed_one() {
        let command =
            RunCommand::parse(&["vm1", "--kernel", "k", "--append", "--x y", "--wait"]).unwrap();
        assert_eq!(command.kernel.unwrap().append, "--x y");
        assert_eq!(command.mode, RunMode::Wait);
    }

    #[test]
    fn config_file_with_overrides() {
        let text = "# a test guest\n\
                    name = guest-1\n\
                    kernel = /vm/Image\n\
                    \n\
                    initrd = \"/vm/initrd.cpio\"\n\
                    append = console=ttyAMA0 rdinit=/bin/sh # not a comment\n   \
                    vcpus = 2\n\
                    mem = 512M\r\n";
        let command = run("/vm/guest.cfg --vcpus 3").unwrap();
        assert_eq!(command.config_path(), Some("/vm/guest.cfg"));
        let config = command.into_config(Some(text)).unwrap();
        assert_eq!(config.name, "guest-1");
        assert_eq!(config.kernel, "/vm/Image");
        assert_eq!(config.initrd.as_deref(), Some("/vm/initrd.cpio"));
        assert_eq!(
            config.append,
            "console=ttyAMA0 rdinit=/bin/sh # not a comment"
        );
        assert_eq!((config.vcpus, config.mem_bytes), (3, 512 * MIB));
        assert_eq!(config.mode, RunMode::Background);
        assert_eq!(config.format, KernelFormat::LinuxImage);
    }

    /// The config scripts/mkguest.sh writes for the Linux guest.
    #[test]
    fn a_cgroup_comes_from_the_file_or_the_command_line_and_must_be_a_path() {
        let text = "kernel = /k\ncgroup = /vms/a\n";
        assert_eq!(run("/etc/vm/x.conf").unwrap().into_config(Some(text)).unwrap().cgroup.as_deref(), Some("/vms/a"));
        let over = run("/etc/vm/x.conf --cgroup /vms/b").unwrap().into_config(Some(text)).unwrap();
        assert_eq!(over.cgroup.as_deref(), Some("/vms/b"), "the command line wins");
        assert_eq!(run("/etc/vm/x.conf").unwrap().into_config(Some("kernel = /k\n")).unwrap().cgroup, None);
        assert!(matches!(run("x --cgroup vms"), Err(VmmError::BadCgroup { .. })));
        assert!(matches!(run("x --cgroup"), Err(VmmError::MissingValue { .. })));
        assert!(matches!(run("x --cgroup /a --cgroup /b"), Err(VmmError::Duplicate { .. })));
        assert!(VmConfig::from_file("x.conf", "kernel = /k\ncgroup = relative\n").is_err());
    }

    #[test]
    fn reads_the_linux_guest_config() {
        let text = "name = linux\n\
                    kernel = /guest/linux/Image\n\
                    initrd = /guest/linux/initrd.cpio\n\
                    append = console=ttyAMA0 earlycon=pl011,0x09000000 panic=-1\n\
                    vcpus = 2\n\
                    mem = 256M\n";
        let command = run("/guest/linux/linux.conf --attach").unwrap();
        let config = command.into_config(Some(text)).unwrap();
        assert_eq!(
            config,
            VmConfig {
                name: "linux".to_string(),
                kernel: "/guest/linux/Image".to_string(),
                format: KernelFormat::LinuxImage,
                initrd: Some("/guest/linux/initrd.cpio".to_string()),
                append: "console=ttyAMA0 earlycon=pl011,0x09000000 panic=-1".to_string(),
                vcpus: 2,
                mem_bytes: 256 * MIB,
                mode: RunMode::Attach,
                timeout_secs: None,
                host_cpu: None,
                devices: Vec::new(),
                cgroup: None,
            }
        );
    }

    #[test]
    fn config_name_defaults_to_the_file_stem() {
        let config =
            VmConfig::from_file("/etc/vms/alpine.conf", "kernel = k\nraw_load = 0x40000000")
                .unwrap();
        assert_eq!(config.name, "alpine");
        assert_eq!(config.format, KernelFormat::Raw { load: 0x4000_0000 });
        assert_eq!(
            VmConfig::from_file("plain", "kernel=k").unwrap().name,
            "plain"
        );
        assert!(matches!(
            VmConfig::from_file("/x/bad name.cfg", "kernel=k"),
            Err(VmmError::BadName { .. })
        ));
    }

    #[test]
    fn config_file_errors_name_the_line() {
        let line = |text: &str| match VmConfig::from_file("c", text) {
            Err(VmmError::ConfigLine { line, error }) => (line, *error),
            other => panic!("expected a line error, got {other:?}"),
        };
        assert_eq!(line("kernel = k\nnonsense"), (2, VmmError::ConfigSyntax));
        assert_eq!(line("= 3"), (1, VmmError::ConfigSyntax));
        assert_eq!(
            line("#\ncolour = red"),
            (
                2,
                VmmError::UnknownKey {
                    key: "colour".into()
                }
            )
        );
        assert_eq!(
            line("kernel = a\nkernel = b"),
            (
                2,
                VmmError::Duplicate {
                    what: "kernel".into()
                }
            )
        );
        assert_eq!(line("vcpus = 9"), (1, VmmError::VcpuCount { count: 9 }));
        assert_eq!(
            line("mem = 8M"),
            (1, VmmError::MemOutOfRange { bytes: 8 * MIB })
        );
        assert_eq!(
            line("kernel ="),
            (1, VmmError::MissingValue { what: "kernel" })
        );
        assert_eq!(
            line("raw_load = 0xZZ"),
            (
                1,
                VmmError::BadNumber {
                    what: "raw_load",
                    value: "0xZZ".into()
                }
            )
        );
        assert_eq!(
            VmConfig::from_file("c", "vcpus = 1"),
            Err(VmmError::MissingKernel)
        );
        let shown = VmConfig::from_file("c", "kernel = k\nvcpus = 0")
            .unwrap_err()
            .to_string();
        assert_eq!(shown, "config line 2: 0 vCPUs: a VM has 1 to 8 vCPUs");
    }

    #[test]
    fn memory_sizes() {
        let cases = [
            ("16M", Ok(16 * MIB)),
            ("256m", Ok(256 * MIB)),
            ("1G", Ok(1 << 30)),
            ("4G", Ok(4 << 30)),
            ("2GiB", Ok(2 << 30)),
            ("512MB", Ok(512 * MIB)),
            ("32768K", Ok(32 * MIB)),
            ("268435456", Ok(256 * MIB)),
            ("0x1000_0000", Ok(256 * MIB)),
            ("4097M", Err(VmmError::MemOutOfRange { bytes: 4097 * MIB })),
            ("15M", Err(VmmError::MemOutOfRange { bytes: 15 * MIB })),
            (
                "16777217",
                Err(VmmError::MemOutOfRange {
                    bytes: 16 * MIB + 1,
                }),
            ),
        ];
        for (text, expected) in cases {
            assert_eq!(parse_mem("--mem", text), expected, "{text}");
        }
        for text in [
            "",
            "G",
            "1T",
            "1.5G",
            "-1G",
            "99999999999999999999",
            "17179869184G",
            "12B",
            "0x",
            "1__0_",
        ] {
            assert_eq!(
                parse_mem("--mem", text),
                Err(VmmError::BadNumber {
                    what: "--mem",
                    value: text.to_string()
                }),
                "{text:?}"
            );
        }
    }

    #[test]
    fn command_line_errors() {
        let cases: [(&str, VmmError); 21] = [
            ("", VmmError::MissingTarget),
            ("--wait", VmmError::MissingTarget),
            (
                "vm --frobnicate",
                VmmError::UnknownOption {
                    word: "--frobnicate".into(),
                },
            ),
            ("vm -v", VmmError::UnknownOption { word: "-v".into() }),
            (
                "vm other",
                VmmError::UnexpectedArgument {
                    word: "other".into(),
                },
            ),
            ("vm --vcpus", VmmError::MissingValue { what: "--vcpus" }),
            (
                "vm --vcpus --wait",
                VmmError::MissingValue { what: "--vcpus" },
            ),
            (
                "vm --vcpus two",
                VmmError::BadNumber {
                    what: "--vcpus",
                    value: "two".into(),
                },
            ),
            ("vm --vcpus 0", VmmError::VcpuCount { count: 0 }),
            ("vm --vcpus 9", VmmError::VcpuCount { count: 9 }),
            (
                "vm --vcpus 99999999999",
                VmmError::VcpuCount {
                    count: 99_999_999_999,
                },
            ),
            ("vm --mem 1M", VmmError::MemOutOfRange { bytes: MIB }),
            ("vm --attach --wait", VmmError::AttachAndWait),
            ("vm --attach --timeout 5", VmmError::AttachAndWait),
            ("vm --timeout 0", VmmError::TimeoutRange { secs: 0 }),
            ("vm --timeout 86401", VmmError::TimeoutRange { secs: 86401 }),
            ("vm --timeout 5 --timeout 6", VmmError::Duplicate { what: "--timeout".into() }),
            ("vm --timeout", VmmError::MissingValue { what: "--timeout" }),
            (
                "vm --wait --wait",
                VmmError::Duplicate {
                    what: "--wait".into(),
                },
            ),
            (
                "vm --mem 1G --mem 2G",
                VmmError::Duplicate {
                    what: "--mem".into(),
                },
            ),
            (
                "vm --initrd i",
                VmmError::NeedsKernel { option: "--initrd" },
            ),
        ];
        for (line, expected) in cases {
            assert_eq!(run(line), Err(expected), "{line:?}");
        }
        assert_eq!(run("vm --kernel k --raw"), Err(VmmError::RawNeedsLoad));
        assert_eq!(
            run("vm --kernel k --load 0x40000000"),
            Err(VmmError::RawNeedsLoad)
        );
        assert_eq!(
            run("vm --kernel k --raw --load 0x4zz"),
            Err(VmmError::BadNumber {
                what: "--load",
                value: "0x4zz".into()
            })
        );
        assert_eq!(
            run("vm --kernel"),
            Err(VmmError::MissingValue { what: "--kernel" })
        );
        assert_eq!(
            run("vm --kernel k --append"),
            Err(VmmError::MissingValue { what: "--append" })
        );
        assert_eq!(
            run("a/b --kernel k"),
            Err(VmmError::BadName { name: "a/b".into() })
        );
        let long = "x".repeat(MAX_NAME_LEN + 1);
        assert_eq!(
            RunCommand::parse(&[&long, "--kernel", "k"]),
            Err(VmmError::BadName { name: long.clone() })
        );
    }

    #[test]
    fn messages_say_what_to_change() {
        let shown = |line: &str| run(line).unwrap_err().to_string();
        assert_eq!(shown("vm --bogus"), "unknown option --bogus");
        assert_eq!(
            shown("vm --attach --wait"),
            "--attach and --wait (or --timeout) cannot be used together"
        );
        assert_eq!(shown("vm --mem"), "--mem needs a value");
        assert!(shown("vm --mem 5G").contains("16 MiB to 4 GiB"));
        assert!(shown("vm --vcpus 12").contains("1 to 8"));
        assert!(shown("").starts_with("usage: vm run"));
    }

    #[test]
    fn without_mode_drops_only_the_mode_options() {
        let w = ["linux", "--wait", "--append", "--wait", "--timeout", "5", "--mem", "64M"];
        assert_eq!(without_mode(&w), ["linux", "--append", "--wait", "--mem", "64M"]);
        assert_eq!(without_mode(&["hvc", "--attach"]), ["hvc"]);
        assert!(RunCommand::parse(&["hvc", "--kernel", "/k", "--append", "--wait"]).is_ok());
    }

    #[test]
    fn cpu_pins_every_vcpu_thread_to_one_host_cpu() {
        let cmd = RunCommand::parse(&["x", "--kernel", "/k", "--cpu", "2"]).unwrap();
        assert_eq!(cmd.host_cpu, Some(2));
        assert_eq!(cmd.into_config(None).unwrap().host_cpu, Some(2));
        assert_eq!(RunCommand::parse(&["x", "--kernel", "/k", "--cpu", "64"]), Err(VmmError::HostCpu { cpu: 64 }));
        assert!(matches!(RunCommand::parse(&["x", "--kernel", "/k", "--cpu"]), Err(VmmError::MissingValue { what: "--cpu" })));
        assert!(matches!(RunCommand::parse(&["x", "--kernel", "/k", "--cpu", "1", "--cpu", "1"]), Err(VmmError::Duplicate { .. })));
    }

    #[test]
    fn an_entropy_device_from_the_command_line_or_the_config_file() {
        let config = run("v --kernel /k --rng").and_then(|c| c.into_config(None)).unwrap();
        assert_eq!(config.devices, [VirtioDevice::Rng]);
        let config = run("linux").and_then(|c| c.into_config(Some("kernel = /k\nrng = yes"))).unwrap();
        assert_eq!(config.devices, [VirtioDevice::Rng]);
        let config = run("linux --rng").and_then(|c| c.into_config(Some("kernel = /k\nrng = yes"))).unwrap();
        assert_eq!(config.devices, [VirtioDevice::Rng], "one entropy device, not two");
        let config = run("linux").and_then(|c| c.into_config(Some("kernel = /k\nrng = no"))).unwrap();
        assert!(config.devices.is_empty());
        assert_eq!(run("v --kernel /k --rng --rng"), Err(VmmError::Duplicate { what: "--rng".to_string() }));
        let bad = run("linux").and_then(|c| c.into_config(Some("kernel = /k\nrng = maybe"))).unwrap_err();
        assert_eq!(bad.to_string(), "config line 2: rng = maybe: expected yes or no");
        assert_eq!(without_mode(&["v", "--kernel", "/k", "--rng", "--wait"]), ["v", "--kernel", "/k", "--rng"]);
    }

    #[test]
    fn disks_in_order_from_the_config_file_then_the_command_line() {
        let disk = |p: &str, ro| VirtioDevice::Disk { path: p.to_string(), read_only: ro };
        let config = run("linux --disk /disk/b.img:ro --rng --disk /disk/c.img")
            .and_then(|c| c.into_config(Some("kernel = /k\nrng = yes\ndisk = /disk/a.img")))
            .unwrap();
        assert_eq!(config.devices, [disk("/disk/a.img", false), disk("/disk/b.img", true), disk("/disk/c.img", false), VirtioDevice::Rng]);
        let dev = run("v --kernel /k --disk blk1:ro").and_then(|c| c.into_config(None)).unwrap();
        assert_eq!(dev.devices[0].block_device(), Some("blk1"));
        assert_eq!(dev.devices[0], VirtioDevice::Disk { path: "blk1".to_string(), read_only: true });
        for bad in ["disk.img", "", ":ro", "/", "blk", "blkx", "blk1234", "blk-1"] {
            let e = run(&alloc::format!("v --kernel /k --disk {bad}"));
            assert!(matches!(e, Err(VmmError::BadDisk { .. }) | Err(VmmError::MissingValue { .. })), "{bad}: {e:?}");
        }
        assert_eq!(
            run("v --kernel /k --disk /a --disk /a:ro").and_then(|c| c.into_config(None)),
            Err(VmmError::Duplicate { what: "disk /a".to_string() })
        );
        let many = "v --kernel /k --rng".to_string() + &(0..8).map(|i| alloc::format!(" --disk /d{i}")).collect::<String>();
        assert_eq!(run(&many).and_then(|c| c.into_config(None)), Err(VmmError::TooManyDevices { count: 9 }));
        assert_eq!(
            run("v --kernel /k --disk x").unwrap_err().to_string(),
            "--disk x: give a file's absolute path or a block device (blk0, blk1, ...), with :ro after it for a read-only disk"
        );
        assert_eq!(without_mode(&["v", "--disk", "/a", "--attach"]), ["v", "--disk", "/a"]);
    }

    #[test]
    fn a_virtio_console_puts_hvc0_on_the_command_line() {
        let config = run("linux --console virtio --disk /d.img --rng")
            .and_then(|c| c.into_config(Some("kernel = /k\nappend = console=ttyAMA0 earlycon=pl011,0x09000000 quiet")))
            .unwrap();
        assert_eq!(config.devices[1], VirtioDevice::Console, "after the disks");
        assert_eq!(config.append, "console=hvc0 earlycon=pl011,0x09000000 quiet");
        let config = run("linux").and_then(|c| c.into_config(Some("kernel = /k\nconsole = virtio"))).unwrap();
        assert_eq!((config.devices.as_slice(), config.append.as_str()), (&[VirtioDevice::Console][..], "console=hvc0"));
        let config = run("linux --console pl011").and_then(|c| c.into_config(Some("kernel = /k\nconsole = virtio\nappend = console=ttyAMA0"))).unwrap();
        assert!(config.devices.is_empty());
        assert_eq!(config.append, "console=ttyAMA0");
        assert_eq!(run("v --kernel /k --console serial").unwrap_err().to_string(), "--console serial: the console is virtio or pl011");
        assert_eq!(without_mode(&["v", "--console", "virtio", "--wait"]), ["v", "--console", "virtio"]);
    }
}
