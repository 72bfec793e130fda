//! "The client pays": what the file service keeps for a client is charged to the client's quota,
//! not the service's (docs/ARCHITECTURE.md, "Quotas"; the kernel's bills, docs/ABI.md).
//!
//! What is charged, and to whom:
//! - an open descriptor, [`FD_COST`] bytes, to the session that opened it, until it is closed;
//! - a file's data in memory (tmpfs: what its chunks hold, [`crate::node::FileSystem::allocated`]),
//!   to the file's owner: the paying session that created it, or that first wrote it when its
//!   creator did not pay (a file from the initrd). The owner keeps paying after its client
//!   exits, until the data is cut or the file is freed (a file system's quota works that way
//!   too: the owner pays, not the last writer). A write that would take the owner past its
//!   limits fails with `ENOMEM` before anything is written.
//!
//! Data on a disk (ext2) and the block cache are the service's (shared by everyone).
//!
//! The [`Billing`] trait is the kernel's bills under Keel (`main.rs`) and a fake in the tests;
//! [`Ledger`] is the bookkeeping: each payer's references (sessions and owned files; the last
//! one gone releases the payer) and what each file has been charged.

use crate::vfs::SessionId;
use alloc::collections::BTreeMap;
use keel_rt::errno::Errno;

/// Bytes charged per open descriptor: its record and its share of the descriptor table.
pub const FD_COST: u64 = 256;

/// A payer: a handle the [`Billing`] gave (a bill capability under Keel).
pub type Payer = u64;

/// Whether a session's client pays.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lookup {
    Pays(Payer),
    /// It does not (a client that did not give the right to charge it): the service pays.
    DoesNot,
    /// Not known yet (the client has not set up its connection's buffer): ask again later.
    NotYet,
}

/// The charging itself.
pub trait Billing: Send {
    /// Who pays for session `sid`.
    fn payer(&mut self, sid: SessionId) -> Lookup;
    /// Charges `bytes` more to `payer`; `NoMem` past its limits.
    fn charge(&mut self, payer: Payer, bytes: u64) -> Result<(), Errno>;
    /// Gives back `bytes` charged earlier.
    fn refund(&mut self, payer: Payer, bytes: u64);
    /// The payer is no longer needed (everything charged to it was refunded).
    fn release(&mut self, payer: Payer);
}

/// Nobody pays: the file service as a library, and tests that are not about billing.
pub struct NoBilling;

impl Billing for NoBilling {
    fn payer(&mut self, _sid: SessionId) -> Lookup {
        Lookup::DoesNot
    }
    fn charge(&mut self, _payer: Payer, _bytes: u64) -> Result<(), Errno> {
        Ok(())
    }
    fn refund(&mut self, _payer: Payer, _bytes: u64) {}
    fn release(&mut self, _payer: Payer) {}
}

/// A file's owner and what its data has been charged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Owned {
    pub payer: Payer,
    pub charged: u64,
}

/// The bookkeeping over a [`Billing`].
pub struct Ledger {
    pub billing: alloc::boxed::Box<dyn Billing>,
    /// References to each payer: its sessions and the files it owns.
    refs: BTreeMap<Payer, u32>,
}

impl Ledger {
    pub fn new(billing: alloc::boxed::Box<dyn Billing>) -> Self {
        Ledger { billing, refs: BTreeMap::new() }
    }

    /// One more reference to `payer`.
    pub fn hold(&mut self, payer: Payer) {
        *self.refs.entry(payer).or_insert(0) += 1;
    }

    /// One reference fewer; the payer is released with its last.
    pub fn drop_ref(&mut self, payer: Payer) {
        let Some(n) = self.refs.get_mut(&payer) else { return };
        *n -= 1;
        if *n == 0 {
            self.refs.remove(&payer);
            self.billing.release(payer);
        }
    }

    /// Payers alive.
    pub fn payers(&self) -> usize {
        self.refs.len()
    }

    /// Brings what `owned` is charged to `allocated`: a refund when it shrank, a charge when it
    /// grew (which may be refused: then it stays charged what it was, and the service pays the
    /// rest).
    pub fn settle(&mut self, owned: &mut Owned, allocated: u64) {
        if allocated < owned.charged {
            self.billing.refund(owned.payer, owned.charged - allocated);
            owned.charged = allocated;
        } else if allocated > owned.charged && self.billing.charge(owned.payer, allocated - owned.charged).is_ok() {
            owned.charged = allocated;
        }
    }
}
