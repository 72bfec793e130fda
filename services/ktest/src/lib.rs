//! ktest (being written).
#![cfg_attr(target_os = "none", no_std)]
#![forbid(unsafe_code)]

extern crate alloc;

pub fn main(_startup: &keel_rt::startup::Startup) -> i32 {
    keel_rt::println!("ktest: not written yet");
    0
}
