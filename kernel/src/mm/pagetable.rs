//! VMSAv8-64 translation tables: 4 KiB granule, four levels (0-3), 48-bit input addresses.
//!
//! This module owns the layout of translation tables and one walker that builds, changes, reads and
//! tears them down. The walker is generic over a [`DescriptorFormat`]: [`Stage1`] serves the kernel's
//! own tables (TTBR1_EL2, upper VA half) and user tables (TTBR0_EL2, lower half) of the EL2&0 regime
//! (HCR_EL2.E2H = 1); [`Stage2`] serves the IPA-to-PA tables of virtual machines. Level L indexes input
//! address bits `[47 - 9L : 39 - 9L]` (L0 47:39, L1 38:30, L2 29:21, L3 20:12); only bits 47:0 are
//! used for indexing. Table frames come from, go back to and are reached through a [`TableMemory`],
//! so the module is arch-neutral, contains no `unsafe`, and is tested on the host over fake memory.
//!
//! It never touches the TLB, system registers or the frames that mappings point to: TLB maintenance
//! after `unmap`, `protect` and a failed `map` is the caller's. Table frames are handed to
//! [`TableMemory::free_table`] as soon as they are unlinked, while a hardware walker may still hold
//! them in its walk caches until that TLB maintenance; a `TableMemory` behind live tables must not
//! reuse a freed frame before the invalidation (for example, it queues frees until the TLBI).
//!
//! Invariants:
//! - Every operation validates all of its arguments and checks the whole range before it changes a
//!   descriptor; a call that returns an error has left every mapping as it was (see [`PageTable::map`]
//!   for the one case, running out of table memory, where work is undone rather than never done).
//! - Every table below the root that this module leaves behind holds at least one valid descriptor:
//!   `unmap` (and the undoing of a failed `map`) frees tables that become empty.
//! - Leaves are 1 GiB blocks at level 1, 2 MiB blocks at level 2 or 4 KiB pages at level 3; no
//!   descriptor with bit 0 set is ever written at level 0 except a table descriptor.
//! - `map` never replaces a valid descriptor, so it needs no break-before-make; it only ever writes
//!   invalid entries, and it links a chain of new tables into the live tree only once the chain is
//!   complete.
#![forbid(unsafe_code)]

use core::fmt;
use core::marker::PhantomData;
use core::ops::Range;

/// Size of a translation granule, a page and a table frame.
pub const PAGE_SIZE: u64 = 4096;
/// Size of the region a level-2 block descriptor maps.
pub const L2_BLOCK_SIZE: u64 = 2 << 20;
/// Size of the region a level-1 block descriptor maps.
pub const L1_BLOCK_SIZE: u64 = 1 << 30;
/// Descriptors in one table.
pub const ENTRIES_PER_TABLE: usize = 512;

/// MAIR index (stage-1 AttrIndx) of Device-nGnRE memory.
pub const MAIR_IDX_DEVICE_NGNRE: u64 = 0;
/// MAIR index of Normal memory, inner and outer write-back, read- and write-allocate.
pub const MAIR_IDX_NORMAL_WB: u64 = 1;
/// MAIR index of Normal memory, inner and outer non-cacheable.
pub const MAIR_IDX_NORMAL_NC: u64 = 2;
/// MAIR index of Device-nGnRnE memory (never produced by [`Stage1`]; decoded as [`MemType::Device`]).
pub const MAIR_IDX_DEVICE_NGNRNE: u64 = 3;
/// The MAIR_EL2 value the `MAIR_IDX_*` indices assume: Attr0 = 0x04 (Device-nGnRE),
/// Attr1 = 0xFF (Normal WB RW-allocate), Attr2 = 0x44 (Normal NC), Attr3 = 0x00 (Device-nGnRnE).
pub const MAIR_VALUE: u64 = 0x0000_0000_0044_FF04;

const LEVELS: usize = 4;
/// Output address bits 47:12 of a descriptor.
const OA_MASK: u64 = 0x0000_FFFF_FFFF_F000;
/// Highest output (physical) address a descriptor can hold.
const PA_LAST: u64 = (1 << 48) - 1;
const INPUT_MASK: u64 = (1 << 48) - 1;

const VALID: u64 = 1 << 0;
/// Bit 1: table descriptor at levels 0-2, page descriptor at level 3; clear for a block.
const TYPE_TABLE_OR_PAGE: u64 = 1 << 1;
const SH_INNER: u64 = 0b11 << 8;
const AF: u64 = 1 << 10;

const S1_ATTR_INDX_SHIFT: u32 = 2;
const S1_ATTR_INDX_MASK: u64 = 0b111 << S1_ATTR_INDX_SHIFT;
/// AP[1]: EL0 may access.
const S1_AP_EL0: u64 = 1 << 6;
/// AP[2]: read-only.
const S1_AP_RO: u64 = 1 << 7;
const S1_NG: u64 = 1 << 11;
const S1_PXN: u64 = 1 << 53;
const S1_UXN: u64 = 1 << 54;

const S2_MEMATTR_SHIFT: u32 = 2;
const S2_MEMATTR_MASK: u64 = 0b1111 << S2_MEMATTR_SHIFT;
const S2_MEMATTR_NORMAL_WB: u64 = 0b1111;
const S2_MEMATTR_NORMAL_NC: u64 = 0b0101;
const S2_MEMATTR_DEVICE_NGNRE: u64 = 0b0001;
const S2AP_READ: u64 = 1 << 6;
const S2AP_WRITE: u64 = 1 << 7;
const S2_XN_MASK: u64 = 0b11 << 53;
/// XN = 0b10: execute-never at EL1 and EL0.
const S2_XN_NEVER: u64 = 0b10 << 53;

/// Where table frames come from and how the walker reaches them. The kernel implements it over its
/// frame allocator and direct map; tests over a Vec-backed fake memory.
pub trait TableMemory {
    /// A zeroed 4 KiB frame for a table, by physical address; None when memory is exhausted.
    fn alloc_table(&mut self) -> Option<u64>;
    /// Gives a table frame back.
    fn free_table(&mut self, pa: u64);
    /// The 512 descriptors of the table at physical address `pa`.
    fn table(&mut self, pa: u64) -> &mut [u64; 512];
}

/// Memory type of a mapping.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MemType {
    /// Normal memory, inner and outer write-back cacheable.
    Normal,
    /// Normal memory, non-cacheable.
    NormalNonCacheable,
    /// Device-nGnRE memory. Never executable: both formats force execute-never for it.
    Device,
}

/// What a mapping allows and how memory behind it behaves.
///
/// Not every value is representable in every format; decoding returns the nearest representable
/// value. [`Stage1`]: `read` is implied (a valid stage-1 leaf is always readable, so it decodes as
/// true) and Device memory is never executable. [`Stage2`]: `user` and `global` do not exist (they
/// decode as true) and Device memory is never executable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Attrs {
    /// Memory type.
    pub mem: MemType,
    /// Readable (stage 2: S2AP read; stage 1: always).
    pub read: bool,
    /// Writable (stage 1: by every level that can access it).
    pub write: bool,
    /// Executable: stage 1 by EL0 for a user mapping, by EL2 otherwise; stage 2 by the guest.
    pub exec: bool,
    /// Stage 1: accessible from EL0 (and then never executable by the kernel).
    pub user: bool,
    /// Stage 1: global, i.e. not tagged with an ASID (nG clear).
    pub global: bool,
}

impl Attrs {
    /// Kernel code: read, execute.
    pub const KERNEL_TEXT: Attrs = Attrs::kernel(MemType::Normal, false, true);
    /// Kernel read-only data.
    pub const KERNEL_RODATA: Attrs = Attrs::kernel(MemType::Normal, false, false);
    /// Kernel read-write data.
    pub const KERNEL_DATA: Attrs = Attrs::kernel(MemType::Normal, true, false);
    /// Kernel read-write non-cacheable data (buffers shared with non-coherent devices).
    pub const KERNEL_DATA_NC: Attrs = Attrs::kernel(MemType::NormalNonCacheable, true, false);
    /// Kernel device registers: read-write, Device-nGnRE, never executable.
    pub const DEVICE: Attrs = Attrs::kernel(MemType::Device, true, false);
    /// User read-only data, not global.
    pub const USER_RO: Attrs = Attrs::user(false, false);
    /// User read-write data, not global.
    pub const USER_RW: Attrs = Attrs::user(true, false);
    /// User code (read, execute), not global.
    pub const USER_RX: Attrs = Attrs::user(false, true);
    /// Guest RAM in a stage-2 table: read, write, execute, Normal write-back.
    pub const GUEST_RAM: Attrs = Attrs {
        mem: MemType::Normal,
        read: true,
        write: true,
        exec: true,
        user: true,
        global: true,
    };
    /// A device passed through to a guest in a stage-2 table: read, write, Device-nGnRE.
    pub const GUEST_DEVICE: Attrs = Attrs {
        mem: MemType::Device,
        read: true,
        write: true,
        exec: false,
        user: true,
        global: true,
    };

    /// A global kernel (EL2-only) mapping.
    pub const fn kernel(mem: MemType, write: bool, exec: bool) -> Attrs {
        Attrs {
            mem,
            read: true,
            write,
            exec,
            user: false,
            global: true,
        }
    }

