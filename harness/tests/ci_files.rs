//! The nightly CI files parse, and what they run, cache and keep exists
//! where the harness puts it: each kernel and shard of the matrix is one
//! job running one `--partition` of the suite into its own results folder,
//! and the merge job merges exactly those folders.

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
/// The kernels the nightly runs, in the order the matrices list them.
const KERNELS: [&str; 6] = [
    "debian-6.12",
    "debian-6.1",
    "debian-6.12-mock",
    "debian-7.3",
    "debian-7.2",
    "debian-7.3-mock",
];

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap_or_else(|| panic!("not a list: {v}"))
        .iter()
        .map(|x| match x {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        })
        .collect()
}

/// 1 to N, as the matrix lists the shards.
fn assert_shards(shards: &[String]) -> usize {
    let expected: Vec<String> = (1..=shards.len()).map(|k| k.to_string()).collect();
    assert_eq!(shards, expected, "shards are numbered 1 to N");
    shards.len()
}

/// Each kernel the nightly names is one an image recipe provides.
#[test]
fn the_nightly_kernels_exist() {
    let mut provided = Vec::new();
    for entry in std::fs::read_dir(root().join("images")).unwrap().flatten() {
        let path = entry.path();
        if path.extension().is_some_and(|e| e == "yaml") {
            let recipe: Value =
                serde_yaml_ng::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
            if let Some(k) = recipe["provides"]["kernel"].as_str() {
                provided.push(k.to_owned());
            }
        }
    }
    for k in KERNELS {
        assert!(
            provided.iter().any(|p| p == k),
            "no image provides {k}: {provided:?}"
        );
    }
}

fn assert_steps(steps: &[Value]) {
    for s in steps {
        assert!(
            s.get("uses").is_some() ^ s.get("run").is_some(),
            "a step has exactly one of uses/run: {s}"
        );
        // A run step is a script of the repository, but for the one
        // that sets the job's environment.
        if let Some(run) = s["run"].as_str().filter(|r| !sets_job_env(r)) {
            assert_script(run);
        }
        if let Some(uses) = s["uses"].as_str() {
            assert!(uses.contains('@'), "pin a version: {uses}");
        }
    }
}

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
    assert_eq!(
        jobs.keys().map(String::as_str).collect::<Vec<_>>(),
        ["conformance", "merge", "mutate", "mutate-explore"],
        "a matrix of shards, their merge, the mutation run and its explore column"
    );
    let job = &w["jobs"]["conformance"];
    assert!(job["runs-on"].is_string());
    assert_eq!(job["strategy"]["fail-fast"], false);
    let matrix = &job["strategy"]["matrix"];
    assert_eq!(strings(&matrix["kernel"]), KERNELS);
    let n = assert_shards(&strings(&matrix["shard"]));
    let steps = job["steps"].as_array().unwrap();
    assert_steps(steps);
    let runs = harness_runs(steps);
    assert_eq!(runs.len(), 1);
    // Expressions without their inner spaces, so a line splits into words.
    let line = runs[0].replace("${{ ", "${{").replace(" }}", "}}");
    let words: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(words[0], "ci/nightly");
    let flag = |name: &str| words[words.iter().position(|w| *w == name).unwrap() + 1];
    assert_eq!(flag("--kernel"), "${{matrix.kernel}}");
    assert_eq!(
        flag("--partition"),
        format!("count:${{{{matrix.shard}}}}/{n}")
    );
    // Each job its own results folder: the merge finds them by these names.
    assert_eq!(
        flag("--results"),
        format!("{RESULTS}/${{{{matrix.kernel}}}}-${{{{matrix.shard}}}}")
    );
    let paths: Vec<&str> = steps
        .iter()
        .filter_map(|s| s["with"]["path"].as_str())
        .flat_map(str::lines)
        .collect();
    // Packages, images and built kernels are kept; saved VM states
    // (gigabytes, keyed on the QEMU binary of each container) are not.
    for kept in ["debs", "images", "kernels"] {
        let p = format!(".cache/ndharness/{kept}");
        assert!(paths.contains(&p.as_str()), "{paths:?}");
    }
    assert!(
        !paths
            .iter()
            .any(|p| p.trim_end_matches('/') == ".cache/ndharness"),
        "{paths:?}"
    );
    assert!(paths.iter().any(|p| p.starts_with(RESULTS)), "{paths:?}");
    assert!(paths.iter().any(|p| p.starts_with(RUNS)), "{paths:?}");
    // Artifact names unique per job, so the merge gets every shard.
    let names: Vec<&str> = steps
        .iter()
        .filter_map(|s| s["with"]["name"].as_str())
        .collect();
    assert!(
        names.contains(&"results-${{ matrix.kernel }}-${{ matrix.shard }}"),
        "{names:?}"
    );
    assert_github_cache_home(job);
    github_merge_job(&w["jobs"]["merge"], n);
}

