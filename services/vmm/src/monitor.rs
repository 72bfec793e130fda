//! The running monitor: serves `vm` commands from the shell (registered as `vmm`), builds VMs from
//! files in the initrd, and runs one thread per vCPU that loops on `vcpu_run` and handles the
//! exits the kernel returns (the guest's PL011, vendor hypercalls, power off).
//!
//! A VM's console output is kept (the last `OUTPUT_KEEP` bytes) and, while the VM is in the
//! foreground (`vm run --wait`), also written to Keel's console as it comes.

use alloc::string::{String, ToString};
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::fmt::Write;
use core::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use keel_formats::cpio::Archive;
use keel_rt::abi::vm::{COUNTERS, Counter, ExitReason, MmioInfo, VCPU_POWER_ON, map};
use keel_rt::abi::{Error, PmoKind, Slot};
use keel_rt::ipc::{self, Reply, Request};
use keel_rt::proto::{procmgr, vmm};
use keel_rt::startup::{Startup, parse_initrd_arg};
use keel_rt::sync::Mutex;
use keel_rt::{println, sys, thread};
use keel_vmm::config::{RunCommand, RunMode, VmConfig};
use keel_vmm::dtb::{GuestDtb, guest_dtb};
use keel_vmm::image;
use keel_vmm::layout::{RAM_BASE, UART_BASE, UART_INTID, UART_SIZE, VIRTIO_MMIO_BASE, VIRTIO_MMIO_SLOTS, VIRTIO_MMIO_STRIDE, ram};
use keel_vmm::pl011::Pl011;
use keel_vmm::saved::{SavedList, SavedVm};
use crate::backend::Device;

/// The virtio-mmio window: every slot of the board.
const VIRTIO_WINDOW: u64 = VIRTIO_MMIO_STRIDE * VIRTIO_MMIO_SLOTS as u64;
/// Console bytes kept per VM.
const OUTPUT_KEEP: usize = 64 * 1024;
/// Server threads (a `vm run --wait` occupies one until its guest stops).
const SERVER_THREADS: usize = 4;
/// The vendor hypercall the tiny test guests use: x0 = x1 + 1.
const HVC_KEEL_ECHO: u64 = 0xC600_0001;

struct Vm {
    id: u32,
    name: String,
    /// The words after `vm run` that started it, without the mode (`vm start` runs them again).
    words: Vec<String>,
    vcpu_count: u32,
    /// The monitor (to save the VM list when this VM ends).
    monitor: &'static Monitor,
    /// Slots 0 for a VM an earlier monitor ran (only its record is left).
    vm: Slot,
    /// The irq-line capability of the PL011's SPI.
    uart_line: Slot,
    /// Its virtio devices, each with its backend process.
    devices: Vec<Device>,
    ram: Slot,
    vcpus: Vec<Slot>,
    mem_bytes: u64,
    /// Its cgroup's path and quota (the quota's slot is given back when the VM is released).
    cgroup: Option<(String, Slot)>,
    /// With a cgroup, each vCPU thread's capability: the thread moves itself back to the
    /// monitor's quota before the VM is released, so its group is empty when the end is told.
    vcpu_threads: Mutex<Vec<VcpuThread>>,
    uart: Mutex<Uart>,
    output: Mutex<Vec<u8>>,
    foreground: AtomicBool,
    /// A shell is attached (it learns of the exit only when it next sends input, so the exit is
    /// also printed).
    attached: AtomicBool,
    stopping: AtomicBool,
    /// How and why it stopped, once it has.
    exit: Mutex<Option<Exit>>,
    live_threads: AtomicUsize,
    /// Every kernel object of the VM and its device backends is given back (`release`).
    released: AtomicBool,
    /// The line that tells the user how the VM ended, printed once its last vCPU thread is gone
    /// and its memory given back (so a VM started after the notice finds that memory free).
    end_notice: Mutex<Option<String>>,
    /// Exit counters read just before the vCPUs were released (`vm stat` after the VM stopped).
    final_stats: Mutex<Option<Vec<[u64; COUNTERS]>>>,
}

/// A vCPU thread as its VM's cgroup needs it.
#[derive(Clone, Copy, PartialEq, Eq)]
enum VcpuThread {
    /// Started; its capability not stored yet.
    Starting,
    Running(Slot),
    /// Ended before its capability was stored.
    Ended,
}

/// How a VM ended.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Ending {
    /// The guest powered off or reset itself.
    Exited,
    /// `vm stop` (or the `--timeout`) stopped it.
    Stopped,
    /// Something went wrong that the guest did not ask for (an abort Keel cannot resolve, a
    /// failed vCPU).
    Crashed,
    /// It was running when the monitor died (its vCPU threads died with it).
    Lost,
}

#[derive(Clone)]
struct Exit {
    ending: Ending,
    reason: String,
}

impl Exit {
    /// `exited: system-off`, `stopped`, `crashed: vcpu 0: ...`: the state `vm list` shows.
    fn state(&self) -> String {
        match self.ending {
            Ending::Exited => alloc::format!("exited: {}", self.reason),
            Ending::Stopped => String::from("stopped"),
            Ending::Crashed => alloc::format!("crashed: {}", self.reason),
            Ending::Lost => self.reason.clone(),
        }
    }
}

struct Uart {
    dev: Pl011,
    irq: bool,
    /// Keyboard input waiting for room in the receive FIFO.
    input: alloc::collections::VecDeque<u8>,
    /// Transmitted bytes not yet passed on: one queue for the device, whichever vCPU wrote them,
    /// so the guest's console stays one ordered stream (as on a real PL011).
    pending: Vec<u8>,
    /// The UARTFR value the kernel was last told (it answers the guest's loads of it), and
    /// whether it was told it may buffer UARTDR stores.
    flags: Option<(u32, bool)>,
    /// The VM's UART irq line (and with it the kernel's transmit buffer) is deleted: its slot
    /// may be another object's now (set under this lock by `release`).
    line_gone: bool,
}

impl Uart {
    /// A PL011 just reset: nothing queued either way.
    fn new() -> Uart {
        Uart { dev: Pl011::new(), irq: false, input: alloc::collections::VecDeque::new(), pending: Vec::new(), flags: None, line_gone: false }
    }
}

struct Monitor {
    control: Slot,
    namesrv: Slot,
    /// The connection this monitor serves (`vmm`); console backends get badged copies.
    served: core::sync::atomic::AtomicU32,
    /// Held from the checks of a new VM's disks until it is in `vms` (two `vm run`s at once do
    /// not both get one disk read-write).
    starting: Mutex<()>,
    archive: &'static [u8],
    vms: Mutex<Vec<Arc<Vm>>>,
    next_id: AtomicUsize,
    /// procmgr, which keeps the VM list for a restarted monitor (STATE_SAVE), under a lock so
    /// the last list saved is the latest.
    keeper: Mutex<ipc::Client>,
    /// Keel's console as this monitor writes it.
    console: Mutex<ConsoleWriter>,
    /// The cgroup service, which gives the quota of a VM's `--cgroup` (None: init gave none).
    resmgr: Option<Mutex<ipc::Client>>,
}

