//! The resmgr process: serves [`keel_rt::proto::resmgr`] on the connection init gave it, over
//! the root quota init gave it.

use crate::tree::{Quotas, Tree};
use alloc::string::String;
use alloc::vec::Vec;
use keel_rt::abi::quota::{CpuStat, QuotaStat};
use keel_rt::abi::rights;
use keel_rt::ipc::{Reply, Request};
use keel_rt::proto::{procmgr, resmgr};
use keel_rt::startup::Startup;
use keel_rt::{Error, Slot, println, sys};

/// The kernel's quota calls on capabilities in our table, and procmgr for the process list
/// and moves.
pub struct KernelQuotas {
    procmgr: Option<keel_rt::ipc::Client>,
}

impl Quotas for KernelQuotas {
    type Handle = Slot;
    fn create_child(&mut self, parent: Slot) -> Result<Slot, Error> {
        sys::quota_create(parent)
    }
    fn set(&mut self, quota: Slot, resource: u64, limit: u64) -> Result<(), Error> {
        sys::quota_set(quota, resource, limit)
    }
    fn stat(&mut self, quota: Slot, resource: u64) -> Result<QuotaStat, Error> {
        sys::quota_stat(quota, resource)
    }
    fn release(&mut self, quota: Slot) {
        let _ = sys::cap_delete(quota);
    }
    fn set_cpu(&mut self, quota: Slot, quota_ns: u64, period_ns: u64) -> Result<(), Error> {
        sys::quota_set_cpu(quota, quota_ns, period_ns)
    }
    fn set_weight(&mut self, quota: Slot, weight: u64) -> Result<(), Error> {
        sys::quota_set_weight(quota, weight)
    }
    fn stat_cpu(&mut self, quota: Slot) -> Result<CpuStat, Error> {
        sys::quota_stat_cpu(quota)
    }
    fn processes(&mut self) -> Result<Vec<(u64, u64)>, Error> {
        let pm = self.procmgr.as_mut().ok_or(Error::NoRights)?;
        let (r, payload) = pm.call_bulk(procmgr::PS, [0; 3], &[])?;
        keel_rt::ipc::status(&r)?;
        let (rows, _) = procmgr::PsLine::parse_all(&String::from_utf8_lossy(&payload));
        Ok(rows.iter().filter(|p| p.is_running()).map(|p| (p.pid, p.quota)).collect())
    }
    fn move_process(&mut self, quota: Slot, pid: u64) -> Result<(), Error> {
        let pm = self.procmgr.as_mut().ok_or(Error::NoRights)?;
        // GRANT: the copy travels in the call.
        let copy = sys::cap_copy(quota, None, rights::MANAGE | rights::GRANT, 0)?;
        let r = pm.call_with_caps(procmgr::MOVE, [pid, 0, 0, 0], &[copy]);
        let _ = sys::cap_delete(copy);
        keel_rt::ipc::status(&r?).map(|_| ())
    }
}

pub fn main(startup: &Startup) -> i32 {
    let (Some(root), Some(conn)) = (startup.cap("quota"), startup.cap("serve")) else {
        println!("resmgr: started without the quota and serve capabilities");
        return 1;
    };
    let mut tree = Tree::new(KernelQuotas { procmgr: startup.cap("procmgr").map(keel_rt::ipc::Client::new) }, root);
    keel_rt::ipc::serve(conn, |req| handle(&mut tree, req))
}

fn handle(tree: &mut Tree<KernelQuotas>, req: &mut Request) -> Reply {
    for c in req.caps.slots() {
        let _ = sys::cap_delete(c);
    }
    if req.bulk.is_none() && matches!(req.msg.label, resmgr::COMMAND | resmgr::QUOTA) {
        // A client whose buffer an earlier resmgr set up: it sets one up again (proto::resmgr::call).
        return Reply::err(Error::BadAddress);
    }
    let text = String::from_utf8_lossy(req.payload()).into_owned();
    match req.msg.label {
        resmgr::COMMAND => {
            let words: Vec<&str> = text.split('\0').filter(|w| !w.is_empty()).collect();
            let (code, out) = match tree.command(&words) {
                Ok(out) => (0, out),
                Err(e) => (e.code.code() as u64, e.message),
            };
            let n = req.reply_payload(out.as_bytes());
            Reply::ok([0, code, 0, n])
        }
        // The root's quota bounds everything (init's own limits included): it stays here.
        resmgr::QUOTA if text.trim_end_matches('/').is_empty() => Reply::err(Error::NoRights),
        resmgr::QUOTA => match tree.quota_for_processes(&text).map_err(|e| e.code).and_then(|q| sys::cap_copy(q, None, rights::READ | rights::MANAGE | rights::GRANT, 0)) {
            Ok(copy) => Reply { msg: keel_rt::abi::ipc::Message::new(0, [0; 4]), caps: alloc::vec![copy] },
            Err(e) => Reply::err(e),
        },
        _ => Reply::err(Error::NoSys),
    }
}
