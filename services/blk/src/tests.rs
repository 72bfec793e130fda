//! The driver end to end against the device model in `fake`: scanning, both initialisation
//! sequences, reads and writes through the rings, request splitting, and a misbehaving device.

use crate::device::{BlkDevice, InitError, Limits, MAX_TIMEOUTS, Probe, Broken, probe, scan};
use crate::fake::{Fault, FakeBlk, FakeIrq, FakeMemory};
use crate::protocol::WriteClaim;
use crate::features::bit;
use crate::regs::{MAGIC_VALUE, TransportVersion, status};
use crate::request::dma_layout;
use crate::virtqueue::UsedError;
use alloc::rc::Rc;
use alloc::vec;
use alloc::vec::Vec;
use keel_rt::abi::ipc::{CapList, Message};
use keel_rt::errno::Errno;
use keel_rt::ipc::Request;
use keel_rt::proto::{blk, errno_label};

const BUS: u64 = 0x4123_4000;
const SECTORS: usize = 4096;
/// What QEMU's virtio-blk offers that matters here: SEG_MAX, BLK_SIZE, FLUSH (and others the
/// driver must refuse: GEOMETRY, TOPOLOGY, CONFIG_WCE, DISCARD, WRITE_ZEROES, ring features).
const QEMU_FEATURES: u64 = 1 << 2 | 1 << 4 | 1 << 6 | 1 << 9 | 1 << 10 | 1 << 11 | 1 << 13 | 1 << 14 | 1 << 28 | 1 << 29;

type Dev = BlkDevice<Rc<FakeBlk>, Rc<FakeMemory>>;

fn setup(version: u32, offered: u64) -> (Rc<FakeBlk>, Rc<FakeMemory>) {
    let mem = Rc::new(FakeMemory::new(BUS, dma_layout::TOTAL));
    (FakeBlk::new(version, SECTORS, offered, mem.clone()), mem)
}

fn device(version: u32, offered: u64) -> (Dev, Rc<FakeBlk>, FakeIrq) {
    let (fake, mem) = setup(version, offered);
    let dev = BlkDevice::init(fake.clone(), mem).expect("init");
    let irq = FakeIrq::new(&fake);
    (dev, fake, irq)
}

fn pattern(seed: u8, len: usize) -> Vec<u8> {
    (0..len).map(|i| seed.wrapping_mul(31) ^ (i as u8).wrapping_add((i >> 8) as u8)).collect()
}

#[test]
fn scanning_finds_block_devices_highest_slot_first_without_writing() {
    let slots: Vec<Rc<FakeBlk>> = (0..32)
        .map(|n| match n {
            31 => FakeBlk::slot(MAGIC_VALUE, 1, 2),
            30 => FakeBlk::slot(MAGIC_VALUE, 1, 1), // a network device
            7 => FakeBlk::slot(MAGIC_VALUE, 2, 2),
            5 => FakeBlk::slot(MAGIC_VALUE, 3, 2), // unknown transport version
            4 => FakeBlk::slot(0, 0, 0),
            _ => FakeBlk::slot(MAGIC_VALUE, 1, 0),
        })
        .collect();
    let found = scan(32, |n| slots[n as usize].clone());
    assert_eq!(found, vec![(31, TransportVersion::Legacy), (7, TransportVersion::Modern)]);
    assert!(slots.iter().all(|s| s.writes.get() == 0), "probing must not write registers");
    assert_eq!(probe(&slots[30]), Probe::Other(1));
    assert_eq!(probe(&slots[5]), Probe::UnknownVersion(3));
    assert_eq!(probe(&slots[4]), Probe::NotVirtio);
    assert_eq!(probe(&slots[0]), Probe::Empty);
    let (fake, mem) = setup(1, 0);
    fake.state.borrow_mut().device_id = 0;
    assert!(matches!(BlkDevice::init(fake, mem), Err(InitError::NotBlock(Probe::Empty))));
}

