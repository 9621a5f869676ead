//! `cargo test --test suites` runs every case under suites/ in real
//! guests, with the same runner as `ndharness run` (as many guests at a
//! time as the host has cores, unless `--test-threads` says otherwise).
//! Not part of a plain `cargo test` (`test = false`: hundreds of guest
//! runs); `ndharness run --profile NAME` runs a tier of them. This file
//! sits in suites/ so that `cargo insta review` looks here for pending
//! snapshots.

use std::path::Path;
use std::process::ExitCode;

use ndharness::runner::{self, Config};

fn main() -> ExitCode {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .canonicalize()
        .expect("repository root");
    let args = libtest_mimic::Arguments::from_args();
    let config = Config::for_repo(root);
    runner::run(config, &args)
}
