//! `cargo test` runs every case under suites/ in real guests, with the same
//! runner as `ndharness run`.

use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use ndharness::image;
use ndharness::qemu::accel::AccelChoice;
use ndharness::runner::{self, Config};

fn main() -> ExitCode {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .canonicalize()
        .expect("repository root");
    let mut args = libtest_mimic::Arguments::from_args();
    if args.test_threads.is_none() {
        args.test_threads = Some(1);
    }
    let config = Config {
        runs_dir: root.join("target/ndharness/runs"),
        root,
        image: "default".into(),
        build: image::BuildOptions {
            cache: image::cache_dir(),
            mirror: None,
            user_kernel: None,
        },
        accel: AccelChoice::Auto,
        boot_timeout: Duration::from_secs(90),
    };
    runner::run(runner::Shared::new(config), &args)
}
