//! The switches and their ports, as plain data: what a frame sent by one port does.
//!
//! A switch learns the source address of each frame a port sends (unicast sources only); a
//! frame to an address it has learned goes to that port alone (or nowhere, when that is the
//! port it came from), anything else (broadcast, multicast, unknown) is flooded to every other
//! port of the same switch. Switches never see each other's frames. A table entry moves when
//! its address shows up behind another port, goes with its port, and when a switch's table is
//! full the entry seen longest ago makes room.

use alloc::collections::{BTreeMap, VecDeque};
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt::Write;
use keel_rt::proto::net::{MAX_FRAME, MAX_PORTS, MIN_FRAME, push_frame};

/// Frames a port's queue holds before frames for it are dropped.
pub const QUEUE_FRAMES: usize = 256;
/// Addresses a switch remembers.
pub const MAX_ADDRESSES: usize = 1024;

/// A MAC address.
pub type Mac = [u8; 6];

/// What happened to a port's traffic.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// Frames the port sent into the switch, and their bytes.
    pub sent: u64,
    pub sent_bytes: u64,
    /// Frames the port took from the switch, and their bytes.
    pub received: u64,
    pub received_bytes: u64,
    /// Frames for the port dropped because its queue was full.
    pub dropped: u64,
    /// Frames it sent that were too short or too long (dropped).
    pub malformed: u64,
}

/// One port: a VM's network device.
#[derive(Debug)]
pub struct Port {
    pub number: u64,
    pub switch: String,
    /// The VM it belongs to, and its device's address.
    pub vm: u64,
    pub mac: Mac,
    /// Who opened it (the badge of its caller): only they may close it.
    pub opener: u64,
    /// Frames waiting for it.
    pub queue: VecDeque<Vec<u8>>,
    pub counters: Counters,
}

impl Port {
    /// Whose port it is: a VM's number, or `uplink` (VM 0: the network driver's).
    pub fn owner(&self) -> String {
        if self.vm == 0 { String::from("uplink") } else { alloc::format!("{}", self.vm) }
    }
}

/// One switch.
#[derive(Debug, Default)]
pub struct Switch {
    /// Address → (port, when last seen).
    table: BTreeMap<Mac, (u64, u64)>,
    /// Frames seen: the clock of `table`'s ages.
    clock: u64,
    /// Frames sent to one learned port, flooded, and dropped as going back where they came from.
    pub forwarded: u64,
    pub flooded: u64,
    pub filtered: u64,
}

/// Why a port could not be opened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpenError {
    /// The name is not a switch's name.
    BadName,
    /// That address already has a port on the switch.
    AddressInUse,
    /// [`MAX_PORTS`] are open.
    Full,
}

/// Every switch and port.
#[derive(Debug, Default)]
pub struct Fabric {
    switches: BTreeMap<String, Switch>,
    ports: BTreeMap<u64, Port>,
    next_port: u64,
}

fn unicast(mac: &Mac) -> bool {
    mac[0] & 1 == 0
}

/// `mac` as `02:4b:65:00:01:00`.
pub fn mac_text(mac: &Mac) -> String {
    let mut s = String::new();
    for (i, b) in mac.iter().enumerate() {
        let _ = write!(s, "{}{b:02x}", if i == 0 { "" } else { ":" });
    }
    s
}

impl Fabric {
    pub fn new() -> Self {
        Self::default()
    }

    /// Opens a port for `vm`'s device with address `mac` on switch `name` (made if new);
    /// its number.
    pub fn open(&mut self, name: &str, vm: u64, mac: Mac, opener: u64) -> Result<u64, OpenError> {
        if !keel_rt::proto::net::valid_switch_name(name) {
            return Err(OpenError::BadName);
        }
        if self.ports.values().any(|p| p.switch == name && p.mac == mac) {
            return Err(OpenError::AddressInUse);
        }
        if self.ports.len() >= MAX_PORTS {
            return Err(OpenError::Full);
        }
        self.next_port += 1;
        let number = self.next_port;
        self.switches.entry(String::from(name)).or_default();
        self.ports.insert(number, Port { number, switch: String::from(name), vm, mac, opener, queue: VecDeque::new(), counters: Counters::default() });
        Ok(number)
    }

