//! The names and formats a trial leaves on disk, written in one place and
//! read in another: the evidence folder of a trial, its folder under a
//! collect folder (`ndharness compare`), and a checkpoint's body (the
//! layout, then the kernel log since the last checkpoint).

/// The run folder (evidence) of a trial: `SUITE-CASE-TOPOLOGY`, and
/// `SUITE-CASE-TOPOLOGY.repN` for its Nth repetition (`--repeat`), so no
/// two repetitions' folders are mistaken for each other. A folder still
/// there from an earlier run gets a free suffix (`vm::RunDir::create`).
pub fn run_folder(trial: &str, repetition: Option<u32>) -> String {
    let folder = trial.replace("::", "-");
    match repetition {
        Some(n) => format!("{folder}.rep{n}"),
        None => folder,
    }
}

/// A trial's folder under a collect folder: `SUITE__CASE__TOPOLOGY`.
pub fn collect_folder(trial: &str) -> String {
    trial.replace("::", "__")
}

/// What separates a checkpoint's layout from its kernel log.
const LOG_HEADER: &str = "\nkernel log since the last checkpoint:\n";

/// A checkpoint's body: `layout` (what ndctl and cxl list, normalized),
/// then the header and one indented line per kernel record.
pub fn checkpoint_body(layout: &str, kernel_lines: &[String]) -> String {
    let mut body = String::from(layout);
    body.push_str(LOG_HEADER);
    for line in kernel_lines {
        body.push_str(&format!("  {line}\n"));
    }
    body
}

/// A checkpoint body cut into its layout and its kernel log.
pub fn split_checkpoint(body: &str) -> (&str, &str) {
    match body.find(LOG_HEADER) {
        Some(i) => (&body[..i], &body[i + LOG_HEADER.len()..]),
        None => (body, ""),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_checkpoint_body_splits_back_into_layout_and_log() {
        let body = checkpoint_body("$ ndctl list -RDNu\n[]\n", &["nd_pmem: probe".into()]);
        assert_eq!(
            body,
            "$ ndctl list -RDNu\n[]\n\nkernel log since the last checkpoint:\n  nd_pmem: probe\n"
        );
        assert_eq!(
            split_checkpoint(&body),
            ("$ ndctl list -RDNu\n[]\n", "  nd_pmem: probe\n")
        );
        assert_eq!(split_checkpoint("no log"), ("no log", ""));
    }

    #[test]
    fn folder_names() {
        assert_eq!(run_folder("basic::x::nfit-1", None), "basic-x-nfit-1");
        assert_eq!(
            run_folder("basic::x::nfit-1", Some(3)),
            "basic-x-nfit-1.rep3"
        );
        assert_eq!(collect_folder("basic::x::nfit-1"), "basic__x__nfit-1");
    }
}
