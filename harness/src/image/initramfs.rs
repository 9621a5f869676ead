//! The initramfs root: usr-merge links, kernel modules, busybox applets,
//! ndharness's own scripts (init, the step wrapper, pci-state) and test
//! program (`ndharness-probe`), and the newc archive the kernel unpacks.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufWriter, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::host::{copy, ensure_dir, symlink, write_file};
use super::{Error, Result};
use crate::drivers::{Function, Role};
use crate::tool::{self, Tool};

/// PID 1: mounts, loads the topology's modules, keeps the kernel log and
/// hands the guest to qemu-guest-agent.
pub(super) const INIT: &str = include_str!("init.sh");
/// The wrapper each step runs under, between its kmsg markers.
pub(super) const STEP: &str = include_str!("step.sh");
/// Keeps PCI configuration space across a saved VM state.
pub(super) const PCI_STATE: &str = include_str!("pci-state.sh");
/// The guest's test program's source (the image key's part of it) and the
/// program the build script made of it (`harness/build.rs`).
pub(super) const PROBE_SOURCE: &str = include_str!("../../guest/probe.rs");
const PROBE: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/ndharness-probe"));

/// Trixie's packages are usr-merged but the ELF interpreter and scripts still
/// name /lib64, /bin and /sbin: point those at usr/, merging anything a
/// package unpacked there.
pub fn merge_usr(root: &Path) -> Result<()> {
    for top in ["bin", "sbin", "lib", "lib64"] {
        let legacy = root.join(top);
        let merged = root.join("usr").join(top);
        ensure_dir(&merged)?;
        let md = std::fs::symlink_metadata(&legacy);
        if md.as_ref().is_ok_and(|m| m.is_dir()) {
            move_tree(&legacy, &merged)?;
            std::fs::remove_dir_all(&legacy).map_err(|e| Error::io(&legacy, e))?;
        }
        if std::fs::symlink_metadata(&legacy).is_err() {
            symlink(&format!("usr/{top}"), &legacy)?;
        }
    }
    for dir in ["proc", "sys", "dev", "run", "tmp", "etc", "root"] {
        ensure_dir(&root.join(dir))?;
    }
    Ok(())
}

fn move_tree(from: &Path, to: &Path) -> Result<()> {
    for entry in std::fs::read_dir(from)
        .map_err(|e| Error::io(from, e))?
        .flatten()
    {
        let src = entry.path();
        let dst = to.join(entry.file_name());
        let is_dir = entry.file_type().map(|t| t.is_dir()).unwrap_or(false);
        if is_dir && dst.is_dir() {
            move_tree(&src, &dst)?;
        } else if std::fs::symlink_metadata(&dst).is_err() {
            std::fs::rename(&src, &dst).map_err(|e| Error::io(&src, e))?;
        }
    }
    Ok(())
}

fn module_name(path: &str) -> String {
    let base = path.rsplit('/').next().unwrap_or(path);
    let stem = base.split(".ko").next().unwrap_or(base);
    stem.replace('-', "_")
}