    /// Takes port `number` down: its queue and its addresses go, and its switch when it was
    /// the last port. Whether there was such a port.
    pub fn close(&mut self, number: u64) -> bool {
        let Some(port) = self.ports.remove(&number) else { return false };
        if let Some(sw) = self.switches.get_mut(&port.switch) {
            sw.table.retain(|_, (p, _)| *p != number);
        }
        if !self.ports.values().any(|p| p.switch == port.switch) {
            self.switches.remove(&port.switch);
        }
        true
    }

    pub fn port(&self, number: u64) -> Option<&Port> {
        self.ports.get(&number)
    }

    /// Ports opened by `opener`.
    pub fn opened_by(&self, opener: u64) -> Vec<u64> {
        self.ports.values().filter(|p| p.opener == opener).map(|p| p.number).collect()
    }

    /// Port `from` sends `frame`: learned, then forwarded or flooded. Returns the ports whose
    /// queue was empty and now is not (the ones to wake).
    pub fn send(&mut self, from: u64, frame: &[u8]) -> Vec<u64> {
        let mut wake = Vec::new();
        let Some(port) = self.ports.get_mut(&from) else { return wake };
        if frame.len() < MIN_FRAME || frame.len() > MAX_FRAME {
            port.counters.malformed += 1;
            return wake;
        }
        port.counters.sent += 1;
        port.counters.sent_bytes += frame.len() as u64;
        let name = port.switch.clone();
        let Some(sw) = self.switches.get_mut(&name) else { return wake };
        sw.clock += 1;
        let dst: Mac = frame[0..6].try_into().unwrap_or([0xff; 6]);
        let src: Mac = frame[6..12].try_into().unwrap_or([0; 6]);
        if unicast(&src) {
            if !sw.table.contains_key(&src) && sw.table.len() >= MAX_ADDRESSES
                && let Some(oldest) = sw.table.iter().min_by_key(|(_, (_, seen))| *seen).map(|(m, _)| *m)
            {
                sw.table.remove(&oldest);
            }
            sw.table.insert(src, (from, sw.clock));
        }
        let targets: Vec<u64> = match sw.table.get(&dst) {
            Some(&(to, _)) if unicast(&dst) => {
                if to == from {
                    sw.filtered += 1;
                    return wake;
                }
                sw.forwarded += 1;
                alloc::vec![to]
            }
            _ => {
                sw.flooded += 1;
                self.ports.values().filter(|p| p.switch == name && p.number != from).map(|p| p.number).collect()
            }
        };
        for to in targets {
            let Some(p) = self.ports.get_mut(&to) else { continue };
            if p.queue.len() >= QUEUE_FRAMES {
                p.counters.dropped += 1;
                continue;
            }
            if p.queue.is_empty() {
                wake.push(to);
            }
            p.queue.push_back(frame.to_vec());
        }
        wake
    }

    /// Moves up to `max` frames waiting for port `number` into `payload` (at most `limit`
    /// bytes of records); (frames moved, frames still waiting).
    pub fn take(&mut self, number: u64, max: usize, payload: &mut Vec<u8>, limit: usize) -> (u64, u64) {
        let Some(p) = self.ports.get_mut(&number) else { return (0, 0) };
        let mut n = 0;
        while n < max {
            let Some(frame) = p.queue.front() else { break };
            if !push_frame(payload, frame, limit) {
                break;
            }
            p.counters.received += 1;
            p.counters.received_bytes += frame.len() as u64;
            p.queue.pop_front();
            n += 1;
        }
        (n as u64, p.queue.len() as u64)
    }

    /// `net list`: a line per port.
    pub fn list(&self) -> String {
        if self.ports.is_empty() {
            return String::from("no switches (vm run ... --net SWITCH makes one)\n");
        }
        let mut s = String::from("switch           port  vm     mac                sent      received  dropped\n");
        for p in self.ports.values() {
            let _ = writeln!(s, "{:<16} {:<5} {:<6} {:<18} {:<9} {:<9} {}", p.switch, p.number, p.owner(), mac_text(&p.mac), p.counters.sent, p.counters.received, p.counters.dropped + p.counters.malformed);
        }
        s
    }