#[test]
fn a_legacy_device_is_set_up_with_guest_page_size_and_pfn() {
    let (dev, fake, _) = device(1, QEMU_FEATURES);
    let s = fake.state.borrow();
    assert_eq!(s.status, status::ACKNOWLEDGE | status::DRIVER | status::DRIVER_OK);
    assert_eq!((s.page_size, s.queue_align, s.queue_num), (4096, 4096, 128));
    assert_eq!(u64::from(s.queue_pfn) * 4096, BUS);
    assert_eq!(s.driver_features, 1 << bit::BLK_SEG_MAX | 1 << bit::BLK_BLK_SIZE | 1 << bit::BLK_FLUSH);
    let info = dev.info();
    assert_eq!((info.version, info.capacity, info.read_only, info.flush), (TransportVersion::Legacy, SECTORS as u64, false, true));
    assert_eq!(info.block_size, Some(512));
    assert_eq!(info.limits, Limits { segment_bytes: 65536, segments: 126 });
    assert_eq!(
        crate::describe("blk0", 31, info),
        "blk: blk0 = virtio-blk at slot 31 (virtio-mmio v1), 4096 sectors (2 MiB), flush"
    );
}

#[test]
fn a_modern_device_gets_features_ok_version_1_and_ring_addresses() {
    let (dev, fake, _) = device(2, QEMU_FEATURES | 1 << bit::BLK_RO);
    let s = fake.state.borrow();
    assert_eq!(s.status, status::ACKNOWLEDGE | status::DRIVER | status::FEATURES_OK | status::DRIVER_OK);
    assert_eq!(s.queue_ready, 1);
    assert_eq!((s.desc, s.driver, s.device), (BUS, BUS + 2048, BUS + 4096));
    assert_ne!(s.driver_features & 1 << bit::VERSION_1, 0);
    assert_eq!(s.driver_features & !(crate::features::WANTED | 1 << bit::VERSION_1), 0);
    assert!(dev.info().read_only);
    assert!(crate::describe("blk1", 30, dev.info()).ends_with("(virtio-mmio v2), 4096 sectors (2 MiB), flush, read-only"));
}

#[test]
fn setup_errors_leave_the_device_failed() {
    let (fake, mem) = setup(2, 0);
    fake.state.borrow_mut().refuse_features = true;
    assert_eq!(BlkDevice::init(fake.clone(), mem).err(), Some(InitError::FeaturesRefused));
    assert_ne!(fake.state.borrow().status & status::FAILED, 0);

    let (fake, mem) = setup(2, 0);
    fake.state.borrow_mut().offered = 0; // no VERSION_1
    assert!(matches!(BlkDevice::init(fake.clone(), mem), Err(InitError::Features(_))));
    assert_ne!(fake.state.borrow().status & status::FAILED, 0);

    for (max, want) in [(0, Err(InitError::NoQueue)), (3, Err(InitError::QueueTooSmall(3))), (100, Ok(64)), (1024, Ok(128))] {
        let (fake, mem) = setup(1, 0);
        fake.state.borrow_mut().queue_num_max = max;
        let got = BlkDevice::init(fake.clone(), mem).map(|d| d.info().queue_size);
        assert_eq!(got, want, "QueueNumMax {max}");
    }

    let (fake, mem) = setup(1, 1 << bit::BLK_SIZE_MAX);
    fake.state.borrow_mut().size_max = 100;
    assert_eq!(BlkDevice::init(fake, mem).err(), Some(InitError::SegmentTooSmall(100)));

    let (fake, _) = setup(1, 0);
    let small = Rc::new(FakeMemory::new(BUS, 4096));
    assert_eq!(BlkDevice::init(fake, small).err(), Some(InitError::BadDmaRegion));
}

