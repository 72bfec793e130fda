//! A minimal flattened-device-tree reader: the three facts a test guest needs from the DTB the
//! VMM hands it in x0 — `/chosen/bootargs`, the MPIDR of every CPU under `/cpus`, and the first
//! `device_type = "memory"` region.
//!
//! Why not `keel-platform`'s `Machine::from_dtb`: it insists on GIC, timer and UART nodes (the
//! guest's device addresses are fixed by the guest machine contract, so a VMM may leave them
//! out) and it pulls `tock-registers` into a crate that otherwise has no dependencies.
//!
//! The blob is untrusted. Every read is bounds-checked, every token moves the cursor forward by
//! at least four bytes, nesting is capped at [`MAX_DEPTH`]; the reader never panics, never loops
//! forever and never reads outside the slice, whatever the bytes are. It does not allocate.

use crate::machine::MAX_CPUS;
use core::fmt;

/// Deepest node nesting accepted (QEMU `virt` nests 6 deep, in `/cpus/cpu-map`).
pub const MAX_DEPTH: usize = 16;

const MAGIC: u32 = 0xd00d_feed;
const HEADER_LEN: usize = 40;
/// The structure-block layout this reader understands.
const VERSION: u32 = 17;

const FDT_BEGIN_NODE: u32 = 1;
const FDT_END_NODE: u32 = 2;
const FDT_PROP: u32 = 3;
const FDT_NOP: u32 = 4;
const FDT_END: u32 = 9;

/// A physical address range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Region {
    /// First byte.
    pub base: u64,
    /// Length in bytes.
    pub size: u64,
}

impl Region {
    /// One past the last byte, saturating at `u64::MAX`.
    pub fn end(&self) -> u64 {
        self.base.saturating_add(self.size)
    }
}

/// What the guest learns from its DTB.
#[derive(Debug, Clone, Copy)]
pub struct GuestInfo<'a> {
    /// `/chosen/bootargs`, `""` if absent.
    pub bootargs: &'a str,
    /// MPIDR affinity values (`reg`) of the first [`MAX_CPUS`] `device_type = "cpu"` nodes under
    /// `/cpus`, in DTB order.
    pub cpus: [u64; MAX_CPUS],
    /// How many CPU nodes the DTB lists (may exceed [`MAX_CPUS`]).
    pub cpu_count: usize,
    /// The first non-empty `reg` entry of the first memory node.
    pub ram: Option<Region>,
}

impl GuestInfo<'_> {
    /// The MPIDRs the guest can use: at most [`MAX_CPUS`].
    pub fn usable_cpus(&self) -> &[u64] {
        &self.cpus[..self.cpu_count.min(MAX_CPUS)]
    }
}

/// Why a DTB was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DtbError {
    /// The first word is not 0xd00dfeed.
    BadMagic,
    /// Not a version-17-compatible blob.
    BadVersion,
    /// The buffer is shorter than the header, or than a block the header points at.
    Truncated,
    /// The blob breaks the DTB format; the text says how.
    Malformed(&'static str),
}

impl fmt::Display for DtbError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DtbError::BadMagic => write!(f, "not a device tree: bad magic (expected 0xd00dfeed)"),
            DtbError::BadVersion => write!(f, "device tree is not version-17 compatible"),
            DtbError::Truncated => write!(f, "device tree blob is shorter than its header says"),
            DtbError::Malformed(what) => write!(f, "malformed device tree: {what}"),
        }
    }
}

fn be32(bytes: &[u8], at: usize) -> Result<u32, DtbError> {
    let end = at.checked_add(4).ok_or(DtbError::Truncated)?;
    let word = bytes.get(at..end).ok_or(DtbError::Truncated)?;
    Ok(u32::from_be_bytes([word[0], word[1], word[2], word[3]]))
}

/// `totalsize` from a DTB header, after checking the magic: how many bytes the caller must make
/// readable before calling [`parse`]. `header` needs only the first 8 bytes.
pub fn total_size(header: &[u8]) -> Result<usize, DtbError> {
    if be32(header, 0)? != MAGIC {
        return Err(DtbError::BadMagic);
    }
    let size = be32(header, 4)? as usize;
    if size < HEADER_LEN {
        return Err(DtbError::Malformed("totalsize is smaller than the header"));
    }
    Ok(size)
}

