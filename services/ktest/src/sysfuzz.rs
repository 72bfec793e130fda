//! The system-call fuzzer's child (`ktest sysfuzz-child <seed> <calls>`): random call numbers and
//! random registers from a seeded generator, drawn from slots it holds (every kind of object,
//! including valid caps of the wrong type), bad slots, addresses (kernel, unmapped, unaligned,
//! wrapping, a scratch range of its own) and sizes. The `sysfuzz` scenario runs it and compares
//! the kernel's object census before it started and after it exited.
//!
//! The generator ([`Rng`], [`Generator`]) is pure and tested on the host: a seed gives the same
//! calls every time. A few calls are steered so the child survives to finish its run (see
//! [`steer`]): it never exits or powers off, never kills or starts threads in itself, never lets
//! the kernel write into its own code, stack or heap, never copies the control cap or a process
//! cap into another process, and never blocks for long (waits are cut to 100 us, calls and
//! receives on a connection nobody serves are given a slot of another kind instead, a vCPU is
//! kicked before it is run, the server thread's scheduling is left alone).
//!
//! IPC is fuzzed too, capabilities and all: a server thread of the child's own serves one
//! connection ([`Fixtures::served`]) that the generator may call with random words and a random
//! list of the slots it holds; the server answers with the caps it received, a notification of
//! its own, none, or a bad slot (then, refused, with none), so transfers in both directions run
//! with every kind of cap, bad slots and full tables. Calls on any other connection are steered
//! away (nobody serves them).

use alloc::vec::Vec;
use keel_rt::abi::{NO_SLOT, PAGE_SIZE, USER_MAX_VA, USER_MIN_VA, syscall as nr};

/// splitmix64: small, fast, and every seed gives a good sequence.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A value in `0..n` (`n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Start and size of the child's scratch range: the only user addresses the generator names
/// (nothing else of the child lives there).
pub const SCRATCH: u64 = 0x0000_0030_0000_0000;
pub const SCRATCH_SIZE: u64 = 64 * PAGE_SIZE;
/// An empty slot, and slots that are no slot at all.
pub const EMPTY: u64 = 4000;
const BAD_SLOTS: [u64; 5] = [EMPTY, 4095, 4096, NO_SLOT as u64, (1 << 32) | 1];
const BAD_ADDRESSES: [u64; 7] =
    [0, 8, 0xffff_0000_0000_0000, 0xffff_ff80_0000_1000, USER_MAX_VA - 4, u64::MAX - 3, USER_MAX_VA];

/// Draws calls: a number and eight argument registers.
pub struct Generator {
    pub rng: Rng,
    /// Slots the child holds now (fixtures and what successful calls returned).
    pub slots: Vec<u64>,
}

impl Generator {
    pub fn new(seed: u64, slots: Vec<u64>) -> Self {
        Self { rng: Rng::new(seed), slots }
    }

    /// One argument register.
    pub fn value(&mut self) -> u64 {
        let r = &mut self.rng;
        match r.below(100) {
            0..=34 if !self.slots.is_empty() => self.slots[r.below(self.slots.len() as u64) as usize],
            0..=44 => BAD_SLOTS[r.below(BAD_SLOTS.len() as u64) as usize],
            45..=59 => r.below(64),
            60..=69 => r.below(33) * PAGE_SIZE + if r.below(8) == 0 { 1 + r.below(PAGE_SIZE - 1) } else { 0 },
            70..=79 => SCRATCH + r.below(SCRATCH_SIZE / PAGE_SIZE) * PAGE_SIZE + if r.below(4) == 0 { r.below(PAGE_SIZE) } else { 0 },
            80..=89 => BAD_ADDRESSES[r.below(BAD_ADDRESSES.len() as u64) as usize],
            _ => r.next(),
        }
    }

    /// A call: every known number and a few unknown ones (and now and then a huge one).
    pub fn call(&mut self) -> (u64, [u64; 8]) {
        let n = if self.rng.below(64) == 0 { self.rng.next() } else { self.rng.below(nr::COUNT + 4) };
        let mut a = [0u64; 8];
        for x in a.iter_mut() {
            *x = self.value();
        }
        (n, a)
    }
}

/// Whether the kernel writing (or unmapping) at `va` cannot hit the child's own memory: outside
/// user space, or inside the scratch range.
pub fn harmless_address(va: u64) -> bool {
    !(USER_MIN_VA..USER_MAX_VA).contains(&va) || (SCRATCH..SCRATCH + SCRATCH_SIZE).contains(&va)
}

