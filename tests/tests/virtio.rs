//! QEMU scenarios for Keel's virtio devices: each device of a VM is served by its own backend
//! process (`/bin/vdev`), reached by the kernel's ioevents and the monitor's forwarded register
//! accesses. The tiny test guest's driver (tests/guests, `guest=virtio*`) checks what a guest
//! sees; the tests check what the user sees (`vm stat`, `ps`, the monitor's notices).

use keel_tests::{Boot, Scratch};

/// The row `vm stat` prints for a device: its numbers, after the device's name.
fn device_row<'a>(log: &'a str, device: &str) -> Vec<&'a str> {
    log.lines().filter(|l| l.starts_with(device)).last().map(|l| l.split_whitespace().collect()).unwrap_or_default()
}

#[test]
fn an_entropy_device_serves_a_guest_and_refuses_a_hostile_one_beside_it() {
    let run = Boot::scenario("")
        .commands(&[
            "vm run bad --kernel /guest/test.Image --append guest=virtio-hostile --rng",
            "vm run good --kernel /guest/test.Image --append guest=virtio --rng --wait",
            "vm run good2 --kernel /guest/test.Image --append guest=virtio --rng --wait",
        ])
        .commands_after("vm 1 (bad) exited", &["vm console 1", "vm stat 1", "vm run none --kernel /guest/test.Image --append guest=virtio --wait", "mem", "poweroff"])
        .timeout(300)
        .run();
    run.expect("guest: virtio: slot 0 at 0xa000000: device 4, version 2")
        .expect("vm 2 exited: system-off")
        .expect("vm 3 exited: system-off")
        .expect("guest: virtio-hostile: buffer outside RAM: device needs reset")
        .expect("guest: virtio-hostile: descriptor loop: device needs reset")
        .expect("guest: virtio-hostile: available index jump: device needs reset")
        .expect("guest: virtio-hostile: queue outside RAM: device needs reset")
        .expect("guest: virtio-hostile: PASS (9 kinds of bad input refused; then 64 random bytes)")
        .expect("guest: virtio: FAIL no entropy device (virtio device ID 4) on any slot")
        .expect_absent("vdev: ")
        .expect_absent("panicked")
        .expect_clean_poweroff();
    if run.log.matches("guest: virtio: PASS (64 random bytes from slot 0)").count() != 2 {
        run.fail("the two healthy guests did not both get their random bytes");
    }
    // The hostile guest's device: 7 malformed rings (each a reset), 7 good requests.
    let row = device_row(&run.log, "virtio-rng@0");
    if row.get(1..3) != Some(&["7", "448"][..]) || row.get(5) != Some(&"7") {
        run.fail(&format!("vm stat 1's device row is {row:?}, want 7 requests, 448 bytes, 7 errors"));
    }
    // Every backend ended with its VM: no backend process, VM or ioevent is left.
    for gone in ["vms                0", "vm-ioevents        0", "vm-irq-lines       0"] {
        run.expect(gone);
    }
}

#[test]
fn a_killed_backend_fails_its_device_and_nothing_else() {
    let run = Boot::scenario("")
        .commands(&["vm run loop --kernel /guest/test.Image --append guest=virtio-loop --rng --attach"])
        .then_next("guest: virtio-loop: serving requests", |_| "~.\n".to_string())
        .commands(&["ps"])
        .command_from(|log| {
            let pid = log.lines().rev().find(|l| l.contains("vdev-rng")).and_then(|l| l.split_whitespace().next()).unwrap_or("none");
            format!("kill {pid}")
        })
        .commands_after("vm 1 (loop) exited: system-off", &["vm console 1", "vm stat 1", "vm run again --kernel /guest/test.Image --append guest=virtio --rng --wait", "ps", "poweroff"])
        .timeout(300)
        .run();
    run.expect("vdev-rng         running")
        .expect("the virtio-rng backend (pid")
        .expect("is gone (peer died): the device now reports DEVICE_NEEDS_RESET")
        .expect("guest: virtio-loop: PASS (the device reports DEVICE_NEEDS_RESET after")
        .expect("backend gone")
        .expect("guest: virtio: PASS (64 random bytes from slot 0)")
        .expect("vm 2 exited: system-off")
        .expect_clean_poweroff();
    // The last `ps` lists no backend: the second VM's ended with it.
    let last_ps = run.log.rsplit("keel> ps").next().unwrap_or("");
    if last_ps.contains("vdev-rng") {
        run.fail("a backend process outlived its VM");
    }
}