/// The foreground guest's console stream and the notices of other VMs' ends, written in one
/// order: a notice never lands inside a line the foreground guest is in the middle of writing
/// (it waits for that line's end, or for the guest to leave the foreground).
struct ConsoleWriter {
    /// The foreground guest's last bytes written did not end its line.
    mid_line: bool,
    /// Notices waiting for the end of the foreground guest's line.
    held: Vec<String>,
}

impl Monitor {
    /// Writes a foreground guest's console bytes to Keel's console.
    fn write_guest(&self, bytes: &[u8]) {
        let mut c = self.console.lock();
        for chunk in bytes.chunks(4096) {
            let _ = sys::debug_write(chunk);
        }
        if let Some(&last) = bytes.last() {
            c.mid_line = last != b'\n';
        }
        if !c.mid_line {
            for notice in core::mem::take(&mut c.held) {
                keel_rt::io::write_str(&notice);
            }
        }
    }

    /// Writes a line of the monitor's own (`vm 1 (timer) exited: system-off`), after the
    /// foreground guest's current line if it is in the middle of one.
    fn notice(&self, line: String) {
        let mut c = self.console.lock();
        if c.mid_line {
            c.held.push(line);
        } else {
            keel_rt::io::write_str(&line);
        }
    }

    /// A guest left the foreground (it ended, or the shell detached): what comes next starts a
    /// line of its own, and held notices go out now.
    fn foreground_left(&self) {
        let mut c = self.console.lock();
        if c.mid_line {
            keel_rt::io::write_str("\n");
        }
        c.mid_line = false;
        for notice in core::mem::take(&mut c.held) {
            keel_rt::io::write_str(&notice);
        }
    }
}

/// How `vm list` shows a VM that was running when the monitor before this one died.
const LOST: &str = "lost: the VM monitor restarted (vm start <id> boots it again)";

impl Monitor {
    /// Gives procmgr the current VM list, so a restarted monitor still knows every VM.
    fn save(&self) {
        let mut keeper = self.keeper.lock();
        let list = SavedList {
            next_id: self.next_id.load(Ordering::Relaxed) as u32,
            vms: self
                .vms
                .lock()
                .iter()
                .map(|vm| SavedVm {
                    id: vm.id,
                    name: vm.name.clone(),
                    vcpus: vm.vcpu_count,
                    mem_bytes: vm.mem_bytes,
                    state: exit_state(vm),
                    words: vm.words.clone(),
                })
                .collect(),
        };
        let bytes = list.encode();
        let r = if bytes.len() > procmgr::MAX_SAVED {
            Err(Error::Invalid)
        } else {
            keeper.call_bulk(procmgr::STATE_SAVE, [0; 3], &bytes).and_then(|(r, _)| ipc::status(&r).map(|_| ()))
        };
        if let Err(e) = r {
            println!("vmm: cannot keep the VM list for a restart ({} VMs): {e}", list.vms.len());
        }
    }

    /// The VM list an earlier monitor saved: VMs that were running are lost now.
    fn restore(&'static self) {
        let loaded = self.keeper.lock().call_bulk(procmgr::STATE_LOAD, [0; 3], &[]).and_then(|(r, data)| ipc::status(&r).map(|_| data));
        let list = match loaded.map(|data| SavedList::decode(&data)) {
            Ok(Ok(list)) => list,
            Ok(Err(e)) => {
                println!("vmm: {e}; starting with no VMs");
                return;
            }
            Err(e) => {
                println!("vmm: cannot read the VM list an earlier monitor kept: {e}");
                return;
            }
        };
        if list.vms.is_empty() {
            return;
        }
        let restored: Vec<Arc<Vm>> = list.vms.into_iter().map(|v| Arc::new(Vm::record(self, v))).collect();
        let lost = restored.iter().filter(|v| v.exit.lock().as_ref().is_some_and(|e| e.ending == Ending::Lost)).count();
        println!("vmm: restarted; {} VMs in the list, {lost} of them were running and are lost", restored.len());
        let next = restored.iter().map(|v| v.id as usize + 1).max().unwrap_or(1).max(list.next_id as usize);
        self.next_id.store(next, Ordering::Relaxed);
        *self.vms.lock() = restored;
        self.save();
    }
}

impl Vm {
    /// A VM an earlier monitor ran: its record, no kernel objects.
    fn record(monitor: &'static Monitor, v: SavedVm) -> Vm {
        let exit = match v.state.as_str() {
            "running" => Exit { ending: Ending::Lost, reason: String::from(LOST) },
            "stopped" => Exit { ending: Ending::Stopped, reason: String::from("stopped") },
            s => match s.split_once(": ") {
                Some(("exited", why)) => Exit { ending: Ending::Exited, reason: why.to_string() },
                Some(("crashed", why)) => Exit { ending: Ending::Crashed, reason: why.to_string() },
                _ => Exit { ending: Ending::Lost, reason: s.to_string() },
            },
        };
        Vm {
            id: v.id,
            name: v.name,
            words: v.words,
            vcpu_count: v.vcpus,
            monitor,
            vm: 0,
            uart_line: 0,
            devices: Vec::new(),
            ram: 0,
            vcpus: Vec::new(),
            mem_bytes: v.mem_bytes,
            cgroup: None,
            vcpu_threads: Mutex::new(Vec::new()),
            uart: Mutex::new(Uart::new()),
            output: Mutex::new(Vec::new()),
            foreground: AtomicBool::new(false),
            attached: AtomicBool::new(false),
            stopping: AtomicBool::new(true),
            exit: Mutex::new(Some(exit)),
            live_threads: AtomicUsize::new(0),
            released: AtomicBool::new(true),
            end_notice: Mutex::new(None),
            final_stats: Mutex::new(None),
        }
    }
}

