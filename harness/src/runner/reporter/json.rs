//! results.json, written and read back in one place: one object per run of
//! a trial (status, duration, phases, kernel, image, evidence folder,
//! message), what the run shared, its schedule (`--partition`,
//! `--repeat`), each trial's pass rate when it ran more than once, and a
//! merged run's shards. Read back by `ndharness merge-results` and for the
//! previous run's side of report.html.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{RunRecord, Schedule, Shard};
use crate::runner::result::{Cause, Note, RunInfo, Status, TrialResult};
use crate::runner::tally::{tally, Tally};
use crate::suite::Mode;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("failed to read {path}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not an ndharness results.json")]
    Parse {
        path: PathBuf,
        source: serde_json::Error,
    },
}

#[derive(Serialize, Deserialize)]
struct JsonTrial {
    name: String,
    suite: String,
    case: String,
    topology: String,
    /// Which run of the trial, when the run repeated its trials.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    repetition: Option<u32>,
    status: Status,
    duration_seconds: f64,
    /// Seconds per phase of the trial (state, boot or restore, drivers,
    /// plan, setup, reattach, mount, steps, layout, kernel log, stop).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    phases: Vec<(String, f64)>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    modes: Vec<Mode>,
    kernel: String,
    image: String,
    evidence: Option<PathBuf>,
    message: Option<String>,
    /// The infrastructure error of a first attempt that was retried.
    retried_after: Option<String>,
    /// Why an ignored trial did not run; the reason of a known failure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
    /// A pass where the case expects this known failure (a stale entry?).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    known_failure_passed: Option<String>,
    /// What a failing or known-failing trial failed on: `kind` (`expectation`,
    /// `timeout`, `kernel-report`, `guest-died`, `setup`, `snapshot`,
    /// `power-cut`) and its fields.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    failure: Option<Cause>,
}

/// The version of results.json this code writes: 2 added it and each
/// trial's `failure`. Its schema: `harness/schema/results.schema.json`.
pub const SCHEMA_VERSION: u32 = 2;

#[derive(Serialize, Deserialize)]
struct JsonRun {
    /// Absent (1) in a file written before versions were.
    #[serde(default = "first_version")]
    schema_version: u32,
    run: RunInfo,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    date: Option<String>,
    wall_seconds: f64,
    passed: usize,
    failed: usize,
    errors: usize,
    ignored: usize,
    #[serde(default)]
    known_failures: usize,
    exit_code: u8,
    #[serde(default, skip_serializing_if = "Schedule::is_plain")]
    schedule: Schedule,
    /// Per trial, when the run repeated its trials: runs, passed, failed,
    /// errors, mean time, the failing repetitions.
    #[serde(default, skip_serializing_if = "Vec::is_empty", skip_deserializing)]
    pass_rates: Vec<Tally>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    shards: Vec<Shard>,
    trials: Vec<JsonTrial>,
}

fn first_version() -> u32 {
    1
}

fn split(name: &str) -> (&str, &str) {
    let mut parts = name.splitn(3, "::");
    (parts.next().unwrap_or(""), parts.next().unwrap_or(""))
}

fn json_trial(r: &TrialResult, info: &RunInfo) -> JsonTrial {
    let (suite, case) = split(&r.name);
    JsonTrial {
        name: r.name.clone(),
        suite: suite.to_owned(),
        case: case.to_owned(),
        topology: r.topology.clone(),
        repetition: r.repetition,
        status: r.status,
        duration_seconds: r.duration.as_secs_f64(),
        phases: r
            .phases
            .iter()
            .map(|(n, d)| (n.to_string(), d.as_secs_f64()))
            .collect(),
        modes: r.modes.clone(),
        kernel: r.guest.as_ref().map_or(&info.kernel, |g| &g.0).clone(),
        image: r.guest.as_ref().map_or(&info.image_key, |g| &g.1).clone(),
        evidence: r.evidence.clone(),
        message: r.message.clone(),
        retried_after: r.retried_after().map(str::to_owned),
        reason: r.reason().map(str::to_owned),
        known_failure_passed: r.stale_known_failure().map(str::to_owned),
        failure: r.failure.clone(),
    }
}

/// The run as results.json: trials sorted by name, then repetition.
pub fn json(run: &RunRecord) -> String {
    let results = &run.results;
    let count = |s| results.iter().filter(|r| r.status == s).count();
    let mut trials: Vec<JsonTrial> = results.iter().map(|r| json_trial(r, &run.info)).collect();
    trials.sort_by(|a, b| (&a.name, a.repetition).cmp(&(&b.name, b.repetition)));
    let repeated = results.iter().any(|r| r.repetition.is_some());
    let out = JsonRun {
        schema_version: SCHEMA_VERSION,
        run: run.info.clone(),
        date: run.date.clone(),
        wall_seconds: run.wall.as_secs_f64(),
        passed: count(Status::Pass),
        failed: count(Status::Fail),
        errors: count(Status::Error),
        ignored: count(Status::Ignored),
        known_failures: count(Status::KnownFailure),
        exit_code: run.exit_code,
        schedule: run.schedule.clone(),
        pass_rates: if repeated { tally(results) } else { Vec::new() },
        shards: run.shards.clone(),
        trials,
    };
    serde_json::to_string_pretty(&out).expect("results serialize")
}

