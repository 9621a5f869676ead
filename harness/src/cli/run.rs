//! `ndharness run`: suite cases as tests, and the exit codes a step of
//! `git bisect run` answers with (`--bisect`).

use std::process::ExitCode;

use anyhow::Context;
use ndharness::runner::repeat::Repeat;
use ndharness::runner::reporter::html::Previous;
use ndharness::runner::reporter::json;
use ndharness::runner::{RunOptions, RunRecord, Schedule};

use super::args::RunArgs;
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

fn run_cases(args: RunArgs) -> anyhow::Result<u8> {
    let mut config = args.guest.config()?;
    if let Some(dir) = &args.results {
        config.results_dir = dir.clone();
    }
    if args.new_variant && config.variants.is_empty() {
        anyhow::bail!(
            "--new-variant: image `{}` has no snapshot variant (its snapshots are the shared ones); \
             variants are for images whose recipe lists `provides.variants`",
            config.image
        );
    }
    config.new_variant = args.new_variant;
    let options = options(&args)?;
    config.shares = args.share.shares;
    let filter = libtest_mimic::Arguments {
        filter: args.filter,
        list: args.list,
        exact: args.exact,
        ignored: args.ignored,
        include_ignored: args.include_ignored,
        skip: args.skip,
        // None: libtest's default, one guest per core.
        test_threads: if args.list { None } else { args.test_threads },
        ..Default::default()
    };
    let outcome = run_trials(config, &filter, &options);
    Ok(if args.bisect {
        bisect_code(&outcome)
    } else {
        outcome.exit_code
    })
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
