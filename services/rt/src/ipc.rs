//! IPC helpers: a client with a per-connection shared buffer for bulk data, and a server loop.
//!
//! Protocol: the first bulk call of a client sends [`LABEL_BULK_SETUP`] with a memory object it
//! maps too; the server maps the same object and keeps it per badge. A bulk call puts its payload
//! at the start of the buffer with its length in `data[3]`; the reply's payload comes back the
//! same way. Servers must hand every client a distinct badge for this to work.

use crate::{sys, vm};
use alloc::collections::BTreeMap;
use alloc::vec::Vec;
use keel_abi::ipc::{CapList, Message};
use keel_abi::{Error, Slot, perm};

/// The label of the message that sets up a client's bulk buffer.
pub const LABEL_BULK_SETUP: u64 = u64::MAX - 1;
/// Bytes in a connection's bulk buffer.
pub const BULK_SIZE: u64 = 64 * 1024;

/// A reply or request with its capabilities.
pub use crate::sys::Received;

/// A client of one connection.
pub struct Client {
    conn: Slot,
    bulk: Option<u64>,
}

impl Client {
    pub const fn new(conn: Slot) -> Self {
        Self { conn, bulk: None }
    }

    pub fn slot(&self) -> Slot {
        self.conn
    }

    /// A call with a short message.
    pub fn call(&self, label: u64, data: [u64; 4]) -> Result<Received, Error> {
        sys::ipc_call(self.conn, &Message::new(label, data), CapList::EMPTY)
    }

    /// A call carrying capabilities.
    pub fn call_with_caps(&self, label: u64, data: [u64; 4], caps: &[Slot]) -> Result<Received, Error> {
        let list = CapList::from_slots(caps).ok_or(Error::Invalid)?;
        sys::ipc_call(self.conn, &Message::new(label, data), list)
    }

    /// A call with up to BULK_SIZE bytes of payload; returns the reply and its payload.
    pub fn call_bulk(&mut self, label: u64, words: [u64; 3], payload: &[u8]) -> Result<(Received, Vec<u8>), Error> {
        if payload.len() as u64 > BULK_SIZE {
            return Err(Error::Invalid);
        }
        let va = self.bulk_buffer()?;
        let buf = buffer(va);
        buf[..payload.len()].copy_from_slice(payload);
        let r = self.call(label, [words[0], words[1], words[2], payload.len() as u64])?;
        let n = (r.msg.data[3] as usize).min(BULK_SIZE as usize);
        Ok((r, buf[..n].to_vec()))
    }

    fn bulk_buffer(&mut self) -> Result<u64, Error> {
        if let Some(va) = self.bulk {
            return Ok(va);
        }
        let (va, pmo) = vm::map_anonymous(BULK_SIZE)?;
        let r = self.call_with_caps(LABEL_BULK_SETUP, [0; 4], &[pmo]);
        let _ = sys::cap_delete(pmo);
        match r {
            Ok(reply) if reply.msg.label == 0 => {
                self.bulk = Some(va);
                Ok(va)
            }
            Ok(_) => Err(Error::Invalid),
            Err(e) => Err(e),
        }
    }
}

/// The shared buffer at `va` as bytes.
fn buffer(va: u64) -> &'static mut [u8] {
    // SAFETY: `va` is a BULK_SIZE mapping this process made (client) or mapped from the client's
    // object (server) and never unmaps; the peer only touches it while this side is blocked in
    // the call (client) or has not replied yet (server).
    unsafe { core::slice::from_raw_parts_mut(va as *mut u8, BULK_SIZE as usize) }
}

/// One incoming call as a server handler sees it.
pub struct Request<'a> {
    pub badge: u64,
    pub msg: Message,
    pub caps: CapList,
    /// The client's payload (bulk calls) — the reply payload is written here too.
    pub bulk: Option<&'a mut [u8]>,
}

impl Request<'_> {
    /// The payload of a bulk call.
    pub fn payload(&self) -> &[u8] {
        match &self.bulk {
            Some(b) => &b[..(self.msg.data[3] as usize).min(b.len())],
            None => &[],
        }
    }

    /// Stores a reply payload; the length to put in the reply's `data[3]`.
    pub fn reply_payload(&mut self, bytes: &[u8]) -> u64 {
        match &mut self.bulk {
            Some(b) => {
                let n = bytes.len().min(b.len());
                b[..n].copy_from_slice(&bytes[..n]);
                n as u64
            }
            None => 0,
        }
    }
}

/// What a handler answers.
pub struct Reply {
    pub msg: Message,
    pub caps: Vec<Slot>,
}

