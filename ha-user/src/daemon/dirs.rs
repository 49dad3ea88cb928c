//! The directories that hold the control socket and the state file belong to root
//! alone: one another user owns, or may write into, would let that user replace the
//! socket under the controller or swap the state file for one with other pins and
//! drains. Each such file's directory, and every directory above it, is checked
//! before it is used; a sticky directory (`/tmp`) is fine, since only a file's owner
//! may unlink or rename it there.

use std::{
    os::unix::fs::MetadataExt as _,
    path::{Path, PathBuf},
};

/// The sticky bit: in a sticky directory only a file's owner may unlink or rename it.
const STICKY: u32 = 0o1000;

/// A directory that may not hold one of the controller's files, and why.
#[derive(Debug, thiserror::Error)]
#[error("{} {why}", dir.display())]
pub struct UnsafeDir {
    pub dir: PathBuf,
    pub why: String,
}

/// Why `dir` may not hold the controller's files, if not: another user owns it, or
/// others may write into it without the sticky bit. A directory that does not exist
/// is fine (the controller makes it, mode 0700); one that cannot be read is left to
/// the call that uses it, which says why.
fn unsafe_because(dir: &Path) -> Option<String> {
    let meta = std::fs::metadata(dir).ok()?;
    if !meta.is_dir() {
        return Some("is not a directory".to_owned());
    }
    // SAFETY: geteuid has no preconditions.
    let me = unsafe { libc::geteuid() };
    if meta.uid() != me && meta.uid() != 0 {
        return Some(format!("is owned by uid {}", meta.uid()));
    }
    let mode = meta.mode();
    if mode & 0o022 != 0 && mode & STICKY == 0 {
        return Some(format!(
            "is writable by other users (mode {:o})",
            mode & 0o7777
        ));
    }
    None
}

/// Refuses the directories above `file` (its own and every one up to `/`) when one
/// is another user's or open to others.
pub fn check_above(file: &Path) -> Result<(), UnsafeDir> {
    for dir in file.ancestors().skip(1) {
        if dir.as_os_str().is_empty() {
            continue;
        }
        if let Some(why) = unsafe_because(dir) {
            return Err(UnsafeDir {
                dir: dir.to_owned(),
                why,
            });
        }
    }
    Ok(())
}
