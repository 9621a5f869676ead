//! Host folders in real guests (`ndharness boot --share`): a script written
//! on the host runs unchanged at its host path, what the guest writes comes
//! back to the host, and a static binary built on the host runs from a
//! share mounted elsewhere. Boots nfit-1 (warm starts once its state with
//! a share exists), one guest at a time.

mod scratch;

use std::path::Path;
use std::process::{Command, Output};

use scratch::{ndharness, qemu_pids_using, repo, text};

fn boot(runs: &Path, args: &[&str]) -> Output {
    let root = repo();
    let mut all = vec![
        "boot",
        "--topology",
        "nfit-1",
        "--root",
        root.to_str().unwrap(),
        "--runs-dir",
        runs.to_str().unwrap(),
    ];
    all.extend(args);
    let o = ndharness(&all).output().unwrap();
    assert!(qemu_pids_using(runs).is_empty(), "QEMU left behind");
    o
}

const SCRIPT: &str = r#"#!/bin/sh
# Written on the host, run unchanged in the guest.
here=$(dirname "$0")
echo "guest kernel $(uname -r), $(ndctl list -R | grep -c '"dev"') region(s), input: $(cat "$here/input.txt")"
echo "written by the guest" >"$here/output.txt"
"#;

const PROGRAM: &str = r#"
#include <stdio.h>
#include <sys/utsname.h>
int main(void)
{
	struct utsname u;
	unsigned long long size = 0;
	FILE *f = fopen("/sys/bus/nd/devices/region0/size", "r");
	uname(&u);
	if (!f || fscanf(f, "%llu", &size) != 1)
		return 1;
	printf("built on the host, run on %s %s: region0 %llu bytes\n", u.sysname, u.release, size);
	return 0;
}
"#;

#[test]
fn a_host_script_runs_unchanged_and_its_writes_come_back() {
    let runs = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let share = dir.path().canonicalize().unwrap();
    std::fs::write(share.join("test.sh"), SCRIPT).unwrap();
    std::fs::write(share.join("input.txt"), "from the host").unwrap();
    let script = share.join("test.sh");
    let o = boot(
        runs.path(),
        &[
            "--share",
            share.to_str().unwrap(),
            "--",
            "sh",
            script.to_str().unwrap(),
        ],
    );
    let t = text(&o);
    assert_eq!(o.status.code(), Some(0), "{t}");
    assert!(
        t.contains("1 region(s), input: from the host"),
        "the script's output:\n{t}"
    );
    assert!(
        t.contains(&format!(
            "{} at {} in the guest",
            share.display(),
            share.display()
        )),
        "{t}"
    );
    let back = std::fs::read_to_string(share.join("output.txt")).unwrap();
    assert_eq!(back, "written by the guest\n");
}

#[test]
fn a_static_binary_built_on_the_host_runs_from_a_share_elsewhere() {
    let runs = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("region-size.c");
    std::fs::write(&src, PROGRAM).unwrap();
    let bin = dir.path().join("region-size");
    let cc = Command::new("gcc")
        .args(["-static", "-O2", "-o"])
        .arg(&bin)
        .arg(&src)
        .output()
        .expect("gcc runs (ci/setup-host installs gcc and libc6-dev)");
    assert!(cc.status.success(), "gcc -static: {}", text(&cc));
    let spec = format!("{}:/mnt/tools", dir.path().display());
    let o = boot(
        runs.path(),
        &["--share", &spec, "--", "/mnt/tools/region-size"],
    );
    let t = text(&o);
    assert_eq!(o.status.code(), Some(0), "{t}");
    assert!(
        t.contains("built on the host, run on Linux ") && t.contains(": region0 1073610752 bytes"),
        "{t}"
    );
}

#[test]
fn a_share_is_refused_before_anything_boots_when_it_would_hide_the_guest() {
    let runs = tempfile::tempdir().unwrap();
    let runs_dir = runs.path().to_str().unwrap();
    let args = [
        "boot",
        "--topology",
        "nfit-1",
        "--runs-dir",
        runs_dir,
        "--share",
        "/tmp:/usr",
        "--",
        "true",
    ];
    let o = ndharness(&args)
        .env("NDHARNESS_QEMU", "/nonexistent")
        .output()
        .unwrap();
    let t = text(&o);
    assert_eq!(o.status.code(), Some(64), "a usage error: {t}");
    assert!(t.contains("it would hide the guest's own /usr"), "{t}");
}