fn github_merge_job(job: &Value, shards: usize) {
    assert_eq!(job["needs"], "conformance");
    assert_eq!(job["if"], "always()");
    let steps = job["steps"].as_array().unwrap();
    assert_steps(steps);
    let download = steps
        .iter()
        .find(|s| {
            s["uses"]
                .as_str()
                .is_some_and(|u| u.starts_with("actions/download-artifact"))
        })
        .expect("the shards' results are downloaded");
    assert_eq!(download["with"]["pattern"], "results-*");
    assert_eq!(
        download["with"]["path"]
            .as_str()
            .unwrap()
            .trim_end_matches('/'),
        RESULTS
    );
    assert_eq!(download["with"]["merge-multiple"], true);
    let run = steps.iter().find_map(|s| s["run"].as_str()).unwrap();
    assert_merge_command(run, shards);
}

/// `ci/merge-results SHARDS KERNEL...` with the matrix's shards and kernels.
fn assert_merge_command(run: &str, shards: usize) {
    let words: Vec<&str> = run.split_whitespace().collect();
    assert_eq!(words[0], "ci/merge-results");
    assert_eq!(words[1], shards.to_string());
    assert_eq!(&words[2..], KERNELS);
    let script = std::fs::read_to_string(root().join("ci/merge-results")).unwrap();
    assert!(script.contains(&format!("results={RESULTS}\n")), "{script}");
    assert!(script.contains("\"$results/$kernel-$k\""), "{script}");
    assert!(
        script.contains("merge-results \"$results/merged/$kernel\""),
        "{script}"
    );
}

#[test]
fn gitlab_nightly_jobs() {
    let top = load(".gitlab-ci.yml");
    let local = top["include"][0]["local"].as_str().unwrap();
    let jobs = load(local);
    let job = &jobs["nightly-conformance"];
    let matrix = &job["parallel"]["matrix"][0];
    assert_eq!(strings(&matrix["KERNEL"]), KERNELS);
    let n = assert_shards(&strings(&matrix["SHARD"]));
    assert_eq!(job["variables"]["SHARDS"], n.to_string());
    let script = strings(&job["script"]);
    assert_eq!(script.len(), 1);
    assert_script(&script[0]);
    let words: Vec<&str> = script[0].split_whitespace().collect();
    assert_eq!(words[0], "ci/nightly");
    let flag = |name: &str| words[words.iter().position(|w| *w == name).unwrap() + 1];
    assert_eq!(flag("--kernel"), "$KERNEL");
    assert_eq!(flag("--partition"), "count:$SHARD/$SHARDS");
    assert_eq!(flag("--results"), format!("{RESULTS}/$KERNEL-$SHARD"));
    assert_eq!(
        job["artifacts"]["reports"]["junit"].as_str().unwrap(),
        format!("{RESULTS}/*/junit.xml")
    );
    assert_eq!(job["artifacts"]["when"], "always");
    let cached = strings(&job["cache"]["paths"]);
    assert_eq!(
        cached,
        [
            ".cache/ndharness/debs/",
            ".cache/ndharness/images/",
            ".cache/ndharness/kernels/"
        ]
    );
    assert!(job["variables"]["XDG_CACHE_HOME"]
        .as_str()
        .unwrap()
        .ends_with("/.cache"));
    assert!(job["rules"][0]["if"].as_str().unwrap().contains("schedule"));

    let merge = &jobs["nightly-merge"];
    assert_eq!(merge["needs"][0]["job"], "nightly-conformance");
    assert_eq!(merge["needs"][0]["artifacts"], true);
    for rule in merge["rules"].as_array().unwrap() {
        assert_eq!(rule["when"], "always", "{rule}");
    }
    let script = strings(&merge["script"]);
    assert_script(&script[0]);
    assert_merge_command(&script[0], n);
    assert_eq!(merge["artifacts"]["when"], "always");
}

