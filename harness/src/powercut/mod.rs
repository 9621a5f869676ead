//! Power-cut testing: the guest stopped at a chosen point (QEMU's gdbstub,
//! [`gdb`]) and the label areas it leaves behind read and judged on the
//! host ([`labels`]), as the kernel would read them at the next boot.
//!
//! A QEMU killed while its guest writes is a power cut: the NVDIMM, LSA
//! and CXL backing files are shared mappings, so they hold exactly what
//! the guest had written, and the next start on the same files is the
//! machine coming back.

pub mod classify;
pub mod cut;
pub mod filesystem;
pub mod gdb;
pub mod labels;
pub mod media;
pub mod record;
pub mod restart;
pub mod sample;
pub mod sectors;
