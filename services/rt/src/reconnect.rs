//! A client of a named service that survives the service's restart.
//!
//! A service's connection dies with its process: every later call on it fails with `PeerDied`.
//! init restarts the service (services/init/src/procmgr.rs) and the new process registers its
//! new connection under the same name. [`ServiceClient`] notices the dead connection, looks the
//! name up again in namesrv — waiting with a bounded, doubling back-off while the old (dead)
//! registration is still there or namesrv itself is restarting — and then:
//!
//! - retries a call marked [`Retry::Idempotent`] (doing it twice is the same as doing it once:
//!   reads, stats, block READ/WRITE/FLUSH of the same sectors, listings);
//! - for a [`Retry::Once`] call, probes the connection first ([`LABEL_PING`], answered by
//!   `ipc::serve` itself) so a connection that died *between* calls is replaced before the call
//!   is sent; if the service dies *while* handling it, the call is not repeated (it may or may
//!   not have taken effect) and the caller gets [`Error::PeerDied`], the next call reconnects.
//!
//! [`ServiceClient::generation`] counts reconnections, so a caller whose state lived in the old
//! process (open files, VMs) can tell the user it is gone. The retry policy itself
//! ([`with_retries`]) is pure and tested on the host.

use crate::ipc::{Client, LABEL_PING, status};
use crate::sys;
use alloc::string::String;
use alloc::vec::Vec;
use keel_abi::{Error, Slot};

/// Whether a call may be sent again after the service died while handling it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Retry {
    /// Repeating it has the same effect as doing it once.
    Idempotent,
    /// At most once: a call lost in a dying service is reported, not repeated.
    Once,
}

/// How long to wait for a service to come back: pauses doubling from `first_ns` up to `max_ns`,
/// for at most `total_ns` in all.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backoff {
    pub first_ns: u64,
    pub max_ns: u64,
    pub total_ns: u64,
}

impl Backoff {
    /// For a service init restarts: its restart delay is at most 5 s (policy.rs), and it then
    /// needs time to start and register; 20 s in all.
    pub const RESTART: Backoff = Backoff { first_ns: 10_000_000, max_ns: 1_000_000_000, total_ns: 20_000_000_000 };

    /// The pauses of this back-off, in order; their sum never exceeds `total_ns`.
    pub fn pauses(self) -> impl Iterator<Item = u64> {
        let mut next = self.first_ns.max(1);
        let mut left = self.total_ns;
        core::iter::from_fn(move || {
            if left == 0 {
                return None;
            }
            let p = next.min(left);
            left -= p;
            next = (next.saturating_mul(2)).min(self.max_ns.max(1));
            Some(p)
        })
    }
}

/// Whether an error means "the service (or the one we asked for it) is gone or not there yet":
/// worth looking up again and waiting.
pub fn is_service_gone(e: Error) -> bool {
    matches!(e, Error::PeerDied | Error::NotFound)
}

/// What one attempt at a call came to.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome<T> {
    /// Finished (successfully or with an error that waiting will not fix).
    Done(Result<T, Error>),
    /// The service is gone or not back yet: reconnect and try again.
    Gone(Error),
}

impl<T> Outcome<T> {
    /// `Gone` for the errors of [`is_service_gone`], else `Done`.
    pub fn of(r: Result<T, Error>) -> Self {
        match r {
            Err(e) if is_service_gone(e) => Outcome::Gone(e),
            r => Outcome::Done(r),
        }
    }
}

/// Runs `attempt` until it is `Done` or the back-off runs out (then the last "gone" error).
/// Before each retry it pauses (`pause`) and calls `reconnect`; a reconnect that fails with a
/// "gone" error waits for the next pause, any other error ends the retries.
pub fn with_retries<S, T>(
    state: &mut S,
    backoff: Backoff,
    mut attempt: impl FnMut(&mut S) -> Outcome<T>,
    mut reconnect: impl FnMut(&mut S) -> Result<(), Error>,
    mut pause: impl FnMut(u64),
) -> Result<T, Error> {
    let mut last = match attempt(state) {
        Outcome::Done(r) => return r,
        Outcome::Gone(e) => e,
    };
    for p in backoff.pauses() {
        pause(p);
        match reconnect(state) {
            Ok(()) => {}
            Err(e) if is_service_gone(e) => {
                last = e;
                continue;
            }
            Err(e) => return Err(e),
        }
        match attempt(state) {
            Outcome::Done(r) => return r,
            Outcome::Gone(e) => last = e,
        }
    }
    Err(last)
}