    /// A non-global, EL0-accessible Normal write-back mapping.
    pub const fn user(write: bool, exec: bool) -> Attrs {
        Attrs {
            mem: MemType::Normal,
            read: true,
            write,
            exec,
            user: true,
            global: false,
        }
    }
}

/// Why a page-table operation was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MapError {
    /// An address or size is not 4 KiB aligned, or the physical range does not fit the 48-bit
    /// output address.
    Misaligned,
    /// An input address is outside the format's address space (stage 1: bits 63:48 neither all
    /// zeros (TTBR0) nor all ones (TTBR1); stage 2: bits 63:48 not zero), or the range wraps or
    /// crosses from one half to the other.
    NonCanonical,
    /// Part of the range is already mapped.
    AlreadyMapped,
    /// Part of the range is not mapped.
    NotMapped,
    /// A table frame could not be allocated.
    OutOfMemory,
    /// The range covers only part of a block mapping.
    SplitsBlock,
}

impl fmt::Display for MapError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            MapError::Misaligned => "address or size not 4 KiB aligned or out of range",
            MapError::NonCanonical => "input address outside the translated address space",
            MapError::AlreadyMapped => "range already mapped",
            MapError::NotMapped => "range not mapped",
            MapError::OutOfMemory => "no frame for a translation table",
            MapError::SplitsBlock => "range covers part of a block mapping",
        })
    }
}

/// What a descriptor is, given the level of the table it sits in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DescriptorKind {
    /// Translation fault: bit 0 clear, or a reserved encoding (bit 1 clear at level 0 or 3).
    Invalid,
    /// Points to the next-level table (levels 0-2).
    Table,
    /// Maps memory: a block at level 1 or 2, a page at level 3.
    Leaf,
}

/// A VMSAv8-64 descriptor format. Implementors provide the leaf attribute bits and the input address
/// space; the layout shared by every format (valid and type bits, output address, table descriptors)
/// comes from the provided methods, which implementors should not override.
pub trait DescriptorFormat {
    /// The attribute bits of a leaf for `attrs`. Bits 1:0 and 47:12 of the result are ignored.
    fn encode_attrs(attrs: Attrs) -> u64;

    /// The attributes of a valid leaf descriptor.
    fn decode_attrs(desc: u64) -> Attrs;

    /// Checks that `addr` is in this format's input address space and returns the 48 bits the
    /// walk indexes with; [`MapError::NonCanonical`] otherwise.
    fn input_address(addr: u64) -> Result<u64, MapError>;

    /// A leaf descriptor mapping `pa` with `attrs`: a block at level 1 or 2, a page at level 3.
    /// `pa` must be aligned to the level's block size (low bits are dropped).
    ///
    /// # Panics
    /// If `level` is not 1, 2 or 3: with a 4 KiB granule no other level holds leaves.
    fn encode_leaf(pa: u64, attrs: Attrs, level: usize) -> u64 {
        assert!(
            (1..LEVELS).contains(&level),
            "invariant: leaf descriptors exist only at levels 1-3 with a 4 KiB granule"
        );
        let kind = if level == LEVELS - 1 {
            TYPE_TABLE_OR_PAGE
        } else {
            0
        };
        (Self::encode_attrs(attrs) & !(OA_MASK | VALID | TYPE_TABLE_OR_PAGE))
            | (pa & OA_MASK & !(level_size(level) - 1))
            | kind
            | VALID
    }

    /// A table descriptor pointing to the table frame at `pa`.
    fn encode_table(pa: u64) -> u64 {
        (pa & OA_MASK) | TYPE_TABLE_OR_PAGE | VALID
    }

    /// What `desc` is in a table at `level`.
    fn kind(desc: u64, level: usize) -> DescriptorKind {
        let table_or_page = desc & TYPE_TABLE_OR_PAGE != 0;
        match (desc & VALID != 0, level, table_or_page) {
            (false, _, _) => DescriptorKind::Invalid,
            (true, 0..=2, true) => DescriptorKind::Table,
            (true, 1..=2, false) | (true, 3, true) => DescriptorKind::Leaf,
            _ => DescriptorKind::Invalid,
        }
    }

    /// The output address of a table or leaf descriptor at `level`.
    fn output_address(desc: u64, level: usize) -> u64 {
        match Self::kind(desc, level) {
            DescriptorKind::Leaf => desc & OA_MASK & !(level_size(level) - 1),
            _ => desc & OA_MASK,
        }
    }

    /// The output address and attributes of a leaf at `level`; None if `desc` is not a leaf there.
    fn decode_leaf(desc: u64, level: usize) -> Option<(u64, Attrs)> {
        match Self::kind(desc, level) {
            DescriptorKind::Leaf => {
                Some((Self::output_address(desc, level), Self::decode_attrs(desc)))
            }
            _ => None,
        }
    }
}

/// Stage-1 format of the EL2&0 regime with HCR_EL2.E2H = 1 (same as EL1&0), MAIR as [`MAIR_VALUE`].
///
/// Encoding: AttrIndx (bits 4:2) from [`MemType`]; AP[2] (bit 7) = !write; AP[1] (bit 6) = user;
/// SH = 0b11; AF; nG (bit 11) = !global. A user mapping is always PXN and is UXN unless `exec`; a
/// kernel mapping is always UXN and is PXN unless `exec`; Device memory is always PXN and UXN.
/// W^X is the caller's policy: writable-and-executable is encoded as asked.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stage1;

impl DescriptorFormat for Stage1 {
    fn encode_attrs(attrs: Attrs) -> u64 {
        let index = match attrs.mem {
            MemType::Normal => MAIR_IDX_NORMAL_WB,
            MemType::NormalNonCacheable => MAIR_IDX_NORMAL_NC,
            MemType::Device => MAIR_IDX_DEVICE_NGNRE,
        };
        let exec = attrs.exec && attrs.mem != MemType::Device;
        let mut bits = (index << S1_ATTR_INDX_SHIFT) | SH_INNER | AF;
        if !attrs.write {
            bits |= S1_AP_RO;
        }
        if attrs.user {
            bits |= S1_AP_EL0 | S1_PXN;
            if !exec {
                bits |= S1_UXN;
            }
        } else {
            bits |= S1_UXN;
            if !exec {
                bits |= S1_PXN;
            }
        }
        if !attrs.global {
            bits |= S1_NG;
        }
        bits
    }

    fn decode_attrs(desc: u64) -> Attrs {
        let mem = match (desc & S1_ATTR_INDX_MASK) >> S1_ATTR_INDX_SHIFT {
            MAIR_IDX_NORMAL_WB => MemType::Normal,
            MAIR_IDX_NORMAL_NC => MemType::NormalNonCacheable,
            // Indices 0 and 3 are Device; 4-7 are not programmed, so report the strictest type.
            _ => MemType::Device,
        };
        let user = desc & S1_AP_EL0 != 0;
        let exec = if user {
            desc & S1_UXN == 0
        } else {
            desc & S1_PXN == 0
        };
        Attrs {
            mem,
            read: true,
            write: desc & S1_AP_RO == 0,
            exec,
            user,
            global: desc & S1_NG == 0,
        }
    }

    /// With T0SZ = T1SZ = 16, an address whose bits 63:48 are all zeros is translated by TTBR0 and
    /// one whose bits 63:48 are all ones by TTBR1 (bit 47 is an ordinary index bit in both). A
    /// table serves one half; the walk indexes with bits 47:0.
    fn input_address(addr: u64) -> Result<u64, MapError> {
        let high = addr >> 48;
        if high == 0 || high == 0xFFFF {
            Ok(addr & INPUT_MASK)
        } else {
            Err(MapError::NonCanonical)
        }
    }
}

/// Stage-2 format (IPA to PA) for virtual machines; 48-bit IPA space, starting at level 0.
///
/// Encoding: MemAttr (bits 5:2) = 0b1111 Normal WB, 0b0101 Normal NC, 0b0001 Device-nGnRE;
/// S2AP bit 6 = read, bit 7 = write; SH = 0b11; AF; XN (bits 54:53) = 0b00 executable, 0b10
/// execute-never (always for Device). `user` and `global` are not encoded and decode as true.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stage2;

impl DescriptorFormat for Stage2 {
    fn encode_attrs(attrs: Attrs) -> u64 {
        let mem_attr = match attrs.mem {
            MemType::Normal => S2_MEMATTR_NORMAL_WB,
            MemType::NormalNonCacheable => S2_MEMATTR_NORMAL_NC,
            MemType::Device => S2_MEMATTR_DEVICE_NGNRE,
        };
        let mut bits = (mem_attr << S2_MEMATTR_SHIFT) | SH_INNER | AF;
        if attrs.read {
            bits |= S2AP_READ;
        }
        if attrs.write {
            bits |= S2AP_WRITE;
        }
        if !attrs.exec || attrs.mem == MemType::Device {
            bits |= S2_XN_NEVER;
        }
        bits
    }

