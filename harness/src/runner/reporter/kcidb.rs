//! A run in KernelCI's KCIDB report format (schema v5.3), so a lab can
//! submit its results to KernelCI (`kcidb-submit`): the guest's kernel as
//! one checkout and one build (the image), and one test per run of a
//! trial, at path `ndharness.SUITE.CASE.TOPOLOGY`. Written by
//! [`KcidbWriter`] for `--kcidb FILE`.

use std::path::PathBuf;

use serde_json::{json, Map, Value};

use super::{Reporter, RunEvent, RunRecord};
use crate::runner::result::{Status, TrialResult};

/// The schema version the document follows.
pub const VERSION: (u32, u32) = (5, 3);
/// The longest `log_excerpt` KCIDB takes.
const EXCERPT_MAX: usize = 16384;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("KCIDB origin `{0}`: an origin is lowercase letters, digits and `_` (the name KernelCI registered for the lab)")]
pub struct BadOrigin(pub String);

/// A KCIDB origin: the CI system's name, as KernelCI knows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Origin(String);

impl std::str::FromStr for Origin {
    type Err = BadOrigin;
    fn from_str(s: &str) -> Result<Origin, BadOrigin> {
        let ok = !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
        ok.then(|| Origin(s.to_owned()))
            .ok_or_else(|| BadOrigin(s.to_owned()))
    }
}

impl Origin {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Default for Origin {
    fn default() -> Origin {
        Origin("ndharness".into())
    }
}

/// Writes the run's KCIDB document to `file` when the run ends.
pub struct KcidbWriter {
    pub file: PathBuf,
    pub origin: Origin,
}

impl Reporter for KcidbWriter {
    fn report(&mut self, event: &RunEvent<'_>) {
        let RunEvent::Finished(run) = event else {
            return;
        };
        match write(&self.file, run, &self.origin) {
            Ok(()) => println!("  kcidb:   {}", self.file.display()),
            Err(e) => eprintln!("warning: could not write {}: {e}", self.file.display()),
        }
    }
}

/// Writes the document of `run` to `file`.
pub fn write(file: &std::path::Path, run: &RunRecord, origin: &Origin) -> std::io::Result<()> {
    if let Some(dir) = file.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let text = serde_json::to_string_pretty(&document(run, origin)).expect("JSON serializes");
    std::fs::write(file, text)
}

/// A trial's test path: its name's parts, each with what KCIDB's path
/// grammar lacks (`.`, `@`, ...) made `_`.
pub fn test_path(trial: &str) -> String {
    let parts = trial.split("::").map(|p| {
        p.chars()
            .map(|c| match c {
                'a'..='z' | 'A'..='Z' | '0'..='9' | '_' | '-' => c,
                _ => '_',
            })
            .collect::<String>()
    });
    std::iter::once("ndharness".to_owned())
        .chain(parts)
        .collect::<Vec<_>>()
        .join(".")
}

fn status(s: Status) -> &'static str {
    match s {
        Status::Pass => "PASS",
        Status::Fail => "FAIL",
        // The harness failed: the verdict on the kernel is unknown.
        Status::Error => "ERROR",
        Status::Ignored => "SKIP",
        // KCIDB has no expected failure: a known one still failed.
        Status::KnownFailure => "FAIL",
    }
}

/// The log excerpt of a run: its message (or why it was ignored), cut to
/// what KCIDB takes, NULs dropped.
fn excerpt(r: &TrialResult) -> Option<String> {
    let text = r.message.as_deref().or(r.reason())?;
    let mut out: String = text.chars().filter(|c| *c != '\0').collect();
    if out.len() > EXCERPT_MAX {
        let end = (0..=EXCERPT_MAX)
            .rev()
            .find(|i| out.is_char_boundary(*i))
            .unwrap_or(0);
        out.truncate(end);
    }
    Some(out)
}

/// The whole document: version, checkouts, builds, tests.
pub fn document(run: &RunRecord, origin: &Origin) -> Value {
    let o = &origin.0;
    let info = &run.info;
    let checkout_id = format!("{o}:{}", info.kernel_source);
    let build_id = format!("{o}:{}", info.image_key);
    let date = run.date.clone().unwrap_or_default();
    let tests: Vec<Value> = run
        .results
        .iter()
        .map(|r| test(r, origin, &build_id, &date, &info.accel))
        .collect();
    json!({
        "version": { "major": VERSION.0, "minor": VERSION.1 },
        "checkouts": [{
            "id": checkout_id,
            "origin": o,
            "comment": info.kernel_source,
            "valid": true,
        }],
        "builds": [{
            "id": build_id,
            "origin": o,
            "checkout_id": checkout_id,
            "architecture": "x86_64",
            "comment": format!("kernel {} in ndharness image {}", info.kernel, info.image),
            "status": "PASS",
            "misc": { "image": info.image, "ndctl": info.ndctl_source },
        }],
        "tests": tests,
    })
}