#[test]
fn results_land_where_the_ci_files_look() {
    let c = ndharness::runner::Config::for_repo(root());
    assert!(c.results_dir.ends_with(RESULTS));
    assert!(c.runs_dir.ends_with(RUNS));
}

/// Every trial of the suites, by name.
fn trial_names() -> Vec<String> {
    let trials = ndharness::suite::discover(&root().join("suites")).expect("the suites parse");
    trials.into_iter().map(|t| t.name).collect()
}

/// Each pattern of each profile names a trial (a renamed case does not
/// leave a profile taking nothing), and each line a profile names is one
/// an image recipe provides.
#[test]
fn profiles_name_trials_and_lines_that_exist() {
    let profiles = ndharness::profile::Profiles::load(&root()).expect("suites/profiles.yaml");
    let names = trial_names();
    let recipes = std::fs::read_dir(root().join("images")).unwrap();
    let provided: Vec<String> = recipes
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "yaml"))
        .filter_map(|e| {
            let recipe: Value =
                serde_yaml_ng::from_str(&std::fs::read_to_string(e.path()).unwrap()).unwrap();
            recipe["provides"]["kernel"].as_str().map(str::to_owned)
        })
        .collect();
    for (name, profile) in profiles.iter() {
        for run in &profile.runs {
            for pattern in run.patterns() {
                let glob = ndharness::profile::glob(name, pattern).unwrap();
                assert!(
                    names.iter().any(|n| glob.is_match(n)),
                    "profile {name}: `{pattern}` names no trial"
                );
            }
            if let Some(kernel) = &run.kernel {
                assert!(
                    provided.contains(kernel),
                    "profile {name}: no image provides {kernel}"
                );
            }
        }
    }
}

/// `full` takes every trial with every power cut; `check` judges a sample;
/// `.ci/run` runs `check` and the nightly `full`.
#[test]
fn the_tiers_are_what_ci_runs() {
    use ndharness::suite::PointSelection;
    let profiles = ndharness::profile::Profiles::load(&root()).unwrap();
    let full = profiles.get("full").unwrap();
    assert_eq!(full.power_cuts, PointSelection::Every);
    let sets: Vec<_> = full
        .runs
        .iter()
        .map(|r| r.trial_set("full").unwrap())
        .collect();
    let full_set = ndharness::profile::TrialSet::any_of(sets);
    for name in trial_names() {
        assert!(full_set.contains(&name), "full leaves out {name}");
    }
    let check = profiles.get("check").unwrap();
    assert!(matches!(check.power_cuts, PointSelection::Sample { .. }));
    let test = std::fs::read_to_string(root().join("ci/test")).unwrap();
    assert!(test.contains("run --profile check"), "ci/test runs check");
    let nightly = std::fs::read_to_string(root().join("ci/nightly")).unwrap();
    assert!(
        nightly.contains("run --profile full"),
        "ci/nightly runs full"
    );
    let ci_run = std::fs::read_to_string(root().join(".ci/run")).unwrap();
    assert!(ci_run.contains("exec ci/test"), ".ci/run runs ci/test");
}