/// Debian's Linux with an entropy device: its /init loads the virtio modules (the device tree
/// lists a virtio-mmio transport), the virtio-rng driver binds, and /dev/hwrng gives bytes.
#[test]
fn debian_linux_reads_its_hwrng_from_a_keel_backend() {
    let run = Boot::scenario("")
        .commands(&["vm run linux-check --rng --wait", "vm stat 1", "poweroff"])
        .timeout(600)
        .run();
    run.expect("guest: virtio: ")
        .expect("modules loaded")
        .expect("guest: hwrng: virtio_rng.0: 128 bytes")
        .expect("guest: checks passed")
        .expect("vm 1 exited: system-off")
        .expect_absent("insmod: can't insert")
        .expect_clean_poweroff();
    let row = device_row(&run.log, "virtio-rng@0");
    let requests: u64 = row.get(1).and_then(|n| n.parse().ok()).unwrap_or(0);
    let bytes: u64 = row.get(2).and_then(|n| n.parse().ok()).unwrap_or(0);
    if requests == 0 || bytes < 128 {
        run.fail(&format!("vm stat 1's device row {row:?} shows fewer requests or bytes than the guest read"));
    }
}

/// Runs one of the host's e2fsprogs tools; its output, or the test fails with its stderr.
fn e2fs(tool: &str, args: &[&str]) -> Vec<u8> {
    let path = format!("/usr/sbin/{tool}");
    assert!(std::path::Path::new(&path).exists(), "{path} is missing: `make deps` installs e2fsprogs");
    let out = std::process::Command::new(&path).args(args).output().expect("cannot run an e2fsprogs tool");
    assert!(out.status.success(), "{tool} {args:?} failed (exit {:?}):\n{}{}", out.status.code(), String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    out.stdout
}

/// The disk round trip: the host makes an ext4 image with a file in it and puts it on
/// Keel's own disk; a Debian guest given it with `--disk` mounts it, reads the file, writes one,
/// syncs and powers off; after Keel powers off, the host finds both file systems clean and reads
/// what the guest wrote. Bad `--disk` arguments and a disk in use get one-line errors; a
/// read-only disk refuses the guest's write and is left as it was.
#[test]
fn a_linux_guest_keeps_its_files_on_a_virtio_disk_the_host_reads_afterwards() {
    let scratch = Scratch::new("disk");
    let dir = |n: &str| scratch.0.join(n).to_str().unwrap().to_string();
    std::fs::create_dir_all(dir("inner")).unwrap();
    std::fs::create_dir_all(dir("outer")).unwrap();
    std::fs::write(dir("inner/hello.txt"), "hello from the host\n").unwrap();
    e2fs("mke2fs", &["-q", "-t", "ext4", "-d", &dir("inner"), &dir("outer/vm1.img"), "16M"]);
    std::fs::copy(dir("outer/vm1.img"), dir("outer/ro.img")).unwrap();
    let ro_before = std::fs::read(dir("outer/ro.img")).unwrap();
    e2fs("mke2fs", &["-q", "-t", "ext2", "-d", &dir("outer"), &dir("disk.img"), "64M"]);
    let run = Boot::scenario("")
        .drive(&dir("disk.img"))
        .commands(&[
            "vm run bad --kernel /guest/test.Image --disk /disk/none.img",
            "vm run bad --kernel /guest/test.Image --disk /disk",
            "vm run bad --kernel /guest/test.Image --disk vm1.img",
            "vm run hold --kernel /guest/test.Image --append guest=crash --disk /disk/vm1.img",
            "vm run linux-check --disk /disk/vm1.img --wait",
            "vm stop 1",
        ])
        .commands_after("vm 1 (hold) stopped", &["vm run linux-check --disk /disk/vm1.img --wait", "vm stat 2", "vm run linux-check --disk /disk/ro.img:ro --wait", "poweroff"])
        .timeout(900)
        .run();
    run.expect("vm run: --disk /disk/none.img: no such file")
        .expect("vm run: --disk /disk: is a directory")
        .expect("vm run: --disk vm1.img: give a file's absolute path or a block device (blk0, blk1, ...), with :ro after it for a read-only disk")
        .expect("vm 1 started (hold, 1 vcpus, 256 MiB)")
        .expect("vm run: --disk /disk/vm1.img: in use by vm 1 (hold, read-write)")
        .expect("guest: disk: mounted /dev/vda (16384 KiB, ro=0)")
        .expect("guest: disk: hello.txt: hello from the host")
        .expect("guest: disk: wrote from-guest.txt (1846 bytes)")
        .expect("guest: disk: mounted /dev/vda (16384 KiB, ro=1)")
        .expect("guest: disk: read-only: write refused")
        .expect("vm 2 exited: system-off")
        .expect("vm 3 exited: system-off")
        .expect_absent("checks FAILED")
        .expect_absent("closed its session")
        .expect_clean_poweroff();
    if run.log.matches("guest: disk: unmounted").count() != 2 {
        run.fail("the guest did not unmount both disks");
    }
    let row = device_row(&run.log, "virtio-blk@0");
    if row.get(1).and_then(|n| n.parse::<u64>().ok()).unwrap_or(0) == 0 || row.get(5) != Some(&"0") {
        run.fail(&format!("vm stat 2's disk row is {row:?}: want requests served and no errors"));
    }
    // On the host: Keel's disk is clean, the guest's image in it is clean and has its file.
    e2fs("e2fsck", &["-fn", &dir("disk.img")]);
    e2fs("debugfs", &["-R", &format!("dump /vm1.img {}", dir("vm1.img")), &dir("disk.img")]);
    e2fs("debugfs", &["-R", &format!("dump /ro.img {}", dir("ro.img")), &dir("disk.img")]);
    e2fs("e2fsck", &["-fn", &dir("vm1.img")]);
    let written = String::from_utf8(e2fs("debugfs", &["-R", "cat /from-guest.txt", &dir("vm1.img")])).unwrap_or_default();
    assert!(
        written.starts_with("line 0 written by the guest\n") && written.ends_with("line 63 written by the guest\n"),
        "from-guest.txt as the host reads it: {written:?}"
    );
    assert!(std::fs::read(dir("ro.img")).unwrap() == ro_before, "the read-only disk changed");
}

/// The VM monitor dies with a VM running: the VM is lost (as before), and its device backends,
/// which watch the monitor, exit too, so nothing keeps the lost VM's memory alive.
#[test]
fn backends_end_with_the_monitor_that_started_them() {
    let pid_of = |log: &str, name: &str| {
        log.lines().rev().find(|l| l.split_whitespace().nth(1) == Some(name)).and_then(|l| l.split_whitespace().next()).unwrap_or("none").to_string()
    };
    let run = Boot::scenario("")
        .commands(&["vm run hold --kernel /guest/test.Image --append guest=crash --rng", "ps"])
        .command_from(move |log| format!("kill {}", pid_of(log, "vmm")))
        .commands_after("vmm: restarted", &["vm list", "ps", "mem", "poweroff"])
        .timeout(300)
        .run();
    run.expect("vm 1 started (hold, 1 vcpus, 256 MiB)")
        .expect("vdev-rng         running")
        .expect("1    hold                 1      256  lost: the VM monitor restarted")
        .expect("vms                0")
        .expect_clean_poweroff();
    let last_ps = run.log.rsplit("keel> ps").next().unwrap_or("");
    if last_ps.contains("vdev-rng") {
        run.fail("the backend outlived the monitor that started it");
    }
}

/// `--console virtio`: Debian's Linux writes its console to hvc0 on a virtio-console device
/// (whole buffers per doorbell, not an exit per byte), and lines typed at `--attach` reach its
/// shell through the same device.
#[test]
fn a_linux_guest_uses_hvc0_on_a_virtio_console() {
    let run = Boot::scenario("")
        .commands(&["vm run linux-check --console virtio --wait", "vm stat 1", "vm run linux --console virtio --attach"])
        .then_next("linux:/# ", |_| "tty; echo typed $((6 * 7))\n".to_string())
        .then_next("typed 42", |_| "poweroff -f\n".to_string())
        // An attached shell learns of the VM's end at its next line of input.
        .then_next("vm 2 (linux) exited", |_| "\n".to_string())
        .then_next("vm 2 exited: system-off", |_| "poweroff\n".to_string())
        .timeout(600)
        .run();
    run.expect("guest: console: hvc0")
        .expect("guest: checks passed")
        .expect("vm 1 exited: system-off")
        .expect("/dev/hvc0")
        .expect("typed 42")
        .expect_clean_poweroff();
    let row = device_row(&run.log, "virtio-console@0");
    let requests: u64 = row.get(1).and_then(|n| n.parse().ok()).unwrap_or(0);
    let bytes: u64 = row.get(2).and_then(|n| n.parse().ok()).unwrap_or(0);
    // The check lines (some 150 bytes and more) go out a line per request, not a byte: at
    // least 4 bytes per request on average.
    if bytes < 100 || requests == 0 || requests * 4 > bytes {
        run.fail(&format!("vm stat 1's console row {row:?}: want 100 bytes or more in a quarter as many requests"));
    }
}

/// The md5 a `guest: net: <what> data: N bytes, md5 X` line gives.
fn net_md5<'a>(log: &'a str, what: &str) -> Option<&'a str> {
    let prefix = format!("guest: net: {what} data: 1048576 bytes, md5 ");
    log.lines().find_map(|l| l.strip_prefix(prefix.as_str())).map(str::trim)
}

