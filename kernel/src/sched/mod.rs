//! Scheduling. The policy (run queues, priorities, slices, affinity, balancing) is `runqueue`;
//! the kernel applies it in `kernel.rs` (`make_ready`, `schedule`, `tick`). `idle` accounts the
//! time every CPU waited at once, which `make bench` subtracts.

pub mod idle;
pub mod runqueue;
