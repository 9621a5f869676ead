//! Suites: folders under `suites/`, one YAML file per case, snapshots beside
//! them in `snapshots/`.

mod duration;
mod ignore;
pub mod known;
mod load;
mod model;
mod power_cut;
mod step;
mod upstream;

pub use ignore::{GuestNames, IgnoreEntry, Ignored};
pub use known::{KnownFailure, KnownFailures};
pub use load::{discover, Case, Trial};
pub use model::{CaseSpec, Mode, TopologyRef};
pub use power_cut::{CutPoints, FilesystemCheck, PointSelection, PowerCut, SectorCheck};
pub use step::{Action, ExitExpect, Expect, Step, StepError};
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
