//! `kernel_main`: the boot CPU's path from boot.S to a running machine.
//!
//! Order matters: the DTB is read through the bootstrap identity map, the heap and frame allocator
//! are filled, the final kernel tables are built and switched to, and only then is the UART known
//! and mapped, so nothing can be printed before that point (a DTB that cannot be parsed leaves the
//! CPU parked). Then the GIC, the tick, the secondaries, the boot report and the scenario.

use super::{console, cpu, gic, kspace, psci, smp, timer};
use crate::boot_report::{self, BootFacts};
use crate::cmdline::CommandLine;
use crate::mm::frame::{FRAMES, free_ranges};
use crate::mm::layout::phys_to_virt;
use crate::percpu;
use aarch64_cpu::asm::barrier;
use aarch64_cpu::registers::{VBAR_EL1, Writeable};
use keel_platform::bounded::BoundedVec;
use keel_platform::dtb::{Machine, PsciConduit, Region, dtb_total_size};

/// boot.S's `boot_status` values.
const BOOT_OK: u64 = 0;
const BOOT_ENTERED_EL1: u64 = 1;
const BOOT_NO_VHE: u64 = 2;

/// How long the boot CPU waits for a secondary, in seconds of the counter.
const CPU_ON_TIMEOUT_SECS: u64 = 2;

/// Makes a slice of the DTB at physical address `pa` as seen through `offset` (0 for the identity map).
fn dtb_slice(pa: u64, offset: u64) -> Option<&'static [u8]> {
    let va = (pa + offset) as *const u8;
    // SAFETY: boot.S identity-maps the GiB holding the DTB and the direct map covers all RAM; the
    // header is 40 bytes, read before trusting its size.
    let header = unsafe { core::slice::from_raw_parts(va, 40) };
    let size = dtb_total_size(header).ok()?;
    // SAFETY: the loader placed `size` bytes of DTB at `pa` (its own header says so) and the
    // memory stays reserved (excluded from the frame allocator) for the kernel's life.
    Some(unsafe { core::slice::from_raw_parts(va, size) })
}

#[unsafe(no_mangle)]
extern "C" fn kernel_main(dtb_pa: u64, boot_status: u64, kimage_pa: u64) -> ! {
    let entry_ticks = cpu::counter();
    VBAR_EL1.set(kspace::vectors());
    barrier::isb(barrier::SY);
    kspace::set_kimage_pa(kimage_pa);
    if boot_status == BOOT_OK {
        cpu::mark_el2();
        cpu::set_cpu_id(0);
    }

    let Some(early_blob) = dtb_slice(dtb_pa, 0) else { cpu::halt() };
    let Ok(early) = Machine::from_dtb(early_blob) else { cpu::halt() };
    kspace::init_heap();

    let mut reserved: BoundedVec<Region, 24> = BoundedVec::new();
    let _ = reserved.push(kspace::kimage_region());
    let _ = reserved.push(Region { base: dtb_pa, size: early.dtb_size as u64 });
    if let Some(initrd) = early.initrd {
        let _ = reserved.push(initrd);
    }
    for r in early.reserved.iter() {
        let _ = reserved.push(*r);
    }
    let free = free_ranges(&early.memory, &reserved);
    if kspace::build(&early.memory).is_err() {
        cpu::halt();
    }
    let uart = early.uart;
    kspace::activate();
    let Ok(uart_va) = kspace::ioremap(uart.base, uart.size) else { cpu::halt() };

    // From here on the DTB is read through the direct map and the console works.
    let Some(blob) = dtb_slice(dtb_pa, phys_to_virt(0)) else { cpu::halt() };
    let machine = match Machine::from_dtb(blob) {
        Ok(m) => m,
        Err(_) => cpu::halt(),
    };
    let cmdline = CommandLine::new(machine.bootargs);
    let level = cmdline.log_level(log::LevelFilter::Info);
    console::init(uart_va, level.unwrap_or(log::LevelFilter::Info));
    if let Err(word) = level {
        log::warn!("loglevel={word} is not a level (off, error, warn, info, debug, trace); logging at info");
    }
    psci::set_conduit(machine.psci.unwrap_or(PsciConduit::Smc));

    if boot_status != BOOT_OK {
        refuse(boot_status);
    }

    match free {
        Ok(ranges) => {
            let mut frames = FRAMES.lock();
            for r in ranges.iter() {
                frames.add_region(*r);
            }
        }
        Err(e) => panic!("memory map too fragmented to track ({e:?}); Keel cannot manage this machine's RAM"),
    }
    // The heap holds every kernel object and one entry per demand-paged page: give it 1/32 of RAM
    // (at least 16 MiB) beyond the boot arena.
    let total = FRAMES.lock().total_frames();
    let heap_frames = (total / 32).max(4096).min(total / 4).next_power_of_two() / 2;
    if kspace::grow_heap(heap_frames) == 0 {
        log::warn!("could not grow the kernel heap by {heap_frames} frames; staying at the boot arena");
    }

    let mpidr = cpu::mpidr();
    let Ok(gicd_va) = kspace::ioremap(machine.gic.dist.base, machine.gic.dist.size) else {
        panic!("cannot map the GIC distributor at {:#x}", machine.gic.dist.base)
    };
    let mut windows = alloc::vec::Vec::new();
    for r in machine.gic.redists.iter() {
        match kspace::ioremap(r.base, r.size) {
            Ok(va) => windows.push((va, r.size as usize)),
            Err(e) => panic!("cannot map the GIC redistributors at {:#x}: {e:?}", r.base),
        }
    }
    let windows: &'static [(usize, usize)] = windows.leak();
    gic::init_distributor(gicd_va);
    if !gic::init_cpu(0, mpidr, windows) {
        panic!("no GIC redistributor matches the boot cpu (mpidr {mpidr:#x}); the DTB and the GIC disagree");
    }
    smp::set_redistributor_windows(windows);
    super::virt::init_cpu(0);
    percpu::mark_online(0, mpidr);
    timer::start_tick(0, machine.timer.hyp_phys);
    cpu::irq_enable();

    let timeout = CPU_ON_TIMEOUT_SECS * cpu::counter_freq();
    smp::start_secondaries(&machine.cpus, timeout);
    kspace::disable_identity_map();

    let (psci_major, psci_minor) = psci::version();
    let ready_ticks = cpu::counter();
    let (total_frames, free_frames) = {
        let frames = FRAMES.lock();
        (frames.total_frames(), frames.free_frames())
    };
    let facts = BootFacts {
        machine: &machine,
        kimage: kspace::kimage_region(),
        total_frames,
        free_frames,
        heap_used: kspace::heap_used(),
        psci_version: (psci_major, psci_minor),
        gic_intids: gic::num_intids(),
        tick_hz: timer::HZ,
        entry_ticks,
        ready_ticks,
        online_cpus: percpu::online_count(),
    };
    boot_report::write(&facts, console::print);
    if crate::scenario::is_kernel_scenario(&cmdline) {
        crate::scenario::run(&cmdline, &machine)
    }
    start_user_space(&machine, &cmdline)
}

