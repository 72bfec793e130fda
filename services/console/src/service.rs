//! The console's two threads over the system calls:
//! - the receive thread waits for the UART interrupt, drains the receive FIFO into the shared
//!   [`ConsoleState`], echoes, wakes the reader and asks the process manager to kill the
//!   foreground program on Ctrl-C; while the line queue is full it stops reading the UART and
//!   leaves its interrupt masked until the server thread says a reader made room;
//! - the server thread (the main one) registers `console` with namesrv and answers READ_LINE and
//!   SET_FOREGROUND.
//!
//! Neither thread makes a system call while holding the state lock, and the lock is taken
//! through [`lock`], which sleeps rather than spins forever: the two threads run at different
//! priorities, and a spinning higher-priority thread on the holder's CPU would never let it run.

use crate::ConsoleError;
use crate::pl011::Pl011Rx;
use crate::state::{ConsoleState, ReadResult};
use crate::uart_arg::UartConfig;
use alloc::sync::Arc;
use alloc::vec::Vec;
use keel_rt::abi::perm;
use keel_rt::ipc::{self, Client, Reply, Request};
use keel_rt::proto::{console, procmgr};
use keel_rt::sync::{Mutex, MutexGuard};
use keel_rt::{Error, Slot, println, sys, thread, vm};

/// Priority of the receive thread: above ordinary programs, so echo keeps up with typing.
const RECEIVE_PRIORITY: u8 = 44;
/// Bits of the receive thread's notification: the UART interrupt fired; a reader made room in
/// the full line queue.
const IRQ_BIT: u64 = 1;
const ROOM_BIT: u64 = 2;
/// Notification bit the receive thread sets for a waiting reader.
const INPUT_BIT: u64 = 1;

/// What both threads share.
struct Shared {
    state: Mutex<ConsoleState>,
    /// Signalled when a line finished or an interrupt is pending for the reader.
    input: Slot,
    /// The receive thread's notification ([`ROOM_BIT`] after a reader emptied a full queue).
    receiver: Slot,
    procmgr: Slot,
}

/// Takes the state lock: a short spin, then sleeps between attempts so a lower-priority holder
/// preempted on this CPU gets to finish.
fn lock(state: &Mutex<ConsoleState>) -> MutexGuard<'_, ConsoleState> {
    let mut attempts = 0u32;
    loop {
        if let Some(guard) = state.try_lock() {
            return guard;
        }
        attempts += 1;
        if attempts < 64 {
            keel_rt::sync::relax();
        } else {
            sys::sleep_ns(100_000);
        }
    }
}

/// The startup capabilities the console needs.
pub struct Caps {
    pub control: Slot,
    pub procmgr: Slot,
    pub namesrv: Slot,
}

/// Sets up the UART and both threads, then serves forever (returns only on a setup error).
pub fn run(uart: UartConfig, caps: Caps) -> Result<core::convert::Infallible, ConsoleError> {
    let rx = map_uart(&uart, caps.control)?;
    let irq_notif = sys::notif_create().map_err(|e| ConsoleError::Sys("notif_create", e))?;
    let irq = sys::irq_create(caps.control, uart.intid).map_err(|e| ConsoleError::Sys("irq_create", e))?;
    sys::irq_bind(irq, irq_notif, IRQ_BIT).map_err(|e| ConsoleError::Sys("irq_bind", e))?;
    rx.enable_rx_interrupts();

    let input = sys::notif_create().map_err(|e| ConsoleError::Sys("notif_create", e))?;
    let shared = Arc::new(Shared { state: Mutex::new(ConsoleState::new()), input, receiver: irq_notif, procmgr: caps.procmgr });
    let receiver = Arc::clone(&shared);
    let thread = thread::spawn_with(RECEIVE_PRIORITY, 0, move || receive_loop(rx, irq, irq_notif, &receiver))
        .map_err(|e| ConsoleError::Sys("thread spawn", e))?;
    let _ = sys::cap_delete(thread);

    let conn = sys::conn_create().map_err(|e| ConsoleError::Sys("conn_create", e))?;
    // Printed before registering: nobody can reach the console (the shell prints no prompt)
    // until the registration is done, so this line comes first.
    println!("console: ready (uart {:#x} irq {})", uart.base, uart.intid);
    ipc::register_service(caps.namesrv, "console", conn).map_err(ConsoleError::Register)?;
    ipc::serve(conn, |req| handle(&shared, conn, req))
}

/// How often a waiting READ_LINE looks whether its caller still lives.
const CALLER_CHECK_NS: u64 = 200_000_000;

/// Whether the client with `badge` on `conn` has exited (its process capability came with its
/// buffer's setup; a client without one is taken as alive).
fn caller_gone(conn: Slot, badge: u64) -> bool {
    ipc::client_process(conn, badge).is_some_and(|p| sys::process_info(p).map_or(true, |i| !i.running))
}

/// Maps the UART's registers; the receive side of the driver.
fn map_uart(uart: &UartConfig, control: Slot) -> Result<Pl011Rx, ConsoleError> {
    let (phys, size, offset) = uart.mapping();
    let pmo = sys::device_pmo(control, phys, size).map_err(|e| ConsoleError::Sys("device_pmo", e))?;
    let va = vm::map_pmo(pmo, size, perm::READ | perm::WRITE).map_err(|e| ConsoleError::Sys("map uart", e))?;
    // The mapping keeps the device object alive.
    let _ = sys::cap_delete(pmo);
    Ok(Pl011Rx::new(va + offset))
}

