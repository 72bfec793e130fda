//! The kernel's own address space (TTBR1_EL2) and heap.
//!
//! `build` makes the final tables while the bootstrap ones (2 MiB RWX blocks from boot.S) are
//! live: the image mapped W^X (text RX, rodata R, data/bss RW NX), a direct map of every RAM bank
//! (RW NX), and device windows added by `ioremap` (Device-nGnRE, RW NX). `activate` switches
//! TTBR1 from code running in the identity map, so no instruction is fetched through TTBR1 while
//! it changes. Boot tables come from a pool inside the image until the direct map is live, from
//! the frame allocator after.

use crate::mm::frame::FRAMES;
use crate::mm::layout::{DIRECT_MAP_BASE, KIMAGE_VBASE, MMIO_BASE, MMIO_SIZE, PAGE_SIZE, align_down, align_up, phys_to_virt};
use crate::mm::pagetable::{Attrs, MapError, PageTable, Stage1, TableMemory};
use aarch64_cpu::asm::barrier;
use aarch64_cpu::registers::{ReadWriteable, TCR_EL1, TTBR1_EL1, Readable};
use buddy_system_allocator::LockedHeap;
use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use keel_platform::dtb::Region;
use crate::hal::Mutex;

unsafe extern "C" {
    safe static __kimage_start: u8;
    safe static __text_start: u8;
    safe static __text_end: u8;
    safe static __rodata_start: u8;
    safe static __rodata_end: u8;
    safe static __data_start: u8;
    safe static __kimage_end: u8;
    safe static __boot_pt_start: u8;
    safe static exception_vectors: u8;
    fn switch_ttbr1_idmap(ttbr1: u64);
}

/// Tables available before the direct map exists.
const POOL_TABLES: usize = 64;

#[repr(C, align(4096))]
struct TablePage([u64; 512]);

struct TablePool(UnsafeCell<[TablePage; POOL_TABLES]>);
// SAFETY: the pool is only reached through `KERNEL_SPACE`'s lock.
unsafe impl Sync for TablePool {}
static POOL: TablePool = TablePool(UnsafeCell::new([const { TablePage([0; 512]) }; POOL_TABLES]));

static KIMAGE_PA: AtomicU64 = AtomicU64::new(0);
static DIRECT_MAP_LIVE: AtomicBool = AtomicBool::new(false);
static MMIO_NEXT: AtomicU64 = AtomicU64::new(MMIO_BASE);

/// Initial kernel heap, inside the image's BSS.
const HEAP_BYTES: usize = 4 << 20;
#[repr(C, align(4096))]
struct HeapArena(UnsafeCell<[u8; HEAP_BYTES]>);
// SAFETY: handed to the heap allocator exactly once, in `init_heap`.
unsafe impl Sync for HeapArena {}
static HEAP_ARENA: HeapArena = HeapArena(UnsafeCell::new([0; HEAP_BYTES]));

#[global_allocator]
static HEAP: LockedHeap<32> = LockedHeap::empty();

/// Gives the heap its arena (once, on the boot CPU, before any allocation).
pub fn init_heap() {
    // SAFETY: the arena is a static of HEAP_BYTES used by nothing else, and this runs once.
    unsafe { HEAP.lock().init(HEAP_ARENA.0.get() as usize, HEAP_BYTES) };
}

/// Bytes the heap has handed out (for the boot report).
pub fn heap_used() -> usize {
    HEAP.lock().stats_alloc_actual()
}

/// Bytes the heap can still hand out.
pub fn heap_free() -> usize {
    let h = HEAP.lock();
    h.stats_total_bytes().saturating_sub(h.stats_alloc_actual())
}

/// Bytes the heap holds in all (handed out or not).
pub fn heap_total() -> usize {
    HEAP.lock().stats_total_bytes()
}

/// Adds `frames` contiguous frames from the frame allocator to the heap (after the direct map is
/// live). Returns the bytes added (0 if the frames are not there).
pub fn grow_heap(frames: usize) -> usize {
    let Some(pa) = FRAMES.lock().alloc(frames) else { return 0 };
    let start = phys_to_virt(pa) as usize;
    let bytes = frames.next_power_of_two() * PAGE_SIZE as usize;
    // SAFETY: the frames were just taken from the frame allocator (no one else owns them) and are
    // mapped RW by the direct map for the kernel's life; the heap owns them from now on.
    unsafe { HEAP.lock().add_to_heap(start, start + bytes) };
    bytes
}

/// The address of the exception vectors.
pub fn vectors() -> u64 {
    &raw const exception_vectors as u64
}

/// Records where the loader put the image.
pub fn set_kimage_pa(pa: u64) {
    KIMAGE_PA.store(pa, Ordering::Relaxed);
}