    /// `net stat [SWITCH]`: each switch's counters, ports and address table.
    pub fn stat(&self, only: Option<&str>) -> Result<String, String> {
        if let Some(name) = only
            && !self.switches.contains_key(name)
        {
            return Err(alloc::format!("net stat: no switch {name} (net list shows them)"));
        }
        let mut s = String::new();
        for (name, sw) in self.switches.iter().filter(|(n, _)| only.is_none_or(|o| o == n.as_str())) {
            let ports: Vec<&Port> = self.ports.values().filter(|p| &p.switch == name).collect();
            let _ = writeln!(s, "switch {name}: {} ports, {} addresses learned; frames forwarded {}, flooded {}, filtered {}", ports.len(), sw.table.len(), sw.forwarded, sw.flooded, sw.filtered);
            for p in ports {
                let c = p.counters;
                let _ = writeln!(
                    s,
                    "  port {} ({}, {}): sent {} ({} bytes), received {} ({} bytes), queued {}, dropped {}, malformed {}",
                    p.number,
                    if p.vm == 0 { String::from("the uplink") } else { alloc::format!("vm {}", p.vm) },
                    mac_text(&p.mac),
                    c.sent,
                    c.sent_bytes,
                    c.received,
                    c.received_bytes,
                    p.queue.len(),
                    c.dropped,
                    c.malformed
                );
            }
            for (mac, (port, _)) in &sw.table {
                let _ = writeln!(s, "  {} -> port {port}", mac_text(mac));
            }
        }
        if s.is_empty() {
            s.push_str("no switches (vm run ... --net SWITCH makes one)\n");
        }
        Ok(s)
    }

