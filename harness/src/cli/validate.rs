//! `ndharness validate`: one verdict on a kernel change. The tree is built
//! without the change (the baseline: the tree as it is, or `--base REV`)
//! and with it (`--patch`, a series, or `--head REV`) in its overlay, the
//! same checks run on both (`--repeat` runs the baseline more than once,
//! to tell a flaky trial from a regression), and the comparison judged:
//! no change, fixes, changes or regresses, trial by trial, with the compare page
//! and each side's evidence.

use std::collections::BTreeSet;
use std::process::ExitCode;

use anyhow::Context;
use ndharness::overlay::Change;
use ndharness::runner::compare::{self, verdict};
use serde::Serialize;

use super::args::ValidateArgs;
use super::sides::{explore_difference, Bench, BuildFailure};

/// validate.json: the verdict, what was compared, explore's difference.
#[derive(Serialize)]
struct Report<'a> {
    tree: String,
    baseline: &'a str,
    candidate: &'a str,
    #[serde(flatten)]
    verdict: &'a verdict::PatchVerdict,
    flaky_on_baseline: &'a BTreeSet<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    explore: Option<ExploreDifference>,
    build_seconds: [f64; 2],
    run_seconds: [f64; 2],
}

#[derive(Serialize)]
struct ExploreDifference {
    only_baseline: Vec<String>,
    only_candidate: Vec<String>,
}

pub fn validate(args: ValidateArgs) -> anyhow::Result<ExitCode> {
    let mut bench = Bench::new(&args.checks)?;
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| bench.root.join("target/ndharness/validate"));
    // Both changes read (and a revision found) before anything builds.
    let tree = bench.tree().to_owned();
    let baseline_change = match &args.base {
        Some(rev) => Change::to_revision(&tree, rev)?,
        None => Change::none("the tree as it is"),
    };
    let candidate_change = match &args.head {
        Some(rev) => Change::to_revision(&tree, rev)?,
        None => Change::from_files(&args.patches)?,
    };
    let seed = args.checks.explore.map_or(0, |_| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
    });
    println!(
        "validate: {} on {} (baseline: {})",
        candidate_change.name,
        tree.display(),
        baseline_change.name
    );
    let built = bench.build(&baseline_change).map_err(|e| match e {
        BuildFailure::Other(e) => e.context("the baseline"),
        e => anyhow::anyhow!("the baseline ({}): {e}", baseline_change.name),
    })?;
    let mut runs = Vec::new();
    for n in 1..=args.repeat {
        let dir = out.join(format!("baseline-{n}"));
        println!("\n== baseline, run {n} of {}", args.repeat);
        runs.push(bench.run(&built, "baseline", &dir, seed)?);
    }
    let baseline_build = built.seconds;
    let built = match bench.build(&candidate_change) {
        Ok(built) => built,
        Err(BuildFailure::Other(e)) => return Err(e.context("the candidate")),
        Err(e) => {
            // A change that does not apply or build is the change's fault:
            // a regression of everything, said plainly.
            eprintln!("verdict: regresses ({}: {e})", candidate_change.name);
            return Ok(ExitCode::from(1));
        }
    };
    println!("\n== candidate: {}", candidate_change.name);
    let candidate = bench.run(&built, "candidate", &out.join("candidate"), seed)?;
    let mut flaky = BTreeSet::new();
    let first = runs.remove(0);
    for again in runs {
        let between = compare::compare(first.side.clone(), again.side);
        flaky.extend(verdict::differing(&between));
    }
    let explore = match (&first.findings, &candidate.findings) {
        (Some(b), Some(c)) => {
            let (only_baseline, only_candidate) = explore_difference(b, c);
            Some(ExploreDifference {
                only_baseline,
                only_candidate,
            })
        }
        _ => None,
    };
    let run_seconds = [first.seconds, candidate.seconds];
    let comparison = compare::compare(first.side, candidate.side);
    let mut judged = verdict::judge(&comparison, &flaky);
    if let Some(e) = &explore {
        judged.add_explore(&e.only_baseline, &e.only_candidate);
    }
    let (json, html) = compare::write(&out, &comparison)?;
    let report = Report {
        tree: tree.display().to_string(),
        baseline: &baseline_change.name,
        candidate: &candidate_change.name,
        verdict: &judged,
        flaky_on_baseline: &flaky,
        explore,
        build_seconds: [baseline_build, built.seconds],
        run_seconds,
    };
    let path = out.join("validate.json");
    let text = serde_json::to_string_pretty(&report).expect("a report serializes");
    std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    println!("\n{}", judged.render());
    println!(
        "  report: {} {} {}",
        path.display(),
        html.display(),
        json.display()
    );
    Ok(ExitCode::from(judged.exit_code()))
}
