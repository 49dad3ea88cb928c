//! The pin directory belongs to root alone. bpffs is world-writable (mode 1777, like
//! `/tmp`), so any user could make the directory first and, owning it, unlink the
//! XDP link or rename the maps under the controller. A pin directory, or any
//! directory above it, that another user owns or may write into is refused; the
//! controller makes its pin directory with mode 0700 in one `mkdir`, so there is no
//! moment when it is anyone else's.

use std::{
    fs::DirBuilder,
    io,
    os::unix::fs::{DirBuilderExt as _, MetadataExt as _, PermissionsExt as _},
    path::Path,
};

use super::DatapathError;

/// The sticky bit: in a sticky directory only a file's owner may unlink or rename it.
const STICKY: u32 = 0o1000;

/// Why `path` may not hold root's files, if not: another user owns it, or others may
/// write into it. `own`: the directory that holds them (the pin directory: no symlink,
/// no write bit for others even with the sticky bit); else one above it (a symlink
/// is followed; a sticky directory is fine, only a file's owner may unlink or rename
/// there). The daemon's socket and state directories are judged by it too
/// (`daemon::dirs`).
pub fn unsafe_because(path: &Path, own: bool) -> io::Result<Option<String>> {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(err) => return Err(err),
    };
    if meta.file_type().is_symlink() && own {
        return Ok(Some("is a symlink".to_owned()));
    }
    // Above the pin directory a symlink is followed: what it points at counts.
    let meta = if meta.file_type().is_symlink() {
        std::fs::metadata(path)?
    } else {
        meta
    };
    if !meta.is_dir() {
        return Ok(Some("is not a directory".to_owned()));
    }
    // SAFETY: geteuid has no preconditions.
    let me = unsafe { libc::geteuid() };
    if meta.uid() != me && meta.uid() != 0 {
        return Ok(Some(format!("is owned by uid {}", meta.uid())));
    }
    let mode = meta.permissions().mode();
    let writable = mode & 0o022 != 0;
    if writable && (own || mode & STICKY == 0) {
        return Ok(Some(format!(
            "is writable by other users (mode {:o})",
            mode & 0o7777
        )));
    }
    Ok(None)
}

/// Refuses `pin_dir` if it, or a directory above it, is another user's or writable
/// by other users (a sticky directory such as the bpffs root is fine above it).
pub fn check(pin_dir: &Path) -> Result<(), DatapathError> {
    for (depth, dir) in pin_dir.ancestors().enumerate() {
        if dir.as_os_str().is_empty() {
            continue;
        }
        let why = unsafe_because(dir, depth == 0).map_err(|source| DatapathError::PinDir {
            path: dir.to_owned(),
            source,
        })?;
        if let Some(why) = why {
            return Err(DatapathError::PinDirUnsafe {
                path: dir.to_owned(),
                pin_dir: pin_dir.to_owned(),
                why,
            });
        }
    }
    Ok(())
}

/// Makes `pin_dir` (mode 0700, and any missing directory above it) unless it exists,
/// then [`check`]s it: one made by someone else meanwhile is refused.
pub fn create(pin_dir: &Path) -> Result<(), DatapathError> {
    check(pin_dir)?;
    DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(pin_dir)
        .map_err(|source| DatapathError::PinDir {
            path: pin_dir.to_owned(),
            source,
        })?;
    check(pin_dir)
}

#[cfg(test)]
mod tests {
    use std::ffi::CString;

    use super::*;

    use crate::scratch::Dir;

    fn chown(path: &Path, uid: u32) -> bool {
        let c_path = CString::new(path.as_os_str().as_encoded_bytes()).expect("path");
        // SAFETY: a valid NUL-terminated path.
        unsafe { libc::chown(c_path.as_ptr(), uid, uid) == 0 }
    }

    #[test]
    fn a_directory_of_another_user_or_open_to_others_is_refused() {
        let dir = Dir(std::env::temp_dir().join(format!("ha-pin-dir-{}", std::process::id())));
        std::fs::create_dir_all(&dir.0).expect("dir");
        std::fs::set_permissions(&dir.0, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        let pins = dir.0.join("pins");
        create(&pins).expect("made");
        let mode = std::fs::metadata(&pins).expect("stat").permissions().mode();
        assert_eq!(mode & 0o7777, 0o700);
        check(&pins).expect("ours");

        std::fs::set_permissions(&pins, std::fs::Permissions::from_mode(0o777)).expect("chmod");
        let err = check(&pins).expect_err("open to others").to_string();
        assert!(
            err.contains("is writable by other users (mode 777)"),
            "{err}"
        );
        std::fs::set_permissions(&pins, std::fs::Permissions::from_mode(0o700)).expect("chmod");

        let link = dir.0.join("link");
        std::os::unix::fs::symlink(&pins, &link).expect("symlink");
        let err = check(&link).expect_err("a symlink").to_string();
        assert!(err.contains("is a symlink"), "{err}");

        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("SKIPPED (part): a directory of another user needs root to chown");
            return;
        }
        assert!(chown(&pins, 65534), "chown");
        let err = check(&pins).expect_err("nobody's").to_string();
        assert!(
            err.contains(&format!("{} is owned by uid 65534", pins.display())),
            "{err}"
        );
        let err = create(&pins).expect_err("nobody's").to_string();
        assert!(err.contains("is owned by uid 65534"), "{err}");
        let below = pins.join("ha");
        let err = check(&below).expect_err("under nobody's").to_string();
        assert!(
            err.contains(&format!("{} is owned by uid 65534", pins.display())),
            "{err}"
        );
    }
}
