//! `ndharness image build|lock|show`: a guest image built (or found in the
//! cache), its packages pinned, or what it holds.

use std::process::ExitCode;
use std::time::Instant;

use ndharness::image::{self, BuildOptions, ImageFiles};

use super::args::{ImageAction, MachineArgs};
use super::config::config;

/// How much of a built image is printed.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Detail {
    /// Where it is, its kernel, ndctl and size.
    Summary,
    /// That, and its packages and modules.
    Contents,
}

pub fn image(action: ImageAction) -> anyhow::Result<ExitCode> {
    let (ImageAction::Build(args) | ImageAction::Lock(args) | ImageAction::Show(args)) = &action;
    let selection = args.select.selection(args.name.clone());
    let config = config(&args.common, selection, &MachineArgs::default(), None)?;
    let files = ImageFiles::load(&config.root.join("images"), &config.image)?;
    match action {
        ImageAction::Lock(_) => lock(&files, &config.build)?,
        ImageAction::Build(_) => build(&files, &config.build, Detail::Summary)?,
        ImageAction::Show(_) => build(&files, &config.build, Detail::Contents)?,
    }
    Ok(ExitCode::SUCCESS)
}

fn lock(files: &ImageFiles, opts: &BuildOptions) -> anyhow::Result<()> {
    let lock = image::lock(files, opts)?;
    println!(
        "locked {} packages and kernel {} {} in {}",
        lock.packages.len(),
        lock.kernel.name,
        lock.kernel.version,
        files.lock_path.display()
    );
    Ok(())
}

fn build(files: &ImageFiles, opts: &BuildOptions, detail: Detail) -> anyhow::Result<()> {
    let start = Instant::now();
    let img = image::build(files, opts)?;
    let m = &img.manifest;
    println!(
        "image {} ({})",
        m.image,
        if img.built { "built" } else { "cached" }
    );
    println!("  folder    {}", img.dir.display());
    println!("  kernel    {} ({})", m.kernel_release, m.kernel_source);
    println!("  ndctl     {}", m.ndctl_source);
    println!("  initramfs {} bytes", m.initramfs_bytes);
    if detail == Detail::Contents {
        println!("  packages  {}", m.packages.join(" "));
        println!("  modules   {}", m.modules.join(" "));
    }
    println!("  time      {:.2}s", start.elapsed().as_secs_f64());
    Ok(())
}
