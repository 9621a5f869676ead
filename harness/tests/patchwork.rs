//! A kernel change as the unit of work, end to end on a real tree: the
//! mock line's kernel source unpacked (`image source`), then `validate` on
//! a change that fixes nothing and breaks nothing (no change, exit 0), on
//! a hand-written mutant (regresses, exit 1, naming the trial), and
//! `mutate` on two mutants, one the selection kills, and with explore on
//! one, its explore ended at the first finding the unmutated kernel does
//! not have, and on one that hangs the boot (timed out, not an
//! infrastructure error); the tree the same, checksum for checksum,
//! afterwards. The first build of the tree is cold (minutes); every build
//! after it is incremental.
//!
//! Ignored by default (it builds a kernel): `cargo test --test patchwork
//! -- --ignored`, as `.ci/run` does.

mod scratch;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use scratch::{ndharness, text};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .canonicalize()
        .unwrap()
}

/// `ndharness mutate --kernel-tree TREE ARGS --out OUT`, which must exit
/// 0: its output and its mutate.json.
fn mutate(tree: &str, out: &Path, args: &[&str]) -> (String, serde_json::Value) {
    let mut argv = vec!["mutate", "--kernel-tree", tree];
    argv.extend_from_slice(args);
    argv.extend(["--out", out.to_str().unwrap()]);
    let o = ndharness(&argv).output().unwrap();
    let t = text(&o);
    assert_eq!(o.status.code(), Some(0), "{t}");
    (t, json(&out.join("mutate.json")))
}

/// A report the run wrote.
fn json(path: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Every file of `dir` (`.git` aside) and its contents' hash.
fn checksums(dir: &Path) -> BTreeMap<PathBuf, String> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            let md = std::fs::symlink_metadata(&p).unwrap();
            if md.is_dir() {
                if p.file_name().is_some_and(|n| n != ".git") {
                    stack.push(p);
                }
            } else if md.is_file() {
                let sum = ndharness::proof::sha256_file(&p).unwrap();
                out.insert(p.strip_prefix(dir).unwrap().to_owned(), sum);
            }
        }
    }
    out
}

/// A change that touches a comment only.
const COMMENT_ONLY: &str = "\
--- a/drivers/nvdimm/label.c
+++ b/drivers/nvdimm/label.c
@@ -1,6 +1,7 @@
 // SPDX-License-Identifier: GPL-2.0-only
 /*
  * Copyright(c) 2013-2015 Intel Corporation. All rights reserved.
+ * Label format: UEFI 2.7, 13.19 \"NVDIMM Label Protocol\".
  */
 #include <linux/device.h>
 #include <linux/ndctl.h>
";

/// A mutant whose kernel never finishes booting: the bus list's mutex
/// taken twice in `nd_bus_probe()`, so `modprobe nfit` (the guest's init
/// loads it before it starts the agent) deadlocks.
const HANGS_THE_BOOT: &str = "\
Mutant: nd_bus_probe() takes nvdimm_bus_list_mutex twice
Class: a lock taken twice
Models: none; the test of a kernel that hangs at boot
Expect: modprobe nfit never returns, so the guest's agent never answers: the boot timeout
Files: drivers/nvdimm/bus.c

--- a/drivers/nvdimm/bus.c
+++ b/drivers/nvdimm/bus.c
@@ -444,6 +444,7 @@
 \t\treturn rc;
 
 \tmutex_lock(&nvdimm_bus_list_mutex);
+\tmutex_lock(&nvdimm_bus_list_mutex);
 \tlist_add_tail(&nvdimm_bus->list, &nvdimm_bus_list);
 \tmutex_unlock(&nvdimm_bus_list_mutex);
 
";

/// The one trial the checks run: ndctl's create.sh on nfit_test, which
/// mutant 10 (a namespace of all the space left refused) fails.
const FILTER: &str = "ndctl::create.sh::nfit-test-modules";
const KILLED: &str = "10-ns-size-exact-fit-enospc";
/// A mutant create.sh does not see (index block 0 initialized with
/// sequence 0: it shows only inside a power cut's window).
const SURVIVES: &str = "02-label-init-seq-zero";

