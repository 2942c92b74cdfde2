//! Small metadata files of a partition directory, written atomically (temp file, fsync,
//! rename, fsync of the directory) with blocking std I/O: they are tiny and written rarely
//! (retention, roll, close), so they do not justify a trip through the ring.
//!
//! - `log_start_offset`: the first offset the log serves, as decimal text.
//! - `clean_shutdown`: present only after a clean close; its content is the active segment's
//!   base offset and logical size. Removed as soon as the log is opened.

use std::fs;
use std::io::Write;
use std::path::Path;

use super::error::{StorageError, StorageResult};
use crate::model::Offset;

pub const LOG_START_FILE_NAME: &str = "log_start_offset";
pub const CLEAN_SHUTDOWN_FILE_NAME: &str = "clean_shutdown";

/// Replaces `dir/name` with `contents` so that a crash leaves either the old or the new file.
pub fn write_atomically(dir: &Path, name: &str, contents: &[u8]) -> StorageResult<()> {
    let final_path = dir.join(name);
    let temp_path = dir.join(format!("{name}.tmp"));
    let write = || -> std::io::Result<()> {
        let mut file = fs::File::create(&temp_path)?;
        file.write_all(contents)?;
        file.sync_data()?;
        fs::rename(&temp_path, &final_path)?;
        sync_dir(dir)
    };
    write().map_err(|e| StorageError::io("writing", &final_path, e))
}

/// Makes a rename, create or unlink in `dir` durable.
pub fn sync_dir(dir: &Path) -> std::io::Result<()> {
    fs::File::open(dir)?.sync_all()
}

/// Reads `dir/name`, or `None` if it does not exist.
pub fn read_optional(dir: &Path, name: &str) -> StorageResult<Option<Vec<u8>>> {
    let path = dir.join(name);
    match fs::read(&path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(StorageError::io("reading", &path, e)),
    }
}

pub fn remove_if_present(dir: &Path, name: &str) -> StorageResult<()> {
    let path = dir.join(name);
    match fs::remove_file(&path) {
        Ok(()) => sync_dir(dir).map_err(|e| StorageError::io("syncing directory", dir, e)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(StorageError::io("removing", &path, e)),
    }
}

pub fn read_log_start(dir: &Path) -> StorageResult<Option<Offset>> {
    let Some(bytes) = read_optional(dir, LOG_START_FILE_NAME)? else {
        return Ok(None);
    };
    let text = String::from_utf8_lossy(&bytes);
    text.trim().parse::<u64>().map(|value| Some(Offset(value))).map_err(|e| StorageError::Corrupt {
        path: dir.join(LOG_START_FILE_NAME),
        position: 0,
        reason: format!("not a decimal offset: {e}"),
    })
}

pub fn write_log_start(dir: &Path, offset: Offset) -> StorageResult<()> {
    write_atomically(dir, LOG_START_FILE_NAME, format!("{}\n", offset.0).as_bytes())
}

/// What a clean close recorded about the active segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CleanShutdown {
    pub active_base_offset: Offset,
    pub active_size_bytes: u64,
    pub next_offset: Offset,
}

impl CleanShutdown {
    pub fn encode(&self) -> Vec<u8> {
        format!("{} {} {}\n", self.active_base_offset.0, self.active_size_bytes, self.next_offset.0).into_bytes()
    }

    /// `None` for anything but three decimal numbers: the marker is then ignored and the
    /// tail is scanned, which is always safe.
    pub fn decode(bytes: &[u8]) -> Option<CleanShutdown> {
        let text = std::str::from_utf8(bytes).ok()?;
        let mut fields = text.split_whitespace().map(str::parse::<u64>);
        let marker = CleanShutdown {
            active_base_offset: Offset(fields.next()?.ok()?),
            active_size_bytes: fields.next()?.ok()?,
            next_offset: Offset(fields.next()?.ok()?),
        };
        fields.next().is_none().then_some(marker)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_start_round_trips_and_garbage_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(read_log_start(dir.path()).unwrap(), None);
        write_log_start(dir.path(), Offset(42)).unwrap();
        assert_eq!(read_log_start(dir.path()).unwrap(), Some(Offset(42)));
        fs::write(dir.path().join(LOG_START_FILE_NAME), b"forty-two").unwrap();
        assert!(matches!(read_log_start(dir.path()), Err(StorageError::Corrupt { .. })));
    }

    #[test]
    fn clean_shutdown_marker_round_trips_and_rejects_garbage() {
        let marker = CleanShutdown { active_base_offset: Offset(5), active_size_bytes: 4096, next_offset: Offset(9) };
        assert_eq!(CleanShutdown::decode(&marker.encode()), Some(marker));
        for garbage in [&b""[..], b"1 2", b"1 2 3 4", b"a b c", &[0xff, 0xfe]] {
            assert_eq!(CleanShutdown::decode(garbage), None);
        }
    }
}