/// Copies the modules of the `needed` functions (and what they depend on)
/// from `src` (a `lib/modules/RELEASE` folder with modules.dep) into the
/// root, decompressed (busybox and kmod without compression support need
/// them plain); the `optional` functions' too where the kernel has them.
/// Returns what was shipped, with what was built in or left out.
pub fn install_modules(
    src: &Path,
    root: &Path,
    release: &str,
    needed: &[Function],
    optional: &[Function],
) -> Result<Vec<String>> {
    let dep_path = src.join("modules.dep");
    let dep_text = std::fs::read_to_string(&dep_path).map_err(|e| Error::io(&dep_path, e))?;
    let kernel = KernelModules {
        deps: parse_modules_dep(&dep_text),
        builtin: std::fs::read_to_string(src.join("modules.builtin"))
            .unwrap_or_default()
            .lines()
            .map(module_name)
            .collect(),
    };
    let mut files = BTreeSet::new();
    let mut shipped = Vec::new();
    let wanted = needed
        .iter()
        .map(|f| (*f, Need::Required))
        .chain(optional.iter().map(|f| (*f, Need::Optional)));
    for (function, need) in wanted {
        for driver in function.drivers() {
            let need = match driver.role {
                Role::Helper => Need::Optional,
                Role::Required => need,
            };
            match kernel.find(driver.module) {
                Found::Module(file, requires) => {
                    files.insert(file.clone());
                    files.extend(requires.iter().cloned());
                    shipped.push(driver.module.to_owned());
                }
                Found::BuiltIn => shipped.push(format!("{} (built in)", driver.module)),
                Found::Absent if need == Need::Optional => {
                    shipped.push(format!("{} (not in this kernel)", driver.module))
                }
                Found::Absent => {
                    return Err(Error::MissingDriver {
                        module: driver.module.to_owned(),
                        what: driver.what.to_owned(),
                        function: function.name(),
                        release: release.to_owned(),
                        modules_dep: dep_path,
                    })
                }
            }
        }
    }
    let dest = root.join("usr/lib/modules").join(release);
    for rel in &files {
        install_module(src, &dest, rel)?;
    }
    for index in KERNEL_LISTS {
        if src.join(index).exists() {
            copy(&src.join(index), &dest.join(index))?;
        }
    }
    Ok(shipped)
}

/// The kernel's own lists under `lib/modules/RELEASE`, which depmod reads
/// and does not write.
pub(super) const KERNEL_LISTS: [&str; 3] = [
    "modules.builtin",
    "modules.builtin.modinfo",
    "modules.order",
];

/// Copies the module `rel` (a path under the release folder `src`, maybe
/// compressed) to the same path under `dest`, decompressed.
pub(super) fn install_module(src: &Path, dest: &Path, rel: &str) -> Result<()> {
    let plain = rel
        .trim_end_matches(".xz")
        .trim_end_matches(".zst")
        .trim_end_matches(".gz");
    let to = dest.join(plain);
    ensure_dir(to.parent().expect("module folder"))?;
    decompress(&src.join(rel), &to)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Need {
    Required,
    Optional,
}

/// A kernel's modules.dep and modules.builtin, by module name.
struct KernelModules {
    deps: BTreeMap<String, (String, Vec<String>)>,
    builtin: BTreeSet<String>,
}

enum Found<'a> {
    Module(&'a String, &'a Vec<String>),
    BuiltIn,
    Absent,
}

impl KernelModules {
    fn find(&self, module: &str) -> Found<'_> {
        let module = module.replace('-', "_");
        match self.deps.get(&module) {
            Some((file, requires)) => Found::Module(file, requires),
            None if self.builtin.contains(&module) => Found::BuiltIn,
            None => Found::Absent,
        }
    }
}

/// modules.dep maps `path: dep dep ...`; keyed here by module name.
fn parse_modules_dep(text: &str) -> BTreeMap<String, (String, Vec<String>)> {
    text.lines()
        .filter_map(|l| {
            let (file, deps) = l.split_once(':')?;
            let deps = deps.split_whitespace().map(str::to_owned).collect();
            Some((module_name(file), (file.to_owned(), deps)))
        })
        .collect()
}

fn decompress(from: &Path, to: &Path) -> Result<()> {
    let name = from.to_string_lossy();
    let tool = if name.ends_with(".xz") {
        "xz"
    } else if name.ends_with(".zst") {
        "zstd"
    } else if name.ends_with(".gz") {
        "gzip"
    } else {
        return copy(from, to);
    };
    let out = std::fs::File::create(to).map_err(|e| Error::io(to, e))?;
    Tool::new(tool::DECOMPRESS, Command::new(tool).arg("-dc").arg(from))
        .shown(tool)
        .stdout_to(out)
        .run()?;
    Ok(())
}

