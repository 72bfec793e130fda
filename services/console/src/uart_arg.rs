//! The `uart=<base>:<size>:<intid>` startup argument: where the PL011 is and which interrupt it
//! raises. Validated once here and turned into a [`UartConfig`]; nothing else reads the raw text.
//!
//! `base` and `size` are hexadecimal (`0x` prefix optional), `intid` decimal (or `0x` hex), as the
//! kernel writes them (`uart=0x9000000:0x1000:33`).

use core::fmt;

/// Where the UART's registers are and its interrupt line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UartConfig {
    /// Physical address of the register block.
    pub base: u64,
    /// Bytes of the register block.
    pub size: u64,
    /// GIC interrupt id (SPIs start at 32).
    pub intid: u32,
}

/// Bytes of a PL011 register block we touch (up to and including ICR at 0x44).
pub const MIN_UART_SIZE: u64 = 0x48;

/// Why the argument was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UartArgError {
    /// Not three `:`-separated fields.
    Shape,
    /// A field is not a number; the field's name.
    NotANumber(&'static str),
    /// The block is smaller than the registers the console uses, or wraps around.
    BadSize,
    /// Not a shared peripheral interrupt id (32..1020).
    BadIntid(u32),
}

impl fmt::Display for UartArgError {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self {
            Self::Shape => f.write_str("expected uart=<base hex>:<size hex>:<intid>"),
            Self::NotANumber(field) => write!(f, "the {field} is not a number"),
            Self::BadSize => write!(f, "the register block must be at least {MIN_UART_SIZE:#x} bytes and not wrap"),
            Self::BadIntid(i) => write!(f, "interrupt {i} is not a shared peripheral interrupt (32..1019)"),
        }
    }
}

fn hex(text: &str, field: &'static str) -> Result<u64, UartArgError> {
    let digits = text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")).unwrap_or(text);
    if digits.is_empty() {
        return Err(UartArgError::NotANumber(field));
    }
    u64::from_str_radix(digits, 16).map_err(|_| UartArgError::NotANumber(field))
}

fn intid(text: &str) -> Result<u32, UartArgError> {
    let parsed = match text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")) {
        Some(h) => u32::from_str_radix(h, 16),
        None => text.parse::<u32>(),
    };
    let id = parsed.map_err(|_| UartArgError::NotANumber("interrupt id"))?;
    if !(32..1020).contains(&id) {
        return Err(UartArgError::BadIntid(id));
    }
    Ok(id)
}

impl UartConfig {
    /// Parses the value of the `uart=` argument (without the `uart=`).
    pub fn parse(value: &str) -> Result<Self, UartArgError> {
        let mut fields = value.trim().split(':');
        let (Some(base), Some(size), Some(id), None) = (fields.next(), fields.next(), fields.next(), fields.next()) else {
            return Err(UartArgError::Shape);
        };
        let base = hex(base, "base address")?;
        let size = hex(size, "size")?;
        if size < MIN_UART_SIZE || base.checked_add(size).is_none() {
            return Err(UartArgError::BadSize);
        }
        Ok(Self { base, size, intid: intid(id)? })
    }

    /// The page-aligned physical range to map, and the register block's offset inside it.
    pub fn mapping(&self) -> (u64, u64, u64) {
        let page = keel_rt::abi::PAGE_SIZE;
        let phys = self.base & !(page - 1);
        let offset = self.base - phys;
        let size = (offset + self.size).next_multiple_of(page);
        (phys, size, offset)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_argument_the_kernel_writes() {
        let c = UartConfig::parse("0x9000000:0x1000:33").unwrap();
        assert_eq!(c, UartConfig { base: 0x900_0000, size: 0x1000, intid: 33 });
    }

    #[test]
    fn hex_prefix_is_optional_and_intid_may_be_hex() {
        assert_eq!(UartConfig::parse("9000000:1000:0x21").unwrap(), UartConfig { base: 0x900_0000, size: 0x1000, intid: 33 });
    }

    #[test]
    fn wrong_field_count_is_a_shape_error() {
        assert_eq!(UartConfig::parse(""), Err(UartArgError::Shape));
        assert_eq!(UartConfig::parse("0x9000000:0x1000"), Err(UartArgError::Shape));
        assert_eq!(UartConfig::parse("0x9000000:0x1000:33:1"), Err(UartArgError::Shape));
    }

    #[test]
    fn non_numbers_name_the_bad_field() {
        assert_eq!(UartConfig::parse("zz:0x1000:33"), Err(UartArgError::NotANumber("base address")));
        assert_eq!(UartConfig::parse("0x9000000:0x:33"), Err(UartArgError::NotANumber("size")));
        assert_eq!(UartConfig::parse("0x9000000:0x1000:x"), Err(UartArgError::NotANumber("interrupt id")));
        assert_eq!(UartConfig::parse("0x9000000:0x1000:-1"), Err(UartArgError::NotANumber("interrupt id")));
    }

    #[test]
    fn too_small_or_wrapping_blocks_and_non_spi_interrupts_are_refused() {
        assert_eq!(UartConfig::parse("0x9000000:0x10:33"), Err(UartArgError::BadSize));
        assert_eq!(UartConfig::parse("0xffffffffffffff00:0x1000:33"), Err(UartArgError::BadSize));
        assert_eq!(UartConfig::parse("0x9000000:0x1000:27"), Err(UartArgError::BadIntid(27)));
        assert_eq!(UartConfig::parse("0x9000000:0x1000:1020"), Err(UartArgError::BadIntid(1020)));
    }

    #[test]
    fn mapping_rounds_to_whole_pages_and_keeps_the_offset() {
        assert_eq!(UartConfig::parse("0x9000000:0x1000:33").unwrap().mapping(), (0x900_0000, 0x1000, 0));
        assert_eq!(UartConfig::parse("0x9000f80:0x100:33").unwrap().mapping(), (0x900_0000, 0x2000, 0xf80));
    }

    #[test]
    fn errors_read_as_one_line_for_a_person() {
        assert_eq!(UartArgError::Shape.to_string(), "expected uart=<base hex>:<size hex>:<intid>");
        assert_eq!(UartArgError::BadIntid(27).to_string(), "interrupt 27 is not a shared peripheral interrupt (32..1019)");
    }
}
