//! What the JSON report says about the machine: CPU model, cores, kernel, the filesystem the
//! broker's data lives on, and the git commit of the code measured.

use std::path::Path;

#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct Host {
    pub cpu_model: Option<String>,
    /// CPUs this process may run on.
    pub cores: usize,
    pub kernel: Option<String>,
    /// Filesystem type and device of the broker's data dir (embedded runs only).
    pub data_dir_filesystem: Option<Filesystem>,
    pub git_commit: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Filesystem {
    pub mount_point: String,
    pub fs_type: String,
    pub device: String,
}

pub fn probe(data_dir: Option<&Path>) -> Host {
    Host {
        cpu_model: std::fs::read_to_string("/proc/cpuinfo").ok().and_then(|text| cpu_model(&text)),
        cores: std::thread::available_parallelism().map(usize::from).unwrap_or(1),
        kernel: kernel_release(),
        data_dir_filesystem: data_dir.and_then(|dir| {
            let dir = dir.canonicalize().ok()?;
            let mounts = std::fs::read_to_string("/proc/self/mounts").ok()?;
            filesystem_of(&mounts, &dir.to_string_lossy())
        }),
        git_commit: git_commit(),
    }
}

/// The first `model name` of /proc/cpuinfo.
pub fn cpu_model(cpuinfo: &str) -> Option<String> {
    cpuinfo
        .lines()
        .find_map(|line| line.strip_prefix("model name"))
        .and_then(|rest| rest.split_once(':'))
        .map(|(_, model)| model.trim().to_owned())
}

/// `uname -sr`, from uname(2).
fn kernel_release() -> Option<String> {
    // SAFETY: `utsname` is plain old data; zeroed is a valid value and uname fills it.
    let mut name: libc::utsname = unsafe { std::mem::zeroed() };
    // SAFETY: `name` is a valid, writable utsname.
    if unsafe { libc::uname(&mut name) } != 0 {
        return None;
    }
    let field = |chars: &[libc::c_char]| -> String {
        let bytes: Vec<u8> = chars.iter().take_while(|&&c| c != 0).map(|&c| c as u8).collect();
        String::from_utf8_lossy(&bytes).into_owned()
    };
    Some(format!("{} {}", field(&name.sysname), field(&name.release)))
}

/// The mount holding `path`: the longest mount point that is a prefix of it.
pub fn filesystem_of(mounts: &str, path: &str) -> Option<Filesystem> {
    mounts
        .lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let device = fields.next()?;
            let mount_point = fields.next()?.replace("\\040", " ");
            let fs_type = fields.next()?;
            let inside = path == mount_point
                || mount_point == "/"
                || path.strip_prefix(mount_point.as_str()).is_some_and(|rest| rest.starts_with('/'));
            inside.then(|| Filesystem { mount_point, fs_type: fs_type.to_owned(), device: device.to_owned() })
        })
        .max_by_key(|fs| fs.mount_point.len())
}

fn git_commit() -> Option<String> {
    let output = std::process::Command::new("git").args(["rev-parse", "HEAD"]).output().ok()?;
    if !output.status.success() {
        return None;
    }
    let commit = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    (!commit.is_empty()).then_some(commit)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_cpu_model_and_mounts() {
        let cpuinfo = "processor\t: 0\nvendor_id\t: GenuineIntel\nmodel name\t: Intel(R) Xeon(R) CPU @ 2.20GHz\n";
        assert_eq!(cpu_model(cpuinfo).as_deref(), Some("Intel(R) Xeon(R) CPU @ 2.20GHz"));
        let mounts = "/dev/vda1 / ext4 rw 0 0\ntmpfs /tmp tmpfs rw 0 0\n/dev/vdb /work xfs rw 0 0\n";
        let fs = filesystem_of(mounts, "/work/x/target/d").unwrap();
        assert_eq!((fs.fs_type.as_str(), fs.mount_point.as_str()), ("xfs", "/work"));
        assert_eq!(filesystem_of(mounts, "/workshop").unwrap().fs_type, "ext4");
        assert_eq!(filesystem_of(mounts, "/tmp").unwrap().fs_type, "tmpfs");
    }
}
