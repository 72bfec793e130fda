//! Guest kernel loading: the arm64 Linux `Image` header, and the plan of where the kernel, the
//! initrd and the DTB go in guest RAM before the first instruction runs.
//!
//! It owns only arithmetic on untrusted header fields and sizes; it copies nothing and touches
//! no memory. Every value from the file goes through checked arithmetic, and every failure is a
//! [`VmmError`]: a planned [`Layout`] always has its parts inside RAM and disjoint.
//!
//! The placement (Documentation/arch/arm64/booting.rst):
//! - A Linux `Image` loads `text_offset` bytes above the 2 MiB-aligned start of RAM (as low as
//!   possible, which the protocol asks for when flags bit 3 is clear and allows otherwise). An
//!   `image_size` of 0 marks a pre-3.17 kernel: `text_offset` is then 0x80000 and the footprint
//!   is the file length. The kernel owns `load .. load + max(image_size, file length)` (its BSS
//!   included); the entry point is the load address.
//! - A raw binary loads at the caller's address, which must be 64 KiB aligned and leave the whole
//!   file inside RAM; the entry point is the load address.
//! - The DTB gets the last whole 2 MiB block of RAM ([`DTB_MAX_SIZE`], the protocol's limit): it
//!   is 8-byte aligned, shares no 2 MiB block with anything else, and its address does not
//!   depend on its length, so the DTB (which must name the initrd) can be written after planning.
//!   Kernels since 4.2 accept a DTB anywhere in RAM; the old "first 512 MiB" rule is not kept.
//! - The initrd sits immediately below the DTB slot, its start aligned down to 4 KiB, and must
//!   end above the kernel's footprint. RAM is at most 4 GiB, so kernel and initrd always share
//!   the 1 GiB-aligned 32 GiB window the protocol requires.

use crate::error::VmmError;
use crate::layout::{GuestRange, PAGE_SIZE};

/// Length of the arm64 `Image` header.
pub const IMAGE_HEADER_LEN: usize = 64;
/// `ARM\x64`, little endian, at offset 0x38 of the header.
pub const IMAGE_MAGIC: u32 = 0x644d_5241;
/// `text_offset` of kernels whose header has `image_size == 0`.
pub const LEGACY_TEXT_OFFSET: u64 = 0x8_0000;
/// Alignment of the base a Linux `Image` is loaded `text_offset` above.
pub const IMAGE_BASE_ALIGN: u64 = 2 << 20;
/// Alignment a raw binary's load address must have.
pub const RAW_LOAD_ALIGN: u64 = 64 << 10;
/// Size (and alignment) of the DTB slot; the largest DTB the boot protocol allows.
pub const DTB_MAX_SIZE: u64 = 2 << 20;

/// Header flags bit 0: the kernel is big endian.
const FLAG_BIG_ENDIAN: u64 = 1;

/// What kind of kernel file the guest boots.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KernelFormat {
    /// An arm64 Linux `Image` (with the 64-byte header).
    LinuxImage,
    /// A raw binary, loaded at `load` and entered there.
    Raw {
        /// Guest physical load (and entry) address.
        load: u64,
    },
}

/// The fields of an arm64 `Image` header the loader uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImageHeader {
    /// Offset from a 2 MiB-aligned base at which the image must be loaded (0x80000 when the
    /// header's `image_size` is 0, whatever the field says).
    pub text_offset: u64,
    /// Bytes the kernel occupies from its load address, BSS included (0: unknown).
    pub image_size: u64,
    /// Header flags (bit 0 endianness, bits 1-2 page size, bit 3 placement).
    pub flags: u64,
}

impl ImageHeader {
    /// Decodes the header at the start of `kernel`.
    pub fn parse(kernel: &[u8]) -> Result<ImageHeader, VmmError> {
        let Some(header) = kernel.get(..IMAGE_HEADER_LEN) else {
            return Err(VmmError::ImageTruncated { len: kernel.len() });
        };
        let magic = le32(header, 0x38);
        if magic != IMAGE_MAGIC {
            return Err(VmmError::ImageBadMagic { found: magic });
        }
        let (text_offset, image_size, flags) =
            (le64(header, 8), le64(header, 16), le64(header, 24));
        if flags & FLAG_BIG_ENDIAN != 0 {
            return Err(VmmError::ImageBigEndian);
        }
        Ok(ImageHeader {
            text_offset: if image_size == 0 {
                LEGACY_TEXT_OFFSET
            } else {
                text_offset
            },
            image_size,
            flags,
        })
    }
}