#[test]
#[ignore = "builds a kernel tree (minutes); cargo test --test patchwork -- --ignored"]
fn validate_and_mutate_judge_changes_and_leave_the_tree_as_it_was() {
    let root = repo();
    let trees = root.join("target/ndharness/trees");
    let unpacked = ndharness(&[
        "image",
        "source",
        "--kernel",
        "debian-7.3-mock",
        "--out",
        trees.to_str().unwrap(),
    ])
    .output()
    .unwrap();
    assert!(unpacked.status.success(), "{}", text(&unpacked));
    let tree = String::from_utf8(unpacked.stdout)
        .unwrap()
        .trim()
        .to_owned();
    let before = checksums(Path::new(&tree));
    let work = tempfile::tempdir().unwrap();
    let patch = work.path().join("comment.patch");
    std::fs::write(&patch, COMMENT_ONLY).unwrap();
    let out = work.path().join("validate");
    let validate = |patch: &Path| {
        ndharness(&[
            "validate",
            "--kernel-tree",
            &tree,
            "--patch",
            patch.to_str().unwrap(),
            FILTER,
            "--out",
            out.to_str().unwrap(),
        ])
        .output()
        .unwrap()
    };

    let o = validate(&patch);
    let t = text(&o);
    assert_eq!(o.status.code(), Some(0), "{t}");
    assert!(t.contains("verdict: no change"), "{t}");

    let mutant = root.join(format!("mutants/hand/{KILLED}.patch"));
    let o = validate(&mutant);
    let t = text(&o);
    assert_eq!(o.status.code(), Some(1), "{t}");
    assert!(
        t.contains("verdict: regresses") && t.contains(FILTER),
        "{t}"
    );
    let report = json(&out.join("validate.json"));
    assert_eq!(report["verdict"], "regresses");
    assert_eq!(report["trials"][0]["name"], FILTER);

    let mutate_out = work.path().join("mutate");
    let (t, report) = mutate(
        &tree,
        &mutate_out,
        &["--only", KILLED, "--only", SURVIVES, FILTER],
    );
    let fate = |name: &str| {
        report["mutants"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["name"] == name)
            .map(|m| m["outcome"].as_str().unwrap().to_owned())
    };
    assert_eq!(fate(KILLED).as_deref(), Some("killed"), "{t}");
    assert_eq!(fate(SURVIVES).as_deref(), Some("survived"), "{t}");
    let any = report["scores"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["set"] == "any")
        .unwrap()
        .clone();
    assert_eq!(
        (any["killed"].as_u64(), any["of"].as_u64()),
        (Some(1), Some(2))
    );
    assert!(mutate_out.join("mutate.html").exists());
    // The reference ran twice (the default), its flaky trials named.
    assert_eq!(report["reference_runs"], 2, "{t}");
    assert!(report["flaky_on_reference"].is_array(), "{t}");

    explore_ends_a_mutant_at_its_first_new_finding(&tree, work.path());
    a_mutant_that_hangs_the_boot_times_out(&tree, work.path());

    assert!(
        checksums(Path::new(&tree)) == before,
        "the user's tree changed"
    );
}

/// `mutate --explore` on mutant 10: on cxl-x2 a create of all the region
/// has left is promised and the mutant refuses it, a finding the
/// unmutated kernel does not have (its own, a sector namespace below the
/// BTT's minimum left behind, breaks the same invariant another way);
/// the mutant's explore ends there, not at its budget.
fn explore_ends_a_mutant_at_its_first_new_finding(tree: &str, work: &Path) {
    let out = work.join("mutate-explore");
    let (t, report) = mutate(
        tree,
        &out,
        &[
            "--only",
            KILLED,
            "--explore",
            "2m",
            "--explore-topology",
            "cxl-x2",
            "--repeat",
            "1",
            "--seed",
            "7",
            "basic::fsdax-devdax-one-dimm::nfit-1",
        ],
    );
    let mutant = &report["mutants"][0];
    assert_eq!(mutant["outcome"], "killed", "{t}");
    let by = mutant["by"][0]["check"].as_str().unwrap_or_default();
    assert!(
        by.starts_with("explore: create-keeps-its-word (refused) at create"),
        "{t}"
    );
    // Ended by that finding, not by its budget (how long it took is the
    // machine's: a benchmark's to say, not a test's).
    let explored = json(&out.join("runs").join(KILLED).join("explore/explore.json"));
    let ended_by = explored["ended_early_by"].as_str().unwrap_or_default();
    assert!(
        ended_by.starts_with("create-keeps-its-word (refused) at create"),
        "{explored}"
    );
}

/// `mutate` on a kernel that deadlocks at boot: its guest is never ready
/// (to `run`, an infrastructure error), where the unmutated kernel's came
/// up on the same host, so the mutant timed out, seen by the trial.
fn a_mutant_that_hangs_the_boot_times_out(tree: &str, work: &Path) {
    let patch = work.join("hangs-the-boot.patch");
    std::fs::write(&patch, HANGS_THE_BOOT).unwrap();
    let out = work.join("mutate-hang");
    let trial = "basic::fsdax-devdax-one-dimm::nfit-1";
    let (t, report) = mutate(
        tree,
        &out,
        &[
            "--mutants",
            patch.to_str().unwrap(),
            "--repeat",
            "1",
            "--boot-timeout",
            "45s",
            trial,
        ],
    );
    let mutant = &report["mutants"][0];
    assert_eq!(mutant["outcome"], "timed-out", "{t}");
    assert_eq!(mutant["by"][0]["check"], trial, "{t}");
    assert_eq!(mutant["by"][0]["hung"], "boot", "{t}");
    assert!(t.contains("timed-out"), "{t}");
}
