//! The VM monitor's request decoding: a COMMAND payload split into words exactly as
//! `services/vmm/src/monitor.rs` does, `vm run` words decoded by `RunCommand::parse`, and config
//! files by `VmConfig::from_file` / `into_config`. Accepted configs stay inside the documented
//! bounds (vCPUs, RAM size, name).
#![no_main]

use keel_vmm::config::{MAX_MEM, MAX_NAME_LEN, MIN_MEM, RunCommand, VmConfig};
use keel_vmm::layout::{MAX_VCPUS, PAGE_SIZE};
use libfuzzer_sys::fuzz_target;

fn check(c: &VmConfig) {
    assert!((1..=MAX_VCPUS).contains(&c.vcpus), "{} vcpus accepted", c.vcpus);
    assert!((MIN_MEM..=MAX_MEM).contains(&c.mem_bytes) && c.mem_bytes % PAGE_SIZE == 0, "{} bytes of RAM accepted", c.mem_bytes);
    assert!(!c.name.is_empty() && c.name.len() <= MAX_NAME_LEN, "VM name {:?} accepted", c.name);
}

fuzz_target!(|data: &[u8]| {
    // The input is `payload \xff config text`: the command's words and a config file for it.
    let (payload, config) = match data.iter().position(|&b| b == 0xff) {
        Some(i) => (&data[..i], Some(&data[i + 1..])),
        None => (data, None),
    };
    let config = config.map(String::from_utf8_lossy);
    let text = String::from_utf8_lossy(payload).into_owned();
    let words: Vec<&str> = text.split('\0').collect();
    if let ["run", rest @ ..] = words.as_slice() {
        if let Ok(cmd) = RunCommand::parse(rest) {
            if let Ok(c) = cmd.into_config(config.as_deref()) {
                check(&c);
            }
        }
    }
    if let Some(config) = &config {
        if let Ok(c) = VmConfig::from_file("/vm/fuzz.cfg", config) {
            check(&c);
        }
    }
});
