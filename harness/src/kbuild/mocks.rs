//! The kernel's mock buses, built as external modules of the tree and
//! installed in the modules' `updates/` (which depmod prefers over the
//! real drivers of the same names): `tools/testing/nvdimm` (nfit_test and
//! the libnvdimm, nfit, pmem and dax modules it wraps) and
//! `tools/testing/cxl` (cxl_test, cxl_mock_mem and the wrapped CXL core).
//! Each is built when the tree has it and its `.config` allows it (the
//! drivers it wraps as modules, as its config_check.c demands); otherwise
//! it is left out with a note.
//!
//! Linux 6.12 puts an external module's objects beside its sources: the
//! mocks' objects land in the tree's `tools/testing` and `drivers/` (all of
//! them ignored by the kernel's .gitignore).

use std::path::Path;

use super::configure::option;
use super::make::Make;
use super::Error;
use crate::stages::Stage;
use crate::tool;

/// Which mock buses a build has.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MockBuses {
    pub nfit_test: bool,
    pub cxl_test: bool,
}

/// A mock bus: where it is in the tree and what its config_check.c asks.
struct Mock {
    name: &'static str,
    dir: &'static str,
    /// Options that must be `m`, and options that must be on (`y` or `m`).
    modules: &'static [&'static str],
    enabled: &'static [&'static str],
}

const NFIT_TEST: Mock = Mock {
    name: "nfit_test",
    dir: "tools/testing/nvdimm",
    modules: &[
        "CONFIG_LIBNVDIMM",
        "CONFIG_BLK_DEV_PMEM",
        "CONFIG_ND_BTT",
        "CONFIG_ND_PFN",
        "CONFIG_DEV_DAX",
        "CONFIG_DEV_DAX_PMEM",
        "CONFIG_ACPI_NFIT",
    ],
    enabled: &[],
};

const CXL_TEST: Mock = Mock {
    name: "cxl_test",
    dir: "tools/testing/cxl",
    modules: &["CONFIG_CXL_BUS", "CONFIG_CXL_ACPI", "CONFIG_CXL_PMEM"],
    enabled: &[
        "CONFIG_CXL_REGION_INVALIDATION_TEST",
        "CONFIG_NVDIMM_SECURITY_TEST",
        "CONFIG_DEBUG_FS",
    ],
};

impl Mock {
    /// Why this tree and config cannot have the mock, if they cannot.
    fn missing(&self, tree: &Path, out: &Path) -> Option<String> {
        if !tree.join(self.dir).join("Kbuild").is_file() {
            return Some(format!("the tree has no {}", self.dir));
        }
        let mut wrong: Vec<String> = self
            .modules
            .iter()
            .filter(|o| option(out, o) != "m")
            .map(|o| format!("{o}=m"))
            .collect();
        wrong.extend(
            self.enabled
                .iter()
                .filter(|o| option(out, o) == "n")
                .map(|o| format!("{o}=y")),
        );
        (!wrong.is_empty()).then(|| format!("it needs {}", wrong.join(", ")))
    }
}

/// Builds each mock bus the tree and config allow.
pub(super) fn build(make: &Make, tree: &Path, out: &Path, what: &str) -> Result<MockBuses, Error> {
    let mut built = MockBuses::default();
    for mock in [NFIT_TEST, CXL_TEST] {
        if let Some(why) = mock.missing(tree, out) {
            crate::stages::say(&format!("{what}: no {} ({why})", mock.name));
            continue;
        }
        let mut stage = Stage::start(what, &format!("make {} (M={})", mock.name, mock.dir));
        let jobs = std::thread::available_parallelism().map_or(1, |n| n.get());
        let args = [
            format!("M={}", tree.join(mock.dir).display()),
            format!("-j{jobs}"),
            "modules".into(),
        ];
        let made = make.run(&args, tool::NFIT_TEST_MAKE, &mut stage);
        stage.finish();
        if let Err(error) = made {
            // The kernel itself built: a mock bus that does not is left
            // out (its trials are ignored, saying so), not the whole tree.
            crate::stages::say(&format!(
                "warning: {what}: {} did not build and is left out{}: {error}",
                mock.name,
                known_cause(&error.to_string())
            ));
            continue;
        }
        match mock.name {
            "nfit_test" => built.nfit_test = true,
            _ => built.cxl_test = true,
        }
    }
    Ok(built)
}

/// What a mock's build failure is known to mean, said beside it.
fn known_cause(error: &str) -> &'static str {
    if error.contains("type2_test") {
        " (7.2.y's tools/testing/cxl uses type2_test undeclared: \
         images/patches/cxl-test-type2-test-7.2.patch is the fix, \
         findings/cxl-test-type2-test-7.2 the report)"
    } else if error.contains("dax_hmem_flush_work") {
        " (7.3's tools/testing/cxl needs CONFIG_DEV_DAX_HMEM, so EFI_SOFT_RESERVE)"
    } else {
        ""
    }
}

/// Installs the built mocks into `INSTALL_MOD_PATH` (`updates/`), after
/// the kernel's own modules (whose install clears the release folder).
pub(super) fn install(
    make: &Make,
    tree: &Path,
    mods: &Path,
    built: MockBuses,
    what: &str,
) -> Result<(), Error> {
    for (mock, wanted) in [(NFIT_TEST, built.nfit_test), (CXL_TEST, built.cxl_test)] {
        if !wanted {
            continue;
        }
        let mut stage = Stage::start(what, &format!("install {}", mock.name));
        let args = [
            format!("M={}", tree.join(mock.dir).display()),
            "modules_install".into(),
            format!("INSTALL_MOD_PATH={}", mods.display()),
            "INSTALL_MOD_STRIP=1".into(),
        ];
        make.run(&args, tool::KERNEL_MODULES_INSTALL, &mut stage)?;
        stage.finish();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_known_mock_build_failure_names_its_fix() {
        let e = "tools/testing/cxl/test/cxl.c:1778:13: error: 'type2_test' undeclared";
        assert!(known_cause(e).contains("cxl-test-type2-test-7.2.patch"));
        assert!(known_cause("redefinition of 'dax_hmem_flush_work'").contains("DEV_DAX_HMEM"));
        assert_eq!(known_cause("ld: cannot find"), "");
    }
}
