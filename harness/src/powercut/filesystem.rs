//! ext4 across a power cut: the checksums of the files a case keeps, taken
//! in the live guest before the step, and what a restarted guest says of
//! them: the filesystem mounts (its journal replayed), the kept files read
//! back with those checksums, and `e2fsck -fn` finds it clean afterwards.
//! The guest commands are built here, pure; the restart runs them.

use std::fmt;

use crate::suite::FilesystemCheck;

/// The command that prints the kept files' checksums (`sha256sum` lines),
/// run in the live guest before the step.
pub fn checksums_command(check: &FilesystemCheck) -> String {
    let files: Vec<String> = check.kept.iter().map(|f| quote(f)).collect();
    format!(
        "cd {} && sha256sum -- {}",
        quote(&check.mount),
        files.join(" ")
    )
}

/// The command that mounts the filesystem on a restarted guest and checks
/// the kept files against `checksums` (what [`checksums_command`] printed).
pub fn verify_command(check: &FilesystemCheck, checksums: &str) -> String {
    format!(
        "mkdir -p {mount} && mount -o dax {device} {mount} && cd {mount} && sha256sum -c <<'NDHARNESS_SUMS'\n{sums}\nNDHARNESS_SUMS",
        mount = quote(&check.mount),
        device = quote(&check.device),
        sums = checksums.trim_end()
    )
}

/// The command that unmounts it and checks it, read-only.
pub fn fsck_command(check: &FilesystemCheck) -> String {
    format!(
        "umount {} 2>/dev/null; e2fsck -fn {}",
        quote(&check.mount),
        quote(&check.device)
    )
}

/// What a restarted guest said of the filesystem.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FilesystemView {
    /// Mounted, and every kept file read back with its checksum.
    pub kept_intact: bool,
    /// `e2fsck -fn` exited 0 after the mount replayed the journal.
    pub fsck_clean: bool,
    /// The first lines of what failed, when something did.
    pub detail: String,
}

impl FilesystemView {
    pub fn is_consistent(&self) -> bool {
        self.kept_intact && self.fsck_clean
    }
}

impl fmt::Display for FilesystemView {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.kept_intact, self.fsck_clean) {
            (true, true) => write!(f, "filesystem clean, kept files intact"),
            (false, _) => write!(f, "kept files not intact (or no mount): {}", self.detail),
            (true, false) => write!(f, "e2fsck found the filesystem not clean: {}", self.detail),
        }
    }
}

/// The first `n` non-empty lines of `text`, on one line.
pub fn first_lines(text: &str, n: usize) -> String {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .take(n)
        .collect::<Vec<_>>()
        .join("; ")
}

use crate::command_line::quote;

#[cfg(test)]
mod tests {
    use super::*;

    fn check() -> FilesystemCheck {
        FilesystemCheck {
            device: "/dev/pmem0".into(),
            mount: "/mnt/pmem".into(),
            kept: vec!["kept".into(), "it's".into()],
        }
    }

    #[test]
    fn the_commands_quote_what_the_case_names() {
        assert_eq!(
            checksums_command(&check()),
            r#"cd /mnt/pmem && sha256sum -- kept "it's""#
        );
        let verify = verify_command(&check(), "abc  kept\n");
        assert!(verify.starts_with("mkdir -p /mnt/pmem && mount -o dax /dev/pmem0 /mnt/pmem"));
        assert!(verify.ends_with("<<'NDHARNESS_SUMS'\nabc  kept\nNDHARNESS_SUMS"));
        assert_eq!(
            fsck_command(&check()),
            "umount /mnt/pmem 2>/dev/null; e2fsck -fn /dev/pmem0"
        );
    }

    #[test]
    fn a_view_is_consistent_only_when_intact_and_clean() {
        let ok = FilesystemView {
            kept_intact: true,
            fsck_clean: true,
            detail: String::new(),
        };
        assert!(ok.is_consistent());
        let torn = FilesystemView {
            kept_intact: false,
            detail: "kept: FAILED".into(),
            ..ok.clone()
        };
        assert!(!torn.is_consistent());
        assert!(torn.to_string().contains("kept: FAILED"));
        let dirty = FilesystemView {
            fsck_clean: false,
            ..ok
        };
        assert!(dirty.to_string().starts_with("e2fsck"));
        assert_eq!(first_lines("\n a \n\nb\nc\n", 2), "a; b");
    }
}
