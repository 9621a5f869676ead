//! Kernel mutants: small changes to the pmem stack's drivers that model
//! bugs, planted one at a time to measure how many of them the checks
//! catch (`ndharness mutate`). Two kinds: hand-written ones ([`Mutant`]s
//! read from patch files whose header says what bug they model, under
//! mutants/hand), and generated ones ([`generate`]: source-level operators
//! over chosen functions). [`score`] tallies what each check set killed.

pub mod generate;
pub mod score;

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::overlay::Change;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An I/O error at a path.
    #[error(transparent)]
    Io(#[from] crate::proof::Error),
    #[error("{path}: {why}")]
    Header { path: PathBuf, why: String },
    #[error(transparent)]
    Change(#[from] crate::overlay::Error),
}

/// Where a mutant comes from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "kind")]
pub enum Origin {
    /// A patch file of the library.
    Hand { file: PathBuf },
    /// An operator applied at one place of a function.
    Generated {
        operator: String,
        file: String,
        function: String,
        line: usize,
    },
}

/// One mutant: what bug it models and the change that plants it.
#[derive(Clone, Debug, Serialize)]
pub struct Mutant {
    pub name: String,
    /// The class of bug (`off-by-one`, `write-order`, ...).
    pub class: String,
    /// The real fix or bug it is modelled on.
    pub models: String,
    /// What a good test suite should see.
    pub expect: String,
    pub origin: Origin,
    #[serde(skip)]
    pub change: Change,
    /// The same bug for other kernel versions (`VERSION/NAME.patch` beside
    /// the file), tried in order when the change does not apply.
    #[serde(skip)]
    pub variants: Vec<Change>,
}

/// The header keys a hand-written mutant has, in order.
const KEYS: [&str; 5] = ["Mutant", "Class", "Models", "Expect", "Files"];

/// The hand-written mutants in `paths` (files, or folders of `*.patch`
/// files, by name), each with the variants its folder has for other
/// kernel versions (`FOLDER/6.12/NAME.patch`).
pub fn load(paths: &[PathBuf]) -> Result<Vec<Mutant>, Error> {
    let mut mutants = Vec::new();
    for path in paths {
        let folder = if path.is_dir() {
            path.as_path()
        } else {
            path.parent().unwrap_or(Path::new("."))
        };
        let entries: Vec<PathBuf> = std::fs::read_dir(folder)
            .map_err(|source| Error::Io(crate::proof::Error::at(folder, source)))?
            .flatten()
            .map(|e| e.path())
            .collect();
        // The folders a file's variants may be in (`6.12/`), listed once.
        let mut version_folders: Vec<&PathBuf> = entries.iter().filter(|p| p.is_dir()).collect();
        version_folders.sort();
        let mut files: Vec<PathBuf> = if path.is_dir() {
            entries
                .iter()
                .filter(|p| p.extension().is_some_and(|e| e == "patch"))
                .cloned()
                .collect()
        } else {
            vec![path.clone()]
        };
        files.sort();
        for file in files {
            let mut mutant = read(&file)?;
            let name = file.file_name().unwrap_or_default();
            for dir in &version_folders {
                let variant = dir.join(name);
                if variant.is_file() {
                    mutant.variants.push(read(&variant)?.change);
                }
            }
            mutants.push(mutant);
        }
    }
    Ok(mutants)
}

/// One hand-written mutant file: `Key: value` lines, a blank line, the
/// diff.
pub fn read(path: &Path) -> Result<Mutant, Error> {
    let text = std::fs::read_to_string(path)
        .map_err(|source| Error::Io(crate::proof::Error::at(path, source)))?;
    let header = |why: String| Error::Header {
        path: path.to_owned(),
        why,
    };
    let mut values = Vec::new();
    for line in text.lines().take(KEYS.len()) {
        let (key, value) = line
            .split_once(": ")
            .ok_or_else(|| header(format!("`{line}` is not a `Key: value` header line")))?;
        values.push((key.to_owned(), value.trim().to_owned()));
    }
    let keys: Vec<&str> = values.iter().map(|(k, _)| k.as_str()).collect();
    if keys != KEYS {
        return Err(header(format!(
            "the header has {keys:?}; a mutant's header is {KEYS:?}, in that order"
        )));
    }
    let stem = path
        .file_stem()
        .map_or_else(String::new, |s| s.to_string_lossy().into_owned());
    let change = Change::diff(&stem, text.clone());
    if change.paths().is_empty() {
        return Err(header("no unified diff after the header".into()));
    }
    let value = |i: usize| values[i].1.clone();
    Ok(Mutant {
        name: stem,
        class: value(1),
        models: value(2),
        expect: value(3),
        origin: Origin::Hand {
            file: path.to_owned(),
        },
        change,
        variants: Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mutant_file_reads_its_header_and_its_diff() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("07-x.patch");
        std::fs::write(
            &path,
            "Mutant: a title\nClass: off-by-one\nModels: none found\nExpect: a create fails\nFiles: drivers/nvdimm/label.c\n\n--- a/drivers/nvdimm/label.c\n+++ b/drivers/nvdimm/label.c\n@@ -1 +1 @@\n-a\n+b\n",
        )
        .unwrap();
        let m = read(&path).unwrap();
        assert_eq!((m.name.as_str(), m.class.as_str()), ("07-x", "off-by-one"));
        assert_eq!(m.change.paths(), ["drivers/nvdimm/label.c"]);
        std::fs::write(&path, "Class: x\n\n--- a/f\n+++ b/f\n").unwrap();
        assert!(read(&path).unwrap_err().to_string().contains("header"));
    }

    #[test]
    fn the_library_loads_whole() {
        let lib = Path::new(env!("CARGO_MANIFEST_DIR")).join("../mutants/hand");
        let mutants = load(&[lib]).unwrap();
        assert!(mutants.len() >= 25, "{} mutants", mutants.len());
        let with_variants: Vec<&str> = mutants
            .iter()
            .filter(|m| !m.variants.is_empty())
            .map(|m| m.name.as_str())
            .collect();
        assert_eq!(
            with_variants.len(),
            5,
            "the 6.12 variants: {with_variants:?}"
        );
        for m in &mutants {
            assert!(
                m.change
                    .paths()
                    .iter()
                    .all(|p| p.starts_with("drivers/nvdimm/")
                        || p.starts_with("drivers/cxl/")
                        || p.starts_with("drivers/dax/")),
                "{}: {:?}",
                m.name,
                m.change.paths()
            );
        }
    }
}
