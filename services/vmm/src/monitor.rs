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
use keel_rt::proto::vmm;
use keel_rt::startup::{Startup, parse_initrd_arg};
use keel_rt::sync::Mutex;
use keel_rt::{println, sys, thread};
use keel_vmm::config::{RunCommand, RunMode, VmConfig};
use keel_vmm::dtb::{GuestDtb, guest_dtb};
use keel_vmm::image;
use keel_vmm::layout::{RAM_BASE, UART_BASE, UART_INTID, UART_SIZE, ram};
use keel_vmm::pl011::Pl011;

/// Console bytes kept per VM.
const OUTPUT_KEEP: usize = 64 * 1024;
/// Server threads (a `vm run --wait` occupies one until its guest stops).
const SERVER_THREADS: usize = 4;
/// The vendor hypercall the tiny test guests use: x0 = x1 + 1.
const HVC_KEEL_ECHO: u64 = 0xC600_0001;

struct Vm {
    id: u32,
    name: String,
    vm: Slot,
    /// The irq-line capability of the PL011's SPI.
    uart_line: Slot,
    ram: Slot,
    vcpus: Vec<Slot>,
    mem_bytes: u64,
    uart: Mutex<Uart>,
    output: Mutex<Vec<u8>>,
    foreground: AtomicBool,
    /// A shell is attached (it learns of the exit only when it next sends input, so the exit is
    /// also printed).
    attached: AtomicBool,
    stopping: AtomicBool,
    /// Why it stopped, once it has.
    exit: Mutex<Option<String>>,
    /// Signalled (bit 0) when the VM stops.
    done: Slot,
    live_threads: AtomicUsize,
    /// Exit counters read just before the vCPUs were released (`vm stat` after the VM stopped).
    final_stats: Mutex<Option<Vec<[u64; COUNTERS]>>>,
}

struct Uart {
    dev: Pl011,
    irq: bool,
    /// Keyboard input waiting for room in the receive FIFO.
    input: alloc::collections::VecDeque<u8>,
}

struct Monitor {
    control: Slot,
    archive: &'static [u8],
    vms: Mutex<Vec<Arc<Vm>>>,
    next_id: AtomicUsize,
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
    let monitor: &'static Monitor =
        alloc::boxed::Box::leak(alloc::boxed::Box::new(Monitor { control, archive, vms: Mutex::new(Vec::new()), next_id: AtomicUsize::new(1) }));
    let Ok(conn) = sys::conn_create() else {
        println!("vmm: cannot create its connection");
        return 1;
    };
    if let Err(e) = ipc::register_service(namesrv_slot, "vmm", conn) {
        println!("vmm: cannot register with namesrv: {e}");
        return 1;
    }
    for _ in 1..SERVER_THREADS {
        let _ = thread::spawn_with(40, 0, move || ipc::serve(conn, |req| handle(monitor, req)));
    }
    ipc::serve(conn, |req| handle(monitor, req))
}

fn handle(m: &'static Monitor, req: &mut Request) -> Reply {
    if req.msg.label != vmm::COMMAND {
        return Reply::err(Error::NoSys);
    }
    let payload = req.payload().to_vec();
    let text = String::from_utf8_lossy(&payload).into_owned();
    let words: Vec<&str> = text.split('\0').collect();
    let (out, attached) = command(m, &words);
    let n = req.reply_payload(out.as_bytes());
    Reply::ok([attached, 0, 0, n])
}

