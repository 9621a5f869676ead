//! Suites: folders under `suites/`, one YAML file per case, snapshots beside
//! them in `snapshots/`.

mod duration;
mod ignore;
pub mod known;
mod load;
mod model;
mod power_cut;
mod upstream;

pub use ignore::{GuestNames, IgnoreEntry, Ignored};
pub use known::{KnownFailure, KnownFailures};
pub use load::{discover, Case, Trial};
pub use model::{Action, CaseSpec, ExitExpect, Expect, Mode, Step, StepError, TopologyRef};
pub use power_cut::{CutPoints, FilesystemCheck, PointSelection, PowerCut, SectorCheck};
pub use upstream::{UpstreamSpec, UpstreamTest};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("failed to read suites folder {path}: {source}")]
    Read {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Yaml(#[from] crate::yaml::Error),
    #[error(transparent)]
    Topology(#[from] crate::topology::Error),
}
