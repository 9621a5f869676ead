//! A build folder's `.config`: `make tinyconfig` with the guests' fragment
//! merged over it (kconfig's own merge_config.sh) and `olddefconfig`, or a
//! full config of the user's through `olddefconfig`; made again only when
//! what it is made from changes. A fragment option that did not take (its
//! dependencies are off in this tree) is named in a warning.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::make::Make;
use super::{io, Error, STAMP};
use crate::stages::Stage;
use crate::tool;

/// What a build's configuration is made from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KernelConfig {
    /// `make tinyconfig`, this fragment merged over it, `olddefconfig`.
    Fragment(PathBuf),
    /// A full `.config` of the user's, through `olddefconfig`.
    Full(PathBuf),
}

impl KernelConfig {
    fn path(&self) -> &Path {
        match self {
            KernelConfig::Fragment(p) | KernelConfig::Full(p) => p,
        }
    }

    /// What the stamp of a configured build folder holds: the kind and the
    /// file's text, so that either changing makes the config again.
    fn stamp(&self) -> Result<String, Error> {
        let text = std::fs::read_to_string(self.path()).map_err(io(self.path()))?;
        let kind = match self {
            KernelConfig::Fragment(_) => "fragment",
            KernelConfig::Full(_) => "full",
        };
        Ok(format!("{kind}\n{text}"))
    }
}

/// Makes the `.config` of `out` unless it is made from `config` already.
pub(super) fn configure(
    make: &Make,
    config: &KernelConfig,
    out: &Path,
    what: &str,
) -> Result<(), Error> {
    let stamp_text = config.stamp()?;
    let stamp = out.join(STAMP);
    if out.join(".config").exists()
        && std::fs::read_to_string(&stamp).ok().as_deref() == Some(stamp_text.as_str())
    {
        return Ok(());
    }
    let mut stage = Stage::start(what, "configure");
    match config {
        KernelConfig::Fragment(fragment) => {
            stage.item("x86_64 tinyconfig");
            make.run(&["tinyconfig".into()], tool::KERNEL_CONFIG, &mut stage)?;
            stage.item(&format!("merge {}", fragment.display()));
            let mut merge = Command::new(make.tree().join("scripts/kconfig/merge_config.sh"));
            merge
                .current_dir(make.tree())
                .env("ARCH", "x86_64")
                .arg("-m")
                .arg("-O")
                .arg(out)
                .arg(out.join(".config"))
                .arg(fragment);
            make.logged(&mut merge, tool::KERNEL_CONFIG, &mut stage)?;
        }
        KernelConfig::Full(full) => {
            let to = out.join(".config");
            std::fs::copy(full, &to).map_err(io(&to))?;
        }
    }
    stage.item("olddefconfig");
    make.run(&["olddefconfig".into()], tool::KERNEL_CONFIG, &mut stage)?;
    if let KernelConfig::Fragment(fragment) = config {
        let final_config = std::fs::read_to_string(out.join(".config")).map_err(io(out))?;
        let wanted = std::fs::read_to_string(fragment).map_err(io(fragment))?;
        let not_taken = not_taken(&wanted, &final_config);
        // Read the tree's Kconfig files only when an option did not take.
        let known = match not_taken.is_empty() {
            true => Default::default(),
            false => symbols(make.tree()),
        };
        for (option, name) in not_taken {
            if known.contains(name.trim_start_matches("CONFIG_")) {
                crate::stages::say(&format!(
                    "warning: {what}: {option} from {} did not take (its dependencies are off in this tree)",
                    fragment.display()
                ));
            } else {
                // One fragment serves 6.x and 7.x: an option renamed since
                // (PROC_SYSCTL is SYSCTL in 7.3) stands beside its new name.
                crate::stages::say(&format!(
                    "note: {what}: {name} from {} is no option of this tree (renamed or gone): skipped",
                    fragment.display()
                ));
            }
        }
    }
    std::fs::write(&stamp, stamp_text).map_err(io(&stamp))?;
    stage.finish();
    Ok(())
}

/// Every symbol a `config NAME` or `menuconfig NAME` of the tree's Kconfig
/// files defines.
fn symbols(tree: &Path) -> std::collections::BTreeSet<String> {
    let mut found = std::collections::BTreeSet::new();
    let mut dirs = vec![tree.to_owned()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if path.is_dir() && !name.starts_with('.') {
                dirs.push(path);
            } else if name.starts_with("Kconfig") {
                let text = std::fs::read_to_string(&path).unwrap_or_default();
                found.extend(defined_symbols(&text));
            }
        }
    }
    found
}

/// The symbols one Kconfig file defines.
fn defined_symbols(text: &str) -> impl Iterator<Item = String> + '_ {
    text.lines().filter_map(|l| {
        let l = l.trim_start();
        let rest = l
            .strip_prefix("config ")
            .or_else(|| l.strip_prefix("menuconfig "))?;
        let name = rest.trim();
        // Help text may say "config files"; a symbol is upper case.
        let symbol = !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_');
        symbol.then(|| name.to_owned())
    })
}

/// The options of `fragment` the final `.config` does not have as asked:
/// what to say of each, and its name.
fn not_taken(fragment: &str, config: &str) -> Vec<(String, String)> {
    let value_of = |name: &str| -> Option<&str> {
        config.lines().find_map(|l| {
            l.strip_prefix(name)
                .and_then(|rest| rest.strip_prefix('='))
                .filter(|_| l.starts_with("CONFIG_"))
        })
    };
    fragment
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with("CONFIG_"))
        .filter_map(|l| {
            let (name, want) = l.split_once('=')?;
            let have = value_of(name).unwrap_or("n");
            (have != want).then(|| (format!("{name}={want} (is {have})"), name.to_owned()))
        })
        .collect()
}

/// The value of `CONFIG_NAME` in a build folder's `.config` (`n` when unset).
pub fn option(out: &Path, name: &str) -> String {
    let config = std::fs::read_to_string(out.join(".config")).unwrap_or_default();
    let key = format!("{name}=");
    config
        .lines()
        .find_map(|l| l.strip_prefix(&key).map(str::to_owned))
        .unwrap_or_else(|| "n".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kconfig_symbols_are_read_from_config_and_menuconfig_lines() {
        let text = "menuconfig CXL_BUS\n\ttristate \"CXL\"\nconfig SYSCTL\n\tbool\n\thelp\n\t  config files\n";
        let found: Vec<String> = defined_symbols(text).collect();
        assert_eq!(found, ["CXL_BUS", "SYSCTL"]);
    }

    #[test]
    fn options_that_did_not_take_are_named() {
        let fragment = "# group\nCONFIG_A=y\nCONFIG_B=m\nCONFIG_C=n\nCONFIG_D=y\n";
        let config = "CONFIG_A=y\nCONFIG_B=y\n# CONFIG_C is not set\n";
        let said: Vec<String> = not_taken(fragment, config)
            .into_iter()
            .map(|(said, _)| said)
            .collect();
        assert_eq!(
            said,
            vec![
                "CONFIG_B=m (is y)".to_owned(),
                "CONFIG_D=y (is n)".to_owned()
            ]
        );
        // An option prefix is not the option.
        assert_eq!(
            not_taken("CONFIG_CXL=m\n", "CONFIG_CXL_BUS=m\n"),
            vec![("CONFIG_CXL=m (is n)".to_owned(), "CONFIG_CXL".to_owned())]
        );
    }
}
