//! The command line's types, as clap reads them: every command, flag and
//! help text. What the commands do is in their own modules.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use ndharness::vm::accel::AccelChoice;
use ndharness::vm::share::{self, Share};

pub mod patch;

/// A duration as humantime writes it (`90s`, `2m 30s`), or a plain number
/// of seconds (what the flags took before).
pub fn duration(text: &str) -> Result<std::time::Duration, humantime::DurationError> {
    match text.parse::<u64>() {
        Ok(seconds) => Ok(std::time::Duration::from_secs(seconds)),
        Err(_) => humantime::parse_duration(text),
    }
}

pub use patch::{MutateArgs, ValidateArgs};

#[derive(Parser)]
#[command(
    name = "ndharness",
    version,
    about = "Boot QEMU guests with persistent-memory topologies, drive ndctl in them, snapshot what comes out"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Build, lock or inspect guest images (images/NAME.yaml + NAME.lock).
    Image {
        #[command(subcommand)]
        action: ImageAction,
    },
    /// Boot one guest; run COMMAND in it and exit with its exit code, or
    /// open a shell in it (at a terminal; exit or Ctrl-a x stops the guest).
    #[command(after_help = "Examples:
  ndharness boot -t cxl-x2                       a shell in a 2-way CXL guest
  ndharness boot -t nfit-1 -- ndctl list -RD     one command, its exit code
  ndharness boot -t nfit-1 --kernel debian-7.3 --append memhp_default_state=offline -- cat /proc/cmdline
  ndharness boot -t cxl-x6 --gdb                 the kernel under gdb")]
    Boot(BootArgs),
    /// Run suite cases as tests (libtest conventions).
    #[command(after_help = "Examples:
  ndharness run                                  every trial of the default line
  ndharness run --profile smoke                  a verdict in about a minute
  ndharness run cxl::                            one suite (a name substring)
  ndharness run --kernel debian-7.3 --list       what runs on a kernel line
  ndharness run --kernel-tree ~/linux --profile smoke
  ndharness run power-cut::create::cxl-x2 --power-cuts every-write")]
    Run(RunArgs),
    /// Measure cold boot, warm start, round trip, image build and suite
    /// wall time (cold against warm), medians over --runs; also as JSON.
    Bench(BenchArgs),
    /// Find the commit of a kernel tree that broke a case: `git bisect run`
    /// with a kernel build and the case at each step.
    Bisect(BisectArgs),
    /// Run the same cases on two guests (kernels or ndctl versions) and
    /// report, per trial, whether transcript, layout and kernel log differ.
    Compare(CompareArgs),
    /// Merge the results of shards (`run --partition`) into one
    /// results.json, junit.xml and report.html.
    MergeResults(MergeArgs),
    /// Random namespace sequences in warm-started guests, checked against
    /// invariants after every step; a sequence that breaks one is shrunk
    /// and written as a case file.
    Explore(ExploreArgs),
    /// One verdict on a kernel change (a patch, a series, or two git
    /// revisions of a tree): the tree built with and without it, the same
    /// trials on both, and no change, fixes or regresses (exit 0, 0, 1).
    #[command(after_help = "Examples:
  ndharness validate --kernel-tree ~/linux --patch fix.patch
  ndharness validate --kernel-tree ~/linux --patch series/ --power-cut --repeat 2
  ndharness validate --kernel-tree ~/linux --base v7.3 --head HEAD cxl::")]
    Validate(ValidateArgs),
    /// How many kernel bugs the checks catch: mutants (hand-written and
    /// generated) planted in a tree one at a time, each rebuilt and run
    /// through the checks; killed, survived, or did not build, and a score
    /// per check set.
    #[command(after_help = "Examples:
  ndharness mutate --kernel-tree ~/linux                 the hand-written library
  ndharness mutate --kernel-tree ~/linux --only label    mutants named so
  ndharness mutate --kernel-tree ~/linux --generate 50 --seed 7 --budget 2h")]
    Mutate(MutateArgs),
    /// The saved guest states of warm starts in the cache: list them, or
    /// remove the unused ones (`run` removes those unused for 7 days).
    States {
        #[command(subcommand)]
        action: Option<StatesAction>,
    },
    /// Print a shell's completion script (bash, zsh, fish, elvish,
    /// powershell): `ndharness completions bash >
    /// ~/.local/share/bash-completion/completions/ndharness`.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Write the man pages (ndharness.1 and one per command) into DIR:
    /// `ndharness man --out ~/.local/share/man/man1`.
    Man {
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
    },
    /// Show a topology and its QEMU command line.
    Topology {
        #[command(subcommand)]
        action: TopologyAction,
    },
}

