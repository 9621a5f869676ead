//! Finding cases under `suites/` and expanding them into trials.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::{CaseSpec, Error};
use crate::topology;

/// A parsed case file.
#[derive(Debug)]
pub struct Case {
    pub suite: String,
    pub name: String,
    pub path: PathBuf,
    pub spec: CaseSpec,
}

impl Case {
    /// The files the case brings (`suites/SUITE/CASE.files/`), when it has
    /// that folder; its guest has them read-only at `/case`.
    pub fn files_dir(&self) -> Option<PathBuf> {
        let dir = self.path.with_extension("files");
        dir.is_dir().then_some(dir)
    }

    pub fn snapshot_dir(&self) -> PathBuf {
        self.path
            .parent()
            .expect("case file has a folder")
            .join("snapshots")
    }
}

/// One case on one topology: what libtest calls a test.
#[derive(Clone, Debug)]
pub struct Trial {
    /// `suite::case::topology`
    pub name: String,
    pub case: Arc<Case>,
    pub topology: topology::Loaded,
}

impl Trial {
    /// Whether the trial runs on the image with the mock buses and ndctl's
    /// own tests rather than the run's (see `runner::Config::test_image`).
    pub fn needs_test_image(&self) -> bool {
        let t = &self.topology.topology;
        t.has_mock_bus() || self.case.spec.ndctl_tests
    }

    /// The mock buses the trial's topology needs.
    pub fn mock_buses(&self) -> crate::kbuild::MockBuses {
        let t = &self.topology.topology;
        crate::kbuild::MockBuses {
            nfit_test: t.nfit_test.is_some(),
            cxl_test: t.cxl_test.is_some(),
        }
    }
}

/// Parses every case under `root` (one folder per suite) into trials, sorted
/// by name. Any malformed file fails the whole discovery: a suite that
/// silently lost a case would pass for the wrong reason.
pub fn discover(root: &Path) -> Result<Vec<Trial>, Error> {
    let mut trials = Vec::new();
    for suite_dir in sorted_entries(root)? {
        if !suite_dir.is_dir() {
            continue;
        }
        let suite = file_name(&suite_dir);
        for path in sorted_entries(&suite_dir)? {
            if path.extension().is_none_or(|e| e != "yaml") {
                continue;
            }
            let specs: Vec<(String, CaseSpec)> = if file_name(&path) == "upstream.yaml" {
                let up: super::UpstreamSpec = crate::yaml::load(&path)?;
                up.cases()
            } else {
                let name = path
                    .file_stem()
                    .map(|s| s.to_string_lossy().into_owned())
                    .unwrap_or_default();
                vec![(name, crate::yaml::load(&path)?)]
            };
            for (name, spec) in specs {
                let case = Arc::new(Case {
                    suite: suite.clone(),
                    name,
                    path: path.clone(),
                    spec,
                });
                expand(&suite_dir, case, &mut trials)?;
            }
        }
    }
    trials.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(trials)
}

/// One trial per topology of the case.
fn expand(suite_dir: &Path, case: Arc<Case>, trials: &mut Vec<Trial>) -> Result<(), Error> {
    for named in &case.spec.topology.0 {
        let spec = if named.contains('/') || named.ends_with(".yaml") {
            suite_dir.join(named).display().to_string()
        } else {
            named.clone()
        };
        let mut topology = topology::load(&spec)?;
        let cuts = case
            .spec
            .steps
            .iter()
            .any(|s| matches!(s.action, super::Action::PowerCut(_)));
        if cuts {
            // Its restarts read the labels of their own crash images.
            topology.topology.pmem_drivers = topology::PmemDrivers::AfterStart;
        }
        trials.push(Trial {
            name: format!("{}::{}::{}", case.suite, case.name, topology.name),
            case: case.clone(),
            topology,
        });
    }
    Ok(())
}

fn sorted_entries(dir: &Path) -> Result<Vec<PathBuf>, Error> {
    let read = std::fs::read_dir(dir).map_err(|source| Error::Read {
        path: dir.to_owned(),
        source,
    })?;
    let mut entries: Vec<PathBuf> = read.flatten().map(|e| e.path()).collect();
    entries.sort();
    Ok(entries)
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default()
}
