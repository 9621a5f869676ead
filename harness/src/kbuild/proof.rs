//! What a finished kernel build left (`.config`, `bzImage`), recorded by
//! size ([`crate::proof`]); a later build first removes what is no longer
//! as it was left (a full disk, a partial cache restore), so that make
//! makes it again.

use std::path::Path;

use crate::proof::{self, Damage};

/// What a finished build left: a later build checks them first.
const PROVEN: [&str; 2] = [".config", "arch/x86/boot/bzImage"];

/// Records the sizes of what the build in `out` left.
pub(super) fn record(out: &Path) {
    if let Ok(files) = proof::record(out, &PROVEN, false) {
        let _ = proof::write(out, &files);
    }
}

/// Removes what a finished build left that is no longer as it was left (a
/// `.config` or `bzImage` cut short), so that this build makes it again.
pub(super) fn heal(out: &Path) {
    let Some(files) = proof::read(out) else {
        return;
    };
    for (name, file) in &files {
        let one = std::iter::once((name.clone(), file.clone())).collect();
        let damage = match proof::check(out, &one) {
            Ok(()) => continue,
            Err(damage @ (Damage::Size { .. } | Damage::Missing(_))) => damage,
            Err(_) => continue,
        };
        crate::stages::say(&format!(
            "warning: kernel build {}: {damage}; it is made again",
            out.display()
        ));
        let _ = std::fs::remove_file(out.join(name));
        if name == ".config" {
            let _ = std::fs::remove_file(out.join(super::STAMP));
        }
    }
    let _ = std::fs::remove_file(out.join(proof::FILE));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cut_bzimage_is_made_again_and_a_cut_config_remade() {
        let out = tempfile::tempdir().unwrap();
        let out = out.path();
        let bzimage = out.join("arch/x86/boot/bzImage");
        std::fs::create_dir_all(bzimage.parent().unwrap()).unwrap();
        std::fs::write(&bzimage, vec![1u8; 4096]).unwrap();
        std::fs::write(out.join(".config"), "CONFIG_X=y\n").unwrap();
        std::fs::write(out.join(".ndharness-config"), "frag").unwrap();
        record(out);
        heal(out);
        assert!(bzimage.exists() && out.join(".ndharness-config").exists());
        record(out);
        std::fs::write(&bzimage, vec![1u8; 100]).unwrap();
        std::fs::write(out.join(".config"), "").unwrap();
        heal(out);
        assert!(!bzimage.exists(), "a cut bzImage is left to make");
        assert!(!out.join(".config").exists());
        assert!(
            !out.join(".ndharness-config").exists(),
            "the config is remade"
        );
    }
}