/// A bounds-checked reader over the structure block.
struct Cursor<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn u32(&mut self) -> Result<u32, DtbError> {
        let value = be32(self.data, self.pos)?;
        self.pos += 4;
        Ok(value)
    }

    /// `len` bytes, then the cursor moves to the next 4-byte boundary.
    fn bytes(&mut self, len: usize) -> Result<&'a [u8], DtbError> {
        let end = self.pos.checked_add(len).ok_or(DtbError::Truncated)?;
        let value = self.data.get(self.pos..end).ok_or(DtbError::Truncated)?;
        self.pos = end.checked_add(3).ok_or(DtbError::Truncated)? & !3;
        Ok(value)
    }

    /// A NUL-terminated node name (without the NUL), then the cursor moves to a 4-byte boundary.
    fn name(&mut self) -> Result<&'a [u8], DtbError> {
        let rest = self.data.get(self.pos..).ok_or(DtbError::Truncated)?;
        let len = rest
            .iter()
            .position(|&b| b == 0)
            .ok_or(DtbError::Malformed("unterminated node name"))?;
        let name = self.bytes(len + 1)?;
        Ok(&name[..len])
    }
}

/// The properties of one open node that the reader cares about.
#[derive(Clone, Copy)]
struct Node<'a> {
    name: &'a [u8],
    /// `#address-cells` for this node's children (default 2).
    address_cells: u32,
    /// `#size-cells` for this node's children (default 1).
    size_cells: u32,
    device_type: &'a [u8],
    reg: &'a [u8],
    bootargs: Option<&'a [u8]>,
}

impl<'a> Node<'a> {
    const fn new(name: &'a [u8]) -> Self {
        Node {
            name,
            address_cells: 2,
            size_cells: 1,
            device_type: &[],
            reg: &[],
            bootargs: None,
        }
    }
}

/// A property value up to (not including) its first NUL.
fn c_string(value: &[u8]) -> &[u8] {
    match value.iter().position(|&b| b == 0) {
        Some(nul) => &value[..nul],
        None => value,
    }
}

/// A `#address-cells`/`#size-cells` value: one cell. Any count is accepted here (PCI buses use
/// 3); [`read_cells`] refuses more than 2 where a `reg` the guest needs is decoded.
fn cells(value: &[u8], what: &'static str) -> Result<u32, DtbError> {
    if value.len() != 4 {
        return Err(DtbError::Malformed(what));
    }
    be32(value, 0)
}

/// A number of `count` (at most 2) big-endian cells at the start of `bytes`.
fn read_cells(bytes: &[u8], count: u32) -> Result<u64, DtbError> {
    if count > 2 {
        return Err(DtbError::Malformed(
            "a reg the guest needs has more than 2 cells per number",
        ));
    }
    let mut value = 0u64;
    for i in 0..count as usize {
        value = (value << 32) | u64::from(be32(bytes, i * 4)?);
    }
    Ok(value)
}

