//! Flake hunting: how many times each selected trial runs (`--repeat N`),
//! and when the repetitions stop early (`--until-failure`: at the first
//! failure or error; `--soak DURATION`: when the time is spent). The
//! executor deals the repetitions round by round (every selected trial
//! once, then again), so a soak spreads its time over the whole selection;
//! a repetition that would start after the run stopped does not run.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::result::{Status, TrialResult};

/// How many times `--until-failure` runs each trial at most, unless
/// `--repeat N` says.
pub const UNTIL_FAILURE_CAP: u32 = 100;

/// How each selected trial is repeated. The default runs it once.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Repeat {
    /// `--repeat N`: N times each; with the others, their cap.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub times: Option<u32>,
    /// `--until-failure`: no repetition starts after a failure or error.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub until_failure: bool,
    /// `--soak`: no repetition starts once this much time is spent.
    #[serde(skip_serializing_if = "Option::is_none", with = "humantime_serde_opt")]
    pub soak: Option<Duration>,
}

impl Repeat {
    /// The most times each trial runs: `--repeat`, else as many as a soak
    /// has time for, else [`UNTIL_FAILURE_CAP`] until a failure, else once.
    pub fn rounds(&self) -> u32 {
        match (self.times, self.soak, self.until_failure) {
            (Some(n), _, _) => n,
            (None, Some(_), _) => u32::MAX,
            (None, None, true) => UNTIL_FAILURE_CAP,
            (None, None, false) => 1,
        }
    }

    /// Whether a trial may run more than once: its results then carry
    /// their repetition.
    pub fn is_repeating(&self) -> bool {
        self.rounds() > 1
    }

    /// `3 times each`, `until the first failure (at most 100 times each)`,
    /// `for 10m`; none when each trial runs once.
    pub fn describe(&self) -> Option<String> {
        if !self.is_repeating() {
            return None;
        }
        let mut parts = Vec::new();
        if let Some(d) = self.soak {
            parts.push(format!("for {}", humantime::format_duration(d)));
        }
        if self.until_failure {
            parts.push("until the first failure".to_owned());
        }
        let rounds = self.rounds();
        Some(match (parts.is_empty(), rounds) {
            (true, n) => format!("{n} times each"),
            (false, u32::MAX) => parts.join(", "),
            (false, n) => format!("{} (at most {n} times each)", parts.join(", ")),
        })
    }
}

/// Duration as humantime text (`10m`), for results.json.
mod humantime_serde_opt {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_str(&humantime::format_duration(*d).to_string()),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        let text: Option<String> = Option::deserialize(d)?;
        text.map(|t| humantime::parse_duration(&t).map_err(serde::de::Error::custom))
            .transpose()
    }
}

/// Whether the next repetition may start: shared by the threads that run
/// trials.
pub struct Stopper {
    until_failure: bool,
    soak: Option<(Duration, Instant)>,
    reason: OnceLock<String>,
    not_run: AtomicUsize,
}

impl Stopper {
    /// For a run of `repeat` that started at `start`.
    pub fn new(repeat: &Repeat, start: Instant) -> Stopper {
        Stopper {
            until_failure: repeat.until_failure,
            soak: repeat.soak.map(|d| (d, start + d)),
            reason: OnceLock::new(),
            not_run: AtomicUsize::new(0),
        }
    }

    /// Why no further repetition starts, once that is so.
    pub fn stopped(&self) -> Option<&str> {
        if let Some((d, deadline)) = self.soak {
            if Instant::now() >= deadline {
                let spent = format!("the soak's {} ran out", humantime::format_duration(d));
                let _ = self.reason.set(spent);
            }
        }
        self.reason.get().map(String::as_str)
    }

    /// Takes in a finished repetition: with `--until-failure`, a failure or
    /// error stops the run.
    pub fn saw(&self, r: &TrialResult) {
        if self.until_failure && matches!(r.status, Status::Fail | Status::Error) {
            let first = format!("stopped at the first failure, {}", r.display_name());
            let _ = self.reason.set(first);
        }
    }

