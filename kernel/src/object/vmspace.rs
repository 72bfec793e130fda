//! User address spaces (stage 1, TTBR0_EL2, ASID-tagged): regions mapping PMOs, demand paging,
//! and checked access to user memory for system calls.
//!
//! A region maps a window of one PMO at a page-aligned user range with READ/WRITE/EXEC
//! permissions (never both WRITE and EXEC). Pages are entered in the table on first touch
//! (anonymous) or at map time (contiguous and device PMOs). The kernel never dereferences a user
//! pointer: it walks the regions, faults pages in, and copies through the direct map.

use super::Id;
use super::pmo::Pmo;
use crate::hal;
use crate::mm::pagetable::{Attrs, MapError, MemType, PageTable, Stage1, TableMemory};
use alloc::collections::BTreeMap;
use core::sync::atomic::{AtomicUsize, Ordering};
use keel_abi::{Error, PAGE_SIZE, USER_MAX_VA, USER_MIN_VA, perm};

/// Table frames for one user address space or one VM's stage-2 table: from the frame allocator,
/// reached through the direct map, charged to `quota`.
#[derive(Debug)]
pub struct UserTables {
    /// Whom the frames are charged to.
    pub quota: Id,
    /// Frames held now.
    pub frames: u64,
    /// Frames freed whose charge is not yet returned: a walk that frees many tables (an unmap,
    /// a teardown) returns their charge in one go ([`Self::settle`]).
    freed: u64,
}

impl UserTables {
    pub fn new(quota: Id) -> Self {
        Self { quota, frames: 0, freed: 0 }
    }

    /// Charges every frame held to `quota` from now on (a process moved to another quota).
    pub fn move_to(&mut self, quota: Id) {
        self.settle();
        super::quota::QUOTAS.lock().transfer(self.quota, quota, keel_abi::quota::MEMORY, self.frames * PAGE_SIZE);
        self.quota = quota;
    }

    /// Returns the charge of the frames freed since the last call. Called after every walk that
    /// may free tables; a table allocation settles first too, so nothing stays owed for long.
    pub fn settle(&mut self) {
        if self.freed != 0 {
            super::quota::QUOTAS.lock().uncharge(self.quota, keel_abi::quota::MEMORY, self.freed * PAGE_SIZE);
            self.freed = 0;
        }
    }
}

/// Frames [`UserTables`] holds now (the census reports them, so that a leak check can tell a
/// live process's page tables growing from frames nobody holds).
static TABLE_FRAMES: AtomicUsize = AtomicUsize::new(0);

/// Frames in user and stage-2 page tables.
pub fn table_frames() -> usize {
    TABLE_FRAMES.load(Ordering::Relaxed)
}

impl TableMemory for UserTables {
    fn alloc_table(&mut self) -> Option<u64> {
        self.settle();
        let pa = super::quota::alloc_frames(self.quota, 1).ok()?;
        self.frames += 1;
        TABLE_FRAMES.fetch_add(1, Ordering::Relaxed);
        hal::zero_frame(pa);
        Some(pa)
    }

    fn free_table(&mut self, pa: u64) {
        crate::mm::frame::FRAMES.lock().free(pa, 1);
        self.frames -= 1;
        self.freed += 1;
        TABLE_FRAMES.fetch_sub(1, Ordering::Relaxed);
    }

    fn table(&mut self, pa: u64) -> &mut [u64; 512] {
        hal::phys_table(pa)
    }
}

/// One mapped window of a PMO.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Region {
    pub end: u64,
    pub pmo: Id,
    pub pmo_offset: u64,
    pub perms: u64,
}

/// Why a user access could not be satisfied.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultError {
    /// No region covers the address.
    Unmapped,
    /// A region covers it but forbids this access.
    Forbidden,
    /// No memory for the page or its tables.
    NoMemory,
}

impl FaultError {
    pub fn describe(self) -> &'static str {
        match self {
            Self::Unmapped => "nothing mapped there",
            Self::Forbidden => "access not permitted",
            Self::NoMemory => "out of memory",
        }
    }
}