    fn decode_attrs(desc: u64) -> Attrs {
        let mem_attr = (desc & S2_MEMATTR_MASK) >> S2_MEMATTR_SHIFT;
        let mem = if mem_attr & 0b1100 == 0 {
            MemType::Device
        } else if mem_attr == S2_MEMATTR_NORMAL_NC {
            MemType::NormalNonCacheable
        } else {
            // Other Normal cacheability combinations are reported as the default Normal type.
            MemType::Normal
        };
        Attrs {
            mem,
            read: desc & S2AP_READ != 0,
            write: desc & S2AP_WRITE != 0,
            // XN 0b01 and 0b11 forbid execution at some EL; only 0b00 is plainly executable.
            exec: desc & S2_XN_MASK == 0,
            user: true,
            global: true,
        }
    }

    /// IPAs: bits 63:48 must be zero.
    fn input_address(addr: u64) -> Result<u64, MapError> {
        if addr & !INPUT_MASK == 0 {
            Ok(addr)
        } else {
            Err(MapError::NonCanonical)
        }
    }
}

/// Bit position of the lowest input address bit a level indexes.
const fn level_shift(level: usize) -> u32 {
    39 - 9 * level as u32
}

/// Bytes one descriptor at `level` covers.
const fn level_size(level: usize) -> u64 {
    1 << level_shift(level)
}

/// Index into the table at `level` of 48-bit input address `addr`.
const fn level_index(addr: u64, level: usize) -> usize {
    ((addr >> level_shift(level)) as usize) & (ENTRIES_PER_TABLE - 1)
}

/// Indices of the entries of a table at `level` covering `[base, base + 512 * size)` that overlap
/// `[start, end)`.
fn overlapping(level: usize, base: u64, start: u64, end: u64) -> Range<usize> {
    let size = level_size(level);
    let lo = start.max(base);
    let hi = end.min(base + size * ENTRIES_PER_TABLE as u64);
    if lo >= hi {
        return 0..0;
    }
    ((lo - base) / size) as usize..((hi - 1 - base) / size) as usize + 1
}

/// Validates `[va, va + size)` for format `F`: the 48-bit walk range, or None for an empty range.
fn input_range<F: DescriptorFormat>(va: u64, size: u64) -> Result<Option<Range<u64>>, MapError> {
    if !va.is_multiple_of(PAGE_SIZE) || !size.is_multiple_of(PAGE_SIZE) {
        return Err(MapError::Misaligned);
    }
    let start = F::input_address(va)?;
    if size == 0 {
        return Ok(None);
    }
    let last_va = va.checked_add(size - 1).ok_or(MapError::NonCanonical)?;
    let last = F::input_address(last_va)?;
    // A range through the non-canonical hole has a 48-bit span different from its real one.
    if last < start || last - start != size - 1 {
        return Err(MapError::NonCanonical);
    }
    Ok(Some(start..last + 1))
}

/// A translation table tree in format `F`, identified by the physical address of its level-0 table.
///
/// Dropping a `PageTable` leaks its frames (it may be adopted again with [`PageTable::from_root`]);
/// [`PageTable::destroy`] frees them.
#[derive(Debug)]
pub struct PageTable<F: DescriptorFormat> {
    root: u64,
    format: PhantomData<fn() -> F>,
}

impl<F: DescriptorFormat> PageTable<F> {
    /// An empty table tree: one zeroed level-0 table.
    pub fn new(mem: &mut impl TableMemory) -> Result<Self, MapError> {
        let root = mem.alloc_table().ok_or(MapError::OutOfMemory)?;
        Ok(Self::from_root(root))
    }

    /// Adopts the existing tree whose level-0 table is at physical address `root`.
    pub fn from_root(root: u64) -> Self {
        PageTable {
            root,
            format: PhantomData,
        }
    }

    /// Physical address of the level-0 table (for TTBR0_EL2, TTBR1_EL2 or VTTBR_EL2).
    pub fn root(&self) -> u64 {
        self.root
    }

    /// Maps [va, va+size) to [pa, pa+size). All three must be 4 KiB aligned, else `Misaligned`; the
    /// physical range must end below 2^48, else `Misaligned`; the input range must lie in the
    /// format's address space without wrapping, else `NonCanonical`. An empty range maps nothing.
    ///
    /// With `blocks`, uses a 1 GiB (level 1) or 2 MiB (level 2) block wherever va and pa are aligned
    /// to it, the rest of the range covers it and no table already sits in that slot; 4 KiB pages
    /// otherwise.
    ///
    /// `AlreadyMapped` if any part of the range is mapped: checked before anything changes, so the
    /// tables are untouched. `OutOfMemory` if a table frame cannot be allocated: the part of the
    /// range mapped by this call is unmapped again and the tables this call allocated are freed,
    /// so the mappings are as before the call; as after an `unmap`, the caller must invalidate the
    /// TLB for the range before freed table frames are reused.
    pub fn map(
        &mut self,
        mem: &mut impl TableMemory,
        va: u64,
        pa: u64,
        size: u64,
        attrs: Attrs,
        blocks: bool,
    ) -> Result<(), MapError> {
        if !pa.is_multiple_of(PAGE_SIZE) {
            return Err(MapError::Misaligned);
        }
        let Some(range) = input_range::<F>(va, size)? else {
            return Ok(());
        };
        match pa.checked_add(size - 1) {
            Some(pa_last) if pa_last <= PA_LAST => {}
            _ => return Err(MapError::Misaligned),
        }
        Self::check_free(mem, self.root, 0, 0, &range)?;

        let mut done = 0;
        while done < size {
            let step = self.map_step(
                mem,
                range.start + done,
                pa + done,
                size - done,
                attrs,
                blocks,
            );
            match step {
                Ok(mapped) => done += mapped,
                Err(err) => {
                    Self::clear(mem, self.root, 0, 0, &(range.start..range.start + done));
                    return Err(err);
                }
            }
        }
        Ok(())
    }

    /// Unmaps [va, va+size) (same validation as [`map`](Self::map)). `NotMapped` if any page in it is
    /// unmapped, `SplitsBlock` if the range covers only part of a block mapping (whichever comes
    /// first by address); both are checked before anything changes. Frees tables that become empty.
    /// The caller does the TLB maintenance.
    pub fn unmap(
        &mut self,
        mem: &mut impl TableMemory,
        va: u64,
        size: u64,
    ) -> Result<(), MapError> {
        let Some(range) = input_range::<F>(va, size)? else {
            return Ok(());
        };
        Self::check_mapped(mem, self.root, 0, 0, &range)?;
        Self::clear(mem, self.root, 0, 0, &range);
        Ok(())
    }

    /// Changes the attributes of the mapped range [va, va+size), keeping the output addresses and the
    /// block structure. Same validation and errors as [`unmap`](Self::unmap). The caller does the TLB
    /// maintenance; changing `mem` of a live mapping needs break-before-make (unmap, invalidate,
    /// map) rather than this call.
    pub fn protect(
        &mut self,
        mem: &mut impl TableMemory,
        va: u64,
        size: u64,
        attrs: Attrs,
    ) -> Result<(), MapError> {
        let Some(range) = input_range::<F>(va, size)? else {
            return Ok(());
        };
        Self::check_mapped(mem, self.root, 0, 0, &range)?;
        Self::reprotect(mem, self.root, 0, 0, &range, attrs);
        Ok(())
    }

    /// The physical address and attributes `va` maps to, if any (`va` need not be aligned; the
    /// result includes its offset within the page or block). None for an address outside the
    /// format's address space.
    pub fn translate(&self, mem: &mut impl TableMemory, va: u64) -> Option<(u64, Attrs)> {
        let addr = F::input_address(va).ok()?;
        let mut table = self.root;
        for level in 0..LEVELS {
            let desc = mem.table(table)[level_index(addr, level)];
            match F::kind(desc, level) {
                DescriptorKind::Invalid => return None,
                DescriptorKind::Leaf => {
                    let (pa, attrs) = F::decode_leaf(desc, level)?;
                    return Some((pa + (addr & (level_size(level) - 1)), attrs));
                }
                DescriptorKind::Table => table = F::output_address(desc, level),
            }
        }
        None
    }

    /// Frees every table frame (not the mapped frames). Consumes the table; the caller must have
    /// stopped every walker using it and invalidated its TLB entries.
    pub fn destroy(self, mem: &mut impl TableMemory) {
        Self::free_tree(mem, self.root, 0);
    }