/// A connection to the service registered as `name`, re-established when the service restarts.
pub struct ServiceClient {
    namesrv: Slot,
    name: String,
    client: Option<Client>,
    backoff: Backoff,
    generation: u64,
    connected_once: bool,
    /// Each connection is a [`Client::paying`] one.
    pays: bool,
}

impl ServiceClient {
    /// A client of `name`; nothing is looked up until the first call.
    pub fn new(namesrv: Slot, name: &str) -> Self {
        Self { namesrv, name: String::from(name), client: None, backoff: Backoff::RESTART, generation: 0, connected_once: false, pays: false }
    }

    /// The same, paying for what the service keeps for us (`Client::paying`).
    pub fn paying(mut self) -> Self {
        self.pays = true;
        if let Some(c) = self.client.take() {
            // Dropping the old client unmaps its buffer, not the connection.
            self.client = Some(Client::paying(c.slot()));
        }
        self
    }

    fn client_of(&self, slot: Slot) -> Client {
        if self.pays { Client::paying(slot) } else { Client::new(slot) }
    }

    /// The same with another back-off.
    pub fn with_backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = backoff;
        self
    }

    /// A client over a connection already looked up (it is replaced like any other when it dies).
    pub fn from_slot(namesrv: Slot, name: &str, slot: Slot) -> Self {
        let mut c = Self::new(namesrv, name);
        c.client = Some(Client::new(slot));
        c.connected_once = true;
        c
    }

    /// How many times the service was found again after its connection died.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// The name looked up.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Forgets the connection (deleting our capability); the next call looks the name up again.
    pub fn disconnect(&mut self) {
        if let Some(c) = self.client.take() {
            let _ = sys::cap_delete(c.slot());
        }
    }

    /// The current connection, if there is one (no lookup, no reconnection).
    pub fn connection(&mut self) -> Option<&mut Client> {
        self.client.as_mut()
    }

    /// Looks the name up once (namesrv answers at once; `NotFound` if nobody registered it).
    fn lookup_once(&mut self) -> Result<(), Error> {
        self.disconnect();
        let slot = crate::ipc::lookup(self.namesrv, &self.name, 1, 0)?;
        self.client = Some(self.client_of(slot));
        if self.connected_once {
            self.generation += 1;
        }
        self.connected_once = true;
        Ok(())
    }

    /// One attempt: connect if needed, then `f` (after a probe, for `Retry::Once`).
    fn attempt<T>(&mut self, retry: Retry, f: &mut impl FnMut(&mut Client) -> Result<T, Error>) -> Outcome<T> {
        if self.client.is_none() {
            if let Err(e) = self.lookup_once() {
                return Outcome::of(Err(e));
            }
        }
        let Some(client) = self.client.as_mut() else { return Outcome::Gone(Error::PeerDied) };
        if retry == Retry::Once && client.call(LABEL_PING, [0; 4]).is_err_and(|e| e == Error::PeerDied) {
            // It died since the last call: replace it before sending anything that counts.
            self.disconnect();
            return Outcome::Gone(Error::PeerDied);
        }
        let r = f(client);
        if r.as_ref().is_err_and(|&e| e == Error::PeerDied) {
            self.disconnect();
            if retry == Retry::Once {
                // It died handling this call: it may or may not have taken effect.
                return Outcome::Done(r);
            }
        }
        Outcome::of(r)
    }

    /// Runs `f` on a live connection, reconnecting (and, for `Retry::Idempotent`, repeating `f`)
    /// when the service is gone.
    fn run<T>(&mut self, retry: Retry, mut f: impl FnMut(&mut Client) -> Result<T, Error>) -> Result<T, Error> {
        let backoff = self.backoff;
        with_retries(self, backoff, |me| me.attempt(retry, &mut f), |me| me.lookup_once(), sys::sleep_ns)
    }

    /// A call with a short message.
    pub fn call(&mut self, retry: Retry, label: u64, data: [u64; 4]) -> Result<crate::ipc::Received, Error> {
        self.run(retry, |c| c.call(label, data))
    }

    /// A call with a bulk payload; the reply and its payload.
    pub fn call_bulk(&mut self, retry: Retry, label: u64, words: [u64; 3], payload: &[u8]) -> Result<(crate::ipc::Received, Vec<u8>), Error> {
        self.run(retry, |c| c.call_bulk(label, words, payload))
    }

    /// A call whose reply carries a status: `Ok(message)` for label 0, else its `Error`.
    pub fn call_status(&mut self, retry: Retry, label: u64, data: [u64; 4]) -> Result<keel_abi::ipc::Message, Error> {
        let r = self.call(retry, label, data)?;
        status(&r).copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    const QUICK: Backoff = Backoff { first_ns: 10, max_ns: 40, total_ns: 100 };

    #[test]
    fn back_off_doubles_to_its_cap_and_stops_at_its_total() {
        let p: Vec<u64> = QUICK.pauses().collect();
        assert_eq!(p, vec![10, 20, 40, 30]);
        assert_eq!(p.iter().sum::<u64>(), 100);
        assert!(Backoff::RESTART.pauses().all(|x| x <= Backoff::RESTART.max_ns));
    }

    #[test]
    fn a_dead_service_is_looked_up_again_and_the_call_repeated() {
        // The service dies once (PeerDied); its old registration is still there at the first
        // lookup (NotFound here), then it answers.
        struct S {
            answers: alloc::vec::IntoIter<Result<u32, Error>>,
            reconnects: alloc::vec::IntoIter<Result<(), Error>>,
        }
        let mut s = S { answers: vec![Err(Error::PeerDied), Ok(7)].into_iter(), reconnects: vec![Err(Error::NotFound), Ok(())].into_iter() };
        let mut slept = Vec::new();
        let r = with_retries(&mut s, QUICK, |s| Outcome::of(s.answers.next().unwrap()), |s| s.reconnects.next().unwrap(), |p| slept.push(p));
        assert_eq!(r, Ok(7));
        assert_eq!(slept, vec![10, 20]);
    }

    #[test]
    fn other_errors_are_returned_at_once_and_a_service_that_never_returns_gives_up() {
        let mut calls = 0;
        let r: Result<(), Error> = with_retries(&mut calls, QUICK, |c| {
            *c += 1;
            Outcome::of(Err(Error::Invalid))
        }, |_| Ok(()), |_| {});
        assert_eq!((r, calls), (Err(Error::Invalid), 1));
        let mut tries = 0;
        let r: Result<(), Error> = with_retries(&mut tries, QUICK, |t| {
            *t += 1;
            Outcome::of(Err(Error::PeerDied))
        }, |_| Ok(()), |_| {});
        assert_eq!(r, Err(Error::PeerDied));
        assert_eq!(tries, 1 + QUICK.pauses().count());
    }

    #[test]
    fn a_call_lost_in_a_dying_service_is_reported_not_repeated() {
        let mut calls = 0;
        let r: Result<(), Error> = with_retries(&mut calls, QUICK, |c| {
            *c += 1;
            Outcome::Done(Err(Error::PeerDied))
        }, |_| Ok(()), |_| {});
        assert_eq!((r, calls), (Err(Error::PeerDied), 1));
    }

    #[test]
    fn a_failed_reconnect_that_is_no_absence_ends_the_retries() {
        let r: Result<(), Error> = with_retries(&mut (), QUICK, |_| Outcome::Gone(Error::PeerDied), |_| Err(Error::NoRights), |_| {});
        assert_eq!(r, Err(Error::NoRights));
    }
}
