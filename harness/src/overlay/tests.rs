//! The overlay against a small stand-in tree: links, a change applied to
//! copies only, the user's files untouched, and a sync that puts back
//! what a change wrote and follows what the user did.

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use super::change::diff_paths;
use super::*;

fn tree(dir: &Path) {
    std::fs::create_dir_all(dir.join("drivers/nvdimm")).unwrap();
    std::fs::write(dir.join("Makefile"), "all:\n").unwrap();
    std::fs::write(dir.join("Kconfig"), "").unwrap();
    std::fs::write(
        dir.join("drivers/nvdimm/label.c"),
        "int a;\nint slots = 2;\nint c;\n",
    )
    .unwrap();
    std::fs::create_dir_all(dir.join(".git")).unwrap();
    std::fs::write(dir.join(".git/HEAD"), "ref").unwrap();
}

const PATCH: &str = "\
--- a/drivers/nvdimm/label.c
+++ b/drivers/nvdimm/label.c
@@ -1,3 +1,3 @@
 int a;
-int slots = 2;
+int slots = 3;
 int c;
--- /dev/null
+++ b/drivers/nvdimm/new.c
@@ -0,0 +1 @@
+int added;
";

/// A stand-in tree, and its overlay synced once (with the cache folder,
/// kept alive by the caller).
fn synced_overlay() -> (tempfile::TempDir, tempfile::TempDir, Overlay) {
    let user = tempfile::tempdir().unwrap();
    let cache = tempfile::tempdir().unwrap();
    tree(user.path());
    let mut o = Overlay::for_tree(cache.path(), user.path()).unwrap();
    o.sync().unwrap();
    (user, cache, o)
}

fn ino(p: &Path) -> u64 {
    std::fs::metadata(p).unwrap().ino()
}

#[test]
fn a_change_writes_copies_and_a_sync_puts_the_users_tree_back() {
    let user = tempfile::tempdir().unwrap();
    let cache = tempfile::tempdir().unwrap();
    tree(user.path());
    let label = user.path().join("drivers/nvdimm/label.c");
    let before = std::fs::read(&label).unwrap();
    let mut o = Overlay::for_tree(cache.path(), user.path()).unwrap();
    let synced = o.sync().unwrap();
    assert_eq!((synced.files, synced.linked), (3, 3), "{synced:?}");
    let ours = o.src().join("drivers/nvdimm/label.c");
    assert_ne!(
        ino(&ours),
        ino(&label),
        "the mock builds write there: a copy"
    );
    assert_eq!(
        ino(&o.src().join("Makefile")),
        ino(&user.path().join("Makefile")),
        "elsewhere a link"
    );
    assert!(!o.src().join(".git").exists());

    let touched = o.apply(&Change::diff("p", PATCH.into())).unwrap();
    assert_eq!(touched, ["drivers/nvdimm/label.c", "drivers/nvdimm/new.c"]);
    assert_eq!(std::fs::read(&label).unwrap(), before, "the user's file");
    assert_ne!(ino(&ours), ino(&label));
    assert!(std::fs::read_to_string(&ours)
        .unwrap()
        .contains("slots = 3"));
    assert!(o.src().join("drivers/nvdimm/new.c").exists());

    // Again from the ledger, as a later run would.
    drop(o);
    let mut o = Overlay::for_tree(cache.path(), user.path()).unwrap();
    let synced = o.sync().unwrap();
    assert_eq!((synced.restored, synced.removed), (1, 1), "{synced:?}");
    assert_eq!(std::fs::read(&ours).unwrap(), before);
    assert!(!o.src().join("drivers/nvdimm/new.c").exists());
    assert_ne!(ino(&ours), ino(&label), "a fresh copy: make rebuilds it");
}

#[test]
fn the_mock_builds_folders_are_copies_whose_build_files_stay() {
    let (user, _cache, mut o) = synced_overlay();
    let label = user.path().join("drivers/nvdimm/label.c");
    let ours = o.src().join("drivers/nvdimm/label.c");
    let before = std::fs::read(&label).unwrap();
    // What a mock build does in the overlay: rewrites a file in place and
    // adds its objects.
    std::fs::write(&ours, "rewritten by make\n").unwrap();
    std::fs::write(o.src().join("drivers/nvdimm/label.o"), "obj").unwrap();
    assert_eq!(std::fs::read(&label).unwrap(), before, "the user's file");
    let synced = o.sync().unwrap();
    assert_eq!((synced.linked, synced.removed), (0, 0), "{synced:?}");
    assert!(
        o.src().join("drivers/nvdimm/label.o").exists(),
        "the build's file stays"
    );
    // The user changes the file: copied again.
    std::fs::write(&label, "int changed;\n").unwrap();
    o.sync().unwrap();
    assert_eq!(std::fs::read_to_string(&ours).unwrap(), "int changed;\n");
}

#[test]
fn a_sync_follows_what_the_user_changed() {
    let (user, _cache, mut o) = synced_overlay();
    // An editor writes a new file and renames it over the old one.
    let label = user.path().join("drivers/nvdimm/label.c");
    std::fs::write(user.path().join("tmp"), "int edited;\n").unwrap();
    std::fs::rename(user.path().join("tmp"), &label).unwrap();
    std::fs::remove_file(user.path().join("Kconfig")).unwrap();
    let synced = o.sync().unwrap();
    assert_eq!((synced.linked, synced.removed), (1, 1), "{synced:?}");
    let ours = o.src().join("drivers/nvdimm/label.c");
    assert_eq!(std::fs::read_to_string(ours).unwrap(), "int edited;\n");
    assert!(!o.src().join("Kconfig").exists());
}

#[test]
fn a_change_that_does_not_apply_says_so_and_the_tree_is_untouched() {
    let (user, _cache, mut o) = synced_overlay();
    let wrong = PATCH.replace("int slots = 2;", "int slots = 9;");
    let e = o.apply(&Change::diff("wrong.patch", wrong)).unwrap_err();
    assert!(matches!(e, Error::DoesNotApply { .. }), "{e}");
    let label = user.path().join("drivers/nvdimm/label.c");
    assert!(std::fs::read_to_string(label)
        .unwrap()
        .contains("slots = 2"));
}

#[test]
fn a_diff_names_its_files_without_prefixes() {
    let git =
        "diff --git a/x/y.c b/x/z.c\nsimilarity index 90%\nrename from x/y.c\nrename to x/z.c\n";
    assert_eq!(diff_paths(git), ["x/y.c", "x/z.c"]);
    let plain = "--- a/drivers/cxl/core/region.c\t2026-01-01\n+++ b/drivers/cxl/core/region.c\t2026-01-02\n";
    assert_eq!(
        diff_paths(plain),
        ["drivers/cxl/core/region.c", "drivers/cxl/core/region.c"]
    );
    assert!(diff_paths("--- a/../etc/passwd\n").is_empty());
    assert!(diff_paths("no diff here\n").is_empty());
}

#[test]
fn a_folder_of_patches_is_a_series_and_an_empty_one_an_error() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("0002-b.patch"), PATCH).unwrap();
    std::fs::write(dir.path().join("0001-a.patch"), PATCH).unwrap();
    std::fs::write(dir.path().join("notes.txt"), "x").unwrap();
    let c = Change::from_files(&[dir.path().to_owned()]).unwrap();
    let names: Vec<&str> = c.diffs.iter().map(|(n, _)| n.as_str()).collect();
    assert!(names[0].ends_with("0001-a.patch") && names[1].ends_with("0002-b.patch"));
    let empty = tempfile::tempdir().unwrap();
    assert!(Change::from_files(&[empty.path().to_owned()]).is_err());
}
