//! IPC helpers: a client with a per-connection shared buffer for bulk data, and a server loop.
//!
//! Protocol: the first bulk call of a client sends [`LABEL_BULK_SETUP`] with a memory object it
//! maps too; the server maps the same object and keeps it per badge. A bulk call puts its payload
//! at the start of the buffer with its length in `data[3]`; the reply's payload comes back the
//! same way. Servers must hand every client a distinct badge for this to work.
//!
//! Clients that die: the setup message also carries a capability to the client's own process
//! (READ | WAIT only). [`serve`] watches it (`process_watch`) from a small reaper thread per
//! connection; when a client exits, the reaper calls the connection itself ([`LABEL_REAP`],
//! with a badge nobody else holds), and the serving thread unmaps the client's buffer and hands
//! the handler one [`LABEL_CLIENT_GONE`] request with the dead client's badge, so the service
//! frees whatever it keeps per client (the file service's session and open files). Handlers run
//! only on serving threads, so they need no locking against the reaper.
//!
//! [`LABEL_PING`] is answered by [`serve`] itself: `reconnect::ServiceClient` uses it to check a
//! connection is alive before a call that must not be repeated.

use crate::{sys, vm};
use alloc::collections::BTreeMap;
use alloc::vec::Vec;
use keel_abi::ipc::{CapList, Message};
use keel_abi::{Error, Slot, perm};

/// The label of the message that sets up a client's bulk buffer.
pub const LABEL_BULK_SETUP: u64 = u64::MAX - 1;
/// A no-op call answered by [`serve`] (is the server alive?).
pub const LABEL_PING: u64 = u64::MAX - 2;
/// The reaper's call to its own connection: some client exited (badge [`REAPER_BADGE`] only).
pub const LABEL_REAP: u64 = u64::MAX - 3;
/// What [`serve`] hands the handler, once per client that exited (`badge` = that client's).
/// Never sent by a client: one that tries gets `Invalid`.
pub const LABEL_CLIENT_GONE: u64 = u64::MAX - 4;
/// The badge of the reaper's own capability to the connection. namesrv's badges count up from
/// 2^32 and init's from 2, so no client holds this one.
pub const REAPER_BADGE: u64 = u64::MAX - 1;
/// Bytes in a connection's bulk buffer.
pub const BULK_SIZE: u64 = 64 * 1024;

/// A reply or request with its capabilities.
pub use crate::sys::Received;

/// A client of one connection.
pub struct Client {
    conn: Slot,
    bulk: Option<u64>,
    /// The process capability sent with the bulk-buffer setup carries BILL: the server may
    /// charge what it keeps for us to our quota (`sys::bill_create`; the file service does).
    pays: bool,
}

impl Client {
    pub const fn new(conn: Slot) -> Self {
        Self { conn, bulk: None, pays: false }
    }

    /// A client that pays for what the server keeps for it ("the client pays").
    pub const fn paying(conn: Slot) -> Self {
        Self { conn, bulk: None, pays: true }
    }

    pub fn slot(&self) -> Slot {
        self.conn
    }

    /// Lets go of the bulk buffer; the next bulk call sets up a new one (for a server that
    /// restarted on the same connection and never saw the old one).
    pub fn forget_buffer(&mut self) {
        if let Some(va) = self.bulk.take() {
            let _ = sys::vmspace_unmap(keel_abi::slots::SELF_VMSPACE, va, BULK_SIZE);
        }
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
        self.call_bulk_with_caps(label, words, payload, &[])
    }

    /// [`Self::call_bulk`] carrying copies of `caps` (GRANT needed on each).
    pub fn call_bulk_with_caps(&mut self, label: u64, words: [u64; 3], payload: &[u8], caps: &[Slot]) -> Result<(Received, Vec<u8>), Error> {
        if payload.len() as u64 > BULK_SIZE {
            return Err(Error::Invalid);
        }
        let va = self.bulk_buffer()?;
        let buf = buffer(va);
        buf[..payload.len()].copy_from_slice(payload);
        let r = self.call_with_caps(label, [words[0], words[1], words[2], payload.len() as u64], caps)?;
        let n = (r.msg.data[3] as usize).min(BULK_SIZE as usize);
        Ok((r, buf[..n].to_vec()))
    }

    fn bulk_buffer(&mut self) -> Result<u64, Error> {
        if let Some(va) = self.bulk {
            return Ok(va);
        }
        let (va, pmo) = vm::map_anonymous(BULK_SIZE)?;
        // Our process, so the server can tell when we are gone (it may only wait on it and read
        // its state).
        let bill = if self.pays { keel_abi::rights::BILL } else { 0 };
        let me = sys::cap_copy(keel_abi::slots::SELF_PROCESS, None, keel_abi::rights::READ | keel_abi::rights::WAIT | keel_abi::rights::GRANT | bill, 0);
        let r = match me {
            Ok(me) => {
                let r = self.call_with_caps(LABEL_BULK_SETUP, [0; 4], &[pmo, me]);
                let _ = sys::cap_delete(me);
                r
            }
            Err(_) => self.call_with_caps(LABEL_BULK_SETUP, [0; 4], &[pmo]),
        };
        let _ = sys::cap_delete(pmo);
        let r = match r {
            Ok(reply) if reply.msg.label == 0 => {
                self.bulk = Some(va);
                return Ok(va);
            }
            Ok(_) => Err(Error::Invalid),
            Err(e) => Err(e),
        };
        let _ = sys::vmspace_unmap(keel_abi::slots::SELF_VMSPACE, va, BULK_SIZE);
        r
    }
}

