//! A writer for flattened device trees (DTB format version 17, compatible back to 16): the
//! 40-byte header, an empty memory-reservation block, the structure block (`FDT_BEGIN_NODE`,
//! `FDT_PROP`, `FDT_END_NODE`, `FDT_END`) and a strings block in which every property name
//! appears once.
//!
//! It owns only the encoding; what the tree says is the caller's business. Mistakes in the call
//! sequence (a property outside any node or after a child node, a second root, an `end_node`
//! with nothing open, names with NULs, unbalanced nodes) are recorded as the first
//! [`FdtError`] and returned by [`FdtWriter::finish`]; later calls are then ignored. So the
//! builder methods chain, never panic, and a blob that `finish` returns is always well formed.

use alloc::collections::BTreeMap;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

const MAGIC: u32 = 0xd00d_feed;
const VERSION: u32 = 17;
const LAST_COMP_VERSION: u32 = 16;
const HEADER_LEN: usize = 40;
/// One all-zero 16-byte entry: the terminator of an empty reservation block.
const RESERVE_MAP_LEN: usize = 16;

const FDT_BEGIN_NODE: u32 = 1;
const FDT_END_NODE: u32 = 2;
const FDT_PROP: u32 = 3;
const FDT_END: u32 = 9;

/// Why a device tree could not be written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FdtError {
    /// A property was written with no node open.
    PropertyOutsideNode,
    /// A property was written after a child node of the same node (the format forbids it).
    PropertyAfterChild,
    /// `end_node` was called with no node open.
    EndWithoutBegin,
    /// A second top-level node was begun (a tree has exactly one root).
    SecondRoot,
    /// The root node's name is not empty, or another node's name is empty or holds a NUL or `/`.
    BadNodeName,
    /// A property name is empty or holds a NUL.
    BadPropertyName,
    /// A string value holds a NUL byte.
    NulInString,
    /// `finish` was called with nodes still open, or with no root node at all.
    Unbalanced,
    /// The blob would exceed the 4 GiB the 32-bit header fields can describe.
    TooLarge,
}

impl fmt::Display for FdtError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self {
            Self::PropertyOutsideNode => "property written outside any node",
            Self::PropertyAfterChild => "property written after a child node",
            Self::EndWithoutBegin => "end_node with no node open",
            Self::SecondRoot => "a second root node",
            Self::BadNodeName => {
                "bad node name (root must be \"\", others non-empty, no NUL or '/')"
            }
            Self::BadPropertyName => "bad property name (empty or holds a NUL)",
            Self::NulInString => "string property value holds a NUL byte",
            Self::Unbalanced => "nodes left open (or no root node) at finish",
            Self::TooLarge => "device tree larger than 4 GiB",
        };
        write!(f, "device tree writer: {what}")
    }
}

/// Where the writer is in the tree.
#[derive(Debug, Clone, Copy)]
struct OpenNode {
    /// Whether a child node has been begun inside this node.
    has_child: bool,
}

/// Builds a DTB; see the module documentation for how errors are reported.
#[derive(Debug, Default)]
pub struct FdtWriter {
    structure: Vec<u8>,
    strings: Vec<u8>,
    /// Offset of each name already in `strings`.
    string_offsets: BTreeMap<String, u32>,
    open: Vec<OpenNode>,
    root_done: bool,
    error: Option<FdtError>,
}

impl FdtWriter {
    /// An empty tree; the first node begun must be the root, `""`.
    pub fn new() -> Self {
        Self::default()
    }

    /// Opens node `name` (`""` for the root, else `name` or `name@unit`).
    pub fn begin_node(&mut self, name: &str) -> &mut Self {
        if self.error.is_some() {
            return self;
        }
        let is_root = self.open.is_empty();
        if is_root && self.root_done {
            return self.fail(FdtError::SecondRoot);
        }
        let name_ok = if is_root {
            name.is_empty()
        } else {
            !name.is_empty() && !name.bytes().any(|b| b == 0 || b == b'/')
        };
        if !name_ok {
            return self.fail(FdtError::BadNodeName);
        }
        if let Some(parent) = self.open.last_mut() {
            parent.has_child = true;
        }
        self.token(FDT_BEGIN_NODE);
        self.structure.extend_from_slice(name.as_bytes());
        self.structure.push(0);
        self.pad();
        self.open.push(OpenNode { has_child: false });
        self
    }

    /// Closes the innermost open node.
    pub fn end_node(&mut self) -> &mut Self {
        if self.error.is_some() {
            return self;
        }
        if self.open.pop().is_none() {
            return self.fail(FdtError::EndWithoutBegin);
        }
        if self.open.is_empty() {
            self.root_done = true;
        }
        self.token(FDT_END_NODE);
        self
    }

    /// A property with no value (a flag such as `interrupt-controller`).
    pub fn prop_empty(&mut self, name: &str) -> &mut Self {
        self.prop_bytes(name, &[])
    }

