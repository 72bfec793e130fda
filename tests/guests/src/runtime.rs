//! The guest's life: the primary's Rust entry (find the DTB facts and the scenario, run it,
//! report PASS/FAIL, SYSTEM_OFF), per-CPU setup shared with secondaries, and the panic handler.
//! Every way out of a scenario ends in PSCI SYSTEM_OFF, after a `guest: <scenario>: PASS` or
//! `guest: <scenario>: FAIL <why>` line.

use crate::dtb::{self, GuestInfo, Region};
use crate::machine::{MAX_CPUS, RAM_BASE};
use crate::scenario::{self, Outcome};
use crate::{arch, cmdline, psci, timer};
use core::fmt;
use core::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};

/// Largest DTB the guest accepts (the arm64 boot protocol's limit).
const MAX_DTB_SIZE: usize = 2 * 1024 * 1024;

/// What a scenario knows about the machine it runs on.
pub struct Guest {
    /// `guest.plain` was given: plain QEMU, no Keel, no VM monitor.
    pub plain: bool,
    /// `guest.ops=<n>`, if given.
    pub operations: Option<u64>,
    /// `guest.heavy`: a scenario that can also runs with the FP/SVE and PMU state live.
    pub heavy: bool,
    /// `guest.net`: the virtio scenarios drive a network device's transmit queue instead of
    /// an entropy device.
    pub net: bool,
    /// The RAM region from the DTB.
    pub ram: Region,
    /// How many CPU nodes the DTB lists.
    pub listed_cpus: usize,
    mpidrs: [u64; MAX_CPUS],
    usable: usize,
}

impl Guest {
    /// MPIDRs of the CPUs the guest can run on (Aff1..3 = 0, Aff0 < MAX_CPUS), in DTB order.
    pub fn cpus(&self) -> &[u64] {
        &self.mpidrs[..self.usable]
    }

    /// The other usable CPUs: (index = Aff0, MPIDR).
    pub fn others(&self) -> impl Iterator<Item = (usize, u64)> + '_ {
        let me = arch::cpu_index();
        self.cpus()
            .iter()
            .map(|&m| (cpu_index_of(m), m))
            .filter(move |&(i, _)| i != me)
    }
}

/// The per-CPU index (Aff0) of `mpidr`.
pub fn cpu_index_of(mpidr: u64) -> usize {
    (mpidr & 0xff) as usize
}

fn usable(mpidr: u64) -> bool {
    mpidr & 0xff_00ff_ff00 == 0 && cpu_index_of(mpidr) < MAX_CPUS
}

/// The scenario being run (index into `scenario::ALL`), for FAIL lines from traps and panics.
static CURRENT: AtomicUsize = AtomicUsize::new(usize::MAX);
static PANICKED: AtomicBool = AtomicBool::new(false);

fn current_name() -> &'static str {
    scenario::ALL
        .get(CURRENT.load(SeqCst))
        .map_or("boot", |s| s.name)
}

/// Per-CPU setup every CPU runs first: the WFE event stream, SErrors unmasked.
pub fn cpu_init() {
    timer::event_stream(true);
    arch::unmask_serror();
}

/// The DTB the loader passed in x0, as a slice bounded by its header.
fn dtb_blob(pa: u64) -> Result<&'static [u8], fmt::Arguments<'static>> {
    if pa == 0 || pa % 8 != 0 {
        return Err(format_args!(
            "x0 at entry is not an 8-byte aligned DTB address"
        ));
    }
    // SAFETY: the arm64 boot protocol puts a DTB at x0 in RAM, which nothing in the guest writes;
    // the header's first 8 bytes are read first and bound the rest.
    let header = unsafe { core::slice::from_raw_parts(pa as *const u8, 8) };
    let size = dtb::total_size(header).map_err(|_| format_args!("no DTB magic at x0"))?;
    if size > MAX_DTB_SIZE {
        return Err(format_args!("DTB totalsize is over 2 MiB"));
    }
    // SAFETY: as above, `size` bytes from the header, capped at 2 MiB.
    Ok(unsafe { core::slice::from_raw_parts(pa as *const u8, size) })
}

