//! init: the first process.
#![cfg_attr(target_os = "none", no_std)]
#![forbid(unsafe_code)]

extern crate alloc;

use keel_rt::startup::Startup;
use keel_rt::{println, sys};

pub fn main(startup: &Startup) -> i32 {
    println!("init: hello from EL0, args {:?}, caps {:?}", startup.args, startup.caps);
    if let Some(s) = startup.arg_value("scenario") {
        println!("init: unknown scenario '{s}'");
    }
    if let Some(control) = startup.cap("control") {
        let _ = sys::power_off(control, false);
    }
    0
}
