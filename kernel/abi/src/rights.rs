//! Capability rights bits (the kernel's `cap::Rights` uses the same positions).
pub const READ: u32 = 1 << 0;
pub const WRITE: u32 = 1 << 1;
pub const EXEC: u32 = 1 << 2;
pub const MAP: u32 = 1 << 3;
pub const CALL: u32 = 1 << 4;
pub const SERVE: u32 = 1 << 5;
pub const SIGNAL: u32 = 1 << 6;
pub const WAIT: u32 = 1 << 7;
pub const GRANT: u32 = 1 << 8;
pub const MANAGE: u32 = 1 << 9;
/// On a process or quota: charge memory to its quota (`bill_create`, `pmo_create`'s bill).
pub const BILL: u32 = 1 << 10;
pub const ALL: u32 = (1 << 11) - 1;
