//! Flattened device tree (DTB) discovery: turns the blob the loader hands the kernel into a typed
//! [`Machine`], the only place board addresses come from.
//!
//! The DTB is untrusted input. This module owns its whole decoding: header checks, a walk of the
//! structure-block token stream, and the typed extraction; it does not use the `fdt` crate,
//! because `fdt` 0.1.5 panics (slice indexing, `unwrap`, `assert_eq!`) on most corrupted blobs.
//! It must never panic, loop forever or read outside the blob, whatever the bytes are: every read
//! goes through a bounds-checked helper, every token advances the cursor by at least four bytes,
//! node nesting is capped at [`MAX_DEPTH`], and [`Machine::from_dtb`] walks (and so validates) the
//! whole structure block once before it extracts anything. It never allocates: every collection is
//! a [`BoundedVec`], and one too many entries is [`DtbError::TooMany`], never a silent drop.
//!
//! Conventions it applies: `reg` is decoded with the parent's `#address-cells`/`#size-cells`
//! (defaults 2 and 1), at most two cells each, and translated to a CPU address through every
//! ancestor bus's `ranges` (an empty `ranges` is the identity; a bus without one makes the
//! address unreachable, an error). Interrupts are GICv3 specifiers `<type number flags [ppi-part]>`
//! of the GICv3 node, found through the inherited `interrupt-parent`; the result is an INTID.
//! Device nodes whose `status` is neither absent, `"okay"` nor `"ok"` are ignored, as are memory
//! and reserved regions of size zero.

use crate::bounded::BoundedVec;
use core::fmt;

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

    /// A region that must not wrap past the top of the address space.
    fn checked(base: u64, size: u64) -> Result<Region, DtbError> {
        match base.checked_add(size) {
            Some(_) => Ok(Region { base, size }),
            None => Err(DtbError::Malformed(
                "region wraps past the end of the address space",
            )),
        }
    }
}

/// How PSCI calls reach the firmware (or the hypervisor).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PsciConduit {
    /// `method = "smc"`.
    Smc,
    /// `method = "hvc"`.
    Hvc,
}

/// One CPU node under `/cpus`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cpu {
    /// The affinity fields of MPIDR_EL1, as the node's `reg` gives them.
    pub mpidr: u64,
}

/// The GICv3 interrupt controller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gic {
    /// GICD frame (`reg` entry 0).
    pub dist: Region,
    /// Redistributor regions (`reg` entries 1..=`#redistributor-regions`).
    pub redists: BoundedVec<Region, 8>,
    /// INTID of the virtualization maintenance interrupt, if the node has `interrupts`.
    pub maintenance_intid: Option<u32>,
}

/// Generic-timer INTIDs, in the order the `arm,armv8-timer` binding lists them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timer {
    /// Secure EL1 physical timer.
    pub sec_phys: u32,
    /// Non-secure EL1 physical timer.
    pub phys: u32,
    /// EL1 virtual timer.
    pub virt: u32,
    /// EL2 (hypervisor) physical timer.
    pub hyp_phys: u32,
    /// EL2 virtual timer (ARMv8.1 VHE), when listed.
    pub hyp_virt: Option<u32>,
}

/// The console PL011.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Uart {
    /// MMIO base.
    pub base: u64,
    /// MMIO size.
    pub size: u64,
    /// INTID.
    pub intid: u32,
}

/// One virtio-mmio transport slot (QEMU lists every slot, populated or not).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VirtioMmio {
    /// The transport's registers.
    pub region: Region,
    /// INTID.
    pub intid: u32,
}

/// An SMMUv3.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Smmu {
    /// Register frame (`reg` entry 0).
    pub region: Region,
    /// Always `false` from the DTB: neither the `arm,smmu-v3` binding nor QEMU 10 (even with
    /// `arm-smmuv3.stage=2`) records which translation stages exist. The SMMU driver must read
    /// SMMU_IDR0.S2P and may set this field itself.
    pub stage2: bool,
}

/// Everything Keel learns about the board from the DTB.
#[derive(Debug, Clone)]
pub struct Machine<'a> {
    /// Root `model`, `""` if absent.
    pub model: &'a str,
    /// `/chosen/bootargs`, `""` if absent.
    pub bootargs: &'a str,
    /// Every non-empty `reg` entry of every `device_type = "memory"` node, in DTB order.
    pub memory: BoundedVec<Region, 16>,
    /// `/memreserve/` entries, then `/reserved-memory` children's `reg` entries (non-empty ones).
    pub reserved: BoundedVec<Region, 16>,
    /// CPU nodes under `/cpus` (`device_type = "cpu"`, not `status = "fail"`), in DTB order.
    pub cpus: BoundedVec<Cpu, 64>,
    /// The first enabled `arm,gic-v3` node.
    pub gic: Gic,
    /// The first enabled `arm,armv8-timer` / `arm,armv7-timer` node.
    pub timer: Timer,
    /// The PL011 that `/chosen/stdout-path` names, else the first enabled `arm,pl011`.
    pub uart: Uart,
    /// The `arm,psci*` node's conduit, if there is such a node.
    pub psci: Option<PsciConduit>,
    /// `/chosen` `linux,initrd-start`..`linux,initrd-end`, if both are present and differ.
    pub initrd: Option<Region>,
    /// The first enabled `arm,smmu-v3`.
    pub smmu: Option<Smmu>,
    /// ECAM window of the first enabled `pci-host-ecam-generic` host bridge.
    pub pcie_ecam: Option<Region>,
    /// Every enabled `virtio,mmio` transport, sorted by base address.
    pub virtio_mmio: BoundedVec<VirtioMmio, 32>,
    /// `totalsize` from the header: how many bytes of memory the blob occupies.
    pub dtb_size: usize,
}