/// A client that goes (a connection given up for a new one after its server restarted, a
/// reconnect) gives its buffer back: each used to stay mapped, 64 KiB per reconnection.
impl Drop for Client {
    fn drop(&mut self) {
        self.forget_buffer();
    }
}

/// The shared buffer at `va` as bytes.
fn buffer(va: u64) -> &'static mut [u8] {
    // SAFETY: `va` is a BULK_SIZE mapping this process made (client) or mapped from the client's
    // object (server), unmapped only when its `Client` is dropped or its client is gone (no
    // slice of it outlives a call); the peer only touches it while this side is blocked in the
    // call (client) or has not replied yet (server).
    unsafe { core::slice::from_raw_parts_mut(va as *mut u8, BULK_SIZE as usize) }
}

/// One incoming call as a server handler sees it.
pub struct Request<'a> {
    pub badge: u64,
    pub msg: Message,
    pub caps: CapList,
    /// The client's payload (bulk calls) — the reply payload is written here too.
    pub bulk: Option<&'a mut [u8]>,
    /// [`serve`] watches the client's process: the handler will get [`LABEL_CLIENT_GONE`] for
    /// this badge when it exits (so per-client state it keeps cannot outlive the client).
    pub watched: bool,
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

/// What a server keeps per client: its bulk buffer and, if it sent one, its process.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClientRecord {
    pub buffer_va: u64,
    pub process: Option<Slot>,
}

/// Every connection's clients, by (connection, badge). Pure bookkeeping, tested on the host.
#[derive(Default)]
pub struct ClientTable {
    clients: BTreeMap<(Slot, u64), ClientRecord>,
}

impl ClientTable {
    pub const fn new() -> Self {
        Self { clients: BTreeMap::new() }
    }

    pub fn get(&self, conn: Slot, badge: u64) -> Option<ClientRecord> {
        self.clients.get(&(conn, badge)).copied()
    }

    pub fn contains(&self, conn: Slot, badge: u64) -> bool {
        self.clients.contains_key(&(conn, badge))
    }

    pub fn insert(&mut self, conn: Slot, badge: u64, record: ClientRecord) {
        self.clients.insert((conn, badge), record);
    }

    /// Removes and returns the clients of `conn` whose process `exited` says is gone (clients
    /// that sent no process are kept).
    pub fn take_exited(&mut self, conn: Slot, mut exited: impl FnMut(Slot) -> bool) -> Vec<(u64, ClientRecord)> {
        let gone: Vec<(Slot, u64)> = self
            .clients
            .iter()
            .filter(|((c, _), r)| *c == conn && r.process.is_some_and(&mut exited))
            .map(|(k, _)| *k)
            .collect();
        gone.into_iter().filter_map(|k| self.clients.remove(&k).map(|r| (k.1, r))).collect()
    }

    pub fn len(&self) -> usize {
        self.clients.len()
    }

    pub fn is_empty(&self) -> bool {
        self.clients.is_empty()
    }
}