#[derive(Subcommand)]
pub enum ImageAction {
    /// Build the image (or find it in the cache) and print where it is.
    Build(ImageArgs),
    /// Resolve the recipe's packages and pin them in images/NAME.lock.
    Lock(ImageArgs),
    /// Print what a built image holds.
    Show(ImageArgs),
    /// Unpack the kernel source of a line built from source (`--kernel
    /// debian-7.3-mock`), patched as the line builds it, into a folder
    /// under DIR: a tree for `validate`, `mutate` and `--kernel-tree`.
    Source {
        #[command(flatten)]
        image: ImageArgs,
        /// Where the tree goes (a `linux-source-X` folder is made in it).
        #[arg(long, value_name = "DIR")]
        out: std::path::PathBuf,
    },
    /// Re-lock a line that follows the newest kernel of its package pattern
    /// (`follows_newest: true` in its recipe), printing what changed; a
    /// line pinned for good is left as it is. What the nightly runs first.
    Refresh(ImageArgs),
}

#[derive(Subcommand)]
pub enum StatesAction {
    /// Each state: last use, size, topology, folder (the default).
    List,
    /// Remove the states unused for DURATION (`7d`, `12h`; 0: all of them).
    Prune {
        #[arg(long, value_name = "DURATION", value_parser = duration, default_value = "7days")]
        older_than: std::time::Duration,
        /// Then remove the least recently used states until the rest take
        /// at most SIZE (`8G`, `500M`) [default: none]
        #[arg(long, value_name = "SIZE")]
        max_size: Option<ndharness::size::Size>,
    },
}

#[derive(Subcommand)]
pub enum TopologyAction {
    /// Print the topology (a shipped name or a YAML path) and its QEMU argv.
    Show { topology: String },
}

#[derive(Args, Clone, Debug, Default, PartialEq)]
pub struct Common {
    /// The repository root holding suites/ and images/ [default: found from the current folder]
    #[arg(long, global = true, env = "NDHARNESS_ROOT")]
    pub root: Option<PathBuf>,
    /// Debian archive for guest packages [default: the host's apt sources]
    #[arg(long, global = true)]
    pub mirror: Option<String>,
}

/// Which guest: a packaged kernel and ndctl by name, or your own builds.
#[derive(Args, Clone, Debug, Default, PartialEq)]
pub struct SelectArgs {
    /// Kernel: debian-6.12 (default), debian-7.3, debian-7.2, debian-6.1,
    /// debian-7.3-mock, debian-7.2-mock, debian-6.12-mock (with nfit_test
    /// and cxl_test), or the path of your own bzImage (with --modules).
    #[arg(long)]
    pub kernel: Option<String>,
    /// INSTALL_MOD_PATH of `make modules_install` for --kernel BZIMAGE.
    #[arg(long)]
    pub modules: Option<PathBuf>,
    /// ndctl: 81 or trixie (default), 85 or sid, 76 or bookworm; your ndctl
    /// source tree (built with its tests in the guest's userland; `ndctl::`
    /// runs its test/), or the DESTDIR of your own `meson install`.
    #[arg(long)]
    pub ndctl: Option<String>,
    /// A kernel source tree: built out of tree (tinyconfig +
    /// images/guest-kernel.config), incrementally, with ccache when installed,
    /// with its mock buses (nfit_test, cxl_test); used as --kernel/--modules.
    #[arg(long)]
    pub kernel_tree: Option<PathBuf>,
    /// A full .config for --kernel-tree, instead of tinyconfig and the
    /// guests' fragment.
    #[arg(long, requires = "kernel_tree")]
    pub kernel_config: Option<PathBuf>,
}