/// Moves a user address into the scratch range (keeping its offset in the page).
pub fn into_scratch(va: u64) -> u64 {
    SCRATCH + (va % SCRATCH_SIZE)
}

/// Calls whose successful result is a new slot in x1 (and x2 for process_create).
pub fn makes_slots(n: u64) -> bool {
    matches!(
        n,
        nr::CAP_COPY
            | nr::CAP_MOVE
            | nr::PROCESS_CREATE
            | nr::THREAD_CREATE
            | nr::PMO_CREATE
            | nr::CONN_CREATE
            | nr::NOTIF_CREATE
            | nr::IRQ_CREATE
            | nr::DEVICE_PMO
            | nr::VM_CREATE
            | nr::VCPU_CREATE
            | nr::VM_IRQ_LINE_CREATE
            | nr::VM_IOEVENT
    )
}

/// The objects the child makes at the start (and again after each clean-up).
#[cfg(target_os = "none")]
struct Fixtures {
    control: u64,
    control_weak: u64,
    victim: u64,
    /// Made once, kept for the whole run: the connection the child's server thread serves, its
    /// thread, and the notification it sends back.
    served: u64,
    server_thread: u64,
    server_notif: u64,
}

/// What the server thread sends back with its reply, chosen by the call's label.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReplyCaps {
    /// The caps the call carried.
    Echo,
    /// Its own notification.
    Own,
    None,
    /// A slot that holds nothing (refused; then it replies with none).
    Bad,
}

/// A cap list with every entry naming slot 0 (the caller's own process) made an empty slot.
pub fn without_slot_zero(list: u64) -> u64 {
    (0..4).fold(list, |v, i| if (v >> (16 * i)) & 0xFFFF == 0 { v | (EMPTY << (16 * i)) } else { v })
}

pub fn reply_caps(label: u64) -> ReplyCaps {
    match label % 4 {
        0 => ReplyCaps::Echo,
        1 => ReplyCaps::Own,
        2 => ReplyCaps::None,
        _ => ReplyCaps::Bad,
    }
}

/// A cap list of up to four slots drawn from `slots` (and now and then a bad one).
pub fn cap_list(rng: &mut Rng, slots: &[u64]) -> u64 {
    let n = 1 + rng.below(4) as usize;
    let mut v = u64::MAX;
    for i in 0..n {
        let s = if slots.is_empty() || rng.below(8) == 0 { BAD_SLOTS[rng.below(2) as usize] } else { slots[rng.below(slots.len() as u64) as usize] };
        v &= !(0xFFFF << (16 * i));
        v |= (s & 0xFFFF) << (16 * i);
    }
    v
}

#[cfg(target_os = "none")]
mod child {
    use super::*;
    use core::sync::atomic::{AtomicU64, Ordering};
    use keel_rt::abi::{ObjectKind, PmoKind, rights};

    /// Calls between two clean-ups (every slot above the protected ones deleted, fixtures remade).
    const CLEAN_EVERY: u64 = 512;
    use keel_rt::startup::Startup;
    use keel_rt::{println, sys};

    fn kind(slot: u64) -> Option<u64> {
        u32::try_from(slot).ok().and_then(|s| sys::cap_info(s).ok()).map(|(k, _, _)| k)
    }

    fn protected(fx: &Fixtures, slot: u64) -> bool {
        slot == 0
            || slot == 1
            || slot == fx.control
            || slot == fx.control_weak
            || slot == fx.served
            || slot == fx.server_thread
            || slot == fx.server_notif
    }

    /// The server thread: answers every call on `served` (module docs), deleting the caps each
    /// call brought once it has replied.
    fn serve(served: u32, own: u32) {
        use keel_rt::abi::ipc::{CapList, Message};
        loop {
            let Ok(call) = sys::ipc_recv(served) else {
                sys::sleep_ns(1_000_000);
                continue;
            };
            let reply = Message::new(call.msg.label, call.msg.data);
            let caps = match reply_caps(call.msg.label) {
                ReplyCaps::Echo => call.caps,
                ReplyCaps::Own => CapList::from_slots(&[own]).unwrap_or(CapList::EMPTY),
                ReplyCaps::None => CapList::EMPTY,
                ReplyCaps::Bad => CapList::from_slots(&[EMPTY as u32]).unwrap_or(CapList::EMPTY),
            };
            // A reply refused (a bad or deleted slot, a full table on the caller's side) leaves
            // the caller waiting: answer it without caps.
            if sys::ipc_reply(&reply, caps).is_err() {
                let _ = sys::ipc_reply(&reply, CapList::EMPTY);
            }
            for s in call.caps.slots() {
                let _ = sys::cap_delete(s);
            }
        }
    }

