//! The device tree a guest boots with: the board of [`crate::layout`] described the way QEMU's
//! `virt` machine (GICv3) describes itself, so Linux's generic drivers bind unchanged.
//!
//! It owns the translation from a validated [`GuestDtb`] to a DTB; it never reads guest memory
//! and never places the blob (see [`crate::image::Layout`] for where it goes). The description is
//! checked first (vCPU count, RAM size, command line, initrd range, virtio slots) and rejected
//! with a [`VmmError`], so a returned blob always describes a board the VMM can back.
//!
//! Conventions copied from QEMU 10's `virt,gic-version=3` DTB: two address and two size cells at
//! the root, `interrupt-parent` at the root naming the GIC, GIC interrupt specifiers
//! `<type number flags>` where the flags are 4 (level-high) for the UART, the timers and the
//! maintenance interrupt, and 1 (edge-rising) for virtio-mmio. QEMU writes no CPU mask into PPI
//! flags for a GICv3 (the mask is a GICv2 field), and neither do we. CPU `i` has `reg = <i>`:
//! the kernel must give vCPU `i` a VMPIDR_EL2 with Aff0 = `i` and the other affinity fields 0.
//! PSCI is reached with `hvc`, so the VMM (or the kernel for it) must handle PSCI 0.2+ calls.

use crate::error::VmmError;
use crate::fdt::FdtWriter;
use crate::layout::{self, GuestRange, MAX_VCPUS, PAGE_SIZE, RAM_BASE, RAM_MAX_SIZE};
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

/// Longest kernel command line: Linux arm64's `COMMAND_LINE_SIZE` (2048) less its NUL.
pub const MAX_BOOTARGS_LEN: usize = 2047;

/// Phandle of the GIC (the root's `interrupt-parent`).
pub const GIC_PHANDLE: u32 = 1;
/// Phandle of the fixed 24 MHz `apb-pclk` clock the PL011 names.
pub const APB_PCLK_PHANDLE: u32 = 2;
/// Frequency of `apb-pclk` (QEMU's value; the emulated UART ignores baud rates).
pub const APB_PCLK_HZ: u32 = 24_000_000;

/// GIC specifier types.
const GIC_SPI: u32 = 0;
const GIC_PPI: u32 = 1;
/// GIC specifier flags.
const IRQ_EDGE_RISING: u32 = 1;
const IRQ_LEVEL_HIGH: u32 = 4;

/// PSCI 0.2 function IDs QEMU lists (for PSCI 0.1 readers of the node).
const PSCI_CPU_SUSPEND: u32 = 0xc400_0001;
const PSCI_CPU_OFF: u32 = 0x8400_0002;
const PSCI_CPU_ON: u32 = 0xc400_0003;
const PSCI_MIGRATE: u32 = 0xc400_0005;

/// What a guest's device tree says; every field is checked by [`guest_dtb`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GuestDtb<'a> {
    /// Number of vCPUs, `1..=MAX_VCPUS`.
    pub vcpus: u32,
    /// Bytes of RAM at [`RAM_BASE`]: nonzero, a multiple of 4 KiB, at most 4 GiB.
    pub mem_bytes: u64,
    /// Kernel command line (`/chosen/bootargs`), at most [`MAX_BOOTARGS_LEN`] bytes.
    pub bootargs: &'a str,
    /// Where the initrd was loaded, if there is one; must lie inside RAM.
    pub initrd: Option<GuestRange>,
    /// Populated virtio-mmio slots (each `< VIRTIO_MMIO_SLOTS`, none twice), written in this
    /// order.
    pub virtio_slots: &'a [u32],
}