/// Why a DTB was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DtbError {
    /// The first word is not 0xd00dfeed.
    BadMagic,
    /// Not a version-17-compatible blob.
    BadVersion,
    /// The buffer is shorter than the header, or than the header's `totalsize`.
    Truncated,
    /// The blob breaks the DTB format or a binding; the text says how.
    Malformed(&'static str),
    /// Something Keel needs is not described; the text names it.
    Missing(&'static str),
    /// More entries than Keel has room for; the text names them.
    TooMany(&'static str),
    /// Hardware Keel does not drive; the text names it.
    Unsupported(&'static str),
}

impl fmt::Display for DtbError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DtbError::BadMagic => write!(f, "not a device tree: bad magic (expected 0xd00dfeed)"),
            DtbError::BadVersion => write!(f, "device tree is not version-17 compatible"),
            DtbError::Truncated => write!(f, "device tree blob is shorter than its header says"),
            DtbError::Malformed(what) => write!(f, "malformed device tree: {what}"),
            DtbError::Missing(what) => write!(f, "device tree has no {what}"),
            DtbError::TooMany(what) => {
                write!(f, "device tree has more {what} than Keel has room for")
            }
            DtbError::Unsupported(what) => {
                write!(f, "device tree describes unsupported hardware: {what}")
            }
        }
    }
}

/// Deepest node nesting accepted (QEMU virt nests 6 deep, in `/cpus/cpu-map`).
pub const MAX_DEPTH: usize = 16;

const MAGIC: u32 = 0xd00d_feed;
const HEADER_LEN: usize = 40;
/// The format version whose header layout this parser reads.
const VERSION: u32 = 17;

const FDT_BEGIN_NODE: u32 = 1;
const FDT_END_NODE: u32 = 2;
const FDT_PROP: u32 = 3;
const FDT_NOP: u32 = 4;
const FDT_END: u32 = 9;

/// Reads only the 40-byte header: checks magic 0xd00dfeed and version, returns totalsize. Lets
/// the kernel learn how big a slice to make from a raw pointer before calling [`Machine::from_dtb`].
pub fn dtb_total_size(header: &[u8]) -> Result<usize, DtbError> {
    Ok(Header::parse(header)?.totalsize)
}