/// Two Debian guests on one virtual switch: one serves a 1 MiB file of random bytes over HTTP,
/// the other pings it and fetches the file; the switch learned both addresses and forwarded
/// their frames port to port; its ports go with their VMs.
#[test]
fn two_linux_guests_on_one_switch_ping_each_other_and_move_a_file() {
    let run = Boot::scenario("")
        .commands(&[
            "net list",
            "vm run linux-check --net Sw0",
            "vm run linux-check --net sw0 --append \"keel.ip=10.0.0.1/24 keel.net=serve keel.netstay\"",
            "vm run linux-check --net sw0 --append \"keel.ip=10.0.0.2/24 keel.net=fetch keel.peer=10.0.0.1 keel.netstay\" --attach",
        ])
        .then_next("guest: staying up (keel.netstay)", |_| "~.\n".to_string())
        // Both ports are there while both guests stay up; the serving guest's console (attached)
        // says when it has seen the other's bye and passed its checks.
        .commands(&["net list", "net stat sw0", "vm stat 2", "vm console 1"])
        .then_next("guest: staying up (keel.netstay)", |_| "~.\n".to_string())
        .commands(&["vm stop 1"])
        .commands_after("vm 1 (linux-check) stopped", &["net stat sw0", "vm stop 2"])
        .commands_after("vm 2 (linux-check) stopped", &["net list", "poweroff"])
        .timeout(900)
        .run();
    run.expect("no switches (vm run ... --net SWITCH makes one)")
        .expect("vm run: --net Sw0: a switch's name is 1 to 15 characters of a-z, 0-9 and -")
        .expect("guest: net: eth0 02:4b:65:00:02:00 10.0.0.2/24")
        .expect("guest: net: ping 10.0.0.1: 3 of 3 replies")
        .expect("switch sw0: 2 ports, 2 addresses learned")
        .expect("  02:4b:65:00:01:00 -> port 1")
        .expect("  02:4b:65:00:02:00 -> port 2")
        .expect("switch sw0: 1 ports, 1 addresses learned")
        .expect("guest: net: the peer said bye")
        .expect_absent("vdev: ")
        .expect_clean_poweroff();
    if run.log.matches("guest: checks passed").count() != 2 {
        run.fail("both guests should pass their checks (the fetching one attached, then the serving one)");
    }
    match (net_md5(&run.log, "serving"), net_md5(&run.log, "fetched")) {
        (Some(a), Some(b)) if a == b && a.len() == 32 => {}
        other => run.fail(&format!("the file fetched is not the file served: md5s {other:?}")),
    }
    // The file crossed the switch from port 1 to port 2 without a flood: forwarded frames far
    // outnumber flooded ones (ARP and the first frames before learning), and nothing dropped.
    let stat = run.lines_starting("switch sw0: 2 ports").first().copied().unwrap_or("");
    let after = |word: &str| stat.split(word).nth(1).and_then(|r| r.trim_start().split(|c: char| !c.is_ascii_digit()).next()).and_then(|n| n.parse::<u64>().ok());
    match (after("forwarded"), after("flooded")) {
        (Some(f), Some(fl)) if f > 700 && fl * 10 < f => {}
        _ => run.fail(&format!("want the file's 700-odd frames forwarded, few flooded: {stat}")),
    }
    let port2 = run.log.lines().find(|l| l.starts_with("  port 2 (vm 2")).unwrap_or("");
    if !port2.contains("dropped 0, malformed 0") {
        run.fail(&format!("port 2 lost frames: {port2}"));
    }
    let row = device_row(&run.log, "virtio-net@0");
    let bytes: u64 = row.get(2).and_then(|n| n.parse().ok()).unwrap_or(0);
    if bytes < 1 << 20 {
        run.fail(&format!("vm stat 2's network row {row:?}: want at least the 1 MiB file's bytes"));
    }
    // Both ports went with their VMs, and the switch with its last port.
    let last_list = run.log.rsplit("keel> net list").next().unwrap_or("");
    if !last_list.contains("no switches") {
        run.fail("the switch outlived its VMs");
    }
}

