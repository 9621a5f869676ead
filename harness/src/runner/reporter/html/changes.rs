//! What changed between two runs, trial by trial, as blktests shows a
//! test's runtime beside its previous one: each trial's outcome and mean
//! time in the previous run and in this one, and which changes matter
//! (a status that moved, a trial new or gone, a time that moved by at
//! least [`NOTABLE_RATIO`] and [`NOTABLE_SECONDS`]).

use std::collections::BTreeMap;

use crate::runner::result::TrialResult;
use crate::runner::tally::{tally, RepeatedOutcome, Tally};

/// A time change is notable from this share of the previous time...
pub const NOTABLE_RATIO: f64 = 0.2;
/// ... and this many seconds.
pub const NOTABLE_SECONDS: f64 = 1.0;

/// How a trial's row differs from the previous run's.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Change {
    /// Passed before; fails, errors or flakes now.
    Regressed,
    /// Failed, errored or flaked before; passes now.
    Fixed,
    /// Another change of outcome (ignored to run, fail to error, ...).
    Status,
    /// Not in the previous run.
    New,
    /// In the previous run, not in this one (another filter or shard).
    Gone,
    Slower,
    Faster,
    Same,
}

/// One trial in both runs.
#[derive(Clone, Debug, PartialEq)]
pub struct Row {
    pub name: String,
    pub previous: Option<Tally>,
    pub current: Option<Tally>,
}

impl Row {
    pub fn change(&self) -> Change {
        let (p, c) = match (&self.previous, &self.current) {
            (None, _) => return Change::New,
            (_, None) => return Change::Gone,
            (Some(p), Some(c)) => (p, c),
        };
        let bad = |o| {
            matches!(
                o,
                RepeatedOutcome::Fail | RepeatedOutcome::Error | RepeatedOutcome::Flaky
            )
        };
        match (p.outcome(), c.outcome()) {
            (RepeatedOutcome::Pass, now) if bad(now) => Change::Regressed,
            (before, RepeatedOutcome::Pass) if bad(before) => Change::Fixed,
            (before, now) if before != now => Change::Status,
            _ => match self.time_change() {
                Some(d) if d > 0.0 => Change::Slower,
                Some(_) => Change::Faster,
                None => Change::Same,
            },
        }
    }

    /// Current minus previous mean time in seconds, when both ran and it
    /// moved by a notable amount.
    pub fn time_change(&self) -> Option<f64> {
        let (p, c) = (self.previous.as_ref()?, self.current.as_ref()?);
        if p.runs == 0 || c.runs == 0 {
            return None;
        }
        let (before, now) = (p.mean.as_secs_f64(), c.mean.as_secs_f64());
        let delta = now - before;
        (delta.abs() >= NOTABLE_SECONDS && delta.abs() >= NOTABLE_RATIO * before).then_some(delta)
    }
}

/// Every trial of either run, by name.
pub fn rows(previous: &[TrialResult], current: &[TrialResult]) -> Vec<Row> {
    let mut out: BTreeMap<String, Row> = BTreeMap::new();
    let sides = [(tally(previous), true), (tally(current), false)];
    for (tallies, is_previous) in sides {
        for t in tallies {
            let row = out.entry(t.name.clone()).or_insert_with(|| Row {
                name: t.name.clone(),
                previous: None,
                current: None,
            });
            match is_previous {
                true => row.previous = Some(t),
                false => row.current = Some(t),
            }
        }
    }
    out.into_values().collect()
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::runner::result::{sample, Status};

    fn run(name: &str, status: Status, secs: f64) -> TrialResult {
        let mut r = sample(name, status);
        r.duration = Duration::from_secs_f64(secs);
        r
    }

    #[test]
    fn status_and_timing_changes() {
        let previous = [
            run("s::regressed::nfit-1", Status::Pass, 2.0),
            run("s::fixed::nfit-1", Status::Fail, 2.0),
            run("s::slower::nfit-1", Status::Pass, 2.0),
            run("s::faster::nfit-1", Status::Pass, 10.0),
            run("s::noise::nfit-1", Status::Pass, 2.0),
            run("s::small::nfit-1", Status::Pass, 100.0),
            run("s::gone::nfit-1", Status::Pass, 1.0),
            run("s::now-errors::nfit-1", Status::Fail, 1.0),
            sample("s::was-ignored::nfit-1", Status::Ignored),
        ];
        let current = [
            run("s::regressed::nfit-1", Status::Fail, 2.0),
            run("s::fixed::nfit-1", Status::Pass, 2.0),
            run("s::slower::nfit-1", Status::Pass, 3.5),
            run("s::faster::nfit-1", Status::Pass, 5.0),
            // 0.9 s: under a second either way.
            run("s::noise::nfit-1", Status::Pass, 2.9),
            // 10 s of 100: under a fifth.
            run("s::small::nfit-1", Status::Pass, 110.0),
            run("s::new::nfit-1", Status::Pass, 1.0),
            run("s::now-errors::nfit-1", Status::Error, 1.0),
            run("s::was-ignored::nfit-1", Status::Pass, 1.0),
        ];
        let rows = rows(&previous, &current);
        let change = |name: &str| {
            rows.iter()
                .find(|r| r.name == format!("s::{name}::nfit-1"))
                .unwrap()
                .change()
        };
        assert_eq!(change("regressed"), Change::Regressed);
        assert_eq!(change("fixed"), Change::Fixed);
        assert_eq!(change("slower"), Change::Slower);
        assert_eq!(change("faster"), Change::Faster);
        assert_eq!(change("noise"), Change::Same);
        assert_eq!(change("small"), Change::Same);
        assert_eq!(change("gone"), Change::Gone);
        assert_eq!(change("new"), Change::New);
        assert_eq!(change("now-errors"), Change::Status);
        assert_eq!(change("was-ignored"), Change::Status);
        let slower = rows.iter().find(|r| r.name.contains("slower")).unwrap();
        assert!((slower.time_change().unwrap() - 1.5).abs() < 1e-9);
        assert_eq!(rows.len(), 10);
    }

    #[test]
    fn a_trial_that_flakes_now_regressed() {
        let previous = [run("s::x::nfit-1", Status::Pass, 1.0)];
        let current: Vec<TrialResult> = [Status::Pass, Status::Fail]
            .into_iter()
            .enumerate()
            .map(|(i, s)| {
                let mut r = run("s::x::nfit-1", s, 1.0);
                r.repetition = Some(i as u32 + 1);
                r
            })
            .collect();
        assert_eq!(rows(&previous, &current)[0].change(), Change::Regressed);
        assert_eq!(rows(&current, &previous)[0].change(), Change::Fixed);
    }
}