impl<'a> Machine<'a> {
    /// Validates `blob` (only its first `totalsize` bytes are looked at) and extracts the machine.
    pub fn from_dtb(blob: &'a [u8]) -> Result<Machine<'a>, DtbError> {
        let header = Header::parse(blob)?;
        let blob = blob.get(..header.totalsize).ok_or(DtbError::Truncated)?;
        let tree = Tree::new(blob, &header)?;
        walk(tree, |_| Ok(()))?;
        let root = tree.root()?;

        let gic = find_gic(tree)?;
        let chosen = find_path(root, "/chosen");
        let stdout = match chosen {
            Some(chosen) => stdout_node(root, chosen)?,
            None => None,
        };

        let mut found = Found {
            reserved: memreserve_entries(blob, header.off_mem_rsvmap)?,
            ..Found::default()
        };
        walk(tree, |frames| found.visit(frames, &gic, stdout))?;

        let mut virtio_mmio = found.virtio_mmio;
        virtio_mmio.sort_unstable_by_key(|v| v.region.base);
        let (bootargs, initrd) = match chosen {
            Some(chosen) => (chosen.prop_str("bootargs")?.unwrap_or(""), initrd(chosen)?),
            None => ("", None),
        };
        if found.memory.is_empty() {
            return Err(DtbError::Missing(
                "memory (device_type = \"memory\" node with a non-empty reg)",
            ));
        }
        if found.cpus.is_empty() {
            return Err(DtbError::Missing("cpu nodes under /cpus"));
        }
        Ok(Machine {
            model: root.prop_str("model")?.unwrap_or(""),
            bootargs,
            memory: found.memory,
            reserved: found.reserved,
            cpus: found.cpus,
            gic: gic.gic,
            timer: found
                .timer
                .ok_or(DtbError::Missing("generic timer (arm,armv8-timer) node"))?,
            uart: found
                .uart_stdout
                .or(found.uart_first)
                .ok_or(DtbError::Missing("PL011 UART (arm,pl011) node"))?,
            psci: found.psci,
            initrd,
            smmu: found.smmu,
            pcie_ecam: found.pcie_ecam,
            virtio_mmio,
            dtb_size: header.totalsize,
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Header and blocks

/// The header fields this parser uses (block bounds are checked by `Tree::new`).
struct Header {
    totalsize: usize,
    off_dt_struct: usize,
    off_dt_strings: usize,
    off_mem_rsvmap: usize,
    size_dt_strings: usize,
    size_dt_struct: usize,
}

impl Header {
    fn parse(blob: &[u8]) -> Result<Header, DtbError> {
        let field = |index: usize| be32(blob, index * 4).ok_or(DtbError::Truncated);
        if blob.len() < HEADER_LEN {
            return Err(DtbError::Truncated);
        }
        if field(0)? != MAGIC {
            return Err(DtbError::BadMagic);
        }
        let (version, last_comp_version) = (field(5)?, field(6)?);
        if version < VERSION || last_comp_version > VERSION {
            return Err(DtbError::BadVersion);
        }
        let header = Header {
            totalsize: field(1)? as usize,
            off_dt_struct: field(2)? as usize,
            off_dt_strings: field(3)? as usize,
            off_mem_rsvmap: field(4)? as usize,
            size_dt_strings: field(8)? as usize,
            size_dt_struct: field(9)? as usize,
        };
        if header.totalsize < HEADER_LEN {
            return Err(DtbError::Malformed("totalsize is smaller than the header"));
        }
        Ok(header)
    }
}

/// `offset..offset + size` of a block, if it lies after the header and inside `totalsize`.
fn block(header: &Header, offset: usize, size: usize) -> Option<core::ops::Range<usize>> {
    let end = offset.checked_add(size)?;
    (offset >= HEADER_LEN && end <= header.totalsize).then_some(offset..end)
}

/// The `/memreserve/` entries: (address, size) pairs of big-endian u64s up to a (0, 0) entry.
fn memreserve_entries(blob: &[u8], offset: usize) -> Result<BoundedVec<Region, 16>, DtbError> {
    const BAD: DtbError =
        DtbError::Malformed("memory reservation block is unaligned or unterminated");
    if offset < HEADER_LEN || !offset.is_multiple_of(8) {
        return Err(BAD);
    }
    let mut regions = BoundedVec::new();
    let mut at = offset;
    loop {
        let (base, size) = (be64(blob, at).ok_or(BAD)?, be64(blob, at + 8).ok_or(BAD)?);
        if base == 0 && size == 0 {
            return Ok(regions);
        }
        if size != 0 {
            regions
                .push(Region::checked(base, size)?)
                .map_err(|_| DtbError::TooMany("reserved memory regions"))?;
        }
        at += 16;
    }
}

// ---------------------------------------------------------------------------------------------
// Bounds-checked byte reading

fn be32(bytes: &[u8], at: usize) -> Option<u32> {
    let word = bytes.get(at..at.checked_add(4)?)?;
    Some(u32::from_be_bytes(word.try_into().ok()?))
}

fn be64(bytes: &[u8], at: usize) -> Option<u64> {
    let word = bytes.get(at..at.checked_add(8)?)?;
    Some(u64::from_be_bytes(word.try_into().ok()?))
}

/// The NUL-terminated UTF-8 string starting at `at`, without its NUL.
fn cstr(bytes: &[u8], at: usize) -> Option<&str> {
    let tail = bytes.get(at..)?;
    let len = tail.iter().position(|&b| b == 0)?;
    core::str::from_utf8(tail.get(..len)?).ok()
}

fn align4(offset: usize) -> usize {
    offset.saturating_add(3) & !3
}

/// A big-endian number of `cells` 32-bit cells (0, 1 or 2) at the start of `bytes`.
fn read_cells(bytes: &[u8], cells: usize) -> Option<u64> {
    match cells {
        0 => Some(0),
        1 => be32(bytes, 0).map(u64::from),
        2 => be64(bytes, 0),
        _ => None,
    }
}

// ---------------------------------------------------------------------------------------------
// Structure block

enum Token<'a> {
    BeginNode(&'a str),
    EndNode,
    Prop { name: &'a str, value: &'a [u8] },
    Nop,
    End,
}

/// The structure and strings blocks of a header-checked blob.
#[derive(Clone, Copy)]
struct Tree<'a> {
    structure: &'a [u8],
    strings: &'a [u8],
}

impl<'a> Tree<'a> {
    fn new(blob: &'a [u8], header: &Header) -> Result<Tree<'a>, DtbError> {
        let structure = block(header, header.off_dt_struct, header.size_dt_struct)
            .filter(|range| range.start.is_multiple_of(4))
            .and_then(|range| blob.get(range))
            .ok_or(DtbError::Malformed(
                "structure block is unaligned or lies outside the blob",
            ))?;
        let strings = block(header, header.off_dt_strings, header.size_dt_strings)
            .and_then(|range| blob.get(range))
            .ok_or(DtbError::Malformed("strings block lies outside the blob"))?;
        Ok(Tree { structure, strings })
    }

    /// Decodes the token at `at` and returns it with the offset of the next one (always at
    /// least `at + 4`, 4-byte aligned).
    fn token_at(&self, at: usize) -> Result<(Token<'a>, usize), DtbError> {
        let tag = be32(self.structure, at)
            .ok_or(DtbError::Malformed("structure block ends without FDT_END"))?;
        let body = at + 4;
        match tag {
            FDT_BEGIN_NODE => {
                let name = cstr(self.structure, body)
                    .ok_or(DtbError::Malformed("node name is not NUL-terminated UTF-8"))?;
                Ok((Token::BeginNode(name), align4(body + name.len() + 1)))
            }
            FDT_END_NODE => Ok((Token::EndNode, body)),
            FDT_PROP => {
                const PAST_END: DtbError =
                    DtbError::Malformed("property runs past the structure block");
                let len = be32(self.structure, body).ok_or(PAST_END)? as usize;
                let name_offset = be32(self.structure, body + 4).ok_or(PAST_END)? as usize;
                let start = body + 8;
                let end = start.checked_add(len).ok_or(PAST_END)?;
                let value = self.structure.get(start..end).ok_or(PAST_END)?;
                let name = cstr(self.strings, name_offset).ok_or(DtbError::Malformed(
                    "property name is not a NUL-terminated string in the strings block",
                ))?;
                Ok((Token::Prop { name, value }, align4(end)))
            }
            FDT_NOP => Ok((Token::Nop, body)),
            FDT_END => Ok((Token::End, body)),
            _ => Err(DtbError::Malformed("unknown token in the structure block")),
        }
    }

    /// The root node: the first FDT_BEGIN_NODE after any NOPs.
    fn root(&self) -> Result<Node<'a>, DtbError> {
        let mut at = 0;
        loop {
            match self.token_at(at)? {
                (Token::Nop, next) => at = next,
                (Token::BeginNode(name), next) => {
                    return Ok(Node {
                        tree: *self,
                        name,
                        props_at: next,
                    });
                }
                _ => {
                    return Err(DtbError::Malformed(
                        "structure block does not start with the root node",
                    ));
                }
            }
        }
    }

    /// Offset just past the FDT_END_NODE that closes the node whose body starts at `at`.
    fn skip_node(&self, mut at: usize) -> Option<usize> {
        let mut depth = 1usize;
        loop {
            let (token, next) = self.token_at(at).ok()?;
            at = next;
            match token {
                Token::BeginNode(_) => depth += 1,
                Token::EndNode => {
                    depth -= 1;
                    if depth == 0 {
                        return Some(at);
                    }
                }
                Token::End => return None,
                Token::Prop { .. } | Token::Nop => {}
            }
        }
    }
}

/// A node: its name and where its properties start. Identity is `props_at`.
#[derive(Clone, Copy)]
struct Node<'a> {
    tree: Tree<'a>,
    name: &'a str,
    props_at: usize,
}

impl<'a> Node<'a> {
    /// The node's own properties. Stops quietly at anything malformed; `walk` has reported it.
    fn props(self) -> impl Iterator<Item = (&'a str, &'a [u8])> {
        let mut at = self.props_at;
        core::iter::from_fn(move || {
            loop {
                let (token, next) = self.tree.token_at(at).ok()?;
                at = next;
                match token {
                    Token::Nop => {}
                    Token::Prop { name, value } => return Some((name, value)),
                    _ => return None,
                }
            }
        })
    }

    fn prop(self, name: &str) -> Option<&'a [u8]> {
        self.props()
            .find(|&(n, _)| n == name)
            .map(|(_, value)| value)
    }

    /// A string property, up to its first NUL.
    fn prop_str(self, name: &str) -> Result<Option<&'a str>, DtbError> {
        let Some(value) = self.prop(name) else {
            return Ok(None);
        };
        cstr(value, 0).map(Some).ok_or(DtbError::Malformed(
            "string property is not NUL-terminated UTF-8",
        ))
    }

    /// A one-cell property.
    fn prop_u32(self, name: &str) -> Result<Option<u32>, DtbError> {
        match self.prop(name) {
            None => Ok(None),
            Some(value) if value.len() == 4 => Ok(be32(value, 0)),
            Some(_) => Err(DtbError::Malformed("one-cell property is not 4 bytes long")),
        }
    }

    /// Whether one of the strings of `compatible` is `which`.
    fn is_compatible(self, which: &str) -> bool {
        self.prop("compatible").is_some_and(|list| {
            list.split(|&b| b == 0)
                .any(|entry| entry == which.as_bytes())
        })
    }

    fn has_device_type(self, which: &str) -> bool {
        self.prop("device_type").and_then(|value| cstr(value, 0)) == Some(which)
    }

    /// `status` absent, `"okay"` or `"ok"`.
    fn is_enabled(self) -> bool {
        matches!(
            self.prop("status").and_then(|value| cstr(value, 0)),
            None | Some("okay") | Some("ok")
        )
    }

    fn phandle(self) -> Result<Option<u32>, DtbError> {
        Ok(self
            .prop_u32("phandle")?
            .or(self.prop_u32("linux,phandle")?))
    }

    /// Direct children, in order. Stops quietly at anything malformed.
    fn children(self) -> impl Iterator<Item = Node<'a>> {
        let mut cursor = Some(self.props_at);
        core::iter::from_fn(move || {
            loop {
                let (token, next) = self.tree.token_at(cursor?).ok()?;
                match token {
                    Token::Nop | Token::Prop { .. } => cursor = Some(next),
                    Token::BeginNode(name) => {
                        cursor = self.tree.skip_node(next);
                        return Some(Node {
                            tree: self.tree,
                            name,
                            props_at: next,
                        });
                    }
                    Token::EndNode | Token::End => {
                        cursor = None;
                        return None;
                    }
                }
            }
        })
    }
}