/// A Debian guest on sw0 gets its address from QEMU's DHCP server through the uplink (Keel's
/// `nic` driving QEMU's virtio-net device on user networking with restrict=on, so nothing
/// leaves QEMU) and pings QEMU's gateway.
#[test]
fn a_linux_guest_gets_an_address_by_dhcp_through_the_uplink() {
    let run = Boot::scenario("")
        .netdev("user,restrict=on")
        .commands(&["net list", "vm run linux-check --net sw0 --append \"keel.ip=dhcp keel.net=ping keel.peer=10.0.2.2\" --wait", "net stat sw0", "poweroff"])
        .timeout(600)
        .run();
    run.expect("nic: virtio-net at slot 31 (52:54:00:12:34:56), the uplink of switch sw0 (port 1)")
        .expect("sw0              1     uplink 52:54:00:12:34:56")
        .expect("guest: net: eth0 02:4b:65:00:01:00 10.0.2.15/24")
        .expect("guest: net: ping 10.0.2.2: 3 of 3 replies")
        .expect("guest: checks passed")
        // QEMU's gateway is behind the uplink; the VM's port went with the VM.
        .expect("  52:55:0a:00:02:02 -> port 1")
        .expect("switch sw0: 1 ports")
        .expect_clean_poweroff();
}

