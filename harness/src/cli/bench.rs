//! `ndharness bench`: cold boot, warm start, round trip, image build and
//! suite wall time, printed and written as JSON.

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
    };
    eprintln!(
        "bench: image {}, kernel {}, {}, {} runs each",
        env.image.manifest.image,
        env.image.manifest.kernel_release,
        env.accel.name(),
        opts.runs
    );
    let measures = bench::bench(&config, &env, &opts)?;
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
