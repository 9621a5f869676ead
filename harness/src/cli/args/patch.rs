//! The flags of the commands whose unit of work is a kernel change:
//! `validate` (one change, one verdict) and `mutate` (many planted bugs, a
//! score), with the checks they share ([`Checks`]).

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use super::{Common, MachineArgs};

/// What runs on each kernel, and where the tree and its builds are.
#[derive(Args, Clone, Debug)]
pub struct Checks {
    /// The kernel source tree. Never written: the builds use an overlay of
    /// it in the cache (links to its files, copies of the changed ones).
    #[arg(long, value_name = "DIR")]
    pub kernel_tree: PathBuf,
    /// A full .config for the tree, instead of tinyconfig and the guests'
    /// fragment (images/guest-kernel.config).
    #[arg(long, value_name = "FILE")]
    pub kernel_config: Option<PathBuf>,
    /// Only trials whose name contains one of these (suite::case::topology;
    /// several: any of them) [default: the profile's trials]
    #[arg(value_name = "FILTER")]
    pub filters: Vec<String>,
    /// The profile (suites/profiles.yaml) whose trials run, all on the
    /// tree's kernel.
    #[arg(long, default_value = "validate")]
    pub profile: String,
    /// Add the power-cut suite (its crash points sampled).
    #[arg(long)]
    pub power_cut: bool,
    /// Add explore for DURATION on each kernel (`2m`), the same seed on
    /// both: a finding only the change has is its regression.
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub explore: Option<Duration>,
    /// Explore's topologies (repeatable).
    #[arg(long = "explore-topology", value_name = "NAME", default_values = ["nfit-1", "cxl-x2"])]
    pub explore_topologies: Vec<String>,
    /// ndctl: a name (81, 85, 76), your ndctl source tree, or the DESTDIR
    /// of your own build.
    #[arg(long)]
    pub ndctl: Option<String>,
    /// Guests at once [default: one per core, fewer when the available
    /// memory would not hold them]
    #[arg(long, short = 'j', visible_alias = "jobs")]
    pub test_threads: Option<usize>,
    #[command(flatten)]
    pub common: Common,
    #[command(flatten)]
    pub machine: MachineArgs,
}

#[derive(Args, Debug)]
pub struct ValidateArgs {
    /// The change: a patch file (repeatable: a series, in order; a folder
    /// stands for its *.patch and *.diff files by name).
    #[arg(long = "patch", value_name = "FILE", required_unless_present = "head")]
    pub patches: Vec<PathBuf>,
    /// The baseline as a git revision of the tree [default: the tree as it
    /// is].
    #[arg(long, value_name = "REV")]
    pub base: Option<String>,
    /// The candidate as a git revision of the tree, instead of --patch.
    #[arg(long, value_name = "REV", conflicts_with = "patches")]
    pub head: Option<String>,
    /// Runs of the baseline: a trial that differs between them is flaky
    /// there, and its difference on the candidate is not a regression.
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    pub repeat: u32,
    /// Folder for validate.json, compare.html and each side's results
    /// [default: ROOT/target/ndharness/validate]
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    #[command(flatten)]
    pub checks: Checks,
}

#[derive(Args, Debug)]
pub struct MutateArgs {
    /// Hand-written mutants: patch files with a header, or folders of them
    /// (repeatable) [default: mutants/hand]
    #[arg(long = "mutants", value_name = "PATH")]
    pub mutants: Vec<PathBuf>,
    /// Only mutants whose name contains this (repeatable).
    #[arg(long = "only", value_name = "TEXT")]
    pub only: Vec<String>,
    /// Also generate N mutants (operator swaps, removed calls, negated
    /// conditions, constants off by one) over the chosen functions.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub generate: usize,
    /// Seed of the generated mutants' sample and of explore's sequences
    /// (the same on every kernel) [default: from the clock, printed].
    #[arg(long)]
    pub seed: Option<u64>,
    /// Stop starting mutants after DURATION (`8h`); the one running
    /// finishes.
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub budget: Option<Duration>,
    /// Runs of the unmutated reference: a trial that differs between
    /// them is flaky there, and its difference on a mutant kills nothing.
    #[arg(long, value_name = "N", default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..))]
    pub repeat: u32,
    /// Folder for mutate.json, mutate.html and the runs [default:
    /// ROOT/target/ndharness/mutate]
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    #[command(flatten)]
    pub checks: Checks,
}
