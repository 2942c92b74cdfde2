//! Checking that O_DIRECT works on a directory, and working around glommio 0.9's iopoll probe.
//!
//! glommio decides per thread and per block device whether to send file I/O to its polled ring
//! (`IORING_SETUP_IOPOLL`) by reading the first 512 bytes of the first file opened there. When
//! that file is empty the kernel answers the read without touching the device, glommio
//! concludes that polling works, and every later read on a device without poll queues (most
//! virtual disks, NVMe without `poll_queues`) fails with `EOPNOTSUPP`. Opening a file that
//! holds data first makes the probe real. [`check_direct_io`] does that once per thread and
//! device, and doubles as the start-up check that O_DIRECT works on the data directory.

use std::cell::RefCell;
use std::collections::HashSet;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use glommio::io::DmaFile;

use super::error::{StorageError, StorageResult};

const PROBE_FILE_NAME: &str = ".direct_io_probe";
const PROBE_BYTES: usize = 4096;

thread_local! {
    static CHECKED_DEVICES: RefCell<HashSet<u64>> = RefCell::new(HashSet::new());
}

/// Writes a small file in `dir` and reads it back with O_DIRECT through glommio. Fails with a
/// clear error when the filesystem does not support O_DIRECT (tmpfs on old kernels, some
/// network and overlay filesystems). Cheap after the first call for a device on a thread.
pub async fn check_direct_io(dir: &Path) -> StorageResult<()> {
    std::fs::create_dir_all(dir).map_err(|e| StorageError::io("creating directory", dir, e))?;
    let device = std::fs::metadata(dir).map_err(|e| StorageError::io("reading metadata of", dir, e))?.dev();
    if CHECKED_DEVICES.with(|checked| checked.borrow().contains(&device)) {
        return Ok(());
    }
    // One probe file per thread: shards of one broker probe the same directory at once.
    let path = dir.join(format!("{PROBE_FILE_NAME}.{}", std::process::id() as u64 * 1_000_000 + thread_number()));
    std::fs::write(&path, [0xA5u8; PROBE_BYTES]).map_err(|e| StorageError::io("writing probe file", &path, e))?;
    let result = read_back(&path).await;
    let _ = std::fs::remove_file(&path);
    result?;
    CHECKED_DEVICES.with(|checked| checked.borrow_mut().insert(device));
    Ok(())
}

/// A number for the calling thread, unique within the process.
fn thread_number() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    thread_local! {
        static NUMBER: u64 = NEXT.fetch_add(1, Ordering::Relaxed);
    }
    NUMBER.with(|number| *number)
}

async fn read_back(path: &Path) -> StorageResult<()> {
    let file = DmaFile::open(path).await.map_err(|e| StorageError::io("opening with O_DIRECT", path, e))?;
    let read = file.read_at_aligned(0, PROBE_BYTES).await;
    let _ = file.close().await;
    let read = read.map_err(|e| StorageError::io("reading with O_DIRECT", path, e))?;
    if read.len() != PROBE_BYTES || read.iter().any(|&byte| byte != 0xA5) {
        return Err(StorageError::Corrupt {
            path: path.to_path_buf(),
            position: 0,
            reason: "an O_DIRECT read returned other bytes than were written".into(),
        });
    }
    Ok(())
}