#[derive(Args)]
pub struct ImageArgs {
    /// Image recipe name (images/NAME.yaml) [default: the one --kernel and
    /// --ndctl select, `default` without them]
    pub name: Option<String>,
    #[command(flatten)]
    pub select: SelectArgs,
    #[command(flatten)]
    pub common: Common,
}

#[derive(Args, Clone, Debug, Default, PartialEq)]
pub struct GuestArgs {
    #[command(flatten)]
    pub common: Common,
    /// Image recipe name (images/NAME.yaml) [default: the one --kernel and
    /// --ndctl select]
    #[arg(long)]
    pub image: Option<String>,
    #[command(flatten)]
    pub select: SelectArgs,
    #[command(flatten)]
    pub machine: MachineArgs,
    /// Folder for run folders (evidence) [default: ROOT/target/ndharness/runs]
    #[arg(long)]
    pub runs_dir: Option<PathBuf>,
}

/// How guests run.
#[derive(Args, Clone, Debug, PartialEq)]
pub struct MachineArgs {
    /// Accelerator; auto proves KVM with a probe boot and falls back to TCG.
    #[arg(long, value_enum, default_value = "auto")]
    pub accel: AccelChoice,
    /// How long from QEMU's start the guest agent has to answer (`90s`,
    /// `2m`; a plain number is seconds).
    #[arg(long, value_name = "DURATION", value_parser = duration, default_value = "90s")]
    pub boot_timeout: std::time::Duration,
    /// The QEMU binary [default: qemu-system-x86_64 on PATH]
    #[arg(long, value_name = "PATH", env = "NDHARNESS_QEMU")]
    pub qemu: Option<PathBuf>,
    /// Boot every guest, instead of starting it from the saved state of a
    /// ready guest (the default; see README, "Warm start").
    #[arg(long)]
    pub cold: bool,
}

#[derive(Args)]
pub struct BenchArgs {
    /// Repetitions of each start and image build.
    #[arg(long, default_value = "5")]
    pub runs: usize,
    /// Topologies to start (repeatable).
    #[arg(long = "topology", default_values = ["nfit-1", "nfit-2", "cxl-x4"])]
    pub topologies: Vec<String>,
    /// Trials whose suite wall time is measured cold, then warm ("" for all).
    #[arg(long)]
    pub suite: Option<String>,
    /// Leave out of the suite the trials whose name contains this
    /// (repeatable), e.g. `ndctl::` for ndctl's own test scripts.
    #[arg(long)]
    pub suite_skip: Vec<String>,
    /// Guests at once for the suite [default: one per core, fewer when the available memory would not hold them]
    #[arg(long, short = 'j', visible_alias = "jobs")]
    pub test_threads: Option<usize>,
    /// Delete the saved VM states first, so the warm suite pays for making
    /// its templates, as a first run after any change does.
    #[arg(long)]
    pub fresh_states: bool,
    /// Measure power cuts on this topology (repeatable): a create-namespace
    /// recorded at each label write, and each crash point's restart.
    #[arg(long = "power-cut")]
    pub power_cut: Vec<String>,
    /// Measure `explore`'s steps per second on this topology (repeatable),
    /// 2 guests at once, seed 1, for --explore-budget.
    #[arg(long = "explore")]
    pub explore: Vec<String>,
    /// How long each --explore measurement explores.
    #[arg(long, default_value = "3m", value_parser = humantime::parse_duration)]
    pub explore_budget: std::time::Duration,
    /// Where the JSON goes [default: ROOT/target/ndharness/bench.json]
    #[arg(long)]
    pub json: Option<PathBuf>,
    #[command(flatten)]
    pub guest: GuestArgs,
}

