//! What a finished kernel build left (`.config`, `bzImage`), recorded by
//! size; a later build first removes what is no longer as it was left (a
//! full disk, a partial cache restore), so that make makes it again.

use std::path::Path;

/// What a finished build left, by size: a later build checks them first.
const PROOF: &str = ".ndharness-proof";
const PROVEN: [&str; 2] = [".config", "arch/x86/boot/bzImage"];

/// Records the sizes of what the build in `out` left.
pub(super) fn record(out: &Path) {
    let lines: Vec<String> = PROVEN
        .iter()
        .map(|name| {
            let size = std::fs::metadata(out.join(name)).map_or(0, |m| m.len());
            format!("{size} {name}")
        })
        .collect();
    let _ = std::fs::write(out.join(PROOF), lines.join("\n") + "\n");
}

/// Removes what a finished build left that is no longer as it was left (a
/// `.config` or `bzImage` cut short), so that this build makes it again.
pub(super) fn heal(out: &Path) {
    let Ok(text) = std::fs::read_to_string(out.join(PROOF)) else {
        return;
    };
    for line in text.lines() {
        let Some((size, name)) = line.split_once(' ') else {
            continue;
        };
        let path = out.join(name);
        let actual = std::fs::metadata(&path).map_or(0, |m| m.len());
        if size.parse() == Ok(actual) {
            continue;
        }
        crate::progress::say(&format!(
            "warning: kernel build {}: {name} is {actual} bytes, {size} when it was built; it is made again",
            out.display()
        ));
        let _ = std::fs::remove_file(&path);
        if name == ".config" {
            let _ = std::fs::remove_file(out.join(super::STAMP));
        }
    }
    let _ = std::fs::remove_file(out.join(PROOF));
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
