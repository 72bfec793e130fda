//! procmgr's SPAWN decoder (`keel_init::request::parse_spawn`): an accepted request has an
//! absolute path and at most MAX_ARGS non-empty arguments, and encoding it again decodes the same.
#![no_main]

use keel_init::request::{MAX_ARGS, parse_spawn, program_name};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|payload: &[u8]| {
    let Ok(req) = parse_spawn(payload) else { return };
    assert!(req.path.starts_with('/'), "relative path {:?}", req.path);
    assert!(req.args.len() <= MAX_ARGS, "{} arguments", req.args.len());
    assert!(req.args.iter().all(|a| !a.is_empty() && !a.contains('\0')), "bad argument in {:?}", req.args);
    assert!(!program_name(&req.path).contains('/'));
    let mut again = req.path.clone();
    for a in &req.args {
        again.push('\0');
        again.push_str(a);
    }
    assert_eq!(parse_spawn(again.as_bytes()), Ok(req), "spawn request round trip");
});