#[derive(Args)]
pub struct ExploreArgs {
    /// Topologies to explore, round-robin (repeatable).
    #[arg(long = "topology", default_values = ["nfit-1"])]
    pub topologies: Vec<String>,
    /// The seed: the same seed gives the same sequences [default: from the clock, printed]
    #[arg(long)]
    pub seed: Option<u64>,
    /// How long to explore (`10m`, `1h`); a shrink in progress finishes.
    #[arg(long, default_value = "10m", value_parser = humantime::parse_duration)]
    pub budget: std::time::Duration,
    /// Most operations in a sequence.
    #[arg(long, default_value = "12")]
    pub steps: usize,
    /// Guests at once [default: one per core, fewer when the available memory would not hold them]
    #[arg(long, short = 'j', visible_alias = "jobs")]
    pub test_threads: Option<usize>,
    /// Guest runs a finding's shrinking may take.
    #[arg(long, default_value = "40")]
    pub max_shrink_runs: u32,
    /// Folder for the case files and explore.json [default: ROOT/target/ndharness/explore]
    #[arg(long)]
    pub out: Option<PathBuf>,
    #[command(flatten)]
    pub guest: GuestArgs,
}

#[derive(Args)]
pub struct BisectArgs {
    /// The trials that tell good from bad (a filter, as for `run`).
    #[arg(long)]
    pub case: String,
    /// A revision where the case passes.
    #[arg(long)]
    pub good: String,
    /// A revision where it fails.
    #[arg(long)]
    pub bad: String,
    /// The kernel's git work tree; left on the revision it was on.
    #[arg(long)]
    pub kernel_tree: PathBuf,
    /// Match --case exactly.
    #[arg(long)]
    pub exact: bool,
    #[command(flatten)]
    pub common: Common,
    #[command(flatten)]
    pub machine: MachineArgs,
}

#[derive(Args)]
pub struct CompareArgs {
    /// The reference guest: a kernel name (debian-6.1), an image name, or
    /// key=value pairs: kernel=NAME|BZIMAGE, modules=DIR, tree=DIR, ndctl=NAME|DIR, image=NAME, start=cold|warm.
    #[arg(long)]
    pub baseline: String,
    /// The guest under test, in the same forms.
    #[arg(long)]
    pub candidate: String,
    /// Compare only trials whose name contains this (suite::case::topology).
    pub filter: Option<String>,
    /// Match FILTER exactly.
    #[arg(long)]
    pub exact: bool,
    /// Skip trials whose name contains this.
    #[arg(long)]
    pub skip: Vec<String>,
    /// Guests at once [default: one per core, fewer when the available memory would not hold them]
    #[arg(long, short = 'j', visible_alias = "jobs")]
    pub test_threads: Option<usize>,
    /// Folder for compare.json, compare.html and each side's results
    /// [default: ROOT/target/ndharness/compare]
    #[arg(long)]
    pub out: Option<PathBuf>,
    #[command(flatten)]
    pub share: ShareArgs,
    #[command(flatten)]
    pub common: Common,
    #[command(flatten)]
    pub machine: MachineArgs,
}

/// Host folders in the guest.
#[derive(Args, Clone, Debug, Default, PartialEq)]
pub struct ShareArgs {
    /// Share a host folder into the guest (9p, read-write), mounted at
    /// GUEST_PATH [default: the host folder's own absolute path]; repeatable.
    #[arg(long = "share", value_name = "HOST_DIR[:GUEST_PATH]", value_parser = parse_share)]
    pub shares: Vec<Share>,
}

/// `--share`'s value: parsed, its host folder found.
fn parse_share(spec: &str) -> Result<Share, share::Error> {
    let cwd = std::env::current_dir().map_err(|source| share::Error::Host {
        path: ".".into(),
        source,
    })?;
    Share::parse(spec, &cwd)?.resolve()
}