pub fn main(startup: &Startup) -> i32 {
    let (Some(control), Some(initrd), Some(namesrv_slot)) = (startup.cap("control"), startup.cap("initrd"), startup.cap("namesrv")) else {
        println!("vmm: started without its control, initrd and namesrv capabilities");
        return 1;
    };
    let Some((offset, size)) = startup.arg_value("initrd").and_then(parse_initrd_arg) else {
        println!("vmm: no initrd=<offset>:<size> argument");
        return 1;
    };
    let archive = match keel_rt::vm::map_readonly(initrd, offset + size) {
        Ok(bytes) => &bytes[offset as usize..],
        Err(e) => {
            println!("vmm: cannot map the initrd: {e}");
            return 1;
        }
    };
    let Some(procmgr_slot) = startup.cap("procmgr") else {
        println!("vmm: started without its procmgr capability");
        return 1;
    };
    let monitor: &'static Monitor = alloc::boxed::Box::leak(alloc::boxed::Box::new(Monitor {
        control,
        namesrv: namesrv_slot,
        served: core::sync::atomic::AtomicU32::new(0),
        starting: Mutex::new(()),
        archive,
        vms: Mutex::new(Vec::new()),
        next_id: AtomicUsize::new(1),
        keeper: Mutex::new(ipc::Client::new(procmgr_slot)),
        console: Mutex::new(ConsoleWriter { mid_line: false, held: Vec::new() }),
        resmgr: startup.cap("resmgr").map(|s| Mutex::new(ipc::Client::new(s))),
    }));
    // Before serving: the shell's first command after a restart already sees the old list.
    monitor.restore();
    let Ok(conn) = sys::conn_create() else {
        println!("vmm: cannot create its connection");
        return 1;
    };
    monitor.served.store(conn, Ordering::Release);
    if let Err(e) = ipc::register_service(namesrv_slot, "vmm", conn) {
        println!("vmm: cannot register with namesrv: {e}");
        return 1;
    }
    for _ in 1..SERVER_THREADS {
        let _ = thread::spawn_with(40, 0, move || ipc::serve(conn, |req| handle(monitor, req)));
    }
    ipc::serve(conn, |req| handle(monitor, req))
}

/// The badge of a backend's capability to this monitor: this bit, the VM's id (below 2^20),
/// and for a network device its slot + 1 from bit 20 (0 for a console).
const BACKEND_BADGE: u64 = 1 << 31;
const BACKEND_SLOT_SHIFT: u32 = 20;

/// A backend's badge (None: a VM id too large to fit one).
fn backend_badge(id: u32, slot: Option<u32>) -> Option<u64> {
    (id < 1 << BACKEND_SLOT_SHIFT).then(|| BACKEND_BADGE | u64::from(id) | slot.map_or(0, |s| u64::from(s + 1) << BACKEND_SLOT_SHIFT))
}

fn handle(m: &'static Monitor, req: &mut Request) -> Reply {
    if req.badge & BACKEND_BADGE != 0 && req.badge >> 32 == 0 {
        // A backend: for its own VM (and device) only.
        let id = (req.badge & ((1 << BACKEND_SLOT_SHIFT) - 1)) as u32;
        let slot = ((req.badge & !BACKEND_BADGE) >> BACKEND_SLOT_SHIFT) as u32;
        let Some(vm) = m.vms.lock().iter().find(|v| v.id == id).cloned() else { return Reply::err(Error::NotFound) };
        return match req.msg.label {
            vmm::CONSOLE_OUTPUT if slot == 0 => {
                let mut bytes = req.payload().to_vec();
                flush_output(&vm, &mut bytes);
                Reply::ok([0; 4])
            }
            vmm::PORT_LOST if slot != 0 => match vm.devices.iter().find(|d| d.slot == slot - 1) {
                Some(d) => match d.reopen_port(id) {
                    Ok(port) => {
                        m.notice(alloc::format!("vm {id}: the switch service restarted; its network device in slot {} has a new port\n", slot - 1));
                        Reply { caps: alloc::vec![port], ..Reply::ok([0; 4]) }
                    }
                    Err(e) => Reply::err(e),
                },
                None => Reply::err(Error::NotFound),
            },
            _ => Reply::err(Error::NoRights),
        };
    }
    if req.msg.label != vmm::COMMAND {
        return Reply::err(if req.msg.label == vmm::CONSOLE_OUTPUT { Error::NoRights } else { Error::NoSys });
    }
    let payload = req.payload().to_vec();
    let text = String::from_utf8_lossy(&payload).into_owned();
    let words: Vec<&str> = text.split('\0').collect();
    let (out, then) = command(m, &words);
    let n = req.reply_payload(out.as_bytes());
    Reply::ok([then[0], then[1], then[2], n])
}

/// Runs a `vm` command: the text to print, and what the shell does next (`proto::vmm`'s reply
/// words: the VM to attach to, the VM to wait for and its timeout; 0: none).
fn command(m: &'static Monitor, words: &[&str]) -> (String, [u64; 3]) {
    let mut out = String::new();
    let mut then = [0; 3];
    match words {
        ["start", id, mode @ ..] => match find(m, id) {
            Some(vm) if vm.exit.lock().is_none() => {
                let _ = writeln!(out, "vm start: vm {} is running", vm.id);
            }
            Some(vm) => {
                let mut words: Vec<&str> = vm.words.iter().map(String::as_str).collect();
                words.extend_from_slice(mode);
                match run(m, &words, Some(vm.id)) {
                    Ok((text, started)) => {
                        out = text;
                        then = started.then();
                    }
                    Err(e) => {
                        let _ = writeln!(out, "vm start: {e}");
                    }
                }
            }
            None => {
                let _ = writeln!(out, "vm start: no VM {id}");
            }
        },
        ["run", rest @ ..] => match run(m, rest, None) {
            Ok((text, started)) => {
                out = text;
                then = started.then();
            }
            Err(e) => {
                let _ = writeln!(out, "vm run: {e}");
            }
        },
        ["input", id, text] => match find(m, id) {
            Some(vm) if vm.exit.lock().is_some() => {
                let _ = writeln!(out, "vm {} {}", vm.id, exit_state(&vm));
            }
            Some(vm) => match vm.devices.iter().find(|d| d.kind == keel_vmm::config::VirtioDevice::Console) {
                // Typed lines go to the virtio console when the VM has one.
                Some(d) => {
                    if let Err(e) = d.input(text.as_bytes()) {
                        let _ = writeln!(out, "vm {}: its console backend is gone ({e})", vm.id);
                    }
                }
                None => {
                    let mut u = vm.uart.lock();
                    u.input.extend(text.bytes());
                    feed_uart(&vm, &mut u);
                }
            },
            None => {
                let _ = writeln!(out, "vm: no VM {id}");
            }
        },
        ["detach", id] => {
            if let Some(vm) = find(m, id) {
                vm.foreground.store(false, Ordering::Release);
                vm.attached.store(false, Ordering::Release);
                m.foreground_left();
            }
        }
        ["list"] => list(m, &mut out),
        // The shell's `--wait` loop: the VM's end, or nothing while it runs.
        // The end counts once the VM's memory is free again (`release` gave back its objects and
        // stopped its device backends).
        ["wait", id] => match find(m, id) {
            Some(vm) => {
                if vm.exit.lock().is_some() && vm.released.load(Ordering::Acquire) {
                    flush_console(&vm);
                    vm.foreground.store(false, Ordering::Release);
                    m.foreground_left();
                    let _ = writeln!(out, "vm {} {}", vm.id, exit_state(&vm));
                }
            }
            None => {
                let _ = writeln!(out, "vm wait: no VM {id}");
            }
        },
        ["rm", id] => match find(m, id) {
            Some(vm) if vm.exit.lock().is_none() => {
                let _ = writeln!(out, "vm rm: vm {} is running (vm stop {} first)", vm.id, vm.id);
            }
            Some(vm) => {
                m.vms.lock().retain(|v| v.id != vm.id);
                m.save();
                let _ = writeln!(out, "vm {} removed", vm.id);
            }
            None => {
                let _ = writeln!(out, "vm rm: no VM {id}");
            }
        },
        ["stat", id] => match find(m, id) {
            Some(vm) => stat(&vm, &mut out),
            None => {
                let _ = writeln!(out, "vm stat: no VM {id}");
            }
        },
        ["console", id] => match find(m, id) {
            Some(vm) => {
                flush_console(&vm);
                if vm.exit.lock().is_none() {
                    vm.attached.store(true, Ordering::Release);
                    let banner = alloc::format!("\n[attached to vm {}: lines you type go to its console; ~. on a line of its own detaches]\n", vm.id);
                    to_foreground(&vm, "", &banner);
                    then[0] = u64::from(vm.id);
                } else {
                    out = String::from_utf8_lossy(&vm.output.lock()).into_owned();
                }
            }
            None => {
                let _ = writeln!(out, "vm console: no VM {id}");
            }
        },
        ["stop", id] => match find(m, id) {
            Some(vm) if vm.exit.lock().is_some() => {
                let _ = writeln!(out, "vm stop: vm {} is not running ({})", vm.id, exit_state(&vm));
            }
            Some(vm) => {
                stop(&vm);
                let _ = writeln!(out, "vm {}: stopping", vm.id);
            }
            None => {
                let _ = writeln!(out, "vm stop: no VM {id}");
            }
        },
        _ => out.push_str("vm: usage: vm run <name|config> [options] | start <id> [--attach|--wait|--timeout S] | list | stat <id> | console <id> | stop <id> | rm <id>\n"),
    }
    (out, then)
}

