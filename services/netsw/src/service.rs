//! The switch service: one connection, registered as `net`. A port's backend calls with the
//! port's own badged capability (made by OPEN), so a backend can send and take frames on its
//! port and nothing else; everyone else's calls (the monitor's OPEN and CLOSE, the shell's
//! `net` commands) come with namesrv's badges. A port goes when its backend exits ([`serve`]
//! reports the client gone), when its opener closes it, or when its opener exits.

use crate::switch::{Fabric, OpenError};
use alloc::collections::BTreeMap;
use alloc::string::String;
use alloc::vec::Vec;
use keel_rt::ipc::{self, Reply, Request};
use keel_rt::proto::net;
use keel_rt::startup::Startup;
use keel_rt::{Error, Slot, println, sys};

/// Badges of port capabilities: this bit and the port's number (namesrv's badges count up
/// from 2^32, init's from 2).
const PORT_BADGE: u64 = 1 << 48;

struct State {
    fabric: Fabric,
    /// Each attached port's notification and the bits to signal on it.
    notify: BTreeMap<u64, (Slot, u64)>,
    conn: Slot,
    scratch: Vec<u8>,
}

pub fn main(startup: &Startup) -> i32 {
    let Some(namesrv) = startup.cap("namesrv") else {
        println!("netsw: started without namesrv");
        return 1;
    };
    let conn = match sys::conn_create() {
        Ok(c) => c,
        Err(e) => {
            println!("netsw: cannot create its connection: {e}");
            return 1;
        }
    };
    if let Err(e) = ipc::register_service(namesrv, "net", conn) {
        println!("netsw: cannot register with namesrv: {e}");
        return 1;
    }
    let mut state = State { fabric: Fabric::new(), notify: BTreeMap::new(), conn, scratch: Vec::new() };
    ipc::serve(conn, move |req| handle(&mut state, req))
}

fn port_of(badge: u64) -> Option<u64> {
    (badge & PORT_BADGE != 0).then_some(badge & !PORT_BADGE)
}

fn handle(state: &mut State, req: &mut Request) -> Reply {
    if req.msg.label == ipc::LABEL_CLIENT_GONE {
        match port_of(req.badge) {
            Some(port) => close(state, port),
            None => {
                for port in state.fabric.opened_by(req.badge) {
                    close(state, port);
                }
            }
        }
        return Reply::ok([0; 4]);
    }
    let reply = match port_of(req.badge) {
        Some(port) if state.fabric.port(port).is_some() => port_call(state, port, req),
        Some(_) => Reply::err(Error::PeerDied),
        None => client_call(state, req),
    };
    // Capabilities sent with a call this service does not keep are not kept.
    for s in req.caps.slots() {
        if !state.notify.values().any(|&(n, _)| n == s) {
            let _ = sys::cap_delete(s);
        }
    }
    reply
}

fn close(state: &mut State, port: u64) {
    state.fabric.close(port);
    if let Some((notif, _)) = state.notify.remove(&port) {
        let _ = sys::cap_delete(notif);
    }
}

/// Calls from the monitor and the shell.
fn client_call(state: &mut State, req: &mut Request) -> Reply {
    match req.msg.label {
        net::OPEN => {
            let Ok(name) = core::str::from_utf8(req.payload()).map(String::from) else { return Reply::err(Error::Invalid) };
            let (vm, mac) = (req.msg.data[0], net::word_mac(req.msg.data[1]));
            let port = match state.fabric.open(&name, vm, mac, req.badge) {
                Ok(p) => p,
                Err(OpenError::BadName) => return Reply::err(Error::Invalid),
                Err(OpenError::AddressInUse) => return Reply::err(Error::Exists),
                Err(OpenError::Full) => return Reply::err(Error::TableFull),
            };
            match sys::cap_copy(state.conn, None, keel_rt::abi::rights::CALL | keel_rt::abi::rights::GRANT, PORT_BADGE | port) {
                Ok(cap) => Reply { caps: alloc::vec![cap], ..Reply::ok([port, 0, 0, 0]) },
                Err(e) => {
                    state.fabric.close(port);
                    Reply::err(e)
                }
            }
        }
        net::CLOSE => {
            let port = req.msg.data[0];
            match state.fabric.port(port) {
                Some(p) if p.opener == req.badge => {
                    close(state, port);
                    Reply::ok([0; 4])
                }
                Some(_) => Reply::err(Error::NoRights),
                None => Reply::err(Error::NotFound),
            }
        }
        net::COMMAND => {
            let text = String::from_utf8_lossy(req.payload()).into_owned();
            let words: Vec<&str> = text.split('\0').filter(|w| !w.is_empty()).collect();
            let out = state.fabric.command(&words);
            let n = req.reply_payload(out.as_bytes());
            Reply::ok([0, 0, 0, n])
        }
        _ => Reply::err(Error::NoSys),
    }
}

/// Calls from a port's backend.
fn port_call(state: &mut State, port: u64, req: &mut Request) -> Reply {
    match req.msg.label {
        net::ATTACH => {
            let Some(notif) = req.caps.slots().next() else { return Reply::err(Error::Invalid) };
            if let Some((old, _)) = state.notify.insert(port, (notif, req.msg.data[0])) {
                let _ = sys::cap_delete(old);
            }
            // Frames that came before it attached.
            if state.fabric.port(port).is_some_and(|p| !p.queue.is_empty()) {
                let _ = sys::notif_signal(notif, req.msg.data[0]);
            }
            Reply::ok([0; 4])
        }
        net::SEND => {
            if req.bulk.is_none() {
                return Reply::err(Error::Invalid);
            }
            let mut taken = 0;
            let mut wake = Vec::new();
            for frame in net::frames(req.payload()) {
                wake.extend(state.fabric.send(port, frame));
                taken += 1;
            }
            wake.sort_unstable();
            wake.dedup();
            for p in wake {
                if let Some(&(notif, bits)) = state.notify.get(&p) {
                    let _ = sys::notif_signal(notif, bits);
                }
            }
            Reply::ok([taken, 0, 0, 0])
        }
        net::RECV => {
            if req.bulk.is_none() {
                return Reply::err(Error::Invalid);
            }
            let max = usize::try_from(req.msg.data[0]).unwrap_or(usize::MAX);
            state.scratch.clear();
            let (n, left) = state.fabric.take(port, max, &mut state.scratch, ipc::BULK_SIZE as usize);
            let len = req.reply_payload(&state.scratch);
            Reply::ok([n, left, 0, len])
        }
        _ => Reply::err(Error::NoSys),
    }
}