    /// The connection the server thread serves, its thread and its notification.
    fn start_server() -> (u64, u64, u64) {
        let (Ok(served), Ok(own)) = (sys::conn_create(), sys::notif_create()) else { return (EMPTY, EMPTY, EMPTY) };
        let thread = keel_rt::thread::spawn(move || serve(served, own)).map_or(EMPTY, u64::from);
        (u64::from(served), thread, u64::from(own))
    }

    /// Makes the fixtures; their slots (every kind of object the child can make).
    fn make_fixtures(control: u64, server: (u64, u64, u64)) -> (Fixtures, Vec<u64>) {
        let (served, server_thread, server_notif) = server;
        let mut slots = alloc::vec![0, 1, control, served, server_notif];
        let control_weak = sys::cap_copy(control as u32, None, rights::READ, 0).map_or(EMPTY, u64::from);
        let victim = sys::process_create("fuzz-victim").map_or(EMPTY, |(p, v, _)| {
            slots.push(u64::from(v));
            u64::from(p)
        });
        let notif = sys::notif_create().map_or(EMPTY, u64::from);
        slots.extend([control_weak, victim, notif]);
        let mut add = |r: Result<u32, keel_rt::Error>| {
            if let Ok(s) = r {
                slots.push(u64::from(s));
            }
        };
        add(sys::conn_create());
        add(sys::pmo_create(PmoKind::Anonymous, 4 * PAGE_SIZE));
        add(sys::pmo_create(PmoKind::Contiguous, PAGE_SIZE));
        if let Ok(vm) = sys::vm_create(control as u32, 1) {
            add(Ok(vm));
            add(sys::vcpu_create(vm, 0));
            add(sys::vm_irq_line_create(vm, 40));
        }
        (Fixtures { control, control_weak, victim, served, server_thread, server_notif }, slots)
    }

    /// Deletes every slot the child made (killing the processes first), then remakes the fixtures.
    fn clean(fx: &Fixtures, slots: &[u64]) -> (Fixtures, Vec<u64>) {
        let top = slots.iter().copied().filter(|&s| s < 4096).max().unwrap_or(0);
        for s in 2..=top {
            if protected(fx, s) {
                continue;
            }
            // A process without threads goes with its last cap; one with threads is killed.
            if kind(s) == Some(ObjectKind::CapGroup as u64) && sys::process_info(s as u32).is_ok_and(|i| i.running && i.threads > 0) {
                let _ = sys::process_kill(s as u32);
            }
            let _ = sys::cap_delete(s as u32);
        }
        make_fixtures(fx.control, (fx.served, fx.server_thread, fx.server_notif))
    }

    /// Changes a drawn call so that it cannot end or wedge the child (module docs).
    fn steer(fx: &Fixtures, rng: &mut Rng, slots: &[u64], n: &mut u64, a: &mut [u64; 8]) {
        match *n {
            nr::THREAD_EXIT | nr::PROCESS_EXIT => *n = nr::NULL,
            nr::POWER_OFF if kind(a[0]) == Some(ObjectKind::Control as u64) => a[0] = fx.control_weak,
            nr::CAP_DELETE | nr::CAP_REVOKE if protected(fx, a[0]) => a[0] = EMPTY,
            nr::CAP_COPY | nr::CAP_MOVE => {
                if protected(fx, a[0]) && *n == nr::CAP_MOVE {
                    a[0] = EMPTY;
                }
                if a[0] == 0 {
                    a[0] = fx.victim;
                }
                let k = kind(a[0]);
                if a[1] != u64::from(NO_SLOT)
                    && (k == Some(ObjectKind::Control as u64) || k == Some(ObjectKind::CapGroup as u64))
                {
                    a[1] = u64::from(NO_SLOT);
                }
            }
            nr::PROCESS_KILL | nr::THREAD_CREATE if a[0] == 0 => a[0] = fx.victim,
            // The server thread keeps the priority and CPUs it started with, so calls on the
            // served connection are always answered.
            nr::THREAD_SET_SCHED if a[0] == fx.server_thread => a[0] = EMPTY,
            nr::PMO_READ if !harmless_address(a[2]) => a[2] = into_scratch(a[2]),
            nr::VMSPACE_UNMAP if !harmless_address(a[1]) => a[1] = into_scratch(a[1]),
            nr::DEBUG_WRITE if (USER_MIN_VA..USER_MAX_VA).contains(&a[0]) && a[1] <= 4096 => a[1] = 0,
            nr::NOTIF_WAIT => a[1] = 1 + a[1] % 100_000,
            nr::SLEEP => a[0] %= 100_000,
            nr::FAULT_INJECT => a[1] %= 8,
            // Only the served connection answers; half its calls carry a list of held slots.
            nr::IPC_CALL if a[0] == fx.served => {
                if rng.below(2) == 0 {
                    a[7] = cap_list(rng, slots);
                }
                // The server echoes what it gets: a cap of the child's own process would come
                // back as a second one, which a later process_kill could end the child with.
                a[7] = without_slot_zero(a[7]);
            }
            nr::IPC_CALL | nr::IPC_RECV | nr::IPC_REPLY_RECV if kind(a[0]) == Some(ObjectKind::Connection as u64) => a[0] = EMPTY,
            // A wait for a process that runs would last until it exits (and a copy without READ
            // does not tell whether it runs).
            nr::PROCESS_WAIT if kind(a[0]) == Some(ObjectKind::CapGroup as u64) => {
                let exited = sys::process_info(a[0] as u32).is_ok_and(|i| !i.running);
                if !exited {
                    a[0] = EMPTY;
                }
            }
            nr::VCPU_RUN if kind(a[0]) == Some(ObjectKind::VCpu as u64) => {
                let _ = sys::vcpu_kick(a[0] as u32);
            }
            _ => {}
        }
    }