fn exit_state(vm: &Vm) -> String {
    vm.exit.lock().as_ref().map_or(String::from("running"), Exit::state)
}

/// Moves queued keyboard input into the guest UART's receive FIFO and updates its interrupt line.
fn feed_uart(vm: &Vm, u: &mut Uart) {
    while let Some(&b) = u.input.front() {
        if !u.dev.push_input(b) {
            break;
        }
        u.input.pop_front();
    }
    update_irq(vm, u);
}

fn update_irq(vm: &Vm, u: &mut Uart) {
    // The flags first: a guest the interrupt reaches reads them.
    let state = (u.dev.flags(), u.dev.transmit_changes_only_output());
    if u.flags != Some(state) {
        u.flags = Some(state);
        let _ = sys::vm_irq_line_value(vm.uart_line, state.0, state.1);
    }
    let level = u.dev.irq_level();
    if level != u.irq {
        u.irq = level;
        let _ = sys::vm_irq_line(vm.uart_line, u64::from(level));
    }
}

fn find(m: &Monitor, id: &str) -> Option<Arc<Vm>> {
    let id: u32 = id.parse().ok()?;
    m.vms.lock().iter().find(|v| v.id == id).cloned()
}

fn file<'a>(m: &'a Monitor, path: &str) -> Result<&'a [u8], String> {
    match Archive::new(m.archive).and_then(|a| a.find(path)) {
        Ok(Some(e)) => Ok(e.data),
        Ok(None) => Err(alloc::format!("{path}: no such file")),
        Err(e) => Err(alloc::format!("{path}: {e}")),
    }
}

/// What the shell does after `vm run`.
enum Started {
    Background,
    /// Attach to this VM's console.
    Attached(u32),
    /// Wait for this VM to stop (with a timeout in seconds, 0: none).
    Waited(u32, u64),
}

impl Started {
    /// The reply words (`proto::vmm`): attach to, wait for, timeout.
    fn then(&self) -> [u64; 3] {
        match *self {
            Started::Background => [0; 3],
            Started::Attached(id) => [u64::from(id), 0, 0],
            Started::Waited(id, secs) => [0, u64::from(id), secs],
        }
    }
}

/// `vm run` (and `vm start` of a stopped VM, which keeps its `id`): builds and starts a VM.
fn run(m: &'static Monitor, words: &[&str], id: Option<u32>) -> Result<(String, Started), String> {
    let cmd = RunCommand::parse(words).map_err(|e| e.to_string())?;
    let config_text = match cmd.config_path() {
        Some(target) => {
            let path = if target.contains('/') { target.to_string() } else { alloc::format!("/etc/vm/{target}.conf") };
            let bytes = file(m, &path)?;
            Some(core::str::from_utf8(bytes).map_err(|_| alloc::format!("{path}: not text"))?.to_string())
        }
        None => None,
    };
    let config = cmd.into_config(config_text.as_deref()).map_err(|e| e.to_string())?;
    let starting = m.starting.lock();
    check_disks(m, &config)?;
    let vm = build(m, &config, keel_vmm::config::without_mode(words), id)?;
    let id = vm.id;
    {
        let mut vms = m.vms.lock();
        match vms.iter_mut().find(|v| v.id == id) {
            Some(old) => *old = vm.clone(),
            None => vms.push(vm.clone()),
        }
    }
    drop(starting);
    m.save();
    if vm.exit.lock().is_some() {
        // It ended before it ran (a vCPU thread could not start).
        return Ok((alloc::format!("vm {id} {}\n", exit_state(&vm)), Started::Background));
    }
    match config.mode {
        RunMode::Background => {
            let group = config.cgroup.as_ref().map(|g| alloc::format!(", cgroup {g}")).unwrap_or_default();
            Ok((alloc::format!("vm {id} started ({}, {} vcpus, {} MiB{group})\n", config.name, config.vcpus, config.mem_bytes >> 20), Started::Background))
        }
        RunMode::Attach => {
            vm.attached.store(true, Ordering::Release);
            to_foreground(&vm, &alloc::format!("[vm {id} started and attached: lines you type go to its console; ~. on a line of its own detaches]\n"), "");
            Ok((String::new(), Started::Attached(id)))
        }
        RunMode::Wait => {
            // The shell waits (asking `vm wait`), so Ctrl-C and the timeout stay in its hands.
            to_foreground(&vm, "", "");
            Ok((String::new(), Started::Waited(id, config.timeout_secs.unwrap_or(0))))
        }
    }
}

/// Each disk's file must exist, be a regular file of at least one sector, and not be in use by
/// another VM unless both only read it.
fn check_disks(m: &Monitor, config: &VmConfig) -> Result<(), String> {
    use keel_rt::errno::Errno;
    use keel_vmm::config::VirtioDevice;
    for d in &config.devices {
        let VirtioDevice::Disk { path, read_only } = d else { continue };
        if d.block_device().is_some() {
            check_block_device(m, path, *read_only)?;
        } else { match keel_rt::fs::stat(path) {
            Ok(st) if st.is_dir() => return Err(alloc::format!("--disk {path}: is a directory")),
            Ok(st) if st.size < 512 => return Err(alloc::format!("--disk {path}: smaller than one 512-byte sector ({} bytes)", st.size)),
            Ok(_) => {}
            Err(Errno::NoEnt) => return Err(alloc::format!("--disk {path}: no such file")),
            Err(e) => return Err(alloc::format!("--disk {path}: {e}")),
        } }
        for other in m.vms.lock().iter().filter(|v| !v.released.load(Ordering::Acquire)) {
            for od in &other.devices {
                if let VirtioDevice::Disk { path: p, read_only: r } = &od.kind
                    && p == path
                    && !(*read_only && *r)
                {
                    let how = if *r { "read-only" } else { "read-write" };
                    return Err(alloc::format!("--disk {path}: in use by vm {} ({}, {how})", other.id, other.name));
                }
            }
        }
    }
    Ok(())
}

