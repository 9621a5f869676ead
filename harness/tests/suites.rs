//! `cargo test` runs every case under suites/ in real guests, with the same
//! runner as `ndharness run`.

use std::path::Path;
use std::process::ExitCode;

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
    let config = Config::for_repo(root);
    runner::run(runner::Shared::new(config), &args)
}