    /// Maps one page or block at `addr` (48-bit) to `pa`, allocating tables on the way; returns how
    /// many bytes it mapped. The whole remaining range is known to be free. New tables are filled
    /// bottom-up and linked in last, and freed again if one of them cannot be allocated.
    fn map_step(
        &mut self,
        mem: &mut impl TableMemory,
        addr: u64,
        pa: u64,
        remaining: u64,
        attrs: Attrs,
        blocks: bool,
    ) -> Result<u64, MapError> {
        let mut table = self.root;
        let mut level = 0;
        loop {
            let index = level_index(addr, level);
            let desc = mem.table(table)[index];
            match F::kind(desc, level) {
                DescriptorKind::Table if level < LEVELS - 1 => {
                    table = F::output_address(desc, level);
                    level += 1;
                }
                DescriptorKind::Invalid => {
                    let target = Self::leaf_level(addr, pa, remaining, blocks, level);
                    if target == level {
                        mem.table(table)[index] = F::encode_leaf(pa, attrs, level);
                        return Ok(level_size(level));
                    }
                    let count = target - level;
                    let mut chain = [0u64; LEVELS - 1];
                    for i in 0..count {
                        match mem.alloc_table() {
                            Some(frame) => chain[i] = frame,
                            None => {
                                for &frame in &chain[..i] {
                                    mem.free_table(frame);
                                }
                                return Err(MapError::OutOfMemory);
                            }
                        }
                    }
                    mem.table(chain[count - 1])[level_index(addr, target)] =
                        F::encode_leaf(pa, attrs, target);
                    for i in (0..count - 1).rev() {
                        mem.table(chain[i])[level_index(addr, level + 1 + i)] =
                            F::encode_table(chain[i + 1]);
                    }
                    mem.table(table)[index] = F::encode_table(chain[0]);
                    return Ok(level_size(target));
                }
                // The range was checked free, so this is unreachable for a consistent tree.
                DescriptorKind::Leaf | DescriptorKind::Table => {
                    return Err(MapError::AlreadyMapped);
                }
            }
        }
    }

    /// The level of the leaf to map `addr` to `pa` with, at `from` or below: the highest block
    /// level (1, then 2) whose size both addresses are aligned to and `remaining` covers, else 3.
    fn leaf_level(addr: u64, pa: u64, remaining: u64, blocks: bool, from: usize) -> usize {
        if blocks {
            for level in from.max(1)..LEVELS - 1 {
                let size = level_size(level);
                if addr.is_multiple_of(size) && pa.is_multiple_of(size) && remaining >= size {
                    return level;
                }
            }
        }
        LEVELS - 1
    }

    /// `AlreadyMapped` if any leaf in the table at `level` (covering from `base`) overlaps `range`.
    fn check_free(
        mem: &mut impl TableMemory,
        table: u64,
        level: usize,
        base: u64,
        range: &Range<u64>,
    ) -> Result<(), MapError> {
        for index in overlapping(level, base, range.start, range.end) {
            let desc = mem.table(table)[index];
            match F::kind(desc, level) {
                DescriptorKind::Invalid => {}
                DescriptorKind::Leaf => return Err(MapError::AlreadyMapped),
                DescriptorKind::Table => {
                    let child_base = base + index as u64 * level_size(level);
                    Self::check_free(
                        mem,
                        F::output_address(desc, level),
                        level + 1,
                        child_base,
                        range,
                    )?;
                }
            }
        }
        Ok(())
    }

    /// `NotMapped` if part of `range` has no leaf, `SplitsBlock` if a leaf extends beyond `range`.
    fn check_mapped(
        mem: &mut impl TableMemory,
        table: u64,
        level: usize,
        base: u64,
        range: &Range<u64>,
    ) -> Result<(), MapError> {
        let size = level_size(level);
        for index in overlapping(level, base, range.start, range.end) {
            let desc = mem.table(table)[index];
            let entry_base = base + index as u64 * size;
            match F::kind(desc, level) {
                DescriptorKind::Invalid => return Err(MapError::NotMapped),
                DescriptorKind::Leaf => {
                    if entry_base < range.start || entry_base + size > range.end {
                        return Err(MapError::SplitsBlock);
                    }
                }
                DescriptorKind::Table => {
                    Self::check_mapped(
                        mem,
                        F::output_address(desc, level),
                        level + 1,
                        entry_base,
                        range,
                    )?;
                }
            }
        }
        Ok(())
    }

    /// Invalidates every leaf overlapping `range` (all of which lie inside it) and frees tables that
    /// become empty. Returns whether the table at `level` is now empty.
    fn clear(
        mem: &mut impl TableMemory,
        table: u64,
        level: usize,
        base: u64,
        range: &Range<u64>,
    ) -> bool {
        for index in overlapping(level, base, range.start, range.end) {
            let desc = mem.table(table)[index];
            match F::kind(desc, level) {
                DescriptorKind::Invalid => {}
                DescriptorKind::Leaf => mem.table(table)[index] = 0,
                DescriptorKind::Table => {
                    let child = F::output_address(desc, level);
                    let child_base = base + index as u64 * level_size(level);
                    if Self::clear(mem, child, level + 1, child_base, range) {
                        mem.table(table)[index] = 0;
                        mem.free_table(child);
                    }
                }
            }
        }
        mem.table(table)
            .iter()
            .all(|&desc| F::kind(desc, level) == DescriptorKind::Invalid)
    }

    /// Rewrites every leaf overlapping `range` (all of which lie inside it) with `attrs`.
    fn reprotect(
        mem: &mut impl TableMemory,
        table: u64,
        level: usize,
        base: u64,
        range: &Range<u64>,
        attrs: Attrs,
    ) {
        for index in overlapping(level, base, range.start, range.end) {
            let desc = mem.table(table)[index];
            match F::kind(desc, level) {
                DescriptorKind::Invalid => {}
                DescriptorKind::Leaf => {
                    mem.table(table)[index] =
                        F::encode_leaf(F::output_address(desc, level), attrs, level);
                }
                DescriptorKind::Table => {
                    let child_base = base + index as u64 * level_size(level);
                    Self::reprotect(
                        mem,
                        F::output_address(desc, level),
                        level + 1,
                        child_base,
                        range,
                        attrs,
                    );
                }
            }
        }
    }

    /// Frees the table at `level` and every table below it.
    fn free_tree(mem: &mut impl TableMemory, table: u64, level: usize) {
        for index in 0..ENTRIES_PER_TABLE {
            let desc = mem.table(table)[index];
            if F::kind(desc, level) == DescriptorKind::Table {
                Self::free_tree(mem, F::output_address(desc, level), level + 1);
            }
        }
        mem.free_table(table);
    }
}

#[cfg(test)]
mod tests {
    extern crate alloc;

    use super::*;
    use alloc::boxed::Box;
    use alloc::vec::Vec;

    const FAKE_BASE: u64 = 0x8000_0000;
    const KERNEL_VA: u64 = 0xFFFF_FF80_0000_0000;
    const USER_VA: u64 = 0x0000_0000_0040_0000;
    const MIB: u64 = 1 << 20;
    const GIB: u64 = 1 << 30;

    /// Table frames in a Vec at physical addresses FAKE_BASE + i * 4 KiB, with at most `budget`
    /// frames live at once; panics on a double free or an access to a frame that is not live.
    struct FakeMemory {
        frames: Vec<Option<Box<[u64; 512]>>>,
        free: Vec<usize>,
        budget: usize,
        allocs: usize,
        frees: usize,
    }

    impl FakeMemory {
        fn new() -> Self {
            Self::with_budget(usize::MAX)
        }

        fn with_budget(budget: usize) -> Self {
            FakeMemory {
                frames: Vec::new(),
                free: Vec::new(),
                budget,
                allocs: 0,
                frees: 0,
            }
        }

        fn live(&self) -> usize {
            self.allocs - self.frees
        }

        fn slot(pa: u64) -> usize {
            assert!(
                pa >= FAKE_BASE && pa.is_multiple_of(PAGE_SIZE),
                "not a fake table frame: {pa:#x}"
            );
            ((pa - FAKE_BASE) / PAGE_SIZE) as usize
        }
    }

    impl TableMemory for FakeMemory {
        fn alloc_table(&mut self) -> Option<u64> {
            if self.live() >= self.budget {
                return None;
            }
            let slot = match self.free.pop() {
                Some(slot) => slot,
                None => {
                    self.frames.push(None);
                    self.frames.len() - 1
                }
            };
            self.frames[slot] = Some(Box::new([0; 512]));
            self.allocs += 1;
            Some(FAKE_BASE + slot as u64 * PAGE_SIZE)
        }

        fn free_table(&mut self, pa: u64) {
            let slot = Self::slot(pa);
            assert!(
                self.frames[slot].take().is_some(),
                "double free of table frame {pa:#x}"
            );
            self.free.push(slot);
            self.frees += 1;
        }

        fn table(&mut self, pa: u64) -> &mut [u64; 512] {
            let slot = Self::slot(pa);
            self.frames
                .get_mut(slot)
                .and_then(|frame| frame.as_deref_mut())
                .expect("walked into a table frame that is not allocated")
        }
    }

    /// The level and raw descriptor of the leaf mapping `va`, read straight from the tables.
    fn leaf_of<F: DescriptorFormat>(
        pt: &PageTable<F>,
        mem: &mut FakeMemory,
        va: u64,
    ) -> Option<(usize, u64)> {
        let addr = F::input_address(va).ok()?;
        let mut table = pt.root();
        for level in 0..LEVELS {
            let desc = mem.table(table)[level_index(addr, level)];
            match F::kind(desc, level) {
                DescriptorKind::Invalid => return None,
                DescriptorKind::Leaf => return Some((level, desc)),
                DescriptorKind::Table => table = F::output_address(desc, level),
            }
        }
        None
    }