/// A whole block device as a disk: it exists, and is writable unless the VM only reads it.
/// (Whether another client writes it, e.g. the file service with it mounted, its backend finds
/// out when it opens it for writing.)
fn check_block_device(m: &Monitor, name: &str, read_only: bool) -> Result<(), String> {
    let dev = keel_rt::ipc::lookup(m.namesrv, name, 1, 0).map_err(|_| alloc::format!("--disk {name}: no such block device (the virtio-blk driver's disks are blk0, blk1, ...)"))?;
    let info = sys::ipc_call(dev, &keel_rt::abi::ipc::Message::new(keel_rt::proto::blk::INFO, [0; 4]), keel_rt::abi::ipc::CapList::EMPTY);
    let _ = sys::cap_delete(dev);
    match info {
        Ok(r) if r.msg.label == 0 && r.msg.data[1] & keel_rt::proto::blk::READ_ONLY != 0 && !read_only => {
            Err(alloc::format!("--disk {name}: the device is read-only (give {name}:ro)"))
        }
        Ok(r) if r.msg.label == 0 && r.msg.data[0] == 0 => Err(alloc::format!("--disk {name}: the device has no sectors")),
        Ok(r) if r.msg.label == 0 => Ok(()),
        _ => Err(alloc::format!("--disk {name}: the block device does not answer")),
    }
}

fn build(m: &'static Monitor, config: &VmConfig, words: Vec<String>, id: Option<u32>) -> Result<Arc<Vm>, String> {
    let kernel = file(m, &config.kernel)?;
    let initrd = match &config.initrd {
        Some(p) => Some(file(m, p)?),
        None => None,
    };
    let backend_elf = if config.devices.is_empty() { &[][..] } else { file(m, "/bin/vdev")? };
    let layout = image::plan(kernel, config.format, initrd.map_or(0, |i| i.len() as u64), ram(config.mem_bytes)).map_err(|e| e.to_string())?;
    // Device `n` sits in virtio-mmio slot `n`.
    let virtio_slots: Vec<u32> = (0..config.devices.len() as u32).collect();
    let dtb = guest_dtb(&GuestDtb {
        vcpus: config.vcpus,
        mem_bytes: config.mem_bytes,
        bootargs: &config.append,
        initrd: layout.initrd,
        virtio_slots: &virtio_slots,
    })
    .map_err(|e| e.to_string())?;
    let dtb_addr = layout.dtb_address(dtb.len()).map_err(|e| e.to_string())?;
    let sys_err = |what: &str, e: Error| alloc::format!("{what}: {e}");

    // Everything the VM uses is charged to its cgroup: stage-2 tables, RAM, backends, vCPUs.
    let quota = match &config.cgroup {
        Some(path) => Some(group_quota(m, path, config.mem_bytes)?),
        None => None,
    };
    let bill = quota.unwrap_or(keel_rt::abi::slots::SELF_PROCESS);
    // Every capability made here is given back if a later step fails.
    let mut made: Vec<Slot> = quota.into_iter().collect();
    let mut devices: Vec<Device> = Vec::new();
    let fail = |made: &mut Vec<Slot>, devices: &mut Vec<Device>, e: String| {
        for d in devices.drain(..) {
            d.release();
        }
        for s in made.drain(..).rev() {
            let _ = sys::cap_delete(s);
        }
        e
    };
    let mut keep = |r: Result<Slot, Error>, what: &str| {
        r.map(|s| {
            made.push(s);
            s
        })
        .map_err(|e| sys_err(what, e))
    };
    let parts = (|| {
        let vm = keep(sys::vm_create_for(m.control, config.vcpus, bill), "cannot create the VM")?;
        let ram_pmo = keep(sys::pmo_create_for(PmoKind::Anonymous, config.mem_bytes, bill), "no memory for guest RAM")?;
        // The kernel answers the guest's UARTFR loads (one before every byte it writes) with the
        // flags this monitor keeps it told of (`update_irq`), and buffers its UARTDR stores
        // while they change nothing but the output (`take_transmitted`); the registers must be
        // in the UART's MMIO region, mapped first.
        sys::vm_map(vm, 0, UART_BASE, UART_SIZE, 0, map::MMIO).map_err(|e| sys_err("cannot map the UART", e))?;
        let (flags, data) = (UART_BASE + keel_vmm::pl011::FLAGS_OFFSET, UART_BASE + keel_vmm::pl011::DATA_OFFSET);
        let uart_line = keep(sys::vm_console_irq_line(vm, UART_INTID, flags, data), "cannot create the UART's interrupt line")?;
        let reset = Pl011::new();
        sys::vm_irq_line_value(uart_line, reset.flags(), reset.transmit_changes_only_output()).map_err(|e| alloc::format!("cannot set the UART's flags: {e}"))?;
        let mut vcpus = Vec::new();
        for i in 0..config.vcpus {
            vcpus.push(keep(sys::vcpu_create(vm, i), "cannot create a vCPU")?);
        }
        Ok::<_, String>((vm, ram_pmo, uart_line, vcpus))
    })();
    let (vm, ram_pmo, uart_line, vcpus) = parts.map_err(|e| fail(&mut made, &mut devices, e))?;
    let fresh = id.is_none();
    let id = id.unwrap_or_else(|| m.next_id.fetch_add(1, Ordering::Relaxed) as u32);
    let setup = (|| {
        sys::vm_map(vm, ram_pmo, RAM_BASE, config.mem_bytes, 0, map::READ | map::WRITE | map::EXEC).map_err(|e| sys_err("cannot map guest RAM", e))?;
        sys::vm_map(vm, 0, VIRTIO_MMIO_BASE, VIRTIO_WINDOW, 0, map::MMIO).map_err(|e| sys_err("cannot map the virtio-mmio window", e))?;
        write_guest(ram_pmo, layout.kernel.start, kernel)?;
        if let (Some(range), Some(bytes)) = (layout.initrd, initrd) {
            write_guest(ram_pmo, range.start, bytes)?;
        }
        write_guest(ram_pmo, dtb_addr, &dtb)?;
        for (&slot, kind) in virtio_slots.iter().zip(&config.devices) {
            // A console's output comes back to this monitor, badged with the VM's id; a network
            // device asks here for a new port when its switch restarted (badged with its slot).
            let badge = match kind {
                keel_vmm::config::VirtioDevice::Console => backend_badge(id, None),
                keel_vmm::config::VirtioDevice::Net { .. } => backend_badge(id, Some(slot)),
                _ => None,
            };
            let output = match badge {
                Some(badge) => Some(
                    sys::cap_copy(m.served.load(Ordering::Acquire), None, keel_rt::abi::rights::CALL | keel_rt::abi::rights::GRANT, badge)
                        .map_err(|e| sys_err("cannot make the backend's capability to the monitor", e))?,
                ),
                None => None,
            };
            let started = Device::start(backend_elf, kind, slot, vm, id, ram_pmo, config.mem_bytes, m.namesrv, output, bill, &|process, name| adopt(m, process, name));
            if let Some(o) = output {
                let _ = sys::cap_delete(o);
            }
            devices.push(started?);
        }
        sys::vcpu_init(vcpus[0], layout.entry, dtb_addr, VCPU_POWER_ON).map_err(|e| sys_err("cannot start vCPU 0", e))
    })();
    if let Err(e) = setup {
        let e = fail(&mut made, &mut devices, e);
        // A start that failed (a backend that cannot open its disk, say) gives its new number
        // back, unless another VM has taken a later one meanwhile: its backends are gone
        // (killed above), so nothing still holds a badge with it.
        if fresh {
            let _ = m.next_id.compare_exchange(id as usize + 1, id as usize, Ordering::AcqRel, Ordering::Relaxed);
        }
        return Err(e);
    }
    let vm = Arc::new(Vm {
        id,
        name: config.name.clone(),
        words,
        vcpu_count: config.vcpus,
        monitor: m,
        vm,
        uart_line,
        devices,
        ram: ram_pmo,
        vcpus: vcpus.clone(),
        mem_bytes: config.mem_bytes,
        cgroup: config.cgroup.clone().zip(quota),
        vcpu_threads: Mutex::new(alloc::vec![VcpuThread::Starting; vcpus.len()]),
        uart: Mutex::new(Uart::new()),
        output: Mutex::new(Vec::new()),
        foreground: AtomicBool::new(false),
        attached: AtomicBool::new(false),
        stopping: AtomicBool::new(false),
        exit: Mutex::new(None),
        live_threads: AtomicUsize::new(vcpus.len()),
        released: AtomicBool::new(false),
        end_notice: Mutex::new(None),
        final_stats: Mutex::new(None),
    });
    for index in 0..vcpus.len() {
        let v = vm.clone();
        let affinity = config.host_cpu.map_or(0, |cpu| 1u64 << cpu);
        let spawned = thread::spawn_with(32, affinity, move || vcpu_loop(&v, index)).and_then(|t| {
            // Its run time (the guest's included) and its record go to the VM's cgroup; it may
            // have run a moment on the monitor's before this.
            let Some(q) = quota else {
                let _ = sys::cap_delete(t);
                return Ok(());
            };
            let mut threads = vm.vcpu_threads.lock();
            if threads[index] == VcpuThread::Ended {
                let _ = sys::cap_delete(t);
                return Ok(());
            }
            threads[index] = VcpuThread::Running(t);
            sys::quota_move(q, t)
        });
        if let Err(e) = spawned {
            let on = config.host_cpu.map(|c| alloc::format!(" on host CPU {c} (is it online?)")).unwrap_or_default();
            finish(&vm, Ending::Crashed, &alloc::format!("cannot start the thread of vCPU {index}{on}: {e}"));
            // `vm run` says so in its answer; no notice later as well.
            vm.end_notice.lock().take();
            if vm.live_threads.fetch_sub(1, Ordering::AcqRel) == 1 {
                release(&vm);
            }
        }
    }
    Ok(vm)
}

