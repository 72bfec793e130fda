//! `captransfer`: capabilities travel in calls and replies with their rights, and only with GRANT.
//!
//! - A PMO with known bytes goes to the server in a call; the server reads it with `pmo_read`
//!   and answers its checksum, the rights and kind of the capability it received, and whether it
//!   could write it: a READ|MAP|GRANT copy arrives with exactly those rights (the write is
//!   refused), a full-rights one arrives with all rights (the write lands in our object).
//! - The server answers GIVE_NOTIF with a notification capability (SIGNAL|GRANT) in its reply:
//!   it arrives with those rights, we cannot wait on it, we can signal it, and the server sees
//!   the bits.
//! - A call naming a capability without GRANT fails with NoRights and the server receives
//!   nothing (its call count does not move), and our table is as it was.

use super::{EchoProcess, SEC, namesrv, procmgr, start_echo_server};
use crate::check::Checks;
use crate::echo;
use alloc::format;
use alloc::vec::Vec;
use keel_rt::abi::ipc::{CapList, Message};
use keel_rt::abi::{ObjectKind, PAGE_SIZE, PmoKind, rights};
use keel_rt::startup::Startup;
use keel_rt::sys::{self, Received};
use keel_rt::{Error, Slot};

const NAME: &str = "ktest-caps";
const BYTES: usize = 10_000;

fn call(conn: Slot, label: u64, data: [u64; 4], caps: &[Slot]) -> Result<Received, Error> {
    let list = CapList::from_slots(caps).ok_or(Error::Invalid)?;
    sys::ipc_call(conn, &Message::new(label, data), list)
}

/// (calls received, calls that carried caps) as the server counts them.
fn count(c: &mut Checks, conn: Slot) -> Option<(u64, u64)> {
    let r = c.expect_ok("COUNT call", call(conn, echo::COUNT, [0; 4], &[]))?;
    Some((r.msg.data[0], r.msg.data[1]))
}

fn lowest_free() -> Result<Slot, Error> {
    let n = sys::notif_create()?;
    sys::cap_delete(n)?;
    Ok(n)
}

pub fn run(startup: &Startup) -> i32 {
    let mut c = Checks::new("captransfer");
    let (Some(mut pm), Some(ns)) = (procmgr(&mut c, startup), namesrv(&mut c, startup)) else { return c.finish("") };
    let Some(server) = start_echo_server(&mut c, &mut pm, &ns, NAME, &[0, 1]) else { return c.finish("") };
    pmo_to_server(&mut c, &server);
    let notif = notification_from_server(&mut c, &server);
    without_grant(&mut c, &server);
    server.kill(&mut c);
    server.release();
    if let Some(n) = notif {
        // The object outlives the server that made it: our capability keeps it.
        c.expect_ok("notif_signal(notification from the killed server)", sys::notif_signal(n, 1));
        c.expect_ok("cap_delete(notification from the killed server)", sys::cap_delete(n));
    }
    let n = c.count();
    c.finish(format!(
        "{n} checks: PMO sent with rights kept, notification received and signalled, no-GRANT cap refused"
    ))
}

fn pmo_to_server(c: &mut Checks, server: &EchoProcess) {
    let conn = server.conn;
    let bytes = echo::pattern(BYTES, 0xca9);
    let sum = echo::checksum(&bytes);
    let Some(pmo) = c.expect_ok("pmo_create(3 pages)", sys::pmo_create(PmoKind::Anonymous, 3 * PAGE_SIZE)) else {
        return;
    };
    c.expect_ok("pmo_write(known bytes)", sys::pmo_write(pmo, 0, &bytes));
    let ro_rights = rights::READ | rights::MAP | rights::GRANT;
    if let Some(ro) = c.expect_ok("cap_copy(pmo, READ|MAP|GRANT)", sys::cap_copy(pmo, None, ro_rights, 0)) {
        if let Some(r) = c.expect_ok(
            "PMO_SUM call with a READ|MAP|GRANT pmo",
            call(conn, echo::PMO_SUM, [BYTES as u64, 0, 0, 0], &[ro]),
        ) {
            c.expect_eq("PMO_SUM reply: status", r.msg.label, 0);
            c.expect_eq("PMO_SUM reply: checksum of the bytes the server read", r.msg.data[0], sum);
            c.expect_eq("PMO_SUM reply: rights the server received", r.msg.data[1], u64::from(ro_rights));
            c.expect_eq("PMO_SUM reply: kind the server received", r.msg.data[2], ObjectKind::Pmo as u64);
            c.expect_eq(
                "PMO_SUM reply: server's pmo_write into the READ copy",
                r.msg.data[3] as i64,
                Error::NoRights.code(),
            );
            c.check(r.caps.is_empty(), || format!("PMO_SUM reply carried caps {:#x}", r.caps.0));
        }
        // Sending copies the capability: ours is still here, unchanged.
        c.expect_eq(
            "cap_info(our copy after sending it)",
            sys::cap_info(ro),
            Ok((ObjectKind::Pmo as u64, ro_rights, 0)),
        );
        let _ = sys::cap_delete(ro);
    }
    let mut now = alloc::vec![0u8; BYTES];
    c.expect_ok("pmo_read(after the read-only transfer)", sys::pmo_read(pmo, 0, &mut now));
    c.expect_eq("checksum of our pmo after the read-only transfer", echo::checksum(&now), sum);

    // Four capabilities in one call, the last with every right: the server sees the first.
    let copies: Vec<Slot> = (0..3).filter_map(|_| sys::cap_copy(pmo, None, ro_rights, 0).ok()).collect();
    let mut four = copies.clone();
    four.insert(0, pmo);
    if let Some(r) = c.expect_ok(
        "PMO_SUM call with 4 caps (first with all rights)",
        call(conn, echo::PMO_SUM, [BYTES as u64, 0, 0, 0], &four),
    ) {
        c.expect_eq("PMO_SUM reply (all rights): status", r.msg.label, 0);
        c.expect_eq("PMO_SUM reply (all rights): checksum", r.msg.data[0], sum);
        c.expect_eq("PMO_SUM reply (all rights): rights received", r.msg.data[1], u64::from(rights::ALL));
        c.expect_eq("PMO_SUM reply (all rights): server's pmo_write", r.msg.data[3], 0);
    }
    let mut first = [0u8; 1];
    c.expect_ok("pmo_read(first byte after the writable transfer)", sys::pmo_read(pmo, 0, &mut first));
    c.expect_eq("first byte of our pmo, written by the server", first[0], 0xAA);
    for s in copies {
        let _ = sys::cap_delete(s);
    }
    let _ = sys::cap_delete(pmo);
}