/// The receive thread.
fn receive_loop(rx: Pl011Rx, irq: Slot, irq_notif: Slot, shared: &Shared) {
    let mut bytes = Vec::with_capacity(256);
    loop {
        // Bytes held back while the queue was full go first.
        let mut full = deliver(shared, &[]);
        if !full {
            rx.clear_rx_interrupts();
            loop {
                bytes.clear();
                let empty = rx.drain(&mut bytes);
                full = deliver(shared, &bytes);
                if empty || full {
                    break;
                }
            }
        }
        // While full, the line stays masked: the input waits in the UART; ROOM_BIT wakes us.
        if !full {
            let _ = sys::irq_ack(irq);
            // A byte that arrived between the last drain and the ack is read now rather than
            // trusting the interrupt to be raised again.
            if rx.has_input() {
                continue;
            }
        }
        if sys::notif_wait(irq_notif, 0).is_err() {
            sys::sleep_ns(10_000_000);
        }
    }
}

/// Feeds received bytes and carries out what they caused; true if the line queue is now full.
fn deliver(shared: &Shared, bytes: &[u8]) -> bool {
    let (fx, full) = {
        let mut state = lock(&shared.state);
        let fx = state.receive(bytes);
        (fx, state.is_full())
    };
    for chunk in fx.echo.chunks(4096) {
        let _ = sys::debug_write(chunk);
    }
    if fx.wake_reader {
        let _ = sys::notif_signal(shared.input, INPUT_BIT);
    }
    if let Some(pid) = fx.kill {
        interrupt(shared, pid);
    }
    full
}

/// Ctrl-C: has the process manager kill foreground program `pid`.
fn interrupt(shared: &Shared, pid: u64) {
    let r = Client::new(shared.procmgr).call(procmgr::KILL, [pid, 0, 0, 0]);
    match r.and_then(|r| ipc::status(&r).map(|_| ())) {
        // It exited on its own meanwhile.
        Ok(()) | Err(Error::NotFound) => {}
        Err(e) => println!("console: Ctrl-C: cannot kill process {pid}: {e}"),
    }
}

/// One call to the console.
fn handle(shared: &Shared, conn: Slot, req: &mut Request) -> Reply {
    match req.msg.label {
        console::READ_LINE => read_line(shared, conn, req),
        console::SET_FOREGROUND if req.badge != console::CONTROL_BADGE => Reply::err(Error::NoRights),
        console::SET_FOREGROUND => {
            // A Ctrl-C typed while the program was starting kills it now.
            let kill = lock(&shared.state).set_foreground(req.msg.data[0]);
            if let Some(pid) = kill {
                interrupt(shared, pid);
            }
            Reply::ok([0; 4])
        }
        _ => Reply::err(Error::Invalid),
    }
}

/// READ_LINE: the next line (waiting for one), or data[0] = 1 if Ctrl-C came first, or 2 if
/// the request's timeout (data[0] ns, 0 = none) passed first; with data[1] = INTERRUPT_ONLY it
/// waits for Ctrl-C alone and leaves lines queued. A client without a bulk buffer cannot receive
/// a line, so it gets `Invalid` and no line is consumed.
fn read_line(shared: &Shared, conn: Slot, req: &mut Request) -> Reply {
    let [timeout_ns, flags, ..] = req.msg.data;
    let interrupt_only = flags & console::INTERRUPT_ONLY != 0;
    if flags & !console::INTERRUPT_ONLY != 0 || (req.bulk.is_none() && !interrupt_only) {
        return Reply::err(Error::Invalid);
    }
    let ticks = |ns: u64| (ns as u128 * sys::counter_freq() as u128 / 1_000_000_000) as u64;
    let deadline = (timeout_ns != 0).then(|| sys::counter().saturating_add(ticks(timeout_ns)));
    let result = loop {
        let (taken, was_full) = {
            let mut state = lock(&shared.state);
            let was_full = state.is_full();
            (if interrupt_only { state.take_interrupt() } else { state.take_for_reader() }, was_full)
        };
        if let Some(r) = taken {
            if was_full {
                let _ = sys::notif_signal(shared.receiver, ROOM_BIT);
            }
            break Some(r);
        }
        // This one thread serves the console: a reader killed while it waits (Ctrl-C that came
        // just before its READ_LINE did) must not keep everyone else's calls waiting behind it.
        if caller_gone(conn, req.badge) {
            lock(&shared.state).reader_gone();
            return Reply::err(Error::PeerDied);
        }
        let wait_ns = match deadline {
            None => CALLER_CHECK_NS,
            Some(d) => match d.checked_sub(sys::counter()) {
                Some(left) if left > 0 => (left as u128 * 1_000_000_000 / sys::counter_freq().max(1) as u128).clamp(1, CALLER_CHECK_NS as u128) as u64,
                _ => {
                    lock(&shared.state).reader_timed_out();
                    break None;
                }
            },
        };
        match sys::notif_wait(shared.input, wait_ns) {
            Ok(_) | Err(Error::TimedOut) => {}
            Err(_) => sys::sleep_ns(10_000_000),
        }
    };
    match result {
        Some(ReadResult::Line(line)) => {
            let len = req.reply_payload(&line);
            Reply::ok([0, 0, 0, len])
        }
        Some(ReadResult::Interrupted) => Reply::ok([console::INTERRUPTED, 0, 0, 0]),
        Some(ReadResult::TooLong(typed)) => Reply::ok([console::TOO_LONG, typed as u64, 0, 0]),
        None => Reply::ok([console::TIMED_OUT, 0, 0, 0]),
    }
}