/// The quota of cgroup `path` (from resmgr), checked to have room for `ram` bytes of guest RAM
/// (its `memory.max`, and every parent's, less what is charged there now).
fn group_quota(m: &Monitor, path: &str, ram: u64) -> Result<Slot, String> {
    let resmgr = m.resmgr.as_ref().ok_or_else(|| alloc::format!("--cgroup {path}: the VM monitor was not given the cgroup service"))?;
    let reply = keel_rt::proto::resmgr::call(&mut resmgr.lock(), keel_rt::proto::resmgr::QUOTA, path.as_bytes());
    let quota = match reply.as_ref().map(|(r, _)| (ipc::status(r), r.caps.slots().next())) {
        Ok((Ok(_), Some(q))) => q,
        Ok((Err(Error::NotFound), _)) => return Err(alloc::format!("--cgroup {path}: no such group (cgroup mkdir {path} makes it)")),
        Ok((Err(Error::NoRights), _)) => return Err(alloc::format!("--cgroup {path}: VMs run in the monitor's group or a group below the root")),
        Ok((Err(Error::BadState), _)) => return Err(alloc::format!("--cgroup {path}: the group enables controllers for its children (cgroup.subtree_control), so it holds no processes: use a group below it")),
        Ok((Err(e), _)) => return Err(alloc::format!("--cgroup {path}: {e}")),
        Ok((Ok(_), None)) => return Err(alloc::format!("--cgroup {path}: the cgroup service gave no quota")),
        Err(e) => return Err(alloc::format!("--cgroup {path}: the cgroup service: {e}")),
    };
    match sys::quota_stat(quota, keel_rt::abi::quota::MEMORY) {
        Ok(s) if s.room < ram => {
            let _ = sys::cap_delete(quota);
            Err(alloc::format!(
                "--cgroup {path}: guest RAM ({} MiB) does not fit: the group has room for {} MiB more (its memory.max or a parent's)",
                ram >> 20,
                s.room >> 20
            ))
        }
        Ok(_) => Ok(quota),
        Err(e) => {
            let _ = sys::cap_delete(quota);
            Err(alloc::format!("--cgroup {path}: {e}"))
        }
    }
}

/// Puts a process this monitor started (a device backend) in procmgr's list, so `ps` shows it
/// and `kill` reaches it.
fn adopt(m: &Monitor, process: Slot, name: &str) -> Result<(), Error> {
    use keel_rt::abi::rights;
    let words = keel_rt::proto::pack_name(name)?;
    // GRANT: the copy travels in the call.
    let copy = sys::cap_copy(process, None, rights::READ | rights::WAIT | rights::MANAGE | rights::GRANT, 0)?;
    let r = m.keeper.lock().call_with_caps(procmgr::ADOPT, words, &[copy]);
    let _ = sys::cap_delete(copy);
    r.and_then(|r| ipc::status(&r).map(|_| ()))
}

