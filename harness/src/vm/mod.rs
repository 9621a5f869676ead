//! A guest's life, one module per part: the QEMU command line a topology
//! makes ([`cmdline`], pure), the accelerator ([`accel`]), the QEMU binary
//! ([`qemu`]) and its process ([`process`], never outliving its owner), the
//! run folder a guest lives in ([`rundir`]), QMP ([`qmp`]), the guest agent
//! ([`agent`]), host folders in the guest ([`share`], 9p), the kernel
//! modules a topology needs, at boot or after the agent answers
//! ([`modules`]), gdb and the gdbstub ([`gdb`]), and [`Machine`], which
//! ties them into start → steps → stop.

pub mod accel;
pub mod agent;
pub mod cmdline;
pub mod gdb;
pub mod machine;
pub mod modules;
mod process;
pub mod qemu;
pub mod qmp;
mod rundir;
pub mod share;

pub use cmdline::{Accel, GuestFiles, LaunchSpec};
pub use machine::{Machine, StartSpec, StepRun};
pub use process::QemuProcess;
pub use qemu::find_binary;
pub use rundir::{copy_sparse, tail as rundir_tail, RunDir};
pub use share::Share;

/// The single-threaded tokio runtime every guest is driven on: one per
/// thread that drives guests (a trial, a template, a command).
pub fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
}
