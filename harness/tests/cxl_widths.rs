//! Proof at every width: each shipped CXL topology boots, its region is
//! assembled by the harness, and `ndctl list` / `cxl list` show that many
//! mappings, the expected size and the expected align.

mod common;

use std::time::Duration;

use common::{runtime, Guest};
use ndharness::vm::Machine;
use serde_json::Value;

const MIB: u64 = 1 << 20;

/// Linux aligns a pmem region to 16 MiB, multiplied by the width when 16 MiB
/// does not divide by it (48 MiB at 3, 96 MiB at 6, 192 MiB at 12).
fn expected_align(ways: u64) -> u64 {
    let base = 16 * MIB;
    if base.is_multiple_of(ways) {
        base
    } else {
        base * ways
    }
}

async fn exec_json(m: &Machine, argv: &[&str]) -> Value {
    let argv: Vec<String> = argv.iter().map(|s| s.to_string()).collect();
    let out = m.exec(&argv, Duration::from_secs(60)).await.unwrap();
    assert!(out.success(), "{argv:?}: {}", out.stderr_text());
    serde_json::from_str(&out.stdout_text())
        .unwrap_or_else(|e| panic!("{argv:?}: {e}: {}", out.stdout_text()))
}

fn one(v: &Value) -> &Value {
    match v {
        Value::Array(a) => {
            assert_eq!(a.len(), 1, "expected one region: {v}");
            &a[0]
        }
        other => other,
    }
}

fn check_width(topology: &str, ways: u64) {
    let g = Guest::new(topology);
    runtime().block_on(async {
        let mut m = g.start(&format!("width-{topology}")).await;
        // The CXL drivers load after the agent answers, as for a trial.
        if let Some(out) = m.load_drivers().await.unwrap() {
            assert!(out.success(), "loading drivers: {}", out.stderr_text());
        }
        for line in
            ndharness::assemble::plan(&m, &g.t.topology, ndharness::assemble::Labels::Initialize)
                .await
                .unwrap()
        {
            let out = m
                .exec(
                    &["/bin/sh".into(), "-c".into(), line.clone()],
                    Duration::from_secs(120),
                )
                .await
                .unwrap();
            assert!(
                out.success(),
                "{line}: {}{}",
                out.stdout_text(),
                out.stderr_text()
            );
        }
        let cxl = exec_json(&m, &["cxl", "list", "-R"]).await;
        let cxl = one(&cxl);
        assert_eq!(cxl["interleave_ways"].as_u64(), Some(ways), "{cxl}");
        assert_eq!(cxl["size"].as_u64(), Some(ways * 256 * MIB), "{cxl}");

        let nd = exec_json(&m, &["ndctl", "list", "-RD"]).await;
        let region = one(&nd["regions"]);
        let mappings = region["mappings"].as_array().map_or(0, Vec::len) as u64;
        assert_eq!(mappings, ways, "{region}");
        assert_eq!(region["size"].as_u64(), Some(ways * 256 * MIB), "{region}");
        assert_eq!(
            region["align"].as_u64(),
            Some(expected_align(ways)),
            "{region}"
        );
        m.stop().await.remove();
    });
}

macro_rules! widths {
    ($($name:ident: $topology:literal, $ways:literal;)*) => {
        $(
            #[test]
            fn $name() {
                check_width($topology, $ways);
            }
        )*
    };
}

widths! {
    x1: "cxl-x1", 1;
    x2: "cxl-x2", 2;
    x3: "cxl-x3", 3;
    x4: "cxl-x4", 4;
    x6: "cxl-x6", 6;
    x8: "cxl-x8", 8;
    x12: "cxl-x12", 12;
    x16: "cxl-x16", 16;
    x4_behind_a_switch: "cxl-x4-switch", 4;
        x8_behind_two_switches: "cxl-x8-switch", 8;
    x6_through_sysfs: "cxl-x6-sysfs", 6;
}

#[test]
fn align_rule() {
    assert_eq!(expected_align(3), 48 * MIB);
    assert_eq!(expected_align(6), 96 * MIB);
    assert_eq!(expected_align(12), 192 * MIB);
    assert_eq!(expected_align(8), 16 * MIB);
}
