//! The binary's edge: the command line's types ([`args`]), the one way the
//! flags the commands share become the runner's `Config` ([`config`]), the
//! defaults of `ndharness.toml` ([`settings`]), and one module per command
//! (plus [`shell`], `boot`'s interactive terminal).
//! anyhow is used here and in main.rs only.

pub mod args;

/// A command line that parses but cannot be carried out as given (exit
/// 64, as a usage error, not a run's 2).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Usage(pub String);
pub mod bench;
pub mod bisect;
pub mod boot;
pub mod compare;
pub mod config;
pub mod explore;
pub mod image;
pub mod manual;
pub mod merge;
pub mod mutate;
pub mod run;
pub mod settings;
pub mod shell;
pub mod sides;
pub mod states;
pub mod topology;
pub mod validate;
