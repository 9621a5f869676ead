//! `ndharness bench`: cold boot, warm start, round trip, image build,
//! suite wall time, power cuts and explore's rate, printed and written as
//! JSON.

use std::process::ExitCode;

use anyhow::Context;
use ndharness::runner::{self, bench};

use super::args::BenchArgs;

pub fn bench(args: BenchArgs) -> anyhow::Result<ExitCode> {
    let config = args.guest.config()?;
    let env = runner::prepare(&config)?;
    if args.fresh_states {
        let states = config.build.cache.join("states");
        if states.exists() {
            std::fs::remove_dir_all(&states)
                .with_context(|| format!("removing {}", states.display()))?;
        }
    }
    let opts = bench::Options {
        runs: args.runs.max(1),
        topologies: args.topologies,
        suite_filter: args.suite,
        suite_skip: args.suite_skip,
        test_threads: args.test_threads,
        power_cut: args.power_cut.clone(),
    };
    eprintln!(
        "bench: image {}, kernel {}, {}, {} runs each",
        env.image.manifest.image,
        env.image.manifest.kernel_release,
        env.accel.name(),
        opts.runs
    );
    let mut measures = bench::bench(&config, &env, &opts)?;
    for topology in &args.explore {
        measures.push(explore_rate(&config, &env, topology, args.explore_budget)?);
    }
    print!("{}", bench::render(&measures));
    let json = args
        .json
        .unwrap_or_else(|| config.root.join("target/ndharness/bench.json"));
    if let Some(dir) = json.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&json, serde_json::to_string_pretty(&measures)?)?;
    println!("  json: {}", json.display());
    Ok(ExitCode::SUCCESS)
}

/// `explore` on one topology, 2 guests at once, seed 1, findings not
/// shrunk: its seconds per step (and steps per second in the note).
fn explore_rate(
    config: &runner::Config,
    env: &runner::GuestEnv,
    topology: &str,
    budget: std::time::Duration,
) -> anyhow::Result<bench::Measure> {
    let out = tempfile::tempdir()?;
    let options = ndharness::explore::Options {
        topologies: vec![topology.to_owned()],
        seed: 1,
        budget,
        steps: 12,
        jobs: 2,
        out: out.path().to_owned(),
        max_shrink_runs: 0,
        until: ndharness::explore::Until::Budget,
    };
    let report = ndharness::explore::explore(config, env, &options)?;
    let per_step = match report.steps_per_second {
        r if r > 0.0 => 1.0 / r,
        _ => f64::NAN,
    };
    let sequences: usize = report.topologies.values().map(|t| t.sequences).sum();
    let mut phases = Vec::new();
    for t in report.topologies.values() {
        ndharness::runner::laps::add(&mut phases, &t.phases);
    }
    let total: f64 = phases.iter().map(|(_, d)| d.as_secs_f64()).sum();
    let shares: Vec<String> = phases
        .iter()
        .map(|(n, d)| format!("{n} {:.0}%", 100.0 * d.as_secs_f64() / total.max(1e-9)))
        .collect();
    let note = format!(
        "{:.2} steps/s over {:.0} s, {sequences} sequences, {} findings; guest time: {}",
        report.steps_per_second,
        report.wall_seconds,
        report.findings.len(),
        shares.join(", ")
    );
    Ok(bench::Measure::new(
        format!("explore {topology}, 2 guests: seconds per step"),
        vec![per_step],
        Some(note),
    ))
}
