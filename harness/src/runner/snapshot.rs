//! Snapshot comparison through insta: expected output lives in
//! `suites/SUITE/snapshots/`, a mismatch prints insta's diff and leaves a
//! `.snap.new` for `cargo insta review`; nothing is overwritten unreviewed.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;

/// insta reports a mismatch by panicking after printing its diff; the
/// panic's own message and backtrace add nothing, so they are not printed.
pub fn quiet_snapshot_panics() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let msg = info
                .payload()
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| info.payload().downcast_ref::<&str>().copied())
                .unwrap_or_default();
            if !msg.starts_with("snapshot assertion for") {
                default(info);
            }
        }));
    });
}

/// Compares `content` with snapshot `name`; Err carries a short reason
/// (insta has already printed the diff).
pub fn compare(
    dir: &Path,
    case_file: &Path,
    name: &str,
    description: &str,
    content: &str,
) -> Result<(), String> {
    let mut settings = insta::Settings::clone_current();
    settings.set_snapshot_path(dir);
    settings.set_prepend_module_to_snapshot(false);
    settings.set_omit_expression(true);
    settings.set_input_file(case_file);
    settings.set_description(description);
    let res = catch_unwind(AssertUnwindSafe(|| {
        settings.bind(|| insta::assert_snapshot!(name, content));
    }));
    res.map_err(|_| {
        format!(
            "snapshot `{name}` does not match {} (diff above); review with `cargo insta review`",
            dir.join(format!("{name}.snap")).display()
        )
    })
}
