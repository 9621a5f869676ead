//! `ndharness boot --gdb` against a real guest: the printed command's port
//! answers a real gdb (`info registers rip`: the kernel's text, where
//! nokaslr puts it), and the kernel was booted with nokaslr. One cold boot
//! of nfit-1.

mod scratch;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use scratch::{ndharness, qemu_pids_using, repo};

#[test]
fn gdb_attaches_to_the_port_it_prints() {
    let runs = tempfile::tempdir().unwrap();
    let root = repo();
    let args = [
        "boot",
        "--topology",
        "nfit-1",
        "--gdb",
        "--root",
        root.to_str().unwrap(),
        "--runs-dir",
        runs.path().to_str().unwrap(),
        "--",
        "sh",
        "-c",
        "cat /proc/cmdline; sleep 15",
    ];
    let mut child = ndharness(&args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut seen = Vec::new();
    let mut port = None;
    // The gdb command comes first, then the guest is ready.
    for line in stderr.by_ref() {
        let line = line.unwrap();
        if let Some(p) = line.split("target remote :").nth(1) {
            port = p.split('\'').next().map(str::to_owned);
        }
        let ready = line.starts_with("guest ready in");
        seen.push(line);
        if ready {
            break;
        }
    }
    let port = port.unwrap_or_else(|| panic!("no gdb command printed:\n{}", seen.join("\n")));
    assert!(seen.iter().any(|l| l.contains("cold boot")), "{seen:?}");
    let t0 = Instant::now();
    let gdb = Command::new("gdb")
        .args([
            "-batch",
            "-nx",
            "-ex",
            &format!("target remote :{port}"),
            "-ex",
            "info registers rip",
        ])
        .output()
        .expect("gdb runs (ci/setup-host installs it)");
    let out =
        String::from_utf8_lossy(&gdb.stdout).into_owned() + &String::from_utf8_lossy(&gdb.stderr);
    assert!(t0.elapsed() < Duration::from_secs(60), "{out}");
    let rip = out
        .lines()
        .find_map(|l| l.strip_prefix("rip"))
        .and_then(|r| r.split_whitespace().next())
        .and_then(|h| u64::from_str_radix(h.trim_start_matches("0x"), 16).ok())
        .unwrap_or_else(|| panic!("no rip from gdb:\n{out}"));
    // The kernel's own mapping (text and modules) is the top 2 GiB.
    assert!(rip >= 0xffff_ffff_8000_0000, "rip {rip:#x}:\n{out}");
    let done = child.wait_with_output().unwrap();
    let cmdline = String::from_utf8_lossy(&done.stdout);
    assert!(done.status.success(), "{cmdline}");
    assert!(
        cmdline.split_whitespace().any(|w| w == "nokaslr"),
        "{cmdline}"
    );
    assert!(qemu_pids_using(runs.path()).is_empty(), "QEMU left behind");
}
