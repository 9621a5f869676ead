//! The guest's test program, `ndharness-probe`, run on the host against
//! files (the calls it makes work on any file; the guest cases point it at
//! device-dax devices, DAX files, nmem devices and BTT block devices): its
//! lines, exit codes and usage errors.

use std::process::{Command, Output};

const PROBE: &str = concat!(env!("OUT_DIR"), "/ndharness-probe");

fn probe(args: &[&str]) -> Output {
    Command::new(PROBE)
        .args(args)
        .output()
        .expect("run ndharness-probe")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// `ndharness-probe COMMAND FILE OPTIONS...` on a fresh file of `bytes`, in
/// a folder on disk (tmpfs has no O_DIRECT).
fn on_file(bytes: u64, command: &str, options: &[&str]) -> Output {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let path = dir.path().join("data");
    std::fs::File::create(&path)
        .unwrap()
        .set_len(bytes)
        .unwrap();
    let mut args = vec![command, path.to_str().unwrap()];
    args.extend_from_slice(options);
    probe(&args)
}

#[test]
fn a_mapping_is_filled_and_read_back() {
    let output = on_file(8 << 20, "map", &["--length", "8M", "--fill", "2M"]);
    assert_eq!(output.status.code(), Some(0), "{output:?}");
    assert_eq!(
        stdout(&output).trim(),
        "mapped 8388608 bytes, 4 chunks of 2097152 bytes written and read back"
    );
}

#[test]
fn touching_past_the_end_of_a_file_is_a_sigbus_at_its_offset() {
    let output = on_file(1 << 20, "map", &["--length", "2M", "--fill", "4K"]);
    assert_eq!(output.status.code(), Some(3), "{output:?}");
    assert_eq!(
        stdout(&output).trim(),
        "SIGBUS at offset 0x0000000000100000 of the mapping"
    );
}

#[test]
fn a_refused_call_names_its_errno_and_exits_1() {
    // MAP_SYNC needs a DAX file.
    let output = on_file(4096, "map", &["--length", "4096", "--sync"]);
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    assert!(stdout(&output).starts_with("mmap 4096 bytes with MAP_SYNC: EOPNOTSUPP 95"));
    // A label ioctl needs an nmem device.
    let output = on_file(4096, "label-write", &[]);
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    assert!(stdout(&output).starts_with("GET_CONFIG_SIZE: ENOTTY 25"));
}

#[test]
fn racing_writers_leave_every_sector_as_written() {
    let output = on_file(
        4 << 20,
        "race",
        &["--sector-size", "4096", "--writes", "100"],
    );
    assert_eq!(output.status.code(), Some(0), "{output:?}");
    assert!(stdout(&output).ends_with(
        "each followed by a sector of its own: sector 0 holds a last write, the 200 others read back as written\n"
    ));
}

#[test]
fn bad_usage_is_exit_2_with_the_usage() {
    for args in [
        &["frobnicate"][..],
        &["map", "/nonexistent"],
        &["map", "/nonexistent", "--length", "12x"],
        &["race", "/nonexistent", "--sector-size", "100"],
    ] {
        let output = probe(args);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {output:?}");
        assert!(String::from_utf8_lossy(&output.stderr).contains("usage:"));
    }
}
