//! namesrv: services register connections by name; clients look them up.
//!
//! init creates namesrv's connection and gives the serving end to this process (startup cap
//! `serve`), so a restarted namesrv serves the same connection and nobody's capability goes stale.
//! Each lookup returns a copy of the registered connection with a badge unique to that lookup,
//! so servers can tell their clients apart (and keep a bulk buffer per client).
//!
//! Surviving a restart: every registration is also handed to init (`procmgr::NAMES_SAVE`), and
//! a starting namesrv first takes them all back (`NAMES_RESTORE`), so services need not notice
//! that namesrv restarted. init passes `generation=<n>` (how many times it started namesrv
//! before): badges of generation n start at 2^32 + n·2^40, so a restarted namesrv never hands
//! out a badge a live session of an earlier one already has.
#![cfg_attr(target_os = "none", no_std)]
#![forbid(unsafe_code)]

extern crate alloc;

use alloc::collections::BTreeMap;
use alloc::string::String;
use keel_rt::abi::rights;
use keel_rt::ipc::{Reply, Request};
use keel_rt::proto::{namesrv, procmgr, unpack_name};
use keel_rt::startup::Startup;
use keel_rt::{Error, Slot, println, sys};

/// Badges namesrv gives out start here (init's own badges are small numbers).
const FIRST_BADGE: u64 = 1 << 32;

/// The first badge namesrv's `generation`-th start hands out (2^23 generations of 2^40 badges).
pub fn first_badge(generation: u64) -> u64 {
    FIRST_BADGE + ((generation & 0x7f_ffff) << 40)
}

/// The registry: name -> slot of the registered connection in our table. Pure bookkeeping; the
/// capability operations are passed in so it is tested on the host.
#[derive(Default)]
pub struct Registry {
    names: BTreeMap<String, Slot>,
    next_badge: u64,
}

impl Registry {
    pub fn new() -> Self {
        Self::of_generation(0)
    }

    /// The registry of the `generation`-th start of namesrv (0 = the first).
    pub fn of_generation(generation: u64) -> Self {
        Self { names: BTreeMap::new(), next_badge: first_badge(generation) }
    }

    /// Records `slot` under `name`; returns the slot it replaced, which the caller deletes.
    pub fn register(&mut self, name: String, slot: Slot) -> Option<Slot> {
        self.names.insert(name, slot)
    }

    /// The registered slot and a fresh badge for a lookup.
    pub fn lookup(&mut self, name: &str) -> Result<(Slot, u64), Error> {
        let slot = *self.names.get(name).ok_or(Error::NotFound)?;
        let badge = self.next_badge;
        self.next_badge += 1;
        Ok((slot, badge))
    }

    pub fn len(&self) -> usize {
        self.names.len()
    }

    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }
}

fn handle(reg: &mut Registry, procmgr: Option<Slot>, req: &mut Request) -> Reply {
    let name = match unpack_name(&req.msg.data) {
        Ok(n) => n,
        Err(e) => return Reply::err(e),
    };
    match req.msg.label {
        namesrv::REGISTER => {
            let Some(conn) = req.caps.slots().next() else { return Reply::err(Error::Invalid) };
            match sys::cap_info(conn) {
                Ok((kind, _, _)) if kind == keel_rt::abi::ObjectKind::Connection as u64 => {}
                _ => {
                    let _ = sys::cap_delete(conn);
                    return Reply::err(Error::WrongType);
                }
            }
            // init keeps a copy for our next start (a copy: the kernel copies caps we send).
            if let Some(pm) = procmgr {
                let saved = keel_rt::ipc::Client::new(pm).call_with_caps(procmgr::NAMES_SAVE, req.msg.data, &[conn]);
                if let Err(e) = saved.and_then(|r| keel_rt::ipc::status(&r).map(|_| ())) {
                    println!("namesrv: init did not keep the registration of {name}: {e}");
                }
            }
            if let Some(old) = reg.register(name, conn) {
                let _ = sys::cap_delete(old);
            }
            Reply::ok([0; 4])
        }
        namesrv::LOOKUP => match reg.lookup(&name) {
            Ok((slot, badge)) => match sys::cap_copy(slot, None, rights::CALL | rights::GRANT, badge) {
                Ok(copy) => Reply { msg: keel_rt::abi::ipc::Message::new(0, [0; 4]), caps: alloc::vec![copy] },
                Err(e) => Reply::err(e),
            },
            Err(e) => Reply::err(e),
        },
        _ => Reply::err(Error::NoSys),
    }
}

pub fn main(startup: &Startup) -> i32 {
    let Some(conn) = startup.cap("serve") else {
        println!("namesrv: started without a `serve` connection; nothing to do");
        return 2;
    };
    let generation = startup.arg_value("generation").and_then(|g| g.parse().ok()).unwrap_or(0);
    let mut reg = Registry::of_generation(generation);
    let procmgr = startup.cap("procmgr");
    if let Some(pm) = procmgr {
        let restored = restore(&mut reg, pm);
        if generation > 0 {
            println!("namesrv: restarted (generation {generation}); {restored} registrations recovered from init");
        }
    }
    keel_rt::ipc::serve(conn, |req| handle(&mut reg, procmgr, req))
}

/// Takes back every registration init kept; how many.
fn restore(reg: &mut Registry, procmgr_slot: Slot) -> usize {
    let pm = keel_rt::ipc::Client::new(procmgr_slot);
    let mut n = 0;
    for index in 0.. {
        let Ok(r) = pm.call(procmgr::NAMES_RESTORE, [index, 0, 0, 0]) else { break };
        if keel_rt::ipc::status(&r).is_err() {
            break;
        }
        let Some(conn) = r.caps.slots().next() else { break };
        match unpack_name(&r.msg.data) {
            Ok(name) => {
                if let Some(old) = reg.register(name, conn) {
                    let _ = sys::cap_delete(old);
                }
                n += 1;
            }
            Err(_) => {
                let _ = sys::cap_delete(conn);
            }
        }
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookups_get_distinct_badges_and_missing_names_are_not_found() {
        let mut r = Registry::new();
        assert_eq!(r.register("console".into(), 12), None);
        let (s1, b1) = r.lookup("console").unwrap();
        let (s2, b2) = r.lookup("console").unwrap();
        assert_eq!((s1, s2), (12, 12));
        assert_ne!(b1, b2);
        assert!(b1 >= FIRST_BADGE);
        assert_eq!(r.lookup("shell"), Err(Error::NotFound));
    }

    #[test]
    fn a_restarted_namesrv_never_reuses_an_earlier_generations_badges() {
        let mut first = Registry::of_generation(0);
        let mut second = Registry::of_generation(1);
        first.register("fs".into(), 3);
        second.register("fs".into(), 3);
        let b0: alloc::vec::Vec<u64> = (0..1000).map(|_| first.lookup("fs").unwrap().1).collect();
        let b1 = second.lookup("fs").unwrap().1;
        assert!(b0.iter().all(|&b| b < b1));
        assert_eq!(first_badge(1) - first_badge(0), 1 << 40);
    }

    #[test]
    fn a_new_registration_replaces_the_old_and_returns_it_for_deletion() {
        let mut r = Registry::new();
        r.register("fs".into(), 9);
        assert_eq!(r.register("fs".into(), 10), Some(9));
        assert_eq!(r.lookup("fs").unwrap().0, 10);
        assert_eq!(r.len(), 1);
    }
}