impl Reply {
    pub fn ok(data: [u64; 4]) -> Self {
        Self { msg: Message::new(0, data), caps: Vec::new() }
    }

    pub fn err(e: Error) -> Self {
        Self { msg: Message::new(e.code() as u64, [0; 4]), caps: Vec::new() }
    }
}

/// Bulk buffers set up by clients, by (connection, badge): shared by every thread serving the
/// connection, so a call may be received by any of them.
static BUFFERS: crate::sync::Mutex<BTreeMap<(Slot, u64), u64>> = crate::sync::Mutex::new(BTreeMap::new());

/// Serves a connection forever: calls `handle` for each call and replies with its answer. Several
/// threads may serve one connection.
pub fn serve(conn: Slot, mut handle: impl FnMut(&mut Request) -> Reply) -> ! {
    let mut next = sys::ipc_recv(conn);
    loop {
        let reply = match next {
            Err(_) => {
                // Our caller vanished or the call could not be delivered: wait for the next.
                next = sys::ipc_recv(conn);
                continue;
            }
            Ok(r) if r.msg.label == LABEL_BULK_SETUP => setup_bulk(conn, &r),
            Ok(r) => {
                let bulk = BUFFERS.lock().get(&(conn, r.badge)).map(|&va| buffer(va));
                let mut req = Request { badge: r.badge, msg: r.msg, caps: r.caps, bulk };
                handle(&mut req)
            }
        };
        let list = CapList::from_slots(&reply.caps).unwrap_or(CapList::EMPTY);
        next = sys::ipc_reply_recv(conn, &reply.msg, list);
        for s in reply.caps {
            let _ = sys::cap_delete(s);
        }
    }
}

fn setup_bulk(conn: Slot, r: &Received) -> Reply {
    let Some(pmo) = r.caps.slots().next() else { return Reply::err(Error::Invalid) };
    if r.badge == 0 || BUFFERS.lock().contains_key(&(conn, r.badge)) {
        let _ = sys::cap_delete(pmo);
        return Reply::err(Error::Exists);
    }
    let mapped = vm::map_pmo(pmo, BULK_SIZE, perm::READ | perm::WRITE);
    let _ = sys::cap_delete(pmo);
    match mapped {
        Ok(va) => {
            BUFFERS.lock().insert((conn, r.badge), va);
            Reply::ok([0; 4])
        }
        Err(e) => Reply::err(e),
    }
}

/// Publishes the server connection `conn` as `name` with the name service (which gets CALL |
/// GRANT only, never SERVE), retrying for a second while namesrv is not serving yet.
pub fn register_service(namesrv: Slot, name: &str, conn: Slot) -> Result<(), Error> {
    const ATTEMPTS: u32 = 20;
    const PAUSE_NS: u64 = 50_000_000;
    let public = sys::cap_copy(conn, None, keel_abi::rights::CALL | keel_abi::rights::GRANT, 0)?;
    let words = crate::proto::pack_name(name)?;
    let ns = Client::new(namesrv);
    let mut last = Error::NotFound;
    for _ in 0..ATTEMPTS {
        match ns.call_with_caps(crate::proto::namesrv::REGISTER, words, &[public]).and_then(|r| status(&r).map(|_| ())) {
            Ok(()) => return Ok(()),
            Err(e) => last = e,
        }
        sys::sleep_ns(PAUSE_NS);
    }
    Err(last)
}

/// Looks `name` up with namesrv; while nobody registered it yet, retries up to `attempts` times
/// with `pause_ns` between (services register shortly after they start). The connection
/// capability (CALL | GRANT, with a badge of its own).
pub fn lookup(namesrv: Slot, name: &str, attempts: u32, pause_ns: u64) -> Result<Slot, Error> {
    let words = crate::proto::pack_name(name)?;
    let ns = Client::new(namesrv);
    let mut tries = 0;
    loop {
        let r = ns.call(crate::proto::namesrv::LOOKUP, words)?;
        match status(&r) {
            Ok(_) => return r.caps.slots().next().ok_or(Error::Invalid),
            Err(Error::NotFound) if tries + 1 < attempts => {
                tries += 1;
                sys::sleep_ns(pause_ns);
            }
            Err(e) => return Err(e),
        }
    }
}

/// A reply's status: Ok(message) if its label is 0, else the error it carries.
pub fn status(r: &Received) -> Result<&Message, Error> {
    if r.msg.label == 0 { Ok(&r.msg) } else { Err(Error::from_code(r.msg.label as i64).unwrap_or(Error::Invalid)) }
}
