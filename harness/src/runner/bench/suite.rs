//! A suite's wall time, cold against warm, in one run of each.

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
                "{passed}/{} passed, exit {}",
                run.results.len(),
                run.exit_code
            )),
        ));
    }
    out
}