#[derive(Args)]
pub struct BootArgs {
    /// A shipped topology name or the path of a topology YAML file.
    #[arg(long, short)]
    pub topology: String,
    #[command(flatten)]
    pub guest: GuestArgs,
    /// How long COMMAND may run (`300s`, `10m`; a plain number is
    /// seconds).
    #[arg(long, value_name = "DURATION", value_parser = duration, default_value = "300s")]
    pub timeout: std::time::Duration,
    /// Save the ready guest's state (before the drivers of the topology's
    /// CXL and virtio-pmem devices load) to this file and stop.
    #[arg(long, hide = true)]
    pub save_state: Option<PathBuf>,
    /// Start from this state (saved with --save-state, same topology).
    #[arg(long, hide = true)]
    pub from_state: Option<PathBuf>,
    #[command(flatten)]
    pub share: ShareArgs,
    /// Start QEMU's gdbstub on a free local port and boot the kernel with
    /// nokaslr (a cold boot); prints the gdb command to attach.
    #[arg(long)]
    pub gdb: bool,
    /// More kernel command line for this boot (`--append "memmap=2G!4G"`):
    /// a cold boot, as no saved state has it.
    #[arg(long, value_name = "TEXT")]
    pub append: Option<String>,
    /// Guest memory instead of the topology's (`--memory 4G`).
    #[arg(long, value_name = "SIZE")]
    pub memory: Option<ndharness::size::Size>,
    /// Guest CPUs instead of the topology's.
    #[arg(long, value_name = "N")]
    pub cpus: Option<u32>,
    /// Print the QEMU command line before the guest starts.
    #[arg(long, short)]
    pub verbose: bool,
    /// Without COMMAND, keep the guest up printing its sockets until
    /// Ctrl-C instead of opening a shell (without it, a boot with neither a
    /// command nor a terminal is refused at once).
    #[arg(long, conflicts_with = "command")]
    pub no_shell: bool,
    /// Command to run in the guest.
    #[arg(last = true)]
    pub command: Vec<String>,
}

#[derive(Args, Clone, Debug, Default, PartialEq)]
pub struct RunArgs {
    /// Run only trials whose name contains one of these
    /// (suite::case::topology; several: any of them).
    #[arg(value_name = "FILTER")]
    pub filters: Vec<String>,
    /// A filter expression: suite(GLOB), case(GLOB), topology(GLOB),
    /// name(GLOB), kernel(GLOB), ndctl(GLOB), status(runs|known|ignored),
    /// joined with &, |, ! and parentheses
    /// (`-E 'suite(cxl) & !topology(cxl-x8)'`); with FILTERs, both apply.
    #[arg(short = 'E', long = "filter-expr", value_name = "EXPR")]
    pub filter_expr: Option<String>,
    /// A named selection from suites/profiles.yaml: `smoke` (minutes, on
    /// every rebuild), `check` (what .ci/run runs), `full` (everything,
    /// every power cut); `--list --profile NAME` shows what it takes. On
    /// the line --kernel (or --kernel-tree) names, every run's trials.
    #[arg(long, value_name = "NAME")]
    pub profile: Option<String>,
    /// Which crash points power-cut steps judge: `sample` (the first and
    /// last write; in each round of DIMM label updates the cuts that leave
    /// one DIMM updated and all but one; between namespace writes, each cut
    /// inside or between structures; the end, and 3 seeded more) or
    /// `every-write` [default: the profile's; without one, sample]
    #[arg(long, value_name = "every-write|sample")]
    pub power_cuts: Option<ndharness::suite::PointSelection>,
    /// The seed of the power-cut sample [default: each trial's own, from
    /// its name]; a violation found by a sample prints the seed it used.
    #[arg(long, value_name = "SEED")]
    pub power_cut_seed: Option<u64>,
    /// List trials without running them.
    #[arg(long)]
    pub list: bool,
    /// Match FILTER exactly.
    #[arg(long)]
    pub exact: bool,
    /// Run only ignored cases.
    #[arg(long)]
    pub ignored: bool,
    /// Run ignored cases too.
    #[arg(long)]
    pub include_ignored: bool,
    /// Skip trials whose name contains this.
    #[arg(long)]
    pub skip: Vec<String>,
    /// Guests at once [default: one per core, fewer when the available memory would not hold them]
    #[arg(long, short = 'j', visible_alias = "jobs")]
    pub test_threads: Option<usize>,
    /// Folder for results.json, junit.xml and report.html (`--out`, as
    /// every command that writes a report spells it; `--results` too)
    /// [default: ROOT/target/ndharness/results]
    #[arg(long = "out", visible_alias = "results", value_name = "DIR")]
    pub results: Option<PathBuf>,
    /// Exit as `git bisect run` reads it: 0 pass, 1 conformance failure,
    /// 125 (skip) when the kernel would not build or boot, 128 (stop) when
    /// no trial matches.
    #[arg(long, hide = true)]
    pub bisect: bool,
    /// A snapshot the shared one does not match goes to this image's first
    /// snapshot variant (snapshots/VARIANT/) for `cargo insta review`.
    #[arg(long)]
    pub new_variant: bool,
    /// Run each selected trial N times and report its pass rate; with
    /// --until-failure or --soak, at most N times.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub repeat: Option<u32>,
    /// Repeat the selected trials until one fails or errors (at most
    /// --repeat times each) [default cap: 100]
    #[arg(long)]
    pub until_failure: bool,
    /// Repeat the selected trials, round after round, until DURATION
    /// (`30m`, `8h`) is spent; a running trial finishes.
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub soak: Option<std::time::Duration>,
    /// What a run whose filters match no trial exits with: fail (3), warn
    /// (0, saying so) or pass (0)
    #[arg(long, value_enum, value_name = "WHAT", default_value = "fail")]
    pub no_tests: ndharness::runner::result::NoTests,
    /// Report a trial still running after DURATION as SLOW, with its last
    /// step, and again at each multiple of it [default: 60s]
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub slow_after: Option<std::time::Duration>,
    /// Run one shard of the selection: count:K/N (the sorted trials dealt
    /// round robin, nextest's meaning), hash:K/N (by a hash of the name),
    /// or K/N (count).
    #[arg(long, value_name = "count:K/N")]
    pub partition: Option<ndharness::runner::partition::Partition>,
    /// The results.json report.html compares this run with [default: the
    /// results folder's previous.json, the last run's results]
    #[arg(long, value_name = "FILE")]
    pub previous: Option<PathBuf>,
    #[command(flatten)]
    pub kcidb: KcidbArgs,
    #[command(flatten)]
    pub share: ShareArgs,
    #[command(flatten)]
    pub guest: GuestArgs,
}