/// busybox's applets as links in /usr/libexec/busybox, last on PATH, so that
/// kmod's modprobe and the packages' own tools win.
pub fn install_busybox_applets(root: &Path) -> Result<()> {
    let busybox = root.join("usr/bin/busybox");
    let out = Tool::new(tool::BUSYBOX, Command::new(&busybox).arg("--list"))
        .shown(busybox.display().to_string())
        .run()?;
    let dir = root.join("usr/libexec/busybox");
    ensure_dir(&dir)?;
    for applet in out.stdout_text().lines() {
        let link = dir.join(applet);
        if std::fs::symlink_metadata(&link).is_err() {
            symlink("/usr/bin/busybox", &link)?;
        }
    }
    // The init script's interpreter.
    let sh = root.join("usr/bin/sh");
    if std::fs::symlink_metadata(&sh).is_err() {
        symlink("busybox", &sh)?;
    }
    Ok(())
}

/// ndharness's scripts: `/init` and, under /usr/libexec/ndharness, the step
/// wrapper and pci-state.
pub fn install_scripts(root: &Path) -> Result<()> {
    write_file(&root.join("init"), INIT, 0o755)?;
    write_file(&root.join("usr/libexec/ndharness/step"), STEP, 0o755)?;
    write_file(
        &root.join("usr/libexec/ndharness/pci-state"),
        PCI_STATE,
        0o755,
    )?;
    write_file(&root.join("usr/bin/ndharness-probe"), PROBE, 0o755)
}

/// Writes `root` as an uncompressed newc archive (the kernel unpacks it
/// faster than any compressed one under TCG). Entries are sorted, owned by
/// root and dated 0, so equal inputs give equal bytes.
pub fn write_newc(root: &Path, dest: &Path) -> Result<u64> {
    let mut entries = Vec::new();
    collect(root, root, &mut entries)?;
    entries.sort();
    let file = std::fs::File::create(dest).map_err(|e| Error::io(dest, e))?;
    let mut archive = BufWriter::new(file);
    for (ino, rel) in entries.iter().enumerate() {
        let path = root.join(rel);
        let md = std::fs::symlink_metadata(&path).map_err(|e| Error::io(&path, e))?;
        let builder = cpio::newc::Builder::new(&rel.to_string_lossy())
            .ino(ino as u32 + 1)
            .mode(md.mode())
            .nlink(if md.is_dir() { 2 } else { 1 });
        let data: Vec<u8> = if md.file_type().is_symlink() {
            let target = std::fs::read_link(&path).map_err(|e| Error::io(&path, e))?;
            target.to_string_lossy().into_owned().into_bytes()
        } else if md.is_file() {
            std::fs::read(&path).map_err(|e| Error::io(&path, e))?
        } else {
            Vec::new()
        };
        let mut writer = builder.write(&mut archive, data.len() as u32);
        writer.write_all(&data).map_err(|e| Error::io(dest, e))?;
        writer.finish().map_err(|e| Error::io(dest, e))?;
    }
    cpio::newc::trailer(&mut archive).map_err(|e| Error::io(dest, e))?;
    archive.flush().map_err(|e| Error::io(dest, e))?;
    Ok(std::fs::metadata(dest)
        .map_err(|e| Error::io(dest, e))?
        .len())
}

