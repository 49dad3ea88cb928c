//! Persistent admin state (pins and drains): written atomically (temporary file in
//! the same directory, fsync, rename), so a crash leaves the old or the new file,
//! never half of one.

use std::{
    io::{self, Write as _},
    path::{Path, PathBuf},
};

use serde::{Serialize, de::DeserializeOwned};

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
    #[error("cannot write the state file {}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// Reads the state at `path`; a missing file is `None` (first start).
pub fn load<T: DeserializeOwned>(path: &Path) -> Result<Option<T>, StateError> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(StateError::Read {
                path: path.to_owned(),
                source,
            });
        }
    };
    parse(path, &text).map(Some)
}

/// The state in `text` (read from `path`, which errors name).
pub fn parse<T: DeserializeOwned>(path: &Path, text: &str) -> Result<T, StateError> {
    serde_json::from_str(text).map_err(|source| StateError::Parse {
        path: path.to_owned(),
        source,
    })
}

/// Replaces the state at `path` with `value`, atomically.
pub fn save<T: Serialize>(path: &Path, value: &T) -> Result<(), StateError> {
    let write_err = |source| StateError::Write {
        path: path.to_owned(),
        source,
    };
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(write_err)?;
    let mut text =
        serde_json::to_vec_pretty(value).map_err(|err| write_err(io::Error::other(err)))?;
    text.push(b'\n');
    let tmp = path.with_extension("json.tmp");
    let mut file = std::fs::File::create(&tmp).map_err(write_err)?;
    file.write_all(&text).map_err(write_err)?;
    file.sync_all().map_err(write_err)?;
    std::fs::rename(&tmp, path).map_err(write_err)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

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
}