fn seconds(s: f64) -> Duration {
    Duration::try_from_secs_f64(s).unwrap_or_default()
}

fn trial_result(t: JsonTrial, info: &RunInfo) -> TrialResult {
    let own_guest = t.kernel != info.kernel || t.image != info.image_key;
    let note = match (t.status, t.reason, t.retried_after) {
        (Status::Ignored, Some(reason), _) => Some(Note::Ignored(reason)),
        (Status::KnownFailure, Some(reason), _) => Some(Note::KnownFailure(reason)),
        _ if t.known_failure_passed.is_some() => {
            t.known_failure_passed.map(Note::KnownFailurePassed)
        }
        (_, _, Some(first)) => Some(Note::RetriedAfter(first)),
        _ => None,
    };
    TrialResult {
        name: t.name,
        topology: t.topology,
        modes: t.modes,
        note,
        failure: t.failure,
        status: t.status,
        duration: seconds(t.duration_seconds),
        evidence: t.evidence,
        message: t.message,
        phases: t
            .phases
            .into_iter()
            .map(|(n, s)| (n.into(), seconds(s)))
            .collect(),
        guest: own_guest.then_some((t.kernel, t.image)),
        repetition: t.repetition,
    }
}

/// A run's record from the text of its results.json.
pub fn parse(text: &str) -> Result<RunRecord, serde_json::Error> {
    let run: JsonRun = serde_json::from_str(text)?;
    let info = run.run;
    Ok(RunRecord {
        results: run
            .trials
            .into_iter()
            .map(|t| trial_result(t, &info))
            .collect(),
        info,
        wall: seconds(run.wall_seconds),
        exit_code: run.exit_code,
        schedule: run.schedule,
        date: run.date,
        shards: run.shards,
    })
}

