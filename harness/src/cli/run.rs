//! `ndharness run`: suite cases as tests, a profile's runs line by line
//! (`--profile`), and the exit codes a step of `git bisect run` answers
//! with (`--bisect`).

use std::process::ExitCode;

use anyhow::Context;
use ndharness::runner::repeat::Repeat;
use ndharness::runner::reporter::html::Previous;
use ndharness::runner::reporter::json;
use ndharness::runner::{RunOptions, RunRecord, Schedule};

use std::path::PathBuf;

use ndharness::profile::{AnyOf, ProfileRun, Profiles, TrialSet};
use ndharness::suite::PointSelection;

use super::args::{GuestArgs, RunArgs};
use super::config::run_trials;

/// `git bisect run`'s answer for "this revision cannot be tested".
const BISECT_SKIP: u8 = 125;
/// `git bisect run`'s answer for "stop bisecting".
const BISECT_STOP: u8 = 128;

pub fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    if !args.bisect {
        return run_cases(args).map(ExitCode::from);
    }
    // A bisect step judges; it leaves no pending snapshots behind.
    std::env::set_var("INSTA_UPDATE", "no");
    // A kernel that does not build is no verdict on the case.
    let code = run_cases(args).unwrap_or_else(|e| {
        eprintln!("error: {e:#}");
        BISECT_SKIP
    });
    Ok(ExitCode::from(code))
}

/// The trials the flags select, on one line, or a profile's runs line by
/// line; the exit code of the worst.
fn run_cases(args: RunArgs) -> anyhow::Result<u8> {
    let power_cuts = power_cuts(&args, None)?;
    let Some(name) = &args.profile else {
        let record = run_line(
            &args,
            args.guest.clone(),
            power_cuts,
            None,
            args.results.clone(),
        )?;
        return Ok(exit_code(&args, &record));
    };
    let root = super::config::find_root(args.guest.common.root.as_deref())?;
    let profiles = Profiles::load(&root)?;
    let profile = profiles.get(name)?;
    let power_cuts = self::power_cuts(&args, Some(profile.power_cuts))?;
    let sets = profile
        .runs
        .iter()
        .map(|r| r.trial_set(name))
        .collect::<Result<Vec<_>, _>>()?;
    if names_a_line(&args.guest) || profile.runs.len() == 1 {
        // The line the user named (or the profile's one run): every run's
        // trials on it.
        let mut guest = args.guest.clone();
        if !names_a_line(&guest) {
            guest.select.kernel = profile.runs[0].kernel.clone();
        }
        let trials = Some(TrialSet::any_of(sets));
        let record = run_line(&args, guest, power_cuts, trials, args.results.clone())?;
        return Ok(exit_code(&args, &record));
    }
    let results = args
        .results
        .clone()
        .unwrap_or_else(|| root.join("target/ndharness/results"));
    let mut codes = Vec::new();
    for (run, set) in profile.runs.iter().zip(sets) {
        let line = run.kernel.as_deref().unwrap_or(DEFAULT_LINE);
        if !args.list {
            eprintln!("profile {name}: {line}: {}", describe(run));
        } else {
            println!("# profile {name}: {line}: {}", describe(run));
        }
        let mut guest = args.guest.clone();
        guest.select.kernel = run.kernel.clone();
        let dir = results.join(line);
        let record = run_line(
            &args,
            guest,
            power_cuts,
            Some(TrialSet::any_of(vec![set])),
            Some(dir),
        )?;
        codes.push((line, exit_code(&args, &record)));
    }
    if !args.list {
        let said: Vec<String> = codes.iter().map(|(l, c)| format!("{l} {c}")).collect();
        eprintln!(
            "profile {name}: exit codes by line: {} (results under {})",
            said.join(", "),
            results.display()
        );
    }
    Ok(worst(codes.iter().map(|(_, c)| *c)))
}

/// How the default line is named in a profile's results folders.
const DEFAULT_LINE: &str = "default";

/// Whether the flags choose the guest (then a profile's runs all go to it).
fn names_a_line(guest: &GuestArgs) -> bool {
    let s = &guest.select;
    guest.image.is_some()
        || s.kernel.is_some()
        || s.kernel_tree.is_some()
        || s.ndctl.is_some()
        || s.modules.is_some()
}

/// A profile run's trials in a line.
fn describe(run: &ProfileRun) -> String {
    let mut parts = Vec::new();
    match run.trials.len() {
        0 => parts.push("every trial".to_owned()),
        1..=4 => parts.push(run.trials.join(" ")),
        n => parts.push(format!("{n} trial patterns")),
    }
    if !run.skip.is_empty() {
        parts.push(format!("but {}", run.skip.join(" ")));
    }
    parts.join(", ")
}