/// Parses `blob` (a whole DTB, as long as its `totalsize`).
pub fn parse(blob: &[u8]) -> Result<GuestInfo<'_>, DtbError> {
    if blob.len() < HEADER_LEN {
        return Err(DtbError::Truncated);
    }
    let total = total_size(blob)?;
    if blob.len() < total {
        return Err(DtbError::Truncated);
    }
    let blob = &blob[..total];
    let version = be32(blob, 20)?;
    let last_compatible = be32(blob, 24)?;
    if version < VERSION || last_compatible > VERSION {
        return Err(DtbError::BadVersion);
    }
    let block = |offset_at: usize, size_at: usize| -> Result<&[u8], DtbError> {
        let offset = be32(blob, offset_at)? as usize;
        let size = be32(blob, size_at)? as usize;
        let end = offset.checked_add(size).ok_or(DtbError::Truncated)?;
        blob.get(offset..end).ok_or(DtbError::Truncated)
    };
    let structure = block(8, 36)?;
    let strings = block(12, 32)?;

    let mut info = GuestInfo {
        bootargs: "",
        cpus: [0; MAX_CPUS],
        cpu_count: 0,
        ram: None,
    };
    let mut stack = [Node::new(&[]); MAX_DEPTH];
    let mut depth = 0usize;
    let mut cursor = Cursor {
        data: structure,
        pos: 0,
    };
    loop {
        match cursor.u32()? {
            FDT_BEGIN_NODE => {
                let name = cursor.name()?;
                if depth == MAX_DEPTH {
                    return Err(DtbError::Malformed("nodes nested too deeply"));
                }
                stack[depth] = Node::new(name);
                depth += 1;
            }
            FDT_PROP => {
                let len = cursor.u32()? as usize;
                let name_offset = cursor.u32()? as usize;
                let value = cursor.bytes(len)?;
                let name = strings
                    .get(name_offset..)
                    .map(c_string)
                    .ok_or(DtbError::Malformed(
                        "property name offset outside the strings block",
                    ))?;
                let node = match depth.checked_sub(1) {
                    Some(top) => &mut stack[top],
                    None => return Err(DtbError::Malformed("property outside any node")),
                };
                match name {
                    b"#address-cells" => node.address_cells = cells(value, "bad #address-cells")?,
                    b"#size-cells" => node.size_cells = cells(value, "bad #size-cells")?,
                    b"device_type" => node.device_type = c_string(value),
                    b"reg" => node.reg = value,
                    b"bootargs" => node.bootargs = Some(c_string(value)),
                    _ => {}
                }
            }
            FDT_END_NODE => {
                depth = depth
                    .checked_sub(1)
                    .ok_or(DtbError::Malformed("end of a node that was never begun"))?;
                let node = stack[depth];
                let parent = depth.checked_sub(1).map(|p| stack[p]);
                finish_node(&mut info, depth, &node, parent.as_ref())?;
            }
            FDT_NOP => {}
            FDT_END => {
                if depth != 0 {
                    return Err(DtbError::Malformed("structure block ends inside a node"));
                }
                return Ok(info);
            }
            _ => return Err(DtbError::Malformed("unknown structure-block token")),
        }
    }
}

