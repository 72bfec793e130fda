//! `guest=mmio`: MMIO to the PL011 at every access size, sign-extending loads, accesses whose
//! syndrome a hypervisor cannot decode (ESR.ISV = 0: load/store pair, writeback), and the cost of
//! an emulated register read.
//!
//! 32-bit accesses must work. 8/16/64-bit accesses may be emulated (QEMU's PL011 does) or be
//! RAZ/WI (Keel's monitor, for sizes it does not support); any other result FAILs, and the
//! scenario prints which behaviour it saw. An ISV = 0 access must be emulated correctly or get an
//! abort injected; either is accepted and reported. IBRD/FBRD are restored before PASS.

use super::Outcome;
use crate::arch::{mmio, trap};
use crate::hostile_plan::Width;
use crate::machine::UART_BASE;
use crate::runtime::Guest;
use crate::timer;

const UARTFR: u64 = 0x18;
/// Reserved (QEMU: IrDA low-power counter); the low half of the 64-bit access at 0x20.
const UARTILPR: u64 = 0x20;
const UARTIBRD: u64 = 0x24;
const UARTFBRD: u64 = 0x28;
const PERIPH_ID0: u64 = 0xfe0;
const PERIPH_ID1: u64 = 0xfe4;
const PCELL_ID1: u64 = 0xff4;
/// Sentinel for loads that may be skipped after an abort.
const SENTINEL: u64 = 0x5a5a_5a5a_5a5a_5a5a;
const ROUNDS: u64 = 1000;
/// The first virtio-mmio slot of the `virt` board.
const VIRTIO_SLOT0: u64 = 0x0a00_0000;

fn reg(offset: u64) -> u64 {
    UART_BASE + offset
}

fn read(offset: u64, width: Width) -> u64 {
    // SAFETY: PL011 ID, baud-rate and flag registers have no read side effects.
    unsafe { mmio::load(reg(offset), width, SENTINEL) }
}

fn write(offset: u64, width: Width, value: u64) {
    // SAFETY: IBRD/FBRD/ILPR only set the (emulated) baud rate; the guest restores them.
    unsafe { mmio::store(reg(offset), width, value) }
}

/// "emulated" if `got` is `full`, "RAZ" if it is 0, `None` otherwise.
fn narrow_read_kind(got: u64, full: u64) -> Option<&'static str> {
    if got == full {
        Some("emulated")
    } else if got == 0 {
        Some("RAZ")
    } else {
        None
    }
}

pub fn run(_guest: &Guest) -> Outcome {
    let saved_ibrd = read(UARTIBRD, Width::B32);
    let saved_fbrd = read(UARTFBRD, Width::B32);
    let result = checks();
    write(UARTIBRD, Width::B32, saved_ibrd);
    write(UARTFBRD, Width::B32, saved_fbrd);
    result
}

/// The first virtio-mmio slot of the `virt` board with no device in it reads as a transport
/// that says "no device" (virtio 1.2 section 4.2.2: MagicValue "virt", DeviceID 0; QEMU's empty
/// transports, hw/virtio/virtio-mmio.c), not a fault; a write to it is ignored.
fn empty_virtio_slot() -> Result<(), crate::text::Text> {
    // SAFETY: reads of an empty virtio-mmio slot's identification registers, and a write of 0
    // to its Status register (a reset), have no effect.
    let (magic, version, device) =
        unsafe { (mmio::read32(VIRTIO_SLOT0), mmio::read32(VIRTIO_SLOT0 + 4), mmio::read32(VIRTIO_SLOT0 + 8)) };
    ensure!(magic == 0x7472_6976, "virtio-mmio slot 0: MagicValue {magic:#x}, want 0x74726976 (\"virt\")");
    ensure!(version == 1 || version == 2, "virtio-mmio slot 0: Version {version}, want 1 or 2");
    ensure!(device == 0, "virtio-mmio slot 0: DeviceID {device}, want 0 (no device)");
    // SAFETY: as above.
    let status = unsafe {
        mmio::write32(VIRTIO_SLOT0 + 0x70, 0);
        mmio::read32(VIRTIO_SLOT0 + 0x70)
    };
    ensure!(status == 0, "virtio-mmio slot 0: Status reads {status:#x} after a write of 0");
    say!("mmio: virtio-mmio slot 0: magic \"virt\", version {version}, no device");
    Ok(())
}