/// The points power cuts judge: `--power-cuts`, else the profile's, else a
/// sample; `--power-cut-seed` seeds a sample.
fn power_cuts(args: &RunArgs, profile: Option<PointSelection>) -> anyhow::Result<PointSelection> {
    let chosen = args.power_cuts.or(profile).unwrap_or_default();
    match (chosen, args.power_cut_seed) {
        (PointSelection::Sample { extra, limit, .. }, Some(seed)) => Ok(PointSelection::Sample {
            extra,
            limit,
            seed: Some(seed),
        }),
        (PointSelection::Every, Some(_)) => anyhow::bail!(
            "--power-cut-seed seeds a sample of crash points; these power cuts judge every write"
        ),
        (chosen, None) => Ok(chosen),
    }
}

/// One run on the line `guest` selects: `trials` of a profile (every trial
/// without one), the filters of `args`, results in `results`.
fn run_line(
    args: &RunArgs,
    guest: GuestArgs,
    power_cuts: PointSelection,
    trials: Option<AnyOf>,
    results: Option<PathBuf>,
) -> anyhow::Result<RunRecord> {
    let mut config = guest.config()?;
    if let Some(dir) = results {
        config.results_dir = dir;
    }
    if args.new_variant && config.variants.is_empty() {
        anyhow::bail!(
            "--new-variant: image `{}` has no snapshot variant (its snapshots are the shared ones); \
             variants are for images whose recipe lists `provides.variants`",
            config.image
        );
    }
    config.new_variant = args.new_variant;
    config.power_cuts = power_cuts;
    config.profile_trials = trials;
    config.slow_after = args.slow_after.unwrap_or(ndharness::runner::SLOW_AFTER);
    if args.filters.len() > 1 {
        config.name_filters = args.filters.clone();
    }
    if let Some(text) = &args.filter_expr {
        let expr = ndharness::runner::filterset::Expr::parse(text)
            .map_err(|e| super::Usage(e.to_string()))?;
        config.filter_expr = Some(expr);
    }
    config.no_tests = args.no_tests;
    let options = options(args)?;
    config.shares = args.share.shares.clone();
    let filter = libtest_mimic::Arguments {
        // One filter is libtest's (`--exact` applies); several, any of
        // them, the runner's.
        filter: match args.filters.as_slice() {
            [one] => Some(one.clone()),
            _ => None,
        },
        list: args.list,
        exact: args.exact,
        ignored: args.ignored,
        include_ignored: args.include_ignored,
        skip: args.skip.clone(),
        // None: libtest's default, one guest per core.
        test_threads: if args.list { None } else { args.test_threads },
        ..Default::default()
    };
    Ok(run_trials(config, &filter, &options))
}

/// A run's exit code, or `git bisect run`'s reading of it.
fn exit_code(args: &RunArgs, record: &RunRecord) -> u8 {
    if args.bisect {
        bisect_code(record)
    } else {
        record.exit_code
    }
}

/// Several runs' exit codes as one: a failure over an infrastructure
/// error over a pass (as one run's own code orders them).
fn worst(codes: impl Iterator<Item = u8>) -> u8 {
    codes
        .max_by_key(|c| match c {
            0 => 0,
            2 => 1,
            125 => 2,
            _ => 3,
        })
        .unwrap_or(0)
}

/// The run's shard, repetitions and the run its report compares with
/// (read now: a wrong `--previous` is said before any guest boots).
fn options(args: &RunArgs) -> anyhow::Result<RunOptions> {
    let previous = match &args.previous {
        Some(path) => {
            let record = json::read(path).context("--previous")?;
            let source = path.clone();
            Some(Previous { source, record })
        }
        None => None,
    };
    let repeat = Repeat {
        times: args.repeat,
        until_failure: args.until_failure,
        soak: args.soak,
    };
    Ok(RunOptions {
        schedule: Schedule {
            partition: args.partition,
            repeat,
            stopped: None,
        },
        previous,
        kcidb: args.kcidb.file_and_origin(),
    })
}

/// A run's exit code as `git bisect run` reads it: 0 good, 1 bad, skip
/// when no verdict came (infrastructure errors only), stop when no trial
/// matched.
fn bisect_code(outcome: &RunRecord) -> u8 {
    match outcome.exit_code {
        _ if outcome.results.is_empty() => {
            eprintln!("error: no trial matches; stopping the bisection");
            BISECT_STOP
        }
        2 => BISECT_SKIP,
        code => code,
    }
}
