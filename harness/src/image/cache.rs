//! Built images in the cache: the content key an image is filed under
//! (builder version, recipe, lock, the scripts shipped in the guest, the
//! user's kernel and ndctl builds), its manifest (with the proof of its
//! files, [`crate::proof`]), finding a built image whole (which marks it
//! used), publishing a new one, and removing the ones unused for a while
//! or beyond the images' size cap ([`RETENTION`]).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::host::{publish, walk};
use super::initramfs::{INIT, PCI_STATE, PROBE_SOURCE, STEP};
use super::recipe::ImageFiles;
use super::{ndctl_tests, sha256_file, sha256_hex, BuildOptions, Error, Result, BUILDER_VERSION};
use crate::proof::{self, Damage, Files};

/// What a build produced and from what.
#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct Manifest {
    pub image: String,
    pub key: String,
    pub kernel_release: String,
    pub kernel_source: String,
    /// The ndctl package (`ndctl=81-1`) or `user: DIR`.
    #[serde(default)]
    pub ndctl_source: String,
    pub packages: Vec<String>,
    pub modules: Vec<String>,
    pub initramfs_bytes: u64,
    pub build_seconds: f64,
    /// Size and sha256 of `vmlinuz` and `initramfs.cpio`, recorded when
    /// the image is published (missing in images from before proofs).
    #[serde(default, skip_serializing_if = "Files::is_empty")]
    pub files: Files,
}

/// A built image in the cache.
#[derive(Clone, Debug)]
pub struct Image {
    pub dir: PathBuf,
    pub kernel: PathBuf,
    pub initrd: PathBuf,
    pub manifest: Manifest,
    /// Whether this call built it (false: found in the cache).
    pub built: bool,
}

/// The manifest's name in an image folder; its presence marks the image done.
const MANIFEST: &str = "manifest.json";

/// The files of an image the proof covers.
const PROVEN: [&str; 2] = ["vmlinuz", "initramfs.cpio"];

/// The sha256 of everything the image's bytes depend on.
pub(super) fn content_key(
    files: &ImageFiles,
    lock_text: &str,
    opts: &BuildOptions,
) -> Result<String> {
    let mut material = format!(
        "builder {BUILDER_VERSION}\n--recipe\n{}\n--lock\n{lock_text}\n--init\n{INIT}\n--step\n{STEP}\n--pci-state\n{PCI_STATE}\n--probe\n{PROBE_SOURCE}\n",
        files.recipe_text
    );
    if files.recipe.ndctl_tests.is_some() {
        material.push_str(&format!(
            "--tests\n{}\n{}\n{}\n{}\n{}\n",
            ndctl_tests::RUN,
            ndctl_tests::JOURNALCTL,
            ndctl_tests::UUIDGEN,
            ndctl_tests::UDEVADM,
            ndctl_tests::CXL_TEST_REGION
        ));
    }
    if let (None, Some(spec)) = (&opts.user_kernel, &files.recipe.kernel.build) {
        let inputs = super::source_kernel::build_inputs(files, spec)?;
        material.push_str(&format!("--kernel-config\n{inputs}\n"));
    }
    if let Some(kernel) = &opts.user_kernel {
        material.push_str(&format!("--kernel\n{}\n", sha256_file(&kernel.bzimage)?));
        material.push_str(&format!(
            "--modules\n{}\n",
            tree_fingerprint(&kernel.modules)?
        ));
    }
    if let Some(dir) = &opts.user_ndctl {
        let fingerprint = if super::ndctl_tree::is_tree(dir) {
            super::ndctl_tree::fingerprint(dir)?
        } else {
            tree_fingerprint(dir)?
        };
        material.push_str(&format!("--ndctl\n{fingerprint}\n"));
    }
    Ok(sha256_hex(material.as_bytes()))
}

/// Paths, sizes and mtimes under `dir`: a user's `make modules_install`
/// changes at least one of them.
fn tree_fingerprint(dir: &Path) -> Result<String> {
    let mut lines = Vec::new();
    walk(dir, &mut |path, md| {
        let mtime = md
            .modified()
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok());
        lines.push(format!("{} {} {:?}", path.display(), md.len(), mtime));
    })?;
    lines.sort();
    Ok(sha256_hex(lines.join("\n").as_bytes()))
}

/// The folder every built image is filed under, the one [`RETENTION`]
/// keeps in bounds.
pub fn images_dir(cache: &Path) -> PathBuf {
    cache.join("images")
}

/// The folder the image with content `key` is filed under.
pub(super) fn image_dir(cache: &Path, files: &ImageFiles, key: &str) -> PathBuf {
    images_dir(cache).join(format!("{}-{}", files.name, &key[..16]))
}

/// What the cache holds under an image's folder.
pub(super) enum Found {
    /// An image whose files are as its manifest says.
    Whole(Box<Image>),
    /// An image that cannot be used as it is.
    Damaged(Damage),
    Absent,
}

/// The image built in `out`, if there is one, checked against its proof.
/// An image from before proofs is taken when its files are there and not
/// empty, and its proof is written then.
pub(super) fn find(out: &Path) -> Found {
    let manifest_path = out.join(MANIFEST);
    let text = match std::fs::read_to_string(&manifest_path) {
        Ok(text) => text,
        Err(_) if out.exists() => return Found::Damaged(Damage::Missing(MANIFEST.into())),
        Err(_) => return Found::Absent,
    };
    let Ok(mut manifest) = serde_json::from_str::<Manifest>(&text) else {
        return Found::Damaged(Damage::Unreadable(MANIFEST.into()));
    };
    let verdict = if manifest.files.is_empty() {
        proof::check_present(out, &PROVEN).map(|()| {
            if let Ok(files) = proof::record(out, &PROVEN, true) {
                manifest.files = files;
                // A cache that cannot be written keeps working without one.
                let _ = proof::write_whole(&manifest_path, &manifest_json(&manifest));
            }
        })
    } else {
        proof::check(out, &manifest.files)
    };
    match verdict {
        Ok(()) => Found::Whole(Box::new({
            crate::lru::touch(out);
            Image {
                dir: out.to_owned(),
                kernel: out.join("vmlinuz"),
                initrd: out.join("initramfs.cpio"),
                manifest,
                built: false,
            }
        })),
        Err(damage) => Found::Damaged(damage),
    }
}

