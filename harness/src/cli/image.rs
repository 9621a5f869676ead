//! `ndharness image build|lock|show|refresh`: a guest image built (or found
//! in the cache), its packages pinned, what it holds, or a line that
//! follows the newest kernel re-locked.

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
    let (ImageAction::Build(args)
    | ImageAction::Lock(args)
    | ImageAction::Show(args)
    | ImageAction::Source { image: args, .. }
    | ImageAction::Refresh(args)) = &action;
    let selection = args.select.selection(args.name.clone());
    let config = config(&args.common, selection, &MachineArgs::default(), None)?;
    let files = ImageFiles::load(&config.root.join("images"), &config.image)?;
    match action {
        ImageAction::Lock(_) => lock(&files, &config.build)?,
        ImageAction::Build(_) => build(&files, &config.build, Detail::Summary)?,
        ImageAction::Source { out, .. } => {
            let tree = image::unpack_source(&files, &config.build, &out)?;
            println!("{}", tree.display());
        }
        ImageAction::Show(_) => build(&files, &config.build, Detail::Contents)?,
        ImageAction::Refresh(_) => {
            refresh(&files, &config.build)?;
            // The image the line's mock-bus trials and ndctl's tests run
            // on follows the same kernel.
            if let Some((test_image, _)) = &config.test_image {
                if *test_image != config.image {
                    let test_files = ImageFiles::load(&config.root.join("images"), test_image)?;
                    refresh(&test_files, &config.build)?;
                }
            }
        }
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

/// Re-locks a line that follows the newest kernel; says what changed.
fn refresh(files: &ImageFiles, opts: &BuildOptions) -> anyhow::Result<()> {
    if !files.recipe.follows_newest {
        println!(
            "image {} is pinned (its recipe has no `follows_newest: true`): lock kept",
            files.name
        );
        return Ok(());
    }
    let before = files.read_lock().ok().map(|(lock, _)| lock);
    let after = image::lock(files, opts)?;
    let version = |lock: &image::Lock| format!("{} {}", lock.kernel.name, lock.kernel.version);
    match before {
        Some(before) if before == after => {
            println!(
                "image {}: {} is still the newest",
                files.name,
                version(&after)
            )
        }
        Some(before) => println!(
            "image {}: {} -> {}",
            files.name,
            version(&before),
            version(&after)
        ),
        None => println!("image {}: locked {}", files.name, version(&after)),
    }
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
