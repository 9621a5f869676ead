//! Warm start: a guest of each (image, QEMU, accelerator, topology, kernel
//! command line, setup) boots once, runs the boot check and the setup every
//! trial of the group starts with, and is saved; every trial of that group
//! then starts from a restore of the saved state into its own run folder,
//! with its own fresh backing files, and inherits the setup's records (see
//! [`crate::runner::start::Prelude`]).
//!
//! Devices QEMU 10.0.2 does not save (CXL ports and memory devices,
//! virtio-pmem: no migration description) come back from a restore as
//! after a reset. The template keeps a copy of their PCI configuration
//! space in guest memory (`pci-state save`), and every restored trial
//! writes it back first: without it the root ports come back with
//! secondary bus 0 and command 0, nothing behind them is reachable, and
//! `cxl create-region` timed out committing a decoder.
//!
//! A CXL guest is saved as a ready guest is ([`SavePoint::Ready`]): drivers
//! probed, regions assembled, labels initialized. Besides the PCI headers,
//! the restore loses the HDM decoders the region committed: the kernel
//! still shows the region, but its memory reads as nothing and writes are
//! lost (measured: a pattern written to a raw namespace on a restored
//! cxl-x2 and cxl-x4 did not read back). Each trial therefore commits every
//! region again through the kernel's own sysfs path (decommit, commit,
//! bind; [`Machine::reattach_devices`]); `cxl::data-round-trip` proves the
//! data path at every width. What the drivers set up in the device models
//! beyond that (MSI-X table, event and mailbox interrupts, RAS masks) stays
//! lost, so a case that drives the device models through QMP (poison,
//! events, errors) is saved before its drivers load
//! ([`SavePoint::BeforeDrivers`]) and each of its trials loads them and
//! assembles the regions itself, as a cold boot does. So is every
//! virtio-pmem guest (a restored virtio-pmem device never answered a
//! flush, headers written back or not), and every power-cut case, NFIT
//! and e820 too: its restarts must read the labels of their own crash
//! images, so its pmem drivers load after the agent answers.
//!
//! Saved states live in the cache under a key of every input that shapes
//! the guest: the image's content key, the QEMU binary (path, size,
//! mtime), the accelerator, QEMU's whole command line with the run
//! folder's paths replaced by placeholders, the save point, and the CXL
//! regions the setup assembles (their method is not on the command line)
//! ([`key`]). Any change makes a new key; an old state is never loaded
//! into a different machine. [`save`] makes a state; [`states`] lists and
//! prunes them.

mod key;
mod proof;
mod save;
pub mod states;

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};

use super::start::{Assembly, Prelude, SavePoint, SavedState};
use super::{Config, GuestEnv};
use crate::topology::{Loaded, Topology};
use crate::vm::{machine, Machine, Share};

pub use key::key;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{path}: {source}")]
    Prelude {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("saving the ready guest of {topology} for warm starts: {source}")]
    Save {
        topology: String,
        source: Box<save::Error>,
    },
}

/// Whether a case drives QEMU's device models itself (QMP steps).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeviceModel {
    /// Only the guest touches the devices.
    Untouched,
    /// The case sends QMP commands to the device models (poison, events).
    DrivenByCase,
}

/// What a group of trials' guest is started as: a topology, extra kernel
/// arguments, who assembles its CXL regions, whether the case drives
/// QEMU's device models, and the host folders shared into it (saved
/// unmounted; the key counts them, a restore takes any folders). One
/// template guest (and saved state) per group.
#[derive(Clone, Copy)]
pub struct TemplateSpec<'a> {
    pub topology: &'a Loaded,
    pub kernel_args: &'a str,
    pub assembly: Assembly,
    pub device_model: DeviceModel,
    pub shares: &'a [Share],
}

impl<'a> TemplateSpec<'a> {
    pub fn of(trial: &'a crate::suite::Trial, shares: &'a [Share]) -> TemplateSpec<'a> {
        let spec = &trial.case.spec;
        let qmp_steps = spec
            .steps
            .iter()
            .any(|s| matches!(s.action, crate::suite::Action::Qmp { .. }));
        TemplateSpec {
            topology: &trial.topology,
            kernel_args: &spec.kernel_args,
            assembly: Assembly::of(spec.assemble),
            device_model: if qmp_steps {
                DeviceModel::DrivenByCase
            } else {
                DeviceModel::Untouched
            },
            shares,
        }
    }

    /// A guest outside a case (`boot`, `bench`): assembled by the harness,
    /// device models untouched.
    pub fn plain(topology: &'a Loaded, shares: &'a [Share]) -> TemplateSpec<'a> {
        TemplateSpec {
            topology,
            kernel_args: "",
            assembly: Assembly::ByHarness,
            device_model: DeviceModel::Untouched,
            shares,
        }
    }

    fn topology(&self) -> &'a Topology {
        &self.topology.topology
    }
}

