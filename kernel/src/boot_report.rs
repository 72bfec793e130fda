//! The boot report: what Keel found and how long boot took, ending with the one line scripts
//! wait for: `keel: ready: <N> cpus online, <M> MiB free`.
//!
//! Pure formatting over facts gathered by the boot path, so it is host-tested.

use core::fmt;
use keel_platform::dtb::{Machine, PsciConduit, Region};

const MIB: u64 = 1 << 20;
const FRAME: u64 = 4096;

/// Everything the report states.
pub struct BootFacts<'a> {
    pub machine: &'a Machine<'a>,
    pub kimage: Region,
    pub total_frames: usize,
    pub free_frames: usize,
    pub heap_used: usize,
    pub psci_version: (u16, u16),
    pub gic_intids: u32,
    pub tick_hz: u64,
    /// Counter when the kernel's Rust code started, and when the report was made.
    pub entry_ticks: u64,
    pub ready_ticks: u64,
    pub online_cpus: usize,
}

/// Writes the report, one line per call of `out`.
pub fn write(f: &BootFacts, mut out: impl FnMut(fmt::Arguments)) {
    let m = f.machine;
    let ram: u64 = m.memory.iter().map(|r| r.size).sum();
    out(format_args!("keel: Keel {} (EL2, VHE) on \"{}\"\n", env!("CARGO_PKG_VERSION"), m.model));
    out(format_args!("keel: cpus: {} online of {} in the device tree\n", f.online_cpus, m.cpus.len()));
    out(format_args!(
        "keel: memory: {} MiB RAM in {} bank(s); kernel image {} KiB at {:#x}; heap {} KiB used\n",
        ram / MIB,
        m.memory.len(),
        f.kimage.size / 1024,
        f.kimage.base,
        f.heap_used / 1024
    ));
    out(format_args!(
        "keel: frames: {} total, {} free ({} MiB)\n",
        f.total_frames,
        f.free_frames,
        f.free_frames as u64 * FRAME / MIB
    ));
    let psci = match m.psci {
        Some(PsciConduit::Smc) => "smc",
        Some(PsciConduit::Hvc) => "hvc",
        None => "none",
    };
    out(format_args!(
        "keel: devices: pl011 @ {:#x} (intid {}), GICv3 distributor @ {:#x} ({} intids), {} redistributor region(s) @ {:#x}, \
         EL2 timer intid {} at {} Hz tick, PSCI {} v{}.{}\n",
        m.uart.base,
        m.uart.intid,
        m.gic.dist.base,
        f.gic_intids,
        m.gic.redists.len(),
        m.gic.redists.first().map_or(0, |r| r.base),
        m.timer.hyp_phys,
        f.tick_hz,
        psci,
        f.psci_version.0,
        f.psci_version.1
    ));
    match m.smmu {
        Some(s) => out(format_args!("keel: devices: SMMUv3 @ {:#x}\n", s.region.base)),
        None => out(format_args!("keel: devices: no SMMUv3\n")),
    }
    match m.pcie_ecam {
        Some(e) => out(format_args!("keel: devices: PCIe ECAM @ {:#x} ({} MiB)\n", e.base, e.size / MIB)),
        None => out(format_args!("keel: devices: no PCIe host bridge\n")),
    }
    out(format_args!("keel: devices: {} virtio-mmio slot(s)\n", m.virtio_mmio.len()));
    match m.initrd {
        Some(r) => out(format_args!("keel: initrd: {} KiB @ {:#x}\n", r.size / 1024, r.base)),
        None => out(format_args!("keel: initrd: none\n")),
    }
    out(format_args!(
        "keel: boot took {} ticks from power-on, {} of them in the kernel\n",
        f.ready_ticks,
        f.ready_ticks.saturating_sub(f.entry_ticks)
    ));
    out(format_args!(
        "keel: ready: {} cpus online, {} MiB free\n",
        f.online_cpus,
        f.free_frames as u64 * FRAME / MIB
    ));
}

#[cfg(test)]
mod tests {
    use super::*;

    const DTB: &[u8] = include_bytes!("../../platform/tests/fixtures/qemu-virt-smp4.dtb");

    #[test]
    fn report_states_cpus_memory_devices_and_ends_with_the_ready_line() {
        let machine = Machine::from_dtb(DTB).unwrap();
        let facts = BootFacts {
            machine: &machine,
            kimage: Region { base: 0x4020_0000, size: 4 << 20 },
            total_frames: 524_000,
            free_frames: 512 * 1000,
            heap_used: 8192,
            psci_version: (1, 1),
            gic_intids: 288,
            tick_hz: 100,
            entry_ticks: 1_000,
            ready_ticks: 51_000,
            online_cpus: 4,
        };
        let mut lines = Vec::new();
        write(&facts, |args| lines.push(args.to_string()));
        let text = lines.concat();
        assert!(text.contains("keel: cpus: 4 online of 4 in the device tree\n"), "{text}");
        assert!(text.contains("2048 MiB RAM in 1 bank(s)"), "{text}");
        assert!(text.contains("pl011 @ 0x9000000 (intid 33)"), "{text}");
        assert!(text.contains("EL2 timer intid 26"), "{text}");
        assert!(text.contains("PSCI smc v1.1"), "{text}");
        assert!(text.contains("SMMUv3 @ 0x9050000\n"), "{text}");
        assert!(text.contains("boot took 51000 ticks from power-on, 50000 of them in the kernel"), "{text}");
        assert_eq!(lines.last().unwrap(), "keel: ready: 4 cpus online, 2000 MiB free\n");
    }
}