/// Where everything goes in guest RAM.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    /// Where the kernel file's bytes are copied (`len` = file length).
    pub kernel: GuestRange,
    /// What the kernel owns from its load address (its BSS included); nothing else is placed
    /// here. The VMM need not zero it: guest RAM starts zeroed.
    pub kernel_footprint: GuestRange,
    /// The first instruction (the load address).
    pub entry: u64,
    /// The DTB slot (`len` = [`DTB_MAX_SIZE`]); the DTB is copied to its start and x0 holds
    /// that address at entry.
    pub dtb: GuestRange,
    /// Where the initrd's bytes are copied, if there is one.
    pub initrd: Option<GuestRange>,
}

impl Layout {
    /// The DTB's address once it is known to be `len` bytes long, or why it does not fit.
    pub fn dtb_address(&self, len: usize) -> Result<u64, VmmError> {
        match u64::try_from(len) {
            Ok(bytes) if bytes <= self.dtb.len => Ok(self.dtb.start),
            _ => Err(VmmError::DtbTooLarge { len }),
        }
    }
}

/// Plans guest RAM `ram` for `kernel` (the whole file) in `format` and an initrd of
/// `initrd_len` bytes (0: none). See the module documentation for the placement rules.
pub fn plan(
    kernel: &[u8],
    format: KernelFormat,
    initrd_len: u64,
    ram: GuestRange,
) -> Result<Layout, VmmError> {
    let ram_end = ram.end().ok_or(VmmError::GuestRamSize { bytes: ram.len })?;
    if kernel.is_empty() {
        return Err(VmmError::ImageEmpty);
    }
    let file_len = kernel.len() as u64;
    let too_large = |size: u64| VmmError::ImageTooLarge { size, ram: ram.len };

    let (load, footprint_len) = match format {
        KernelFormat::LinuxImage => {
            let header = ImageHeader::parse(kernel)?;
            let base = align_up(ram.start, IMAGE_BASE_ALIGN).ok_or(too_large(file_len))?;
            let footprint = header.image_size.max(file_len);
            let load = base
                .checked_add(header.text_offset)
                .ok_or(too_large(footprint))?;
            (load, footprint)
        }
        KernelFormat::Raw { load } => {
            if !load.is_multiple_of(RAW_LOAD_ALIGN) {
                return Err(VmmError::RawLoadMisaligned { addr: load });
            }
            if load < ram.start || load >= ram_end {
                return Err(VmmError::LoadOutsideRam { addr: load });
            }
            (load, file_len)
        }
    };
    let kernel_footprint = GuestRange {
        start: load,
        len: footprint_len,
    };
    if !kernel_footprint.is_inside(&ram) {
        let needed = load.saturating_sub(ram.start).saturating_add(footprint_len);
        return Err(too_large(needed));
    }

    let dtb_start = align_down(ram_end, DTB_MAX_SIZE)
        .checked_sub(DTB_MAX_SIZE)
        .filter(|&start| start >= ram.start)
        .ok_or(VmmError::RamTooSmall { ram: ram.len })?;
    let dtb = GuestRange {
        start: dtb_start,
        len: DTB_MAX_SIZE,
    };
    if kernel_footprint.overlaps(&dtb) {
        return Err(VmmError::Overlap {
            first: "kernel image",
            second: "device tree",
        });
    }

    let initrd = match initrd_len {
        0 => None,
        len => {
            let overlap = VmmError::Overlap {
                first: "kernel image",
                second: "initrd",
            };
            let start = dtb_start
                .checked_sub(len)
                .map(|start| align_down(start, PAGE_SIZE))
                .filter(|&start| start >= ram.start)
                .ok_or(overlap.clone())?;
            let initrd = GuestRange { start, len };
            if initrd.overlaps(&kernel_footprint) {
                return Err(overlap);
            }
            Some(initrd)
        }
    };

    Ok(Layout {
        kernel: GuestRange {
            start: load,
            len: file_len,
        },
        kernel_footprint,
        entry: load,
        dtb,
        initrd,
    })
}

