//! `ndharness explore`: random namespace sequences checked against
//! invariants, findings shrunk to case files, and the report.

use std::process::ExitCode;

use ndharness::explore::{self, Options};
use ndharness::runner::{self, jobs};

use super::args::ExploreArgs;

pub fn explore(args: ExploreArgs) -> anyhow::Result<ExitCode> {
    let config = args.guest.config()?;
    let env = runner::prepare(&config)?;
    let seed = args.seed.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
    });
    let topologies: Vec<_> = args
        .topologies
        .iter()
        .map(|t| ndharness::topology::load(t))
        .collect::<Result<_, _>>()?;
    let guest = topologies
        .iter()
        .map(|t| jobs::guest_memory(&t.topology))
        .max()
        .unwrap_or(1 << 30);
    let options = Options {
        topologies: args.topologies,
        seed,
        budget: args.budget,
        steps: args.steps.max(1),
        jobs: args
            .test_threads
            .unwrap_or_else(|| jobs::default_jobs(guest)),
        out: args
            .out
            .unwrap_or_else(|| config.root.join("target/ndharness/explore")),
        max_shrink_runs: args.max_shrink_runs,
        until: explore::Until::Budget,
    };
    eprintln!(
        "explore: seed {seed}, {} ({}), {} guests at once, {} steps at most, for {}",
        config.guest.kernel,
        env.image.manifest.kernel_release,
        options.jobs,
        options.steps,
        humantime::format_duration(options.budget)
    );
    let report = explore::explore(&config, &env, &options)?;
    print!("{}", report.render());
    println!("  report: {}", options.out.join("explore.json").display());
    Ok(ExitCode::from(if report.findings.is_empty() {
        0
    } else {
        1
    }))
}
