//! The `ndharness` binary as a user meets it: clear errors for bad input,
//! listing that boots nothing, and a hung guest command that fails its case
//! in time and leaves no QEMU behind (this one boots a real guest).

mod scratch;

use std::path::Path;
use std::process::Output;
use std::time::{Duration, Instant};

use scratch::{ndharness, repo, scratch, text};

fn assert_clean_error(o: &Output, needle: &str) {
    let t = text(o);
    assert_eq!(o.status.code(), Some(2), "{t}");
    assert!(t.contains(needle), "expected {needle:?} in:\n{t}");
    assert!(
        !t.contains("panicked") && !t.contains("stack backtrace"),
        "{t}"
    );
}

#[test]
fn unknown_topology_is_one_clear_error() {
    let o = ndharness(&["boot", "--topology", "nfit-99", "--", "true"])
        .output()
        .unwrap();
    assert_clean_error(&o, "unknown topology `nfit-99`");
}

#[test]
fn missing_qemu_says_how_to_install_it() {
    let o = ndharness(&["boot", "--topology", "nfit-1", "--", "true"])
        .env("NDHARNESS_QEMU", "/nonexistent/qemu-system-x86_64")
        .output()
        .unwrap();
    assert_clean_error(&o, "ci/setup-host");
}

#[test]
fn malformed_case_names_file_line_and_path() {
    let dir = scratch(
        "bad",
        "typo",
        "topology: nfit-1\nsteps:\n  - run: ndctl list\n    expct: { exit: 1 }\n",
    );
    let root = dir.path().to_str().unwrap();
    let o = ndharness(&["run", "--list", "--root", root])
        .output()
        .unwrap();
    assert_clean_error(&o, "typo.yaml:4:");
    assert!(text(&o).contains("steps[0].expct"), "{}", text(&o));
}

#[test]
fn listing_names_trials_and_boots_nothing() {
    let start = Instant::now();
    let o = ndharness(&["run", "--list", "--root", repo().to_str().unwrap()])
        .env("NDHARNESS_QEMU", "/nonexistent")
        .output()
        .unwrap();
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    assert!(
        t.contains("basic::fsdax-devdax-one-dimm::nfit-1: test"),
        "{t}"
    );
    assert!(start.elapsed() < Duration::from_secs(5));
}

fn qemu_pids_using(dir: &Path) -> Vec<u32> {
    scratch::qemu_pids_using(dir)
}

/// Runs a one-case scratch suite in a real guest: its output, text, time.
fn run_scratch(
    suite: &str,
    case: &str,
    yaml: &str,
) -> (tempfile::TempDir, Output, String, Duration) {
    run_scratch_with(suite, case, yaml, &[])
}

/// [`run_scratch`] with more options for `run`.
fn run_scratch_with(
    suite: &str,
    case: &str,
    yaml: &str,
    options: &[&str],
) -> (tempfile::TempDir, Output, String, Duration) {
    let dir = scratch(suite, case, yaml);
    let start = Instant::now();
    let root = dir.path().to_str().unwrap().to_owned();
    let mut argv = vec!["run", "--root", &root, "--accel", "tcg"];
    argv.extend(options);
    let o = ndharness(&argv).output().unwrap();
    let t = text(&o);
    assert!(
        qemu_pids_using(dir.path()).is_empty(),
        "QEMU still running:\n{t}"
    );
    (dir, o, t, start.elapsed())
}

#[test]
fn hung_guest_command_fails_in_time_and_leaves_no_qemu() {
    let (dir, o, t, took) = run_scratch(
        "hang",
        "sleeps",
        "topology: nfit-1\nsteps:\n  - run: sleep 1000\n    timeout: 5s\n",
    );
    assert_eq!(o.status.code(), Some(1), "{t}");
    assert!(t.contains("did not finish within 5s"), "{t}");
    let evidence = dir.path().join("target/ndharness/runs/hang-sleeps-nfit-1");
    assert!(t.contains(&evidence.display().to_string()), "{t}");
    assert!(evidence.join("serial.log").exists(), "{t}");
    assert!(std::fs::read_to_string(evidence.join("qemu.argv"))
        .unwrap()
        .contains("nvdimm"));
    // Boot (at most the harness's own deadline) + 5 s timeout + 10 s to stop.
    assert!(took < Duration::from_secs(90 + 15), "took {took:?}");
}

#[test]
fn kernel_panic_in_a_step_fails_the_case_at_once() {
    let (_dir, o, t, took) = run_scratch(
        "crash",
        "sysrq",
        "topology: nfit-1\nsteps:\n  - run: echo c > /proc/sysrq-trigger\n    timeout: 60s\n",
    );
    assert_eq!(
        o.status.code(),
        Some(1),
        "a panic is a verdict, not an infrastructure error:\n{t}"
    );
    assert!(t.contains("the guest kernel panicked during step 1"), "{t}");
    assert!(t.contains("sysrq triggered crash"), "{t}");
    // Well before the step's own 60 s timeout.
    assert!(took < Duration::from_secs(50), "took {took:?}");
}