/// Where the group's guest is saved: before its drivers when the restore
/// would lose device state its case depends on. A virtio-pmem device comes
/// back unable to answer a flush whatever is written back; a CXL device
/// comes back without what its drivers set up through its registers and
/// mailbox beyond the PCI headers and the HDM decoders (MSI-X table, event
/// interrupt policy, mailbox interrupt, RAS masks), which a case that
/// drives the device model through QMP (poison, events, errors) can reach.
/// A power-cut case restarts guests on crash images from the same state,
/// so its pmem drivers must not have read any labels yet.
pub fn save_point(spec: TemplateSpec<'_>) -> SavePoint {
    let t = spec.topology();
    if !t.virtio_pmem.is_empty()
        || t.pmem_drivers == crate::topology::PmemDrivers::AfterStart
        || (t.cxl.is_some() && spec.device_model == DeviceModel::DrivenByCase)
    {
        SavePoint::BeforeDrivers
    } else {
        SavePoint::Ready
    }
}

/// Why a guest's devices could not be brought to a trial's starting point.
#[derive(Debug, thiserror::Error)]
pub enum ReadyError {
    #[error("{what}: {source}")]
    Guest {
        what: &'static str,
        source: machine::Error,
    },
    #[error("{what} failed: {stderr}")]
    Failed { what: &'static str, stderr: String },
    #[error("CXL region assembly: {0}")]
    Assembly(#[from] crate::assemble::Error),
}

/// Brings a started guest's devices to where a trial's first step finds
/// them, outside a case (`boot`, `bench`): a guest restored from a
/// [`SavePoint::Ready`] state has its devices reattached; any other (cold,
/// or saved before its drivers) loads the drivers and assembles the CXL
/// regions. The error names the part that failed.
pub async fn ready_devices(
    m: &mut Machine,
    t: &Topology,
    point: Option<SavePoint>,
) -> Result<(), ReadyError> {
    let (out, what) = if point == Some(SavePoint::Ready) {
        (m.reattach_devices().await, "reattaching the devices")
    } else {
        (m.load_drivers().await, "loading the topology's drivers")
    };
    match out {
        Err(source) => return Err(ReadyError::Guest { what, source }),
        Ok(Some(out)) if !out.success() => {
            let stderr = out.stderr_text().trim().to_owned();
            return Err(ReadyError::Failed { what, stderr });
        }
        Ok(_) => {}
    }
    if point == Some(SavePoint::Ready) {
        return Ok(());
    }
    crate::assemble::run(m, t).await?;
    Ok(())
}

/// One lock per key: the first trial of a group saves the state, the others
/// of the same group wait for it.
fn lock_for(key: &str) -> Arc<Mutex<()>> {
    static LOCKS: OnceLock<Mutex<HashMap<String, Arc<Mutex<()>>>>> = OnceLock::new();
    let map = LOCKS.get_or_init(Default::default);
    let mut map = map.lock().unwrap_or_else(|e| e.into_inner());
    map.entry(key.to_owned()).or_default().clone()
}

/// The saved state a trial starts from: found in the cache, or made now by
/// booting the group's guest once. `None` when the case or the run asks for
/// cold boots, or when the disk has no room for the state (a warning, and
/// the group boots cold). A state that cannot be made otherwise is an
/// infrastructure error.
pub fn state_for(
    config: &Config,
    env: &GuestEnv,
    trial: &crate::suite::Trial,
) -> Result<Option<SavedState>, Error> {
    if trial.case.spec.cold {
        return Ok(None);
    }
    let shares = crate::runner::trial::shares(config, trial);
    state(config, env, TemplateSpec::of(trial, &shares))
}

/// How many times this process made each key's state: a state is made
/// again once after it was found damaged or would not load; after that its
/// trials boot cold.
fn made() -> std::sync::MutexGuard<'static, HashMap<String, u32>> {
    static MADE: OnceLock<Mutex<HashMap<String, u32>>> = OnceLock::new();
    MADE.get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner())
}

/// Groups whose template failed its boot check or setup, or found no room
/// on disk for its state, in this process:
/// their trials boot cold, each to its own verdict.
fn cold_groups() -> std::sync::MutexGuard<'static, HashSet<String>> {
    static COLD: OnceLock<Mutex<HashSet<String>>> = OnceLock::new();
    COLD.get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner())
}

