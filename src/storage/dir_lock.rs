//! An exclusive lock on a data directory, so that two broker processes never open the same logs.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use super::error::{StorageError, StorageResult};

pub const LOCK_FILE_NAME: &str = ".lock";

/// Holds `flock(LOCK_EX)` on `<dir>/.lock` for as long as it lives. The kernel drops the lock
/// when the process dies, so a crashed broker never leaves a stale lock behind.
#[derive(Debug)]
pub struct DataDirLock {
    _file: File,
    path: PathBuf,
}

impl DataDirLock {
    /// Creates `dir` if needed and takes the lock, or fails at once if another process has it.
    pub fn acquire(dir: &Path) -> StorageResult<DataDirLock> {
        std::fs::create_dir_all(dir).map_err(|e| StorageError::io("creating data directory", dir, e))?;
        let path = dir.join(LOCK_FILE_NAME);
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&path)
            .map_err(|e| StorageError::io("opening lock file", &path, e))?;
        // SAFETY: flock on a file descriptor that `file` owns and keeps open; no memory is
        // passed to the kernel.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc != 0 {
            let error = io::Error::last_os_error();
            if error.kind() == io::ErrorKind::WouldBlock {
                return Err(StorageError::Locked {
                    path: dir.to_path_buf(),
                    detail: "is another ringmq process using it?".into(),
                });
            }
            return Err(StorageError::io("locking", &path, error));
        }
        Ok(DataDirLock { _file: file, path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_on_the_same_dir_is_refused_until_the_first_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let first = DataDirLock::acquire(dir.path()).unwrap();
        // flock locks belong to the open file description, so a second open in the same
        // process conflicts just as another process would.
        assert!(matches!(DataDirLock::acquire(dir.path()), Err(StorageError::Locked { .. })));
        drop(first);
        assert!(DataDirLock::acquire(dir.path()).is_ok());
    }
}
