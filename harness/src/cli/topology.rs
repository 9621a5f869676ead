//! `ndharness topology show`: a topology written out and its QEMU command
//! line, with placeholder paths.

use std::path::Path;
use std::process::ExitCode;

use ndharness::vm::{self, Accel, GuestFiles, LaunchSpec};

pub fn show(topology: &str) -> anyhow::Result<ExitCode> {
    let t = ndharness::topology::load(topology)?;
    // The expansion, in the topology format itself: a file holding
    // this text is the same topology.
    let yaml = serde_yaml_ng::to_string(&t.topology)?;
    println!("# topology {}, written out\n{yaml}", t.name);
    let run = Path::new("RUN");
    let files = GuestFiles::under(run, run, &t.topology);
    let spec = LaunchSpec {
        topology: &t.topology,
        kernel: Path::new("IMAGE/vmlinuz"),
        initrd: Path::new("IMAGE/initramfs.cpio"),
        files: &files,
        accel: Accel::Tcg,
        extra_append: "",
        incoming: None,
        shares: &[],
        gdb: None,
    };
    println!("qemu-system-x86_64 {}", vm::cmdline::argv(&spec).join(" "));
    Ok(ExitCode::SUCCESS)
}