/// Creates the first process (`bin/init` from the initrd) and runs user threads on every CPU.
fn start_user_space(machine: &Machine, cmdline: &CommandLine) -> ! {
    use crate::cap::Rights;
    // From here on this CPU takes the kernel lock, which interrupt handlers take too: it must
    // never hold it with IRQs unmasked (an IRQ would wait for itself).
    cpu::irq_save();
    use crate::kernel::Kernel;
    use crate::object::ObjRef;
    use crate::object::pmo::Pmo;
    use keel_platform::gicv3::Trigger;

    let Some(initrd) = machine.initrd else {
        console::print(format_args!("keel: no initrd, so no user space to start; powering off\n"));
        psci::system_off()
    };
    let bytes = kspace::initrd_bytes(initrd);
    let init_elf = match keel_formats::cpio::Archive::new(bytes).and_then(|a| a.find("bin/init")) {
        Ok(Some(entry)) => entry.data,
        Ok(None) => {
            console::print(format_args!("keel: the initrd has no bin/init; powering off\n"));
            psci::system_off()
        }
        Err(e) => {
            console::print(format_args!("keel: the initrd is not a valid newc cpio archive ({e}); powering off\n"));
            psci::system_off()
        }
    };

    let mut k = Kernel::new(percpu::online_count());
    k.set_asid_limit(kspace::asid_count());
    k.ram = machine.memory.iter().map(|r| (r.base, r.size)).collect();
    gic::register_device_irq(machine.uart.intid, Trigger::Level);
    k.claimable_irqs.push(machine.uart.intid);
    for v in machine.virtio_mmio.iter() {
        gic::register_device_irq(v.intid, Trigger::Edge);
        k.claimable_irqs.push(v.intid);
    }
    let initrd_id = k.new_id();
    let initrd_pmo = Pmo::borrowed_ram(initrd.base & !0xfff, (initrd.size + (initrd.base & 0xfff)).next_multiple_of(4096), k.root_quota);
    k.pmos.insert(initrd_id, initrd_pmo);

    // Devices and where the archive starts inside the (page-aligned) initrd object.
    let uart_arg = alloc::format!("uart={:#x}:{:#x}:{}", machine.uart.base, machine.uart.size, machine.uart.intid);
    let initrd_arg = alloc::format!("initrd={:#x}:{:#x}", initrd.base & 0xfff, initrd.size);
    let mut args: alloc::vec::Vec<&str> = alloc::vec!["init", uart_arg.as_str(), initrd_arg.as_str()];
    args.extend(cmdline.words());
    let caps = [
        (ObjRef::Control, Rights::ALL, "control"),
        // EXEC: init maps programs' code straight from the initrd (rt::process::Source).
        (ObjRef::Pmo(initrd_id), Rights::READ.union(Rights::MAP).union(Rights::EXEC).union(Rights::GRANT), "initrd"),
        // The root of the quota tree (the kernel half of cgroups): init hands it to resmgr.
        (ObjRef::Quota(k.root_quota), Rights::ALL, "quota"),
    ];
    if let Err(e) = k.spawn_elf("init", init_elf, &args, &caps) {
        console::print(format_args!("keel: cannot start bin/init: {e}; powering off\n"));
        psci::system_off()
    }
    let Some(empty) = FRAMES.lock().alloc(1) else { panic!("no memory left for the empty user page table") };
    crate::hal::zero_frame(empty);
    log::info!("starting user space: init is process 1 of {} cpus", percpu::online_count());
    super::user::set_stack_top(0, kspace::boot_stack_top());
    super::user::start(k, empty);
    super::user::enter_user_space(0)
}

/// Keel runs only at EL2 with VHE: say why not and power off.
fn refuse(boot_status: u64) -> ! {
    let reason = match boot_status {
        BOOT_ENTERED_EL1 => {
            "entered at EL1, but Keel is a hypervisor and must start at EL2 \
             (QEMU: -machine virt,virtualization=on)"
        }
        BOOT_NO_VHE => {
            "this CPU has no VHE (FEAT_VHE, Armv8.1), which Keel needs at EL2 \
             (QEMU: -cpu max, cortex-a76 or neoverse-n1)"
        }
        _ => "unknown boot status from boot.S",
    };
    console::print(format_args!("keel: cannot run: {reason} (now at EL{}); powering off\n", cpu::current_el()));
    psci::system_off()
}
