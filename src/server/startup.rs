//! Start-up checks and logging. Each failed check is one actionable message (what is wrong and
//! the command that fixes it) and a non-zero exit, never a panic.

use std::path::Path;

use super::ServeArgs;

/// glommio's default I/O memory per executor; it registers it with io_uring when the
/// locked-memory limit allows (the kernel charges it about three times, once per ring).
pub const IO_MEMORY_BYTES_PER_EXECUTOR: u64 = 10 << 20;
/// Below this locked-memory limit glommio cannot start an executor at all.
pub const MEMLOCK_BYTES_MIN: u64 = 512 << 10;
/// Refuse to start with less free space than this in the data directory.
pub const FREE_DISK_BYTES_MIN: u64 = 64 << 20;

pub fn init_logging(filter: &str) -> Result<(), String> {
    let filter = tracing_subscriber::EnvFilter::try_new(filter).map_err(|e| {
        format!("invalid --log-level {filter:?}: {e} (try info, debug or ringmq=debug)")
    })?;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init()
        .map_err(|e| format!("cannot start logging: {e}"))
}

/// Checks what can be checked before any executor starts. Returns a description of the
/// I/O memory mode for the start-up log.
pub fn check_environment(args: &ServeArgs, shard_count: usize) -> Result<String, String> {
    if args.shard_memory_bytes < args.max_frame_bytes as usize {
        return Err(format!(
            "--shard-memory-bytes ({}) must be at least --max-frame-bytes ({}), or no frame of that size could ever be read",
            args.shard_memory_bytes, args.max_frame_bytes
        ));
    }
    check_io_uring()?;
    let memlock = memlock_limit_bytes();
    if memlock.is_some_and(|limit| limit < MEMLOCK_BYTES_MIN) {
        return Err(format!(
            "the locked-memory limit is {} KiB; glommio needs at least {} KiB per process: run `ulimit -l unlimited` \
             (or set LimitMEMLOCK=infinity in the systemd unit; see tuning/README.md)",
            memlock.unwrap_or(0) >> 10,
            MEMLOCK_BYTES_MIN >> 10
        ));
    }
    check_free_space(&args.data_dir)?;
    let wanted = 3 * IO_MEMORY_BYTES_PER_EXECUTOR * shard_count as u64;
    Ok(match memlock {
        None => "registered I/O buffers (locked-memory limit: unlimited)".to_string(),
        Some(limit) if limit >= wanted || is_root() => {
            format!("registered I/O buffers if the kernel allows (locked-memory limit {} MiB)", limit >> 20)
        }
        Some(limit) => format!(
            "unregistered I/O buffers: the locked-memory limit {} MiB is below the ~{} MiB that {shard_count} executors \
             would register; it works, a little slower (raise it: `ulimit -l unlimited`, see tuning/README.md)",
            limit >> 20,
            wanted >> 20
        ),
    })
}

fn check_io_uring() -> Result<(), String> {
    match std::fs::read_to_string("/proc/sys/kernel/io_uring_disabled") {
        Ok(text) if text.trim() == "2" => Err(
            "io_uring is disabled on this host (kernel.io_uring_disabled=2): run `sysctl -w kernel.io_uring_disabled=0`"
                .into(),
        ),
        _ => Ok(()),
    }
}

fn memlock_limit_bytes() -> Option<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we pass, which lives for the call.
    let rc = unsafe { libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut limit) };
    if rc != 0 || limit.rlim_cur == libc::RLIM_INFINITY {
        return None;
    }
    Some(limit.rlim_cur)
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

fn check_free_space(data_dir: &Path) -> Result<(), String> {
    std::fs::create_dir_all(data_dir).map_err(|e| {
        format!(
            "cannot create the data directory {}: {e}",
            data_dir.display()
        )
    })?;
    let path = std::ffi::CString::new(data_dir.as_os_str().as_encoded_bytes()).map_err(|_| {
        format!(
            "the data directory path {} contains a NUL byte",
            data_dir.display()
        )
    })?;
    // SAFETY: an all-zero statvfs is a valid value for the kernel to overwrite.
    let mut stats: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `path` is a NUL-terminated string and `stats` a valid out-pointer, both live for the call.
    if unsafe { libc::statvfs(path.as_ptr(), &mut stats) } != 0 {
        return Err(format!(
            "cannot read free space of {}: {}",
            data_dir.display(),
            std::io::Error::last_os_error()
        ));
    }
    let free = stats.f_bavail as u64 * stats.f_frsize as u64;
    if free < FREE_DISK_BYTES_MIN {
        return Err(format!(
            "only {} MiB free in {}; the broker needs at least {} MiB: free space or point --data-dir elsewhere",
            free >> 20,
            data_dir.display(),
            FREE_DISK_BYTES_MIN >> 20
        ));
    }
    Ok(())
}

/// CPUs this process may run on, in order.
pub fn usable_cpus() -> Vec<usize> {
    // SAFETY: an all-zero cpu_set_t is the empty set, a valid value to pass.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: pid 0 is this thread; `set` is a valid cpu_set_t of the size we pass.
    let rc =
        unsafe { libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) };
    if rc != 0 {
        return (0..std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1))
            .collect();
    }
    // SAFETY: CPU_ISSET reads the set we own, for indexes below CPU_SETSIZE.
    (0..libc::CPU_SETSIZE as usize)
        .filter(|&cpu| unsafe { libc::CPU_ISSET(cpu, &set) })
        .collect()
}