fn checks() -> Outcome {
    // 32-bit: the size every PL011 model must support.
    write(UARTIBRD, Width::B32, 0x1a);
    let ibrd = read(UARTIBRD, Width::B32);
    ensure!(
        ibrd == 0x1a,
        "32-bit IBRD read back {ibrd:#x} after writing 0x1a"
    );
    let id0 = read(PERIPH_ID0, Width::B32);
    ensure!(id0 == 0x11, "32-bit UARTPeriphID0 = {id0:#x}, want 0x11");
    let cid1 = read(PCELL_ID1, Width::B32);
    ensure!(cid1 == 0xf0, "32-bit UARTPCellID1 = {cid1:#x}, want 0xf0");
    say!("mmio: 32-bit: IBRD wrote/read 0x1a, PeriphID0 0x11, PCellID1 0xf0");
    empty_virtio_slot()?;

    // Narrow and wide reads.
    for (width, bits) in [(Width::B8, 8), (Width::B16, 16)] {
        let got = read(UARTIBRD, width);
        let Some(kind) = narrow_read_kind(got, 0x1a) else {
            fail!("{bits}-bit IBRD read {got:#x}, want 0x1a (emulated) or 0 (RAZ)");
        };
        say!("mmio: {bits}-bit read of IBRD = {got:#x} ({kind})");
    }
    let wide = read(UARTILPR, Width::B64);
    let kind = if wide >> 32 == 0x1a {
        "emulated"
    } else if wide == 0 {
        "RAZ"
    } else {
        fail!("64-bit read at 0x20 = {wide:#x}, want IBRD (0x1a) in the upper half or 0 (RAZ)");
    };
    say!("mmio: 64-bit read at ILPR/IBRD = {wide:#x} ({kind})");

    // Narrow and wide writes: the value lands (emulated) or the register keeps 0x1a (WI).
    for (width, bits, value) in [(Width::B8, 8, 0x1b), (Width::B16, 16, 0x1c)] {
        write(UARTIBRD, width, value);
        let got = read(UARTIBRD, Width::B32);
        let kind = match got {
            v if v == value => "emulated",
            0x1a => "WI",
            _ => fail!(
                "{bits}-bit write of {value:#x} to IBRD left {got:#x}, want {value:#x} or 0x1a (WI)"
            ),
        };
        say!("mmio: {bits}-bit write to IBRD ({kind})");
        write(UARTIBRD, Width::B32, 0x1a);
    }
    write(UARTILPR, Width::B64, 0x1d << 32);
    let got = read(UARTIBRD, Width::B32);
    let kind = match got {
        0x1d => "emulated",
        0x1a => "WI",
        _ => fail!("64-bit write at 0x20 left IBRD {got:#x}, want 0x1d or 0x1a (WI)"),
    };
    say!("mmio: 64-bit write at ILPR/IBRD ({kind})");
    write(UARTIBRD, Width::B32, 0x1a);

    sign_extension()?;
    unsyndromed()?;

    let start = timer::now();
    for _ in 0..ROUNDS {
        read(UARTFR, Width::B32);
    }
    let ticks = (timer::now() - start) / ROUNDS;
    say!("mmio round trip: {ticks} ticks");
    super::note(format_args!("({ticks} ticks per UARTFR read)"))
}

/// `ldrsb`/`ldrsh` into X and W registers: the hypervisor must honour ESR.SSE and ESR.SF.
fn sign_extension() -> Outcome {
    let addr = reg(PCELL_ID1);
    let byte = read(PCELL_ID1, Width::B8);
    let (x_sb, w_sb, x_sh): (u64, u64, u64);
    // SAFETY: three loads of a read-only PL011 ID register.
    unsafe {
        core::arch::asm!(
            "ldrsb {xsb}, [{a}]",
            "ldrsb {wsb:w}, [{a}]",
            "ldrsh {xsh}, [{a}]",
            a = in(reg) addr,
            xsb = out(reg) x_sb,
            wsb = out(reg) w_sb,
            xsh = out(reg) x_sh,
            options(nostack, readonly),
        );
    }
    match byte {
        0xf0 => {
            ensure!(
                x_sb == 0xffff_ffff_ffff_fff0,
                "ldrsb x of PCellID1 = {x_sb:#x}, want 0xfffffffffffffff0"
            );
            ensure!(
                w_sb == 0xffff_fff0,
                "ldrsb w of PCellID1 = {w_sb:#x}, want 0xfffffff0 (zero-extended W)"
            );
            ensure!(
                x_sh == 0xf0,
                "ldrsh x of PCellID1 = {x_sh:#x}, want 0xf0 (bit 15 clear)"
            );
            say!("mmio: ldrsb x = {x_sb:#x}, ldrsb w = {w_sb:#x}, ldrsh x = {x_sh:#x}");
        }
        0 => {
            ensure!(
                x_sb == 0 && w_sb == 0 && x_sh == 0,
                "byte reads are RAZ but ldrsb/ldrsh gave {x_sb:#x}/{w_sb:#x}/{x_sh:#x}"
            );
            say!("mmio: 8-bit reads are RAZ here; sign extension not checked");
        }
        _ => fail!("8-bit read of PCellID1 = {byte:#x}, want 0xf0 or 0 (RAZ)"),
    }
    Ok(Default::default())
}

