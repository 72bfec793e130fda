//! Memory management: the virtual layout, physical frames, page tables, the kernel's own address
//! space and its heap.

pub mod frame;
pub mod layout;
pub mod pagetable;
