//! The guest DTB read back by the two independent readers the guest's DTB must satisfy: `dtc`
//! (the reference implementation; a missing `dtc` fails the test unless `KEEL_ALLOW_SKIP=1`) and Keel's own
//! bounds-checked parser in `keel-platform`.

use keel_platform::dtb::{Machine, PsciConduit, Region};
use keel_vmm::dtb::{GuestDtb, guest_dtb};
use keel_vmm::image::{KernelFormat, plan};
use keel_vmm::layout::{self, GuestRange};
use std::io::Write;
use std::process::{Command, Stdio};

const MIB: u64 = 1 << 20;

/// A tool a cross-check needs is not installed: the test fails (scripts/deps.sh installs every
/// tool the tests use, so in CI nothing skips), unless `KEEL_ALLOW_SKIP=1`, when it prints
/// `skipped: <why>` on the terminal (past the test harness's output capture) and the caller
/// returns.
fn missing_tool(why: &str) {
    if std::env::var("KEEL_ALLOW_SKIP").as_deref() == Ok("1") {
        let _ = writeln!(std::io::stderr(), "skipped: {why} (KEEL_ALLOW_SKIP=1)");
    } else {
        panic!("{why}: run scripts/deps.sh (make deps), or set KEEL_ALLOW_SKIP=1 to skip this check");
    }
}

/// The DTS `dtc` decompiles `blob` to, or `None` when `dtc` is not installed and skipping is
/// allowed ([`missing_tool`]).
fn dtc_decompile(blob: &[u8]) -> Option<String> {
    let child = Command::new("dtc")
        .args(["-I", "dtb", "-O", "dts", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(child) => child,
        Err(e) => {
            missing_tool(&format!("dtc (device-tree-compiler) cannot be run ({e}), so the guest DTB is not checked by it"));
            return None;
        }
    };
    child
        .stdin
        .take()
        .expect("piped stdin")
        .write_all(blob)
        .expect("write to dtc");
    let output = child.wait_with_output().expect("wait for dtc");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "dtc rejected the blob: {stderr}");
    assert!(stderr.trim().is_empty(), "dtc warned: {stderr}");
    Some(String::from_utf8(output.stdout).expect("dtc prints UTF-8"))
}

fn initrd_guest() -> (Vec<u8>, GuestRange) {
    let initrd = GuestRange {
        start: layout::RAM_BASE + 100 * MIB,
        len: 3 * MIB + 17,
    };
    let guest = GuestDtb {
        vcpus: 4,
        mem_bytes: 512 * MIB,
        bootargs: "console=ttyAMA0 earlycon rdinit=/bin/sh",
        initrd: Some(initrd),
        virtio_slots: &[0, 5],
    };
    (guest_dtb(&guest).expect("valid guest"), initrd)
}

#[test]
fn keel_platform_reads_back_the_board() {
    let (blob, initrd) = initrd_guest();
    let machine = Machine::from_dtb(&blob).expect("keel-platform parses the guest DTB");

    assert_eq!(machine.dtb_size, blob.len());
    assert_eq!(machine.bootargs, "console=ttyAMA0 earlycon rdinit=/bin/sh");
    assert_eq!(
        machine.memory.as_slice(),
        [Region {
            base: 0x4000_0000,
            size: 512 * MIB
        }]
    );
    assert!(machine.reserved.is_empty());
    let mpidrs: Vec<u64> = machine.cpus.iter().map(|cpu| cpu.mpidr).collect();
    assert_eq!(mpidrs, [0, 1, 2, 3]);

    assert_eq!(
        machine.gic.dist,
        Region {
            base: 0x0800_0000,
            size: 0x1_0000
        }
    );
    assert_eq!(
        machine.gic.redists.as_slice(),
        [Region {
            base: 0x080A_0000,
            size: 4 * 0x2_0000
        }]
    );
    assert_eq!(machine.gic.maintenance_intid, Some(25));
    let t = machine.timer;
    assert_eq!(
        (t.sec_phys, t.phys, t.virt, t.hyp_phys, t.hyp_virt),
        (29, 30, 27, 26, None)
    );

    assert_eq!(
        (machine.uart.base, machine.uart.size, machine.uart.intid),
        (0x0900_0000, 0x1000, 33)
    );
    assert_eq!(machine.psci, Some(PsciConduit::Hvc));
    assert_eq!(
        machine.initrd,
        Some(Region {
            base: initrd.start,
            size: initrd.len
        })
    );

    let virtio: Vec<(u64, u32)> = machine
        .virtio_mmio
        .iter()
        .map(|v| (v.region.base, v.intid))
        .collect();
    assert_eq!(virtio, [(0x0A00_0000, 48), (0x0A00_0A00, 53)]);
    assert!(machine.virtio_mmio.iter().all(|v| v.region.size == 0x200));
    assert_eq!(machine.smmu, None);
    assert_eq!(machine.pcie_ecam, None);
}

