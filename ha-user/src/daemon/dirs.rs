//! The directories that hold the control socket and the state file belong to root
//! alone: one another user owns, or may write into, would let that user replace the
//! socket under the controller or swap the state file for one with other pins and
//! drains. Each such file's directory, and every directory above it, is checked
//! before it is used; a sticky directory (`/tmp`) is fine, since only a file's owner
//! may unlink or rename it there.

use std::path::{Path, PathBuf};

use crate::kernel::datapath::pin_dir;

/// A directory that may not hold one of the controller's files, and why.
#[derive(Debug, thiserror::Error)]
#[error("{} {why}", dir.display())]
pub struct UnsafeDir {
    pub dir: PathBuf,
    pub why: String,
}

/// Why `dir` may not hold the controller's files, if not, judged like a directory
/// above the pin directory ([`pin_dir::unsafe_because`]). A directory that does not
/// exist is fine (the controller makes it, mode 0700); one that cannot be read is
/// left to the call that uses it, which says why.
fn unsafe_because(dir: &Path) -> Option<String> {
    pin_dir::unsafe_because(dir, false).ok().flatten()
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