    /// The level of the leaf mapping `va`.
    fn level_at<F: DescriptorFormat>(
        pt: &PageTable<F>,
        mem: &mut FakeMemory,
        va: u64,
    ) -> Option<usize> {
        leaf_of(pt, mem, va).map(|(level, _)| level)
    }

    fn stage1(mem: &mut FakeMemory) -> PageTable<Stage1> {
        PageTable::new(mem).expect("fresh fake memory has frames")
    }

    fn all_attrs() -> impl Iterator<Item = Attrs> {
        let mems = [
            MemType::Normal,
            MemType::NormalNonCacheable,
            MemType::Device,
        ];
        (0..32u32).flat_map(move |bits| {
            mems.into_iter().map(move |mem| Attrs {
                mem,
                read: bits & 1 != 0,
                write: bits & 2 != 0,
                exec: bits & 4 != 0,
                user: bits & 8 != 0,
                global: bits & 16 != 0,
            })
        })
    }

    #[test]
    fn kernel_page_in_upper_half_maps_and_translates() {
        let mut mem = FakeMemory::new();
        let mut pt = stage1(&mut mem);
        pt.map(
            &mut mem,
            KERNEL_VA,
            0x4000_0000,
            PAGE_SIZE,
            Attrs::KERNEL_DATA,
            true,
        )
        .unwrap();
        assert_eq!(
            pt.translate(&mut mem, KERNEL_VA),
            Some((0x4000_0000, Attrs::KERNEL_DATA))
        );
        assert_eq!(
            pt.translate(&mut mem, KERNEL_VA + 0x123),
            Some((0x4000_0123, Attrs::KERNEL_DATA))
        );
        assert_eq!(pt.translate(&mut mem, KERNEL_VA + PAGE_SIZE), None);
        assert_eq!(level_at(&pt, &mut mem, KERNEL_VA), Some(3));
        assert_eq!(mem.live(), 4);
    }

    #[test]
    fn user_page_in_lower_half_maps_and_translates() {
        let mut mem = FakeMemory::new();
        let mut pt = stage1(&mut mem);
        pt.map(
            &mut mem,
            USER_VA,
            0x4123_4000,
            PAGE_SIZE,
            Attrs::USER_RW,
            true,
        )
        .unwrap();
        assert_eq!(
            pt.translate(&mut mem, USER_VA + 0xFFF),
            Some((0x4123_4FFF, Attrs::USER_RW))
        );
        assert_eq!(pt.translate(&mut mem, USER_VA - PAGE_SIZE), None);
        assert_eq!(pt.translate(&mut mem, USER_VA + PAGE_SIZE), None);
    }

    #[test]
    fn two_mib_aligned_four_mib_range_uses_two_l2_blocks() {
        let mut mem = FakeMemory::new();
        let mut pt = stage1(&mut mem);
        let va = KERNEL_VA + 4 * MIB;
        pt.map(&mut mem, va, 0x4020_0000, 4 * MIB, Attrs::KERNEL_DATA, true)
            .unwrap();
        assert_eq!(level_at(&pt, &mut mem, va), Some(2));
        assert_eq!(level_at(&pt, &mut mem, va + 2 * MIB), Some(2));
        assert_eq!(
            pt.translate(&mut mem, va + 0x1_2345),
            Some((0x4021_2345, Attrs::KERNEL_DATA))
        );
        assert_eq!(
            pt.translate(&mut mem, va + 2 * MIB + 0x10_0008),
            Some((0x4050_0008, Attrs::KERNEL_DATA))
        );
        assert_eq!(pt.translate(&mut mem, va + 4 * MIB), None);
        // Root, level 1 and level 2 tables only: no level-3 table.
        assert_eq!(mem.live(), 3);
    }

    #[test]
    fn one_gib_aligned_range_uses_an_l1_block() {
        let mut mem = FakeMemory::new();
        let mut pt = stage1(&mut mem);
        pt.map(
            &mut mem,
            KERNEL_VA + GIB,
            0x40_0000_0000,
            GIB,
            Attrs::KERNEL_DATA,
            true,
        )
        .unwrap();
        let (level, desc) = leaf_of(&pt, &mut mem, KERNEL_VA + GIB).unwrap();
        assert_eq!(level, 1);
        assert_eq!(desc & 0b11, 0b01, "block descriptor: valid, bit 1 clear");
        assert_eq!(
            pt.translate(&mut mem, KERNEL_VA + GIB + 0x3FFF_FFFF),
            Some((0x40_3FFF_FFFF, Attrs::KERNEL_DATA))
        );
        assert_eq!(mem.live(), 2);
    }

    #[test]
    fn range_misaligned_for_blocks_by_4k_uses_pages() {
        // [2 MiB + 4 KiB, 4 MiB + 4 KiB) contains no whole 2 MiB-aligned block.
        let mut mem = FakeMemory::new();
        let mut pt = stage1(&mut mem);
        let va = KERNEL_VA + 2 * MIB + PAGE_SIZE;
        pt.map(&mut mem, va, 0x4020_1000, 2 * MIB, Attrs::KERNEL_DATA, true)
            .unwrap();
        for offset in [0, MIB, 2 * MIB - PAGE_SIZE] {
            assert_eq!(level_at(&pt, &mut mem, va + offset), Some(3));
            assert_eq!(
                pt.translate(&mut mem, va + offset),
                Some((0x4020_1000 + offset, Attrs::KERNEL_DATA))
            );
        }
    }

    #[test]
    fn block_needs_pa_aligned_as_well_as_va() {
        let mut mem = FakeMemory::new();
        let mut pt = stage1(&mut mem);
        pt.map(
            &mut mem,
            KERNEL_VA,
            0x4000_1000,
            2 * MIB,
            Attrs::KERNEL_DATA,
            true,
        )
        .unwrap();
        assert_eq!(level_at(&pt, &mut mem, KERNEL_VA), Some(3));
        assert_eq!(
            pt.translate(&mut mem, KERNEL_VA + MIB),
            Some((0x4010_1000, Attrs::KERNEL_DATA))
        );
    }

    #[test]
    fn blocks_false_maps_aligned_range_with_pages_only() {
        let mut mem = FakeMemory::new();
        let mut pt = stage1(&mut mem);
        pt.map(
            &mut mem,
            KERNEL_VA,
            0x4000_0000,
            2 * MIB,
            Attrs::KERNEL_DATA,
            false,
        )
        .unwrap();
        assert_eq!(level_at(&pt, &mut mem, KERNEL_VA), Some(3));
        assert_eq!(
            level_at(&pt, &mut mem, KERNEL_VA + 2 * MIB - PAGE_SIZE),
            Some(3)
        );
    }

    #[test]
    fn range_mixes_pages_then_block_then_pages_where_alignment_allows() {
        let mut mem = FakeMemory::new();
        let mut pt = stage1(&mut mem);
        let va = KERNEL_VA + 2 * MIB - PAGE_SIZE;
        pt.map(
            &mut mem,
            va,
            0x4020_0000 - PAGE_SIZE,
            2 * MIB + 2 * PAGE_SIZE,
            Attrs::KERNEL_DATA,
            true,
        )
        .unwrap();
        assert_eq!(level_at(&pt, &mut mem, va), Some(3));
        assert_eq!(level_at(&pt, &mut mem, va + PAGE_SIZE), Some(2));
        assert_eq!(level_at(&pt, &mut mem, va + PAGE_SIZE + 2 * MIB), Some(3));
        assert_eq!(
            pt.translate(&mut mem, va + 2 * MIB + PAGE_SIZE),
            Some((0x4040_0000, Attrs::KERNEL_DATA))
        );
    }

    #[test]
    fn top_page_of_upper_half_maps_without_overflow() {
        let mut mem = FakeMemory::new();
        let mut pt = stage1(&mut mem);
        pt.map(
            &mut mem,
            0xFFFF_FFFF_FFFF_F000,
            0x5000_0000,
            PAGE_SIZE,
            Attrs::KERNEL_RODATA,
            true,
        )
        .unwrap();
        assert_eq!(
            pt.translate(&mut mem, u64::MAX),
            Some((0x5000_0FFF, Attrs::KERNEL_RODATA))
        );
    }

    #[test]
    fn kernel_data_page_descriptor_has_arm_arm_bits_and_ng_clear() {
        let mut mem = FakeMemory::new();
        let mut pt = stage1(&mut mem);
        pt.map(
            &mut mem,
            KERNEL_VA,
            0x4000_0000,
            PAGE_SIZE,
            Attrs::KERNEL_DATA,
            true,
        )
        .unwrap();
        let (_, desc) = leaf_of(&pt, &mut mem, KERNEL_VA).unwrap();
        // valid | page | AttrIndx 1 | AP 00 (EL2 RW) | SH 11 | AF | PXN | UXN; nG clear.
        let expected =
            0x4000_0000 | 0b11 | (1 << 2) | (0b11 << 8) | (1 << 10) | (1 << 53) | (1 << 54);
        assert_eq!(desc, expected);
        assert_eq!(desc & (1 << 11), 0);
    }

    #[test]
    fn kernel_text_descriptor_is_read_only_and_executable_only_by_el2() {
        let desc = Stage1::encode_leaf(0x4000_0000, Attrs::KERNEL_TEXT, 3);
        assert_eq!(
            desc,
            0x4000_0000 | 0b11 | (1 << 2) | (1 << 7) | (0b11 << 8) | (1 << 10) | (1 << 54)
        );
    }