/// Writes patterns at the start, the end and in the middle (one of them 64 KiB) and reads them
/// back, and checks the disk the device holds.
fn round_trip(version: u32) {
    let (mut dev, fake, mut irq) = device(version, QEMU_FEATURES);
    let writes = [(0u64, 1usize), (SECTORS as u64 - 1, 1), (1000, 128), (SECTORS as u64 - 128, 128), (77, 3)];
    for (i, &(sector, count)) in writes.iter().enumerate() {
        dev.write(sector, &pattern(i as u8, count * 512), &mut irq).unwrap();
    }
    dev.flush(&mut irq).unwrap();
    for (i, &(sector, count)) in writes.iter().enumerate().rev() {
        let mut back = vec![0u8; count * 512];
        dev.read(sector, &mut back, &mut irq).unwrap();
        // Later writes overlap earlier ones only where the test says so: (SECTORS-128..) covers
        // the last sector, written before it.
        if i != 1 {
            assert_eq!(back, pattern(i as u8, count * 512), "sector {sector} count {count}");
        }
        let s = fake.state.borrow();
        if i != 1 {
            assert_eq!(&s.disk[sector as usize * 512..][..count * 512], &back[..]);
        }
    }
    let s = fake.state.borrow();
    assert_eq!(s.served.iter().filter(|r| r.0 == 4).count(), 1, "one FLUSH request");
    assert!(s.served.iter().all(|r| r.3 <= 1), "a contiguous buffer is one data descriptor: {:?}", s.served);
    assert_eq!(irq.timeouts, 0);
}

#[test]
fn legacy_reads_and_writes_reach_the_disk() {
    round_trip(1);
}

#[test]
fn modern_reads_and_writes_reach_the_disk() {
    round_trip(2);
}

#[test]
fn many_requests_wrap_the_ring_indices() {
    let (mut dev, fake, mut irq) = device(1, 0);
    let mut buf = vec![0u8; 512];
    for n in 0..70_000u64 {
        dev.read(n % SECTORS as u64, &mut buf, &mut irq).unwrap();
    }
    assert_eq!(&buf[..], &fake.state.borrow().disk[(69_999 % SECTORS) * 512..][..512]);
}

#[test]
fn size_and_segment_limits_split_requests() {
    let (fake, mem) = setup(2, 1 << bit::BLK_SIZE_MAX | 1 << bit::BLK_SEG_MAX);
    {
        let mut s = fake.state.borrow_mut();
        s.size_max = 4096 + 100; // rounded down to whole sectors
        s.seg_max = 4;
    }
    let mut dev = BlkDevice::init(fake.clone(), mem).unwrap();
    let mut irq = FakeIrq::new(&fake);
    assert_eq!(dev.info().limits, Limits { segment_bytes: 4096, segments: 4 });
    let data = pattern(9, 65536);
    dev.write(10, &data, &mut irq).unwrap();
    let mut back = vec![0u8; 65536];
    dev.read(10, &mut back, &mut irq).unwrap();
    assert_eq!(back, data);
    let s = fake.state.borrow();
    let sectors: Vec<u64> = s.served.iter().map(|r| r.1).collect();
    assert_eq!(sectors, [10, 42, 74, 106, 10, 42, 74, 106]);
    assert!(s.served.iter().all(|r| r.2 == 16384 && r.3 == 4), "{:?}", s.served);
}

#[test]
fn bad_arguments_and_read_only_disks_never_reach_the_device() {
    let (mut dev, fake, mut irq) = device(1, 1 << bit::BLK_RO);
    let mut buf = vec![0u8; 1024];
    assert_eq!(dev.write(0, &buf, &mut irq), Err(Errno::RoFs));
    assert_eq!(dev.read(SECTORS as u64 - 1, &mut buf, &mut irq), Err(Errno::Inval));
    assert_eq!(dev.read(u64::MAX, &mut buf, &mut irq), Err(Errno::Inval));
    assert_eq!(dev.read(0, &mut buf[..100], &mut irq), Err(Errno::Inval));
    assert_eq!(dev.read(0, &mut [], &mut irq), Err(Errno::Inval));
    // No FLUSH feature: the device writes through, so FLUSH succeeds at once.
    assert_eq!(dev.flush(&mut irq), Ok(()));
    assert_eq!(fake.state.borrow().notifies, 0);
}