    /// A property holding one 32-bit cell.
    pub fn prop_u32(&mut self, name: &str, value: u32) -> &mut Self {
        self.prop_bytes(name, &value.to_be_bytes())
    }

    /// A property holding a 64-bit value (two cells, most significant first).
    pub fn prop_u64(&mut self, name: &str, value: u64) -> &mut Self {
        self.prop_bytes(name, &value.to_be_bytes())
    }

    /// A property holding a list of 32-bit cells.
    pub fn prop_cells(&mut self, name: &str, cells: &[u32]) -> &mut Self {
        let bytes: Vec<u8> = cells.iter().flat_map(|cell| cell.to_be_bytes()).collect();
        self.prop_bytes(name, &bytes)
    }

    /// A property holding one NUL-terminated string.
    pub fn prop_str(&mut self, name: &str, value: &str) -> &mut Self {
        self.prop_strs(name, &[value])
    }

    /// A property holding a list of strings, each NUL-terminated (`compatible`, `clock-names`).
    pub fn prop_strs(&mut self, name: &str, values: &[&str]) -> &mut Self {
        if values.iter().any(|value| value.bytes().any(|b| b == 0)) {
            return self.fail(FdtError::NulInString);
        }
        let mut bytes = Vec::new();
        for value in values {
            bytes.extend_from_slice(value.as_bytes());
            bytes.push(0);
        }
        self.prop_bytes(name, &bytes)
    }

    /// A property holding raw bytes.
    pub fn prop_bytes(&mut self, name: &str, value: &[u8]) -> &mut Self {
        if self.error.is_some() {
            return self;
        }
        let Some(node) = self.open.last() else {
            return self.fail(FdtError::PropertyOutsideNode);
        };
        if node.has_child {
            return self.fail(FdtError::PropertyAfterChild);
        }
        if name.is_empty() || name.bytes().any(|b| b == 0) {
            return self.fail(FdtError::BadPropertyName);
        }
        let (Ok(len), Some(name_offset)) = (u32::try_from(value.len()), self.string(name)) else {
            return self.fail(FdtError::TooLarge);
        };
        self.token(FDT_PROP);
        self.token(len);
        self.token(name_offset);
        self.structure.extend_from_slice(value);
        self.pad();
        self
    }

    /// The finished blob, or the first mistake made while building it.
    pub fn finish(mut self) -> Result<Vec<u8>, FdtError> {
        if let Some(error) = self.error {
            return Err(error);
        }
        if !self.open.is_empty() || !self.root_done {
            return Err(FdtError::Unbalanced);
        }
        self.token(FDT_END);

        let off_struct = HEADER_LEN + RESERVE_MAP_LEN;
        let off_strings = off_struct + self.structure.len();
        let total = off_strings + self.strings.len();
        let field = |value: usize| u32::try_from(value).map_err(|_| FdtError::TooLarge);
        let header = [
            MAGIC,
            field(total)?,
            field(off_struct)?,
            field(off_strings)?,
            field(HEADER_LEN)?,
            VERSION,
            LAST_COMP_VERSION,
            0, // boot_cpuid_phys
            field(self.strings.len())?,
            field(self.structure.len())?,
        ];

        let mut blob = Vec::with_capacity(total);
        for word in header {
            blob.extend_from_slice(&word.to_be_bytes());
        }
        blob.extend_from_slice(&[0; RESERVE_MAP_LEN]);
        blob.extend_from_slice(&self.structure);
        blob.extend_from_slice(&self.strings);
        Ok(blob)
    }

    /// Records `error` unless an earlier one is already recorded.
    fn fail(&mut self, error: FdtError) -> &mut Self {
        self.error.get_or_insert(error);
        self
    }

    fn token(&mut self, word: u32) {
        self.structure.extend_from_slice(&word.to_be_bytes());
    }

    /// Zero-pads the structure block to the next 4-byte boundary.
    fn pad(&mut self) {
        while !self.structure.len().is_multiple_of(4) {
            self.structure.push(0);
        }
    }