/// Kinds of access.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    Read,
    Write,
    Exec,
}

impl Access {
    pub fn name(self) -> &'static str {
        match self {
            Self::Read => "read",
            Self::Write => "write",
            Self::Exec => "execute",
        }
    }

    fn allowed_by(self, perms: u64) -> bool {
        match self {
            Self::Read => perms & perm::READ != 0,
            Self::Write => perms & perm::WRITE != 0,
            Self::Exec => perms & perm::EXEC != 0,
        }
    }
}

pub struct VmSpace {
    pub table: PageTable<Stage1>,
    /// Where the table's frames come from and are charged.
    pub tables: UserTables,
    pub asid: u16,
    /// Region start -> region.
    pub regions: BTreeMap<u64, Region>,
    /// Pages entered in the table.
    pub mapped_pages: usize,
    /// References: caps, plus one from the process that runs in it.
    pub refs: u32,
}

fn attrs_for(perms: u64, device: bool) -> Attrs {
    Attrs {
        mem: if device { MemType::Device } else { MemType::Normal },
        read: true,
        write: perms & perm::WRITE != 0,
        exec: perms & perm::EXEC != 0 && !device,
        user: true,
        global: false,
    }
}

impl VmSpace {
    /// An empty address space whose tables are charged to `quota`.
    pub fn new(asid: u16, quota: Id) -> Result<Self, Error> {
        let mut tables = UserTables::new(quota);
        let table = PageTable::new(&mut tables).map_err(|_| Error::NoMemory)?;
        Ok(Self { table, tables, asid, regions: BTreeMap::new(), mapped_pages: 0, refs: 0 })
    }

    /// The value for TTBR0_EL2 (table address; the ASID is added by the arch layer).
    pub fn root(&self) -> u64 {
        self.table.root()
    }

    /// The region covering `va`, with its start.
    pub fn region_at(&self, va: u64) -> Option<(u64, Region)> {
        let (&start, r) = self.regions.range(..=va).next_back()?;
        (va < r.end).then_some((start, *r))
    }

    /// Checks that [va, va+size) is a valid, free, page-aligned user range.
    pub fn check_free_range(&self, va: u64, size: u64) -> Result<(), Error> {
        if va % PAGE_SIZE != 0 || size % PAGE_SIZE != 0 {
            return Err(Error::Unaligned);
        }
        let end = va.checked_add(size).ok_or(Error::Invalid)?;
        if size == 0 || va < USER_MIN_VA || end > USER_MAX_VA {
            return Err(Error::Invalid);
        }
        if let Some((_, r)) = self.regions.range(..end).next_back() {
            if r.end > va {
                return Err(Error::Exists);
            }
        }
        Ok(())
    }

    /// Adds a region (range already checked) and maps eagerly what must be eager.
    pub fn add_region(&mut self, va: u64, size: u64, pmo_id: Id, pmo: &mut Pmo, pmo_offset: u64, perms: u64) -> Result<(), Error> {
        let region = Region { end: va + size, pmo: pmo_id, pmo_offset, perms };
        self.regions.insert(va, region);
        // Contiguous and physical objects are one run of frames: mapped at once, in one walk
        // (page by page, each page's own walk and free check cost ~300 instructions).
        let base = match pmo.backing {
            super::pmo::Backing::Anonymous { .. } => return Ok(()),
            super::pmo::Backing::Contiguous { base, .. } | super::pmo::Backing::Phys { base, .. } => base,
        };
        match self.table.map(&mut self.tables, va, base + pmo_offset, size, attrs_for(perms, pmo.is_device()), false) {
            Ok(()) => {
                self.mapped_pages += (size / PAGE_SIZE) as usize;
                Ok(())
            }
            Err(_) => {
                // Out of memory for a table part of the way: `map` has taken back what it
                // entered; a walk may have cached some of it meanwhile.
                hal::tlb_flush_asid(self.asid);
                self.regions.remove(&va);
                self.tables.settle();
                Err(Error::NoMemory)
            }
        }
    }

