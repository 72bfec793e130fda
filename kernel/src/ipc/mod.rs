//! Synchronous IPC on connections and asynchronous notifications.
//!
//! A call hands the CPU straight to a waiting server thread (the client's time slice runs the
//! server's handler: migrating-thread style), and the reply hands it straight back, so the common
//! call/reply on one CPU never goes through the run queues. With no server waiting, the caller
//! queues on the connection. Capabilities named in the message are copied (with GRANT) into the
//! receiver's table at delivery. A server that dies leaves its caller an error; a client that dies
//! leaves the server's reply an error.

use crate::cap::Rights;
use crate::kernel::{Kernel, cap_error};
use crate::object::thread::{Block, Outcome, ThreadState, UserRegs, Words, set_return};
use crate::object::Id;
use alloc::vec::Vec;
use keel_abi::Error;
use keel_abi::ipc::{CapList, Message};

/// A delivered message as result words: x1..x5 message, x6 badge, x7 received cap slots.
fn received(msg: &Message, badge: u64, caps: CapList) -> Words {
    Words::new(&[msg.label, msg.data[0], msg.data[1], msg.data[2], msg.data[3], badge, caps.0])
}

/// Writes a delivered message into the saved registers of a thread that waited for it.
fn deliver(regs: &mut UserRegs, msg: &Message, badge: u64, caps: CapList) {
    set_return(regs, 0, received(msg, badge, caps).as_slice());
}

impl Kernel {
    /// Copies the caps `list` names in `from`'s table into `to`'s table. All or nothing.
    /// Inlined for the common empty list; the copying itself is out of line.
    #[inline(always)]
    fn transfer_caps(&mut self, from: Id, to: Id, list: CapList) -> Result<CapList, Error> {
        if list.is_empty() { Ok(CapList::EMPTY) } else { self.copy_caps(from, to, list) }
    }

    #[inline(never)]
    fn copy_caps(&mut self, from: Id, to: Id, list: CapList) -> Result<CapList, Error> {
        self.check_heap()?;
        // Decode: every cap exists and may be granted, and the receiver has room.
        for slot in list.slots() {
            self.caps.lookup(from, slot, Rights::GRANT).map_err(cap_error)?;
        }
        let free = crate::kernel::PROCESS_SLOTS as usize - self.caps.count(to).map_err(cap_error)?;
        if free < list.len() {
            return Err(Error::TableFull);
        }
        let mut received = Vec::new();
        for slot in list.slots() {
            let cap = self.caps.get(from, slot).map_err(cap_error)?;
            let (obj, rights) = (cap.object, cap.rights);
            match self.caps.copy((from, slot), to, rights, None) {
                Ok(s) => {
                    self.inc_ref(obj);
                    received.push(s);
                }
                Err(e) => {
                    for s in received {
                        if let Ok(o) = self.caps.delete(to, s) {
                            self.dec_ref(o);
                        }
                    }
                    return Err(cap_error(e));
                }
            }
        }
        Ok(CapList::from_slots(&received).unwrap_or(CapList::EMPTY))
    }

    /// `ipc_call` on `conn` (through a cap with `badge`) by the current thread of `cpu`, which
    /// may grant every cap in `caps`.
    pub fn ipc_call(&mut self, cpu: usize, frame: &mut UserRegs, conn: Id, badge: u64, msg: Message, caps: CapList) -> Result<Outcome, Error> {
        let client = self.current[cpu].ok_or(Error::BadState)?;
        let cpid = self.cpus[cpu].pid;
        let c = self.conns.get_mut(&conn).ok_or(Error::PeerDied)?;
        if c.dead {
            return Err(Error::PeerDied);
        }
        // Prefer a waiting server thread that may run on this CPU: the call then hands this CPU
        // over at once instead of waking another (servers often pin one thread per CPU).
        let threads = &self.threads;
        let runs_here = |s: &Id| threads.get(s).is_some_and(|t| t.params.affinity.contains(cpu));
        let pick = if c.servers.front().is_none_or(runs_here) { 0 } else { c.servers.iter().position(runs_here).unwrap_or(0) };
        let server = if pick == 0 { c.servers.pop_front() } else { c.servers.remove(pick) };
        match server {
            Some(server) => {
                let spid = self.threads[&server].pid;
                let received = match self.transfer_caps(cpid, spid, caps) {
                    Ok(r) => r,
                    Err(e) => {
                        self.conns.get_mut(&conn).map(|c| c.servers.insert(pick, server));
                        return Err(e);
                    }
                };
                let s = self.threads.get_mut(&server).ok_or(Error::PeerDied)?;
                deliver(&mut s.regs, &msg, badge, received);
                s.ipc.caller = Some(client);
                s.ipc.badge = badge;
                self.block_current(cpu, frame, Block::Reply { server });
                self.hand_off(cpu, frame, server);
            }
            None => {
                c.pending.push_back(client);
                let t = self.threads.get_mut(&client).ok_or(Error::BadState)?;
                t.ipc.msg = msg;
                t.ipc.caps = Some(caps);
                t.ipc.badge = badge;
                self.block_current(cpu, frame, Block::Call { conn });
            }
        }
        Ok(Outcome::Suspended)
    }

    /// Runs `next` (blocked until now, not queued) on `cpu` at once if its affinity allows,
    /// else queues it.
    pub(crate) fn hand_off(&mut self, cpu: usize, frame: &mut UserRegs, next: Id) {
        if !self.hand_off_to(cpu, frame, next) {
            self.make_ready(next, cpu);
        }
    }

