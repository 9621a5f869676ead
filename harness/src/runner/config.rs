//! Where things are and how guests run: the [`Config`] of a run.

use std::path::PathBuf;
use std::time::Duration;

use crate::image::{self, BuildOptions};
use crate::kbuild::MockBuses;
use crate::profile::AnyOf;
use crate::suite::GuestNames;
use crate::suite::PointSelection;
use crate::vm::accel::AccelChoice;
use crate::vm::Share;

/// How long a guest may take from QEMU's start until its agent answers.
pub const BOOT_TIMEOUT: Duration = Duration::from_secs(90);

/// Where things are and how guests run.
#[derive(Clone, Debug)]
pub struct Config {
    /// The repository root (holds suites/ and images/).
    pub root: PathBuf,
    pub image: String,
    /// The image the trials that need a mock bus or ndctl's own tests run
    /// on, and the mock buses it has (see [`crate::guest_choice::test_image`]);
    /// none: they are skipped.
    pub test_image: Option<(String, MockBuses)>,
    /// Snapshot variants read before the shared snapshots, in order.
    pub variants: Vec<String>,
    /// Put snapshots the shared ones do not match into the first variant.
    pub new_variant: bool,
    /// Keep each trial's snapshot bodies here instead of judging them
    /// (`ndharness compare`).
    pub collect: Option<PathBuf>,
    /// Boot every guest instead of starting it from a saved state.
    pub cold: bool,
    pub runs_dir: PathBuf,
    /// Where `results.json` and `junit.xml` go.
    pub results_dir: PathBuf,
    pub build: BuildOptions,
    pub accel: AccelChoice,
    pub boot_timeout: Duration,
    /// The guest's kernel and ndctl by name: which `ignored:` entries apply.
    pub guest: GuestNames,
    /// Host folders shared into every guest of the run (`--share`).
    pub shares: Vec<Share>,
    /// Which crash points power-cut steps judge (a sample unless a
    /// profile or `--power-cuts` says every write).
    pub power_cuts: PointSelection,
    /// The trials of the run's profile (`--profile`); none: every trial.
    pub profile_trials: Option<AnyOf>,
    /// A trial running longer is reported slow, and again at each multiple
    /// (`--slow-after`).
    pub slow_after: Duration,
    /// What a run whose filters match no trial exits with (`--no-tests`).
    pub no_tests: super::result::NoTests,
    /// Several filters (`run A B`): trials whose name contains any of
    /// them; none: every trial (one filter is libtest's own).
    pub name_filters: Vec<String>,
    /// A filter expression (`run -E`): the trials it matches.
    pub filter_expr: Option<super::filterset::Expr>,
}

/// When a running trial is first reported slow, by default.
pub const SLOW_AFTER: Duration = Duration::from_secs(60);

impl Config {
    /// The defaults for a repository: default image, the user's cache,
    /// accelerator `auto`, run folders under `ROOT/target/ndharness/runs`.
    pub fn for_repo(root: PathBuf) -> Config {
        let resolved = crate::guest_choice::Resolved {
            image: crate::guest_choice::DEFAULT_IMAGE.into(),
            user_kernel: None,
            user_ndctl: None,
            variants: Vec::new(),
        };
        Config {
            guest: crate::guest_choice::guest_names(&root.join("images"), &resolved),
            runs_dir: root.join("target/ndharness/runs"),
            results_dir: root.join("target/ndharness/results"),
            test_image: crate::guest_choice::test_image(&root.join("images"), &resolved),
            root,
            image: crate::guest_choice::DEFAULT_IMAGE.into(),
            variants: Vec::new(),
            new_variant: false,
            collect: None,
            cold: false,
            build: BuildOptions {
                cache: image::cache_dir(),
                mirror: None,
                user_kernel: None,
                user_ndctl: None,
            },
            accel: AccelChoice::Auto,
            boot_timeout: BOOT_TIMEOUT,
            shares: Vec::new(),
            power_cuts: PointSelection::default(),
            slow_after: SLOW_AFTER,
            no_tests: Default::default(),
            name_filters: Vec::new(),
            filter_expr: None,
            profile_trials: None,
        }
    }

    pub fn suites_dir(&self) -> PathBuf {
        self.root.join("suites")
    }
    pub fn images_dir(&self) -> PathBuf {
        self.root.join("images")
    }
    /// The saved states of warm starts.
    pub fn states_dir(&self) -> PathBuf {
        self.build.cache.join("states")
    }
}