fn test(r: &TrialResult, origin: &Origin, build_id: &str, date: &str, accel: &str) -> Value {
    let o = &origin.0;
    let mut t = Map::new();
    // Unique per run of a trial: the run's end, the trial, its repetition.
    let id = format!("{o}:{date}:{}", r.display_name());
    t.insert("id".into(), id.into());
    t.insert("build_id".into(), build_id.into());
    t.insert("origin".into(), o.as_str().into());
    t.insert("path".into(), test_path(&r.name).into());
    t.insert("comment".into(), r.display_name().into_owned().into());
    t.insert("status".into(), status(r.status).into());
    if r.status != Status::Ignored {
        t.insert("duration".into(), r.duration.as_secs_f64().into());
    }
    if let Some(e) = excerpt(r) {
        t.insert("log_excerpt".into(), e.into());
    }
    let environment = json!({
        "comment": format!("QEMU ({accel}), topology {}", r.topology),
        "misc": { "topology": r.topology, "accel": accel },
    });
    t.insert("environment".into(), environment);
    let mut misc = Map::new();
    if let Some(n) = r.repetition {
        misc.insert("repetition".into(), n.into());
    }
    if let Some(p) = &r.evidence {
        misc.insert("evidence".into(), p.display().to_string().into());
    }
    if let Some((kernel, image)) = &r.guest {
        misc.insert("kernel".into(), kernel.as_str().into());
        misc.insert("image".into(), image.as_str().into());
    }
    if !misc.is_empty() {
        t.insert("misc".into(), misc.into());
    }
    Value::Object(t)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runner::result::{sample, RunInfo};

    #[test]
    fn paths_follow_the_kcidb_grammar() {
        assert_eq!(
            test_path("basic::fsdax-devdax-one-dimm::nfit-1"),
            "ndharness.basic.fsdax-devdax-one-dimm.nfit-1"
        );
        assert_eq!(
            test_path("ndctl::create.sh::nfit-test-modules"),
            "ndharness.ndctl.create_sh.nfit-test-modules"
        );
        assert!("lab_1".parse::<Origin>().is_ok());
        assert!("Lab-1".parse::<Origin>().is_err());
        assert!("".parse::<Origin>().is_err());
    }

    #[test]
    fn a_run_as_a_kcidb_document() {
        let mut bad = sample("a::bad::nfit-1", Status::Fail);
        bad.message = Some(format!("step 1\0: {}", "x".repeat(20_000)));
        bad.repetition = Some(2);
        let mut later = sample("a::later::cxl-x2", Status::Ignored);
        later.note = Some(crate::runner::result::Note::Ignored(
            "needs a 6.13 kernel".into(),
        ));
        let run = RunRecord {
            results: vec![sample("a::ok::nfit-1", Status::Pass), bad, later],
            info: RunInfo {
                kernel: "6.12.117+deb13-amd64".into(),
                kernel_source: "linux-image-6.12.117+deb13-amd64-unsigned 6.12.117-1".into(),
                image: "default".into(),
                image_key: "7c06".into(),
                accel: "Tcg".into(),
                ..Default::default()
            },
            date: Some("2025-01-02T03:04:05Z".into()),
            ..Default::default()
        };
        let d = document(&run, &Origin::default());
        assert_eq!(d["version"]["major"], 5);
        assert_eq!(d["builds"][0]["id"], "ndharness:7c06");
        assert_eq!(d["builds"][0]["checkout_id"], d["checkouts"][0]["id"]);
        let tests = d["tests"].as_array().unwrap();
        assert_eq!(tests[0]["status"], "PASS");
        assert_eq!(tests[0]["build_id"], "ndharness:7c06");
        assert_eq!(tests[1]["status"], "FAIL");
        assert_eq!(
            tests[1]["id"],
            "ndharness:2025-01-02T03:04:05Z:a::bad::nfit-1#2"
        );
        assert_eq!(tests[1]["misc"]["repetition"], 2);
        let excerpt = tests[1]["log_excerpt"].as_str().unwrap();
        assert!(excerpt.len() <= EXCERPT_MAX && !excerpt.contains('\0'));
        assert_eq!(tests[2]["status"], "SKIP");
        assert_eq!(tests[2]["log_excerpt"], "needs a 6.13 kernel");
        assert!(tests[2].get("duration").is_none());
        // No nulls anywhere: KCIDB refuses them.
        assert!(!serde_json::to_string(&d).unwrap().contains("null"));
    }
}
