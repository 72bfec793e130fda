//! The helper processes the scenarios spawn (`ktest <mode>`):
//!
//! - `ipc-server <name> <cpus>`: creates a connection, publishes it with the name service and
//!   serves the [`crate::echo`] protocol with one thread pinned to each listed CPU, until killed;
//! - `sleeper`: blocks until killed;
//! - `exit`: exits with 0 at once (the process the spawn benchmark starts and waits for);
//! - `crash-null`, `crash-undef`, `crash-stack`: commit a fault, so the kernel must kill them
//!   with `EXIT_FAULT`.

use crate::args::{EchoServer, Fault, ServerMode};
use crate::echo;
use crate::services::Namesrv;
use crate::worker::{PRIORITY, cpu_mask};
use alloc::vec::Vec;
use core::convert::Infallible;
use core::sync::atomic::{AtomicU64, Ordering};
use keel_rt::abi::ipc::{CapList, Message};
use keel_rt::abi::rights;
use keel_rt::startup::Startup;
use keel_rt::sync::Mutex;
use keel_rt::sys::{self, Received};
use keel_rt::{Error, Slot, println, thread};

/// Runs a server mode; returns only if it could not do its job.
pub fn run(mode: ServerMode, startup: &Startup) -> i32 {
    match mode {
        ServerMode::Sleeper => park(),
        ServerMode::HoldFiles => hold_files(),
        ServerMode::Exit => 0,
        ServerMode::AccessChild { sibling } => crate::scenario::access::child(sibling, startup),
        ServerMode::NoPrivileges => crate::scenario::access::no_privileges(startup),
        ServerMode::NsChild => crate::scenario::access::ns_child(startup),
        ServerMode::KillDuringCopy(service) => crate::scenario::killcopy::run(&service, startup),
        ServerMode::SysFuzzChild { seed, calls } => crate::sysfuzz::run(seed, calls, startup),
        ServerMode::Crash(f) => crash(f),
        ServerMode::Bomb => crate::scenario::quota::bomb(startup),
        ServerMode::Hog { mib } => crate::scenario::quota::hog(mib),
        ServerMode::Fill { path, kib } => crate::scenario::quota::fill(&path, kib),
        ServerMode::Spin { cpu } => crate::scenario::cpuquota::spin(cpu),
        ServerMode::Echo(cfg) => match echo_server(&cfg, startup) {
            Ok(never) => match never {},
            Err(e) => {
                println!("ktest: ipc-server {}: {e}", cfg.name);
                crate::EXIT_FAILED
            }
        },
    }
}

/// Opens two files and keeps them open until killed.
fn hold_files() -> i32 {
    use keel_rt::fs::{self, flags};
    for path in ["/tmp/held-1", "/tmp/held-2"] {
        if let Err(e) = fs::open(path, flags::O_RDWR | flags::O_CREAT, 0o644) {
            println!("ktest: hold-files: cannot open {path}: {e}");
            return crate::EXIT_FAILED;
        }
    }
    println!("ktest: holding 2 files open");
    park()
}

/// Blocks this thread for good (until the process is killed).
fn park() -> ! {
    if let Ok(n) = sys::notif_create() {
        loop {
            let _ = sys::notif_wait(n, 0);
        }
    }
    loop {
        sys::sleep_ns(1_000_000_000);
    }
}

fn crash(f: Fault) -> i32 {
    match f {
        Fault::NullRead => {
            let v = keel_rt::fault::null_read();
            println!("ktest: crash-null: read {v:#x} from address 0 and was not killed");
        }
        Fault::UndefinedInstruction => {
            keel_rt::fault::undefined_instruction();
            println!("ktest: crash-undef: ran an undefined instruction and was not killed");
        }
        Fault::StackOverflow => {
            let v = keel_rt::fault::stack_overflow(0);
            println!("ktest: crash-stack: recursion returned {v} and was not killed");
        }
    }
    crate::EXIT_FAILED
}

/// Calls received (by every server thread), and how many of them carried capabilities.
static RECEIVED: AtomicU64 = AtomicU64::new(0);
static WITH_CAPS: AtomicU64 = AtomicU64::new(0);
/// The notification of the last GIVE_NOTIF.
static NOTIF: Mutex<Option<Slot>> = Mutex::new(None);