    /// Counts a repetition that did not start.
    pub fn skipped(&self) {
        self.not_run.fetch_add(1, Ordering::Relaxed);
    }

    /// Why the run stopped early, and how many repetitions it left (not
    /// for a soak: it has no fixed number to leave).
    pub fn outcome(&self) -> Option<String> {
        let not_run = self.not_run.load(Ordering::Relaxed);
        let reason = self.reason.get()?;
        Some(match not_run {
            _ if self.soak.is_some() => reason.clone(),
            0 => reason.clone(),
            1 => format!("{reason}; 1 repetition not run"),
            n => format!("{reason}; {n} repetitions not run"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounds_and_words() {
        let once = Repeat::default();
        assert_eq!((once.rounds(), once.describe()), (1, None));
        let three = Repeat {
            times: Some(3),
            ..Default::default()
        };
        assert_eq!(three.describe().unwrap(), "3 times each");
        let until = Repeat {
            until_failure: true,
            ..Default::default()
        };
        assert_eq!(until.rounds(), UNTIL_FAILURE_CAP);
        assert_eq!(
            until.describe().unwrap(),
            "until the first failure (at most 100 times each)"
        );
        let soak = Repeat {
            soak: Some(Duration::from_secs(600)),
            ..Default::default()
        };
        assert_eq!(soak.describe().unwrap(), "for 10m");
        let capped = Repeat {
            times: Some(5),
            ..soak.clone()
        };
        assert_eq!(capped.describe().unwrap(), "for 10m (at most 5 times each)");
        // --repeat 1 is a plain run.
        let one = Repeat {
            times: Some(1),
            until_failure: true,
            soak: None,
        };
        assert!(!one.is_repeating());
    }

    #[test]
    fn serializes_the_soak_as_text() {
        let soak = Repeat {
            soak: Some(Duration::from_secs(90)),
            until_failure: true,
            times: None,
        };
        let j = serde_json::to_string(&soak).unwrap();
        assert_eq!(j, r#"{"until_failure":true,"soak":"1m 30s"}"#);
        assert_eq!(serde_json::from_str::<Repeat>(&j).unwrap(), soak);
        assert_eq!(
            serde_json::from_str::<Repeat>("{}").unwrap(),
            Repeat::default()
        );
    }

    fn result(status: Status, repetition: u32) -> TrialResult {
        let mut r = crate::runner::result::sample("s::c::nfit-1", status);
        r.repetition = Some(repetition);
        r
    }

    #[test]
    fn until_failure_stops_at_the_first_failure_and_counts_what_it_left() {
        let repeat = Repeat {
            until_failure: true,
            ..Default::default()
        };
        let s = Stopper::new(&repeat, Instant::now());
        s.saw(&result(Status::Pass, 1));
        assert_eq!(s.stopped(), None);
        s.saw(&result(Status::Fail, 2));
        s.saw(&result(Status::Error, 3));
        assert_eq!(
            s.stopped(),
            Some("stopped at the first failure, s::c::nfit-1#2")
        );
        s.skipped();
        s.skipped();
        assert_eq!(
            s.outcome().unwrap(),
            "stopped at the first failure, s::c::nfit-1#2; 2 repetitions not run"
        );
        // Without --until-failure a failure is only counted.
        let plain = Stopper::new(&Repeat::default(), Instant::now());
        plain.saw(&result(Status::Fail, 1));
        assert_eq!((plain.stopped(), plain.outcome()), (None, None));
    }

    #[test]
    fn a_soak_stops_when_its_time_is_spent() {
        let repeat = Repeat {
            soak: Some(Duration::from_secs(60)),
            ..Default::default()
        };
        let s = Stopper::new(&repeat, Instant::now());
        assert_eq!(s.stopped(), None);
        let late = Stopper::new(&repeat, Instant::now() - Duration::from_secs(61));
        assert_eq!(late.stopped(), Some("the soak's 1m ran out"));
    }
}