/// Returns the received notification (still ours).
fn notification_from_server(c: &mut Checks, server: &EchoProcess) -> Option<Slot> {
    let conn = server.conn;
    let r = c.expect_ok("GIVE_NOTIF call", call(conn, echo::GIVE_NOTIF, [0; 4], &[]))?;
    c.expect_eq("GIVE_NOTIF reply: status", r.msg.label, 0);
    let got: Vec<Slot> = r.caps.slots().collect();
    if !c.check(got.len() == 1, || format!("GIVE_NOTIF reply should carry 1 cap, carried {:#x}", r.caps.0)) {
        return None;
    }
    let n = got[0];
    c.expect_eq(
        "cap_info(notification from the server)",
        sys::cap_info(n),
        Ok((ObjectKind::Notification as u64, rights::SIGNAL | rights::GRANT, 0)),
    );
    c.expect_err("notif_wait(received SIGNAL|GRANT notification)", sys::notif_wait(n, 1_000_000), Error::NoRights);
    c.expect_err(
        "cap_copy(received notification, + WAIT)",
        sys::cap_copy(n, None, rights::SIGNAL | rights::WAIT, 0),
        Error::Escalation,
    );
    c.expect_ok("notif_signal(received notification, 0x40)", sys::notif_signal(n, 0x40));
    if let Some(r) = c.expect_ok("WAIT_NOTIF call", call(conn, echo::WAIT_NOTIF, [SEC, 0, 0, 0], &[])) {
        c.expect_eq("WAIT_NOTIF reply: status", r.msg.label, 0);
        c.expect_eq("WAIT_NOTIF reply: bits the server saw", r.msg.data[0], 0x40);
    }
    Some(n)
}

fn without_grant(c: &mut Checks, server: &EchoProcess) {
    let conn = server.conn;
    let Some(pmo) = c.expect_ok("pmo_create(1 page)", sys::pmo_create(PmoKind::Anonymous, PAGE_SIZE)) else { return };
    let Some(nogrant) = c.expect_ok("cap_copy(pmo, READ|MAP)", sys::cap_copy(pmo, None, rights::READ | rights::MAP, 0))
    else {
        return;
    };
    let slot_before = lowest_free();
    let Some(before) = count(c, conn) else { return };
    c.expect_err(
        "PMO_SUM call with a pmo without GRANT",
        call(conn, echo::PMO_SUM, [8, 0, 0, 0], &[nogrant]).map(|r| r.msg),
        Error::NoRights,
    );
    c.expect_err(
        "PMO_SUM call with a GRANT pmo and then one without",
        call(conn, echo::PMO_SUM, [8, 0, 0, 0], &[pmo, nogrant]).map(|r| r.msg),
        Error::NoRights,
    );
    if let Some(after) = count(c, conn) {
        c.expect_eq(
            "server's (calls, calls with caps) after the refused calls (only the COUNT calls arrived)",
            after,
            (before.0 + 1, before.1),
        );
    }
    c.expect_eq("lowest free slot after the refused calls", lowest_free(), slot_before);
    c.expect_eq(
        "cap_info(the no-GRANT copy after the refused call)",
        sys::cap_info(nogrant),
        Ok((ObjectKind::Pmo as u64, rights::READ | rights::MAP, 0)),
    );
    let _ = sys::cap_delete(nogrant);
    let _ = sys::cap_delete(pmo);
}
