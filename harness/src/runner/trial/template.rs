//! A template guest: a freshly started guest taken through the boot check
//! and the setup every trial of its group starts with, ready to be saved
//! for warm starts ([`crate::runner::warm`]).

use std::time::Duration;

use super::trace::Trace;
use super::verdict::Verdict;
use crate::runner::laps::Laps;
use crate::runner::start::{Assembly, Prelude, SavePoint};
use crate::topology::Topology;
use crate::vm::Machine;

/// How a template's boot and setup went.
pub enum Template {
    /// Ready to save: the guest and what trials inherit.
    Ready(Box<Machine>, Prelude),
    /// The boot or the setup fails the case (a kernel report, a failing
    /// assembly step): trials boot cold and each gets that verdict itself.
    Fails,
}

/// The harness or the host failed while preparing a template (not the
/// kernel: that makes [`Template::Fails`]).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct InfrastructureError(pub String);

/// Takes a freshly started guest through the boot check and the setup up
/// to `point`.
pub async fn prepare(
    m: Machine,
    topology: &Topology,
    assembly: Assembly,
    point: SavePoint,
) -> Result<Template, InfrastructureError> {
    let mut trace = Trace::new(topology, assembly, m, Laps::default());
    // Saved before the drivers: right after the boot check, and each trial
    // loads the drivers and runs the setup after its restore.
    let drivers_pending = trace.machine().defers_drivers() && point == SavePoint::BeforeDrivers;
    let prepared = if drivers_pending {
        trace.boot_check().await
    } else {
        trace.prepare().await
    };
    if let Err(verdict) = prepared {
        if let Some(m) = trace.guest.take_machine() {
            m.stop().await.remove();
        }
        return match verdict {
            Verdict::Fail(_) | Verdict::Skip(_) => Ok(Template::Fails),
            Verdict::Error(message) => Err(InfrastructureError(message)),
        };
    }
    let (m, prelude) = trace.into_prelude();
    if drivers_pending && !drivers_unbound(&m).await {
        // A kernel with these drivers built in (your own --kernel) has
        // probed the devices already: a restore would find them forgotten.
        m.stop().await.remove();
        return Ok(Template::Fails);
    }
    Ok(Template::Ready(Box::new(m), prelude))
}

/// Whether no driver of a device QEMU does not save has bound yet.
async fn drivers_unbound(m: &Machine) -> bool {
    let test =
        "[ ! -e /sys/bus/pci/drivers/cxl_pci ] && [ ! -e /sys/bus/virtio/drivers/virtio_pmem ]";
    let argv = crate::command_line::shell(test.to_owned());
    matches!(m.exec(&argv, Duration::from_secs(30)).await, Ok(out) if out.success())
}
