//! Persistent admin state (pins and drains): written atomically (temporary file in
//! the same directory, fsync, rename), so a crash leaves the old or the new file,
//! never half of one.
//!
//! Files that are not ha's are never read as state nor written over: a symlink at the
//! state file's path is refused, so is anything but a regular file, and so is a JSON
//! file with keys ha's state does not have ([`Keys`]: another program's file named by
//! mistake). The temporary file is created afresh, never opened through a symlink
//! planted at its name, with mode 0600; new directories are made 0700.

use std::{
    collections::BTreeMap,
    fs::{DirBuilder, File, OpenOptions},
    io::{self, Read as _, Write as _},
    os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _},
    path::{Path, PathBuf},
};

use serde::{
    Serialize,
    de::{DeserializeOwned, IgnoredAny},
};

use crate::config::file::kind_of;

/// The longest state file read: far beyond any real one (a few bytes per pin).
const MAX_STATE: u64 = 16 * 1024 * 1024;

/// The top-level keys a state file may have: any other means it is not ha's.
pub trait Keys {
    const KEYS: &'static [&'static str];
}

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("cannot read the state file {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("the state file {} is not valid: {source}; fix or remove it", path.display())]
    Parse {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error(
        "the state file {} is not an ha state file ({why}): ha never reads or \
         overwrites another program's file; choose another `state_file`",
        path.display()
    )]
    Foreign { path: PathBuf, why: String },
    #[error(
        "the state file {}'s directory {unsafe_dir}: another user could swap the file; \
         use a directory only root may write into",
        path.display()
    )]
    UnsafeDir {
        path: PathBuf,
        unsafe_dir: super::dirs::UnsafeDir,
    },
    #[error("cannot write the state file {}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// Reads the state at `path`; a missing file is `None` (first start).
pub fn load<T: DeserializeOwned + Keys>(path: &Path) -> Result<Option<T>, StateError> {
    check_dirs(path)?;
    let foreign = |why: String| StateError::Foreign {
        path: path.to_owned(),
        why,
    };
    let read_err = |source| StateError::Read {
        path: path.to_owned(),
        source,
    };
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_file() => {}
        Ok(meta) => return Err(foreign(format!("it is {}", kind_of(meta.file_type())))),
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(read_err(source)),
    }
    // No symlink is followed and nothing blocks, even if the file was swapped since.
    let mut file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
        .map_err(read_err)?;
    let meta = file.metadata().map_err(read_err)?;
    if !meta.file_type().is_file() {
        return Err(foreign(format!("it is {}", kind_of(meta.file_type()))));
    }
    if meta.len() > MAX_STATE {
        return Err(foreign(format!(
            "{} bytes; ha's is far below {MAX_STATE}",
            meta.len()
        )));
    }
    let mut text = String::new();
    (&mut file)
        .take(MAX_STATE)
        .read_to_string(&mut text)
        .map_err(read_err)?;
    parse(path, &text).map(Some)
}

/// The state in `text` (read from `path`, which errors name).
pub fn parse<T: DeserializeOwned + Keys>(path: &Path, text: &str) -> Result<T, StateError> {
    let parse_err = |source| StateError::Parse {
        path: path.to_owned(),
        source,
    };
    // The keys first (their values unread): a file with others is not ha's.
    let keys: BTreeMap<String, IgnoredAny> = match serde_json::from_str(text) {
        Ok(keys) => keys,
        Err(err) if err.is_data() => {
            return Err(StateError::Foreign {
                path: path.to_owned(),
                why: "not a JSON object".to_owned(),
            });
        }
        Err(err) => return Err(parse_err(err)),
    };
    if let Some(key) = keys.keys().find(|key| !T::KEYS.contains(&key.as_str())) {
        return Err(StateError::Foreign {
            path: path.to_owned(),
            why: format!("it has the key `{key}`; ha's has {}", T::KEYS.join(", ")),
        });
    }
    serde_json::from_str(text).map_err(parse_err)
}

/// Refuses the state file's directories when one is another user's or open to others.
fn check_dirs(path: &Path) -> Result<(), StateError> {
    super::dirs::check_above(path).map_err(|unsafe_dir| StateError::UnsafeDir {
        path: path.to_owned(),
        unsafe_dir,
    })
}

/// Replaces the state at `path` with `value`, atomically.
pub fn save<T: Serialize>(path: &Path, value: &T) -> Result<(), StateError> {
    let write_err = |source| StateError::Write {
        path: path.to_owned(),
        source,
    };
    check_dirs(path)?;
    let dir = path.parent().unwrap_or(Path::new("."));
    DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(write_err)?;
    // One made by someone else meanwhile is refused too.
    check_dirs(path)?;
    let mut text =
        serde_json::to_vec_pretty(value).map_err(|err| write_err(io::Error::other(err)))?;
    text.push(b'\n');
    let tmp = path.with_extension("json.tmp");
    let mut file = create_fresh(&tmp).map_err(write_err)?;
    file.write_all(&text).map_err(write_err)?;
    file.sync_all().map_err(write_err)?;
    std::fs::rename(&tmp, path).map_err(write_err)
}