/// The node at an absolute `path`; a component without `@` matches a node name up to its `@`.
fn find_path<'a>(root: Node<'a>, path: &str) -> Option<Node<'a>> {
    let rest = path.strip_prefix('/')?;
    let mut node = root;
    for component in rest.split('/').filter(|c| !c.is_empty()) {
        node = node.children().find(|child| {
            child.name == component
                || (!component.contains('@') && child.name.split('@').next() == Some(component))
        })?;
    }
    Some(node)
}

/// A node seen during `walk`, with what its descendants inherit from it.
#[derive(Clone, Copy)]
struct Frame<'a> {
    node: Node<'a>,
    /// `#address-cells` / `#size-cells` for this node's children.
    address_cells: u32,
    size_cells: u32,
    /// This node's `ranges`, if any.
    ranges: Option<&'a [u8]>,
    /// `interrupt-parent` of this node or its nearest ancestor that has one.
    interrupt_parent: Option<u32>,
    /// Whether a child node has been seen (properties may not follow one).
    has_children: bool,
}

impl<'a> Frame<'a> {
    fn new(node: Node<'a>, parent: Option<&Frame<'a>>) -> Result<Frame<'a>, DtbError> {
        Ok(Frame {
            node,
            address_cells: node.prop_u32("#address-cells")?.unwrap_or(2),
            size_cells: node.prop_u32("#size-cells")?.unwrap_or(1),
            ranges: node.prop("ranges"),
            interrupt_parent: match node.prop_u32("interrupt-parent")? {
                Some(phandle) => Some(phandle),
                None => parent.and_then(|p| p.interrupt_parent),
            },
            has_children: false,
        })
    }
}