/// The saved state of a group, unless the run asks for cold boots.
pub fn state(
    config: &Config,
    env: &GuestEnv,
    spec: TemplateSpec<'_>,
) -> Result<Option<SavedState>, Error> {
    if config.cold {
        return Ok(None);
    }
    let key = key(env, spec);
    let dir = config.build.cache.join("states").join(&key[..16]);
    let load = || -> Result<Option<SavedState>, Error> {
        let state = dir.join("state");
        let path = dir.join("prelude.json");
        let Ok(text) = std::fs::read_to_string(&path) else {
            return Ok(None);
        };
        let prelude: Prelude =
            serde_json::from_str(&text).map_err(|source| Error::Prelude { path, source })?;
        if !state.exists() {
            return Ok(None);
        }
        if let Err(damage) = proof::check(&dir) {
            super::start::discard(&dir, &damage.to_string());
            return Ok(None);
        }
        states::touch(&dir);
        Ok(Some(SavedState {
            state,
            prelude,
            point: save_point(spec),
        }))
    };
    if let Some(s) = load()? {
        return Ok(Some(s));
    }
    let lock = lock_for(&key);
    let _held = lock.lock().unwrap_or_else(|e| e.into_inner());
    if cold_groups().contains(&key) {
        return Ok(None);
    }
    if let Some(s) = load()? {
        return Ok(Some(s));
    }
    let times = *made()
        .entry(key.clone())
        .and_modify(|n| *n += 1)
        .or_insert(1);
    if times > 2 {
        eprintln!(
            "warning: the saved state of {} was made twice in this run and lost again; its trials boot cold",
            spec.topology.name
        );
        cold_groups().insert(key);
        return Ok(None);
    }
    let saved = match save::save_state(config, env, spec, &dir) {
        Ok(saved) => saved,
        // A saved state only saves time: on a full disk the group boots
        // cold, and the run goes on.
        Err(e) if e.is_no_space() => {
            eprintln!(
                "warning: saving the guest of {} for warm starts: {e}; its trials boot cold",
                spec.topology.name
            );
            cold_groups().insert(key);
            return Ok(None);
        }
        Err(source) => {
            return Err(Error::Save {
                topology: spec.topology.name.clone(),
                source: Box::new(source),
            })
        }
    };
    if !saved {
        cold_groups().insert(key);
        return Ok(None);
    }
    load()
}

#[cfg(test)]
mod tests {
    use super::key::setup_material;
    use super::*;

    fn group(t: &Loaded, device_model: DeviceModel) -> TemplateSpec<'_> {
        TemplateSpec {
            device_model,
            ..TemplateSpec::plain(t, &[])
        }
    }

    #[test]
    fn cxl_guests_are_saved_ready_unless_the_case_drives_the_device_model() {
        let cxl = crate::topology::load("cxl-x4").unwrap();
        let nfit = crate::topology::load("nfit-1").unwrap();
        let vpmem = crate::topology::load("virtio-pmem-1").unwrap();
        assert_eq!(
            save_point(group(&cxl, DeviceModel::Untouched)),
            SavePoint::Ready
        );
        assert_eq!(
            save_point(group(&cxl, DeviceModel::DrivenByCase)),
            SavePoint::BeforeDrivers
        );
        // NFIT devices are restored whole: QMP steps change nothing.
        assert_eq!(
            save_point(group(&nfit, DeviceModel::DrivenByCase)),
            SavePoint::Ready
        );
        assert_eq!(
            save_point(group(&vpmem, DeviceModel::Untouched)),
            SavePoint::BeforeDrivers
        );
    }

    #[test]
    fn the_assembly_method_and_the_save_point_are_in_the_key() {
        // Same QEMU arguments, regions made by cxl-cli or through sysfs.
        let cli = crate::topology::load("cxl-x6").unwrap();
        let sysfs = crate::topology::load("cxl-x6-sysfs").unwrap();
        let (a, b) = (
            group(&cli, DeviceModel::Untouched),
            group(&sysfs, DeviceModel::Untouched),
        );
        assert_ne!(setup_material(a), setup_material(b));
        assert_ne!(
            setup_material(a),
            setup_material(group(&cli, DeviceModel::DrivenByCase))
        );
        assert_eq!(
            setup_material(a),
            setup_material(group(&cli, DeviceModel::Untouched))
        );
    }

    #[test]
    fn shares_count_in_the_key_and_their_host_folders_do_not() {
        let t = crate::topology::load("nfit-1").unwrap();
        let at = |host: &str, read_only: bool| Share {
            host: host.into(),
            guest: "/mnt".into(),
            read_only,
        };
        let (a, b) = ([at("/tmp/a", false)], [at("/srv/b", false)]);
        let argv =
            |shares| super::key::argv(crate::vm::Accel::Tcg, TemplateSpec::plain(&t, shares));
        assert_eq!(argv(&a), argv(&b));
        assert_ne!(argv(&a), argv(&[]));
        assert_ne!(argv(&a), argv(&[at("/tmp/a", true)]));
    }
}