    #[test]
    fn user_rw_descriptor_is_el0_accessible_not_global_and_never_executable() {
        let desc = Stage1::encode_leaf(0x4000_0000, Attrs::USER_RW, 3);
        let expected = 0x4000_0000
            | 0b11
            | (1 << 2)
            | (1 << 6)
            | (0b11 << 8)
            | (1 << 10)
            | (1 << 11)
            | (1 << 53)
            | (1 << 54);
        assert_eq!(desc, expected);
    }

    #[test]
    fn user_rx_descriptor_is_read_only_el0_executable_and_pxn() {
        let desc = Stage1::encode_leaf(0x4000_0000, Attrs::USER_RX, 3);
        let expected = 0x4000_0000
            | 0b11
            | (1 << 2)
            | (0b11 << 6)
            | (0b11 << 8)
            | (1 << 10)
            | (1 << 11)
            | (1 << 53);
        assert_eq!(desc, expected);
    }

    #[test]
    fn device_descriptor_uses_attr_index_0_and_is_never_executable_even_if_asked() {
        let asked_exec = Attrs {
            exec: true,
            ..Attrs::DEVICE
        };
        let desc = Stage1::encode_leaf(0x0900_0000, asked_exec, 3);
        assert_eq!(
            desc,
            0x0900_0000 | 0b11 | (0b11 << 8) | (1 << 10) | (1 << 53) | (1 << 54)
        );
        assert_eq!(Stage1::decode_attrs(desc), Attrs::DEVICE);
        let user_desc = Stage1::encode_leaf(
            0x0900_0000,
            Attrs {
                user: true,
                ..asked_exec
            },
            3,
        );
        assert_eq!(user_desc & (S1_PXN | S1_UXN), S1_PXN | S1_UXN);
    }

    #[test]
    fn non_cacheable_descriptor_uses_attr_index_2() {
        let desc = Stage1::encode_leaf(0x4000_0000, Attrs::KERNEL_DATA_NC, 3);
        assert_eq!(desc & S1_ATTR_INDX_MASK, 2 << 2);
    }

    #[test]
    fn block_descriptors_have_type_bit_clear_and_pages_set() {
        let l2 = Stage1::encode_leaf(0x4020_0000, Attrs::KERNEL_DATA, 2);
        let l1 = Stage1::encode_leaf(0x4000_0000, Attrs::KERNEL_DATA, 1);
        let l3 = Stage1::encode_leaf(0x4020_0000, Attrs::KERNEL_DATA, 3);
        assert_eq!((l1 & 0b11, l2 & 0b11, l3 & 0b11), (0b01, 0b01, 0b11));
        assert_eq!(Stage1::encode_table(0x8000_1000), 0x8000_1003);
        assert_eq!(Stage1::kind(l2, 2), DescriptorKind::Leaf);
        assert_eq!(
            Stage1::kind(l2, 3),
            DescriptorKind::Invalid,
            "bit 1 clear at level 3 is reserved"
        );
        assert_eq!(
            Stage1::kind(l2, 0),
            DescriptorKind::Invalid,
            "no blocks at level 0"
        );
        assert_eq!(Stage1::kind(l3, 2), DescriptorKind::Table);
    }

    #[test]
    fn stage1_attrs_round_trip_for_representable_values() {
        for attrs in all_attrs() {
            let representable = attrs.read && !(attrs.mem == MemType::Device && attrs.exec);
            if !representable {
                continue;
            }
            for level in 1..=3 {
                let pa = 0x1234_4000_0000 & !(level_size(level) - 1);
                assert_eq!(
                    Stage1::decode_leaf(Stage1::encode_leaf(pa, attrs, level), level),
                    Some((pa, attrs))
                );
            }
        }
    }

    #[test]
    fn stage1_unrepresentable_attrs_decode_to_nearest_value() {
        let write_only = Attrs {
            read: false,
            ..Attrs::KERNEL_DATA
        };
        assert_eq!(
            Stage1::decode_attrs(Stage1::encode_attrs(write_only)),
            Attrs::KERNEL_DATA
        );
    }

    #[test]
    fn stage2_guest_ram_and_device_descriptors_have_arm_arm_bits() {
        let ram = Stage2::encode_leaf(0x4000_0000, Attrs::GUEST_RAM, 3);
        assert_eq!(
            ram,
            0x4000_0000 | 0b11 | (0b1111 << 2) | (0b11 << 6) | (0b11 << 8) | (1 << 10)
        );
        let device = Stage2::encode_leaf(0x0900_0000, Attrs::GUEST_DEVICE, 3);
        assert_eq!(
            device,
            0x0900_0000
                | 0b11
                | (0b0001 << 2)
                | (0b11 << 6)
                | (0b11 << 8)
                | (1 << 10)
                | (0b10 << 53)
        );
        let nc_read_only = Attrs {
            mem: MemType::NormalNonCacheable,
            write: false,
            exec: false,
            ..Attrs::GUEST_RAM
        };
        let nc = Stage2::encode_leaf(0x4000_0000, nc_read_only, 2);
        assert_eq!(
            nc,
            0x4000_0000 | 0b01 | (0b0101 << 2) | (1 << 6) | (0b11 << 8) | (1 << 10) | (0b10 << 53)
        );
    }

    #[test]
    fn stage2_attrs_round_trip_for_representable_values() {
        for attrs in all_attrs() {
            let representable =
                attrs.user && attrs.global && !(attrs.mem == MemType::Device && attrs.exec);
            if !representable {
                continue;
            }
            for level in 1..=3 {
                let pa = 0x8000_0000_0000 & !(level_size(level) - 1);
                assert_eq!(
                    Stage2::decode_leaf(Stage2::encode_leaf(pa, attrs, level), level),
                    Some((pa, attrs))
                );
            }
        }
    }

    #[test]
    fn stage2_table_maps_ipa_and_rejects_ipa_above_48_bits() {
        let mut mem = FakeMemory::new();
        let mut pt: PageTable<Stage2> = PageTable::new(&mut mem).unwrap();
        pt.map(
            &mut mem,
            0x4000_0000,
            0x1_0000_0000,
            4 * MIB,
            Attrs::GUEST_RAM,
            true,
        )
        .unwrap();
        assert_eq!(
            pt.translate(&mut mem, 0x4030_0010),
            Some((0x1_0030_0010, Attrs::GUEST_RAM))
        );
        assert_eq!(level_at(&pt, &mut mem, 0x4000_0000), Some(2));
        assert_eq!(
            pt.map(
                &mut mem,
                KERNEL_VA,
                0x1_0000_0000,
                PAGE_SIZE,
                Attrs::GUEST_RAM,
                true
            ),
            Err(MapError::NonCanonical)
        );
        assert_eq!(
            pt.map(
                &mut mem,
                0xFFFF_FFFF_F000,
                0x1_0000_0000,
                2 * PAGE_SIZE,
                Attrs::GUEST_RAM,
                true
            ),
            Err(MapError::NonCanonical)
        );
        pt.unmap(&mut mem, 0x4000_0000, 4 * MIB).unwrap();
        assert_eq!(mem.live(), 1);
    }

    #[test]
    fn overlapping_map_is_refused_and_leaves_earlier_mapping_intact() {
        let mut mem = FakeMemory::new();
        let mut pt = stage1(&mut mem);
        pt.map(
            &mut mem,
            USER_VA + 4 * PAGE_SIZE,
            0x4000_0000,
            PAGE_SIZE,
            Attrs::USER_RX,
            true,
        )
        .unwrap();
        let live = mem.live();
        let result = pt.map(
            &mut mem,
            USER_VA,
            0x5000_0000,
            8 * PAGE_SIZE,
            Attrs::USER_RW,
            true,
        );
        assert_eq!(result, Err(MapError::AlreadyMapped));
        assert_eq!(
            pt.translate(&mut mem, USER_VA + 4 * PAGE_SIZE),
            Some((0x4000_0000, Attrs::USER_RX))
        );
        for page in [0, 1, 2, 3, 5, 6, 7] {
            assert_eq!(
                pt.translate(&mut mem, USER_VA + page * PAGE_SIZE),
                None,
                "page {page} was mapped"
            );
        }
        assert_eq!(mem.live(), live);
    }

    #[test]
    fn page_map_inside_existing_block_is_refused() {
        let mut mem = FakeMemory::new();
        let mut pt = stage1(&mut mem);
        pt.map(
            &mut mem,
            KERNEL_VA,
            0x4000_0000,
            2 * MIB,
            Attrs::KERNEL_DATA,
            true,
        )
        .unwrap();
        let result = pt.map(
            &mut mem,
            KERNEL_VA + MIB,
            0x5000_0000,
            PAGE_SIZE,
            Attrs::KERNEL_DATA,
            true,
        );
        assert_eq!(result, Err(MapError::AlreadyMapped));
        assert_eq!(
            pt.translate(&mut mem, KERNEL_VA + MIB),
            Some((0x4010_0000, Attrs::KERNEL_DATA))
        );
    }