/// A host process on the loopback address at the far end of the uplink (QEMU's `dgram`
/// backend: each Ethernet frame one UDP datagram): it answers ARP and ping for 10.0.3.1.
struct LoopbackPeer {
    socket: std::net::UdpSocket,
}

impl LoopbackPeer {
    const MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x99];
    const IP: [u8; 4] = [10, 0, 3, 1];

    /// Answers what comes until `stop`; (frames received, replies sent).
    fn serve(&self, qemu: std::net::SocketAddr, stop: &std::sync::atomic::AtomicBool) -> (u32, u32) {
        let (mut got, mut sent) = (0, 0);
        let mut buf = [0u8; 2048];
        self.socket.set_read_timeout(Some(std::time::Duration::from_millis(200))).unwrap();
        while !stop.load(std::sync::atomic::Ordering::Acquire) {
            let Ok(n) = self.socket.recv(&mut buf) else { continue };
            got += 1;
            if let Some(reply) = Self::answer(&buf[..n]) {
                if self.socket.send_to(&reply, qemu).is_ok() {
                    sent += 1;
                }
            }
        }
        (got, sent)
    }

    fn checksum(bytes: &[u8]) -> u16 {
        let mut sum: u32 = bytes.chunks(2).map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]))).sum();
        while sum > 0xffff {
            sum = (sum & 0xffff) + (sum >> 16);
        }
        !(sum as u16)
    }

    /// The reply to an ARP request or ICMP echo request for our address.
    fn answer(f: &[u8]) -> Option<Vec<u8>> {
        let (dst_mac, src_mac, ethertype) = (&f.get(0..6)?, &f.get(6..12)?, u16::from_be_bytes([*f.get(12)?, *f.get(13)?]));
        let _ = dst_mac;
        let mut out = Vec::from(*src_mac);
        out.extend_from_slice(&Self::MAC);
        match ethertype {
            0x0806 if f.get(20..22)? == [0, 1] && f.get(38..42)? == Self::IP => {
                out.extend_from_slice(&[0x08, 0x06, 0, 1, 8, 0, 6, 4, 0, 2]);
                out.extend_from_slice(&Self::MAC);
                out.extend_from_slice(&Self::IP);
                out.extend_from_slice(f.get(22..32)?);
                Some(out)
            }
            0x0800 if f.get(30..34)? == Self::IP && *f.get(23)? == 1 => {
                let ihl = usize::from(f.get(14)? & 0xf) * 4;
                let ip = f.get(14..)?;
                let total = usize::from(u16::from_be_bytes([*ip.get(2)?, *ip.get(3)?]));
                let icmp = ip.get(ihl..total)?;
                if icmp.first() != Some(&8) {
                    return None;
                }
                let mut header = ip.get(..ihl)?.to_vec();
                header[16..20].copy_from_slice(ip.get(12..16)?);
                header[12..16].copy_from_slice(&Self::IP);
                header[10..12].copy_from_slice(&[0, 0]);
                let c = Self::checksum(&header);
                header[10..12].copy_from_slice(&c.to_be_bytes());
                let mut reply = icmp.to_vec();
                reply[0] = 0;
                reply[2..4].copy_from_slice(&[0, 0]);
                let c = Self::checksum(&reply);
                reply[2..4].copy_from_slice(&c.to_be_bytes());
                out.extend_from_slice(&[0x08, 0x00]);
                out.extend_from_slice(&header);
                out.extend_from_slice(&reply);
                Some(out)
            }
            _ => None,
        }
    }
}

