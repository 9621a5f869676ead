//! Every host tool's deadline ([`Limit`]), and how the environment
//! changes them: `NDHARNESS_TOOL_TIMEOUT_<KEY>=DURATION` for one tool,
//! `NDHARNESS_TOOL_TIMEOUT_SCALE=FACTOR` for all. The deadlines are
//! generous: a healthy tool on a slow machine finishes well within them;
//! they turn a hang (a full disk, a dead mirror) into an error.

use std::time::Duration;

/// A host tool's name and how long it may take.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limit {
    /// What errors call it when the caller gives no name.
    pub name: &'static str,
    /// `NDHARNESS_TOOL_TIMEOUT_<KEY>` overrides the deadline.
    pub key: &'static str,
    deadline: Duration,
}

const fn minutes(n: u64) -> Duration {
    Duration::from_secs(n * 60)
}

/// apt-get update of one suite's index (a few MB to tens of MB).
pub const APT_UPDATE: Limit = Limit::new("apt-get update", "APT_UPDATE", minutes(10));
/// apt-get download of an image's packages (30 MB, 200 MB with the kernel
/// source nfit_test builds from), or of one source tarball.
pub const APT_DOWNLOAD: Limit = Limit::new("apt-get download", "APT_DOWNLOAD", minutes(30));
/// apt-get --print-uris and apt-cache: read the local index only.
pub const APT_QUERY: Limit = Limit::new("apt-cache", "APT_QUERY", minutes(5));
/// dpkg-deb -x of one package (linux-source is the largest, 150 MB).
pub const DPKG_DEB: Limit = Limit::new("dpkg-deb", "DPKG_DEB", minutes(10));
/// dpkg --compare-versions: pure computation.
pub const DPKG_COMPARE: Limit = Limit::new("dpkg --compare-versions", "DPKG_COMPARE", minutes(1));
/// depmod over one kernel's modules.
pub const DEPMOD: Limit = Limit::new("depmod", "DEPMOD", minutes(5));
/// tar: parts of a kernel source tarball (xz over 1.4 GB), or ndctl's.
pub const TAR: Limit = Limit::new("tar", "TAR", minutes(20));
/// patch -p1 of one of a recipe's kernel patches.
pub const PATCH: Limit = Limit::new("patch", "PATCH", minutes(2));
/// strip --strip-debug of one module.
pub const STRIP: Limit = Limit::new("strip", "STRIP", minutes(2));
/// xz, zstd or gzip -dc of one module.
pub const DECOMPRESS: Limit = Limit::new("xz", "DECOMPRESS", minutes(2));
/// busybox --list.
pub const BUSYBOX: Limit = Limit::new("busybox", "BUSYBOX", minutes(1));
/// mknod of a build root's /dev/null.
pub const MKNOD: Limit = Limit::new("mknod", "MKNOD", minutes(1));
/// make of nfit_test's modules (tools/testing/nvdimm), on the host or in a
/// build root.
pub const NFIT_TEST_MAKE: Limit = Limit::new("make (nfit_test)", "NFIT_TEST_MAKE", minutes(45));
/// meson and ninja of ndctl's tests in the build root.
pub const NDCTL_TESTS_BUILD: Limit =
    Limit::new("meson (ndctl tests)", "NDCTL_TESTS_BUILD", minutes(45));
/// make defconfig, merge_config.sh, make olddefconfig of a kernel tree.
pub const KERNEL_CONFIG: Limit = Limit::new("make (kernel config)", "KERNEL_CONFIG", minutes(15));
/// make bzImage modules of a kernel tree (a cold build of a small config
/// takes 10-60 minutes; a defconfig on few cores longer).
pub const KERNEL_MAKE: Limit = Limit::new("make (kernel)", "KERNEL_MAKE", minutes(240));
/// make modules_install of a kernel tree.
pub const KERNEL_MODULES_INSTALL: Limit = Limit::new(
    "make modules_install",
    "KERNEL_MODULES_INSTALL",
    minutes(30),
);
/// git rev-parse, bisect start/log/reset (a checkout of a kernel tree).
pub const GIT: Limit = Limit::new("git", "GIT", minutes(10));
/// git bisect run: every step builds a kernel and runs the case, each
/// under its own deadlines; this bounds the whole search.
pub const GIT_BISECT_RUN: Limit = Limit::new("git bisect run", "GIT_BISECT_RUN", minutes(48 * 60));

impl Limit {
    pub const fn new(name: &'static str, key: &'static str, deadline: Duration) -> Limit {
        Limit {
            name,
            key,
            deadline,
        }
    }

    /// The deadline in force: `NDHARNESS_TOOL_TIMEOUT_<KEY>`, else the
    /// default times `NDHARNESS_TOOL_TIMEOUT_SCALE`, else the default.
    pub fn deadline(&self) -> Duration {
        let own = std::env::var(format!("NDHARNESS_TOOL_TIMEOUT_{}", self.key)).ok();
        if let Some(d) = own.and_then(|v| humantime::parse_duration(v.trim()).ok()) {
            return d;
        }
        let scale = std::env::var("NDHARNESS_TOOL_TIMEOUT_SCALE").ok();
        match scale.and_then(|s| s.trim().parse::<f64>().ok()) {
            Some(f) if f.is_finite() && f > 0.0 => self.deadline.mul_f64(f),
            _ => self.deadline,
        }
    }
}