    fn enter_page(&mut self, va: u64, pa: u64, attrs: Attrs) -> Result<(), Error> {
        match self.table.map(&mut self.tables, va, pa, PAGE_SIZE, attrs, false) {
            Ok(()) => {
                self.mapped_pages += 1;
                Ok(())
            }
            Err(MapError::AlreadyMapped) => Ok(()),
            Err(_) => {
                self.tables.settle();
                Err(Error::NoMemory)
            }
        }
    }

    /// Unmaps every entered page of [va, va+size) and flushes them from the TLB: one flush of the
    /// whole ASID at the end (a broadcast TLBI per page cost QEMU a stop of every vCPU each time:
    /// unmapping 1,024 pages took 9.1 billion instructions). Each run of entered pages goes in one
    /// `unmap`: a table's emptiness check scans it from the start, so page by page cost a touched
    /// 1,024-page region 2.2 million instructions, 2,180 a page against 818 for 64 pages; by runs
    /// it is 79,005 (77 a page; 64 pages 5,942), measured under icount with a probe in ktest.
    fn remove_region_pages(&mut self, va: u64, size: u64) {
        let mut removed = 0;
        let (mut page, end) = (va, va + size);
        let entered = |vs: &Self, page: u64| vs.table.translate(&mut UserTables::new(0), page).is_some();
        while page < end {
            if !entered(self, page) {
                page += PAGE_SIZE;
                continue;
            }
            let start = page;
            while page < end && entered(self, page) {
                page += PAGE_SIZE;
            }
            if self.table.unmap(&mut self.tables, start, page - start).is_ok() {
                removed += ((page - start) / PAGE_SIZE) as usize;
            }
        }
        self.mapped_pages -= removed;
        self.tables.settle();
        if removed == 0 {
            return;
        }
        if size <= 8 * PAGE_SIZE {
            let mut page = va;
            while page < va + size {
                hal::tlb_flush_page(self.asid, page);
                page += PAGE_SIZE;
            }
        } else {
            hal::tlb_flush_asid(self.asid);
        }
    }

    /// Removes the region starting exactly at `va` with exactly `size`; returns its PMO id.
    pub fn unmap_region(&mut self, va: u64, size: u64) -> Result<Id, Error> {
        if va % PAGE_SIZE != 0 || size % PAGE_SIZE != 0 {
            return Err(Error::Unaligned);
        }
        match self.regions.get(&va) {
            Some(r) if r.end - va == size => {}
            Some(_) => return Err(Error::Invalid),
            None => return Err(Error::NotFound),
        }
        self.remove_region_pages(va, size);
        let r = self.regions.remove(&va).ok_or(Error::NotFound)?;
        Ok(r.pmo)
    }

    /// Resolves a fault on `va` given the PMO behind its region.
    pub fn fault_in(&mut self, va: u64, access: Access, pmo: &mut Pmo) -> Result<u64, FaultError> {
        let (start, region) = self.region_at(va).ok_or(FaultError::Unmapped)?;
        if !access.allowed_by(region.perms) {
            return Err(FaultError::Forbidden);
        }
        let page_va = va & !(PAGE_SIZE - 1);
        if let Some((pa, _)) = self.table.translate(&mut self.tables, page_va) {
            return Ok(pa + (va & (PAGE_SIZE - 1)));
        }
        let index = (region.pmo_offset + (page_va - start)) / PAGE_SIZE;
        let pa = match pmo.frame_for(index, self.tables.quota) {
            Ok(Some(pa)) => pa,
            Ok(None) => return Err(FaultError::Unmapped),
            Err(Error::NoMemory) => return Err(FaultError::NoMemory),
            Err(_) => return Err(FaultError::Unmapped),
        };
        self.enter_page(page_va, pa, attrs_for(region.perms, pmo.is_device())).map_err(|_| FaultError::NoMemory)?;
        Ok(pa + (va & (PAGE_SIZE - 1)))
    }

    /// Frees the page tables (not the PMOs: the caller drops their mapping references).
    pub fn destroy(mut self) {
        hal::tlb_flush_asid(self.asid);
        self.table.destroy(&mut self.tables);
        self.tables.settle();
    }
}