/// Rust entry of the primary CPU (from `_start`, x0 = DTB physical address).
pub extern "C" fn primary_main(dtb_pa: u64, _index: usize) -> ! {
    let el = arch::current_el();
    if el != 1 {
        // The EL1 vectors and PSCI-over-HVC do not apply; the UART still works.
        say!(
            "boot: FAIL entered at EL{el}: the test guest must run at EL1 (inside a VM, or QEMU without virtualization=on)"
        );
        loop {
            arch::wfe();
        }
    }
    cpu_init();
    let blob = match dtb_blob(dtb_pa) {
        Ok(blob) => blob,
        Err(why) => fail_and_power_off(format_args!("DTB at {dtb_pa:#x}: {why}")),
    };
    let info: GuestInfo<'_> = match dtb::parse(blob) {
        Ok(info) => info,
        Err(e) => fail_and_power_off(format_args!("DTB at {dtb_pa:#x}: {e}")),
    };
    let Some(ram) = info.ram else {
        fail_and_power_off(format_args!("the DTB describes no memory"));
    };
    if !(ram.base <= RAM_BASE && RAM_BASE < ram.end()) {
        fail_and_power_off(format_args!(
            "RAM {:#x}..{:#x} from the DTB does not hold the guest's load address {RAM_BASE:#x} + 0x80000",
            ram.base,
            ram.end()
        ));
    }
    let mut guest = Guest {
        plain: cmdline::has_flag(info.bootargs, cmdline::PLAIN),
        heavy: cmdline::has_flag(info.bootargs, "guest.heavy"),
        net: cmdline::has_flag(info.bootargs, "guest.net"),
        operations: cmdline::number(info.bootargs, cmdline::OPS),
        ram,
        listed_cpus: info.cpu_count,
        mpidrs: [0; MAX_CPUS],
        usable: 0,
    };
    for &mpidr in info.usable_cpus().iter().filter(|&&m| usable(m)) {
        guest.mpidrs[guest.usable] = mpidr;
        guest.usable += 1;
    }

    let Some(name) = cmdline::scenario(info.bootargs) else {
        say!(
            "no guest=<scenario> in bootargs {:?}; scenarios: {}",
            info.bootargs,
            scenario::Names
        );
        fail_and_power_off(format_args!("no scenario given"));
    };
    let Some(index) = scenario::ALL.iter().position(|s| s.name == name) else {
        say!("unknown scenario {name:?}; scenarios: {}", scenario::Names);
        say!("{name}: FAIL unknown scenario");
        psci::system_off();
    };
    CURRENT.store(index, SeqCst);
    say!(
        "{name}: starting on cpu {} of {} ({} listed), {} MiB RAM at {:#x}, counter {} Hz{}",
        arch::cpu_index(),
        guest.usable,
        guest.listed_cpus,
        ram.size >> 20,
        ram.base,
        timer::frequency(),
        if guest.plain { ", plain QEMU mode" } else { "" }
    );
    let outcome = (scenario::ALL[index].run)(&guest);
    report(name, outcome)
}

fn report(name: &str, outcome: Outcome) -> ! {
    match outcome {
        Ok(note) if note.is_empty() => say!("{name}: PASS"),
        Ok(note) => say!("{name}: PASS {note}"),
        Err(why) => say!("{name}: FAIL {why}"),
    }
    psci::system_off()
}

/// Prints `guest: <scenario>: FAIL <why>` and switches the machine off.
pub fn fail_and_power_off(why: fmt::Arguments<'_>) -> ! {
    say!("{}: FAIL {why}", current_name());
    psci::system_off()
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    if PANICKED.load(SeqCst) {
        psci::system_off();
    }
    PANICKED.store(true, SeqCst);
    say!("panic on cpu {}: {}", arch::cpu_index(), info);
    fail_and_power_off(format_args!("panic"))
}
