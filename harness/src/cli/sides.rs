//! A kernel change's sides as `validate` and `mutate` run them: the user's
//! tree synced into its overlay, the change applied there, the overlay
//! built (one build folder for every side, so each build after the first
//! is incremental), and the checks run on that kernel with their bodies
//! collected (as `compare` does), plus explore's findings when asked. The
//! user's tree is read, never written.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;
use ndharness::explore;
use ndharness::guest_choice::Selection;
use ndharness::kbuild::{self, KernelConfig};
use ndharness::overlay::{self, Change, Overlay};
use ndharness::profile::{ProfileRun, Profiles, TrialSet};
use ndharness::runner::{self, compare, jobs, Config, RunOptions};

use super::args::patch::Checks;
use super::config::{config, find_root, run_trials};

/// Why a side has no kernel: the change's fault, or the harness's.
#[derive(Debug, thiserror::Error)]
pub enum BuildFailure {
    #[error("the change does not apply: {0}")]
    DoesNotApply(String),
    #[error("the kernel does not build: {0}")]
    DoesNotBuild(String),
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

/// A side's kernel, built.
pub struct Built {
    pub built: kbuild::Built,
    pub seconds: f64,
}

/// A side as it ran.
pub struct SideRun {
    pub side: compare::Side,
    /// Explore's findings (their [`explore::label`]s), when it ran.
    pub findings: Option<BTreeSet<String>>,
    /// The new finding that ended explore before its budget
    /// ([`explore::Until::NewFinding`]).
    pub explore_ended_by: Option<String>,
    pub seconds: f64,
}

/// The tree, its overlay, the checks and where their output goes.
pub struct Bench {
    pub root: PathBuf,
    overlay: Overlay,
    kernel_config: KernelConfig,
    checks: Checks,
    trials: Vec<TrialSet>,
    power_cuts: ndharness::suite::PointSelection,
    cache: PathBuf,
}

/// The runs whose trials a change is checked on, all on the tree's
/// kernel: the profile's runs, each with its own skips (one line's skips
/// leave its trials to another line); with FILTERs, every trial (the
/// filters choose); and the power-cut suite when asked.
fn checked_runs(profile_runs: &[ProfileRun], filtered: bool, power_cut: bool) -> Vec<ProfileRun> {
    let mut runs: Vec<ProfileRun> = if filtered {
        Vec::new()
    } else {
        profile_runs.to_vec()
    };
    if runs.is_empty() {
        runs.push(ProfileRun::default());
    }
    if power_cut {
        runs.push(ProfileRun {
            trials: vec!["power-cut::*".into()],
            ..ProfileRun::default()
        });
    }
    runs
}

impl Bench {
    /// The bench for `checks`: its profile's trials (and power cuts when
    /// asked) compiled, the tree checked for a kernel tree; nothing built.
    pub fn new(checks: &Checks) -> anyhow::Result<Bench> {
        let root = find_root(checks.common.root.as_deref())?;
        let cache = ndharness::image::cache_dir();
        let overlay = Overlay::for_tree(&cache, &checks.kernel_tree)?;
        let profiles = Profiles::load(&root)?;
        let profile = profiles.get(&checks.profile)?;
        let runs = checked_runs(&profile.runs, !checks.filters.is_empty(), checks.power_cut);
        let trials = runs
            .iter()
            .map(|run| run.trial_set(&checks.profile))
            .collect::<Result<Vec<_>, _>>()?;
        let kernel_config = match &checks.kernel_config {
            Some(full) => KernelConfig::Full(full.clone()),
            None => KernelConfig::Fragment(root.join("images").join(kbuild::FRAGMENT)),
        };
        Ok(Bench {
            root,
            overlay,
            kernel_config,
            checks: checks.clone(),
            trials,
            power_cuts: profile.power_cuts,
            cache,
        })
    }

    /// The user's tree.
    pub fn tree(&self) -> &Path {
        self.overlay.tree()
    }

    /// The overlay's source tree (as the last build left it).
    pub fn src(&self) -> PathBuf {
        self.overlay.src()
    }

    /// The overlay synced to the user's tree, `change` applied, built.
    pub fn build(&mut self, change: &Change) -> Result<Built, BuildFailure> {
        let t0 = Instant::now();
        self.overlay.sync().context("syncing the overlay")?;
        match self.overlay.apply(change) {
            Ok(_) => {}
            Err(e @ overlay::Error::DoesNotApply { .. }) => {
                return Err(BuildFailure::DoesNotApply(e.to_string()))
            }
            Err(e) => return Err(anyhow::Error::from(e).into()),
        }
        let src = self.overlay.src();
        let built = match kbuild::build(&src, &self.kernel_config, &self.cache) {
            Ok(built) => built,
            Err(e @ kbuild::Error::Build { .. }) => {
                return Err(BuildFailure::DoesNotBuild(e.to_string()))
            }
            Err(e) => return Err(anyhow::Error::from(e).into()),
        };
        Ok(Built {
            built,
            seconds: t0.elapsed().as_secs_f64(),
        })
    }

    /// The checks on `built`'s kernel, into `out` (emptied first): the
    /// trials with their bodies collected, and explore with `seed` for its
    /// whole budget.
    pub fn run(
        &self,
        built: &Built,
        label: &str,
        out: &Path,
        seed: u64,
    ) -> anyhow::Result<SideRun> {
        self.run_until(built, label, out, seed, &explore::Until::Budget)
    }

