//! A build folder's `.config`: `make tinyconfig` with the guests' fragment
//! merged over it (kconfig's own merge_config.sh) and `olddefconfig`, or a
//! full config of the user's through `olddefconfig`; made again only when
//! what it is made from changes. A fragment option that did not take (its
//! dependencies are off in this tree) is named in a warning.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::make::Make;
use super::{io, Error, STAMP};
use crate::progress::Stage;
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
        for option in not_taken(&wanted, &final_config) {
            crate::progress::say(&format!(
                "warning: {what}: {option} from {} did not take (its dependencies are off in this tree)",
                fragment.display()
            ));
        }
    }
    std::fs::write(&stamp, stamp_text).map_err(io(&stamp))?;
    stage.finish();
    Ok(())
}

/// The options of `fragment` the final `.config` does not have as asked.
fn not_taken(fragment: &str, config: &str) -> Vec<String> {
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
            (have != want).then(|| format!("{name}={want} (is {have})"))
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
    fn options_that_did_not_take_are_named() {
        let fragment = "# group\nCONFIG_A=y\nCONFIG_B=m\nCONFIG_C=n\nCONFIG_D=y\n";
        let config = "CONFIG_A=y\nCONFIG_B=y\n# CONFIG_C is not set\n";
        assert_eq!(
            not_taken(fragment, config),
            vec![
                "CONFIG_B=m (is y)".to_owned(),
                "CONFIG_D=y (is n)".to_owned()
            ]
        );
        // An option prefix is not the option.
        assert_eq!(
            not_taken("CONFIG_CXL=m\n", "CONFIG_CXL_BUS=m\n"),
            vec!["CONFIG_CXL=m (is n)"]
        );
    }
}