    /// The strings-block offset of `name`, adding it on first use.
    fn string(&mut self, name: &str) -> Option<u32> {
        if let Some(&offset) = self.string_offsets.get(name) {
            return Some(offset);
        }
        let offset = u32::try_from(self.strings.len()).ok()?;
        self.strings.extend_from_slice(name.as_bytes());
        self.strings.push(0);
        self.string_offsets.insert(String::from(name), offset);
        Some(offset)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn be32(blob: &[u8], at: usize) -> u32 {
        u32::from_be_bytes([blob[at], blob[at + 1], blob[at + 2], blob[at + 3]])
    }

    #[test]
    fn minimal_tree_has_a_consistent_header() {
        let mut w = FdtWriter::new();
        w.begin_node("").prop_u32("#address-cells", 2).end_node();
        let blob = w.finish().unwrap();
        assert_eq!(be32(&blob, 0), MAGIC);
        assert_eq!(be32(&blob, 4) as usize, blob.len());
        assert_eq!(
            be32(&blob, 16),
            40,
            "reservation block right after the header"
        );
        assert_eq!(&blob[40..56], &[0; 16], "reservation block is empty");
        assert_eq!(be32(&blob, 20), 17);
        assert_eq!(be32(&blob, 24), 16);
        let (off_struct, size_struct) = (be32(&blob, 8) as usize, be32(&blob, 36) as usize);
        let (off_strings, size_strings) = (be32(&blob, 12) as usize, be32(&blob, 32) as usize);
        assert_eq!(off_struct + size_struct, off_strings);
        assert_eq!(off_strings + size_strings, blob.len());
        assert_eq!(be32(&blob, off_struct), FDT_BEGIN_NODE);
        assert_eq!(be32(&blob, off_strings - 4), FDT_END);
        assert_eq!(&blob[off_strings..], b"#address-cells\0");
    }

    #[test]
    fn property_names_are_stored_once() {
        let mut w = FdtWriter::new();
        w.begin_node("").prop_str("compatible", "a");
        w.begin_node("x")
            .prop_str("compatible", "b")
            .prop_empty("ranges")
            .end_node();
        w.begin_node("y").prop_str("compatible", "c").end_node();
        w.end_node();
        let blob = w.finish().unwrap();
        let off_strings = be32(&blob, 12) as usize;
        assert_eq!(&blob[off_strings..], b"compatible\0ranges\0");
    }

    #[test]
    fn values_are_big_endian_and_padded() {
        let mut w = FdtWriter::new();
        w.begin_node("")
            .prop_u64("q", 0x0102_0304_0506_0708)
            .prop_cells("c", &[1, 0xf04])
            .prop_strs("s", &["ab", "c"])
            .prop_bytes("b", &[9])
            .end_node();
        let blob = w.finish().unwrap();
        let s = &blob[be32(&blob, 8) as usize..];
        // BEGIN_NODE, "" padded to 4.
        assert_eq!(be32(s, 0), FDT_BEGIN_NODE);
        // PROP q: len 8.
        assert_eq!((be32(s, 8), be32(s, 12)), (FDT_PROP, 8));
        assert_eq!(&s[20..28], &[1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!((be32(s, 28), be32(s, 32)), (FDT_PROP, 8));
        assert_eq!(&s[40..48], &[0, 0, 0, 1, 0, 0, 0x0f, 0x04]);
        assert_eq!((be32(s, 48), be32(s, 52)), (FDT_PROP, 5));
        assert_eq!(&s[60..68], b"ab\0c\0\0\0\0");
        assert_eq!((be32(s, 68), be32(s, 72)), (FDT_PROP, 1));
        assert_eq!(&s[80..84], &[9, 0, 0, 0]);
        assert_eq!(be32(s, 84), FDT_END_NODE);
    }

    /// What `finish` says after `build` ran on a fresh writer.
    fn outcome(build: impl FnOnce(&mut FdtWriter) -> &mut FdtWriter) -> Result<Vec<u8>, FdtError> {
        let mut w = FdtWriter::new();
        build(&mut w);
        w.finish()
    }

    #[test]
    fn call_sequence_mistakes_are_reported_at_finish() {
        use FdtError::*;
        assert_eq!(outcome(|w| w), Err(Unbalanced));
        assert_eq!(outcome(|w| w.begin_node("")), Err(Unbalanced));
        assert_eq!(outcome(|w| w.prop_u32("a", 1)), Err(PropertyOutsideNode));
        assert_eq!(outcome(|w| w.end_node()), Err(EndWithoutBegin));
        assert_eq!(
            outcome(|w| w.begin_node("").end_node().begin_node("")),
            Err(SecondRoot)
        );
        assert_eq!(outcome(|w| w.begin_node("root")), Err(BadNodeName));
        assert_eq!(
            outcome(|w| w.begin_node("").begin_node("a/b")),
            Err(BadNodeName)
        );
        assert_eq!(
            outcome(|w| w.begin_node("").begin_node("")),
            Err(BadNodeName)
        );
        assert_eq!(
            outcome(|w| w.begin_node("").begin_node("a").end_node().prop_u32("p", 1)),
            Err(PropertyAfterChild)
        );
        assert_eq!(
            outcome(|w| w.begin_node("").prop_str("s", "a\0b")),
            Err(NulInString)
        );
    }

    #[test]
    fn first_error_wins() {
        let mut w = FdtWriter::new();
        w.prop_u32("a", 1).end_node().begin_node("").end_node();
        assert_eq!(w.finish(), Err(FdtError::PropertyOutsideNode));
        let mut w = FdtWriter::new();
        w.begin_node("").prop_empty("").end_node();
        assert_eq!(w.finish(), Err(FdtError::BadPropertyName));
    }
}