/// How an access without a valid syndrome was handled.
fn isv0_kind(
    caught: Option<trap::Caught>,
    correct: bool,
    what: &str,
) -> Result<&'static str, crate::text::Text> {
    match caught {
        Some(c) if c.ec() == trap::EC_DABT_CUR => Ok("abort injected"),
        Some(c) => fail!("{what}: unexpected exception ESR {:#x}", c.esr),
        None if correct => Ok("emulated"),
        None => fail!("{what}: completed with wrong values and no abort"),
    }
}

/// Load pair, store pair, pre- and post-indexed loads: ESR_EL2.ISV = 0 for all of them.
fn unsyndromed() -> Outcome {
    // ldp w, w from PeriphID0/PeriphID1.
    let ((id0, id1), caught) = trap::catching(|| {
        let (mut a, mut b) = (SENTINEL, SENTINEL);
        // SAFETY: a pair load of two read-only PL011 ID registers.
        unsafe {
            core::arch::asm!(
                "ldp {a:w}, {b:w}, [{p}]",
                p = in(reg) reg(PERIPH_ID0),
                a = inout(reg) a,
                b = inout(reg) b,
                options(nostack, readonly),
            );
        }
        (a, b)
    });
    let kind = isv0_kind(caught, id0 == 0x11 && id1 == 0x10, "ldp from PeriphID0/1")?;
    say!("mmio: ldp w from PeriphID0/1 ({kind}): {id0:#x} {id1:#x}");

    // Pre-indexed load with writeback: base + 16 lands on PeriphID0.
    let start = reg(PERIPH_ID0 - 16);
    let ((value, base), caught) = trap::catching(|| {
        let (mut v, mut p) = (SENTINEL, start);
        // SAFETY: one load of a read-only PL011 ID register.
        unsafe {
            core::arch::asm!(
                "ldr {v:w}, [{p}, #16]!",
                p = inout(reg) p,
                v = inout(reg) v,
                options(nostack, readonly),
            );
        }
        (v, p)
    });
    let ok = value == 0x11 && base == start + 16;
    if caught.is_some() {
        ensure!(
            base == start,
            "pre-indexed load aborted but the base register moved to {base:#x}"
        );
    }
    let kind = isv0_kind(caught, ok, "pre-indexed ldr from PeriphID0")?;
    say!(
        "mmio: ldr w, [x, #16]! from PeriphID0 ({kind}): {value:#x}, base {:+}",
        base as i64 - start as i64
    );

    // Post-indexed load with writeback.
    let start = reg(PERIPH_ID1);
    let ((value, base), caught) = trap::catching(|| {
        let (mut v, mut p) = (SENTINEL, start);
        // SAFETY: one load of a read-only PL011 ID register.
        unsafe {
            core::arch::asm!(
                "ldr {v:w}, [{p}], #4",
                p = inout(reg) p,
                v = inout(reg) v,
                options(nostack, readonly),
            );
        }
        (v, p)
    });
    if caught.is_some() {
        ensure!(
            base == start,
            "post-indexed load aborted but the base register moved to {base:#x}"
        );
    }
    let kind = isv0_kind(
        caught,
        value == 0x10 && base == start + 4,
        "post-indexed ldr from PeriphID1",
    )?;
    say!(
        "mmio: ldr w, [x], #4 from PeriphID1 ({kind}): {value:#x}, base {:+}",
        base as i64 - start as i64
    );

    // stp w, w to IBRD/FBRD.
    let ((), caught) = trap::catching(|| {
        // SAFETY: a pair store to the baud-rate divisors, restored by `run`.
        unsafe {
            core::arch::asm!(
                "stp {a:w}, {b:w}, [{p}]",
                p = in(reg) reg(UARTIBRD),
                a = in(reg) 0x2bu64,
                b = in(reg) 0x05u64,
                options(nostack),
            );
        }
    });
    let (ibrd, fbrd) = (read(UARTIBRD, Width::B32), read(UARTFBRD, Width::B32));
    if caught.is_some() {
        ensure!(
            ibrd == 0x1a,
            "stp to IBRD/FBRD aborted but IBRD changed to {ibrd:#x}"
        );
    }
    let kind = isv0_kind(caught, ibrd == 0x2b && fbrd == 0x05, "stp to IBRD/FBRD")?;
    say!("mmio: stp w to IBRD/FBRD ({kind}): IBRD {ibrd:#x} FBRD {fbrd:#x}");
    Ok(Default::default())
}
