//! The host tools run for real: a hung tool killed whole at its deadline,
//! a failing one with its last lines, output kept, logged or passed on,
//! Ctrl-C's kill_all, the environment's deadlines.

use std::sync::Mutex;

use super::*;

/// `kill_all` reaches every tool of the process: the tests that run tools
/// take turns.
static TURN: Mutex<()> = Mutex::new(());

fn turn() -> std::sync::MutexGuard<'static, ()> {
    TURN.lock().unwrap_or_else(|e| e.into_inner())
}

fn sh(script: &str) -> Command {
    let mut cmd = Command::new("sh");
    cmd.args(["-c", script]);
    cmd
}

/// The live processes whose group is `pgid`, from /proc (a zombie is
/// dead: the init of a container may be slow to reap it).
fn members(pgid: i32) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // pid (comm) state ppid pgrp ...: comm may hold spaces.
        let Some((_, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        if fields.get(2).and_then(|g| g.parse::<i32>().ok()) == Some(pgid) && fields[0] != "Z" {
            found.push(stat);
        }
    }
    found
}

/// The shell's pid (its group's id) from the line `group N` it printed.
/// The group's live members once they have had up to `limit` to finish
/// dying: a process that got its SIGKILL runs its exit for a moment, longer
/// on a loaded machine.
fn members_after(pgid: i32, limit: Duration) -> Vec<String> {
    let start = Instant::now();
    loop {
        let found = members(pgid);
        if found.is_empty() || start.elapsed() > limit {
            return found;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn group_of(tail: &Tail) -> i32 {
    tail.0
        .iter()
        .find_map(|l| l.strip_prefix("group "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no `group N` line in {tail:?}"))
}

const SHORT: Limit = Limit::new("stand-in", "TEST_STAND_IN", Duration::from_secs(1));

#[test]
fn a_hung_tool_is_killed_at_its_deadline_with_its_whole_group() {
    let _turn = turn();
    let started = Instant::now();
    // A child of the shell in the background, and the shell waiting: both
    // must go.
    let e = Tool::new(
        SHORT,
        &mut sh("echo group $$; echo working; sleep 600 & sleep 600"),
    )
    .shown("sleep 600")
    .run()
    .unwrap_err();
    let elapsed = started.elapsed();
    assert!(elapsed < Duration::from_secs(4), "{elapsed:?}");
    let Error::Timeout { tail, .. } = &e else {
        panic!("{e}");
    };
    let text = e.to_string();
    assert!(
        text.starts_with("sleep 600 did not finish within 1s: killed; its last lines of output:"),
        "{text}"
    );
    assert!(text.contains("\n    working"), "{text}");
    let pgid = group_of(tail);
    assert_eq!(
        members_after(pgid, Duration::from_secs(3)),
        Vec::<String>::new(),
        "left behind"
    );
    assert!(!crate::supervisor::is_enrolled(pgid));
}

#[test]
fn a_failing_tool_reports_its_last_lines() {
    let _turn = turn();
    let e = Tool::new(
        SHORT,
        &mut sh("for i in $(seq 1 50); do echo line $i; done; echo broken >&2; exit 3"),
    )
    .shown("stand-in")
    .merged()
    .run()
    .unwrap_err();
    let text = e.to_string();
    assert!(
        text.starts_with("failed to run stand-in: exit status: 3; its last lines of output:"),
        "{text}"
    );
    // One pipe: the lines in the order they were written.
    assert!(text.ends_with("\n    line 50\n    broken"), "{text}");
    assert!(
        !text.contains("line 31\n"),
        "more than {TAIL_LINES} lines: {text}"
    );
    let Error::Failed { tail, .. } = e else {
        unreachable!()
    };
    assert_eq!(tail.0.len(), TAIL_LINES);
}

#[test]
fn output_is_kept_logged_or_sent_on_as_asked() {
    let _turn = turn();
    let done = Tool::new(SHORT, &mut sh("echo out; echo err >&2; exit 1"))
        .output()
        .unwrap();
    assert_eq!(done.status.code(), Some(1));
    assert_eq!(
        (done.stdout_text().as_str(), done.stderr.as_slice()),
        ("out\n", &b"err\n"[..])
    );

    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("build.log");
    let mut lines = Vec::new();
    let mut seen = |l: &str| lines.push(l.to_owned());
    Tool::new(SHORT, &mut sh("echo one; echo two"))
        .log(&log)
        .on_line(&mut seen)
        .run()
        .unwrap();
    assert_eq!(std::fs::read_to_string(&log).unwrap(), "one\ntwo\n");
    assert_eq!(lines, ["one", "two"]);

    let file = File::create(dir.path().join("out")).unwrap();
    Tool::new(SHORT, &mut sh("echo to-file"))
        .stdout_to(file)
        .run()
        .unwrap();
    assert_eq!(
        std::fs::read_to_string(dir.path().join("out")).unwrap(),
        "to-file\n"
    );
}

#[test]
fn kill_all_ends_a_running_tool_and_a_missing_one_says_how_to_install() {
    let _turn = turn();
    let killer = std::thread::spawn(|| {
        std::thread::sleep(Duration::from_millis(300));
        crate::supervisor::kill_all();
    });
    let long = Limit::new("stand-in", "TEST_STAND_IN", Duration::from_secs(60));
    let started = Instant::now();
    let done = Tool::new(long, &mut sh("sleep 600")).output().unwrap();
    killer.join().unwrap();
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(!done.status.success());

    let e = Tool::new(SHORT, &mut Command::new("/nonexistent/tool"))
        .run()
        .unwrap_err();
    assert!(e.to_string().contains("run ci/setup-host"), "{e}");
}

#[test]
fn the_environment_overrides_a_deadline() {
    let limit = Limit::new("x", "TEST_OVERRIDE_ONLY", Duration::from_secs(100));
    assert_eq!(limit.deadline(), Duration::from_secs(100));
    std::env::set_var("NDHARNESS_TOOL_TIMEOUT_TEST_OVERRIDE_ONLY", "3s");
    assert_eq!(limit.deadline(), Duration::from_secs(3));
    std::env::remove_var("NDHARNESS_TOOL_TIMEOUT_TEST_OVERRIDE_ONLY");
}
