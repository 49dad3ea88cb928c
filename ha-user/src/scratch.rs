//! What several modules' unit tests share (compiled only for tests).

use std::path::PathBuf;

/// A directory of the unit tests, removed with what it holds when dropped.
pub(crate) struct Dir(pub(crate) PathBuf);

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