#[test]
fn kernel_panicking_at_boot_is_a_verdict_with_warm_start_too() {
    // The group's template guest panics before it can be saved: no state,
    // the trial boots cold and gets the verdict itself.
    let (dir, o, t, _) = run_scratch(
        "bootpanic",
        "nonexistent-init",
        "topology: nfit-1\nkernel_args: rdinit=/nonexistent\nsteps:\n  - run: \"true\"\n",
    );
    assert_eq!(o.status.code(), Some(1), "{t}");
    assert!(t.contains("the guest kernel panicked while booting"), "{t}");
    let junit =
        std::fs::read_to_string(dir.path().join("target/ndharness/results/junit.xml")).unwrap();
    assert!(junit.contains("type=\"conformance\""), "{junit}");
    assert!(!junit.contains("infrastructure"), "{junit}");
}

#[test]
fn kernel_report_fails_its_step_unless_declared() {
    // sysrq `l` makes the kernel print a backtrace of every CPU: a real
    // Call Trace report, on demand. Step 2 declares it; step 3 does not.
    let (_dir, o, t, _) = run_scratch(
        "report",
        "backtrace",
        "topology: nfit-1\nsteps:\n  - run: ndctl list -D\n  - run: echo l > /proc/sysrq-trigger\n    expect: { kernel_reports: [Call Trace] }\n  - run: echo l > /proc/sysrq-trigger\n",
    );
    assert_eq!(o.status.code(), Some(1), "{t}");
    assert!(
        t.contains("kernel Call Trace in step 3 (`echo l > /proc/sysrq-trigger`)"),
        "{t}"
    );
    assert!(!t.contains("in step 2"), "{t}");
}

#[test]
fn states_lists_and_prunes_the_cache_it_is_given() {
    let cache = tempfile::tempdir().unwrap();
    let dir = cache.path().join("states/0123456789abcdef");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("about.txt"), "topology cxl-x3\n").unwrap();
    std::fs::write(dir.join("state"), [0u8; 4096]).unwrap();
    let states = |args: &[&str]| {
        let mut c = ndharness(args);
        c.env("NDHARNESS_CACHE_DIR", cache.path());
        c.output().unwrap()
    };
    let o = states(&["states"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("cxl-x3") && text(&o).contains("1 saved states"),
        "{}",
        text(&o)
    );
    // Saved just now: kept by the default age.
    let o = states(&["states", "prune"]);
    assert!(text(&o).contains("removed 0 saved states"), "{}", text(&o));
    assert!(dir.exists());
    let o = states(&["states", "prune", "--older-than", "nan"]);
    assert_eq!(o.status.code(), Some(64), "{}", text(&o));
    assert!(text(&o).contains("--older-than"), "{}", text(&o));
    let o = states(&["states", "prune", "--older-than", "0"]);
    assert!(text(&o).contains("removed 1 saved states"), "{}", text(&o));
    assert!(!dir.exists());
}

#[test]
fn a_slow_trial_is_shown_slow_while_it_runs_with_its_last_step() {
    let yaml =
        "topology: nfit-1\nsnapshots: false\nsteps:\n  - run: ndctl list -R\n  - run: sleep 3\n";
    let (_dir, o, t, _) = run_scratch_with("slow", "naps", yaml, &["--slow-after", "1s"]);
    assert!(o.status.success(), "{t}");
    let slow = t
        .lines()
        .position(|l| l.trim_start().starts_with("SLOW") && l.contains("slow::naps::nfit-1"));
    let passed = t
        .lines()
        .position(|l| l.trim_start().starts_with("pass") && l.contains("slow::naps::nfit-1"));
    assert!(
        matches!((slow, passed), (Some(s), Some(p)) if s < p),
        "no SLOW line before the trial's end:\n{t}"
    );
}

#[test]
fn exit_codes_tell_usage_no_match_and_a_pass_apart() {
    let dir = scratch("codes", "one", "topology: nfit-1\nsteps:\n  - run: true\n");
    let root = dir.path().to_str().unwrap().to_owned();
    let run = |extra: &[&str]| {
        let mut argv = vec!["run", "--root", &root, "--accel", "tcg"];
        argv.extend(extra);
        ndharness(&argv).output().unwrap()
    };
    let o = run(&["no-such-trial"]);
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    assert!(text(&o).contains("no trial matched"), "{}", text(&o));
    let o = run(&["no-such-trial", "--no-tests", "pass"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let o = run(&["--no-such-flag"]);
    assert_eq!(o.status.code(), Some(64), "{}", text(&o));
    let o = ndharness(&["run", "--help"]).output().unwrap();
    assert_eq!(o.status.code(), Some(0));
}

#[test]
fn boot_without_a_command_or_a_terminal_says_so_at_once() {
    let t0 = Instant::now();
    let o = ndharness(&["boot", "--topology", "nfit-1"])
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(64), "{}", text(&o));
    assert!(text(&o).contains("--no-shell"), "{}", text(&o));
    assert!(t0.elapsed() < Duration::from_secs(10), "it booted nothing");
}