/// The uplink with a peer on the host: QEMU's virtio-net device sends every frame as a UDP
/// datagram to a test process on 127.0.0.1 (and nowhere else), which answers ARP and ping; a
/// Debian guest on sw0 pings it through the switch and the uplink.
#[test]
fn a_linux_guest_pings_a_host_process_through_the_uplink() {
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let peer_port = socket.local_addr().unwrap().port();
    // A free port for QEMU's end (bound and let go at once).
    let qemu_port = std::net::UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let qemu: std::net::SocketAddr = format!("127.0.0.1:{qemu_port}").parse().unwrap();
    let peer = LoopbackPeer { socket };
    let stop = std::sync::atomic::AtomicBool::new(false);
    let (run, (got, sent)) = std::thread::scope(|s| {
        let served = s.spawn(|| peer.serve(qemu, &stop));
        let run = Boot::scenario("")
            .netdev(&format!("dgram,local.type=inet,local.host=127.0.0.1,local.port={qemu_port},remote.type=inet,remote.host=127.0.0.1,remote.port={peer_port}"))
            .commands(&["vm run linux-check --net sw0 --append \"keel.ip=10.0.3.2/24 keel.net=ping keel.peer=10.0.3.1\" --wait", "net stat sw0", "poweroff"])
            .timeout(600)
            .run();
        stop.store(true, std::sync::atomic::Ordering::Release);
        (run, served.join().unwrap())
    });
    run.expect("the uplink of switch sw0")
        .expect("guest: net: ping 10.0.3.1: 3 of 3 replies")
        .expect("guest: checks passed")
        .expect("  02:00:00:00:00:99 -> port 1")
        .expect_clean_poweroff();
    if got < 4 || sent < 4 {
        run.fail(&format!("the host peer got {got} frames and answered {sent}: want ARP and pings both ways"));
    }
}

