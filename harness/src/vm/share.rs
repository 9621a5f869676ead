//! Host folders in the guest (`--share HOST_DIR[:GUEST_PATH]`, a case's
//! `CASE.files/`): 9p over virtio. Each share is a QEMU `-fsdev local` with
//! a `virtio-9p-pci` device on the command line (QEMU has no command to add
//! an fsdev to a running machine), and a `mount -t 9p` in the guest once it
//! runs. The mount comes after any saved state: QEMU refuses to migrate
//! while a 9p export is mounted ("Migration is disabled when VirtFS export
//! path ... is mounted"), and restores a state saved with the device
//! unmounted onto another host folder, so a template guest never mounts.

use std::path::{Path, PathBuf};

/// Where the files a case brings (`suites/SUITE/CASE.files/`) are in its
/// guest, read-only.
pub const CASE_FILES: &str = "/case";

/// Guest folders a share must not cover: the guest would lose its own
/// tools, its devices or the harness's scripts.
const GUEST_SYSTEM: &[&str] = &[
    "/", "/bin", "/dev", "/etc", "/lib", "/lib64", "/proc", "/run", "/sbin", "/sys", "/usr",
];

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("`{spec}`: {why}")]
    Spec { spec: String, why: String },
    #[error("{path}: {source}")]
    Host {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0} is not a folder: --share takes a folder (HOST_DIR[:GUEST_PATH])")]
    NotAFolder(PathBuf),
}

/// One host folder shared into the guest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Share {
    /// An absolute host path.
    pub host: PathBuf,
    /// An absolute guest path, the mount point.
    pub guest: PathBuf,
    pub read_only: bool,
}

impl Share {
    /// Reads `HOST_DIR[:GUEST_PATH]`: a relative HOST_DIR is taken from
    /// `cwd`; GUEST_PATH defaults to the host folder's own absolute path,
    /// so a script that names its files by their host paths runs unchanged.
    /// Nothing on the host is looked at (see [`Share::resolve`]).
    pub fn parse(spec: &str, cwd: &Path) -> Result<Share, Error> {
        let bad = |why: &str| Error::Spec {
            spec: spec.to_owned(),
            why: why.to_owned(),
        };
        let (host, guest) = match spec.split_once(':') {
            Some((h, g)) => (h, Some(g)),
            None => (spec, None),
        };
        if host.is_empty() {
            return Err(bad("no host folder before the `:`"));
        }
        let host = normal(&cwd.join(host));
        let guest = match guest {
            None => host.clone(),
            Some("") => return Err(bad("no guest path after the `:`")),
            Some(g) if !g.starts_with('/') => {
                return Err(bad("the guest path must be absolute (/mnt/NAME)"))
            }
            Some(g) => normal(Path::new(g)),
        };
        if let Some(system) = GUEST_SYSTEM
            .iter()
            .find(|s| guest == Path::new(s) || Path::new(s).starts_with(&guest))
        {
            return Err(bad(&format!(
                "mounted at {}, it would hide the guest's own {system}: give another guest path (HOST_DIR:/mnt/NAME)",
                guest.display()
            )));
        }
        if ["/proc", "/sys", "/dev"]
            .iter()
            .any(|s| guest.starts_with(s))
        {
            return Err(bad("the guest path is inside a kernel file system"));
        }
        Ok(Share {
            host,
            guest,
            read_only: false,
        })
    }

    /// The host folder made canonical, checked to be a folder.
    pub fn resolve(mut self) -> Result<Share, Error> {
        let host = self.host.canonicalize().map_err(|source| Error::Host {
            path: self.host.clone(),
            source,
        })?;
        if !host.is_dir() {
            return Err(Error::NotAFolder(host));
        }
        self.host = host;
        Ok(self)
    }

    /// A case's own files, read-only at [`CASE_FILES`].
    pub fn case_files(dir: &Path) -> Share {
        Share {
            host: dir.to_owned(),
            guest: PathBuf::from(CASE_FILES),
            read_only: true,
        }
    }
}

/// `.` and `..` taken out of an absolute path, without asking the file
/// system (the guest path is not on this host).
fn normal(p: &Path) -> PathBuf {
    let mut out = PathBuf::from("/");
    for c in p.components() {
        match c {
            std::path::Component::Normal(n) => out.push(n),
            std::path::Component::ParentDir => {
                out.pop();
            }
            _ => {}
        }
    }
    out
}

/// The mount tag of share `i`: what the guest's mount names.
pub fn tag(i: usize) -> String {
    format!("share{i}")
}