#[test]
fn device_error_status_is_eio_and_the_device_stays_usable() {
    let (mut dev, fake, mut irq) = device(2, 1 << bit::BLK_FLUSH);
    let mut buf = vec![0u8; 512];
    for fault in [Fault::Status(1), Fault::Status(2), Fault::Status(7), Fault::NoStatus, Fault::ShortLen] {
        fake.set_fault(fault);
        assert_eq!(dev.read(5, &mut buf, &mut irq), Err(Errno::Io), "{fault:?}");
        assert_eq!(dev.broken(), None);
    }
    fake.set_fault(Fault::Status(2));
    assert_eq!(dev.flush(&mut irq), Err(Errno::Io));
    fake.set_fault(Fault::None);
    dev.read(5, &mut buf, &mut irq).unwrap();
    assert_eq!(&buf[..], &fake.state.borrow().disk[5 * 512..6 * 512]);
}

#[test]
fn a_device_breaking_the_ring_protocol_is_given_up() {
    let cases = [
        (Fault::BadUsedId, Broken::Used(UsedError::NotInFlight { id: 1 })),
        (Fault::LongLen, Broken::Used(UsedError::LengthTooLong { id: 0, len: 1513, writable: 513 })),
        (Fault::IndexJump, Broken::Used(UsedError::IndexJump { from: 0, to: 3, in_flight: 1 })),
        (Fault::NeedsReset, Broken::NeedsReset),
        (Fault::NoCompletion, Broken::NoCompletion),
    ];
    for (fault, why) in cases {
        let (mut dev, fake, mut irq) = device(1, 1 << bit::BLK_FLUSH);
        let mut buf = vec![0u8; 512];
        fake.set_fault(fault);
        assert_eq!(dev.read(0, &mut buf, &mut irq), Err(Errno::Io), "{fault:?}");
        assert_eq!(dev.broken(), Some(why), "{fault:?}");
        if fault == Fault::NoCompletion {
            assert_eq!(irq.timeouts, MAX_TIMEOUTS);
        }
        // Later requests fail without touching the device.
        fake.set_fault(Fault::None);
        let notifies = fake.state.borrow().notifies;
        assert_eq!(dev.read(0, &mut buf, &mut irq), Err(Errno::Io));
        assert_eq!(dev.write(0, &buf, &mut irq), Err(Errno::Io));
        assert_eq!(dev.flush(&mut irq), Err(Errno::Io));
        assert_eq!(fake.state.borrow().notifies, notifies);
    }
}

#[test]
fn interrupts_are_acknowledged_at_the_device_and_rearmed() {
    let (mut dev, fake, mut irq) = device(1, 0);
    let mut buf = vec![0u8; 512];
    // A device that completes at notify: the used ring is checked before waiting, so no wait.
    dev.read(0, &mut buf, &mut irq).unwrap();
    assert_eq!((irq.waits, irq.rearms), (0, 0));
    // A slow device: one wait, then the status is acknowledged at the device and the line rearmed.
    fake.set_fault(Fault::Deferred);
    dev.read(1, &mut buf, &mut irq).unwrap();
    assert_eq!((irq.waits, irq.rearms, irq.timeouts), (1, 1, 0));
    assert_eq!(fake.state.borrow().interrupt_status, 0);
    assert_eq!(&buf[..], &fake.state.borrow().disk[512..1024]);
}

/// One IPC call through the protocol handler, with a 64 KiB bulk buffer holding `payload`,
/// from the watched client 7 on a disk nobody else writes.
fn call(dev: &mut Dev, irq: &mut FakeIrq, label: u64, data: [u64; 4], payload: &[u8]) -> (u64, [u64; 4], Vec<u8>) {
    call_as(dev, irq, &mut WriteClaim::default(), 7, label, data, payload)
}

