//! ndharness boots QEMU guests with emulated persistent-memory topologies,
//! drives the real kernel driver and the real ndctl inside them, and
//! snapshot-compares the layouts and kernel logs that come out.
//!
//! One case flows: [`suite`] (YAML) → [`topology`] → [`image`] → [`vm`]
//! (command line, QEMU process, QMP, guest agent, the machine's lifecycle)
//! → steps ([`runner`]'s trial state machine) → [`kmsg`] + [`normalize`]
//! → [`transcript`] → snapshots and reports ([`runner`]).

pub mod assemble;
pub mod case_guest;
pub mod command_line;
pub mod drivers;
pub mod explore;
pub mod guest_choice;
pub mod image;
pub mod kbuild;
pub mod kmsg;
pub mod lru;
pub mod mutate;
pub mod names;
pub mod normalize;
pub mod overlay;
pub mod powercut;
pub mod profile;
pub mod proof;
pub mod runner;
pub mod seeded;
pub mod size;
pub mod space;
pub mod stages;
pub mod suite;
pub mod supervisor;
pub mod tool;
pub mod topology;
pub mod transcript;
pub mod vm;
pub mod yaml;
