//! The cache key of a group's saved state: every input that shapes the
//! guest (image, QEMU binary, accelerator, QEMU's command line with the run
//! folder's paths as placeholders, the save point, the regions the setup
//! assembles).

use std::path::Path;

use super::{save_point, TemplateSpec};
use crate::runner::start::Assembly;
use crate::runner::GuestEnv;
use crate::vm::{cmdline, Accel, GuestFiles, LaunchSpec, Share};

/// The cache key of a group's saved state.
pub fn key(env: &GuestEnv, spec: TemplateSpec<'_>) -> String {
    let qemu = std::fs::metadata(&env.qemu)
        .map(|m| format!("{} {:?}", m.len(), m.modified().ok()))
        .unwrap_or_default();
    let material = format!(
        "state 6\nimage {}\nqemu {} {qemu}\n{}argv {}\n",
        env.image.manifest.key,
        env.qemu.display(),
        setup_material(spec),
        argv(env.accel, spec).join(" ")
    );
    crate::image::sha256_hex(material.as_bytes())
}

/// QEMU's command line for the group, with placeholders for the paths a
/// restore may change: the run folder's and the shared host folders'.
pub(super) fn argv(accel: Accel, spec: TemplateSpec<'_>) -> Vec<String> {
    let placeholder = Path::new("RUN");
    let t = spec.topology();
    let files = GuestFiles::under(placeholder, placeholder, t);
    // A state restores onto any host folders: only how many shares there
    // are, and which are read-only, shape the machine.
    let shares: Vec<Share> = (spec.shares.iter().enumerate())
        .map(|(i, s)| Share {
            host: format!("SHARE{i}").into(),
            ..s.clone()
        })
        .collect();
    cmdline::argv(&LaunchSpec {
        topology: t,
        kernel: Path::new("IMAGE/vmlinuz"),
        initrd: Path::new("IMAGE/initramfs.cpio"),
        files: &files,
        accel,
        extra_append: spec.kernel_args,
        incoming: None,
        shares: &shares,
        gdb: None,
    })
}

/// The part of the key QEMU's arguments do not show: whether and how the
/// setup assembles regions (a guest saved ready has them: their method,
/// members and granularity are inputs too) and the save point.
pub(super) fn setup_material(spec: TemplateSpec<'_>) -> String {
    let regions = spec
        .topology()
        .cxl
        .as_ref()
        .map(|c| format!("{:?}", c.regions));
    format!(
        "assemble {}\npoint {:?}\nregions {regions:?}\n",
        spec.assembly == Assembly::ByHarness,
        save_point(spec)
    )
}