/// Creates `path` as a new file, mode 0600. Whatever is at that name (a temporary
/// file left by a crash, or a symlink someone planted) is unlinked first, never
/// opened: `O_EXCL` refuses to follow a symlink that appears in between.
fn create_fresh(path: &Path) -> io::Result<File> {
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(err) if err.kind() == io::ErrorKind::NotFound => {}
        Err(err) => return Err(err),
    }
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    impl Keys for BTreeMap<String, String> {
        const KEYS: &'static [&'static str] = &["192.168.1.64/27"];
    }

    #[test]
    fn missing_is_none_and_saved_state_round_trips() {
        let dir = std::env::temp_dir().join(format!("ha-state-test-{}", std::process::id()));
        let path = dir.join("state.json");
        assert_eq!(load::<BTreeMap<String, String>>(&path).expect("load"), None);
        let value = BTreeMap::from([("192.168.1.64/27".to_owned(), "host4".to_owned())]);
        save(&path, &value).expect("save");
        assert_eq!(load(&path).expect("load"), Some(value));
        assert!(
            !path.with_extension("json.tmp").exists(),
            "no temporary file left behind"
        );
        std::fs::write(&path, "{ not json").expect("corrupt");
        let err = load::<BTreeMap<String, String>>(&path).expect_err("corrupt file");
        assert!(err.to_string().contains("is not valid"), "{err}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A symlink planted at the temporary file's name is never written through: its
    /// target keeps its contents, and the state is saved all the same.
    #[test]
    fn a_symlink_at_the_temporary_file_is_not_followed() {
        let dir = std::env::temp_dir().join(format!("ha-state-link-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join("state.json");
        let victim = dir.join("victim");
        std::fs::write(&victim, "precious\n").expect("victim");
        std::os::unix::fs::symlink(&victim, path.with_extension("json.tmp")).expect("symlink");
        let value = BTreeMap::from([("a".to_owned(), "b".to_owned())]);
        let saved = save(&path, &value);
        let victim_after = std::fs::read_to_string(&victim).expect("victim");
        let state_after = std::fs::read_to_string(&path);
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!(victim_after, "precious\n", "written through the symlink");
        saved.expect("saved beside the symlink");
        let state_after = state_after.expect("the state file");
        assert!(state_after.contains("\"a\": \"b\""), "{state_after}");
    }

    /// The state file is created with mode 0600 (never wider, then narrowed) in a
    /// directory made 0700; a directory another user owns, or that others may write
    /// into, is refused by `load` and `save` (its owner could swap the file for one
    /// with other pins and drains), and nothing is written into it.
    #[test]
    fn the_state_file_is_private_and_a_foreign_directory_is_refused() {
        use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
        let dir = std::env::temp_dir().join(format!("ha-state-modes-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let path = dir.join("state.json");
        let value = BTreeMap::from([("a".to_owned(), "b".to_owned())]);
        save(&path, &value).expect("save");
        let modes = (
            std::fs::metadata(&dir).expect("dir").mode() & 0o7777,
            std::fs::metadata(&path).expect("file").mode() & 0o7777,
        );
        assert_eq!(modes, (0o700, 0o600), "the state directory and file");
        std::fs::remove_file(&path).expect("remove");
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).expect("chmod");
        let refused = |what: &str| {
            let saved = save(&path, &value).map_err(|e| e.to_string());
            let loaded = load::<BTreeMap<String, String>>(&path).map_err(|e| e.to_string());
            for (call, result) in [("save", saved.map(drop)), ("load", loaded.map(drop))] {
                match result {
                    Err(err) if err.contains(what) => {}
                    other => panic!("{call}: expected a refusal saying {what:?}, got {other:?}"),
                }
            }
            assert!(!path.exists(), "written into the unsafe directory");
        };
        refused("writable by other users");
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).expect("chmod");
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } == 0 {
            let c_dir = std::ffi::CString::new(dir.as_os_str().as_encoded_bytes()).expect("path");
            // SAFETY: a valid NUL-terminated path.
            assert_eq!(
                unsafe { libc::chown(c_dir.as_ptr(), 65534, 65534) },
                0,
                "chown"
            );
            refused("owned by uid 65534");
        } else {
            eprintln!("SKIPPED (part): a directory of another user needs root to chown");
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