fn collect(root: &Path, dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    for entry in std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
        let entry = entry.map_err(|e| Error::io(dir, e))?;
        let path = entry.path();
        out.push(path.strip_prefix(root).expect("under root").to_owned());
        if entry.file_type().map(|t| t.is_dir()).unwrap_or(false) {
            collect(root, &path, out)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn module_names_fold_dashes_and_suffixes() {
        assert_eq!(
            module_name("kernel/drivers/misc/pvpanic/pvpanic-pci.ko.xz"),
            "pvpanic_pci"
        );
        assert_eq!(module_name("kernel/drivers/acpi/nfit/nfit.ko"), "nfit");
    }

    #[test]
    fn modules_dep_lists_requirements() {
        let deps = parse_modules_dep(
            "kernel/drivers/acpi/nfit/nfit.ko.xz: kernel/drivers/nvdimm/libnvdimm.ko.xz\nkernel/drivers/nvdimm/libnvdimm.ko.xz:\n",
        );
        assert_eq!(
            deps["nfit"].1,
            vec!["kernel/drivers/nvdimm/libnvdimm.ko.xz"]
        );
        assert!(deps["libnvdimm"].1.is_empty());
    }

    /// A 7.x-like kernel: the CXL port built in, no crc32c_generic.
    fn kernel_7x(dir: &Path, with_cxl_pmem: bool) -> PathBuf {
        let src = dir.join("lib/modules/7.3.4");
        let mut dep = String::from(
            "kernel/fs/ext4/ext4.ko: kernel/fs/jbd2/jbd2.ko\nkernel/fs/jbd2/jbd2.ko:\n\
             kernel/drivers/cxl/cxl_acpi.ko:\nkernel/drivers/cxl/cxl_pci.ko:\n\
             kernel/drivers/cxl/cxl_mem.ko:\nkernel/drivers/dax/dax_cxl.ko:\n",
        );
        if with_cxl_pmem {
            dep.push_str("kernel/drivers/cxl/cxl_pmem.ko:\n");
        }
        for rel in dep.lines().filter_map(|l| l.split(':').next()) {
            let path = src.join(rel);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, rel).unwrap();
        }
        std::fs::write(src.join("modules.dep"), dep).unwrap();
        std::fs::write(
            src.join("modules.builtin"),
            "kernel/drivers/cxl/cxl_port.ko\n",
        )
        .unwrap();
        src
    }

    #[test]
    fn a_helper_the_kernel_lacks_is_left_out_and_built_in_ones_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let src = kernel_7x(dir.path(), true);
        let root = dir.path().join("root");
        let shipped =
            install_modules(&src, &root, "7.3.4", &[Function::Ext4, Function::Cxl], &[]).unwrap();
        assert!(
            shipped.contains(&"crc32c_generic (not in this kernel)".to_owned()),
            "{shipped:?}"
        );
        assert!(
            shipped.contains(&"cxl_port (built in)".to_owned()),
            "{shipped:?}"
        );
        assert!(root
            .join("usr/lib/modules/7.3.4/kernel/fs/jbd2/jbd2.ko")
            .is_file());
        assert!(root.join("usr/lib/modules/7.3.4/modules.builtin").is_file());
    }

    #[test]
    fn a_required_driver_the_kernel_lacks_is_one_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let src = kernel_7x(dir.path(), false);
        let root = dir.path().join("root");
        let err = install_modules(&src, &root, "7.3.4", &[Function::Ext4, Function::Cxl], &[])
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("kernel 7.3.4 lacks `cxl_pmem` (CXL persistent memory"),
            "{err}"
        );
        assert!(err.contains("the image's `cxl` needs"), "{err}");
        // The same function as an optional one is no error.
        let shipped = install_modules(&src, &root, "7.3.4", &[], &[Function::Cxl]).unwrap();
        assert!(
            shipped.contains(&"cxl_pmem (not in this kernel)".to_owned()),
            "{shipped:?}"
        );
    }

    #[test]
    fn newc_roundtrip_is_sorted() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        std::fs::create_dir_all(root.join("b")).unwrap();
        std::fs::write(root.join("b/x"), "hello").unwrap();
        std::os::unix::fs::symlink("b/x", root.join("a")).unwrap();
        let dest = dir.path().join("out.cpio");
        write_newc(&root, &dest).unwrap();
        let mut r = std::fs::File::open(&dest).unwrap();
        let mut names = Vec::new();
        loop {
            let entry = cpio::NewcReader::new(r).unwrap();
            if entry.entry().is_trailer() {
                break;
            }
            names.push(entry.entry().name().to_owned());
            r = entry.finish().unwrap();
        }
        assert_eq!(names, ["a", "b", "b/x"]);
    }
}
