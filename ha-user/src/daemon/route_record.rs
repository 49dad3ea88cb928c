//! The record of the kernel routes `ha` may have installed: every prefix whose
//! route could be `ha`'s in this network namespace through one LAN interface, kept
//! in `/run/ha/routes-<namespace inode>-<LAN>.json` (beside the interface locks;
//! one file per namespace and LAN, so two controllers never share one).
//!
//! It is written (atomically, root-only, by the state file's own code: see
//! [`super::state`]) **before** routes are added, at start-up and on every reload,
//! so whatever a kill leaves in the kernel is covered; and trimmed after the routes
//! of prefixes no longer configured are removed. The next start removes the
//! recorded routes its configuration does not name, if they still look like
//! `ha`'s (protocol 165, through the LAN); `detach --purge` removes only recorded
//! or configured routes. A `proto 165` route `ha` never recorded is never touched.

use std::{
    collections::BTreeSet,
    io,
    path::{Path, PathBuf},
};

use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};

use super::{
    lock::{LOCK_DIR, netns_id},
    state::{self, Keys, StateError},
};

/// The file's contents.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteRecord {
    /// The LAN interface the routes go through.
    pub lan: String,
    /// Every prefix whose route may be `ha`'s.
    pub prefixes: BTreeSet<Ipv4Net>,
}

impl Keys for RouteRecord {
    const KEYS: &'static [&'static str] = &["lan", "prefixes"];
}

/// The record's path for LAN `lan` in the network namespace of inode `netns`,
/// under `dir` (normally [`LOCK_DIR`]).
pub fn path_in(dir: &Path, netns: u64, lan: &str) -> PathBuf {
    dir.join(format!("{}{netns}-{lan}.json", FILE_PREFIX))
}

/// Every record's name starts so.
const FILE_PREFIX: &str = "routes-";

/// The record of `lan` in this process's network namespace, loaded, and kept in
/// step with its file.
#[derive(Debug)]
pub struct Recorder {
    path: PathBuf,
    record: RouteRecord,
}

impl Recorder {
    /// The record of `lan` in this network namespace; empty if there is none yet.
    pub fn open(lan: &str) -> Result<Recorder, StateError> {
        Recorder::open_at(path_in(Path::new(LOCK_DIR), netns_id(), lan), lan)
    }

    /// The record at `path`, of `lan`.
    pub fn open_at(path: PathBuf, lan: &str) -> Result<Recorder, StateError> {
        let record = state::load::<RouteRecord>(&path)?.unwrap_or_else(|| RouteRecord {
            lan: lan.to_owned(),
            prefixes: BTreeSet::new(),
        });
        Ok(Recorder { path, record })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The LAN interface the recorded routes go through.
    pub fn lan(&self) -> &str {
        &self.record.lan
    }

    /// The prefixes recorded.
    pub fn prefixes(&self) -> &BTreeSet<Ipv4Net> {
        &self.record.prefixes
    }

    /// Adds `prefixes` to the record, written before this returns (unchanged: not
    /// written again). Call it before their routes are added.
    pub fn cover(&mut self, prefixes: impl IntoIterator<Item = Ipv4Net>) -> Result<(), StateError> {
        let before = self.record.prefixes.len();
        self.record.prefixes.extend(prefixes);
        if self.record.prefixes.len() == before {
            return Ok(());
        }
        state::save(&self.path, &self.record)
    }

    /// Keeps only the prefixes `keep` accepts (written, if that changed anything).
    pub fn trim(&mut self, keep: impl Fn(&Ipv4Net) -> bool) -> Result<(), StateError> {
        let before = self.record.prefixes.len();
        self.record.prefixes.retain(|prefix| keep(prefix));
        if self.record.prefixes.len() == before {
            return Ok(());
        }
        state::save(&self.path, &self.record)
    }

    /// Removes the file (`detach --purge`); a missing one is no error.
    pub fn remove(self) -> io::Result<()> {
        match std::fs::remove_file(&self.path) {
            Err(err) if err.kind() != io::ErrorKind::NotFound => Err(err),
            _ => Ok(()),
        }
    }
}

/// The records of every LAN in this network namespace (`detach --purge` without a
/// configuration does not know the LAN), each with its LAN.
pub fn all_here() -> io::Result<Vec<(String, PathBuf)>> {
    all_in(Path::new(LOCK_DIR), netns_id())
}

fn all_in(dir: &Path, netns: u64) -> io::Result<Vec<(String, PathBuf)>> {
    let start = format!("{FILE_PREFIX}{netns}-");
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(err) => return Err(err),
    };
    let mut found = Vec::new();
    for entry in entries {
        let name = entry?.file_name();
        let Some(lan) = name
            .to_str()
            .and_then(|name| name.strip_prefix(&start))
            .and_then(|rest| rest.strip_suffix(".json"))
        else {
            continue;
        };
        found.push((lan.to_owned(), dir.join(&name)));
    }
    found.sort();
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::scratch::Dir;

    fn net(text: &str) -> Ipv4Net {
        text.parse().expect("prefix")
    }

    #[test]
    fn the_record_covers_before_and_trims_after() {
        let dir = Dir(std::env::temp_dir().join(format!("ha-record-{}", std::process::id())));
        let path = path_in(&dir.0, 4026531840, "eth1");
        assert!(path.ends_with("routes-4026531840-eth1.json"), "{path:?}");
        let mut recorder = Recorder::open_at(path.clone(), "eth1").expect("empty");
        assert!(recorder.prefixes().is_empty());
        recorder
            .cover([net("192.168.1.64/27"), net("10.200.0.1/32")])
            .expect("cover");
        let again = Recorder::open_at(path.clone(), "eth1").expect("written");
        assert_eq!(again.prefixes().len(), 2);
        assert_eq!(again.record.lan, "eth1");
        recorder
            .trim(|prefix| *prefix == net("192.168.1.64/27"))
            .expect("trim");
        let again = Recorder::open_at(path.clone(), "eth1").expect("written");
        assert_eq!(
            again.prefixes().iter().copied().collect::<Vec<_>>(),
            [net("192.168.1.64/27")]
        );
        assert_eq!(
            all_in(&dir.0, 4026531840).expect("list"),
            [("eth1".to_owned(), path.clone())]
        );
        assert!(all_in(&dir.0, 1).expect("list").is_empty());
        again.remove().expect("removed");
        assert!(!path.exists());
    }

    #[test]
    fn a_file_that_is_not_a_record_is_refused() {
        let dir = Dir(std::env::temp_dir().join(format!("ha-record-bad-{}", std::process::id())));
        std::fs::create_dir_all(&dir.0).expect("dir");
        let path = path_in(&dir.0, 1, "eth1");
        std::fs::write(&path, "{\"pins\": {}}").expect("write");
        let err = Recorder::open_at(path, "eth1").expect_err("not a record");
        assert!(err.to_string().contains("`pins`"), "{err}");
    }
}