fn align_down(value: u64, align: u64) -> u64 {
    value & !(align - 1)
}

fn align_up(value: u64, align: u64) -> Option<u64> {
    Some(value.checked_add(align - 1)? & !(align - 1))
}

fn le32(bytes: &[u8], at: usize) -> u32 {
    let mut word = [0; 4];
    if let Some(src) = bytes.get(at..at + 4) {
        word.copy_from_slice(src);
    }
    u32::from_le_bytes(word)
}

fn le64(bytes: &[u8], at: usize) -> u64 {
    let mut word = [0; 8];
    if let Some(src) = bytes.get(at..at + 8) {
        word.copy_from_slice(src);
    }
    u64::from_le_bytes(word)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layout::{self, RAM_BASE};
    use alloc::vec;
    use alloc::vec::Vec;

    const MIB: u64 = 1 << 20;

    /// A Linux `Image` of `file_len` bytes with the given header fields.
    fn image(file_len: usize, text_offset: u64, image_size: u64, flags: u64) -> Vec<u8> {
        let mut bytes = vec![0u8; file_len.max(IMAGE_HEADER_LEN)];
        bytes[8..16].copy_from_slice(&text_offset.to_le_bytes());
        bytes[16..24].copy_from_slice(&image_size.to_le_bytes());
        bytes[24..32].copy_from_slice(&flags.to_le_bytes());
        bytes[0x38..0x3C].copy_from_slice(&IMAGE_MAGIC.to_le_bytes());
        bytes
    }

    #[test]
    fn parses_a_modern_header() {
        let header = ImageHeader::parse(&image(4096, 0, 0x1234_5000, 0xA)).unwrap();
        assert_eq!(
            header,
            ImageHeader {
                text_offset: 0,
                image_size: 0x1234_5000,
                flags: 0xA
            }
        );
    }

    #[test]
    fn zero_image_size_means_legacy_text_offset() {
        let header = ImageHeader::parse(&image(4096, 0x1234, 0, 0)).unwrap();
        assert_eq!(header.text_offset, LEGACY_TEXT_OFFSET);
    }

    #[test]
    fn rejects_truncated_bad_magic_and_big_endian_headers() {
        let good = image(64, 0, 0x10_0000, 0);
        for len in [0, 1, 32, 63] {
            assert_eq!(
                ImageHeader::parse(&good[..len]),
                Err(VmmError::ImageTruncated { len })
            );
        }
        let mut bad = good.clone();
        bad[0x38] = b'X';
        assert!(matches!(
            ImageHeader::parse(&bad),
            Err(VmmError::ImageBadMagic { .. })
        ));
        let be = image(64, 0, 0x10_0000, 1);
        assert_eq!(ImageHeader::parse(&be), Err(VmmError::ImageBigEndian));
    }

    #[test]
    fn plans_a_linux_image_with_an_initrd() {
        let kernel = image(30 * MIB as usize, 0, 40 * MIB, 0xA);
        let ram = layout::ram(256 * MIB);
        let plan = plan(&kernel, KernelFormat::LinuxImage, 10 * MIB + 123, ram).unwrap();
        assert_eq!(plan.entry, RAM_BASE);
        assert_eq!(
            plan.kernel,
            GuestRange {
                start: RAM_BASE,
                len: 30 * MIB
            }
        );
        assert_eq!(plan.kernel_footprint.len, 40 * MIB);
        assert_eq!(
            plan.dtb,
            GuestRange {
                start: RAM_BASE + 254 * MIB,
                len: DTB_MAX_SIZE
            }
        );
        let initrd = plan.initrd.unwrap();
        assert_eq!(initrd.len, 10 * MIB + 123);
        assert!(initrd.start.is_multiple_of(PAGE_SIZE));
        assert!(initrd.end().unwrap() <= plan.dtb.start);
        assert!(plan.dtb.start - initrd.end().unwrap() < PAGE_SIZE);
        assert_eq!(plan.dtb_address(4096), Ok(plan.dtb.start));
        assert_eq!(
            plan.dtb_address(DTB_MAX_SIZE as usize + 1),
            Err(VmmError::DtbTooLarge {
                len: DTB_MAX_SIZE as usize + 1
            })
        );
    }

    #[test]
    fn legacy_image_loads_at_0x80000() {
        let kernel = image(MIB as usize, 0, 0, 0);
        let plan = plan(&kernel, KernelFormat::LinuxImage, 0, layout::ram(64 * MIB)).unwrap();
        assert_eq!(plan.entry, RAM_BASE + LEGACY_TEXT_OFFSET);
        assert_eq!(plan.kernel_footprint.len, MIB);
        assert_eq!(plan.initrd, None);
    }

    #[test]
    fn linux_base_is_rounded_up_to_2_mib() {
        let kernel = image(4096, 0x8_0000, MIB, 0);
        let ram = GuestRange {
            start: RAM_BASE + 0x1000,
            len: 64 * MIB,
        };
        let plan = plan(&kernel, KernelFormat::LinuxImage, 0, ram).unwrap();
        assert_eq!(plan.entry, RAM_BASE + 2 * MIB + 0x8_0000);
    }

    #[test]
    fn rejects_images_larger_than_ram() {
        let ram = layout::ram(64 * MIB);
        let kernel = image(4096, 0, 65 * MIB, 0);
        assert!(matches!(
            plan(&kernel, KernelFormat::LinuxImage, 0, ram),
            Err(VmmError::ImageTooLarge { .. })
        ));
        let kernel = image(4096, u64::MAX - 10, MIB, 0);
        assert!(matches!(
            plan(&kernel, KernelFormat::LinuxImage, 0, ram),
            Err(VmmError::ImageTooLarge { .. })
        ));
        let kernel = image(4096, 0, u64::MAX, 0);
        assert!(matches!(
            plan(&kernel, KernelFormat::LinuxImage, 0, ram),
            Err(VmmError::ImageTooLarge { .. })
        ));
    }

    #[test]
    fn rejects_kernel_reaching_the_dtb_slot_and_initrd_over_kernel() {
        let ram = layout::ram(64 * MIB);
        let kernel = image(4096, 0, 63 * MIB, 0);
        assert_eq!(
            plan(&kernel, KernelFormat::LinuxImage, 0, ram),
            Err(VmmError::Overlap {
                first: "kernel image",
                second: "device tree"
            })
        );
        let kernel = image(4096, 0, 60 * MIB, 0);
        assert!(plan(&kernel, KernelFormat::LinuxImage, 2 * MIB, ram).is_ok());
        assert_eq!(
            plan(&kernel, KernelFormat::LinuxImage, 2 * MIB + 1, ram),
            Err(VmmError::Overlap {
                first: "kernel image",
                second: "initrd"
            })
        );
        assert_eq!(
            plan(&kernel, KernelFormat::LinuxImage, u64::MAX, ram),
            Err(VmmError::Overlap {
                first: "kernel image",
                second: "initrd"
            })
        );
    }

    #[test]
    fn rejects_ram_without_room_for_the_dtb() {
        let kernel = image(4096, 0, 4096, 0);
        let ram = GuestRange {
            start: RAM_BASE,
            len: MIB,
        };
        assert_eq!(
            plan(&kernel, KernelFormat::LinuxImage, 0, ram),
            Err(VmmError::RamTooSmall { ram: MIB })
        );
        let ram = GuestRange {
            start: u64::MAX - 4096,
            len: 8192,
        };
        assert_eq!(
            plan(&kernel, KernelFormat::LinuxImage, 0, ram),
            Err(VmmError::GuestRamSize { bytes: 8192 })
        );
    }

    #[test]
    fn plans_raw_binaries() {
        let ram = layout::ram(64 * MIB);
        let kernel = vec![0xAA; 100];
        let load = RAM_BASE + 0x1_0000;
        let planned = plan(&kernel, KernelFormat::Raw { load }, 0, ram).unwrap();
        assert_eq!(
            (planned.entry, planned.kernel),
            (
                load,
                GuestRange {
                    start: load,
                    len: 100
                }
            )
        );
        for (load, expected) in [
            (
                RAM_BASE + 0x1000,
                VmmError::RawLoadMisaligned {
                    addr: RAM_BASE + 0x1000,
                },
            ),
            (0, VmmError::LoadOutsideRam { addr: 0 }),
            (
                RAM_BASE + 64 * MIB,
                VmmError::LoadOutsideRam {
                    addr: RAM_BASE + 64 * MIB,
                },
            ),
        ] {
            assert_eq!(plan_err(&kernel, load, ram), expected);
        }
        assert!(matches!(
            plan_err(&kernel, RAM_BASE + 64 * MIB - 0x1_0000, ram),
            VmmError::Overlap {
                first: "kernel image",
                second: "device tree"
            }
        ));
        let big = vec![0; 0x2_0000];
        assert!(matches!(
            plan_err(&big, RAM_BASE + 64 * MIB - 0x1_0000, ram),
            VmmError::ImageTooLarge { .. }
        ));
        let high = plan(
            &kernel,
            KernelFormat::Raw {
                load: RAM_BASE + 61 * MIB,
            },
            MIB,
            ram,
        );
        assert_eq!(
            high,
            Err(VmmError::Overlap {
                first: "kernel image",
                second: "initrd"
            })
        );
        assert_eq!(
            plan(&[], KernelFormat::Raw { load: RAM_BASE }, 0, ram),
            Err(VmmError::ImageEmpty)
        );
    }

    fn plan_err(kernel: &[u8], load: u64, ram: GuestRange) -> VmmError {
        plan(kernel, KernelFormat::Raw { load }, 0, ram).unwrap_err()
    }

    /// xorshift64: deterministic pseudo-random numbers for the fuzz loop.
    fn xorshift(state: &mut u64) -> u64 {
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
        *state
    }

    #[test]
    fn random_inputs_never_panic_and_plans_are_sound() {
        let mut state = 0x2545_F491_4F6C_DD1D;
        for _ in 0..20_000 {
            let r = xorshift(&mut state);
            let len = (r % 200) as usize;
            let mut kernel: Vec<u8> = (0..len).map(|_| xorshift(&mut state) as u8).collect();
            if r & 1 == 0 && len >= IMAGE_HEADER_LEN {
                kernel[0x38..0x3C].copy_from_slice(&IMAGE_MAGIC.to_le_bytes());
                // Keep sizes plausible half the time so plans succeed too.
                if r & 2 == 0 {
                    let size = xorshift(&mut state) % (128 * MIB);
                    kernel[16..24].copy_from_slice(&size.to_le_bytes());
                    let offset = xorshift(&mut state) % (4 * MIB);
                    kernel[8..16].copy_from_slice(&offset.to_le_bytes());
                }
            }
            let ram = GuestRange {
                start: [RAM_BASE, xorshift(&mut state)][(r >> 8) as usize % 2],
                len: [64 * MIB, 256 * MIB, xorshift(&mut state)][(r >> 9) as usize % 3],
            };
            let format = match (r >> 12) % 3 {
                0 => KernelFormat::LinuxImage,
                1 => KernelFormat::Raw {
                    load: xorshift(&mut state),
                },
                _ => KernelFormat::Raw {
                    load: ram.start.wrapping_add((r >> 20) % ram.len.max(1)) & !0xFFFF,
                },
            };
            let initrd_len = [0, xorshift(&mut state) % (64 * MIB), xorshift(&mut state)]
                [(r >> 14) as usize % 3];
            let _ = ImageHeader::parse(&kernel);
            if let Ok(plan) = plan(&kernel, format, initrd_len, ram) {
                assert!(plan.kernel_footprint.is_inside(&ram));
                assert!(plan.kernel.is_inside(&plan.kernel_footprint));
                assert!(plan.dtb.is_inside(&ram));
                assert!(!plan.dtb.overlaps(&plan.kernel_footprint));
                if let Some(initrd) = plan.initrd {
                    assert!(initrd.is_inside(&ram));
                    assert!(!initrd.overlaps(&plan.kernel_footprint));
                    assert!(!initrd.overlaps(&plan.dtb));
                }
                assert_eq!(plan.entry, plan.kernel.start);
                assert!(plan.dtb.start.is_multiple_of(8));
            }
        }
    }
}