/// One IPC call from client `badge` (watched) through the protocol handler with `claim`.
fn call_as(
    dev: &mut Dev,
    irq: &mut FakeIrq,
    claim: &mut WriteClaim,
    badge: u64,
    label: u64,
    data: [u64; 4],
    payload: &[u8],
) -> (u64, [u64; 4], Vec<u8>) {
    let mut bulk = vec![0u8; keel_rt::ipc::BULK_SIZE as usize];
    bulk[..payload.len()].copy_from_slice(payload);
    let mut req = Request { badge, msg: Message::new(label, data), caps: CapList::EMPTY, bulk: Some(&mut bulk[..]), watched: true };
    let reply = crate::protocol::handle(dev, irq, claim, &mut req);
    let n = reply.msg.data[3] as usize;
    (reply.msg.label, reply.msg.data, bulk[..n.min(bulk.len())].to_vec())
}

#[test]
fn a_disk_open_for_writing_refuses_every_other_writer_until_the_writer_goes() {
    let (mut dev, fake, mut irq) = device(1, QEMU_FEATURES);
    let mut claim = WriteClaim::default();
    let (fs, other) = (100, 200);
    let ebusy = errno_label(Errno::Busy);
    // fs mounts: it opens the disk for writing and writes.
    assert_eq!(call_as(&mut dev, &mut irq, &mut claim, fs, blk::OPEN_WRITE, [0; 4], &[]).0, 0);
    assert_eq!(call_as(&mut dev, &mut irq, &mut claim, fs, blk::WRITE, [10, 0, 0, 512], &[0x11; 512]).0, 0);
    // Another client may read, not write or open for writing; the disk keeps fs's data.
    assert_eq!(call_as(&mut dev, &mut irq, &mut claim, other, blk::OPEN_WRITE, [0; 4], &[]).0, ebusy);
    assert_eq!(call_as(&mut dev, &mut irq, &mut claim, other, blk::WRITE, [10, 0, 0, 512], &[0x22; 512]).0, ebusy);
    assert_eq!(call_as(&mut dev, &mut irq, &mut claim, other, blk::RELEASE, [0; 4], &[]).0, 0);
    let (label, _, back) = call_as(&mut dev, &mut irq, &mut claim, other, blk::READ, [10, 1, 0, 0], &[]);
    assert_eq!((label, back), (0, vec![0x11; 512]));
    assert_eq!(&fake.state.borrow().disk[10 * 512..11 * 512], &[0x11; 512][..]);
    // fs's process exits: serve() hands the handler LABEL_CLIENT_GONE, the disk is free again.
    let mut gone = Request {
        badge: fs,
        msg: Message::new(keel_rt::ipc::LABEL_CLIENT_GONE, [0; 4]),
        caps: CapList::EMPTY,
        bulk: None,
        watched: false,
    };
    assert_eq!(crate::protocol::handle(&mut dev, &mut irq, &mut claim, &mut gone).msg.label, 0);
    assert_eq!(claim.writer(), None);
    // A WRITE while nobody holds the disk opens it for that client.
    assert_eq!(call_as(&mut dev, &mut irq, &mut claim, other, blk::WRITE, [10, 0, 0, 512], &[0x22; 512]).0, 0);
    assert_eq!(claim.writer(), Some(other));
    assert_eq!(call_as(&mut dev, &mut irq, &mut claim, fs, blk::WRITE, [10, 0, 0, 512], &[0x33; 512]).0, ebusy);
    // RELEASE ends the claim too.
    assert_eq!(call_as(&mut dev, &mut irq, &mut claim, other, blk::RELEASE, [0; 4], &[]).0, 0);
    assert_eq!(call_as(&mut dev, &mut irq, &mut claim, fs, blk::OPEN_WRITE, [0; 4], &[]).0, 0);
    assert_eq!(&fake.state.borrow().disk[10 * 512..11 * 512], &[0x22; 512][..]);
    // A client blk cannot watch (no bulk buffer set up with its process) may not hold it.
    let mut claim = WriteClaim::default();
    let mut unwatched =
        Request { badge: 5, msg: Message::new(blk::OPEN_WRITE, [0; 4]), caps: CapList::EMPTY, bulk: None, watched: false };
    let label = crate::protocol::handle(&mut dev, &mut irq, &mut claim, &mut unwatched).msg.label;
    assert_eq!(label, errno_label(Errno::Perm));
    // A read-only disk cannot be opened for writing.
    let (mut ro, _, mut irq) = device(2, 1 << bit::BLK_RO);
    assert_eq!(call(&mut ro, &mut irq, blk::OPEN_WRITE, [0; 4], &[]).0, errno_label(Errno::RoFs));
}