/// Copies `bytes` into guest RAM at guest physical `addr`.
fn write_guest(ram_pmo: Slot, addr: u64, bytes: &[u8]) -> Result<(), String> {
    let offset = addr.checked_sub(RAM_BASE).ok_or_else(|| String::from("image below guest RAM"))?;
    for (i, chunk) in bytes.chunks(keel_rt::abi::MAX_COPY as usize).enumerate() {
        sys::pmo_write(ram_pmo, offset + (i as u64) * keel_rt::abi::MAX_COPY, chunk).map_err(|e| alloc::format!("cannot load the guest: {e}"))?;
    }
    Ok(())
}

/// One vCPU's thread: runs it and answers its exits until the VM stops.
fn vcpu_loop(vm: &Arc<Vm>, index: usize) {
    let slot = vm.vcpus[index];
    let mut results = [0u64; 4];
    loop {
        let exit = match sys::vcpu_run(slot, results) {
            Ok(e) => e,
            Err(e) => {
                finish(vm, Ending::Crashed, &alloc::format!("vcpu {index}: vcpu_run failed: {e}"));
                break;
            }
        };
        results = [0; 4];
        let d = exit.details;
        match ExitReason::from_u64(exit.reason) {
            Some(ExitReason::Mmio) => {
                let info = MmioInfo::decode(d[1]);
                let (ipa, value) = (d[0], d[2]);
                if (UART_BASE..UART_BASE + UART_SIZE).contains(&ipa) {
                    let mut u = vm.uart.lock();
                    // The bytes the guest stored before this access, first.
                    if d[3] != 0 {
                        take_transmitted(vm, &mut u);
                    }
                    if info.write {
                        u.dev.write(ipa - UART_BASE, info.size, value as u32);
                    } else {
                        results[0] = u64::from(u.dev.read(ipa - UART_BASE, info.size));
                    }
                    let sent = u.dev.take_output();
                    u.pending.extend_from_slice(&sent);
                    feed_uart(vm, &mut u);
                    // Whole lines go out; so do prompts (an interactive guest prints them without
                    // a newline), a full batch, and what the kernel held (written in one go: a
                    // prompt may end in a terminal query, busybox's `ESC [6n`). Under the UART's
                    // lock: the order is the guest's.
                    let prompt = vm.foreground.load(Ordering::Relaxed) && !u.input.is_empty() || u.pending.ends_with(b" ");
                    if prompt || d[3] != 0 || u.pending.contains(&b'\n') || u.pending.len() >= 256 {
                        flush_output(vm, &mut u.pending);
                    }
                } else if (VIRTIO_MMIO_BASE..VIRTIO_MMIO_BASE + VIRTIO_WINDOW).contains(&ipa) {
                    let (slot, offset) = ((ipa - VIRTIO_MMIO_BASE) / VIRTIO_MMIO_STRIDE, (ipa - VIRTIO_MMIO_BASE) % VIRTIO_MMIO_STRIDE);
                    match vm.devices.iter().find(|d| u64::from(d.slot) == slot) {
                        // The device's backend answers (doorbells never come here: they are
                        // the kernel's ioevents).
                        Some(d) => match d.access(info.write, offset, info.size, value) {
                            Ok(v) => results[0] = v,
                            Err(why) => vm.monitor.notice(alloc::format!("vm {} ({}): {why}\n", vm.id, vm.name)),
                        },
                        // An empty slot reads as a transport with no device; writes are ignored.
                        None if !info.write => results[0] = keel_vmm::virtio_slot::read(offset, info.size),
                        None => {}
                    }
                }
            }
            Some(ExitReason::Hypercall | ExitReason::Smc) => {
                // Results replace x0..x3: keep x1..x3 as the guest had them.
                results = [d[0], d[1], d[2], d[3]];
                results[0] = if d[0] == HVC_KEEL_ECHO { d[1].wrapping_add(1) } else { u64::MAX };
            }
            // The guest waits or was interrupted with bytes in the kernel's buffer: out they go,
            // a line or not (it may be a prompt).
            Some(ExitReason::Transmit) => {
                let mut u = vm.uart.lock();
                take_transmitted(vm, &mut u);
                update_irq(vm, &mut u);
                flush_output(vm, &mut u.pending);
            }
            Some(ExitReason::SystemOff) => {
                flush_console(vm);
                finish(vm, Ending::Exited, "system-off");
                break;
            }
            Some(ExitReason::SystemReset) => {
                flush_console(vm);
                finish(vm, Ending::Exited, "system-reset (reboot is not supported; the VM stopped)");
                break;
            }
            Some(ExitReason::Abort) => {
                flush_console(vm);
                finish(vm, Ending::Crashed, &alloc::format!("vcpu {index}: unresolvable abort at IPA {:#x} (out of memory)", d[0]));
                break;
            }
            Some(ExitReason::Kicked) => {
                if vm.stopping.load(Ordering::Acquire) {
                    flush_console(vm);
                    break;
                }
            }
            None => {
                finish(vm, Ending::Crashed, &alloc::format!("vcpu {index}: unknown exit {}", exit.reason));
                break;
            }
        }
    }
    if vm.cgroup.is_some() {
        // Home to the monitor's quota: when the end is told, the group holds nothing of the VM.
        let mut threads = vm.vcpu_threads.lock();
        if let VcpuThread::Running(t) = threads[index] {
            let _ = sys::quota_move(keel_rt::abi::slots::SELF_PROCESS, t);
            let _ = sys::cap_delete(t);
        }
        threads[index] = VcpuThread::Ended;
    }
    if vm.live_threads.fetch_sub(1, Ordering::AcqRel) == 1 {
        release(vm);
    }
}

/// Puts `vm` in the foreground: writes `before`, what it printed so far and `after` to Keel's
/// console, under the log's lock, as [`flush_output`] decides: each byte of the guest's output is
/// shown once, in the guest's order. (A VM's vCPUs run before `vm run` returns: a guest that
/// printed its first lines before its VM was put in the foreground lost them from the screen,
/// seen once under load as a `vm run --wait` that showed nothing. And the history cannot go back
/// in the command's reply: a line the guest finished while the shell was printing the reply
/// reached the screen before it, seen in CI as `the peer said by` + banner, with the `e` earlier.)
fn to_foreground(vm: &Vm, before: &str, after: &str) {
    let out = vm.output.lock();
    vm.foreground.store(true, Ordering::Release);
    let history = String::from_utf8_lossy(&out);
    vm.monitor.write_guest(alloc::format!("{before}{history}{after}").as_bytes());
}

/// Passes on whatever the guest has written so far: the bytes the kernel still buffers (a vCPU
/// thread may not have taken them yet: under load a `vm console` caught a line whose end was
/// still there, and printed its banner in the middle of it) and what the UART still holds (a
/// last line without its newline).
fn flush_console(vm: &Vm) {
    let mut u = vm.uart.lock();
    if !u.line_gone {
        take_transmitted(vm, &mut u);
    }
    flush_output(vm, &mut u.pending);
}