/// Runs a `vm` command: the text to print, and the id of the VM the shell is now attached to
/// (0: none).
fn command(m: &'static Monitor, words: &[&str]) -> (String, u64) {
    let mut out = String::new();
    let mut attached = 0;
    match words {
        ["run", rest @ ..] => match run(m, rest) {
            Ok((text, id)) => {
                out = text;
                attached = id;
            }
            Err(e) => {
                let _ = writeln!(out, "vm run: {e}");
            }
        },
        ["input", id, text] => match find(m, id) {
            Some(vm) if vm.exit.lock().is_some() => {
                let _ = writeln!(out, "vm {} exited: {}", vm.id, vm.exit.lock().clone().unwrap_or_default());
            }
            Some(vm) => {
                let mut u = vm.uart.lock();
                u.input.extend(text.bytes());
                feed_uart(&vm, &mut u);
            }
            None => {
                let _ = writeln!(out, "vm: no VM {id}");
            }
        },
        ["detach", id] => {
            if let Some(vm) = find(m, id) {
                vm.foreground.store(false, Ordering::Release);
                vm.attached.store(false, Ordering::Release);
            }
        }
        ["list"] => list(m, &mut out),
        ["stat", id] => match find(m, id) {
            Some(vm) => stat(&vm, &mut out),
            None => {
                let _ = writeln!(out, "vm stat: no VM {id}");
            }
        },
        ["console", id] => match find(m, id) {
            Some(vm) => {
                out = String::from_utf8_lossy(&vm.output.lock()).into_owned();
                if vm.exit.lock().is_none() {
                    vm.foreground.store(true, Ordering::Release);
                    vm.attached.store(true, Ordering::Release);
                    let _ = writeln!(out, "\n[attached to vm {}: lines you type go to its console; ~. on a line of its own detaches]", vm.id);
                    attached = u64::from(vm.id);
                }
            }
            None => {
                let _ = writeln!(out, "vm console: no VM {id}");
            }
        },
        ["stop", id] => match find(m, id) {
            Some(vm) => {
                stop(&vm);
                let _ = writeln!(out, "vm {}: stopping", vm.id);
            }
            None => {
                let _ = writeln!(out, "vm stop: no VM {id}");
            }
        },
        _ => out.push_str("vm: usage: vm run <name|config> [options] | list | stat <id> | console <id> | stop <id>\n"),
    }
    (out, attached)
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

/// `vm run`: builds and starts a VM; with `--wait`, returns when it stops.
fn run(m: &'static Monitor, words: &[&str]) -> Result<(String, u64), String> {
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
    let vm = build(m, &config)?;
    let id = vm.id;
    m.vms.lock().push(vm.clone());
    match config.mode {
        RunMode::Background => Ok((alloc::format!("vm {id} started ({}, {} vcpus, {} MiB)\n", config.name, config.vcpus, config.mem_bytes >> 20), 0)),
        RunMode::Attach => {
            vm.foreground.store(true, Ordering::Release);
            vm.attached.store(true, Ordering::Release);
            flush_output(&vm, &mut Vec::new());
            Ok((alloc::format!("[vm {id} started and attached: lines you type go to its console; ~. on a line of its own detaches]\n"), u64::from(id)))
        }
        RunMode::Wait => {
            vm.foreground.store(true, Ordering::Release);
            flush_output(&vm, &mut Vec::new());
            loop {
                if let Some(reason) = vm.exit.lock().clone() {
                    return Ok((alloc::format!("vm {id} exited: {reason}\n"), 0));
                }
                let _ = sys::notif_wait(vm.done, 0);
            }
        }
    }
}

fn build(m: &'static Monitor, config: &VmConfig) -> Result<Arc<Vm>, String> {
    let kernel = file(m, &config.kernel)?;
    let initrd = match &config.initrd {
        Some(p) => Some(file(m, p)?),
        None => None,
    };
    let layout = image::plan(kernel, config.format, initrd.map_or(0, |i| i.len() as u64), ram(config.mem_bytes)).map_err(|e| e.to_string())?;
    let dtb = guest_dtb(&GuestDtb {
        vcpus: config.vcpus,
        mem_bytes: config.mem_bytes,
        bootargs: &config.append,
        initrd: layout.initrd,
        virtio_slots: &[],
    })
    .map_err(|e| e.to_string())?;
    let dtb_addr = layout.dtb_address(dtb.len()).map_err(|e| e.to_string())?;
    let sys_err = |what: &str, e: Error| alloc::format!("{what}: {e}");

    let vm = sys::vm_create(m.control, config.vcpus).map_err(|e| sys_err("cannot create the VM", e))?;
    let ram_pmo = sys::pmo_create(PmoKind::Anonymous, config.mem_bytes).map_err(|e| sys_err("no memory for guest RAM", e))?;
    sys::vm_map(vm, ram_pmo, RAM_BASE, config.mem_bytes, 0, map::READ | map::WRITE | map::EXEC).map_err(|e| sys_err("cannot map guest RAM", e))?;
    sys::vm_map(vm, 0, UART_BASE, UART_SIZE, 0, map::MMIO).map_err(|e| sys_err("cannot map the UART", e))?;
    write_guest(ram_pmo, layout.kernel.start, kernel)?;
    if let (Some(range), Some(bytes)) = (layout.initrd, initrd) {
        write_guest(ram_pmo, range.start, bytes)?;
    }
    write_guest(ram_pmo, dtb_addr, &dtb)?;
    let mut vcpus = Vec::new();
    for i in 0..config.vcpus {
        vcpus.push(sys::vcpu_create(vm, i).map_err(|e| sys_err("cannot create a vCPU", e))?);
    }
    sys::vcpu_init(vcpus[0], layout.entry, dtb_addr, VCPU_POWER_ON).map_err(|e| sys_err("cannot start vCPU 0", e))?;
    let uart_line = sys::vm_irq_line_create(vm, UART_INTID).map_err(|e| sys_err("cannot create the UART's interrupt line", e))?;
    let done = sys::notif_create().map_err(|e| sys_err("notification", e))?;
    let id = m.next_id.fetch_add(1, Ordering::Relaxed) as u32;
    let vm = Arc::new(Vm {
        id,
        name: config.name.clone(),
        vm,
        uart_line,
        ram: ram_pmo,
        vcpus: vcpus.clone(),
        mem_bytes: config.mem_bytes,
        uart: Mutex::new(Uart { dev: Pl011::new(), irq: false, input: alloc::collections::VecDeque::new() }),
        output: Mutex::new(Vec::new()),
        foreground: AtomicBool::new(false),
        attached: AtomicBool::new(false),
        stopping: AtomicBool::new(false),
        exit: Mutex::new(None),
        done,
        live_threads: AtomicUsize::new(vcpus.len()),
        final_stats: Mutex::new(None),
    });
    for index in 0..vcpus.len() {
        let v = vm.clone();
        if let Err(e) = thread::spawn_with(32, 0, move || vcpu_loop(&v, index)) {
            finish(&vm, &alloc::format!("cannot start the thread of vCPU {index}: {e}"));
            vm.live_threads.fetch_sub(1, Ordering::AcqRel);
        }
    }
    Ok(vm)
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
    let mut pending_output = Vec::new();
    loop {
        let exit = match sys::vcpu_run(slot, results) {
            Ok(e) => e,
            Err(e) => {
                finish(vm, &alloc::format!("vcpu {index}: vcpu_run failed: {e}"));
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
                    if info.write {
                        u.dev.write(ipa - UART_BASE, info.size, value as u32);
                    } else {
                        results[0] = u64::from(u.dev.read(ipa - UART_BASE, info.size));
                    }
                    pending_output.extend_from_slice(&u.dev.take_output());
                    feed_uart(vm, &mut u);
                    if vm.foreground.load(Ordering::Relaxed) && !u.input.is_empty() || pending_output.ends_with(b" ") {
                        // An interactive guest prints prompts without a newline.
                        flush_output(vm, &mut pending_output);
                    }
                }
                // Other monitor regions read as zero and ignore writes.
                if pending_output.contains(&b'\n') || pending_output.len() >= 256 {
                    flush_output(vm, &mut pending_output);
                }
            }
            Some(ExitReason::Hypercall | ExitReason::Smc) => {
                // Results replace x0..x3: keep x1..x3 as the guest had them.
                results = [d[0], d[1], d[2], d[3]];
                results[0] = if d[0] == HVC_KEEL_ECHO { d[1].wrapping_add(1) } else { u64::MAX };
            }
            Some(ExitReason::SystemOff) => {
                flush_output(vm, &mut pending_output);
                finish(vm, "system-off");
                break;
            }
            Some(ExitReason::SystemReset) => {
                flush_output(vm, &mut pending_output);
                finish(vm, "system-reset (reboot is not supported; the VM stopped)");
                break;
            }
            Some(ExitReason::Abort) => {
                flush_output(vm, &mut pending_output);
                finish(vm, &alloc::format!("vcpu {index}: unresolvable abort at IPA {:#x} (out of memory)", d[0]));
                break;
            }
            Some(ExitReason::Kicked) => {
                if vm.stopping.load(Ordering::Acquire) {
                    flush_output(vm, &mut pending_output);
                    break;
                }
            }
            None => {
                finish(vm, &alloc::format!("vcpu {index}: unknown exit {}", exit.reason));
                break;
            }
        }
    }
    if vm.live_threads.fetch_sub(1, Ordering::AcqRel) == 1 {
        release(vm);
    }
}