fn manifest_json(manifest: &Manifest) -> String {
    serde_json::to_string_pretty(manifest).expect("manifest serializes")
}

/// Writes the manifest, with the proof of the files, into `staged` (a
/// folder with `vmlinuz` and `initramfs.cpio`), moves it to `out` and
/// returns the image as built.
pub(super) fn publish_image(staged: &Path, out: &Path, manifest: Manifest) -> Result<Image> {
    let manifest = Manifest {
        files: proof::record(staged, &PROVEN, true)?,
        ..manifest
    };
    let manifest_path = staged.join(MANIFEST);
    std::fs::write(&manifest_path, manifest_json(&manifest))
        .map_err(|e| Error::io(&manifest_path, e))?;
    publish(staged, out, MANIFEST, "image")?;
    match find(out) {
        Found::Whole(image) => Ok(Image {
            built: true,
            ..*image
        }),
        Found::Damaged(damage) => Err(Error::io(
            out,
            std::io::Error::other(format!("the image just published is damaged: {damage}")),
        )),
        Found::Absent => Err(Error::io(
            out,
            std::io::Error::other("the image just published is gone"),
        )),
    }
}

/// How long built images are kept after their last use (14 days), and
/// how much of them: `NDHARNESS_IMAGES_MAX` (a size, `8G`), else 5 GB,
/// about 40 images of 85-130 MB (every kernel a run meets has its own,
/// and a mutation run meets one per mutant).
pub const RETENTION: crate::lru::Retention = crate::lru::Retention {
    what: "built images",
    keep_days: 14,
    cap_variable: "NDHARNESS_IMAGES_MAX",
    default_cap: 5 << 30,
};

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest() -> Manifest {
        Manifest {
            image: "default".into(),
            key: "0".repeat(64),
            kernel_release: "6.12".into(),
            kernel_source: "test".into(),
            ndctl_source: String::new(),
            packages: Vec::new(),
            modules: Vec::new(),
            initramfs_bytes: 8192,
            build_seconds: 1.0,
            files: Files::new(),
        }
    }

    /// An image published into `cache/images/default-x`.
    fn published(cache: &Path) -> PathBuf {
        let staged = cache.join("tmp/staged");
        std::fs::create_dir_all(&staged).unwrap();
        std::fs::write(staged.join("vmlinuz"), vec![1u8; 4096]).unwrap();
        std::fs::write(staged.join("initramfs.cpio"), vec![2u8; 8192]).unwrap();
        let out = cache.join("images/default-x");
        let image = publish_image(&staged, &out, manifest()).unwrap();
        assert!(image.built);
        assert_eq!(image.manifest.files["initramfs.cpio"].bytes, 8192);
        out
    }

    #[test]
    fn a_truncated_initramfs_is_found() {
        let cache = tempfile::tempdir().unwrap();
        let out = published(cache.path());
        assert!(matches!(find(&out), Found::Whole(_)));
        std::fs::write(out.join("initramfs.cpio"), vec![2u8; 100]).unwrap();
        let Found::Damaged(damage) = find(&out) else {
            panic!("a truncated initramfs passed");
        };
        assert_eq!(
            damage.to_string(),
            "its initramfs.cpio is 100 bytes, 8192 when it was built"
        );
        std::fs::write(out.join("initramfs.cpio"), vec![2u8; 8192]).unwrap();
        assert!(matches!(find(&out), Found::Whole(_)));
        std::fs::remove_file(out.join("vmlinuz")).unwrap();
        assert!(matches!(find(&out), Found::Damaged(Damage::Missing(_))));
        std::fs::write(out.join(MANIFEST), "{\"image\":").unwrap();
        assert!(matches!(find(&out), Found::Damaged(Damage::Unreadable(_))));
    }

    #[test]
    fn an_image_from_before_proofs_is_checked_then_given_its_proof() {
        let cache = tempfile::tempdir().unwrap();
        let out = cache.path().join("images/old");
        std::fs::create_dir_all(&out).unwrap();
        std::fs::write(out.join("vmlinuz"), vec![1u8; 4096]).unwrap();
        std::fs::write(out.join("initramfs.cpio"), b"").unwrap();
        std::fs::write(out.join(MANIFEST), manifest_json(&manifest())).unwrap();
        assert!(matches!(find(&out), Found::Damaged(Damage::Empty(_))));
        std::fs::write(out.join("initramfs.cpio"), vec![2u8; 10]).unwrap();
        let Found::Whole(image) = find(&out) else {
            panic!("an old whole image was refused");
        };
        assert!(!image.built);
        let text = std::fs::read_to_string(out.join(MANIFEST)).unwrap();
        let written: Manifest = serde_json::from_str(&text).unwrap();
        assert_eq!(written.files["initramfs.cpio"].bytes, 10);
        assert_eq!(
            written.files["vmlinuz"].sha256,
            Some(sha256_hex(&[1u8; 4096]))
        );
        assert!(matches!(
            find(&cache.path().join("images/none")),
            Found::Absent
        ));
    }
}
