//! Free space checked before the harness writes something big into its
//! cache (an image, a saved state, a kernel build): a full disk is one
//! clear error naming the filesystem, what the write needs and what is
//! free, before anything is half written.

use std::path::{Path, PathBuf};

/// What an image build writes at most (measured 39-88 MB, and the
/// unpacked packages beside it while it runs).
pub const IMAGE_BUILD: u64 = 400 << 20;
/// What an nfit_test build writes while it runs (the guest suite's build
/// root, ~350 MB unpacked, the kernel headers and its 150 MB source
/// tarball; the modules it keeps are 1 MB).
pub const NFIT_TEST_BUILD: u64 = 1 << 30;
/// What the ndctl tests build writes while it runs (the build root,
/// ndctl's source and its meson build; the tests it keeps are 4 MB).
pub const NDCTL_TESTS_BUILD: u64 = 512 << 20;
/// What a kernel tree build writes at most (objects of a small
/// configuration and its modules: 370-400 MB measured with the mock
/// fragment on 7.3; a distribution's configuration takes more).
pub const KERNEL_BUILD: u64 = 3 << 29;
/// What a saved state takes beyond the guest's RAM (device state, the
/// sparse backing files' written blocks).
pub const STATE_OVERHEAD: u64 = 64 << 20;
/// The most a saved state is expected to take, whatever its guest's RAM:
/// QEMU writes a page that was never touched as a flag, not as 4 KiB, so
/// a state holds what the guest wrote (measured: 170 MB for nfit-1 and
/// cxl-x8, 320 MB for e820-2g's 8 GB guest); 1 GB is room for three times
/// the largest.
/// A save that outgrows the disk anyway fails cleanly and its group boots
/// cold ([`crate::runner::warm`]).
pub const SAVED_STATE_AT_MOST: u64 = 1 << 30;

/// The free space a saved state of a guest with `ram` bytes of memory is
/// checked for before it is written.
pub fn saved_state(ram: u64) -> u64 {
    (ram + STATE_OVERHEAD).min(SAVED_STATE_AT_MOST)
}

#[derive(Debug, thiserror::Error)]
#[error("no space on {filesystem} for {what}: needs {}, has {}", human(*.needs), human(*.has))]
pub struct NoSpace {
    pub filesystem: PathBuf,
    pub what: String,
    pub needs: u64,
    pub has: u64,
}

/// Bytes as a person reads them: `1.5 GB`, `30 MB`.
pub fn human(bytes: u64) -> String {
    if bytes >= 1 << 30 {
        format!("{:.1} GB", bytes as f64 / f64::from(1u32 << 30))
    } else {
        format!("{} MB", bytes >> 20)
    }
}

/// Bytes free to an unprivileged writer on the filesystem holding `path`
/// (or its nearest existing ancestor), and that filesystem's mount point.
pub fn available(path: &Path) -> Option<(u64, PathBuf)> {
    let existing = path.ancestors().find(|p| p.exists())?;
    let c = std::ffi::CString::new(existing.as_os_str().as_encoded_bytes()).ok()?;
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: statvfs writes into the struct it is given; the path is a
    // NUL-terminated string that lives across the call.
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        return None;
    }
    let free = st.f_bavail as u64 * st.f_frsize as u64;
    Some((free, mount_point(existing)))
}

/// The mount point a path lives on (the longest /proc/mounts entry that
/// is a prefix of it).
fn mount_point(path: &Path) -> PathBuf {
    let path = path.canonicalize().unwrap_or_else(|_| path.to_owned());
    let mounts = std::fs::read_to_string("/proc/mounts").unwrap_or_default();
    mounts
        .lines()
        .filter_map(|l| l.split_whitespace().nth(1))
        .map(|m| PathBuf::from(m.replace("\\040", " ")))
        .filter(|m| path.starts_with(m))
        .max_by_key(|m| m.as_os_str().len())
        .unwrap_or(path)
}

/// Refuses when the filesystem holding `path` has less than `needs` free.
/// When free space cannot be read, the write goes ahead (and an ENOSPC is
/// reported as it comes).
pub fn require(path: &Path, needs: u64, what: &str) -> Result<(), NoSpace> {
    match available(path) {
        Some((has, filesystem)) if has < needs => Err(NoSpace {
            filesystem,
            what: what.to_owned(),
            needs,
            has,
        }),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_write_larger_than_the_disk_is_refused_with_the_numbers() {
        let dir = tempfile::tempdir().unwrap();
        require(dir.path(), 1, "a byte").unwrap();
        let e = require(&dir.path().join("not/yet/made"), u64::MAX, "everything").unwrap_err();
        let text = e.to_string();
        assert!(text.starts_with("no space on /"), "{text}");
        assert!(text.contains("for everything: needs "), "{text}");
        assert!(e.has > 0 && e.has < u64::MAX);
    }

    #[test]
    fn a_saved_state_is_sized_by_what_its_guest_wrote_not_its_ram() {
        assert_eq!(saved_state(512 << 20), (512 << 20) + STATE_OVERHEAD);
        assert_eq!(saved_state(8 << 30), SAVED_STATE_AT_MOST);
    }

    #[test]
    fn sizes_read_as_people_write_them() {
        assert_eq!(human(30 << 20), "30 MB");
        assert_eq!(human(3 << 29), "1.5 GB");
    }
}