/// Clients set up by their first bulk call, shared by every thread serving a connection, so a
/// call may be received by any of them.
static CLIENTS: crate::sync::Mutex<ClientTable> = crate::sync::Mutex::new(ClientTable::new());
/// Each connection's reaper notification (the reaper thread waits on it).
static REAPERS: crate::sync::Mutex<BTreeMap<Slot, Slot>> = crate::sync::Mutex::new(BTreeMap::new());

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
            Ok(r) if r.msg.label == LABEL_PING => Reply::ok([0; 4]),
            Ok(r) if r.msg.label == LABEL_REAP && r.badge == REAPER_BADGE => {
                reap(conn, &mut handle);
                Reply::ok([0; 4])
            }
            Ok(r) if r.msg.label == LABEL_REAP || r.msg.label == LABEL_CLIENT_GONE => {
                for s in r.caps.slots() {
                    let _ = sys::cap_delete(s);
                }
                Reply::err(Error::Invalid)
            }
            Ok(r) => {
                let client = CLIENTS.lock().get(conn, r.badge).map(|c| (c.buffer_va, c.process.is_some()));
                let bulk = client.map(|(va, _)| buffer(va));
                let watched = client.is_some_and(|(_, w)| w);
                let mut req = Request { badge: r.badge, msg: r.msg, caps: r.caps, bulk, watched };
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

/// The process capability the client with `badge` on `conn` sent with its bulk-buffer setup
/// (READ | WAIT, and BILL when it pays for what the service keeps for it): for a handler to ask
/// who the client is. [`serve`] holds it until the client is gone: do not delete it.
pub fn client_process(conn: Slot, badge: u64) -> Option<Slot> {
    CLIENTS.lock().get(conn, badge).and_then(|c| c.process)
}

/// Frees every client of `conn` that exited: its buffer, its process capability, and (through
/// `handle`, label [`LABEL_CLIENT_GONE`]) what the service kept for it.
fn reap(conn: Slot, handle: &mut impl FnMut(&mut Request) -> Reply) {
    let gone = CLIENTS.lock().take_exited(conn, |p| sys::process_info(p).map_or(true, |i| !i.running));
    for (badge, record) in gone {
        let _ = sys::vmspace_unmap(keel_abi::slots::SELF_VMSPACE, record.buffer_va, BULK_SIZE);
        if let Some(p) = record.process {
            let _ = sys::cap_delete(p);
        }
        let mut req = Request { badge, msg: Message::new(LABEL_CLIENT_GONE, [0; 4]), caps: CapList::EMPTY, bulk: None, watched: false };
        let _ = handle(&mut req);
    }
}

/// The reaper notification of `conn`, starting its thread the first time.
fn reaper(conn: Slot) -> Result<Slot, Error> {
    let mut reapers = REAPERS.lock();
    if let Some(&n) = reapers.get(&conn) {
        return Ok(n);
    }
    let notif = sys::notif_create()?;
    let own = match sys::cap_copy(conn, None, keel_abi::rights::CALL, REAPER_BADGE) {
        Ok(s) => s,
        Err(e) => {
            let _ = sys::cap_delete(notif);
            return Err(e);
        }
    };
    let started = crate::thread::spawn(move || loop {
        match sys::notif_wait(notif, 0) {
            Ok(_) => {
                let _ = sys::ipc_call(own, &Message::new(LABEL_REAP, [0; 4]), CapList::EMPTY);
            }
            Err(_) => sys::sleep_ns(100_000_000),
        }
    });
    match started {
        Ok(t) => {
            let _ = sys::cap_delete(t);
            reapers.insert(conn, notif);
            Ok(notif)
        }
        Err(e) => {
            let _ = sys::cap_delete(own);
            let _ = sys::cap_delete(notif);
            Err(e)
        }
    }
}

fn setup_bulk(conn: Slot, r: &Received) -> Reply {
    let mut caps = r.caps.slots();
    let Some(pmo) = caps.next() else { return Reply::err(Error::Invalid) };
    let process = caps.next();
    let drop_caps = || {
        for s in r.caps.slots() {
            let _ = sys::cap_delete(s);
        }
    };
    if r.badge == 0 || r.badge == REAPER_BADGE || CLIENTS.lock().contains(conn, r.badge) {
        drop_caps();
        return Reply::err(Error::Exists);
    }
    // Only a process capability we can watch counts; anything else is dropped.
    let process = process.filter(|&p| {
        let ok = sys::cap_info(p).is_ok_and(|(kind, _, _)| kind == keel_abi::ObjectKind::CapGroup as u64)
            && reaper(conn).and_then(|n| sys::process_watch(p, n, 1)).is_ok();
        if !ok {
            let _ = sys::cap_delete(p);
        }
        ok
    });
    let mapped = vm::map_pmo(pmo, BULK_SIZE, perm::READ | perm::WRITE);
    let _ = sys::cap_delete(pmo);
    match mapped {
        Ok(va) => {
            CLIENTS.lock().insert(conn, r.badge, ClientRecord { buffer_va: va, process });
            Reply::ok([0; 4])
        }
        Err(e) => {
            if let Some(p) = process {
                let _ = sys::cap_delete(p);
            }
            Reply::err(e)
        }
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
            Ok(()) => {
                let _ = sys::cap_delete(public);
                return Ok(());
            }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exited_clients_are_taken_once_and_only_from_their_connection() {
        let mut t = ClientTable::new();
        t.insert(5, 100, ClientRecord { buffer_va: 0x1000, process: Some(40) });
        t.insert(5, 101, ClientRecord { buffer_va: 0x2000, process: Some(41) });
        t.insert(5, 102, ClientRecord { buffer_va: 0x3000, process: None });
        t.insert(6, 100, ClientRecord { buffer_va: 0x4000, process: Some(40) });
        let gone = t.take_exited(5, |p| p == 40);
        assert_eq!(gone, alloc::vec![(100, ClientRecord { buffer_va: 0x1000, process: Some(40) })]);
        assert!(!t.contains(5, 100));
        assert!(t.contains(5, 101) && t.contains(5, 102) && t.contains(6, 100));
        assert!(t.take_exited(5, |p| p == 40).is_empty());
        assert_eq!(t.len(), 3);
    }
}
