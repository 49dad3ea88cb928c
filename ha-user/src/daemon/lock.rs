//! One controller per data path: exclusive locks on everything a controller drives,
//! so a second `ha-user run` (or a `detach`) that shares any of it refuses to start
//! instead of rewriting a running controller's maps, links and routes:
//!
//! - the control socket: `<socket dir>/ha.lock`;
//! - the pin directory: `<LOCK_DIR>/pins<the directory's path, escaped>.lock`;
//! - every interface it steers on (the LAN and the ingress interfaces), in this
//!   network namespace: `<LOCK_DIR>/iface-<namespace inode>-<name>.lock`.
//!
//! The kernel releases the locks (`flock`) when the process ends, however it ends.

use std::{
    fs::{DirBuilder, File},
    io,
    os::{fd::AsRawFd as _, unix::fs::DirBuilderExt as _},
    path::{Component, Path, PathBuf},
};

/// Where the locks of the pin directory and the interfaces live, whatever the
/// control socket.
pub const LOCK_DIR: &str = "/run/ha";

/// The longest lock file name made from a path; a longer path is named by its hash.
const MAX_NAME: usize = 200;

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("cannot create {}", path.display())]
    Create {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(
        "another ha-user run holds {what} (lock {}); stop it first (or use the CLI to talk to it)",
        path.display()
    )]
    Held { what: String, path: PathBuf },
}

/// What a controller drives, to be locked.
#[derive(Clone, Copy, Debug)]
pub struct DataPath<'a> {
    pub control_socket: &'a Path,
    pub pin_dir: &'a Path,
    /// The LAN interface, when known (a `detach` without a configuration has none).
    pub lan: Option<&'a str>,
    pub ingress: &'a [String],
}

/// Held for the life of the controller.
#[derive(Debug)]
pub struct Lock {
    _files: Vec<File>,
}

impl Lock {
    /// Locks everything `path` names, in [`LOCK_DIR`] (see the module docs).
    pub fn acquire(path: DataPath<'_>) -> Result<Lock, LockError> {
        Lock::acquire_in(Path::new(LOCK_DIR), path)
    }

    /// [`Lock::acquire`] with the pin and interface locks in `lock_dir`.
    pub fn acquire_in(lock_dir: &Path, path: DataPath<'_>) -> Result<Lock, LockError> {
        let DataPath {
            control_socket,
            pin_dir,
            lan,
            ingress,
        } = path;
        let socket_dir = control_socket.parent().unwrap_or(Path::new(LOCK_DIR));
        let mut wanted = vec![(
            socket_dir.join("ha.lock"),
            format!("the control socket {}", control_socket.display()),
        )];
        let pins = normal(pin_dir);
        wanted.push((
            lock_dir.join(path_name("pins", &pins)),
            format!("the pins {}", pins.display()),
        ));
        let netns = netns_id();
        let ifaces = lan.map(|lan| (lan, "the LAN interface")).into_iter().chain(
            ingress
                .iter()
                .map(|i| (i.as_str(), "the ingress interface")),
        );
        let mut seen = Vec::new();
        for (name, role) in ifaces {
            if seen.contains(&name) {
                continue;
            }
            seen.push(name);
            wanted.push((
                lock_dir.join(format!("iface-{netns}-{name}.lock")),
                format!("{role} {name}"),
            ));
        }
        let mut files = Vec::with_capacity(wanted.len());
        for (path, what) in wanted {
            files.push(lock(&path, what)?);
        }
        Ok(Lock { _files: files })
    }
}

/// Opens (creating it and its directory, 0700) and locks `path`.
fn lock(path: &Path, what: String) -> Result<File, LockError> {
    let create = |source| LockError::Create {
        path: path.to_owned(),
        source,
    };
    if let Some(dir) = path.parent() {
        DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(create)?;
    }
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .map_err(create)?;
    // SAFETY: a valid open descriptor; flock has no memory preconditions.
    let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc != 0 {
        let err = io::Error::last_os_error();
        if err.raw_os_error() == Some(libc::EWOULDBLOCK) {
            return Err(LockError::Held {
                what,
                path: path.to_owned(),
            });
        }
        return Err(create(err));
    }
    Ok(file)
}

