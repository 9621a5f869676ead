//! Power-cut testing without killing anything: the guest stopped at each
//! chosen point (before a label write or a namespace write, through QEMU's
//! gdbstub and [`crate::vm::gdb::remote`]; at a random moment, through QMP
//! `stop`) and
//! its backing files copied ([`record`]): the NVDIMM, LSA and CXL backing
//! files are shared mappings, so a copy at a stop holds exactly what a
//! power cut there would leave. Each copy (a crash image) is read and
//! judged on the host ([`labels`], [`media`]) as the kernel would read it
//! at the next boot, and a guest started on it ([`restart`], through
//! [`crate::case_guest`]) says what the kernel made of it ([`classify`]);
//! what the restart reads of a case's sectors ([`sectors`]) and
//! filesystem ([`filesystem`]) is judged too. [`cut`] is the whole of a
//! `power_cut:` step, [`sample`] which points it judges.

pub mod classify;
pub mod cut;
pub mod filesystem;
pub mod labels;
pub mod media;
pub mod record;
pub mod restart;
pub mod sample;
pub mod sectors;