/// The physical address of a kernel-image virtual address.
pub fn kimage_virt_to_phys(va: u64) -> u64 {
    va - KIMAGE_VBASE + KIMAGE_PA.load(Ordering::Relaxed)
}

/// The image's physical extent (kernel text, data, BSS and the boot area).
pub fn kimage_region() -> Region {
    let start = &raw const __kimage_start as u64;
    let end = &raw const __kimage_end as u64;
    Region { base: kimage_virt_to_phys(start), size: end - start }
}

/// The boot CPU's kernel stack top.
pub fn boot_stack_top() -> u64 {
    unsafe extern "C" {
        safe static __boot_stack_top: u8;
    }
    &raw const __boot_stack_top as u64
}

/// Physical address of the bootstrap identity-map tables (TTBR0 for CPUs enabling their MMU).
pub fn boot_ttbr0() -> u64 {
    kimage_virt_to_phys(&raw const __boot_pt_start as u64)
}

/// Physical address of `secondary_entry` in boot.S.
pub fn secondary_entry_pa() -> u64 {
    unsafe extern "C" {
        safe static secondary_entry: u8;
    }
    kimage_virt_to_phys(&raw const secondary_entry as u64)
}

struct KernelTables {
    pool_next: usize,
}

impl KernelTables {
    fn pool_range() -> (u64, u64) {
        let start = kimage_virt_to_phys(POOL.0.get() as u64);
        (start, start + (POOL_TABLES as u64) * PAGE_SIZE)
    }
}

impl TableMemory for KernelTables {
    fn alloc_table(&mut self) -> Option<u64> {
        if self.pool_next < POOL_TABLES {
            let pa = Self::pool_range().0 + self.pool_next as u64 * PAGE_SIZE;
            self.pool_next += 1;
            return Some(pa);
        }
        if !DIRECT_MAP_LIVE.load(Ordering::Relaxed) {
            return None;
        }
        let pa = FRAMES.lock().alloc(1)?;
        self.table(pa).fill(0);
        Some(pa)
    }

    fn free_table(&mut self, pa: u64) {
        let (start, end) = Self::pool_range();
        if !(start..end).contains(&pa) {
            FRAMES.lock().free(pa, 1);
        }
        // Pool tables are never reused: the kernel's boot mappings are permanent.
    }

    fn table(&mut self, pa: u64) -> &mut [u64; 512] {
        let (start, end) = Self::pool_range();
        let va = if (start..end).contains(&pa) { pa - start + POOL.0.get() as u64 } else { phys_to_virt(pa) };
        // SAFETY: `pa` is a table frame this allocator handed out (a pool page, or a frame reached
        // through the live direct map), 4 KiB aligned, and only touched under KERNEL_SPACE's lock.
        unsafe { &mut *(va as *mut [u64; 512]) }
    }
}

struct KernelSpace {
    table: PageTable<Stage1>,
    memory: KernelTables,
}

static KERNEL_SPACE: Mutex<Option<KernelSpace>> = Mutex::new(None);

/// Builds the final kernel tables (not yet live): the image W^X and a direct map of `ram`.
pub fn build(ram: &[Region]) -> Result<(), MapError> {
    let mut memory = KernelTables { pool_next: 0 };
    let mut table = PageTable::<Stage1>::new(&mut memory)?;
    let sections = [
        (&raw const __text_start as u64, &raw const __text_end as u64, Attrs::KERNEL_TEXT),
        (&raw const __rodata_start as u64, &raw const __rodata_end as u64, Attrs::KERNEL_RODATA),
        (&raw const __data_start as u64, &raw const __kimage_end as u64, Attrs::KERNEL_DATA),
    ];
    for (start, end, attrs) in sections {
        table.map(&mut memory, start, kimage_virt_to_phys(start), end - start, attrs, false)?;
    }
    for bank in ram {
        let base = align_down(bank.base, PAGE_SIZE);
        let end = align_up(bank.end(), PAGE_SIZE);
        table.map(&mut memory, DIRECT_MAP_BASE + base, base, end - base, Attrs::KERNEL_DATA, true)?;
    }
    *KERNEL_SPACE.lock() = Some(KernelSpace { table, memory });
    Ok(())
}