/// The guest's DTB, or why `guest` does not describe a board the VMM can back.
pub fn guest_dtb(guest: &GuestDtb<'_>) -> Result<Vec<u8>, VmmError> {
    check(guest)?;
    let mut fdt = FdtWriter::new();
    fdt.begin_node("")
        .prop_str("compatible", "linux,dummy-virt")
        .prop_str("model", "Keel virtual machine")
        .prop_u32("#address-cells", 2)
        .prop_u32("#size-cells", 2)
        .prop_u32("interrupt-parent", GIC_PHANDLE);

    fdt.begin_node("psci")
        .prop_strs("compatible", &["arm,psci-1.0", "arm,psci-0.2", "arm,psci"])
        .prop_str("method", "hvc")
        .prop_u32("cpu_suspend", PSCI_CPU_SUSPEND)
        .prop_u32("cpu_off", PSCI_CPU_OFF)
        .prop_u32("cpu_on", PSCI_CPU_ON)
        .prop_u32("migrate", PSCI_MIGRATE)
        .end_node();

    fdt.begin_node(&format!("memory@{RAM_BASE:x}"))
        .prop_str("device_type", "memory")
        .prop_cells("reg", &reg(RAM_BASE, guest.mem_bytes))
        .end_node();

    fdt.begin_node("cpus")
        .prop_u32("#address-cells", 1)
        .prop_u32("#size-cells", 0);
    for index in 0..guest.vcpus {
        fdt.begin_node(&format!("cpu@{index:x}"))
            .prop_str("device_type", "cpu")
            .prop_str("compatible", "arm,arm-v8")
            .prop_u32("reg", index)
            .prop_str("enable-method", "psci")
            .end_node();
    }
    fdt.end_node();

    let gicr = layout::gicr(guest.vcpus);
    let mut gic_reg = reg(layout::GICD_BASE, layout::GICD_SIZE).to_vec();
    gic_reg.extend_from_slice(&reg(gicr.start, gicr.len));
    fdt.begin_node(&format!("intc@{:x}", layout::GICD_BASE))
        .prop_str("compatible", "arm,gic-v3")
        .prop_u32("#interrupt-cells", 3)
        .prop_u32("#address-cells", 0) // no interrupt-map children; dtc wants it stated
        .prop_empty("interrupt-controller")
        .prop_cells("reg", &gic_reg)
        .prop_u32("#redistributor-regions", 1)
        .prop_cells(
            "interrupts",
            &[GIC_PPI, layout::MAINTENANCE_PPI, IRQ_LEVEL_HIGH],
        )
        .prop_u32("phandle", GIC_PHANDLE)
        .end_node();

    let timer_ppis = [
        layout::TIMER_SEC_PHYS_PPI,
        layout::TIMER_PHYS_PPI,
        layout::TIMER_VIRT_PPI,
        layout::TIMER_HYP_PPI,
    ];
    let timer_interrupts: Vec<u32> = timer_ppis
        .iter()
        .flat_map(|&ppi| [GIC_PPI, ppi, IRQ_LEVEL_HIGH])
        .collect();
    fdt.begin_node("timer")
        .prop_strs("compatible", &["arm,armv8-timer", "arm,armv7-timer"])
        .prop_cells("interrupts", &timer_interrupts)
        .prop_empty("always-on")
        .end_node();

    // The PMU (PMUv3, the guest's own, switched with its vCPU) and its overflow interrupt.
    fdt.begin_node("pmu")
        .prop_str("compatible", "arm,armv8-pmuv3")
        .prop_cells("interrupts", &[GIC_PPI, layout::PMU_PPI, IRQ_LEVEL_HIGH])
        .end_node();

    fdt.begin_node("apb-pclk")
        .prop_str("compatible", "fixed-clock")
        .prop_u32("#clock-cells", 0)
        .prop_u32("clock-frequency", APB_PCLK_HZ)
        .prop_str("clock-output-names", "clk24mhz")
        .prop_u32("phandle", APB_PCLK_PHANDLE)
        .end_node();

    let uart_path = uart_path();
    fdt.begin_node(&uart_path[1..])
        .prop_strs("compatible", &["arm,pl011", "arm,primecell"])
        .prop_cells("reg", &reg(layout::UART_BASE, layout::UART_SIZE))
        .prop_cells("interrupts", &[GIC_SPI, layout::UART_SPI, IRQ_LEVEL_HIGH])
        .prop_cells("clocks", &[APB_PCLK_PHANDLE, APB_PCLK_PHANDLE])
        .prop_strs("clock-names", &["uartclk", "apb_pclk"])
        .end_node();

    for &slot in guest.virtio_slots {
        let Some(window) = layout::virtio_mmio(slot) else {
            return Err(VmmError::VirtioSlot { slot });
        };
        let spi = layout::VIRTIO_MMIO_FIRST_SPI + slot;
        fdt.begin_node(&format!("virtio_mmio@{:x}", window.start))
            .prop_str("compatible", "virtio,mmio")
            .prop_cells("reg", &reg(window.start, window.len))
            .prop_cells("interrupts", &[GIC_SPI, spi, IRQ_EDGE_RISING])
            .prop_empty("dma-coherent")
            .end_node();
    }

    fdt.begin_node("aliases")
        .prop_str("serial0", &uart_path)
        .end_node();

    fdt.begin_node("chosen")
        .prop_str("bootargs", guest.bootargs)
        .prop_str("stdout-path", &uart_path);
    if let Some(initrd) = guest.initrd {
        fdt.prop_u64("linux,initrd-start", initrd.start)
            .prop_u64("linux,initrd-end", initrd.start + initrd.len);
    }
    fdt.end_node();

    fdt.end_node();
    Ok(fdt.finish()?)
}

