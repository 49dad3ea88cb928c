//! One controller per router: an exclusive lock beside the control socket.

use std::{
    fs::File,
    io,
    os::fd::AsRawFd as _,
    path::{Path, PathBuf},
};

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("cannot create {}", path.display())]
    Create {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("another ha-user run holds {}; stop it first (or use the CLI to talk to it)", path.display())]
    Held { path: PathBuf },
}

/// Held for the life of the controller; the kernel releases it when the process ends,
/// however it ends.
#[derive(Debug)]
pub struct Lock {
    _file: File,
}

impl Lock {
    /// Locks `<socket dir>/ha.lock`.
    pub fn acquire(control_socket: &Path) -> Result<Lock, LockError> {
        let dir = control_socket.parent().unwrap_or(Path::new("/run/ha"));
        let path = dir.join("ha.lock");
        let create = |source| LockError::Create {
            path: path.clone(),
            source,
        };
        std::fs::create_dir_all(dir).map_err(create)?;
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(create)?;
        // SAFETY: a valid open descriptor; flock has no memory preconditions.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc != 0 {
            let err = io::Error::last_os_error();
            if err.raw_os_error() == Some(libc::EWOULDBLOCK) {
                return Err(LockError::Held { path });
            }
            return Err(create(err));
        }
        Ok(Lock { _file: file })
    }
}