/// A run's record from its results.json.
pub fn read(path: &Path) -> Result<RunRecord, Error> {
    let text = std::fs::read_to_string(path).map_err(|source| Error::Read {
        path: path.to_owned(),
        source,
    })?;
    parse(&text).map_err(|source| Error::Parse {
        path: path.to_owned(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runner::result::sample;

    fn info() -> RunInfo {
        RunInfo {
            image: "default".into(),
            image_key: "k1".into(),
            kernel: "6.12.117+deb13-amd64".into(),
            accel: "Tcg".into(),
            start: "warm".into(),
            ..Default::default()
        }
    }

    fn record() -> RunRecord {
        let mut retried = sample("a::ok::cxl-x6", Status::Pass);
        retried.note = Some(Note::RetriedAfter(
            "infrastructure error: QEMU exited".into(),
        ));
        retried.phases = vec![("restore".into(), Duration::from_millis(250))];
        retried.modes = vec![Mode::Fsdax];
        let mut ignored = sample("b::later::nfit-1", Status::Ignored);
        ignored.note = Some(Note::Ignored("needs a 6.13 kernel".into()));
        ignored.duration = Duration::ZERO;
        let mut own = sample("ndctl::create.sh::nfit-test-modules", Status::Pass);
        own.guest = Some(("6.12.95+deb12-amd64".into(), "k2".into()));
        RunRecord {
            results: vec![
                sample("a::bad::nfit-1", Status::Fail),
                retried,
                ignored,
                own,
            ],
            info: info(),
            wall: Duration::from_secs(9),
            exit_code: 1,
            schedule: Schedule {
                partition: Some("count:2/3".parse().unwrap()),
                ..Default::default()
            },
            date: Some("2025-01-02T03:04:05Z".into()),
            shards: Vec::new(),
        }
    }

    #[test]
    fn the_fields_ci_reads() {
        let j: serde_json::Value = serde_json::from_str(&json(&record())).unwrap();
        assert_eq!(j["failed"], 1);
        assert_eq!(j["passed"], 2);
        assert_eq!(j["trials"][0]["name"], "a::bad::nfit-1");
        assert_eq!(j["trials"][0]["status"], "fail");
        assert_eq!(j["trials"][0]["kernel"], "6.12.117+deb13-amd64");
        assert_eq!(j["trials"][0]["evidence"], "/runs/x");
        assert_eq!(j["trials"][1]["phases"][0][0], "restore");
        assert_eq!(j["trials"][1]["phases"][0][1], 0.25);
        assert!(j["trials"][1]["retried_after"]
            .as_str()
            .unwrap()
            .contains("QEMU exited"));
        assert_eq!(j["trials"][2]["reason"], "needs a 6.13 kernel");
        assert_eq!(j["trials"][3]["kernel"], "6.12.95+deb12-amd64");
        assert_eq!(j["trials"][3]["image"], "k2");
        assert_eq!(j["schedule"]["partition"], "count:2/3");
        // A plain run says nothing of repetitions.
        assert!(j.get("pass_rates").is_none() && j["trials"][0].get("repetition").is_none());
    }

    fn schema() -> serde_json::Value {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/schema/results.schema.json");
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
    }

    #[test]
    fn results_follow_their_schema_and_say_its_version() {
        let schema = schema();
        assert_eq!(
            schema["properties"]["schema_version"]["const"],
            SCHEMA_VERSION
        );
        let validator = jsonschema::validator_for(&schema).unwrap();
        let mut run = record();
        let mut known = sample("p::create::cxl-x2", Status::KnownFailure);
        known.failure = Some(Cause::PowerCut {
            step: 3,
            violations: 2,
            judged: 28,
        });
        known.note = Some(Note::KnownFailure("a cut between DIMMs".into()));
        let mut report = sample("k::warn::nfit-1", Status::Fail);
        report.failure = Some(Cause::KernelReport {
            title: "WARNING".into(),
            line: "WARNING: CPU: 0 PID: 1 at drivers/nvdimm/label.c:1 f".into(),
            context: "in step 2 (`x`)".into(),
        });
        run.results.extend([known, report]);
        let written: serde_json::Value = serde_json::from_str(&json(&run)).unwrap();
        let errors: Vec<String> = validator
            .iter_errors(&written)
            .map(|e| format!("{} at {}", e, e.instance_path()))
            .collect();
        assert!(errors.is_empty(), "{errors:#?}");
        // A field the schema does not know, or a failure without its cause,
        // is refused: the schema is as strict as the writer.
        let mut extra = written.clone();
        extra["trials"][0]["surprise"] = 1.into();
        assert!(!validator.is_valid(&extra));
        let mut causeless = written.clone();
        let failing = causeless["trials"]
            .as_array_mut()
            .unwrap()
            .iter_mut()
            .find(|t| t["status"] == "fail")
            .unwrap();
        failing.as_object_mut().unwrap().remove("failure");
        assert!(!validator.is_valid(&causeless));
    }

    #[test]
    fn a_file_from_before_versions_reads_as_version_one() {
        let mut old: serde_json::Value = serde_json::from_str(&json(&record())).unwrap();
        old.as_object_mut().unwrap().remove("schema_version");
        let back = parse(&old.to_string()).unwrap();
        assert_eq!(back.results.len(), 4);
    }

    #[test]
    fn a_record_reads_back_as_it_was_written() {
        let mut before = record();
        before.results.sort_by(|a, b| a.name.cmp(&b.name));
        let after = parse(&json(&before)).unwrap();
        assert_eq!(after.info, before.info);
        assert_eq!(after.schedule, before.schedule);
        assert_eq!((after.exit_code, after.wall), (1, Duration::from_secs(9)));
        assert_eq!(after.date, before.date);
        for (a, b) in after.results.iter().zip(&before.results) {
            assert_eq!(
                (&a.name, a.status, a.duration, &a.note, &a.guest, &a.modes),
                (&b.name, b.status, b.duration, &b.note, &b.guest, &b.modes)
            );
            assert_eq!(a.failure, b.failure);
            assert_eq!(
                (&a.message, &a.evidence, &a.phases),
                (&b.message, &b.evidence, &b.phases)
            );
        }
    }

    #[test]
    fn a_repeated_run_has_its_pass_rates() {
        let mut run = record();
        run.results = (1..=3)
            .map(|n| {
                let status = if n == 2 { Status::Fail } else { Status::Pass };
                let mut r = sample("a::flaky::nfit-1", status);
                r.repetition = Some(n);
                r
            })
            .collect();
        run.schedule.repeat.times = Some(3);
        let j: serde_json::Value = serde_json::from_str(&json(&run)).unwrap();
        assert_eq!(j["trials"][1]["repetition"], 2);
        assert_eq!(j["schedule"]["repeat"]["times"], 3);
        let rate = &j["pass_rates"][0];
        assert_eq!(rate["name"], "a::flaky::nfit-1");
        assert_eq!(
            (rate["runs"].as_u64(), rate["passed"].as_u64()),
            (Some(3), Some(2))
        );
        assert_eq!(rate["failing"][0], 2);
        assert_eq!(parse(&json(&run)).unwrap().results[1].repetition, Some(2));
    }
}