/// A hostile driver on a switch port (the tiny guest's `virtio-hostile` with `guest.net`: bad
/// transmit rings of every kind, then one good frame) beside two Debian guests that move a file
/// over the same switch: the hostile device needs resets, nothing else notices.
#[test]
fn a_hostile_guest_on_a_switch_harms_neither_the_switch_nor_the_guests_beside_it() {
    let run = Boot::scenario("")
        .commands(&[
            "vm run linux-check --net sw0 --append \"keel.ip=10.0.0.1/24 keel.net=serve\"",
            "vm run linux-check --net sw0 --append \"keel.ip=10.0.0.2/24 keel.net=fetch keel.peer=10.0.0.1\"",
            "vm run bad --kernel /guest/test.Image --append \"guest=virtio-hostile guest.net\" --net sw0 --wait",
            "vm stat 3",
        ])
        .commands_after("vm 2 (linux-check) exited", &["vm console 2", "poweroff"])
        .timeout(900)
        .run();
    run.expect("guest: virtio-hostile: buffer outside RAM: device needs reset")
        .expect("guest: virtio-hostile: descriptor loop: device needs reset")
        .expect("guest: virtio-hostile: available index jump: device needs reset")
        .expect("guest: virtio-hostile: queue outside RAM: device needs reset")
        .expect("guest: virtio-hostile: PASS (9 kinds of bad input refused; then a 60-byte frame sent)")
        .expect("vm 3 exited: system-off")
        .expect("guest: net: ping 10.0.0.1: 3 of 3 replies")
        .expect("guest: checks passed")
        .expect_absent("vdev: ")
        .expect_absent("panicked")
        .expect_clean_poweroff();
    if net_md5(&run.log, "fetched").is_none() {
        run.fail("the fetching guest got no file");
    }
    let row = device_row(&run.log, "virtio-net@0");
    if row.get(5).and_then(|n| n.parse::<u64>().ok()).unwrap_or(0) < 7 {
        run.fail(&format!("vm stat 3's network row {row:?}: want the 7 malformed rings counted as errors"));
    }
}

