//! Reading a configuration file without blocking on what is not one: the path is
//! opened non-blocking (a FIFO would block its reader until a writer comes), and
//! anything but a regular file (a FIFO, a device such as `/dev/urandom`, which never
//! ends), a file of procfs or sysfs, or a file over [`MAX_CONFIG`] bytes is refused
//! before a byte is read. `run`, `check-config`, SIGHUP and the CLI all read this way.

use std::{
    fs::{File, FileType, OpenOptions},
    io::{self, Read as _},
    os::{
        fd::AsRawFd as _,
        unix::fs::{FileTypeExt as _, OpenOptionsExt as _},
    },
    path::Path,
};

use super::ConfigError;

/// The largest configuration read: far beyond the largest table (a 10,000-prefix
/// file is under 1 MiB).
pub const MAX_CONFIG: u64 = 16 * 1024 * 1024;

const PROC_SUPER_MAGIC: i64 = 0x9fa0;
const SYSFS_MAGIC: i64 = 0x6265_6572;

/// What a file type is, for errors: `a FIFO`, `a character device`, ...
pub fn kind_of(kind: FileType) -> &'static str {
    if kind.is_file() {
        "a regular file"
    } else if kind.is_dir() {
        "a directory"
    } else if kind.is_symlink() {
        "a symlink"
    } else if kind.is_fifo() {
        "a FIFO"
    } else if kind.is_socket() {
        "a socket"
    } else if kind.is_char_device() {
        "a character device"
    } else if kind.is_block_device() {
        "a block device"
    } else {
        "a special file"
    }
}

/// The file system `file` is on, if procfs or sysfs (files that are not data).
fn pseudo_fs(file: &File) -> Option<&'static str> {
    // SAFETY: all-zero is a valid `statfs`.
    let mut stat: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: a valid open descriptor and a valid out-pointer.
    if unsafe { libc::fstatfs(file.as_raw_fd(), &mut stat) } != 0 {
        return None;
    }
    match stat.f_type as i64 {
        PROC_SUPER_MAGIC => Some("procfs"),
        SYSFS_MAGIC => Some("sysfs"),
        _ => None,
    }
}

/// The text of the configuration file at `path`.
pub fn read(path: &Path) -> Result<String, ConfigError> {
    let read_err = |source| ConfigError::Read {
        path: path.to_owned(),
        source,
    };
    let refused = |why: String| ConfigError::NotAFile {
        path: path.to_owned(),
        why,
    };
    let mut file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(read_err)?;
    let meta = file.metadata().map_err(read_err)?;
    if !meta.file_type().is_file() {
        return Err(refused(format!(
            "is {}, not a regular file",
            kind_of(meta.file_type())
        )));
    }
    if let Some(fs) = pseudo_fs(&file) {
        return Err(refused(format!(
            "is a file of {fs}, not a configuration file"
        )));
    }
    if meta.len() > MAX_CONFIG {
        return Err(refused(format!(
            "is {} bytes long; a configuration holds at most {MAX_CONFIG}",
            meta.len()
        )));
    }
    let mut bytes = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0));
    (&mut file)
        .take(MAX_CONFIG + 1)
        .read_to_end(&mut bytes)
        .map_err(read_err)?;
    if bytes.len() as u64 > MAX_CONFIG {
        return Err(refused(format!(
            "grew beyond {MAX_CONFIG} bytes while being read"
        )));
    }
    String::from_utf8(bytes).map_err(|err| {
        read_err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "not UTF-8 text (an invalid byte at offset {})",
                err.utf8_error().valid_up_to()
            ),
        ))
    })
}