#[test]
fn the_ipc_protocol_serves_info_read_write_and_flush() {
    let (mut dev, fake, mut irq) = device(1, QEMU_FEATURES);
    let (label, data, _) = call(&mut dev, &mut irq, blk::INFO, [0; 4], &[]);
    assert_eq!((label, data), (0, [SECTORS as u64, 0, blk::MAX_SECTORS, 0]));
    let data64k = pattern(3, 65536);
    let (label, _, _) = call(&mut dev, &mut irq, blk::WRITE, [100, 0, 0, 65536], &data64k);
    assert_eq!(label, 0);
    let (label, _, _) = call(&mut dev, &mut irq, blk::FLUSH, [0; 4], &[]);
    assert_eq!(label, 0);
    let (label, data, back) = call(&mut dev, &mut irq, blk::READ, [100, 128, 0, 0], &[]);
    assert_eq!((label, data[3]), (0, 65536));
    assert_eq!(back, data64k);
    assert_eq!(&fake.state.borrow().disk[100 * 512..][..65536], &data64k[..]);

    let einval = errno_label(Errno::Inval);
    for (label, data) in [
        (blk::READ, [SECTORS as u64, 1, 0, 0]),
        (blk::READ, [0, 0, 0, 0]),
        (blk::READ, [0, 129, 0, 0]),
        (blk::WRITE, [0, 0, 0, 700]),
        (blk::WRITE, [SECTORS as u64 - 1, 0, 0, 1024]),
    ] {
        assert_eq!(call(&mut dev, &mut irq, label, data, &[0; 1024]).0, einval, "{label} {data:?}");
    }
    let mut req =
        Request { badge: 7, msg: Message::new(blk::READ, [0, 1, 0, 0]), caps: CapList::EMPTY, bulk: None, watched: true };
    assert_eq!(crate::protocol::handle(&mut dev, &mut irq, &mut WriteClaim::default(), &mut req).msg.label, einval, "READ without a bulk buffer");
    assert_eq!(call(&mut dev, &mut irq, 42, [0; 4], &[]).0, errno_label(Errno::NoSys));

    fake.set_fault(Fault::Status(1));
    assert_eq!(call(&mut dev, &mut irq, blk::READ, [0, 1, 0, 0], &[]).0, errno_label(Errno::Io));

    let (mut ro, _, mut irq) = device(2, 1 << bit::BLK_RO);
    assert_eq!(call(&mut ro, &mut irq, blk::INFO, [0; 4], &[]).1[1], blk::READ_ONLY);
    assert_eq!(call(&mut ro, &mut irq, blk::WRITE, [0, 0, 0, 512], &[0; 512]).0, errno_label(Errno::RoFs));
}

#[test]
fn sizes_read_naturally() {
    assert_eq!(crate::human_size(64 << 20), "64 MiB");
    assert_eq!(crate::human_size(8 << 30), "8 GiB");
    assert_eq!(crate::human_size(1536), "1 KiB");
}