    /// `ipc_recv` on `conn` by the current (server) thread: returns the next call, or blocks
    /// for one.
    pub fn ipc_recv(&mut self, cpu: usize, frame: &mut UserRegs, conn: Id) -> Result<Outcome, Error> {
        let server = self.current[cpu].ok_or(Error::BadState)?;
        let spid = self.cpus[cpu].pid;
        if self.threads[&server].ipc.caller.is_some() {
            // Still serving a call: reply first (or use reply_recv).
            return Err(Error::BadState);
        }
        loop {
            let c = self.conns.get_mut(&conn).ok_or(Error::PeerDied)?;
            if c.dead {
                return Err(Error::PeerDied);
            }
            let Some(client) = c.pending.pop_front() else {
                c.servers.push_back(server);
                self.block_current(cpu, frame, Block::Recv { conn });
                return Ok(Outcome::Suspended);
            };
            let (cpid, msg, caps, badge) = {
                let t = &self.threads[&client];
                (t.pid, t.ipc.msg, t.ipc.caps.unwrap_or(CapList::EMPTY), t.ipc.badge)
            };
            match self.transfer_caps(cpid, spid, caps) {
                Ok(caps) => {
                    if let Some(t) = self.threads.get_mut(&client) {
                        t.state = ThreadState::Blocked(Block::Reply { server });
                        t.ipc.caps = None;
                    }
                    if let Some(s) = self.threads.get_mut(&server) {
                        s.ipc.caller = Some(client);
                        s.ipc.badge = badge;
                    }
                    return Ok(Outcome::Return(received(&msg, badge, caps)));
                }
                // The call cannot be delivered: it fails for its client; try the next one.
                Err(e) => self.wake_with(client, e.code(), &[]),
            }
        }
    }

    /// Delivers the reply of the current (server) thread to its caller. With `recv`, the server
    /// then waits for the next call on that connection and the CPU goes straight back to the
    /// client.
    pub fn ipc_reply(&mut self, cpu: usize, frame: &mut UserRegs, msg: Message, caps: CapList, recv: Option<Id>) -> Result<Outcome, Error> {
        let server = self.current[cpu].ok_or(Error::BadState)?;
        let spid = self.cpus[cpu].pid;
        let (caller, badge) = {
            let s = self.threads.get_mut(&server).ok_or(Error::BadState)?;
            (s.ipc.caller.take(), core::mem::replace(&mut s.ipc.badge, 0))
        };
        let Some(client) = caller else {
            return Err(if badge == u64::MAX { Error::PeerDied } else { Error::BadState });
        };
        let alive = self.threads.get(&client).is_some_and(|t| t.state == ThreadState::Blocked(Block::Reply { server }));
        if !alive {
            return Err(Error::PeerDied);
        }
        let cpid = self.threads[&client].pid;
        let granted = match self.transfer_caps(spid, cpid, caps) {
            Ok(r) => r,
            Err(e) => {
                // The server may retry with fewer caps.
                if let Some(s) = self.threads.get_mut(&server) {
                    s.ipc.caller = Some(client);
                    s.ipc.badge = badge;
                }
                return Err(e);
            }
        };
        if let Some(t) = self.threads.get_mut(&client) {
            deliver(&mut t.regs, &msg, 0, granted);
        }
        match recv {
            None => {
                self.make_ready(client, cpu);
                Ok(Outcome::Done)
            }
            Some(conn) => {
                // Wait for the next call. If none is pending the server blocks and the client runs
                // here at once; otherwise the server goes on with the next call and the client queues.
                match self.ipc_recv(cpu, frame, conn) {
                    Ok(Outcome::Suspended) => {
                        self.hand_off(cpu, frame, client);
                        Ok(Outcome::Suspended)
                    }
                    next => {
                        self.make_ready(client, cpu);
                        next
                    }
                }
            }
        }
    }

    /// Marks a connection dead and fails everyone waiting on it.
    pub fn kill_connection(&mut self, conn: Id) {
        let Some(c) = self.conns.get_mut(&conn) else { return };
        c.dead = true;
        let waiting: Vec<Id> = c.pending.drain(..).chain(c.servers.drain(..)).collect();
        for t in waiting {
            self.wake_with(t, Error::PeerDied.code(), &[]);
        }
    }

    /// Sets bits on a notification, waking one waiter with all pending bits.
    pub fn signal(&mut self, notif: Id, bits: u64) {
        let Some(n) = self.notifs.get_mut(&notif) else { return };
        n.bits |= bits;
        if let Some(w) = n.waiters.pop_front() {
            let b = core::mem::take(&mut n.bits);
            self.wake_with(w, 0, &[b]);
        }
    }

    /// Waits on a notification: returns pending bits at once, or blocks (until `deadline` if given).
    pub fn notif_wait(&mut self, cpu: usize, frame: &mut UserRegs, notif: Id, deadline: Option<u64>) -> Result<Outcome, Error> {
        let tid = self.current[cpu].ok_or(Error::BadState)?;
        let n = self.notifs.get_mut(&notif).ok_or(Error::PeerDied)?;
        if n.bits != 0 {
            let b = core::mem::take(&mut n.bits);
            return Ok(Outcome::words(&[b]));
        }
        n.waiters.push_back(tid);
        match deadline {
            Some(d) => self.sleep_current(cpu, frame, d, Block::Notif { notif }),
            None => self.block_current(cpu, frame, Block::Notif { notif }),
        }
        Ok(Outcome::Suspended)
    }
}
