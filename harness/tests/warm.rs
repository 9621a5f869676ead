//! Warm start gives what a cold boot gives: the same cases run both ways
//! through `ndharness compare` (real guests, real kernel and ndctl), and
//! every trial must come out the same, snapshot for snapshot.

use std::path::{Path, PathBuf};
use std::process::Command;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .canonicalize()
        .unwrap()
}

#[test]
fn warm_and_cold_starts_give_the_same_snapshots() {
    let out = tempfile::tempdir().unwrap();
    // The mode cases on NFIT (create, reconfigure, destroy in each mode),
    // label cases that reboot (cold) after a warm start, hotplug, and the
    // topologies whose devices QEMU does not save (their PCI headers written
    // back): CXL saved with its regions at widths 3 and 6 (cli and sysfs
    // assembly; regions committed again after the restore), data through a
    // restored 6-way region, poison injected through QMP (saved before the
    // drivers), and virtio-pmem (the same).
    for (filter, skip) in [
        ("modes::", &["cxl", "fill"][..]),
        ("labels::reboot-keeps-namespaces::", &[][..]),
        ("hotplug::", &[][..]),
        ("modes::sector-lifecycle::cxl-x3", &[][..]),
        ("cxl::sysfs-assembled-region::", &[][..]),
        ("cxl::data-round-trip::cxl-x6", &[][..]),
        ("media-errors::cxl-poison::cxl-x2", &[][..]),
        ("basic::label-less-reconfigure::virtio-pmem-1", &[][..]),
    ] {
        let o = Command::new(env!("CARGO_BIN_EXE_ndharness"))
            .args([
                "compare",
                "--baseline",
                "start=cold",
                "--candidate",
                "start=warm",
            ])
            .args(skip.iter().flat_map(|s| ["--skip", s]))
            .arg("--out")
            .arg(out.path())
            .arg("--root")
            .arg(repo())
            .arg(filter)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&o.stdout);
        let report: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(out.path().join("compare.json")).unwrap(),
        )
        .unwrap();
        assert_eq!(report["baseline"]["info"]["start"], "cold", "{text}");
        assert_eq!(report["candidate"]["info"]["start"], "warm", "{text}");
        let trials = report["trials"].as_array().unwrap();
        assert!(!trials.is_empty(), "{filter}: no trial ran\n{text}");
        for t in trials {
            assert_eq!(
                t["same"], true,
                "{filter}: {} differs warm:\n{text}",
                t["name"]
            );
            assert_eq!(t["candidate"], "pass", "{filter}: {}\n{text}", t["name"]);
        }
        assert_eq!(o.status.code(), Some(0), "{filter}:\n{text}");
    }
}
