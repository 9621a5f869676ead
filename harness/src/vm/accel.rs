//! Choosing the accelerator. On some hosts /dev/kvm opens but guests die in
//! the kernel's decompressor ("KVM internal error ... emulation failure") or
//! spin at 100% sys: opening /dev/kvm proves nothing, so `auto` boots the
//! image's kernel once under KVM and keeps KVM only if it prints its banner.
//! The verdict is cached per host boot.

use std::path::Path;
use std::time::{Duration, Instant};

use super::qemu::{Error, Result};
use super::{Accel, QemuProcess};

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum AccelChoice {
    Auto,
    Kvm,
    Tcg,
}

const PROBE_TIMEOUT: Duration = Duration::from_secs(8);

/// Resolves a choice to an accelerator, probing KVM when asked for `auto`.
pub async fn resolve(
    choice: AccelChoice,
    qemu: &Path,
    kernel: &Path,
    cache: &Path,
) -> Result<Accel> {
    let kvm_opens = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .is_ok();
    match choice {
        AccelChoice::Tcg => Ok(Accel::Tcg),
        AccelChoice::Kvm if kvm_opens => Ok(Accel::Kvm),
        AccelChoice::Kvm => Err(Error::NoKvm("/dev/kvm cannot be opened".into())),
        AccelChoice::Auto if !kvm_opens => Ok(Accel::Tcg),
        AccelChoice::Auto => {
            let boot_id =
                std::fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap_or_default();
            let verdict = cache.join(format!("kvm-probe-{}", boot_id.trim()));
            if let Ok(v) = std::fs::read_to_string(&verdict) {
                return Ok(if v.trim() == "kvm" {
                    Accel::Kvm
                } else {
                    Accel::Tcg
                });
            }
            let accel = if probe_kvm(qemu, kernel).await {
                Accel::Kvm
            } else {
                Accel::Tcg
            };
            let _ = std::fs::create_dir_all(cache);
            let _ = std::fs::write(&verdict, accel.name());
            Ok(accel)
        }
    }
}

async fn probe_kvm(qemu: &Path, kernel: &Path) -> bool {
    let Ok(dir) = tempfile::Builder::new().prefix("ndh-kvm-probe-").tempdir() else {
        return false;
    };
    let serial = dir.path().join("serial.log");
    let argv: Vec<String> = [
        "-nodefaults",
        "-no-user-config",
        "-display",
        "none",
        "-no-reboot",
        "-accel",
        "kvm",
        "-cpu",
        "host",
        "-m",
        "256M",
        "-kernel",
    ]
    .iter()
    .map(|s| s.to_string())
    .chain([
        kernel.display().to_string(),
        "-append".into(),
        "console=ttyS0 panic=-1".into(),
        "-serial".into(),
        format!("file:{}", serial.display()),
    ])
    .collect();
    let Ok(mut qemu) = QemuProcess::spawn(qemu, &argv, &dir.path().join("qemu.log")) else {
        return false;
    };
    let start = Instant::now();
    let mut ok = false;
    while start.elapsed() < PROBE_TIMEOUT {
        if std::fs::read_to_string(&serial).is_ok_and(|s| s.contains("Linux version")) {
            ok = true;
            break;
        }
        if qemu.try_status().is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    qemu.kill().await;
    ok
}