/// The run in KernelCI's KCIDB format, for `kcidb-submit`.
#[derive(Args, Clone, Debug, Default, PartialEq)]
pub struct KcidbArgs {
    /// Also write the results as a KCIDB (schema v5.3) document to FILE.
    #[arg(long, value_name = "FILE")]
    pub kcidb: Option<PathBuf>,
    /// The origin (CI system name) of the KCIDB objects [default: ndharness]
    #[arg(long, value_name = "NAME", requires = "kcidb")]
    pub kcidb_origin: Option<ndharness::runner::reporter::kcidb::Origin>,
}

#[derive(Args)]
pub struct MergeArgs {
    /// Folder for the merged results.json, junit.xml and report.html.
    pub out: PathBuf,
    /// The shards' results folders (or their results.json files).
    #[arg(required = true)]
    pub inputs: Vec<PathBuf>,
    /// The results.json report.html compares the merged run with
    /// [default: OUT/previous.json, what OUT held before]
    #[arg(long, value_name = "FILE")]
    pub previous: Option<PathBuf>,
    #[command(flatten)]
    pub kcidb: KcidbArgs,
}

/// The flags' own defaults: how guests run when no flag says otherwise
/// (`image` commands, which take no machine flags, build a `Config` with
/// these).
impl Default for MachineArgs {
    fn default() -> Self {
        MachineArgs {
            accel: AccelChoice::Auto,
            boot_timeout: ndharness::runner::BOOT_TIMEOUT,
            qemu: None,
            cold: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_are_humantime_or_seconds() {
        use std::time::Duration;
        assert_eq!(duration("90").unwrap(), Duration::from_secs(90));
        assert_eq!(duration("2m 30s").unwrap(), Duration::from_secs(150));
        assert!(duration("ninety").is_err());
    }

    #[test]
    fn defaults_in_code_are_the_flags_defaults() {
        let Command::Run(mut parsed) = Cli::try_parse_from(["ndharness", "run"]).unwrap().command
        else {
            panic!("`run` parsed as another command");
        };
        // NDHARNESS_ROOT may be set where the tests run.
        parsed.guest.common.root = None;
        assert_eq!(parsed, RunArgs::default());
    }
}
