//! The cgroup file system's line to resmgr under Keel: COMMAND calls on the connection init gave
//! us (capability `resmgr`). init keeps that connection and a restarted resmgr serves the same
//! one, so there is nothing to look up again: only the bulk buffer is set up anew after
//! [`Resmgr::reset`] (the policy of when is `keel_fs::cgroupfs::resmgr`'s, tested on the host).

use alloc::string::String;
use keel_fs::cgroupfs::resmgr::{Reply, Resmgr};
use keel_rt::ipc::{self, Client};
use keel_rt::proto::resmgr::COMMAND;
use keel_rt::{Error, Slot};

pub struct ResmgrLink {
    conn: Slot,
    /// The client with its bulk buffer; None until the next call sets one up.
    client: Option<Client>,
}

impl ResmgrLink {
    pub fn new(conn: Slot) -> Self {
        ResmgrLink { conn, client: None }
    }
}

impl Resmgr for ResmgrLink {
    fn command(&mut self, words: &[&str]) -> Result<Reply, Error> {
        let payload = words.join("\0");
        let conn = self.conn;
        let client = self.client.get_or_insert_with(|| Client::new(conn));
        let (r, text) = keel_rt::proto::resmgr::call(client, COMMAND, payload.as_bytes())?;
        ipc::status(&r)?;
        Ok(Reply {
            code: r.msg.data[1],
            text: String::from_utf8_lossy(&text).into_owned(),
        })
    }

    fn reset(&mut self) {
        // Dropping the client unmaps its buffer; the next call sets up a new one.
        self.client = None;
    }
}