/// Walks the whole structure block depth-first, checking the token grammar, and calls `visit`
/// for every node with its ancestry (`frames[0]` is the root, the last frame the node itself).
fn walk<'a>(
    tree: Tree<'a>,
    mut visit: impl FnMut(&[Frame<'a>]) -> Result<(), DtbError>,
) -> Result<(), DtbError> {
    let mut stack: BoundedVec<Frame<'a>, MAX_DEPTH> = BoundedVec::new();
    let mut root_closed = false;
    let mut at = 0;
    loop {
        let (token, next) = tree.token_at(at)?;
        match token {
            Token::Nop => {}
            Token::BeginNode(name) => {
                if root_closed {
                    return Err(DtbError::Malformed("node after the root node"));
                }
                if let Some(parent) = stack.last_mut() {
                    parent.has_children = true;
                }
                let frame = Frame::new(
                    Node {
                        tree,
                        name,
                        props_at: next,
                    },
                    stack.last(),
                )?;
                stack
                    .push(frame)
                    .map_err(|_| DtbError::Malformed("nodes nested too deeply"))?;
                visit(&stack)?;
            }
            Token::Prop { .. } => match stack.last() {
                None => return Err(DtbError::Malformed("property outside any node")),
                Some(frame) if frame.has_children => {
                    return Err(DtbError::Malformed("property after a child node"));
                }
                Some(_) => {}
            },
            Token::EndNode => {
                stack
                    .pop()
                    .ok_or(DtbError::Malformed("FDT_END_NODE without a node to end"))?;
                root_closed = stack.is_empty();
            }
            Token::End if root_closed => return Ok(()),
            Token::End => {
                return Err(DtbError::Malformed(
                    "FDT_END inside a node or before the root node",
                ));
            }
        }
        at = next;
    }
}

// ---------------------------------------------------------------------------------------------
// Addresses and interrupts

/// The `reg` entries of `frames.last()`, decoded with its parent's cell counts.
struct Reg<'a> {
    raw: &'a [u8],
    address_cells: usize,
    size_cells: usize,
}

impl Reg<'_> {
    fn of<'a>(frames: &[Frame<'a>]) -> Result<Option<Reg<'a>>, DtbError> {
        let [.., parent, node] = frames else {
            return Ok(None);
        };
        let Some(raw) = node.node.prop("reg") else {
            return Ok(None);
        };
        let (address_cells, size_cells) =
            (parent.address_cells as usize, parent.size_cells as usize);
        if !(1..=2).contains(&address_cells) || size_cells > 2 {
            return Err(DtbError::Unsupported(
                "#address-cells outside 1..=2 or #size-cells above 2",
            ));
        }
        if !raw.len().is_multiple_of((address_cells + size_cells) * 4) {
            return Err(DtbError::Malformed(
                "reg is not a whole number of (address, size) entries",
            ));
        }
        Ok(Some(Reg {
            raw,
            address_cells,
            size_cells,
        }))
    }

    fn len(&self) -> usize {
        self.raw.len() / ((self.address_cells + self.size_cells) * 4)
    }

    /// Entry `index` as (address in the parent's space, size).
    fn entry(&self, index: usize) -> Option<(u64, u64)> {
        let stride = (self.address_cells + self.size_cells) * 4;
        let entry = self.raw.get(index.checked_mul(stride)?..)?;
        let address = read_cells(entry, self.address_cells)?;
        let size = read_cells(entry.get(self.address_cells * 4..)?, self.size_cells)?;
        Some((address, size))
    }
}