/// Appends guest console output to the VM's log, and to Keel's console in the foreground.
fn flush_output(vm: &Vm, pending: &mut Vec<u8>) {
    if pending.is_empty() {
        return;
    }
    if vm.foreground.load(Ordering::Acquire) {
        for chunk in pending.chunks(4096) {
            let _ = sys::debug_write(chunk);
        }
    }
    let mut out = vm.output.lock();
    out.extend_from_slice(pending);
    if out.len() > OUTPUT_KEEP {
        let cut = out.len() - OUTPUT_KEEP;
        out.drain(..cut);
    }
    pending.clear();
}

/// Records why the VM stopped (the first reason wins) and stops every vCPU.
fn finish(vm: &Vm, reason: &str) {
    {
        let mut exit = vm.exit.lock();
        if exit.is_some() {
            return;
        }
        *exit = Some(reason.to_string());
    }
    // In the foreground the shell prints the exit; otherwise the user learns it here.
    if !vm.foreground.load(Ordering::Acquire) || vm.attached.load(Ordering::Acquire) {
        println!("vm {} ({}) exited: {reason}", vm.id, vm.name);
    }
    stop(vm);
    let _ = sys::notif_signal(vm.done, 1);
}

fn stop(vm: &Vm) {
    vm.stopping.store(true, Ordering::Release);
    let first = {
        let mut exit = vm.exit.lock();
        let first = exit.is_none();
        if first {
            *exit = Some(String::from("stopped"));
        }
        first
    };
    if first {
        if !vm.foreground.load(Ordering::Acquire) || vm.attached.load(Ordering::Acquire) {
            println!("vm {} ({}) exited: stopped", vm.id, vm.name);
        }
        let _ = sys::notif_signal(vm.done, 1);
    }
    for &v in &vm.vcpus {
        let _ = sys::vcpu_kick(v);
    }
}

/// The last vCPU thread is gone: give the VM's capabilities back (the kernel then frees it).
fn release(vm: &Vm) {
    *vm.final_stats.lock() = Some(read_stats(vm));
    for &v in &vm.vcpus {
        let _ = sys::cap_delete(v);
    }
    let _ = sys::cap_delete(vm.uart_line);
    let _ = sys::cap_delete(vm.vm);
    let _ = sys::cap_delete(vm.ram);
}

fn list(m: &Monitor, out: &mut String) {
    let _ = writeln!(out, "{:<4} {:<16} {:>5} {:>8}  state", "id", "name", "vcpus", "mem MiB");
    for vm in m.vms.lock().iter() {
        let state = vm.exit.lock().clone().map_or(String::from("running"), |r| alloc::format!("exited: {r}"));
        let _ = writeln!(out, "{:<4} {:<16} {:>5} {:>8}  {state}", vm.id, vm.name, vm.vcpus.len(), vm.mem_bytes >> 20);
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
}