    static CALLS_DONE: AtomicU64 = AtomicU64::new(0);
    static CURRENT: AtomicU64 = AtomicU64::new(0);
    static ARGS: [AtomicU64; 8] = [const { AtomicU64::new(0) }; 8];

    pub fn run(seed: u64, calls: u64, startup: &Startup) -> i32 {
        let Some(control) = startup.cap("control") else {
            println!("ktest: sysfuzz-child: no control capability");
            return crate::EXIT_FAILED;
        };
        let (mut fx, slots) = make_fixtures(u64::from(control), start_server());
        let mut g = Generator::new(seed, slots);
        // A watchdog: a call that has not returned for 5 s is named on the console.
        let _ = keel_rt::thread::spawn(|| {
            let mut last = u64::MAX;
            loop {
                sys::sleep_ns(5_000_000_000);
                let now = CALLS_DONE.load(Ordering::Relaxed);
                if now == last {
                    let n = CURRENT.load(Ordering::Relaxed);
                    let args: [u64; 8] = core::array::from_fn(|i| ARGS[i].load(Ordering::Relaxed));
                    println!("ktest: sysfuzz-child: call {now} ({} = {n}) has not returned for 5 s; x0..x7 {args:#x?}", nr::name(n));
                }
                last = now;
            }
        });
        let (mut succeeded, mut numbers_ok) = (0u64, [false; nr::COUNT as usize]);
        let (mut ipc_calls, mut caps_back) = (0u64, 0u64);
        for i in 0..calls {
            if i > 0 && i % CLEAN_EVERY == 0 {
                let (f, s) = clean(&fx, &g.slots);
                fx = f;
                g.slots = s;
            }
            let (mut n, mut a) = g.call();
            if g.rng.below(16) == 0 || (n == nr::IPC_CALL && g.rng.below(2) == 0) {
                // One call in sixteen, and half the drawn IPC calls, go to the served connection
                // (with the registers drawn), so IPC with caps is fuzzed often.
                n = nr::IPC_CALL;
                a[0] = fx.served;
            }
            steer(&fx, &mut g.rng, &g.slots, &mut n, &mut a);
            CURRENT.store(n, Ordering::Relaxed);
            for (slot, v) in ARGS.iter().zip(a) {
                slot.store(v, Ordering::Relaxed);
            }
            let r = sys::raw::syscall(n, a);
            CALLS_DONE.store(i + 1, Ordering::Relaxed);
            if (r[0] as i64) >= 0 {
                succeeded += 1;
                if let Some(seen) = numbers_ok.get_mut(n as usize) {
                    *seen = true;
                }
                if n == nr::IPC_CALL {
                    ipc_calls += 1;
                    let got = keel_rt::abi::ipc::CapList(r[7]);
                    caps_back += got.len() as u64;
                    g.slots.extend(got.slots().map(u64::from));
                }
                if makes_slots(n) && !(matches!(n, nr::CAP_COPY | nr::CAP_MOVE) && a[1] != u64::from(NO_SLOT)) {
                    g.slots.push(r[1]);
                    if n == nr::PROCESS_CREATE {
                        g.slots.push(r[2]);
                    }
                }
            }
        }
        let _ = clean(&fx, &g.slots);
        let _ = sys::fault_inject(control, 0);
        let distinct = numbers_ok.iter().filter(|&&s| s).count();
        println!(
            "ktest: sysfuzz-child: {calls} calls from seed {seed}: {succeeded} succeeded, {} refused; {distinct} of {} call numbers succeeded at least once; {ipc_calls} IPC calls answered, bringing back {caps_back} caps",
            calls - succeeded,
            nr::COUNT
        );
        0
    }
}