/// `path` absolute and without `.`, `..` or repeated slashes, read lexically (the
/// pin directory may not exist yet).
fn normal(path: &Path) -> PathBuf {
    let absolute = if path.is_absolute() {
        path.to_owned()
    } else {
        std::env::current_dir().unwrap_or_default().join(path)
    };
    let mut normal = PathBuf::from("/");
    for component in absolute.components() {
        match component {
            Component::Normal(part) => normal.push(part),
            Component::ParentDir => {
                normal.pop();
            }
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    normal
}

/// A lock file name for `path`: `kind` and the path with `%` and `/` escaped (one
/// path, one name), or its FNV-1a hash when that is too long.
fn path_name(kind: &str, path: &Path) -> String {
    let text = path.to_string_lossy();
    let escaped = text.replace('%', "%25").replace('/', "%2F");
    if escaped.len() <= MAX_NAME {
        return format!("{kind}{escaped}.lock");
    }
    let hash = text.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
    });
    format!("{kind}-{hash:016x}.lock")
}

/// This process's network namespace, as its inode number (0 if unknown).
pub fn netns_id() -> u64 {
    use std::os::unix::fs::MetadataExt as _;
    std::fs::metadata("/proc/self/ns/net").map_or(0, |meta| meta.ino())
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::scratch::Dir;

    #[test]
    fn a_second_controller_sharing_any_part_of_the_data_path_is_refused() {
        let dir = Dir(std::env::temp_dir().join(format!("ha-lock-{}", std::process::id())));
        let locks = dir.0.join("locks");
        let (a, b) = (dir.0.join("a/ha.sock"), dir.0.join("b/ha.sock"));
        let ingress = ["eth0".to_owned()];
        let first = DataPath {
            control_socket: &a,
            pin_dir: Path::new("/sys/fs/bpf/ha"),
            lan: Some("eth1"),
            ingress: &ingress,
        };
        let _held = Lock::acquire_in(&locks, first).expect("the first controller");
        let held = |path: DataPath<'_>| match Lock::acquire_in(&locks, path) {
            Err(LockError::Held { what, .. }) => what,
            other => panic!("expected a refusal, got {other:?}"),
        };
        assert_eq!(
            held(DataPath {
                control_socket: &b,
                pin_dir: Path::new("/sys/fs/bpf//x/../ha/"),
                lan: Some("eth9"),
                ingress: &[],
            }),
            "the pins /sys/fs/bpf/ha"
        );
        let other_pins = DataPath {
            control_socket: &b,
            pin_dir: Path::new("/sys/fs/bpf/ha2"),
            lan: Some("eth1"),
            ingress: &[],
        };
        assert_eq!(held(other_pins), "the LAN interface eth1");
        let crossed = DataPath {
            lan: Some("eth0"),
            ..other_pins
        };
        assert_eq!(held(crossed), "the LAN interface eth0");
        assert_eq!(
            held(DataPath {
                lan: Some("eth9"),
                control_socket: &a,
                ..other_pins
            }),
            format!("the control socket {}", a.display())
        );
        let apart = DataPath {
            lan: Some("eth9"),
            ..other_pins
        };
        Lock::acquire_in(&locks, apart).expect("nothing shared");
    }

    #[test]
    fn lock_names_are_one_per_path() {
        assert_eq!(
            path_name("pins", Path::new("/sys/fs/bpf/ha")),
            "pins%2Fsys%2Ffs%2Fbpf%2Fha.lock"
        );
        assert_ne!(
            path_name("pins", Path::new("/a%2Fb")),
            path_name("pins", Path::new("/a/b"))
        );
        let long = PathBuf::from(format!("/sys/fs/bpf/{}", "x".repeat(300)));
        let name = path_name("pins", &long);
        assert!(name.len() < 64, "{name}");
        assert_eq!(
            normal(Path::new("/sys//fs/./bpf/a/../ha/")),
            Path::new("/sys/fs/bpf/ha")
        );
    }
}