    /// Runs a `net` shell command (its words after `net`); the text to print.
    pub fn command(&self, words: &[&str]) -> String {
        match words {
            ["list"] | [] => self.list(),
            ["stat"] => self.stat(None).unwrap_or_else(|e| e + "\n"),
            ["stat", name] => self.stat(Some(name)).unwrap_or_else(|e| e + "\n"),
            _ => String::from("net: usage: net list | net stat [SWITCH]\n"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(dst: Mac, src: Mac, fill: u8) -> Vec<u8> {
        let mut f = Vec::from(dst);
        f.extend_from_slice(&src);
        f.extend_from_slice(&[0x08, 0x00]);
        f.extend(core::iter::repeat_n(fill, 46));
        f
    }

    const A: Mac = [2, 0, 0, 0, 0, 1];
    const B: Mac = [2, 0, 0, 0, 0, 2];
    const C: Mac = [2, 0, 0, 0, 0, 3];
    const BROADCAST: Mac = [0xff; 6];

    fn queued(f: &Fabric, port: u64) -> usize {
        f.port(port).map_or(0, |p| p.queue.len())
    }

    #[test]
    fn unknown_and_broadcast_frames_flood_and_learned_ones_go_to_one_port() {
        let mut f = Fabric::new();
        let (a, b, c) = (f.open("sw0", 1, A, 9).unwrap(), f.open("sw0", 2, B, 9).unwrap(), f.open("sw0", 3, C, 9).unwrap());
        // A to B, not yet learned: flooded to b and c (not back to a); both queues were empty.
        assert_eq!(f.send(a, &frame(B, A, 1)), [b, c]);
        assert_eq!((queued(&f, a), queued(&f, b), queued(&f, c)), (0, 1, 1));
        // B answers A: A was learned, so only a gets it.
        assert_eq!(f.send(b, &frame(A, B, 2)), [a]);
        assert_eq!((queued(&f, a), queued(&f, b), queued(&f, c)), (1, 1, 1));
        // Now A to B goes to b alone (b's queue was not empty: nobody to wake).
        assert_eq!(f.send(a, &frame(B, A, 3)), Vec::<u64>::new());
        assert_eq!((queued(&f, b), queued(&f, c)), (2, 1));
        // A broadcast floods whatever is learned.
        f.send(a, &frame(BROADCAST, A, 4));
        assert_eq!((queued(&f, b), queued(&f, c)), (3, 2));
        let sw = &f.switches["sw0"];
        assert_eq!((sw.forwarded, sw.flooded, sw.filtered), (2, 2, 0));
        // A frame to an address behind the port it came from goes nowhere. (The first, to an
        // address not yet learned, floods: b has 4 waiting.)
        f.send(c, &frame(C, [2, 0, 0, 0, 0, 4], 5));
        f.send(c, &frame([2, 0, 0, 0, 0, 4], C, 6));
        assert_eq!(f.switches["sw0"].filtered, 1);
        // b takes its frames in order, as many as fit.
        let mut payload = Vec::new();
        assert_eq!(f.take(b, 2, &mut payload, 4096), (2, 2));
        let got: Vec<&[u8]> = keel_rt::proto::net::frames(&payload).collect();
        assert_eq!(got, [&frame(B, A, 1)[..], &frame(B, A, 3)[..]]);
        let mut small = Vec::new();
        assert_eq!(f.take(b, 10, &mut small, 10), (0, 2), "nothing fits in 10 bytes");
        assert_eq!(f.port(b).unwrap().counters.received, 2);
    }

    #[test]
    fn switches_are_separate_and_a_closed_port_is_forgotten() {
        let mut f = Fabric::new();
        let a = f.open("sw0", 1, A, 9).unwrap();
        let b = f.open("sw0", 2, B, 9).unwrap();
        let other = f.open("sw1", 3, C, 9).unwrap();
        assert_eq!(f.open("sw0", 4, A, 9), Err(OpenError::AddressInUse));
        assert!(f.open("sw1", 4, A, 9).is_ok(), "the same address on another switch");
        assert_eq!(f.open("SW0", 4, [2, 0, 0, 0, 0, 9], 9), Err(OpenError::BadName));
        f.send(a, &frame(BROADCAST, A, 1));
        assert_eq!(queued(&f, other), 0, "sw1 sees nothing of sw0");
        f.send(b, &frame(A, B, 2));
        assert_eq!(queued(&f, a), 1);
        // b goes: its address with it, so a frame to B floods again (to nobody but... none).
        assert!(f.close(b));
        assert!(!f.close(b));
        assert!(f.stat(Some("sw0")).unwrap().contains("1 ports, 1 addresses learned"));
        f.send(a, &frame(B, A, 3));
        assert_eq!(f.switches["sw0"].flooded, 2);
        // The last port of a switch takes the switch with it.
        assert!(f.close(a));
        assert!(f.stat(Some("sw0")).is_err());
        assert_eq!(f.opened_by(9).len(), 2);
    }

    #[test]
    fn full_queues_drop_and_bad_frames_are_counted() {
        let mut f = Fabric::new();
        let a = f.open("sw0", 1, A, 9).unwrap();
        let b = f.open("sw0", 2, B, 9).unwrap();
        for i in 0..QUEUE_FRAMES + 10 {
            f.send(a, &frame(BROADCAST, A, i as u8));
        }
        assert_eq!(queued(&f, b), QUEUE_FRAMES);
        assert_eq!(f.port(b).unwrap().counters.dropped, 10);
        f.send(a, &[0; MIN_FRAME - 1]);
        f.send(a, &[0; MAX_FRAME + 1]);
        assert_eq!(f.port(a).unwrap().counters.malformed, 2);
        assert_eq!(f.port(a).unwrap().counters.sent, QUEUE_FRAMES as u64 + 10);
        assert_eq!(f.send(99, &frame(B, A, 0)), Vec::<u64>::new(), "no such port");
    }

    #[test]
    fn a_full_table_forgets_the_address_seen_longest_ago() {
        let mut f = Fabric::new();
        let a = f.open("sw0", 1, A, 9).unwrap();
        let _b = f.open("sw0", 2, B, 9).unwrap();
        for i in 0..MAX_ADDRESSES as u16 + 1 {
            let [hi, lo] = i.to_be_bytes();
            f.send(a, &frame(BROADCAST, [2, 1, 0, 0, hi, lo], 0));
        }
        let sw = &f.switches["sw0"];
        assert_eq!(sw.table.len(), MAX_ADDRESSES);
        assert!(!sw.table.contains_key(&[2, 1, 0, 0, 0, 0]), "the first one seen went");
        assert!(sw.table.contains_key(&[2, 1, 0, 0, 4, 0]));
    }

    #[test]
    fn ports_run_out_and_commands_print_tables() {
        let mut f = Fabric::new();
        for i in 0..MAX_PORTS as u8 {
            f.open("sw0", 1, [2, 0, 0, 0, 1, i], 9).unwrap();
        }
        assert_eq!(f.open("sw0", 1, A, 9), Err(OpenError::Full));
        assert!(f.command(&["list"]).starts_with("switch           port"));
        assert!(f.command(&["stat", "sw0"]).contains("switch sw0: 64 ports"));
        assert_eq!(f.command(&["stat", "nope"]), "net stat: no switch nope (net list shows them)\n");
        assert!(f.command(&["frob"]).starts_with("net: usage"));
        assert!(Fabric::new().list().starts_with("no switches"));
        assert_eq!(mac_text(&[2, 0x4b, 0x65, 0, 1, 0xa]), "02:4b:65:00:01:0a");
    }
}
