//! namesrv: services register connections by name; clients look them up.
//!
//! init creates namesrv's connection and gives the serving end to this process (startup cap
//! `serve`), so a restarted namesrv serves the same connection and nobody's capability goes stale.
//! Each lookup returns a copy of the registered connection with a badge unique to that lookup,
//! so servers can tell their clients apart (and keep a bulk buffer per client).
#![cfg_attr(target_os = "none", no_std)]
#![forbid(unsafe_code)]

extern crate alloc;

use alloc::collections::BTreeMap;
use alloc::string::String;
use keel_rt::abi::rights;
use keel_rt::ipc::{Reply, Request};
use keel_rt::proto::{namesrv, unpack_name};
use keel_rt::startup::Startup;
use keel_rt::{Error, Slot, println, sys};

/// Badges namesrv gives out start here (init's own badges are small numbers).
const FIRST_BADGE: u64 = 1 << 32;

/// The registry: name -> slot of the registered connection in our table. Pure bookkeeping; the
/// capability operations are passed in so it is tested on the host.
#[derive(Default)]
pub struct Registry {
    names: BTreeMap<String, Slot>,
    next_badge: u64,
}

impl Registry {
    pub fn new() -> Self {
        Self { names: BTreeMap::new(), next_badge: FIRST_BADGE }
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

fn handle(reg: &mut Registry, req: &mut Request) -> Reply {
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
    let mut reg = Registry::new();
    keel_rt::ipc::serve(conn, |req| handle(&mut reg, req))
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
    fn a_new_registration_replaces_the_old_and_returns_it_for_deletion() {
        let mut r = Registry::new();
        r.register("fs".into(), 9);
        assert_eq!(r.register("fs".into(), 10), Some(9));
        assert_eq!(r.lookup("fs").unwrap().0, 10);
        assert_eq!(r.len(), 1);
    }
}