/// Translates `address`, in the address space of `frames.last()`'s parent, to a CPU address
/// through the `ranges` of every ancestor below the root.
fn translate(frames: &[Frame<'_>], mut address: u64) -> Result<u64, DtbError> {
    let ancestors = frames.len().saturating_sub(1);
    for level in (1..ancestors).rev() {
        let (Some(bus), Some(up)) = (frames.get(level), frames.get(level - 1)) else {
            break;
        };
        let Some(ranges) = bus.ranges else {
            return Err(DtbError::Malformed(
                "device sits under a bus with no ranges (not CPU-addressable)",
            ));
        };
        if ranges.is_empty() {
            continue;
        }
        let (child_cells, parent_cells, size_cells) = (
            bus.address_cells as usize,
            up.address_cells as usize,
            bus.size_cells as usize,
        );
        if child_cells > 2 || parent_cells > 2 || size_cells > 2 {
            return Err(DtbError::Unsupported(
                "ranges with more than two cells per field",
            ));
        }
        let stride = (child_cells + parent_cells + size_cells) * 4;
        if stride == 0 || !ranges.len().is_multiple_of(stride) {
            return Err(DtbError::Malformed(
                "ranges is not a whole number of entries",
            ));
        }
        address = ranges
            .chunks_exact(stride)
            .find_map(|entry| {
                let child = read_cells(entry, child_cells)?;
                let parent = read_cells(entry.get(child_cells * 4..)?, parent_cells)?;
                let size = read_cells(entry.get((child_cells + parent_cells) * 4..)?, size_cells)?;
                let offset = address.checked_sub(child)?;
                (offset < size)
                    .then(|| parent.checked_add(offset))
                    .flatten()
            })
            .ok_or(DtbError::Malformed(
                "device address lies outside its bus's ranges",
            ))?;
    }
    Ok(address)
}

/// `reg` entry `index` of `frames.last()` as a CPU-address region, if the entry exists.
fn reg_region(frames: &[Frame<'_>], index: usize) -> Result<Option<Region>, DtbError> {
    let Some(reg) = Reg::of(frames)? else {
        return Ok(None);
    };
    let Some((address, size)) = reg.entry(index) else {
        return Ok(None);
    };
    Ok(Some(Region::checked(translate(frames, address)?, size)?))
}

/// What interrupt specifiers of the GICv3 look like.
struct GicSpec {
    phandle: Option<u32>,
    /// `#interrupt-cells`: 3, or 4 with a PPI-partition phandle.
    cells: usize,
}

impl GicSpec {
    /// Specifier `index` of `raw` (an `interrupts` value of this GIC) as an INTID.
    fn intid(&self, raw: &[u8], index: usize) -> Result<Option<u32>, DtbError> {
        let stride = self.cells * 4;
        if !raw.len().is_multiple_of(stride) {
            return Err(DtbError::Malformed(
                "interrupts is not a whole number of GIC specifiers",
            ));
        }
        let Some(spec) = index.checked_mul(stride).and_then(|at| raw.get(at..)) else {
            return Ok(None);
        };
        let (Some(kind), Some(number)) = (be32(spec, 0), be32(spec, 4)) else {
            return Ok(None);
        };
        let (first, count) = match kind {
            0 => (32, 988),    // SPI
            1 => (16, 16),     // PPI
            2 => (4096, 1024), // extended SPI
            3 => (1056, 64),   // extended PPI
            _ => {
                return Err(DtbError::Malformed(
                    "GIC interrupt type is not SPI, PPI, ESPI or EPPI",
                ));
            }
        };
        if number >= count {
            return Err(DtbError::Malformed(
                "GIC interrupt number out of range for its type",
            ));
        }
        Ok(Some(first + number))
    }

    /// Interrupt `index` of `frames.last()` as an INTID; its interrupt parent must be this GIC.
    fn interrupt_of(&self, frames: &[Frame<'_>], index: usize) -> Result<Option<u32>, DtbError> {
        let Some(frame) = frames.last() else {
            return Ok(None);
        };
        let Some(raw) = frame.node.prop("interrupts") else {
            return Ok(None);
        };
        match (frame.interrupt_parent, self.phandle) {
            (Some(parent), Some(gic)) if parent == gic => {}
            (None, _) => {
                return Err(DtbError::Malformed(
                    "node has interrupts but no interrupt-parent",
                ));
            }
            _ => {
                return Err(DtbError::Unsupported(
                    "interrupt parent other than the GICv3",
                ));
            }
        }
        self.intid(raw, index)
    }
}

struct FoundGic {
    gic: Gic,
    spec: GicSpec,
}

/// Compatibles of the GICv2-family controllers, reported as Unsupported rather than Missing.
const GICV2_COMPATIBLES: [&str; 5] = [
    "arm,gic-400",
    "arm,cortex-a15-gic",
    "arm,cortex-a9-gic",
    "arm,cortex-a7-gic",
    "arm,arm11mp-gic",
];

fn find_gic(tree: Tree<'_>) -> Result<FoundGic, DtbError> {
    let mut found = None;
    let mut saw_gicv2 = false;
    walk(tree, |frames| {
        let Some(frame) = frames.last() else {
            return Ok(());
        };
        let node = frame.node;
        if !node.is_enabled() || found.is_some() {
            return Ok(());
        }
        if GICV2_COMPATIBLES.iter().any(|c| node.is_compatible(c)) {
            saw_gicv2 = true;
        }
        if !node.is_compatible("arm,gic-v3") {
            return Ok(());
        }
        let dist = reg_region(frames, 0)?
            .ok_or(DtbError::Malformed("GICv3 node has no distributor reg"))?;
        let regions = node.prop_u32("#redistributor-regions")?.unwrap_or(1);
        if regions == 0 {
            return Err(DtbError::Malformed("GICv3 #redistributor-regions is zero"));
        }
        let mut redists = BoundedVec::new();
        for index in 1..=regions as usize {
            let region = reg_region(frames, index)?.ok_or(DtbError::Malformed(
                "GICv3 reg has fewer redistributor regions than it declares",
            ))?;
            redists
                .push(region)
                .map_err(|_| DtbError::TooMany("GICv3 redistributor regions"))?;
        }
        let cells = match node.prop_u32("#interrupt-cells")? {
            Some(cells @ (3 | 4)) => cells as usize,
            Some(_) => {
                return Err(DtbError::Unsupported(
                    "GICv3 #interrupt-cells other than 3 or 4",
                ));
            }
            None => return Err(DtbError::Malformed("GICv3 node has no #interrupt-cells")),
        };
        let spec = GicSpec {
            phandle: node.phandle()?,
            cells,
        };
        // The GIC's own `interrupts` (the maintenance interrupt) are always its own specifiers.
        let maintenance_intid = match node.prop("interrupts") {
            Some(raw) => spec.intid(raw, 0)?,
            None => None,
        };
        found = Some(FoundGic {
            gic: Gic {
                dist,
                redists,
                maintenance_intid,
            },
            spec,
        });
        Ok(())
    })?;
    match found {
        Some(found) => Ok(found),
        None if saw_gicv2 => Err(DtbError::Unsupported(
            "GICv2 interrupt controller (Keel needs arm,gic-v3)",
        )),
        None => Err(DtbError::Missing("GICv3 (arm,gic-v3) node")),
    }
}

// ---------------------------------------------------------------------------------------------
// /chosen

/// The node `stdout-path` names (through `/aliases` if it is an alias), ignoring `:options`.
fn stdout_node<'a>(root: Node<'a>, chosen: Node<'a>) -> Result<Option<Node<'a>>, DtbError> {
    let path = match chosen.prop_str("stdout-path")? {
        Some(path) => path,
        None => match chosen.prop_str("linux,stdout-path")? {
            Some(path) => path,
            None => return Ok(None),
        },
    };
    let path = path.split(':').next().unwrap_or(path);
    if path.starts_with('/') {
        return Ok(find_path(root, path));
    }
    let Some(aliases) = find_path(root, "/aliases") else {
        return Ok(None);
    };
    Ok(aliases
        .prop_str(path)?
        .and_then(|target| find_path(root, target)))
}

fn initrd(chosen: Node<'_>) -> Result<Option<Region>, DtbError> {
    let address = |name| match chosen.prop(name) {
        None => Ok(None),
        Some(value) => match value.len() {
            4 => Ok(read_cells(value, 1)),
            8 => Ok(read_cells(value, 2)),
            _ => Err(DtbError::Malformed(
                "initrd address is neither 32 nor 64 bits",
            )),
        },
    };
    match (address("linux,initrd-start")?, address("linux,initrd-end")?) {
        (None, None) => Ok(None),
        (Some(start), Some(end)) if end >= start => Ok((end > start).then_some(Region {
            base: start,
            size: end - start,
        })),
        (Some(_), Some(_)) => Err(DtbError::Malformed("initrd ends before it starts")),
        _ => Err(DtbError::Malformed(
            "only one of linux,initrd-start and linux,initrd-end",
        )),
    }
}

// ---------------------------------------------------------------------------------------------
// Collecting devices

/// What the second walk gathers.
#[derive(Default)]
struct Found {
    memory: BoundedVec<Region, 16>,
    reserved: BoundedVec<Region, 16>,
    cpus: BoundedVec<Cpu, 64>,
    timer: Option<Timer>,
    uart_first: Option<Uart>,
    uart_stdout: Option<Uart>,
    psci: Option<PsciConduit>,
    smmu: Option<Smmu>,
    pcie_ecam: Option<Region>,
    virtio_mmio: BoundedVec<VirtioMmio, 32>,
}

impl Found {
    fn visit(
        &mut self,
        frames: &[Frame<'_>],
        gic: &FoundGic,
        stdout: Option<Node<'_>>,
    ) -> Result<(), DtbError> {
        let Some(node) = frames.last().map(|frame| frame.node) else {
            return Ok(());
        };
        let parent_name = frames
            .len()
            .checked_sub(2)
            .and_then(|i| frames.get(i))
            .map(|f| f.node.name);
        if frames.len() == 3 && parent_name == Some("reserved-memory") && node.is_enabled() {
            return push_regions(&mut self.reserved, frames, "reserved memory regions");
        }
        if frames.len() == 3 && parent_name == Some("cpus") && node.has_device_type("cpu") {
            if node
                .prop_str("status")?
                .is_some_and(|status| status.starts_with("fail"))
            {
                return Ok(());
            }
            let reg = Reg::of(frames)?.ok_or(DtbError::Malformed("cpu node has no reg"))?;
            let (mpidr, _) = reg
                .entry(0)
                .ok_or(DtbError::Malformed("cpu node has an empty reg"))?;
            return self
                .cpus
                .push(Cpu { mpidr })
                .map_err(|_| DtbError::TooMany("CPUs"));
        }
        if !node.is_enabled() {
            return Ok(());
        }
        if node.has_device_type("memory") {
            return push_regions(&mut self.memory, frames, "memory regions");
        }

        let spec = &gic.spec;
        let intid = |index: usize, what: &'static str| -> Result<u32, DtbError> {
            spec.interrupt_of(frames, index)?
                .ok_or(DtbError::Malformed(what))
        };
        if self.timer.is_none()
            && (node.is_compatible("arm,armv8-timer") || node.is_compatible("arm,armv7-timer"))
        {
            const SHORT: &str = "timer lists fewer than four interrupts";
            self.timer = Some(Timer {
                sec_phys: intid(0, SHORT)?,
                phys: intid(1, SHORT)?,
                virt: intid(2, SHORT)?,
                hyp_phys: intid(3, SHORT)?,
                hyp_virt: spec.interrupt_of(frames, 4)?,
            });
        } else if node.is_compatible("arm,pl011") {
            let region =
                reg_region(frames, 0)?.ok_or(DtbError::Malformed("PL011 node has no reg"))?;
            let uart = Uart {
                base: region.base,
                size: region.size,
                intid: intid(0, "PL011 node has no interrupts")?,
            };
            if stdout.is_some_and(|s| s.props_at == node.props_at) {
                self.uart_stdout = Some(uart);
            }
            self.uart_first.get_or_insert(uart);
        } else if self.psci.is_none() && node.prop("compatible").is_some_and(is_psci) {
            self.psci = match node.prop_str("method")? {
                Some("smc") => Some(PsciConduit::Smc),
                Some("hvc") => Some(PsciConduit::Hvc),
                _ => return Err(DtbError::Malformed("PSCI method is neither smc nor hvc")),
            };
        } else if self.smmu.is_none() && node.is_compatible("arm,smmu-v3") {
            let region =
                reg_region(frames, 0)?.ok_or(DtbError::Malformed("SMMUv3 node has no reg"))?;
            self.smmu = Some(Smmu {
                region,
                stage2: false,
            });
        } else if self.pcie_ecam.is_none() && node.is_compatible("pci-host-ecam-generic") {
            self.pcie_ecam = Some(
                reg_region(frames, 0)?.ok_or(DtbError::Malformed("PCIe host node has no reg"))?,
            );
        } else if node.is_compatible("virtio,mmio") {
            let region =
                reg_region(frames, 0)?.ok_or(DtbError::Malformed("virtio-mmio node has no reg"))?;
            let transport = VirtioMmio {
                region,
                intid: intid(0, "virtio-mmio node has no interrupts")?,
            };
            self.virtio_mmio
                .push(transport)
                .map_err(|_| DtbError::TooMany("virtio-mmio transports"))?;
        }
        Ok(())
    }
}

/// Whether a `compatible` list names a PSCI implementation (`arm,psci`, `arm,psci-0.2`, ...).
fn is_psci(compatible: &[u8]) -> bool {
    compatible
        .split(|&b| b == 0)
        .any(|entry| entry == b"arm,psci" || entry.starts_with(b"arm,psci-"))
}

/// Pushes every non-empty `reg` entry of `frames.last()` as a CPU-address region.
fn push_regions<const N: usize>(
    into: &mut BoundedVec<Region, N>,
    frames: &[Frame<'_>],
    what: &'static str,
) -> Result<(), DtbError> {
    let Some(reg) = Reg::of(frames)? else {
        return Ok(());
    };
    for index in 0..reg.len() {
        let Some(region) = reg_region(frames, index)? else {
            break;
        };
        if region.size != 0 {
            into.push(region).map_err(|_| DtbError::TooMany(what))?;
        }
    }
    Ok(())
}