/// Rejects a description the VMM cannot back, before anything is written.
fn check(guest: &GuestDtb<'_>) -> Result<(), VmmError> {
    if !(1..=MAX_VCPUS).contains(&guest.vcpus) {
        return Err(VmmError::VcpuCount {
            count: u64::from(guest.vcpus),
        });
    }
    let bytes = guest.mem_bytes;
    if bytes == 0 || !bytes.is_multiple_of(PAGE_SIZE) || bytes > RAM_MAX_SIZE {
        return Err(VmmError::GuestRamSize { bytes });
    }
    if guest.bootargs.len() > MAX_BOOTARGS_LEN {
        return Err(VmmError::BootargsTooLong {
            len: guest.bootargs.len(),
        });
    }
    if guest.bootargs.contains('\0') {
        return Err(VmmError::BootargsNul);
    }
    if let Some(initrd) = guest.initrd
        && (initrd.len == 0 || !initrd.is_inside(&layout::ram(bytes)))
    {
        return Err(VmmError::InitrdOutsideRam {
            start: initrd.start,
            len: initrd.len,
        });
    }
    for (index, &slot) in guest.virtio_slots.iter().enumerate() {
        let repeated = guest.virtio_slots[..index].contains(&slot);
        if slot >= layout::VIRTIO_MMIO_SLOTS || repeated {
            return Err(VmmError::VirtioSlot { slot });
        }
    }
    Ok(())
}

/// A `reg` entry in two address and two size cells.
fn reg(base: u64, size: u64) -> [u32; 4] {
    [
        (base >> 32) as u32,
        base as u32,
        (size >> 32) as u32,
        size as u32,
    ]
}

/// The UART node's path, `/pl011@9000000` (the `stdout-path` and `serial0` alias).
fn uart_path() -> String {
    format!("/pl011@{:x}", layout::UART_BASE)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guest() -> GuestDtb<'static> {
        GuestDtb {
            vcpus: 2,
            mem_bytes: 256 << 20,
            bootargs: "console=ttyAMA0",
            initrd: None,
            virtio_slots: &[],
        }
    }

    #[test]
    fn rejects_bad_vcpu_counts() {
        for vcpus in [0, MAX_VCPUS + 1, u32::MAX] {
            let err = guest_dtb(&GuestDtb { vcpus, ..guest() });
            assert_eq!(
                err,
                Err(VmmError::VcpuCount {
                    count: vcpus.into()
                })
            );
        }
        assert!(
            guest_dtb(&GuestDtb {
                vcpus: MAX_VCPUS,
                ..guest()
            })
            .is_ok()
        );
    }

    #[test]
    fn rejects_bad_ram_sizes() {
        for bytes in [0, 0x1001, RAM_MAX_SIZE + PAGE_SIZE, u64::MAX] {
            let err = guest_dtb(&GuestDtb {
                mem_bytes: bytes,
                ..guest()
            });
            assert_eq!(err, Err(VmmError::GuestRamSize { bytes }));
        }
        assert!(
            guest_dtb(&GuestDtb {
                mem_bytes: RAM_MAX_SIZE,
                ..guest()
            })
            .is_ok()
        );
        assert!(
            guest_dtb(&GuestDtb {
                mem_bytes: PAGE_SIZE,
                ..guest()
            })
            .is_ok()
        );
    }

    #[test]
    fn rejects_long_or_nul_bootargs() {
        let long = "x".repeat(MAX_BOOTARGS_LEN + 1);
        let err = guest_dtb(&GuestDtb {
            bootargs: &long,
            ..guest()
        });
        assert_eq!(
            err,
            Err(VmmError::BootargsTooLong {
                len: MAX_BOOTARGS_LEN + 1
            })
        );
        let longest = "x".repeat(MAX_BOOTARGS_LEN);
        assert!(
            guest_dtb(&GuestDtb {
                bootargs: &longest,
                ..guest()
            })
            .is_ok()
        );
        let err = guest_dtb(&GuestDtb {
            bootargs: "a\0b",
            ..guest()
        });
        assert_eq!(err, Err(VmmError::BootargsNul));
    }

    #[test]
    fn rejects_initrd_outside_ram() {
        let ram_end = RAM_BASE + (256 << 20);
        for (start, len) in [
            (RAM_BASE - 1, 2),
            (ram_end - 1, 2),
            (RAM_BASE, 0),
            (u64::MAX, 2),
        ] {
            let initrd = Some(GuestRange { start, len });
            let err = guest_dtb(&GuestDtb { initrd, ..guest() });
            assert_eq!(err, Err(VmmError::InitrdOutsideRam { start, len }));
        }
    }

    #[test]
    fn rejects_bad_or_repeated_virtio_slots() {
        let err = guest_dtb(&GuestDtb {
            virtio_slots: &[0, 32],
            ..guest()
        });
        assert_eq!(err, Err(VmmError::VirtioSlot { slot: 32 }));
        let err = guest_dtb(&GuestDtb {
            virtio_slots: &[3, 1, 3],
            ..guest()
        });
        assert_eq!(err, Err(VmmError::VirtioSlot { slot: 3 }));
    }
}
