//! Builds the guest's test program (`guest/probe.rs`, std only) with the
//! compiler that builds the harness, for the target it builds for, linked
//! statically so it runs on any guest root; the image builder embeds it
//! (`image::initramfs`) and installs it as /usr/bin/ndharness-probe.

use std::path::PathBuf;
use std::process::Command;

fn main() {
    let source = "guest/probe.rs";
    println!("cargo:rerun-if-changed={source}");
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let target = std::env::var("TARGET").expect("cargo sets TARGET");
    let binary = out.join("ndharness-probe");
    let status = Command::new(&rustc)
        .args([
            "--edition",
            "2021",
            "--crate-type",
            "bin",
            "--crate-name",
            "ndharness_probe",
        ])
        .args([
            "-C",
            "opt-level=2",
            "-C",
            "panic=abort",
            "-C",
            "target-feature=+crt-static",
        ])
        .args(["-C", "strip=symbols", "-D", "warnings", "--target", &target])
        .arg("-o")
        .arg(&binary)
        .arg(source)
        .status()
        .unwrap_or_else(|e| panic!("running {rustc:?} for {source}: {e}"));
    assert!(status.success(), "{source} did not compile ({status})");
}
