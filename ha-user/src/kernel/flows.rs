//! The flow table (`HA_FLOWS`) read and pruned in bulk, for the controller's sweep.
//!
//! aya 0.14 has no API for the kernel's map batch commands, so they are issued here
//! through `bpf(2)` with the kernel's own `bpf_attr` (from `aya-obj`):
//! `BPF_MAP_LOOKUP_BATCH` reads [`BATCH`] entries a call, `BPF_MAP_DELETE_BATCH`
//! removes a list of keys. [`FlowTable::read_each`] reads the table the way aya does
//! (one `GET_NEXT_KEY` and one `LOOKUP_ELEM` per entry), for comparison.
//!
//! A hash map's batch cursor is a bucket number: entries added or removed while the
//! table is read are seen or not, never twice within one bucket, and the read never
//! fails because the table changed under it.

use std::{
    io,
    mem::{size_of, zeroed},
    os::fd::{AsFd as _, AsRawFd as _, BorrowedFd},
    path::{Path, PathBuf},
};

use aya::maps::{HashMap, Map, MapData, MapError};
use aya_obj::generated::{bpf_attr, bpf_cmd};
use ha_common::{FlowEntry, FlowKey, MAP_FLOWS, MAX_FLOWS};

/// Entries per `BPF_MAP_LOOKUP_BATCH` call. Must be at least the longest bucket
/// (the kernel answers `ENOSPC` otherwise); 8,192 entries of 48 bytes are 384 KiB.
pub const BATCH: usize = 8192;

#[derive(Debug, thiserror::Error)]
pub enum FlowTableError {
    #[error("cannot open the flow table {}", path.display())]
    Open {
        path: PathBuf,
        #[source]
        source: MapError,
    },
    #[error("cannot read the flow table")]
    Read(#[source] io::Error),
    #[error("cannot read the flow table entry by entry")]
    ReadEach(#[source] MapError),
    #[error("cannot remove entries from the flow table")]
    Remove(#[source] io::Error),
}

/// The pinned flow table, opened for the sweep.
pub struct FlowTable {
    data: MapData,
    path: PathBuf,
}

impl FlowTable {
    /// Opens `HA_FLOWS` pinned under `pin_dir`.
    pub fn open(pin_dir: &Path) -> Result<FlowTable, FlowTableError> {
        let path = pin_dir.join(MAP_FLOWS);
        let data = MapData::from_pin(&path).map_err(|source| FlowTableError::Open {
            path: path.clone(),
            source,
        })?;
        Ok(FlowTable { data, path })
    }

    fn fd(&self) -> BorrowedFd<'_> {
        self.data.fd().as_fd()
    }

    /// Every entry, into `out` (cleared first), [`BATCH`] entries a system call.
    pub fn read_all(&self, out: &mut Vec<(FlowKey, FlowEntry)>) -> Result<(), FlowTableError> {
        out.clear();
        let mut keys = vec![FlowKey::default(); BATCH];
        let mut values = vec![FlowEntry::default(); BATCH];
        // The cursor: a bucket number for hash maps (4 bytes); room for a key anyway.
        let mut cursor = [0u64; 2];
        let mut next = [0u64; 2];
        let mut first = true;
        loop {
            // SAFETY: an all-zero bpf_attr is the kernel's "nothing set".
            let mut attr: bpf_attr = unsafe { zeroed() };
            // SAFETY: writing the batch member of a zeroed union.
            let batch = unsafe { &mut attr.batch };
            batch.in_batch = if first { 0 } else { cursor.as_mut_ptr() as u64 };
            batch.out_batch = next.as_mut_ptr() as u64;
            batch.keys = keys.as_mut_ptr() as u64;
            batch.values = values.as_mut_ptr() as u64;
            batch.count = BATCH as u32;
            batch.map_fd = self.fd().as_raw_fd() as u32;
            let result = bpf(bpf_cmd::BPF_MAP_LOOKUP_BATCH, &mut attr);
            // SAFETY: the kernel wrote how many entries it returned into `count`.
            let count = unsafe { attr.batch.count } as usize;
            let count = count.min(BATCH);
            out.extend(
                keys[..count]
                    .iter()
                    .copied()
                    .zip(values[..count].iter().copied()),
            );
            match result {
                Ok(()) => {}
                // The end of the table (the last entries, if any, came with it).
                Err(err) if err.raw_os_error() == Some(libc::ENOENT) => return Ok(()),
                Err(err) => return Err(FlowTableError::Read(err)),
            }
            if out.len() > 2 * MAX_FLOWS as usize {
                // A cursor that does not advance would loop for ever.
                return Err(FlowTableError::Read(io::Error::other(
                    "the batch read returned more entries than the table holds",
                )));
            }
            cursor = next;
            first = false;
        }
    }

    /// Every entry, as aya reads a hash map: two system calls per entry.
    pub fn read_each(&self, out: &mut Vec<(FlowKey, FlowEntry)>) -> Result<(), FlowTableError> {
        out.clear();
        let data = MapData::from_pin(&self.path).map_err(FlowTableError::ReadEach)?;
        let map = Map::from_map_data(data).map_err(FlowTableError::ReadEach)?;
        let map: HashMap<MapData, FlowKey, FlowEntry> =
            HashMap::try_from(map).map_err(FlowTableError::ReadEach)?;
        for item in map.iter() {
            match item {
                Ok(entry) => out.push(entry),
                // Removed between its key and its value: gone, like a batch would miss it.
                Err(MapError::KeyNotFound) => {}
                Err(err) => return Err(FlowTableError::ReadEach(err)),
            }
        }
        Ok(())
    }

    /// Removes `keys`; a key already gone (a reset ended it meanwhile) is skipped.
    /// Returns how many were removed.
    pub fn remove(&self, keys: &[FlowKey]) -> Result<usize, FlowTableError> {
        let mut removed = 0;
        let mut rest = keys;
        while !rest.is_empty() {
            // SAFETY: as in `read_all`.
            let mut attr: bpf_attr = unsafe { zeroed() };
            // SAFETY: writing the batch member of a zeroed union.
            let batch = unsafe { &mut attr.batch };
            batch.keys = rest.as_ptr() as u64;
            batch.count = rest.len() as u32;
            batch.map_fd = self.fd().as_raw_fd() as u32;
            let result = bpf(bpf_cmd::BPF_MAP_DELETE_BATCH, &mut attr);
            // SAFETY: the kernel wrote how many keys it removed into `count`.
            let done = (unsafe { attr.batch.count } as usize).min(rest.len());
            removed += done;
            match result {
                Ok(()) => return Ok(removed),
                // Key `done` is not there any more: skip it.
                Err(err) if err.raw_os_error() == Some(libc::ENOENT) => {
                    rest = &rest[(done + 1).min(rest.len())..];
                }
                Err(err) => return Err(FlowTableError::Remove(err)),
            }
        }
        Ok(removed)
    }
}

/// `bpf(cmd, attr, sizeof(attr))`.
fn bpf(cmd: bpf_cmd, attr: &mut bpf_attr) -> io::Result<()> {
    // SAFETY: `attr` is a valid bpf_attr of the size passed; every pointer in it
    // points at a live buffer of the size its count says.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd as libc::c_long,
            attr as *mut bpf_attr,
            size_of::<bpf_attr>() as libc::c_long,
        )
    };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}
