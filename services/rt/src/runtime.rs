//! Program entry, heap and panic handler (bare-metal target only).

use crate::startup::Startup;
use crate::sync::Mutex;
use buddy_system_allocator::Heap;
use core::alloc::{GlobalAlloc, Layout};
use core::cell::UnsafeCell;
use core::ptr::NonNull;

/// The heap arena: in BSS, so its pages are only allocated when touched (the file service keeps
/// its tmpfs data here).
const HEAP_BYTES: usize = 256 << 20;
#[repr(C, align(4096))]
struct Arena(UnsafeCell<[u8; HEAP_BYTES]>);
// SAFETY: handed to the allocator once, at entry, before any other thread exists.
unsafe impl Sync for Arena {}
static ARENA: Arena = Arena(UnsafeCell::new([0; HEAP_BYTES]));

/// The buddy allocator behind [`Mutex`] (whose waiters yield; `LockedHeap`'s spin with `isb`).
struct LockedHeap(Mutex<Heap<32>>);

// SAFETY: every allocation and release goes through the lock; the buddy allocator hands out
// disjoint blocks of the arena with the requested alignment, or null.
unsafe impl GlobalAlloc for LockedHeap {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        self.0.lock().alloc(layout).map_or(core::ptr::null_mut(), |p| p.as_ptr())
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if let Some(p) = NonNull::new(ptr) {
            // SAFETY: the caller passes a block `alloc` gave out with this layout.
            unsafe { self.0.lock().dealloc(p, layout) };
        }
    }
}

#[global_allocator]
static HEAP: LockedHeap = LockedHeap(Mutex::new(Heap::empty()));

unsafe extern "Rust" {
    fn keel_main(startup: &Startup) -> i32;
}

core::arch::global_asm!(
    ".section .text.start, \"ax\"",
    ".global _start",
    "_start:",
    "    mov x29, #0",
    "    mov x30, #0",
    "    b {rust_start}",
    rust_start = sym rust_start,
);

extern "C" fn rust_start(startup_va: u64) -> ! {
    // SAFETY: the arena is ours alone and this runs once, before anything allocates.
    unsafe { HEAP.0.lock().init(ARENA.0.get() as usize, HEAP_BYTES) };
    // SAFETY: the creator mapped the one-page startup block read-only at `startup_va`
    // (docs/ABI.md); it stays mapped for the life of the process.
    let page = unsafe { core::slice::from_raw_parts(startup_va as *const u8, keel_abi::PAGE_SIZE as usize) };
    let bytes = &page[..page.iter().position(|&b| b == 0).unwrap_or(page.len())];
    let startup = core::str::from_utf8(bytes).ok().and_then(|t| Startup::parse(t).ok()).unwrap_or_default();
    crate::fs::set_namesrv(startup.cap("namesrv"));
    // SAFETY: every program defines `keel_main` through `keel_rt::entry!`.
    let code = unsafe { keel_main(&startup) };
    crate::fs::end_session();
    crate::sys::process_exit(code as i64)
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    match info.location() {
        Some(l) => crate::println!("panic at {}:{}: {}", l.file(), l.line(), info.message()),
        None => crate::println!("panic: {}", info.message()),
    }
    crate::sys::process_exit(101)
}
