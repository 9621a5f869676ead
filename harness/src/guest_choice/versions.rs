//! The snapshot variants of a kernel of the user's (a tree, or
//! `--kernel BZIMAGE`): those of the named line of its version, read off
//! the recipes and their locks.

use std::path::Path;

use super::{recipe_names, DEFAULT_IMAGE};
use crate::image::ImageFiles;

/// The release a user's modules are for: the one folder under
/// `lib/modules` (or `usr/lib/modules`) of their INSTALL_MOD_PATH.
pub(super) fn kernel_release(modules: &Path) -> Option<String> {
    ["lib/modules", "usr/lib/modules"].iter().find_map(|sub| {
        let entries = std::fs::read_dir(modules.join(sub)).ok()?;
        entries
            .flatten()
            .find(|e| e.path().is_dir())
            .map(|e| e.file_name().to_string_lossy().into_owned())
    })
}

/// `7.3` of `7.3.4`, `7.3.4-1~bpo13+1` or `7.3.0-rc7`.
fn major_minor(version: &str) -> Option<String> {
    let mut parts = version.split(|c: char| !c.is_ascii_digit());
    let major = parts.next().filter(|p| !p.is_empty())?;
    let minor = parts.next().filter(|p| !p.is_empty())?;
    Some(format!("{major}.{minor}"))
}

/// The snapshot variants of the line whose locked kernel has `release`'s
/// major and minor version, preferring a line built from source (as a
/// tree is: `mock-7.2`'s cxl_test serials differ from 7.3's), among
/// lines with the default ndctl; none when no line is of that version.
pub(super) fn variants_of_version(images_dir: &Path, release: &str) -> Vec<String> {
    let Some(wanted) = major_minor(release) else {
        return Vec::new();
    };
    let Ok(names) = recipe_names(images_dir) else {
        return Vec::new();
    };
    let default_ndctl = ImageFiles::load(images_dir, DEFAULT_IMAGE)
        .ok()
        .and_then(|f| f.recipe.provides)
        .map(|p| p.ndctl);
    let mut best: Option<(u8, Vec<String>)> = None;
    for name in names {
        let Ok(files) = ImageFiles::load(images_dir, &name) else {
            continue;
        };
        let Some(provides) = files.recipe.provides.clone() else {
            continue;
        };
        let same_version = files
            .read_lock()
            .is_ok_and(|(lock, _)| major_minor(&lock.kernel.version).as_ref() == Some(&wanted));
        // Another ndctl's variants are its output, not the kernel's.
        let default_userland = Some(&provides.ndctl) == default_ndctl.as_ref();
        if provides.variants.is_empty() || !same_version || !default_userland {
            continue;
        }
        let rank = if files.recipe.kernel.build.is_some() {
            2
        } else {
            1
        };
        if best.as_ref().is_none_or(|(r, _)| rank > *r) {
            best = Some((rank, provides.variants));
        }
    }
    best.map(|(_, v)| v).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn images() -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../images")
    }

    #[test]
    fn a_users_kernel_reads_the_variants_of_its_versions_line() {
        assert_eq!(major_minor("7.3.4").as_deref(), Some("7.3"));
        assert_eq!(major_minor("7.2.12-1~bpo13+1").as_deref(), Some("7.2"));
        assert_eq!(major_minor("6.12.117+deb13-amd64").as_deref(), Some("6.12"));
        assert_eq!(major_minor("garbage"), None);
        // A tree is built as the mock lines are: theirs come first.
        assert_eq!(variants_of_version(&images(), "7.3.4"), ["kernel-7"]);
        assert_eq!(
            variants_of_version(&images(), "7.2.12"),
            ["kernel-7.2", "kernel-7"]
        );
        assert_eq!(variants_of_version(&images(), "6.1.176"), ["kernel-6.1"]);
        assert!(variants_of_version(&images(), "6.12.117").is_empty());
        assert!(variants_of_version(&images(), "9.9.0").is_empty());
        let modules = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(modules.path().join("lib/modules/7.3.4")).unwrap();
        assert_eq!(kernel_release(modules.path()).as_deref(), Some("7.3.4"));
        assert_eq!(kernel_release(Path::new("/nonexistent")), None);
    }
}