/// Runs the child (on the host there is no kernel: it only reports that).
pub fn run(seed: u64, calls: u64, startup: &keel_rt::startup::Startup) -> i32 {
    #[cfg(target_os = "none")]
    {
        child::run(seed, calls, startup)
    }
    #[cfg(not(target_os = "none"))]
    {
        let _ = (seed, calls, startup);
        crate::EXIT_FAILED
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_seed_gives_the_same_calls_every_time() {
        let draw = |seed| {
            let mut g = Generator::new(seed, alloc::vec![0, 1, 7, 9]);
            (0..1000).map(|_| g.call()).collect::<Vec<_>>()
        };
        assert_eq!(draw(5), draw(5));
        assert_ne!(draw(5), draw(6));
    }

    #[test]
    fn calls_cover_every_number_and_every_kind_of_value() {
        let mut g = Generator::new(1, alloc::vec![0, 1, 7, 9]);
        let mut seen = [0u32; nr::COUNT as usize + 4];
        let (mut held, mut bad, mut scratch, mut kernel) = (0, 0, 0, 0);
        for _ in 0..100_000 {
            let (n, a) = g.call();
            if let Some(s) = seen.get_mut(n as usize) {
                *s += 1;
            }
            for v in a {
                held += u32::from([0, 1, 7, 9].contains(&v));
                bad += u32::from(BAD_SLOTS.contains(&v));
                scratch += u32::from((SCRATCH..SCRATCH + SCRATCH_SIZE).contains(&v));
                kernel += u32::from(v >= 0xffff_0000_0000_0000);
            }
        }
        assert!(seen.iter().all(|&c| c > 1000), "some call number is (almost) never drawn: {seen:?}");
        for (what, count) in [("held slots", held), ("bad slots", bad), ("scratch", scratch), ("kernel", kernel)] {
            assert!(count > 20_000, "{what}: only {count} of 800,000 registers");
        }
    }

    #[test]
    fn cap_lists_name_held_slots_and_sometimes_bad_ones() {
        let mut rng = Rng::new(3);
        let held = [0u64, 1, 7, 9];
        let (mut good, mut bad, mut lengths) = (0, 0, [0u32; 5]);
        for _ in 0..10_000 {
            let l = keel_rt::abi::ipc::CapList(cap_list(&mut rng, &held));
            lengths[l.len()] += 1;
            for s in l.slots() {
                if held.contains(&u64::from(s)) {
                    good += 1;
                } else {
                    assert!(BAD_SLOTS.iter().any(|&b| b & 0xFFFF == u64::from(s)), "slot {s} is neither held nor bad");
                    bad += 1;
                }
            }
        }
        assert_eq!(lengths[0], 0, "an empty list is no cap transfer");
        assert!(lengths[1..].iter().all(|&n| n > 2000), "list lengths {lengths:?}");
        assert!(good > 10 * bad / 2 && bad > 1000, "held {good}, bad {bad}");
        assert_eq!(without_slot_zero(0), EMPTY * 0x0001_0001_0001_0001);
        assert_eq!(without_slot_zero(0xFFFF_0009_0000_0007), 0xFFFF_0009_0000_0007 | (EMPTY << 16));
        assert_eq!(without_slot_zero(u64::MAX), u64::MAX);
        assert_eq!([0, 1, 2, 3, 4].map(reply_caps), [ReplyCaps::Echo, ReplyCaps::Own, ReplyCaps::None, ReplyCaps::Bad, ReplyCaps::Echo]);
    }

    #[test]
    fn only_scratch_and_non_user_addresses_are_harmless() {
        assert!(harmless_address(0) && harmless_address(0xffff_0000_0000_0000) && harmless_address(SCRATCH + 5));
        assert!(!harmless_address(0x40_0000) && !harmless_address(0x10_0000_0000) && !harmless_address(SCRATCH + SCRATCH_SIZE));
        for va in [0x1000, 0x10_0000_0000, 0x40_0000_0000, USER_MAX_VA - 1] {
            assert!(harmless_address(into_scratch(va)));
        }
    }
}