/// A whole Keel block device as a guest's disk (`--disk blk1`): QEMU's second virtio-blk
/// device, driven by Keel's blk driver, holds an ext4 image the host made; a Debian guest mounts
/// it, reads and writes; afterwards the host finds it clean with the guest's file. The disk the
/// file service has mounted (blk0) is refused while it is, a device that does not exist too.
#[test]
fn a_linux_guest_uses_a_whole_block_device_as_its_disk() {
    let scratch = Scratch::new("blkdev");
    let dir = |n: &str| scratch.0.join(n).to_str().unwrap().to_string();
    std::fs::create_dir_all(dir("inner")).unwrap();
    std::fs::write(dir("inner/hello.txt"), "hello from the host\n").unwrap();
    e2fs("mke2fs", &["-q", "-t", "ext4", "-d", &dir("inner"), &dir("vm.img"), "16M"]);
    e2fs("mke2fs", &["-q", "-t", "ext2", &dir("disk.img"), "16M"]);
    let run = Boot::scenario("")
        .drive(&dir("disk.img"))
        .drive(&dir("vm.img"))
        .commands(&[
            "vm run bad --kernel /guest/test.Image --disk blk7",
            "vm run bad --kernel /guest/test.Image --disk blk0",
            "vm run linux-check --disk blk1 --wait",
            "vm stat 1",
            "poweroff",
        ])
        .timeout(600)
        .run();
    run.expect("vm run: --disk blk7: no such block device (the virtio-blk driver's disks are blk0, blk1, ...)")
        .expect("vm run: --disk blk0: another client writes it (the file service, if it is mounted: umount it, or give blk0:ro)")
        .expect("guest: disk: mounted /dev/vda (16384 KiB, ro=0)")
        .expect("guest: disk: hello.txt: hello from the host")
        .expect("guest: disk: wrote from-guest.txt (1846 bytes)")
        .expect("guest: disk: unmounted")
        .expect("guest: checks passed")
        // The failed start gave its number back: the VM that ran is vm 1.
        .expect("vm 1 exited: system-off")
        .expect("ended with the VM, blk1 (pid")
        .expect_clean_poweroff();
    e2fs("e2fsck", &["-fn", &dir("vm.img")]);
    let written = String::from_utf8(e2fs("debugfs", &["-R", "cat /from-guest.txt", &dir("vm.img")])).unwrap_or_default();
    assert!(written.ends_with("line 63 written by the guest\n"), "from-guest.txt as the host reads it: {written:?}");
}

/// The switch service dies under a running VM (killed; init restarts it): the VM's network
/// device gets a new port from the monitor at its next frame, the uplink driver reconnects by
/// itself, and the guest reaches QEMU's gateway again.
#[test]
fn a_restarted_switch_service_gives_a_running_vm_and_the_uplink_new_ports() {
    let pid_of = |log: &str, name: &str| {
        log.lines().rev().find(|l| l.split_whitespace().nth(1) == Some(name)).and_then(|l| l.split_whitespace().next()).unwrap_or("none").to_string()
    };
    // Up to 20 pings a second apart until one is answered: the ports come back within that.
    // (The quotes keep the typed line, which the console echoes, from matching its output.)
    let ping = "i=0; until ping -c 1 -W 1 10.0.2.2 >/dev/null; do i=$((i+1)); [ $i -ge 20 ] && break; done; echo \"gateway after\" $i; echo \"round\"\"-done\"\n";
    let run = Boot::scenario("")
        .netdev("user,restrict=on")
        .commands(&["vm run linux --net sw0 --append keel.ip=dhcp --attach"])
        .then_next("linux:/# ", move |_| ping.to_string())
        .then_next("round-done", |_| "~.\n".to_string())
        .commands(&["ps"])
        .command_from(move |log| format!("kill {}", pid_of(log, "netsw")))
        .commands_after("init: service netsw", &["vm console 1"])
        // (The console replays what the VM printed so far: the second round says "again" and
        // "round2-done".)
        .then_next("linux:/# ", move |_| ping.replace("gateway after", "gateway again after").replace("round", "round2"))
        .then_next("round2-done", |_| "poweroff -f\n".to_string())
        .then_next("vm 1 (linux) exited", |_| "\n".to_string())
        .commands(&["net list", "poweroff"])
        .timeout(600)
        .run();
    run.expect("guest: net: eth0 02:4b:65:00:01:00 10.0.2.15/24")
        .expect("init: service netsw")
        .expect("vm 1: the switch service restarted; its network device in slot 0 has a new port")
        .expect("nic: the switch service restarted; the uplink of sw0 is port")
        .expect_absent("drops its frames until the VM is started again")
        .expect_clean_poweroff();
    let round = |prefix: &str| run.log.lines().filter_map(|l| l.strip_prefix(prefix)).find_map(|n| n.trim().parse::<u32>().ok());
    let tries = [round("gateway after "), round("gateway again after ")];
    if tries.iter().any(|t| t.is_none_or(|n| n >= 20)) {
        run.fail(&format!("the guest did not reach the gateway before and after the restart: {tries:?}"));
    }
}
