//! Scheduling. The policy (run queues, priorities, slices, affinity, balancing) is `runqueue`;
//! the kernel applies it in `kernel.rs` (`make_ready`, `schedule`, `tick`).

pub mod runqueue;