/// The nightly mutation run: both CI systems run ci/mutate and keep its
/// report for the next night; ci/mutate runs `mutate` on a tree `image
/// source` unpacked; `.ci/run` runs the validate-and-mutate test.
#[test]
fn mutate_runs_nightly_and_its_score_is_kept() {
    let github = load(".github/workflows/nightly.yml");
    let steps = github["jobs"]["mutate"]["steps"].as_array().unwrap();
    assert_eq!(harness_runs(steps), ["ci/mutate"]);
    assert_github_cache_home(&github["jobs"]["mutate"]);
    let cached: Vec<&str> = steps
        .iter()
        .filter_map(|s| s["with"]["path"].as_str())
        .collect();
    assert!(
        cached
            .iter()
            .any(|p| p.contains("target/ndharness/mutate/mutate.json")
                && p.contains("target/ndharness/mutate/previous.json")),
        "{cached:?}"
    );
    let gitlab = load("ci/gitlab/nightly.yml");
    let job = &gitlab["nightly-mutate"];
    assert_eq!(job["script"][0].as_str(), Some("ci/mutate"));
    let paths: Vec<&str> = job["cache"]["paths"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p.as_str())
        .collect();
    assert!(paths.contains(&"target/ndharness/mutate/mutate.json"));
    assert!(paths.contains(&"target/ndharness/mutate/previous.json"));
    assert_eq!(job["cache"]["when"], "always");
    let script = std::fs::read_to_string(root().join("ci/mutate")).unwrap();
    assert!(script.contains("image source --kernel debian-7.3-mock"));
    assert!(script.contains("\"$ndharness\" mutate --kernel-tree \"$tree\""));
    let test = std::fs::read_to_string(root().join("ci/test")).unwrap();
    assert!(test.contains("cargo test --locked --test patchwork -- --ignored"));
}

/// The explore column: both CI systems run ci/mutate-explore and keep each
/// quarter's report; the script explores for 10 minutes a mutant, with
/// every hand-written mutant in one of its four slices.
#[test]
fn mutate_explore_runs_nightly_a_quarter_at_a_time() {
    let github = load(".github/workflows/nightly.yml");
    let steps = github["jobs"]["mutate-explore"]["steps"]
        .as_array()
        .unwrap();
    assert_eq!(harness_runs(steps), ["ci/mutate-explore"]);
    assert_github_cache_home(&github["jobs"]["mutate-explore"]);
    let kept = "target/ndharness/mutate-explore/slice-*/mutate.json";
    assert!(steps.iter().any(|s| s["with"]["path"]
        .as_str()
        .is_some_and(|p| p.lines().any(|l| l == kept))));
    let gitlab = load("ci/gitlab/nightly.yml");
    let job = &gitlab["nightly-mutate-explore"];
    assert_eq!(job["script"][0].as_str(), Some("ci/mutate-explore"));
    assert!(job["cache"]["paths"]
        .as_array()
        .unwrap()
        .iter()
        .any(|p| p.as_str() == Some(kept)));
    assert_eq!(job["cache"]["when"], "always");
    let script = std::fs::read_to_string(root().join("ci/mutate-explore")).unwrap();
    assert!(script.contains("--explore 10m"));
    assert!(script.contains("% 4 == slice"));
    assert!(script.contains("mutants/hand/[0-9]*.patch"));
}

/// `.ci/run` builds the book.
#[test]
fn ci_builds_the_book() {
    let test = std::fs::read_to_string(root().join("ci/test")).unwrap();
    assert!(test.contains("mdbook build book"));
    let toml = std::fs::read_to_string(root().join("book/book.toml")).unwrap();
    assert!(toml.contains("src = \"src\"") && toml.contains("build-dir = \"../target/book\""));
}