/// Passes the bytes the kernel buffered from the guest's UARTDR stores through the UART, in the
/// order stored (they came before the access being handled, if any).
fn take_transmitted(vm: &Vm, u: &mut Uart) {
    let mut buf = [0u8; keel_rt::abi::vm::TX_BUFFER];
    while let Ok(n) = sys::vm_tx_take(vm.uart_line, &mut buf) {
        for &b in &buf[..n] {
            u.dev.write(keel_vmm::pl011::DATA_OFFSET, 1, u32::from(b));
        }
        if n < buf.len() {
            break;
        }
    }
    let sent = u.dev.take_output();
    u.pending.extend_from_slice(&sent);
}

/// Appends guest console output to the VM's log, and to Keel's console in the foreground (the
/// log's lock held across both, see [`to_foreground`]).
fn flush_output(vm: &Vm, pending: &mut Vec<u8>) {
    if pending.is_empty() {
        return;
    }
    let mut out = vm.output.lock();
    if vm.foreground.load(Ordering::Acquire) {
        vm.monitor.write_guest(pending);
    }
    out.extend_from_slice(pending);
    if out.len() > OUTPUT_KEEP {
        let cut = out.len() - OUTPUT_KEEP;
        out.drain(..cut);
    }
    pending.clear();
}

/// Records how and why the VM stopped (the first reason wins), says so unless a waiting shell
/// will, and stops every vCPU.
fn finish(vm: &Vm, ending: Ending, reason: &str) {
    let exit = Exit { ending, reason: reason.to_string() };
    let state = exit.state();
    {
        let mut slot = vm.exit.lock();
        if slot.is_some() {
            return;
        }
        *slot = Some(exit);
    }
    if vm.foreground.load(Ordering::Acquire) {
        vm.monitor.foreground_left();
    }
    // A shell waiting in the foreground prints the end itself; otherwise the user learns it
    // when the VM's memory is free again (`release`).
    if !vm.foreground.load(Ordering::Acquire) || vm.attached.load(Ordering::Acquire) {
        *vm.end_notice.lock() = Some(alloc::format!("vm {} ({}) {state}\n", vm.id, vm.name));
    }
    stop(vm);
    vm.monitor.save();
}

/// Stops every vCPU (the threads then end and the last one releases the VM).
fn stop(vm: &Vm) {
    finish(vm, Ending::Stopped, "stopped");
    vm.stopping.store(true, Ordering::Release);
    for &v in &vm.vcpus {
        let _ = sys::vcpu_kick(v);
    }
}

/// The last vCPU thread is gone: give the VM's capabilities back (the kernel then frees it).
fn release(vm: &Vm) {
    *vm.final_stats.lock() = Some(read_stats(vm));
    for d in &vm.devices {
        d.release();
    }
    for &v in &vm.vcpus {
        let _ = sys::cap_delete(v);
    }
    {
        let mut u = vm.uart.lock();
        u.line_gone = true;
        let _ = sys::cap_delete(vm.uart_line);
    }
    let _ = sys::cap_delete(vm.vm);
    let _ = sys::cap_delete(vm.ram);
    if let Some((_, q)) = &vm.cgroup {
        let _ = sys::cap_delete(*q);
    }
    vm.released.store(true, Ordering::Release);
    if let Some(notice) = vm.end_notice.lock().take() {
        vm.monitor.notice(notice);
    }
}

fn list(m: &Monitor, out: &mut String) {
    let _ = writeln!(out, "{:<4} {:<16} {:>5} {:>8}  state", "id", "name", "vcpus", "mem MiB");
    for vm in m.vms.lock().iter() {
        let state = exit_state(vm);
        let group = vm.cgroup.as_ref().map(|(g, _)| alloc::format!("  (cgroup {g})")).unwrap_or_default();
        let _ = writeln!(out, "{:<4} {:<16} {:>5} {:>8}  {state}{group}", vm.id, vm.name, vm.vcpu_count, vm.mem_bytes >> 20);
    }
}

fn read_stats(vm: &Vm) -> Vec<[u64; COUNTERS]> {
    let mut per_vcpu: Vec<[u64; COUNTERS]> = Vec::new();
    for &v in &vm.vcpus {
        let mut all = [0u64; COUNTERS];
        for first in (0..COUNTERS).step_by(7) {
            if let Ok(c) = sys::vcpu_stat(v, first) {
                for (i, x) in c.iter().enumerate() {
                    if first + i < COUNTERS {
                        all[first + i] = *x;
                    }
                }
            }
        }
        per_vcpu.push(all);
    }
    per_vcpu
}

fn stat(vm: &Vm, out: &mut String) {
    if vm.vcpus.is_empty() {
        let _ = writeln!(out, "vm stat: vm {} ran under an earlier VM monitor; its counters were lost with it", vm.id);
        return;
    }
    let per_vcpu = vm.final_stats.lock().clone().unwrap_or_else(|| read_stats(vm));
    let _ = write!(out, "{:<16} {:>10}", "exit", "total");
    for i in 0..per_vcpu.len() {
        let _ = write!(out, " {:>10}", alloc::format!("vcpu{i}"));
    }
    out.push('\n');
    for c in Counter::ALL {
        let total: u64 = per_vcpu.iter().map(|v| v[c as usize]).sum();
        let _ = write!(out, "{:<16} {:>10}", c.name(), total);
        for v in &per_vcpu {
            let _ = write!(out, " {:>10}", v[c as usize]);
        }
        out.push('\n');
    }
    if vm.devices.is_empty() {
        return;
    }
    let _ = writeln!(out, "{:<18} {:>9} {:>11} {:>8} {:>10} {:>6}  state", "device", "requests", "bytes", "wakeups", "interrupts", "errors");
    for d in &vm.devices {
        let (s, backend) = d.stats();
        let mut state = if backend == crate::backend::Backend::Gone {
            String::from("backend gone")
        } else if backend == crate::backend::Backend::Ended {
            String::from("ended with the VM")
        } else if s.status & keel_vmm::virtio_slot::NEEDS_RESET != 0 {
            String::from("needs reset")
        } else if s.status & 4 != 0 {
            String::from("driver ok")
        } else {
            String::from("not set up")
        };
        if let keel_vmm::config::VirtioDevice::Disk { path, read_only } = &d.kind {
            state.push_str(&alloc::format!(", {path}{}", if *read_only { " (read-only)" } else { "" }));
        }
        if let keel_vmm::config::VirtioDevice::Net { switch } = &d.kind {
            state.push_str(&alloc::format!(", switch {switch}, {}", keel_vmm::config::mac_text(&crate::backend::mac_of(vm.id, d.slot))));
        }
        if d.kind == keel_vmm::config::VirtioDevice::Rng && s.known {
            state.push_str(if s.hardware { ", bytes from RNDR" } else { ", bytes from a seeded generator" });
        }
        let name = alloc::format!("virtio-{}@{}", d.kind.name(), d.slot);
        let _ = writeln!(out, "{name:<18} {:>9} {:>11} {:>8} {:>10} {:>6}  {state} (pid {})", s.requests, s.bytes, s.notifications, s.interrupts, s.errors, d.pid);
    }
}
