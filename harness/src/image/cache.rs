//! Built images in the cache: the content key an image is filed under
//! (builder version, recipe, lock, the scripts shipped in the guest, the
//! user's kernel and ndctl builds), its manifest, finding a built image, and
//! publishing a new one.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::host::{publish, walk};
use super::initramfs::{INIT, PCI_STATE, STEP};
use super::recipe::ImageFiles;
use super::{ndctl_tests, sha256_file, sha256_hex, BuildOptions, Error, Result, BUILDER_VERSION};

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

/// The sha256 of everything the image's bytes depend on.
pub(super) fn content_key(
    files: &ImageFiles,
    lock_text: &str,
    opts: &BuildOptions,
) -> Result<String> {
    let mut material = format!(
        "builder {BUILDER_VERSION}\n--recipe\n{}\n--lock\n{lock_text}\n--init\n{INIT}\n--step\n{STEP}\n--pci-state\n{PCI_STATE}\n",
        files.recipe_text
    );
    if files.recipe.ndctl_tests.is_some() {
        material.push_str(&format!(
            "--tests\n{}\n{}\n{}\n",
            ndctl_tests::RUN,
            ndctl_tests::JOURNALCTL,
            ndctl_tests::UUIDGEN
        ));
    }
    if let Some(kernel) = &opts.user_kernel {
        material.push_str(&format!("--kernel\n{}\n", sha256_file(&kernel.bzimage)?));
        material.push_str(&format!(
            "--modules\n{}\n",
            tree_fingerprint(&kernel.modules)?
        ));
    }
    if let Some(dir) = &opts.user_ndctl {
        material.push_str(&format!("--ndctl\n{}\n", tree_fingerprint(dir)?));
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

/// The folder the image with content `key` is filed under.
pub(super) fn image_dir(cache: &Path, files: &ImageFiles, key: &str) -> PathBuf {
    cache
        .join("images")
        .join(format!("{}-{}", files.name, &key[..16]))
}

/// The image built in `out`, if there is one.
pub(super) fn load_built(out: &Path) -> Result<Option<Image>> {
    let manifest_path = out.join(MANIFEST);
    let Ok(text) = std::fs::read_to_string(&manifest_path) else {
        return Ok(None);
    };
    let manifest: Manifest = serde_json::from_str(&text).map_err(|e| {
        Error::io(
            &manifest_path,
            std::io::Error::new(std::io::ErrorKind::InvalidData, e),
        )
    })?;
    Ok(Some(Image {
        dir: out.to_owned(),
        kernel: out.join("vmlinuz"),
        initrd: out.join("initramfs.cpio"),
        manifest,
        built: false,
    }))
}

/// Writes the manifest into `staged` (a folder with `vmlinuz` and
/// `initramfs.cpio`), moves it to `out` and returns the image as built.
pub(super) fn publish_image(staged: &Path, out: &Path, manifest: &Manifest) -> Result<Image> {
    let manifest_path = staged.join(MANIFEST);
    let json = serde_json::to_string_pretty(manifest).expect("manifest serializes");
    std::fs::write(&manifest_path, json).map_err(|e| Error::io(&manifest_path, e))?;
    publish(staged, out, MANIFEST, "image")?;
    let mut image = load_built(out)?.expect("image was just written");
    image.built = true;
    Ok(image)
}
