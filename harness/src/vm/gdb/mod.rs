//! gdb and QEMU's gdbstub, one home. A person debugging a guest's kernel
//! (`ndharness boot --gdb`) gets here a free local port for the gdbstub
//! (the command line's `-gdb`, with the kernel booted `nokaslr`, is
//! [`super::cmdline`]'s), the kernel image with symbols to give gdb, and
//! the command that attaches; the power cuts get [`remote`], the harness's
//! own client of the stub. Starting the stub in a running guest is
//! [`crate::vm::Machine::start_gdbserver`]'s (`machine::gdbstub`).

pub mod remote;

use std::path::{Path, PathBuf};

/// A TCP port on 127.0.0.1 that nothing listens on now. QEMU binds it a
/// moment later; another process taking it in between makes QEMU fail to
/// start, with its own message.
pub fn free_port() -> std::io::Result<u16> {
    let listener = std::net::TcpListener::bind(("127.0.0.1", 0))?;
    Ok(listener.local_addr()?.port())
}

/// Where the symbols of the guest's kernel are, or why there are none.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Symbols {
    /// `vmlinux` of the build the kernel came from.
    Vmlinux(PathBuf),
    /// No vmlinux here: what to do to get one.
    Missing(String),
}

/// Where a guest's kernel came from, for finding its symbols.
#[derive(Clone, Copy, Debug)]
pub enum KernelOrigin<'a> {
    /// The user's build (`--kernel BZIMAGE`, `--kernel-tree`).
    Build(&'a Path),
    /// A Debian kernel package, by release.
    Packaged(&'a str),
    /// An image's kernel built from Debian's source in the cache, which
    /// keeps its bzImage and modules only (`--kernel debian-6.12-mock`).
    FromSource(&'a str),
}

/// The symbols of a kernel: for one built from a tree, the `vmlinux` at
/// the top of its build folder (kbuild's out folder, with bzImage at
/// arch/x86/boot/ below it); for a packaged Debian kernel, its `-dbg`
/// package's, when installed on this host.
pub fn symbols(origin: KernelOrigin<'_>) -> Symbols {
    let tree = "boot a kernel tree of your own with --kernel-tree, whose vmlinux this prints";
    match origin {
        KernelOrigin::Build(bzimage) => match bzimage
            .ancestors()
            .skip(1)
            .take(4)
            .map(|d| d.join("vmlinux"))
            .find(|v| v.is_file())
        {
            Some(v) => Symbols::Vmlinux(v),
            None => Symbols::Missing(format!(
                "no vmlinux beside {} or in the folders above it: give gdb the vmlinux of the build that made it",
                bzimage.display()
            )),
        },
        KernelOrigin::Packaged(release) => {
            let packaged = PathBuf::from(format!("/usr/lib/debug/boot/vmlinux-{release}"));
            if packaged.is_file() {
                return Symbols::Vmlinux(packaged);
            }
            Symbols::Missing(format!(
                "Debian's packaged kernel {release} ships no vmlinux with symbols: they are in \
                 linux-image-{release}-dbg (its usr/lib/debug/boot/vmlinux-{release}; \
                 `apt-get download` it from the kernel's suite and `dpkg-deb -x` it), or {tree}"
            ))
        }
        KernelOrigin::FromSource(release) => Symbols::Missing(format!(
            "kernel {release} was built from Debian's source in the cache, which keeps its bzImage \
             and modules only, not vmlinux: {tree}"
        )),
    }
}

/// The command that attaches gdb to the stub on `port`.
pub fn command(port: u16, symbols: &Symbols) -> String {
    let file = match symbols {
        Symbols::Vmlinux(v) => v.display().to_string(),
        Symbols::Missing(_) => "VMLINUX".to_owned(),
    };
    format!("gdb -ex 'target remote :{port}' {file}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vmlinux_is_found_at_the_top_of_the_build_folder() {
        let out = tempfile::tempdir().unwrap();
        let boot = out.path().join("arch/x86/boot");
        std::fs::create_dir_all(&boot).unwrap();
        std::fs::write(boot.join("bzImage"), "").unwrap();
        let bzimage = boot.join("bzImage");
        assert!(matches!(
            symbols(KernelOrigin::Build(&bzimage)),
            Symbols::Missing(_)
        ));
        std::fs::write(out.path().join("vmlinux"), "").unwrap();
        let found = symbols(KernelOrigin::Build(&bzimage));
        assert_eq!(found, Symbols::Vmlinux(out.path().join("vmlinux")));
        assert_eq!(
            command(1234, &found),
            format!(
                "gdb -ex 'target remote :1234' {}",
                out.path().join("vmlinux").display()
            )
        );
    }

    #[test]
    fn a_packaged_kernel_points_at_its_dbg_package() {
        let Symbols::Missing(why) = symbols(KernelOrigin::Packaged("0.0.0-none-amd64")) else {
            panic!("found symbols of a kernel that does not exist");
        };
        assert!(why.contains("linux-image-0.0.0-none-amd64-dbg"), "{why}");
        assert_eq!(
            command(1234, &Symbols::Missing(why)),
            "gdb -ex 'target remote :1234' VMLINUX"
        );
    }

    #[test]
    fn a_free_port_is_free() {
        let port = free_port().unwrap();
        assert!(port > 0);
        std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();
    }
}