/// A cache's `restore-keys` prefix matches no other cache's key (one
/// line's prefix would otherwise restore another line's images, or a
/// report, on a miss), for every kernel of the matrix.
#[test]
fn a_restore_prefix_matches_only_its_own_cache() {
    let github = load(".github/workflows/nightly.yml");
    let jobs = github["jobs"].as_object().unwrap();
    // (what the cache holds, its key, its restore prefix), matrix expanded.
    let mut caches: Vec<(String, String, String)> = Vec::new();
    for job in jobs.values() {
        let kernels: Vec<String> = job["strategy"]["matrix"]["kernel"]
            .as_array()
            .map(|k| {
                k.iter()
                    .filter_map(|k| k.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_else(|| vec![String::new()]);
        let steps = job["steps"].as_array().unwrap();
        let restores = steps
            .iter()
            .filter(|s| s["with"]["key"].is_string() && !is_cache_save(s));
        for step in restores {
            for kernel in &kernels {
                let expand = |v: &Value| {
                    v.as_str()
                        .unwrap_or_default()
                        .replace("${{ matrix.kernel }}", kernel)
                };
                caches.push((
                    expand(&step["with"]["path"]),
                    expand(&step["with"]["key"]),
                    expand(&step["with"]["restore-keys"]),
                ));
            }
        }
    }
    assert!(caches.len() > 6, "{caches:?}");
    for (path, key, prefix) in &caches {
        assert!(!prefix.is_empty(), "{path}: no restore-keys");
        for (_, other_key, _) in &caches {
            if other_key.starts_with(prefix.as_str()) {
                assert_eq!(
                    other_key, key,
                    "restore prefix {prefix} also matches {other_key}"
                );
            }
        }
    }
}

/// The steps that run a script of the repository (not the step that puts
/// the harness's cache in the workspace).
fn harness_runs(steps: &[Value]) -> Vec<&str> {
    steps
        .iter()
        .filter_map(|s| s["run"].as_str())
        .filter(|r| !sets_job_env(r))
        .collect()
}

/// A run step that sets the environment of the job's later steps.
fn sets_job_env(run: &str) -> bool {
    run.contains("GITHUB_ENV")
}

fn is_cache_save(step: &Value) -> bool {
    step["uses"]
        .as_str()
        .is_some_and(|u| u.starts_with("actions/cache/save"))
}

/// A container job's cache: `XDG_CACHE_HOME` set from the container's own
/// `$GITHUB_WORKSPACE` (`github.workspace` is the runner's path there), and
/// every cache restored is saved again whatever the job's verdict, under
/// the key it was looked up by.
fn assert_github_cache_home(job: &Value) {
    assert!(
        job["env"]["XDG_CACHE_HOME"].is_null(),
        "github.workspace is the runner's path in a container job"
    );
    let steps = job["steps"].as_array().unwrap();
    let set = steps
        .iter()
        .position(|s| {
            s["run"].as_str()
                == Some("echo \"XDG_CACHE_HOME=$GITHUB_WORKSPACE/.cache\" >> \"$GITHUB_ENV\"")
        })
        .expect("a step sets XDG_CACHE_HOME in the container's workspace");
    let first_harness = steps
        .iter()
        .position(|s| s["run"].as_str().is_some_and(|r| r.starts_with("ci/")))
        .unwrap();
    assert!(set < first_harness);
    for restore in steps.iter().filter(|s| {
        s["uses"]
            .as_str()
            .is_some_and(|u| u.starts_with("actions/cache"))
    }) {
        let uses = restore["uses"].as_str().unwrap();
        assert!(
            !uses.starts_with("actions/cache@"),
            "restore and save apart, the save under if: always(): {uses}"
        );
        if is_cache_save(restore) {
            continue;
        }
        let saved = steps.iter().any(|s| {
            is_cache_save(s)
                && s["if"] == "always()"
                && s["with"]["key"] == restore["with"]["key"]
                && s["with"]["path"] == restore["with"]["path"]
        });
        assert!(
            saved,
            "saved whatever the verdict: {}",
            restore["with"]["key"]
        );
    }
}
