//! The power-cut check can fail: a real guest's crash image (taken after
//! a create-namespace on nfit-1) passes the label check and holds the
//! step's namespace; the same image with one byte of its newer index block
//! changed is reported, on the host and in the verdict on a guest started
//! again on it.

mod common;

use std::time::Duration;

use common::{runtime, Guest};
use ndharness::powercut::classify::{self, CrashOutcome, Generations};
use ndharness::powercut::labels::{self, LabelArea, LabelLayout, LabelViolation};
use ndharness::powercut::{media, record, restart};
use ndharness::vm::StartSpec;

fn shell(line: &str) -> Vec<String> {
    vec!["/bin/sh".into(), "-c".into(), line.into()]
}

#[test]
fn a_corrupted_newer_index_in_a_crash_image_is_reported() {
    let g = Guest::new("nfit-1");
    runtime().block_on(async {
        let m = g.start("powercut-corrupted-index").await;
        let init =
            "ndctl disable-region all && ndctl init-labels -f all && ndctl enable-region all";
        let out = m.exec(&shell(init), Duration::from_secs(60)).await.unwrap();
        assert!(out.success(), "{}", out.stderr_text());
        let regions = media::regions(&g.t.topology, &m.run.files).unwrap();
        let before = media::read(&regions, &m.run.path).unwrap();
        let images = m.run.path.join("images");
        let create = shell("ndctl create-namespace -r region0 -m fsdax -s 96M");
        let recorded = record::at_moments(&m, &create, Duration::from_secs(60), &[], &images)
            .await
            .unwrap();
        assert!(recorded.output.unwrap().success());
        let image = recorded.images.last().unwrap().clone();
        let intact = media::read(&regions, &image.dir).unwrap();
        assert!(intact.violations.is_empty(), "{:?}", intact.violations);
        assert_eq!(intact.namespaces.len(), 1, "the create's namespace");
        let generations = Generations {
            before: before.namespaces,
            after: intact.namespaces.clone(),
        };

        // One byte of the index the kernel would use, changed.
        let file = image.dir.join("nvdimm0.img");
        let label_size = g.t.topology.nvdimms[0].label_size.bytes();
        let area = labels::read_nfit_label_area(&file, label_size).unwrap();
        let parsed = LabelArea::parse(&area, LabelLayout::Efi).unwrap();
        let newer = parsed.current.expect("a current index");
        let len = std::fs::metadata(&file).unwrap().len();
        let at = len - label_size + (newer * parsed.index_size) as u64 + 0x40;
        flip_byte(&file, at);

        let damaged = media::read(&regions, &image.dir).unwrap();
        assert!(
            damaged.violations.iter().any(
                |(_, v)| matches!(v, LabelViolation::IndexDamaged { index, .. } if *index == newer)
            ),
            "the check must report the damaged index: {:?}",
            damaged.violations
        );

        // A guest started on the damaged image: the kernel falls back to
        // the older index, and the verdict is a violation.
        let spec = StartSpec {
            qemu_binary: &g.env.qemu,
            image: &g.env.image,
            topology: &g.t.topology,
            accel: g.env.accel,
            extra_append: "",
            boot_timeout: g.config.boot_timeout,
            incoming: None,
            shares: &[],
            gdb: None,
            backing_from: None,
        };
        let checks = restart::Checks {
            regions: regions.len(),
            sectors: None,
            filesystem: None,
        };
        let (view, run) =
            restart::restart(&spec, &m.run.path, "restart", &image, &damaged, &checks)
                .await
                .unwrap();
        let view = view.unwrap();
        let violations: Vec<_> = damaged.violations.iter().map(|(_, v)| v.clone()).collect();
        let outcome = classify::judge(&damaged.namespaces, &violations, &view, &generations);
        assert!(matches!(outcome, CrashOutcome::Violation(_)), "{outcome}");
        run.remove();
        m.kill().await.remove();
    });
}

fn flip_byte(file: &std::path::Path, at: u64) {
    use std::os::unix::fs::FileExt;
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(file)
        .unwrap();
    let mut byte = [0u8];
    f.read_exact_at(&mut byte, at).unwrap();
    byte[0] ^= 0xff;
    f.write_all_at(&byte, at).unwrap();
}
