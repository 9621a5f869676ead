//! A suite's wall time, cold against warm, in one run of each, and the
//! share of its trials' time spent outside their steps.

use std::time::Instant;

use super::{Measure, Options};
use crate::runner::{Config, Status};

/// The suite `filter` selects, run cold and then warm.
pub fn walls(config: &Config, filter: &str, opts: &Options) -> Vec<Measure> {
    let mut out = Vec::new();
    for cold in [true, false] {
        let mut c = config.clone();
        c.cold = cold;
        let start = if cold { "cold" } else { "warm" };
        c.results_dir = config.results_dir.join(format!("bench-{start}"));
        let args = libtest_mimic::Arguments {
            filter: Some(filter.to_owned()).filter(|f| !f.is_empty()),
            skip: opts.suite_skip.clone(),
            test_threads: opts.test_threads,
            quiet: true,
            ..Default::default()
        };
        let t0 = Instant::now();
        let run = crate::runner::execute(c, &args);
        let wall = t0.elapsed().as_secs_f64();
        let passed = run
            .results
            .iter()
            .filter(|r| r.status == Status::Pass)
            .count();
        let skips: String = opts
            .suite_skip
            .iter()
            .map(|s| format!(" --skip {s}"))
            .collect();
        out.push(Measure::new(
            format!("suite `{filter}`{skips} wall, {start}"),
            vec![wall],
            Some(format!(
                "{passed}/{} passed, exit {}; {}",
                run.results.len(),
                run.exit_code,
                outside_the_steps(&run.results)
            )),
        ));
    }
    out
}

/// The trials' time outside their steps, as a share, and by phase: what
/// the harness costs a trial beyond what the case asked for.
pub fn outside_the_steps(results: &[crate::runner::TrialResult]) -> String {
    let mut phases = Vec::new();
    for r in results {
        crate::runner::laps::add(&mut phases, &r.phases);
    }
    let total: f64 = phases.iter().map(|(_, d)| d.as_secs_f64()).sum();
    if total <= 0.0 {
        return "no trial time".into();
    }
    let share = |secs: f64| 100.0 * secs / total;
    let outside: Vec<String> = phases
        .iter()
        .filter(|(n, _)| n != "steps")
        .map(|(n, d)| format!("{n} {:.0}%", share(d.as_secs_f64())))
        .collect();
    let steps: f64 = phases
        .iter()
        .filter(|(n, _)| n == "steps")
        .map(|(_, d)| d.as_secs_f64())
        .sum();
    format!(
        "outside the steps {:.0}% of trial time ({})",
        100.0 - share(steps),
        outside.join(", ")
    )
}
