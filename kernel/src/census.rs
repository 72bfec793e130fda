//! The kernel object census: how many objects of each kind are alive and how much of each memory
//! pool is free. `mem_info` reports it (docs/ABI.md), the shell's `mem` shows it, and the leak and
//! fuzz scenarios compare it before and after their work. Reading it changes nothing.

use crate::hal;
use crate::kernel::Kernel;
use crate::mm::frame::FRAMES;
use keel_abi::PAGE_SIZE;

/// Live objects per kind and free pages per pool.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Census {
    pub processes: usize,
    pub threads: usize,
    pub vmspaces: usize,
    pub pmos: usize,
    pub connections: usize,
    pub notifications: usize,
    pub irqs: usize,
    pub vms: usize,
    pub vcpus: usize,
    pub vm_irq_lines: usize,
    pub vm_ioevents: usize,
    pub caps: usize,
    pub tables: usize,
    /// Frames held by PMOs (anonymous pages touched, contiguous runs).
    pub pmo_frames: usize,
    /// Frames in user address spaces' and VMs' page tables.
    pub table_frames: usize,
    pub frames_total: usize,
    pub frames_free: usize,
    pub heap_pages: usize,
    pub heap_free_pages: usize,
}

impl Kernel {
    pub fn census(&self) -> Census {
        let (tables, caps) = self.caps.totals();
        let (frames_total, frames_free) = {
            let f = FRAMES.lock();
            (f.total_frames(), f.free_frames())
        };
        let page = PAGE_SIZE as usize;
        let heap_total = hal::kernel_heap_total();
        Census {
            processes: self.processes.len(),
            threads: self.threads.len(),
            vmspaces: self.vmspaces.len(),
            pmos: self.pmos.len(),
            connections: self.conns.len(),
            notifications: self.notifs.len(),
            irqs: self.irqs.len(),
            vms: self.vms.len(),
            vcpus: self.vcpus.len(),
            vm_irq_lines: self.vm_irq_lines.len(),
            vm_ioevents: self.vm_ioevents.len(),
            caps,
            tables,
            pmo_frames: self.pmos.values().map(|p| p.resident_frames()).sum(),
            table_frames: crate::object::vmspace::table_frames(),
            frames_total,
            frames_free,
            heap_pages: heap_total / page,
            heap_free_pages: hal::kernel_heap_free().min(heap_total) / page,
        }
    }
}

impl Census {
    /// The seven result words of `mem_info` page `page` (`keel_abi::syscall::mem_info`), or
    /// `None` for an unknown page.
    pub fn page(&self, page: u64) -> Option<[u64; 7]> {
        use keel_abi::syscall::mem_info as m;
        let w = |v: usize| v as u64;
        Some(match page {
            m::MEMORY => [
                w(self.frames_total),
                w(self.frames_free),
                w(self.heap_pages),
                w(self.heap_free_pages),
                w(self.pmo_frames),
                w(self.table_frames),
                0,
            ],
            m::OBJECTS => [
                w(self.processes),
                w(self.threads),
                w(self.vmspaces),
                w(self.pmos),
                w(self.connections),
                w(self.notifications),
                w(self.irqs),
            ],
            m::MORE_OBJECTS => [w(self.vms), w(self.vcpus), w(self.vm_irq_lines), w(self.caps), w(self.tables), w(self.pmo_frames), w(self.vm_ioevents)],
            _ => return None,
        })
    }
}