#[derive(Debug)]
enum StartError {
    NoNamesrv,
    Call(&'static str, Error),
}

impl core::fmt::Display for StartError {
    fn fmt(&self, f: &mut core::fmt::Formatter) -> core::fmt::Result {
        match self {
            StartError::NoNamesrv => f.write_str("no namesrv capability in the startup block"),
            StartError::Call(what, e) => write!(f, "{what} failed: {e:?}"),
        }
    }
}

fn echo_server(cfg: &EchoServer, startup: &Startup) -> Result<Infallible, StartError> {
    let ns = Namesrv::from_startup(startup).ok_or(StartError::NoNamesrv)?;
    let conn = sys::conn_create().map_err(|e| StartError::Call("conn_create", e))?;
    for &cpu in &cfg.cpus {
        thread::spawn_with(PRIORITY, cpu_mask(cpu), move || serve(conn))
            .map_err(|e| StartError::Call("thread spawn", e))?;
    }
    let public =
        sys::cap_copy(conn, None, rights::CALL | rights::GRANT, 0).map_err(|e| StartError::Call("cap_copy", e))?;
    ns.register(&cfg.name, public).map_err(|e| StartError::Call("namesrv REGISTER", e))?;
    let _ = sys::cap_delete(public);
    park()
}

/// One server thread: receive, answer, repeat.
fn serve(conn: Slot) {
    let mut next = sys::ipc_recv(conn);
    loop {
        let call = match next {
            Ok(r) => r,
            Err(_) => {
                // The last caller vanished before our reply, or its call could not be delivered.
                next = sys::ipc_recv(conn);
                if next.is_err() {
                    sys::sleep_ns(1_000_000);
                }
                continue;
            }
        };
        RECEIVED.fetch_add(1, Ordering::Relaxed);
        if !call.caps.is_empty() {
            WITH_CAPS.fetch_add(1, Ordering::Relaxed);
        }
        let (reply, send) = handle(&call);
        let list = CapList::from_slots(&send).unwrap_or(CapList::EMPTY);
        next = sys::ipc_reply_recv(conn, &reply, list);
        if matches!(next, Err(e) if e != Error::PeerDied) && !send.is_empty() {
            // The caps could not go (the reply is still owed): answer with the error alone.
            let e = next.err().unwrap_or(Error::Invalid);
            next = sys::ipc_reply_recv(conn, &Message::new(e.code() as u64, [0; 4]), CapList::EMPTY);
        }
        for s in send {
            let _ = sys::cap_delete(s);
        }
    }
}

fn error_reply(e: Error) -> Message {
    Message::new(e.code() as u64, [0; 4])
}

fn code<T>(r: Result<T, Error>) -> u64 {
    match r {
        Ok(_) => 0,
        Err(e) => e.code() as u64,
    }
}

/// The reply to one call, and the caps to send with it (deleted here after the reply).
fn handle(call: &Received) -> (Message, Vec<Slot>) {
    let received: Vec<Slot> = call.caps.slots().collect();
    let reply = match call.msg.label {
        l if l < echo::ECHO_LABELS => echo::reply_to(&call.msg, call.badge),
        echo::PMO_SUM => match received.first() {
            Some(&pmo) => pmo_sum(pmo, call.msg.data[0]),
            None => error_reply(Error::Invalid),
        },
        echo::GIVE_NOTIF => {
            for s in received {
                let _ = sys::cap_delete(s);
            }
            return give_notif();
        }
        echo::WAIT_NOTIF => {
            // Copy the slot out: the lock must not be held while waiting.
            let notif = *NOTIF.lock();
            match notif {
                Some(n) => match sys::notif_wait(n, call.msg.data[0]) {
                    Ok(bits) => Message::new(0, [bits, 0, 0, 0]),
                    Err(e) => error_reply(e),
                },
                None => error_reply(Error::BadState),
            }
        }
        echo::COUNT => Message::new(0, [RECEIVED.load(Ordering::Relaxed), WITH_CAPS.load(Ordering::Relaxed), 0, 0]),
        echo::HOLD => park(),
        _ => error_reply(Error::Invalid),
    };
    for s in received {
        let _ = sys::cap_delete(s);
    }
    (reply, Vec::new())
}

fn pmo_sum(pmo: Slot, len: u64) -> Message {
    let mut buf = alloc::vec![0u8; len.min(keel_rt::abi::MAX_COPY) as usize];
    let sum = match sys::pmo_read(pmo, 0, &mut buf) {
        Ok(()) => echo::checksum(&buf),
        Err(e) => return error_reply(e),
    };
    let (kind, rights, _) = match sys::cap_info(pmo) {
        Ok(i) => i,
        Err(e) => return error_reply(e),
    };
    let write = code(sys::pmo_write(pmo, 0, &[0xAA]));
    Message::new(0, [sum, u64::from(rights), kind, write])
}

fn give_notif() -> (Message, Vec<Slot>) {
    let n = match sys::notif_create() {
        Ok(n) => n,
        Err(e) => return (error_reply(e), Vec::new()),
    };
    let copy = match sys::cap_copy(n, None, rights::SIGNAL | rights::GRANT, 0) {
        Ok(c) => c,
        Err(e) => {
            let _ = sys::cap_delete(n);
            return (error_reply(e), Vec::new());
        }
    };
    if let Some(old) = NOTIF.lock().replace(n) {
        let _ = sys::cap_delete(old);
    }
    (Message::new(0, [0; 4]), alloc::vec![copy])
}
