//! The two module indexes of an image whose kernel has mock modules in
//! `updates/` (nfit_test's and cxl_test's builds of libnvdimm, nfit, the
//! pmem, dax and CXL drivers): the default index names the kernel's real
//! drivers, `mock-index/` the mocks, which the guest's init puts in place
//! for a topology with a mock bus (`ndharness.mock_buses` on its command
//! line). Without the two, every guest of such a kernel ran the mocks,
//! whose copies of kernel functions (tools/testing/nvdimm/dax-dev.c's
//! `dax_pgoff_to_phys()`) hid a change to the real ones from `validate`.

use std::path::Path;

use super::host::{copy, depmod, ensure_dir};
use super::initramfs::{install_module, KERNEL_LISTS};
use super::{Error, Result};

/// The folder, under the image's `lib/modules/RELEASE`, of the index that
/// prefers the mocks; the guest's init reads the same name.
const MOCK_INDEX: &str = "mock-index";
/// Where the mocks wait, outside the modules folder, while depmod writes
/// the index of the real drivers.
const ASIDE: &str = "mock-modules-aside";

/// Ships the real module of every mock the image ships (`updates/X.ko`
/// beside `kernel/.../X.ko`, from `src`, the kernel's `lib/modules/RELEASE`)
/// and writes both indexes with depmod. Returns the mocks' names; with
/// none, only the default index is written.
pub(super) fn ship(src: &Path, root: &Path, release: &str) -> Result<Vec<String>> {
    let dest = root.join("usr/lib/modules").join(release);
    let mocks = mock_names(&dest.join("updates"))?;
    if mocks.is_empty() {
        depmod(root, release)?;
        return Ok(mocks);
    }
    for rel in real_modules(src, &mocks)? {
        install_module(src, &dest, &rel)?;
    }
    depmod(root, release)?;
    save_index(&dest, &dest.join(MOCK_INDEX))?;
    let updates = dest.join("updates");
    let aside = root.join(ASIDE);
    std::fs::rename(&updates, &aside).map_err(|e| Error::io(&updates, e))?;
    let real = depmod(root, release);
    std::fs::rename(&aside, &updates).map_err(|e| Error::io(&aside, e))?;
    real?;
    Ok(mocks)
}

/// The module names under `updates/` (its `test/` folder's are the mock
/// buses themselves, with no real counterpart).
fn mock_names(updates: &Path) -> Result<Vec<String>> {
    let mut names = Vec::new();
    if !updates.is_dir() {
        return Ok(names);
    }
    for entry in std::fs::read_dir(updates).map_err(|e| Error::io(updates, e))? {
        let path = entry.map_err(|e| Error::io(updates, e))?.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if let Some(stem) = name.strip_suffix(".ko") {
            names.push(stem.to_owned());
        }
    }
    names.sort();
    Ok(names)
}

/// Each of `names`' real module under `src`'s `kernel/` (a module's file
/// may be compressed), as a path relative to `src`. A mock without one
/// (nothing to choose between) is left out.
fn real_modules(src: &Path, names: &[String]) -> Result<Vec<String>> {
    let mut found = Vec::new();
    super::host::walk(&src.join("kernel"), &mut |path, _| {
        let file = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        let stem = file.split(".ko").next().unwrap_or(file);
        if file.contains(".ko") && names.iter().any(|n| n == stem) {
            if let Ok(rel) = path.strip_prefix(src) {
                found.push(rel.to_string_lossy().into_owned());
            }
        }
    })?;
    found.sort();
    Ok(found)
}

/// Copies depmod's outputs (`modules.*` but the kernel's own lists, which
/// both indexes share) from `dir` into `to`.
fn save_index(dir: &Path, to: &Path) -> Result<()> {
    ensure_dir(to)?;
    for entry in std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
        let path = entry.map_err(|e| Error::io(dir, e))?.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        let kernels_own = KERNEL_LISTS.contains(&name);
        if name.starts_with("modules.") && path.is_file() && !kernels_own {
            copy(&path, &to.join(name))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mocks_are_the_modules_directly_in_updates() {
        let dir = tempfile::tempdir().unwrap();
        let updates = dir.path().join("updates");
        std::fs::create_dir_all(updates.join("test")).unwrap();
        for f in ["libnvdimm.ko", "device_dax.ko", "test/nfit_test.ko"] {
            std::fs::write(updates.join(f), b"").unwrap();
        }
        assert_eq!(mock_names(&updates).unwrap(), ["device_dax", "libnvdimm"]);
        assert!(mock_names(&dir.path().join("none")).unwrap().is_empty());
    }

    #[test]
    fn a_mock_finds_its_real_module_compressed_or_not() {
        let dir = tempfile::tempdir().unwrap();
        let kernel = dir.path().join("kernel");
        std::fs::create_dir_all(kernel.join("drivers/nvdimm")).unwrap();
        std::fs::create_dir_all(kernel.join("drivers/dax")).unwrap();
        std::fs::write(kernel.join("drivers/nvdimm/libnvdimm.ko.xz"), b"").unwrap();
        std::fs::write(kernel.join("drivers/dax/device_dax.ko"), b"").unwrap();
        std::fs::write(kernel.join("drivers/dax/dax_cxl.ko"), b"").unwrap();
        let names = ["device_dax".to_owned(), "libnvdimm".to_owned()];
        assert_eq!(
            real_modules(dir.path(), &names).unwrap(),
            [
                "kernel/drivers/dax/device_dax.ko",
                "kernel/drivers/nvdimm/libnvdimm.ko.xz"
            ]
        );
    }

    #[test]
    fn the_saved_index_leaves_the_kernels_own_lists() {
        let dir = tempfile::tempdir().unwrap();
        for f in [
            "modules.dep",
            "modules.dep.bin",
            "modules.alias.bin",
            "modules.order",
            "modules.builtin",
        ] {
            std::fs::write(dir.path().join(f), f).unwrap();
        }
        let to = dir.path().join(MOCK_INDEX);
        save_index(dir.path(), &to).unwrap();
        let mut saved: Vec<String> = std::fs::read_dir(&to)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        saved.sort();
        assert_eq!(
            saved,
            ["modules.alias.bin", "modules.dep", "modules.dep.bin"]
        );
    }
}
