//! `ndharness compare`: the same cases on two guests, and per trial
//! whether transcript, layout and kernel log differ.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use ndharness::guest_choice::Selection;
use ndharness::runner::{compare, Config};

use super::args::CompareArgs;
use super::config::{config, find_root, run_trials};

/// One guest of the two: its label, as the user gave it, and how it runs.
struct Side {
    label: &'static str,
    spec: String,
    config: Config,
    /// Where its trials' snapshot bodies are collected.
    snapshots: PathBuf,
}

pub fn compare(args: CompareArgs) -> anyhow::Result<ExitCode> {
    let root = find_root(args.common.root.as_deref())?;
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| root.join("target/ndharness/compare"));
    // Both resolved before anything boots: a typo fails in a second.
    let sides = [
        side(&args, &out, "baseline", &args.baseline)?,
        side(&args, &out, "candidate", &args.candidate)?,
    ];
    let filter = libtest_mimic::Arguments {
        filter: args.filter.clone(),
        exact: args.exact,
        skip: args.skip.clone(),
        test_threads: args.test_threads,
        ..Default::default()
    };
    let [baseline, candidate] = sides.map(|side| {
        println!(
            "\n== {}: {} (image {})",
            side.label, side.spec, side.config.image
        );
        let outcome = run_trials(side.config, &filter, &Default::default());
        compare::Side {
            spec: side.spec,
            info: outcome.info,
            exit_code: outcome.exit_code,
            snapshots: side.snapshots,
            results: outcome.results,
        }
    });
    let comparison = compare::compare(baseline, candidate);
    print!("{}", compare::render_text(&comparison));
    let (json, html) = compare::write(&out, &comparison)?;
    println!("  report: {} {}", json.display(), html.display());
    Ok(ExitCode::from(comparison.exit_code()))
}

/// A side's guest, resolved (its kernel tree built), with its own folder
/// `OUT/LABEL` (emptied) for run folders, results and collected bodies.
fn side(args: &CompareArgs, out: &Path, label: &'static str, spec: &str) -> anyhow::Result<Side> {
    let which = || format!("--{label} {spec}");
    let selection = Selection::parse(spec).with_context(which)?;
    let mut config = config(&args.common, selection, &args.machine, None).with_context(which)?;
    let dir = out.join(label);
    if dir.exists() {
        std::fs::remove_dir_all(&dir).with_context(|| format!("clearing {}", dir.display()))?;
    }
    let snapshots = super::sides::collecting(&mut config, &dir);
    config.shares = args.share.shares.clone();
    Ok(Side {
        label,
        spec: spec.to_owned(),
        config,
        snapshots,
    })
}
