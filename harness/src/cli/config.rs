//! From the flags the commands share (root, mirror, image, the selection,
//! the machine flags, runs dir) to the runner's [`Config`], in one place;
//! and the one call that runs a selection of trials with it.

use std::path::{Path, PathBuf};

use anyhow::Context;

use ndharness::guest_choice::{self, Selection};
use ndharness::image::{self, BuildOptions};
use ndharness::runner::reporter::kcidb::Origin;
use ndharness::runner::{self, Config};

use super::args::{Common, GuestArgs, KcidbArgs, MachineArgs, SelectArgs};

/// The repository root: `--root`, else the first folder above the current
/// one that holds suites/ and images/, else the checkout this binary was
/// built from.
pub fn find_root(explicit: Option<&Path>) -> anyhow::Result<PathBuf> {
    if let Some(r) = explicit {
        // Absolute: insta resolves snapshot folders against it, and a
        // relative root put pending snapshots under the harness's sources.
        return r
            .canonicalize()
            .with_context(|| format!("--root {}", r.display()));
    }
    let cwd = std::env::current_dir()?;
    for dir in cwd.ancestors() {
        if dir.join("suites").is_dir() && dir.join("images").is_dir() {
            return Ok(dir.to_owned());
        }
    }
    let built = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    if built.join("images").is_dir() {
        return Ok(built.canonicalize()?);
    }
    anyhow::bail!(
        "no ndharness repository (a folder with suites/ and images/) above {}: pass --root",
        cwd.display()
    )
}

/// Where things are and how guests run: finds the repository, builds the
/// selection's kernel tree (when it names one), resolves it to an image
/// recipe and the user's builds, and keeps run folders in `runs_dir`
/// [default: ROOT/target/ndharness/runs].
pub fn config(
    common: &Common,
    selection: Selection,
    machine: &MachineArgs,
    runs_dir: Option<&Path>,
) -> anyhow::Result<Config> {
    let root = find_root(common.root.as_deref())?;
    let images = root.join("images");
    let cold = machine.cold || selection.cold;
    if let Some(qemu) = &machine.qemu {
        // Where the harness looks for QEMU (vm::qemu::find_binary).
        std::env::set_var("NDHARNESS_QEMU", qemu);
    }
    let resolved = selection
        .build_tree(&images, &image::cache_dir())?
        .resolve(&images)?;
    // insta resolves snapshot paths against the workspace; tell it which.
    std::env::set_var("INSTA_WORKSPACE_ROOT", &root);
    Ok(Config {
        runs_dir: runs_dir.map_or_else(|| root.join("target/ndharness/runs"), Path::to_owned),
        results_dir: root.join("target/ndharness/results"),
        test_image: guest_choice::test_image(&images, &resolved),
        guest: guest_choice::guest_names(&images, &resolved),
        image: resolved.image,
        variants: resolved.variants,
        new_variant: false,
        collect: None,
        cold,
        build: BuildOptions {
            cache: image::cache_dir(),
            mirror: common.mirror.clone(),
            user_kernel: resolved.user_kernel,
            user_ndctl: resolved.user_ndctl,
        },
        accel: machine.accel,
        boot_timeout: machine.boot_timeout,
        shares: Vec::new(),
        power_cuts: Default::default(),
        profile_trials: None,
        slow_after: ndharness::runner::SLOW_AFTER,
        no_tests: Default::default(),
        name_filters: Vec::new(),
        filter_expr: None,
        root,
    })
}

impl GuestArgs {
    /// [`config`] from this command's guest flags.
    pub fn config(&self) -> anyhow::Result<Config> {
        config(
            &self.common,
            self.select.selection(self.image.clone()),
            &self.machine,
            self.runs_dir.as_deref(),
        )
    }
}

impl KcidbArgs {
    /// The file and origin `--kcidb` and `--kcidb-origin` ask for.
    pub fn file_and_origin(&self) -> Option<(PathBuf, Origin)> {
        let file = self.kcidb.clone()?;
        Some((file, self.kcidb_origin.clone().unwrap_or_default()))
    }
}

impl SelectArgs {
    /// What these flags ask for, with `image` (a recipe name) beside them.
    pub fn selection(&self, image: Option<String>) -> Selection {
        Selection {
            image,
            kernel: self.kernel.clone(),
            modules: self.modules.clone(),
            ndctl: self.ndctl.clone(),
            kernel_tree: self.kernel_tree.clone(),
            kernel_config: self.kernel_config.clone(),
            cold: false,
        }
    }
}

/// Runs the trials `filter` selects, as `config` and `options` say: their
/// exit code, results and guest.
pub fn run_trials(
    config: Config,
    filter: &libtest_mimic::Arguments,
    options: &runner::RunOptions,
) -> runner::RunRecord {
    runner::execute_with(config, filter, options)
}
