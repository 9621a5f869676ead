//! The nightly CI files parse, and what they run, cache and keep exists
//! where the harness puts it.

use std::path::{Path, PathBuf};

use serde_json::Value;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn load(rel: &str) -> Value {
    let text = std::fs::read_to_string(root().join(rel)).unwrap();
    serde_yaml_ng::from_str(&text).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// The first word of a command line names a script in this repository,
/// which must exist and be executable.
fn assert_script(cmd: &str) {
    use std::os::unix::fs::PermissionsExt;
    let script = cmd.split_whitespace().next().unwrap();
    let meta = std::fs::metadata(root().join(script)).unwrap_or_else(|e| panic!("{script}: {e}"));
    assert!(
        meta.permissions().mode() & 0o111 != 0,
        "{script} is not executable"
    );
}

const RESULTS: &str = "target/ndharness/results";
const RUNS: &str = "target/ndharness/runs";

#[test]
fn github_nightly_workflow() {
    let w = load(".github/workflows/nightly.yml");
    assert!(
        w["on"]["schedule"][0]["cron"]
            .as_str()
            .unwrap()
            .split(' ')
            .count()
            == 5
    );
    let jobs = w["jobs"].as_object().unwrap();
    assert_eq!(jobs.len(), 1);
    let job = jobs.values().next().unwrap();
    assert!(job["runs-on"].is_string());
    let steps = job["steps"].as_array().unwrap();
    for s in steps {
        assert!(
            s.get("uses").is_some() ^ s.get("run").is_some(),
            "a step has exactly one of uses/run: {s}"
        );
        if let Some(run) = s["run"].as_str() {
            assert_script(run);
            assert!(run.starts_with("ci/nightly"), "{run}");
        }
        if let Some(uses) = s["uses"].as_str() {
            assert!(uses.contains('@'), "pin a version: {uses}");
        }
    }
    let paths: Vec<&str> = steps
        .iter()
        .filter_map(|s| s["with"]["path"].as_str())
        .flat_map(str::lines)
        .collect();
    // Packages and images are kept; saved VM states (gigabytes, keyed on
    // the QEMU binary of each container) are not.
    assert!(paths.contains(&".cache/ndharness/debs"), "{paths:?}");
    assert!(paths.contains(&".cache/ndharness/images"), "{paths:?}");
    assert!(
        !paths
            .iter()
            .any(|p| p.trim_end_matches('/') == ".cache/ndharness"),
        "{paths:?}"
    );
    assert!(paths.iter().any(|p| p.starts_with(RESULTS)), "{paths:?}");
    assert!(paths.iter().any(|p| p.starts_with(RUNS)), "{paths:?}");
    assert!(job["env"]["XDG_CACHE_HOME"]
        .as_str()
        .unwrap()
        .ends_with("/.cache"));
}

#[test]
fn gitlab_nightly_job() {
    let top = load(".gitlab-ci.yml");
    let local = top["include"][0]["local"].as_str().unwrap();
    let jobs = load(local);
    let job = &jobs["nightly-conformance"];
    for line in job["script"].as_array().unwrap() {
        assert_script(line.as_str().unwrap());
    }
    assert_eq!(
        job["artifacts"]["reports"]["junit"].as_str().unwrap(),
        format!("{RESULTS}/junit.xml")
    );
    assert_eq!(job["artifacts"]["when"], "always");
    assert_eq!(job["cache"]["paths"][0], ".cache/ndharness/debs/");
    assert_eq!(job["cache"]["paths"][1], ".cache/ndharness/images/");
    assert!(job["variables"]["XDG_CACHE_HOME"]
        .as_str()
        .unwrap()
        .ends_with("/.cache"));
    assert!(job["rules"][0]["if"].as_str().unwrap().contains("schedule"));
}

#[test]
fn results_land_where_the_ci_files_look() {
    let c = ndharness::runner::Config::for_repo(root());
    assert!(c.results_dir.ends_with(RESULTS));
    assert!(c.runs_dir.ends_with(RUNS));
}
