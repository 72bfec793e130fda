//! The VM list the monitor asks init to keep for its next start (procmgr STATE_SAVE/LOAD), so a
//! restarted monitor still knows every VM: its id, name, size, how it ended and the `vm run`
//! words that started it (`vm start <id>` boots it again).
//!
//! Layout, little-endian: `KVMS`, version (u32), next id (u32), count (u32), then per VM: id
//! (u32), vcpus (u32), mem bytes (u64), name, state, word count (u32), words; each string is a
//! u32 length and its UTF-8 bytes. The decoder checks every length against what is left, so a
//! short or corrupt record is an error, never a panic or a huge allocation.

use alloc::string::String;
use alloc::vec::Vec;

const MAGIC: &[u8; 4] = b"KVMS";
const VERSION: u32 = 1;
/// Most VMs a saved list holds (more than the monitor could run at once).
pub const MAX_VMS: u32 = 1024;
/// Most words of one saved `vm run` command.
const MAX_WORDS: u32 = 64;

/// One VM as saved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SavedVm {
    /// Its id in `vm list`.
    pub id: u32,
    /// Its name.
    pub name: String,
    /// vCPUs.
    pub vcpus: u32,
    /// Guest RAM.
    pub mem_bytes: u64,
    /// `running`, or how it ended (`exited: system-off`, `stopped`, `crashed: ...`).
    pub state: String,
    /// The words after `vm run` that started it.
    pub words: Vec<String>,
}

/// The monitor's list: the next id to hand out and the VMs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SavedList {
    /// The id the next `vm run` gets.
    pub next_id: u32,
    /// The VMs, in `vm list` order.
    pub vms: Vec<SavedVm>,
}

/// Why a saved list was not read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SavedError {
    /// Not a saved list, or a version this monitor does not know.
    NotAList,
    /// It ends in the middle of a record.
    Truncated,
    /// A count or string that cannot be right (too many VMs or words, not UTF-8).
    Corrupt,
}

impl core::fmt::Display for SavedError {
    fn fmt(&self, f: &mut core::fmt::Formatter) -> core::fmt::Result {
        f.write_str(match self {
            SavedError::NotAList => "not a saved VM list",
            SavedError::Truncated => "the saved VM list is cut short",
            SavedError::Corrupt => "the saved VM list is corrupt",
        })
    }
}

fn put_u32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_le_bytes());
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    put_u32(out, s.len() as u32);
    out.extend_from_slice(s.as_bytes());
}

impl SavedList {
    /// The list's bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(MAGIC);
        put_u32(&mut out, VERSION);
        put_u32(&mut out, self.next_id);
        put_u32(&mut out, self.vms.len() as u32);
        for vm in &self.vms {
            put_u32(&mut out, vm.id);
            put_u32(&mut out, vm.vcpus);
            out.extend_from_slice(&vm.mem_bytes.to_le_bytes());
            put_str(&mut out, &vm.name);
            put_str(&mut out, &vm.state);
            put_u32(&mut out, vm.words.len() as u32);
            for w in &vm.words {
                put_str(&mut out, w);
            }
        }
        out
    }

    /// Reads a list [`SavedList::encode`] wrote; an empty input is an empty list.
    pub fn decode(bytes: &[u8]) -> Result<SavedList, SavedError> {
        if bytes.is_empty() {
            return Ok(SavedList { next_id: 1, vms: Vec::new() });
        }
        let mut r = Reader { bytes };
        if r.take(4).map_err(|_| SavedError::NotAList)? != MAGIC || r.u32()? != VERSION {
            return Err(SavedError::NotAList);
        }
        let next_id = r.u32()?;
        let count = r.u32()?;
        if count > MAX_VMS {
            return Err(SavedError::Corrupt);
        }
        let mut vms = Vec::new();
        for _ in 0..count {
            let (id, vcpus) = (r.u32()?, r.u32()?);
            let mem_bytes = u64::from_le_bytes(r.take(8)?.try_into().map_err(|_| SavedError::Truncated)?);
            let (name, state) = (r.string()?, r.string()?);
            let n = r.u32()?;
            if n > MAX_WORDS {
                return Err(SavedError::Corrupt);
            }
            let mut words = Vec::new();
            for _ in 0..n {
                words.push(r.string()?);
            }
            vms.push(SavedVm { id, name, vcpus, mem_bytes, state, words });
        }
        if !r.bytes.is_empty() {
            return Err(SavedError::Corrupt);
        }
        Ok(SavedList { next_id, vms })
    }
}

struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], SavedError> {
        if self.bytes.len() < n {
            return Err(SavedError::Truncated);
        }
        let (head, rest) = self.bytes.split_at(n);
        self.bytes = rest;
        Ok(head)
    }

    fn u32(&mut self) -> Result<u32, SavedError> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().map_err(|_| SavedError::Truncated)?))
    }

    fn string(&mut self) -> Result<String, SavedError> {
        let n = self.u32()? as usize;
        let b = self.take(n)?;
        core::str::from_utf8(b).map(String::from).map_err(|_| SavedError::Corrupt)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;
    use alloc::vec;

    fn sample() -> SavedList {
        SavedList {
            next_id: 4,
            vms: vec![
                SavedVm { id: 1, name: "linux".into(), vcpus: 2, mem_bytes: 256 << 20, state: "running".into(), words: vec!["linux".into(), "--attach".into()] },
                SavedVm {
                    id: 3,
                    name: "hvc".into(),
                    vcpus: 1,
                    mem_bytes: 16 << 20,
                    state: "exited: system-off".into(),
                    words: vec!["hvc".into(), "--append".into(), "guest=hvc\tquoted words".into()],
                },
            ],
        }
    }

    #[test]
    fn a_list_reads_back_as_written() {
        let l = sample();
        assert_eq!(SavedList::decode(&l.encode()), Ok(l));
        assert_eq!(SavedList::decode(&[]), Ok(SavedList { next_id: 1, vms: vec![] }));
    }

    #[test]
    fn every_cut_and_every_flipped_count_is_an_error_not_a_panic() {
        let bytes = sample().encode();
        for n in 1..bytes.len() {
            assert!(SavedList::decode(&bytes[..n]).is_err(), "cut at {n}");
        }
        for i in 0..bytes.len() {
            let mut b = bytes.clone();
            b[i] ^= 0xff;
            let _ = SavedList::decode(&b);
        }
        let mut extra = bytes.clone();
        extra.push(0);
        assert_eq!(SavedList::decode(&extra), Err(SavedError::Corrupt));
    }

    #[test]
    fn foreign_bytes_and_absurd_counts_are_refused() {
        assert_eq!(SavedList::decode(b"hello world"), Err(SavedError::NotAList));
        let mut b = sample().encode();
        b[12..16].copy_from_slice(&(MAX_VMS + 1).to_le_bytes());
        assert_eq!(SavedList::decode(&b), Err(SavedError::Corrupt));
        assert_eq!(SavedError::Truncated.to_string(), "the saved VM list is cut short");
    }
}