    #[test]
    fn unmap_frees_empty_intermediate_tables_down_to_the_root() {
        let mut mem = FakeMemory::new();
        let mut pt = stage1(&mut mem);
        pt.map(
            &mut mem,
            USER_VA,
            0x4000_0000,
            3 * PAGE_SIZE,
            Attrs::USER_RW,
            true,
        )
        .unwrap();
        pt.map(
            &mut mem,
            KERNEL_VA,
            0x4000_0000,
            4 * MIB,
            Attrs::KERNEL_DATA,
            true,
        )
        .unwrap();
        pt.unmap(&mut mem, USER_VA, 3 * PAGE_SIZE).unwrap();
        pt.unmap(&mut mem, KERNEL_VA, 4 * MIB).unwrap();
        assert_eq!(pt.translate(&mut mem, USER_VA), None);
        assert_eq!(pt.translate(&mut mem, KERNEL_VA), None);
        assert_eq!(mem.live(), 1);
        assert!(mem.table(pt.root()).iter().all(|&desc| desc == 0));
    }

    #[test]
    fn unmap_keeps_tables_still_holding_other_mappings() {
        let mut mem = FakeMemory::new();
        let mut pt = stage1(&mut mem);
        pt.map(
            &mut mem,
            USER_VA,
            0x4000_0000,
            2 * PAGE_SIZE,
            Attrs::USER_RW,
            true,
        )
        .unwrap();
        let live = mem.live();
        pt.unmap(&mut mem, USER_VA, PAGE_SIZE).unwrap();
        assert_eq!(mem.live(), live);
        assert_eq!(pt.translate(&mut mem, USER_VA), None);
        assert_eq!(
            pt.translate(&mut mem, USER_VA + PAGE_SIZE),
            Some((0x4000_1000, Attrs::USER_RW))
        );
    }

    #[test]
    fn partial_unmap_of_a_block_is_refused_with_splits_block() {
        let mut mem = FakeMemory::new();
        let mut pt = stage1(&mut mem);
        pt.map(
            &mut mem,
            KERNEL_VA,
            0x4000_0000,
            2 * MIB,
            Attrs::KERNEL_DATA,
            true,
        )
        .unwrap();
        assert_eq!(
            pt.unmap(&mut mem, KERNEL_VA, PAGE_SIZE),
            Err(MapError::SplitsBlock)
        );
        assert_eq!(
            pt.unmap(&mut mem, KERNEL_VA + MIB, MIB),
            Err(MapError::SplitsBlock)
        );
        assert_eq!(
            pt.translate(&mut mem, KERNEL_VA),
            Some((0x4000_0000, Attrs::KERNEL_DATA))
        );
        pt.unmap(&mut mem, KERNEL_VA, 2 * MIB).unwrap();
        assert_eq!(mem.live(), 1);
    }

    #[test]
    fn unmap_of_partly_unmapped_range_is_refused_and_changes_nothing() {
        let mut mem = FakeMemory::new();
        let mut pt = stage1(&mut mem);
        pt.map(
            &mut mem,
            USER_VA,
            0x4000_0000,
            PAGE_SIZE,
            Attrs::USER_RW,
            true,
        )
        .unwrap();
        pt.map(
            &mut mem,
            USER_VA + 2 * PAGE_SIZE,
            0x4000_2000,
            PAGE_SIZE,
            Attrs::USER_RW,
            true,
        )
        .unwrap();
        assert_eq!(
            pt.unmap(&mut mem, USER_VA, 3 * PAGE_SIZE),
            Err(MapError::NotMapped)
        );
        assert_eq!(
            pt.translate(&mut mem, USER_VA),
            Some((0x4000_0000, Attrs::USER_RW))
        );
        assert_eq!(
            pt.translate(&mut mem, USER_VA + 2 * PAGE_SIZE),
            Some((0x4000_2000, Attrs::USER_RW))
        );
        assert_eq!(
            pt.unmap(&mut mem, KERNEL_VA, PAGE_SIZE),
            Err(MapError::NotMapped)
        );
    }

    #[test]
    fn non_canonical_va_is_rejected_by_every_operation() {
        let mut mem = FakeMemory::new();
        let mut pt = stage1(&mut mem);
        let bad = 0x0001_0000_0000_0000;
        assert_eq!(
            pt.map(
                &mut mem,
                bad,
                0x4000_0000,
                PAGE_SIZE,
                Attrs::KERNEL_DATA,
                true
            ),
            Err(MapError::NonCanonical)
        );
        assert_eq!(
            pt.map(
                &mut mem,
                0xFFFE_FFFF_FFFF_F000,
                0,
                PAGE_SIZE,
                Attrs::KERNEL_DATA,
                true
            ),
            Err(MapError::NonCanonical)
        );
        assert_eq!(
            pt.unmap(&mut mem, bad, PAGE_SIZE),
            Err(MapError::NonCanonical)
        );
        assert_eq!(
            pt.protect(&mut mem, bad, PAGE_SIZE, Attrs::KERNEL_DATA),
            Err(MapError::NonCanonical)
        );
        assert_eq!(pt.translate(&mut mem, bad), None);
        assert_eq!(mem.live(), 1);
    }

    #[test]
    fn range_crossing_the_canonical_hole_or_wrapping_is_rejected() {
        let mut mem = FakeMemory::new();
        let mut pt = stage1(&mut mem);
        let top_of_lower = 0x0000_FFFF_FFFF_F000;
        assert_eq!(
            pt.map(
                &mut mem,
                top_of_lower,
                0,
                2 * PAGE_SIZE,
                Attrs::USER_RW,
                true
            ),
            Err(MapError::NonCanonical)
        );
        let across = 0xFFFF_0000_0000_0000 - top_of_lower + PAGE_SIZE;
        assert_eq!(
            pt.map(&mut mem, top_of_lower, 0, across, Attrs::USER_RW, false),
            Err(MapError::NonCanonical)
        );
        assert_eq!(
            pt.unmap(&mut mem, top_of_lower, across),
            Err(MapError::NonCanonical)
        );
        assert_eq!(
            pt.unmap(&mut mem, 0xFFFF_FFFF_FFFF_F000, 2 * PAGE_SIZE),
            Err(MapError::NonCanonical)
        );
        assert_eq!(mem.live(), 1);
    }

    #[test]
    fn misaligned_va_pa_or_size_is_rejected() {
        let mut mem = FakeMemory::new();
        let mut pt = stage1(&mut mem);
        let a = Attrs::KERNEL_DATA;
        assert_eq!(
            pt.map(&mut mem, KERNEL_VA + 8, 0x4000_0000, PAGE_SIZE, a, true),
            Err(MapError::Misaligned)
        );
        assert_eq!(
            pt.map(&mut mem, KERNEL_VA, 0x4000_0008, PAGE_SIZE, a, true),
            Err(MapError::Misaligned)
        );
        assert_eq!(
            pt.map(&mut mem, KERNEL_VA, 0x4000_0000, PAGE_SIZE + 1, a, true),
            Err(MapError::Misaligned)
        );
        assert_eq!(
            pt.unmap(&mut mem, KERNEL_VA, 100),
            Err(MapError::Misaligned)
        );
        assert_eq!(
            pt.protect(&mut mem, KERNEL_VA + 1, PAGE_SIZE, a),
            Err(MapError::Misaligned)
        );
        assert_eq!(mem.live(), 1);
    }

    #[test]
    fn physical_range_beyond_48_bits_is_rejected() {
        let mut mem = FakeMemory::new();
        let mut pt = stage1(&mut mem);
        let a = Attrs::KERNEL_DATA;
        assert_eq!(
            pt.map(&mut mem, KERNEL_VA, 1 << 48, PAGE_SIZE, a, true),
            Err(MapError::Misaligned)
        );
        assert_eq!(
            pt.map(
                &mut mem,
                KERNEL_VA,
                (1 << 48) - PAGE_SIZE,
                2 * PAGE_SIZE,
                a,
                true
            ),
            Err(MapError::Misaligned)
        );
        pt.map(
            &mut mem,
            KERNEL_VA,
            (1 << 48) - PAGE_SIZE,
            PAGE_SIZE,
            a,
            true,
        )
        .unwrap();
        assert_eq!(
            pt.translate(&mut mem, KERNEL_VA),
            Some(((1 << 48) - PAGE_SIZE, a))
        );
    }

    #[test]
    fn empty_range_is_a_no_op() {
        let mut mem = FakeMemory::new();
        let mut pt = stage1(&mut mem);
        pt.map(
            &mut mem,
            KERNEL_VA,
            0x4000_0000,
            0,
            Attrs::KERNEL_DATA,
            true,
        )
        .unwrap();
        pt.unmap(&mut mem, KERNEL_VA, 0).unwrap();
        pt.protect(&mut mem, KERNEL_VA, 0, Attrs::KERNEL_DATA)
            .unwrap();
        assert_eq!(pt.translate(&mut mem, KERNEL_VA), None);
        assert_eq!(mem.live(), 1);
    }