#[test]
fn dtc_accepts_it_and_sees_qemu_virt_conventions() {
    let (blob, _) = initrd_guest();
    let Some(dts) = dtc_decompile(&blob) else {
        return;
    };
    for expected in [
        "#address-cells = <0x02>;",
        "#size-cells = <0x02>;",
        "memory@40000000 {",
        "device_type = \"memory\";",
        "reg = <0x00 0x40000000 0x00 0x20000000>;",
        "compatible = \"arm,psci-1.0\\0arm,psci-0.2\\0arm,psci\";",
        "method = \"hvc\";",
        "enable-method = \"psci\";",
        "compatible = \"arm,arm-v8\";",
        "cpu@3 {",
        "compatible = \"arm,gic-v3\";",
        "#interrupt-cells = <0x03>;",
        "interrupt-controller;",
        "#redistributor-regions = <0x01>;",
        "reg = <0x00 0x8000000 0x00 0x10000 0x00 0x80a0000 0x00 0x80000>;",
        "interrupts = <0x01 0x0d 0x04 0x01 0x0e 0x04 0x01 0x0b 0x04 0x01 0x0a 0x04>;",
        "always-on;",
        "compatible = \"arm,pl011\\0arm,primecell\";",
        "clock-names = \"uartclk\\0apb_pclk\";",
        "interrupts = <0x00 0x01 0x04>;",
        "compatible = \"fixed-clock\";",
        "virtio_mmio@a000a00 {",
        "interrupts = <0x00 0x15 0x01>;",
        "serial0 = \"/pl011@9000000\";",
        "stdout-path = \"/pl011@9000000\";",
        "bootargs = \"console=ttyAMA0 earlycon rdinit=/bin/sh\";",
        "linux,initrd-start = <0x00 0x46400000>;",
        "linux,initrd-end = <0x00 0x46700011>;",
    ] {
        assert!(dts.contains(expected), "missing {expected:?} in:\n{dts}");
    }
}

#[test]
fn smallest_and_largest_guests_parse() {
    for (vcpus, mem_bytes) in [(1, 16 * MIB), (8, layout::RAM_MAX_SIZE)] {
        let guest = GuestDtb {
            vcpus,
            mem_bytes,
            bootargs: "",
            initrd: None,
            virtio_slots: &[],
        };
        let blob = guest_dtb(&guest).expect("valid guest");
        let machine = Machine::from_dtb(&blob).expect("keel-platform parses it");
        assert_eq!(machine.cpus.len(), vcpus as usize);
        assert_eq!(
            machine.memory.as_slice(),
            [Region {
                base: layout::RAM_BASE,
                size: mem_bytes
            }]
        );
        assert_eq!(
            machine.gic.redists[0].size,
            u64::from(vcpus) * layout::GICR_STRIDE
        );
        assert_eq!((machine.initrd, machine.bootargs), (None, ""));
        assert!(machine.virtio_mmio.is_empty());
        dtc_decompile(&blob);
    }
}

/// The order the VMM main follows: plan, write the DTB naming the planned initrd, place it.
#[test]
fn planned_initrd_is_what_the_dtb_names() {
    let mut kernel = vec![0u8; 4096];
    kernel[16..24].copy_from_slice(&(20 * MIB).to_le_bytes());
    kernel[0x38..0x3C].copy_from_slice(b"ARM\x64");
    let ram = layout::ram(128 * MIB);
    let layout = plan(&kernel, KernelFormat::LinuxImage, 5 * MIB, ram).expect("plan");
    let blob = guest_dtb(&GuestDtb {
        vcpus: 2,
        mem_bytes: ram.len,
        bootargs: "console=ttyAMA0",
        initrd: layout.initrd,
        virtio_slots: &[],
    })
    .expect("dtb");
    assert_eq!(
        layout.dtb_address(blob.len()),
        Ok(layout::RAM_BASE + 126 * MIB)
    );
    let machine = Machine::from_dtb(&blob).expect("parse");
    let initrd = layout.initrd.expect("initrd planned");
    assert_eq!(
        machine.initrd,
        Some(Region {
            base: initrd.start,
            size: initrd.len
        })
    );
}