/// QEMU's arguments for the shares: an fsdev and a 9p device each.
/// `security_model=none`: the guest's root reads and writes as the user
/// QEMU runs as, with the host's owners and modes.
pub fn args(shares: &[Share]) -> Vec<String> {
    let mut a = Vec::new();
    for (i, s) in shares.iter().enumerate() {
        let ro = if s.read_only { ",readonly=on" } else { "" };
        a.push("-fsdev".to_owned());
        a.push(format!(
            "local,id=fsdev{i},path={},security_model=none{ro}",
            s.host.display()
        ));
        a.push("-device".to_owned());
        a.push(format!(
            "virtio-9p-pci,id={tag},fsdev=fsdev{i},mount_tag={tag}",
            tag = tag(i)
        ));
    }
    a
}

/// The guest's shell line that mounts every share (one line, stops at the
/// first failure with the reason on stderr).
pub fn mount_script(shares: &[Share]) -> String {
    let mut s = String::from(
        "grep -qw 9p /proc/filesystems || { echo 'the guest kernel has no 9p file system (CONFIG_9P_FS, CONFIG_NET_9P_VIRTIO)' >&2; exit 1; }",
    );
    for (i, share) in shares.iter().enumerate() {
        let ro = if share.read_only { ",ro" } else { "" };
        let guest = quote(&share.guest.display().to_string());
        s.push_str(&format!(
            "; mkdir -p {guest} && mount -t 9p -o trans=virtio,version=9p2000.L{ro} {} {guest} || exit",
            tag(i)
        ));
    }
    s
}

use crate::command_line::quote;

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(spec: &str) -> Result<Share, Error> {
        Share::parse(spec, Path::new("/home/me/work"))
    }

    #[test]
    fn the_guest_path_defaults_to_the_host_path() {
        let s = parse("/tmp/x").unwrap();
        assert_eq!(
            (s.host.as_path(), s.guest.as_path()),
            (Path::new("/tmp/x"), Path::new("/tmp/x"))
        );
        let s = parse("tests/../bin").unwrap();
        assert_eq!(s.host, Path::new("/home/me/work/bin"));
        assert_eq!(s.guest, Path::new("/home/me/work/bin"));
        assert!(!s.read_only);
    }

    #[test]
    fn a_guest_path_after_the_colon() {
        let s = parse("out:/mnt/out/").unwrap();
        assert_eq!(s.host, Path::new("/home/me/work/out"));
        assert_eq!(s.guest, Path::new("/mnt/out"));
    }

    #[test]
    fn bad_specs_say_why() {
        for (spec, why) in [
            (":/mnt/x", "no host folder"),
            ("/tmp/x:", "no guest path"),
            ("/tmp/x:mnt", "must be absolute"),
            ("/tmp/x:/", "hide the guest's own /"),
            ("/usr", "hide the guest's own /usr"),
            ("/tmp/x:/usr/..", "hide the guest's own /"),
            ("/tmp/x:/sys/kernel/x", "kernel file system"),
        ] {
            let e = parse(spec).unwrap_err().to_string();
            assert!(e.contains(why), "{spec}: {e}");
        }
        // Below a system folder is fine where nothing lives.
        assert!(parse("/tmp/x:/usr/src/linux").is_ok());
    }

    #[test]
    fn argv_and_mounts() {
        let shares = [
            parse("/tmp/x").unwrap(),
            Share::case_files(Path::new("/repo/suites/s/c.files")),
        ];
        assert_eq!(
            args(&shares).join(" "),
            "-fsdev local,id=fsdev0,path=/tmp/x,security_model=none \
             -device virtio-9p-pci,id=share0,fsdev=fsdev0,mount_tag=share0 \
             -fsdev local,id=fsdev1,path=/repo/suites/s/c.files,security_model=none,readonly=on \
             -device virtio-9p-pci,id=share1,fsdev=fsdev1,mount_tag=share1"
        );
        let script = mount_script(&shares);
        assert!(
            script.contains("mkdir -p /tmp/x && mount -t 9p -o trans=virtio,version=9p2000.L share0 /tmp/x || exit"),
            "{script}"
        );
        assert!(
            script.contains("version=9p2000.L,ro share1 /case"),
            "{script}"
        );
    }

    #[test]
    fn resolve_wants_an_existing_folder() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f");
        std::fs::write(&file, "").unwrap();
        let s = Share::parse(&dir.path().display().to_string(), Path::new("/"))
            .unwrap()
            .resolve()
            .unwrap();
        assert_eq!(s.host, dir.path().canonicalize().unwrap());
        let e = Share::parse(&file.display().to_string(), Path::new("/"))
            .unwrap()
            .resolve()
            .unwrap_err();
        assert!(matches!(e, Error::NotAFolder(_)), "{e}");
        let e = Share::parse("/no/such/folder", Path::new("/"))
            .unwrap()
            .resolve()
            .unwrap_err();
        assert!(e.to_string().contains("No such file"), "{e}");
    }
}
