//! Which trials a run runs: each trial of the suites (of the run's
//! profile, when it has one) planned (its guest's
//! memory, whether it is ignored here), then selected as libtest-mimic
//! selects (filter, `--exact`, `--skip`, `--ignored`), sorted by name, and
//! cut to the run's shard (`--partition`). libtest then only schedules
//! what was selected, so the executor can give it each repetition of a
//! trial as a trial of its own.

use std::sync::Arc;

use libtest_mimic::{Arguments, Completion, Failed};

use super::filterset::{Status, Subject};
use super::guest_env::cannot_run;
use super::jobs::guest_memory;
use super::partition::Partition;
use super::result::TrialResult;
use super::Config;
use crate::suite::Trial;

/// A trial of the suites, with what scheduling it needs.
pub struct Planned {
    pub trial: Arc<Trial>,
    /// The guest memory its topology takes.
    pub memory: u64,
    /// The summary entry of a trial that will not run here (its case is
    /// ignored, or the run cannot give it its guest).
    pub skip: Option<TrialResult>,
}

impl Planned {
    /// A libtest trial of this trial under `name` (a repetition's name has
    /// `#N`), ignored when the trial is.
    pub fn libtest<R>(&self, name: String, runner: R) -> libtest_mimic::Trial
    where
        R: FnOnce() -> Result<Completion, Failed> + Send + 'static,
    {
        libtest_mimic::Trial::ignorable_test(name, runner)
            .with_kind(self.trial.topology.name.clone())
            .with_ignored_flag(self.skip.is_some())
    }

    /// Whether libtest's filters select it (its name with its topology as
    /// kind, its ignored flag).
    fn is_selected(&self, args: &Arguments) -> bool {
        let probe = self.libtest(self.trial.name.clone(), || Ok(Completion::Completed));
        !args.is_filtered_out(&probe)
    }
}

/// Each trial of the run's profile (all without one) with its guest
/// memory and whether it is ignored here.
pub fn plan(config: &Config, trials: Vec<Trial>) -> Vec<Planned> {
    trials
        .into_iter()
        .filter(|trial| {
            (config.profile_trials.as_ref()).is_none_or(|set| set.contains(&trial.name))
                && (config.name_filters.is_empty()
                    || config
                        .name_filters
                        .iter()
                        .any(|f| trial.name.contains(f.as_str())))
        })
        .map(|trial| {
            let cannot = cannot_run(config, &trial);
            let ignored = trial.case.spec.ignored.reason_for(&config.guest);
            let skip = cannot
                .or_else(|| ignored.map(str::to_owned))
                .map(|why| TrialResult::ignored(&trial, why));
            Planned {
                memory: guest_memory(&trial.topology.topology),
                trial: Arc::new(trial),
                skip,
            }
        })
        .filter(|planned| {
            (config.filter_expr.as_ref()).is_none_or(|e| e.matches(&subject(config, planned)))
        })
        .collect()
}

/// A planned trial as a filter expression sees it.
fn subject<'a>(config: &'a Config, planned: &'a Planned) -> Subject<'a> {
    let trial = &planned.trial;
    let known = !trial
        .case
        .spec
        .known_failures
        .entries_for(&config.guest, &trial.topology.name)
        .is_empty();
    Subject {
        name: &trial.name,
        kernel: &config.guest.kernel,
        ndctl: &config.guest.ndctl,
        status: match (&planned.skip, known) {
            (Some(_), _) => Status::Ignored,
            (None, true) => Status::Known,
            (None, false) => Status::Runs,
        },
    }
}

/// The trials `args` select, sorted by name, and of those the shard's. An
/// ignored trial counts in the split like any other, so that exactly one
/// shard reports it.
pub fn select(plan: Vec<Planned>, args: &Arguments, partition: Option<&Partition>) -> Vec<Planned> {
    let mut selected: Vec<Planned> = plan.into_iter().filter(|p| p.is_selected(args)).collect();
    selected.sort_by(|a, b| a.trial.name.cmp(&b.trial.name));
    match partition {
        None => selected,
        Some(p) => selected
            .into_iter()
            .enumerate()
            .filter(|(i, t)| p.keeps(*i, &t.trial.name))
            .map(|(_, t)| t)
            .collect(),
    }
}

/// libtest's arguments for a list that is already selected: its filters
/// dropped (a repetition's name would not match `--exact`), the rest
/// (`--ignored`, threads, output) kept.
pub fn libtest_args(args: &Arguments) -> Arguments {
    let mut a = args.clone();
    a.filter = None;
    a.skip.clear();
    a.exact = false;
    a
}