/// Maps the device registers at [pa, pa+size) and returns their virtual address.
pub fn ioremap(pa: u64, size: u64) -> Result<usize, MapError> {
    let base = align_down(pa, PAGE_SIZE);
    let len = align_up(pa + size, PAGE_SIZE) - base;
    let va = MMIO_NEXT.fetch_add(len, Ordering::Relaxed);
    if va + len > MMIO_BASE + MMIO_SIZE {
        return Err(MapError::OutOfMemory);
    }
    let mut guard = KERNEL_SPACE.lock();
    let space = guard.as_mut().ok_or(MapError::NotMapped)?;
    space.table.map(&mut space.memory, va, base, len, Attrs::DEVICE, false)?;
    barrier::dsb(barrier::ISHST);
    barrier::isb(barrier::SY);
    Ok((va + (pa - base)) as usize)
}

/// Physical address of the kernel's root table (the TTBR1 value).
pub fn root() -> u64 {
    KERNEL_SPACE.lock().as_ref().map_or(0, |s| s.table.root())
}

/// Switches this CPU from the bootstrap tables to the ones `build` made.
pub fn activate() {
    let root = root();
    let trampoline = kimage_virt_to_phys(switch_ttbr1_idmap as *const () as u64);
    // SAFETY: `switch_ttbr1_idmap` (boot.S) touches no memory and no stack; it is called at its
    // physical address, which the bootstrap identity map (TTBR0) covers, so changing TTBR1 never
    // changes the mapping of the instructions doing it. The new table maps the image at the same
    // addresses, so the return lands on the same code.
    unsafe {
        let f: extern "C" fn(u64) = core::mem::transmute(trampoline as usize);
        f(root);
    }
    DIRECT_MAP_LIVE.store(true, Ordering::Relaxed);
}

/// Turns off TTBR0 walks on this CPU (the identity map is only for MMU bring-up; user address
/// spaces install their own TTBR0 later).
pub fn disable_identity_map() {
    TCR_EL1.modify(TCR_EL1::EPD0::DisableTTBR0Walks);
    barrier::isb(barrier::SY);
    // SAFETY: TLB maintenance has no memory-safety effect; it drops stale TTBR0 entries.
    unsafe { core::arch::asm!("tlbi vmalle1", "dsb nsh", "isb", options(nostack)) };
}

/// Prepares this CPU to run user threads: 16-bit ASIDs (when the CPU has them), TTBR0 walks on,
/// TTBR0 pointing at the empty table until a thread's address space is installed, and EL0 access
/// to the counters.
pub fn enable_user_space(empty_table: u64) {
    use aarch64_cpu::registers::{CNTHCTL_EL2, CNTVOFF_EL2, ID_AA64MMFR0_EL1, TTBR0_EL1, Writeable};
    let asid16 = ID_AA64MMFR0_EL1.read(ID_AA64MMFR0_EL1::ASIDBits) == 0b0010;
    TTBR0_EL1.set(empty_table);
    TCR_EL1.modify(TCR_EL1::EPD0::EnableTTBR0Walks + if asid16 { TCR_EL1::AS::ASID16Bits } else { TCR_EL1::AS::ASID8Bits });
    // With E2H=1, CNTHCTL_EL2 bits 0 and 1 are EL0PCTEN and EL0VCTEN: user code may read the
    // counters (benchmarks, uptime). CNTVOFF is 0 so the virtual counter is the physical one.
    // Bits 10 and 11 (EL1PCTEN, EL1PCEN) give a guest's EL1 the physical counter and the EL1
    // physical timer, which the host never uses (it ticks on the EL2 timer): the guest's own,
    // switched with its vCPU. EL0PTEN (bit 9) stays clear, so host EL0 cannot reach the EL2
    // timer that CNTP_* names for it.
    CNTHCTL_EL2.set(CNTHCTL_EL2.get() | 0b11 | (1 << 10) | (1 << 11));
    CNTVOFF_EL2.set(0);
    barrier::isb(barrier::SY);
    // SAFETY: TLB maintenance only: nothing cached from before the ASID size changed may survive.
    unsafe { core::arch::asm!("tlbi vmalle1", "dsb nsh", "isb", options(nostack)) };
}

/// The number of ASIDs this CPU supports (8 or 16 bits).
pub fn asid_count() -> u32 {
    use aarch64_cpu::registers::ID_AA64MMFR0_EL1;
    if ID_AA64MMFR0_EL1.read(ID_AA64MMFR0_EL1::ASIDBits) == 0b0010 { 1 << 16 } else { 1 << 8 }
}

/// The initrd's bytes through the direct map.
pub fn initrd_bytes(region: Region) -> &'static [u8] {
    // SAFETY: the DTB's initrd range is RAM excluded from the frame allocator (never reused) and
    // mapped read-write in the direct map for the kernel's life.
    unsafe { core::slice::from_raw_parts(phys_to_virt(region.base) as *const u8, region.size as usize) }
}

/// The TTBR1 value live on this CPU.
pub fn current_ttbr1() -> u64 {
    TTBR1_EL1.get()
}