    /// As [`Bench::run`], explore ending at `until`.
    pub fn run_until(
        &self,
        built: &Built,
        label: &str,
        out: &Path,
        seed: u64,
        until: &explore::Until,
    ) -> anyhow::Result<SideRun> {
        let t0 = Instant::now();
        if out.exists() {
            std::fs::remove_dir_all(out).with_context(|| format!("clearing {}", out.display()))?;
        }
        let selection = Selection {
            kernel: Some(built.built.bzimage.display().to_string()),
            modules: Some(built.built.modules.clone()),
            ndctl: self.checks.ndctl.clone(),
            ..Selection::default()
        };
        let mut config = config(&self.checks.common, selection, &self.checks.machine, None)?;
        let snapshots = collecting(&mut config, out);
        config.profile_trials = Some(TrialSet::any_of(self.trials.clone()));
        config.power_cuts = self.power_cuts;
        config.name_filters = self.checks.filters.clone();
        let filter = libtest_mimic::Arguments {
            test_threads: self.checks.test_threads,
            ..Default::default()
        };
        let (findings, explore_ended_by) = match self.checks.explore {
            Some(budget) => {
                let explored = self.explore(&config, budget, out, seed, until)?;
                (Some(explored.findings), explored.ended_by)
            }
            None => (None, None),
        };
        let record = run_trials(config, &filter, &RunOptions::default());
        if record.results.is_empty() {
            anyhow::bail!(
                "no trial matched (profile `{}`{}): nothing to compare",
                self.checks.profile,
                if self.checks.filters.is_empty() {
                    String::new()
                } else {
                    format!(", filters `{}`", self.checks.filters.join("`, `"))
                }
            );
        }
        Ok(SideRun {
            side: compare::Side {
                spec: label.to_owned(),
                info: record.info,
                exit_code: record.exit_code,
                snapshots,
                results: record.results,
            },
            findings,
            explore_ended_by,
            seconds: t0.elapsed().as_secs_f64(),
        })
    }

    /// Explore's findings on the side's kernel, by their labels on each
    /// topology that saw them, and the one that ended it early.
    fn explore(
        &self,
        config: &Config,
        budget: std::time::Duration,
        out: &Path,
        seed: u64,
        until: &explore::Until,
    ) -> anyhow::Result<Explored> {
        let env = runner::prepare(config)?;
        let topologies = &self.checks.explore_topologies;
        let guest = topologies
            .iter()
            .filter_map(|t| ndharness::topology::load(t).ok())
            .map(|t| jobs::guest_memory(&t.topology))
            .max()
            .unwrap_or(1 << 30);
        let options = explore::Options {
            topologies: topologies.clone(),
            seed,
            budget,
            steps: 12,
            jobs: self
                .checks
                .test_threads
                .unwrap_or_else(|| jobs::default_jobs(guest)),
            out: out.join("explore"),
            max_shrink_runs: 10,
            until: until.clone(),
        };
        let report = explore::explore(config, &env, &options)?;
        Ok(Explored {
            findings: report.labels.into_iter().collect(),
            ended_by: report.ended_early_by,
        })
    }
}

/// What explore found on a side, and the finding that ended it early.
struct Explored {
    findings: BTreeSet<String>,
    ended_by: Option<String>,
}

/// Sets `config` to collect its trials' bodies (not judge them) under
/// `dir`, with its run folders and results there too; the bodies' folder.
pub fn collecting(config: &mut Config, dir: &Path) -> PathBuf {
    let snapshots = dir.join("snapshots");
    config.runs_dir = dir.join("runs");
    config.results_dir = dir.to_owned();
    // Bodies are collected, not judged; a failing trial's transcript so
    // far is shown against the shared snapshot.
    config.variants = Vec::new();
    config.collect = Some(snapshots.clone());
    snapshots
}

/// What explore found on one side and not the other: (only the baseline,
/// only the candidate).
pub fn explore_difference(
    baseline: &BTreeSet<String>,
    candidate: &BTreeSet<String>,
) -> (Vec<String>, Vec<String>) {
    (
        baseline.difference(candidate).cloned().collect(),
        candidate.difference(baseline).cloned().collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(trials: &[&str], skip: &[&str]) -> ProfileRun {
        ProfileRun {
            trials: trials.iter().map(|t| t.to_string()).collect(),
            skip: skip.iter().map(|t| t.to_string()).collect(),
            ..ProfileRun::default()
        }
    }

    #[test]
    fn each_line_keeps_its_own_skips_and_power_cuts_add_a_run() {
        // As the check profile: the default line skips ndctl's tests, which
        // the mock line takes (but mmap.sh).
        let profile = [
            run(&[], &["ndctl::*"]),
            run(&["ndctl::*"], &["ndctl::mmap.sh::*"]),
        ];
        let sets: Vec<TrialSet> = checked_runs(&profile, false, true)
            .iter()
            .map(|r| r.trial_set("check").unwrap())
            .collect();
        let taken = TrialSet::any_of(sets);
        assert!(taken.contains("basic::fsdax::nfit-1"));
        assert!(taken.contains("ndctl::create.sh::nfit-test-modules"));
        assert!(!taken.contains("ndctl::mmap.sh::e820-2g"));
        assert!(taken.contains("power-cut::create::cxl-x2"));
        // FILTERs choose among every trial.
        let filtered = checked_runs(&profile, true, false);
        assert_eq!(filtered.len(), 1);
        assert!(filtered[0]
            .trial_set("check")
            .unwrap()
            .contains("ndctl::mmap.sh::e820-2g"));
    }
}
