//! Legacy x_tables (`iptables-legacy`): the built-in PREROUTING, FORWARD and
//! POSTROUTING chains of every IPv4 table the kernel has instantiated.
//!
//! The tables are those listed in `/proc/thread-self/net/ip_tables_names` (the
//! thread's own network namespace; asking for a table that is not listed would
//! instantiate it). For each, `IPT_SO_GET_INFO` tells whether a chain has rules: its
//! first entry (`hook_entry`) is its policy entry (`underflow`) when it has none. The
//! policy of a chain without rules is the verdict of the standard target at that
//! entry (`IPT_SO_GET_ENTRIES`). No file (no `ip_tables` in the kernel, or the module
//! not loaded) means no legacy table: [`chains`] returns `None`.

use std::{
    fs, io,
    os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd},
};

use serde::{Deserialize, Serialize};

use super::nftables::Policy;

const TABLE_NAMES: &str = "/proc/thread-self/net/ip_tables_names";
const IPT_SO_GET_INFO: libc::c_int = 64;
const IPT_SO_GET_ENTRIES: libc::c_int = 65;
const TABLE_NAME_LEN: usize = 32;
/// `struct ipt_getinfo`: name, valid_hooks, hook_entry[5], underflow[5],
/// num_entries, size.
const GETINFO_LEN: usize = 84;
/// `struct ipt_get_entries` before its entries (name, size, padding to 8 bytes).
const GET_ENTRIES_HEADER: usize = 40;
/// Offset of `target_offset` in `struct ipt_entry` (after `struct ipt_ip` and `nfcache`).
const ENTRY_TARGET_OFFSET: usize = 88;
/// Offset of the verdict in the standard target (after `struct xt_entry_target`).
const TARGET_VERDICT: usize = 32;
/// The standard target's verdicts: `-NF_DROP - 1` and `-NF_ACCEPT - 1`.
const VERDICT_DROP: i32 = -1;
const VERDICT_ACCEPT: i32 = -2;

#[derive(Debug, thiserror::Error)]
pub enum XtablesError {
    #[error("cannot read {TABLE_NAMES}")]
    Names(#[source] io::Error),
    #[error("cannot open a raw IPv4 socket to ask for the iptables-legacy tables")]
    Socket(#[source] io::Error),
    #[error("cannot read iptables-legacy table {table} ({request})")]
    Get {
        table: String,
        request: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("iptables-legacy table {table} is malformed: {detail}")]
    Malformed { table: String, detail: String },
}

/// The built-in chains on the forwarding path.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum XtHook {
    #[serde(rename = "PREROUTING")]
    Prerouting,
    #[serde(rename = "FORWARD")]
    Forward,
    #[serde(rename = "POSTROUTING")]
    Postrouting,
}

impl XtHook {
    const ALL: [(XtHook, usize); 3] = [
        (XtHook::Prerouting, 0),
        (XtHook::Forward, 2),
        (XtHook::Postrouting, 4),
    ];
}

impl std::fmt::Display for XtHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Prerouting => "PREROUTING",
            Self::Forward => "FORWARD",
            Self::Postrouting => "POSTROUTING",
        })
    }
}

/// One built-in chain of a legacy table.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct XtChain {
    pub table: String,
    pub hook: XtHook,
    pub has_rules: bool,
    /// The policy, read for a chain without rules (the only case where it decides).
    pub policy: Option<Policy>,
}

impl XtChain {
    /// Whether the chain can change what the kernel does with a frame.
    pub fn matters(&self) -> bool {
        self.has_rules || self.policy == Some(Policy::Drop)
    }
}

/// The forwarding-path chains of every legacy table, or `None` without legacy tables.
pub fn chains() -> Result<Option<Vec<XtChain>>, XtablesError> {
    let names = match fs::read_to_string(TABLE_NAMES) {
        Ok(names) => names,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(err) => return Err(XtablesError::Names(err)),
    };
    let tables: Vec<&str> = names
        .lines()
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .collect();
    if tables.is_empty() {
        return Ok(Some(Vec::new()));
    }
    // SAFETY: socket has no memory-safety preconditions; the result is checked.
    let fd = unsafe {
        libc::socket(
            libc::AF_INET,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            libc::IPPROTO_RAW,
        )
    };
    if fd < 0 {
        return Err(XtablesError::Socket(io::Error::last_os_error()));
    }
    // SAFETY: `fd` is a new descriptor that nothing else owns.
    let socket = unsafe { OwnedFd::from_raw_fd(fd) };
    let mut chains = Vec::new();
    for table in tables {
        // EAGAIN: the table was replaced between the two requests; ask again.
        let mut tries = 1;
        loop {
            match table_chains(&socket, table) {
                Err(XtablesError::Get { source, .. })
                    if source.raw_os_error() == Some(libc::EAGAIN) && tries < 3 =>
                {
                    tries += 1;
                }
                result => {
                    chains.extend(result?);
                    break;
                }
            }
        }
    }
    Ok(Some(chains))
}