    #[test]
    fn out_of_memory_midway_undoes_partial_mapping_and_keeps_earlier_ones() {
        // Root + L1 + L2 + L3 for the first page; no frame left for a second L3 table.
        let mut mem = FakeMemory::with_budget(4);
        let mut pt = stage1(&mut mem);
        pt.map(
            &mut mem,
            USER_VA,
            0x4000_0000,
            PAGE_SIZE,
            Attrs::USER_RX,
            false,
        )
        .unwrap();
        // The first page lands in the existing L3 table, the second needs a new one.
        let va = USER_VA + 2 * MIB - PAGE_SIZE;
        let result = pt.map(
            &mut mem,
            va,
            0x5000_0000,
            2 * PAGE_SIZE,
            Attrs::USER_RW,
            false,
        );
        assert_eq!(result, Err(MapError::OutOfMemory));
        assert_eq!(pt.translate(&mut mem, va), None);
        assert_eq!(pt.translate(&mut mem, va + PAGE_SIZE), None);
        assert_eq!(
            pt.translate(&mut mem, USER_VA),
            Some((0x4000_0000, Attrs::USER_RX))
        );
        assert_eq!(mem.live(), 4);
    }

    #[test]
    fn out_of_memory_frees_tables_allocated_for_the_failed_step() {
        // After the first page (4 frames) one frame is left; a page in another L1 slot needs two.
        let mut mem = FakeMemory::with_budget(5);
        let mut pt = stage1(&mut mem);
        pt.map(
            &mut mem,
            USER_VA,
            0x4000_0000,
            PAGE_SIZE,
            Attrs::USER_RW,
            true,
        )
        .unwrap();
        let allocs = mem.allocs;
        let result = pt.map(
            &mut mem,
            0x8000_0000,
            0x5000_0000,
            PAGE_SIZE,
            Attrs::USER_RW,
            true,
        );
        assert_eq!(result, Err(MapError::OutOfMemory));
        assert_eq!(
            mem.allocs,
            allocs + 1,
            "one table was allocated before the budget ran out"
        );
        assert_eq!(mem.live(), 4);
        assert_eq!(
            pt.translate(&mut mem, USER_VA),
            Some((0x4000_0000, Attrs::USER_RW))
        );
        // The table is still usable once memory is available again.
        mem.budget = usize::MAX;
        pt.map(
            &mut mem,
            0x8000_0000,
            0x5000_0000,
            PAGE_SIZE,
            Attrs::USER_RW,
            true,
        )
        .unwrap();
        assert_eq!(
            pt.translate(&mut mem, 0x8000_0000),
            Some((0x5000_0000, Attrs::USER_RW))
        );
    }

    #[test]
    fn new_fails_with_out_of_memory_when_no_frame_is_left() {
        let mut mem = FakeMemory::with_budget(0);
        assert!(matches!(
            PageTable::<Stage1>::new(&mut mem),
            Err(MapError::OutOfMemory)
        ));
    }

    #[test]
    fn destroy_frees_every_table_frame() {
        let mut mem = FakeMemory::new();
        let mut pt = stage1(&mut mem);
        pt.map(
            &mut mem,
            USER_VA,
            0x4000_0000,
            3 * PAGE_SIZE,
            Attrs::USER_RW,
            true,
        )
        .unwrap();
        pt.map(
            &mut mem,
            0x40_0000_0000,
            0x4000_0000,
            GIB + 2 * MIB + PAGE_SIZE,
            Attrs::USER_RW,
            true,
        )
        .unwrap();
        pt.map(
            &mut mem,
            KERNEL_VA,
            0x4000_0000,
            4 * MIB,
            Attrs::KERNEL_DATA,
            true,
        )
        .unwrap();
        assert!(mem.live() > 1);
        pt.destroy(&mut mem);
        assert_eq!(mem.live(), 0);
        assert_eq!(mem.allocs, mem.frees);
    }

    #[test]
    fn protect_changes_permissions_of_pages_and_keeps_addresses() {
        let mut mem = FakeMemory::new();
        let mut pt = stage1(&mut mem);
        pt.map(
            &mut mem,
            USER_VA,
            0x4000_0000,
            2 * PAGE_SIZE,
            Attrs::USER_RW,
            true,
        )
        .unwrap();
        pt.protect(&mut mem, USER_VA, PAGE_SIZE, Attrs::USER_RO)
            .unwrap();
        assert_eq!(
            pt.translate(&mut mem, USER_VA),
            Some((0x4000_0000, Attrs::USER_RO))
        );
        assert_eq!(
            pt.translate(&mut mem, USER_VA + PAGE_SIZE),
            Some((0x4000_1000, Attrs::USER_RW))
        );
        let (_, desc) = leaf_of(&pt, &mut mem, USER_VA).unwrap();
        assert_ne!(desc & S1_AP_RO, 0);
    }

    #[test]
    fn protect_of_whole_block_keeps_the_block() {
        let mut mem = FakeMemory::new();
        let mut pt = stage1(&mut mem);
        pt.map(
            &mut mem,
            KERNEL_VA,
            0x4000_0000,
            2 * MIB,
            Attrs::KERNEL_DATA,
            true,
        )
        .unwrap();
        pt.protect(&mut mem, KERNEL_VA, 2 * MIB, Attrs::KERNEL_TEXT)
            .unwrap();
        assert_eq!(level_at(&pt, &mut mem, KERNEL_VA), Some(2));
        assert_eq!(
            pt.translate(&mut mem, KERNEL_VA + 0x1234),
            Some((0x4000_1234, Attrs::KERNEL_TEXT))
        );
    }

    #[test]
    fn protect_of_partial_block_or_unmapped_range_is_refused_and_changes_nothing() {
        let mut mem = FakeMemory::new();
        let mut pt = stage1(&mut mem);
        pt.map(
            &mut mem,
            KERNEL_VA,
            0x4000_0000,
            2 * MIB,
            Attrs::KERNEL_DATA,
            true,
        )
        .unwrap();
        assert_eq!(
            pt.protect(&mut mem, KERNEL_VA, PAGE_SIZE, Attrs::KERNEL_RODATA),
            Err(MapError::SplitsBlock)
        );
        assert_eq!(
            pt.protect(
                &mut mem,
                KERNEL_VA,
                2 * MIB + PAGE_SIZE,
                Attrs::KERNEL_RODATA
            ),
            Err(MapError::NotMapped)
        );
        assert_eq!(
            pt.translate(&mut mem, KERNEL_VA),
            Some((0x4000_0000, Attrs::KERNEL_DATA))
        );
    }

    #[test]
    fn map_over_an_empty_adopted_subtable_descends_instead_of_replacing_it() {
        let mut mem = FakeMemory::new();
        let mut pt = stage1(&mut mem);
        // Build the path to an L2 slot by hand and leave an empty L3 table in it.
        pt.map(
            &mut mem,
            USER_VA,
            0x4000_0000,
            PAGE_SIZE,
            Attrs::USER_RW,
            true,
        )
        .unwrap();
        let (l2_table, empty_l3) = {
            let l1 = mem.table(pt.root())[0] & OA_MASK;
            let l2 = mem.table(l1)[0] & OA_MASK;
            (l2, mem.alloc_table().unwrap())
        };
        mem.table(l2_table)[1] = Stage1::encode_table(empty_l3);
        let live = mem.live();
        pt.map(
            &mut mem,
            2 * MIB,
            0x4020_0000,
            2 * MIB,
            Attrs::USER_RW,
            true,
        )
        .unwrap();
        assert_eq!(level_at(&pt, &mut mem, 2 * MIB), Some(3));
        assert_eq!(mem.table(l2_table)[1], Stage1::encode_table(empty_l3));
        assert_eq!(mem.live(), live);
        assert_eq!(
            pt.translate(&mut mem, 3 * MIB),
            Some((0x4030_0000, Attrs::USER_RW))
        );
    }

    #[test]
    fn from_root_adopts_an_existing_tree() {
        let mut mem = FakeMemory::new();
        let mut pt = stage1(&mut mem);
        pt.map(
            &mut mem,
            KERNEL_VA,
            0x4000_0000,
            PAGE_SIZE,
            Attrs::KERNEL_DATA,
            true,
        )
        .unwrap();
        let adopted: PageTable<Stage1> = PageTable::from_root(pt.root());
        assert_eq!(adopted.root(), pt.root());
        assert_eq!(
            adopted.translate(&mut mem, KERNEL_VA),
            Some((0x4000_0000, Attrs::KERNEL_DATA))
        );
    }

    #[test]
    fn remap_after_unmap_uses_new_address_and_attrs() {
        let mut mem = FakeMemory::new();
        let mut pt = stage1(&mut mem);
        pt.map(
            &mut mem,
            USER_VA,
            0x4000_0000,
            PAGE_SIZE,
            Attrs::USER_RW,
            true,
        )
        .unwrap();
        pt.unmap(&mut mem, USER_VA, PAGE_SIZE).unwrap();
        pt.map(
            &mut mem,
            USER_VA,
            0x6000_0000,
            PAGE_SIZE,
            Attrs::USER_RX,
            true,
        )
        .unwrap();
        assert_eq!(
            pt.translate(&mut mem, USER_VA),
            Some((0x6000_0000, Attrs::USER_RX))
        );
    }
}
