//! Each trial's results added up: how many of its runs passed, failed or
//! errored, its pass rate and its mean time. A run that repeats its trials
//! reports them so (summary, results.json's `pass_rates`, report.html),
//! and a run's tallies against the previous run's are what changed.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;

use super::result::{Status, TrialResult};

/// What a trial's runs came to together.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RepeatedOutcome {
    Pass,
    /// Some runs passed, some failed or errored.
    Flaky,
    Fail,
    Error,
    /// Not run (its case is ignored here), or every run skipped itself.
    Ignored,
    /// Every run failed as its case's known failure says.
    Known,
}

impl RepeatedOutcome {
    pub fn word(self) -> &'static str {
        match self {
            RepeatedOutcome::Pass => "pass",
            RepeatedOutcome::Flaky => "FLAKY",
            RepeatedOutcome::Fail => "FAIL",
            RepeatedOutcome::Error => "ERROR",
            RepeatedOutcome::Ignored => "ignored",
            RepeatedOutcome::Known => "known",
        }
    }
}

/// One trial's runs in a run.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Tally {
    pub name: String,
    /// Runs that ran (not the ignored ones).
    pub runs: u32,
    pub passed: u32,
    pub failed: u32,
    pub errors: u32,
    /// Runs that failed as a known failure of their case.
    #[serde(skip_serializing_if = "is_zero")]
    pub known: u32,
    /// Mean time of the runs that ran.
    #[serde(rename = "mean_seconds", serialize_with = "seconds")]
    pub mean: Duration,
    /// The repetitions that failed or errored, in order.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub failing: Vec<u32>,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

fn seconds<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64((d.as_secs_f64() * 1000.0).round() / 1000.0)
}

impl Tally {
    pub fn outcome(&self) -> RepeatedOutcome {
        match self {
            t if t.runs == 0 => RepeatedOutcome::Ignored,
            t if t.passed == t.runs => RepeatedOutcome::Pass,
            t if t.known == t.runs => RepeatedOutcome::Known,
            t if t.passed > 0 => RepeatedOutcome::Flaky,
            t if t.failed > 0 => RepeatedOutcome::Fail,
            _ => RepeatedOutcome::Error,
        }
    }

    /// Passed runs over runs, 0 to 1 (none when nothing ran).
    pub fn pass_rate(&self) -> Option<f64> {
        (self.runs > 0).then(|| f64::from(self.passed) / f64::from(self.runs))
    }

    /// `3/3`, `2/3`; `-` when nothing ran.
    pub fn fraction(&self) -> String {
        match self.runs {
            0 => "-".to_owned(),
            n => format!("{}/{n}", self.passed),
        }
    }
}

/// Each trial's tally, by name.
pub fn tally(results: &[TrialResult]) -> Vec<Tally> {
    let mut by_name: BTreeMap<&str, (Tally, Duration)> = BTreeMap::new();
    for r in results {
        let (t, total) = by_name.entry(&r.name).or_insert_with(|| {
            let t = Tally {
                name: r.name.clone(),
                runs: 0,
                passed: 0,
                failed: 0,
                errors: 0,
                known: 0,
                mean: Duration::ZERO,
                failing: Vec::new(),
            };
            (t, Duration::ZERO)
        });
        match r.status {
            Status::Ignored => continue,
            Status::Pass => t.passed += 1,
            Status::Fail => t.failed += 1,
            Status::Error => t.errors += 1,
            Status::KnownFailure => t.known += 1,
        }
        if r.status != Status::Pass {
            t.failing.push(r.repetition.unwrap_or(1));
        }
        t.runs += 1;
        *total += r.duration;
    }
    by_name
        .into_values()
        .map(|(mut t, total)| {
            if t.runs > 0 {
                t.mean = total / t.runs;
            }
            t.failing.sort_unstable();
            t
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runner::result::sample;

    fn run(name: &str, status: Status, repetition: u32, secs: u64) -> TrialResult {
        let mut r = sample(name, status);
        r.repetition = Some(repetition);
        r.duration = Duration::from_secs(secs);
        r
    }

    #[test]
    fn pass_rates_per_trial() {
        let results = [
            run("s::b::nfit-1", Status::Pass, 1, 2),
            run("s::a::nfit-1", Status::Pass, 1, 1),
            run("s::b::nfit-1", Status::Fail, 3, 4),
            run("s::a::nfit-1", Status::Pass, 2, 3),
            run("s::b::nfit-1", Status::Pass, 2, 3),
            run("s::c::nfit-1", Status::Error, 1, 1),
            run("s::c::nfit-1", Status::Fail, 2, 1),
            sample("s::d::nfit-1", Status::Ignored),
        ];
        let t = tally(&results);
        let names: Vec<&str> = t.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "s::a::nfit-1",
                "s::b::nfit-1",
                "s::c::nfit-1",
                "s::d::nfit-1"
            ]
        );
        assert_eq!(t[0].outcome(), RepeatedOutcome::Pass);
        assert_eq!(t[0].mean, Duration::from_secs(2));
        assert_eq!(t[1].outcome(), RepeatedOutcome::Flaky);
        assert_eq!(
            (t[1].fraction(), t[1].failing.clone()),
            ("2/3".into(), vec![3])
        );
        assert!((t[1].pass_rate().unwrap() - 2.0 / 3.0).abs() < 1e-9);
        assert_eq!(t[1].mean, Duration::from_secs(3));
        // Failures before errors: a conformance verdict is the stronger word.
        assert_eq!(t[2].outcome(), RepeatedOutcome::Fail);
        assert_eq!(t[2].failing, [1, 2]);
        assert_eq!(t[3].outcome(), RepeatedOutcome::Ignored);
        assert_eq!((t[3].fraction(), t[3].pass_rate()), ("-".into(), None));
    }

    #[test]
    fn a_run_without_repetitions_tallies_each_trial_once() {
        let t = tally(&[sample("s::a::nfit-1", Status::Error)]);
        assert_eq!(t[0].outcome(), RepeatedOutcome::Error);
        assert_eq!(t[0].failing, [1]);
    }
}