fn table_chains(socket: &OwnedFd, table: &str) -> Result<Vec<XtChain>, XtablesError> {
    let mut info = vec![0u8; GETINFO_LEN];
    name_into(&mut info, table)?;
    match getsockopt(socket, IPT_SO_GET_INFO, &mut info) {
        Ok(()) => {}
        // Gone since it was listed.
        Err(err) if err.raw_os_error() == Some(libc::ENOENT) => return Ok(Vec::new()),
        Err(source) => {
            return Err(XtablesError::Get {
                table: table.to_owned(),
                request: "IPT_SO_GET_INFO",
                source,
            });
        }
    }
    let (mut chains, size) = hooks_of(&info, table);
    if chains.iter().any(|(chain, _)| !chain.has_rules) {
        // A chain without rules: its policy decides.
        let mut entries = vec![0u8; GET_ENTRIES_HEADER + size];
        name_into(&mut entries, table)?;
        entries[32..36].copy_from_slice(&(size as u32).to_ne_bytes());
        getsockopt(socket, IPT_SO_GET_ENTRIES, &mut entries).map_err(|source| {
            XtablesError::Get {
                table: table.to_owned(),
                request: "IPT_SO_GET_ENTRIES",
                source,
            }
        })?;
        policies_from(&mut chains, &entries[GET_ENTRIES_HEADER..], table)?;
    }
    Ok(chains.into_iter().map(|(chain, _)| chain).collect())
}

/// The chains of `table` its `IPT_SO_GET_INFO` answer names (`info`, at least
/// [`GETINFO_LEN`] bytes), each with the offset of its policy entry, and the size of
/// the table's entries.
pub(crate) fn hooks_of(info: &[u8], table: &str) -> (Vec<(XtChain, usize)>, usize) {
    let word = |offset: usize| {
        info.get(offset..offset + 4)
            .map_or(0, |b| u32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
    };
    let valid_hooks = word(32);
    let size = word(80) as usize;
    let mut chains = Vec::new();
    for (hook, number) in XtHook::ALL {
        if valid_hooks & (1 << number) == 0 {
            continue;
        }
        let (entry, underflow) = (word(36 + 4 * number), word(56 + 4 * number));
        let chain = XtChain {
            table: table.to_owned(),
            hook,
            has_rules: entry != underflow,
            policy: None,
        };
        chains.push((chain, underflow as usize));
    }
    (chains, size)
}

/// Sets the policy of each chain without rules from `entries` (the table's entries,
/// after the `IPT_SO_GET_ENTRIES` header).
pub(crate) fn policies_from(
    chains: &mut [(XtChain, usize)],
    entries: &[u8],
    table: &str,
) -> Result<(), XtablesError> {
    for (chain, underflow) in chains.iter_mut().filter(|(chain, _)| !chain.has_rules) {
        let policy = policy_at(entries, *underflow);
        chain.policy = Some(policy.map_err(|detail| XtablesError::Malformed {
            table: table.to_owned(),
            detail,
        })?);
    }
    Ok(())
}

/// The verdict of the standard target of the entry at `offset`.
fn policy_at(entries: &[u8], offset: usize) -> Result<Policy, String> {
    let read_u16 = |at: usize| {
        entries
            .get(at..at + 2)
            .map(|b| u16::from_ne_bytes([b[0], b[1]]) as usize)
            .ok_or_else(|| format!("entry at {offset} is cut short"))
    };
    let target = offset + read_u16(offset + ENTRY_TARGET_OFFSET)?;
    let verdict = entries
        .get(target + TARGET_VERDICT..target + TARGET_VERDICT + 4)
        .map(|b| i32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
        .ok_or_else(|| format!("the target of the entry at {offset} is cut short"))?;
    match verdict {
        VERDICT_DROP => Ok(Policy::Drop),
        VERDICT_ACCEPT => Ok(Policy::Accept),
        other => Err(format!(
            "the policy entry at {offset} has verdict {other}, neither ACCEPT nor DROP"
        )),
    }
}

fn name_into(buffer: &mut [u8], table: &str) -> Result<(), XtablesError> {
    let name = table.as_bytes();
    if name.len() >= TABLE_NAME_LEN {
        return Err(XtablesError::Malformed {
            table: table.to_owned(),
            detail: format!("the name is longer than {} bytes", TABLE_NAME_LEN - 1),
        });
    }
    buffer[..name.len()].copy_from_slice(name);
    Ok(())
}

fn getsockopt(socket: &OwnedFd, option: libc::c_int, buffer: &mut [u8]) -> io::Result<()> {
    let mut len = buffer.len() as libc::socklen_t;
    // SAFETY: `buffer` is valid for `len` bytes of writes and outlives the call.
    let rc = unsafe {
        libc::getsockopt(
            socket.as_raw_fd(),
            libc::IPPROTO_IP,
            option,
            buffer.as_mut_ptr().cast(),
            &mut len,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One standard entry (no matches) with `verdict`, as the kernel lays it out.
    fn entry(verdict: i32) -> Vec<u8> {
        let mut bytes = vec![0u8; 112 + 40];
        bytes[ENTRY_TARGET_OFFSET..ENTRY_TARGET_OFFSET + 2].copy_from_slice(&112u16.to_ne_bytes());
        bytes[90..92].copy_from_slice(&152u16.to_ne_bytes());
        bytes[112 + TARGET_VERDICT..112 + TARGET_VERDICT + 4]
            .copy_from_slice(&verdict.to_ne_bytes());
        bytes
    }

    #[test]
    fn reads_the_policy_of_a_standard_entry() {
        let mut table = entry(VERDICT_ACCEPT);
        table.extend(entry(VERDICT_DROP));
        assert_eq!(policy_at(&table, 0), Ok(Policy::Accept));
        assert_eq!(policy_at(&table, 152), Ok(Policy::Drop));
        assert!(policy_at(&table, 200).is_err());
        assert!(policy_at(&entry(5), 0).is_err());
    }
}