/// Takes what the guest needs from a node that just closed at nesting level `depth` (the root
/// is level 0).
fn finish_node<'a>(
    info: &mut GuestInfo<'a>,
    depth: usize,
    node: &Node<'a>,
    parent: Option<&Node<'a>>,
) -> Result<(), DtbError> {
    let Some(parent) = parent else { return Ok(()) };
    if depth == 1
        && node.name == b"chosen"
        && let Some(args) = node.bootargs
    {
        info.bootargs = core::str::from_utf8(args)
            .map_err(|_| DtbError::Malformed("/chosen/bootargs is not UTF-8"))?;
    }
    if node.device_type == b"memory" && info.ram.is_none() {
        let entry = (parent.address_cells as usize + parent.size_cells as usize) * 4;
        if entry == 0 || !node.reg.len().is_multiple_of(entry) {
            return Err(DtbError::Malformed(
                "memory reg is not a whole number of entries",
            ));
        }
        for chunk in node.reg.chunks_exact(entry) {
            let base = read_cells(chunk, parent.address_cells)?;
            let size_cells = chunk
                .get(parent.address_cells as usize * 4..)
                .ok_or(DtbError::Truncated)?;
            let size = read_cells(size_cells, parent.size_cells)?;
            if size == 0 {
                continue;
            }
            if base.checked_add(size).is_none() {
                return Err(DtbError::Malformed(
                    "memory region wraps past the end of the address space",
                ));
            }
            info.ram = Some(Region { base, size });
            break;
        }
    }
    if depth == 2 && node.device_type == b"cpu" && parent.name == b"cpus" {
        if parent.address_cells == 0 || node.reg.len() / 4 < parent.address_cells as usize {
            return Err(DtbError::Malformed("cpu node without a usable reg"));
        }
        let mpidr = read_cells(node.reg, parent.address_cells)?;
        if let Some(slot) = info.cpus.get_mut(info.cpu_count) {
            *slot = mpidr;
        }
        info.cpu_count += 1;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Builds DTBs for the tests.
    #[derive(Default)]
    struct Fdt {
        structure: Vec<u8>,
        strings: Vec<u8>,
    }

    impl Fdt {
        fn word(&mut self, w: u32) -> &mut Self {
            self.structure.extend_from_slice(&w.to_be_bytes());
            self
        }
        fn pad(&mut self) {
            while !self.structure.len().is_multiple_of(4) {
                self.structure.push(0);
            }
        }
        fn begin(&mut self, name: &str) -> &mut Self {
            self.word(FDT_BEGIN_NODE);
            self.structure.extend_from_slice(name.as_bytes());
            self.structure.push(0);
            self.pad();
            self
        }
        fn end(&mut self) -> &mut Self {
            self.word(FDT_END_NODE)
        }
        fn prop(&mut self, name: &str, value: &[u8]) -> &mut Self {
            let offset = self.strings.len() as u32;
            self.strings.extend_from_slice(name.as_bytes());
            self.strings.push(0);
            self.word(FDT_PROP).word(value.len() as u32).word(offset);
            self.structure.extend_from_slice(value);
            self.pad();
            self
        }
        fn prop_cells(&mut self, name: &str, cells: &[u32]) -> &mut Self {
            let bytes: Vec<u8> = cells.iter().flat_map(|c| c.to_be_bytes()).collect();
            self.prop(name, &bytes)
        }
        fn prop_str(&mut self, name: &str, value: &str) -> &mut Self {
            let mut bytes = value.as_bytes().to_vec();
            bytes.push(0);
            self.prop(name, &bytes)
        }
        fn finish(&mut self) -> Vec<u8> {
            self.word(FDT_END);
            let rsvmap = HEADER_LEN;
            let off_struct = rsvmap + 16;
            let off_strings = off_struct + self.structure.len();
            let total = off_strings + self.strings.len();
            let mut blob = Vec::new();
            for w in [
                MAGIC,
                total as u32,
                off_struct as u32,
                off_strings as u32,
                rsvmap as u32,
                17,
                16,
                0,
                self.strings.len() as u32,
                self.structure.len() as u32,
            ] {
                blob.extend_from_slice(&w.to_be_bytes());
            }
            blob.extend_from_slice(&[0; 16]);
            blob.extend_from_slice(&self.structure);
            blob.extend_from_slice(&self.strings);
            blob
        }
    }

    /// A QEMU-`virt`-shaped tree: 2/2 root cells, 1/0 under /cpus, a cpu-map, four CPUs.
    fn virt_like(bootargs: &str) -> Vec<u8> {
        let mut f = Fdt::default();
        f.begin("")
            .prop_cells("#address-cells", &[2])
            .prop_cells("#size-cells", &[2]);
        f.begin("chosen")
            .prop_str("bootargs", bootargs)
            .prop_str("stdout-path", "/pl011@9000000")
            .end();
        f.begin("memory@40000000")
            .prop_str("device_type", "memory")
            .prop_cells("reg", &[0, 0x4000_0000, 0, 0x0800_0000])
            .end();
        f.begin("cpus")
            .prop_cells("#address-cells", &[1])
            .prop_cells("#size-cells", &[0]);
        f.begin("cpu-map")
            .begin("socket0")
            .begin("cluster0")
            .begin("core0");
        f.prop_cells("cpu", &[1]).end().end().end().end();
        for i in 0..4u32 {
            // reg before device_type: property order inside a node must not matter.
            f.begin(&format!("cpu@{i}"))
                .prop_cells("reg", &[i])
                .prop_str("device_type", "cpu")
                .end();
        }
        f.end();
        f.end();
        f.finish()
    }

    #[test]
    fn reads_bootargs_cpus_and_ram() {
        let blob = virt_like("console=ttyAMA0 guest=smp guest.plain");
        let info = parse(&blob).expect("valid tree");
        assert_eq!(info.bootargs, "console=ttyAMA0 guest=smp guest.plain");
        assert_eq!(info.usable_cpus(), &[0, 1, 2, 3]);
        assert_eq!(
            info.ram,
            Some(Region {
                base: 0x4000_0000,
                size: 0x0800_0000
            })
        );
    }

    #[test]
    fn more_cpus_than_slots_are_counted_not_stored() {
        let mut f = Fdt::default();
        f.begin("")
            .begin("cpus")
            .prop_cells("#address-cells", &[1])
            .prop_cells("#size-cells", &[0]);
        for i in 0..(MAX_CPUS as u32 + 3) {
            f.begin("cpu")
                .prop_str("device_type", "cpu")
                .prop_cells("reg", &[i])
                .end();
        }
        f.end().end();
        let blob = f.finish();
        let info = parse(&blob).expect("valid tree");
        assert_eq!(info.cpu_count, MAX_CPUS + 3);
        assert_eq!(info.usable_cpus().len(), MAX_CPUS);
    }

    #[test]
    fn absent_nodes_give_empty_answers() {
        let mut f = Fdt::default();
        f.begin("").end();
        let blob = f.finish();
        let info = parse(&blob).expect("valid tree");
        assert_eq!(info.bootargs, "");
        assert_eq!(info.cpu_count, 0);
        assert_eq!(info.ram, None);
    }

    #[test]
    fn wide_cells_elsewhere_are_fine() {
        // QEMU's PCIe node has #address-cells = 3; only the reg values the guest reads matter.
        let mut f = Fdt::default();
        f.begin("")
            .prop_cells("#address-cells", &[2])
            .prop_cells("#size-cells", &[2]);
        f.begin("pcie")
            .prop_cells("#address-cells", &[3])
            .prop_cells("#size-cells", &[2])
            .end();
        f.begin("memory")
            .prop_str("device_type", "memory")
            .prop_cells("reg", &[0, 0x4000_0000, 0, 0x1000])
            .end();
        f.end();
        let blob = f.finish();
        let info = parse(&blob).expect("valid tree");
        assert_eq!(
            info.ram,
            Some(Region {
                base: 0x4000_0000,
                size: 0x1000
            })
        );
    }

    #[test]
    fn zero_sized_memory_entries_are_skipped() {
        let mut f = Fdt::default();
        f.begin("")
            .prop_cells("#address-cells", &[2])
            .prop_cells("#size-cells", &[2]);
        f.begin("memory")
            .prop_str("device_type", "memory")
            .prop_cells("reg", &[0, 0x1000, 0, 0, 0, 0x4000_0000, 0, 0x100_0000])
            .end();
        f.end();
        let blob = f.finish();
        let info = parse(&blob).expect("valid tree");
        assert_eq!(
            info.ram,
            Some(Region {
                base: 0x4000_0000,
                size: 0x100_0000
            })
        );
    }

    #[test]
    fn rejects_bad_headers() {
        assert_eq!(parse(&[0; 8]).unwrap_err(), DtbError::Truncated);
        let mut blob = virt_like("");
        blob[0] = 0;
        assert_eq!(parse(&blob).unwrap_err(), DtbError::BadMagic);
        let mut blob = virt_like("");
        blob[20..24].copy_from_slice(&16u32.to_be_bytes());
        assert_eq!(parse(&blob).unwrap_err(), DtbError::BadVersion);
        let blob = virt_like("");
        assert_eq!(
            parse(&blob[..blob.len() - 1]).unwrap_err(),
            DtbError::Truncated
        );
    }

    #[test]
    fn rejects_broken_structure() {
        let mut f = Fdt::default();
        f.prop_cells("reg", &[1]);
        assert!(matches!(parse(&f.finish()), Err(DtbError::Malformed(_))));

        let mut f = Fdt::default();
        f.begin("").end().end();
        assert!(matches!(parse(&f.finish()), Err(DtbError::Malformed(_))));

        let mut f = Fdt::default();
        f.begin("");
        assert!(matches!(parse(&f.finish()), Err(DtbError::Malformed(_))));

        let mut f = Fdt::default();
        for _ in 0..=MAX_DEPTH {
            f.begin("n");
        }
        assert!(matches!(parse(&f.finish()), Err(DtbError::Malformed(_))));

        let mut f = Fdt::default();
        f.begin("")
            .prop_cells("#address-cells", &[7])
            .prop_cells("#size-cells", &[1]);
        f.begin("memory")
            .prop_str("device_type", "memory")
            .prop_cells("reg", &[0; 8])
            .end();
        f.end();
        assert!(matches!(parse(&f.finish()), Err(DtbError::Malformed(_))));
    }

    #[test]
    fn rejects_bootargs_that_are_not_utf8() {
        let mut f = Fdt::default();
        f.begin("")
            .begin("chosen")
            .prop("bootargs", &[0xff, 0xfe, 0])
            .end()
            .end();
        assert!(matches!(parse(&f.finish()), Err(DtbError::Malformed(_))));
    }

    #[test]
    fn never_panics_on_truncated_or_corrupted_blobs() {
        let blob = virt_like("guest=hvc");
        for len in 0..blob.len() {
            let _ = parse(&blob[..len]);
        }
        // Deterministic byte corruption everywhere, including the header offsets.
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..20_000 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let mut bad = blob.clone();
            let at = (state as usize) % bad.len();
            bad[at] = (state >> 32) as u8;
            if state & 1 == 0 {
                let at2 = (state as usize >> 8) % bad.len();
                bad[at2] ^= 0x80;
            }
            let _ = parse(&bad);
        }
    }
}
