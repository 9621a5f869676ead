//! Warm start: a guest of each (image, QEMU, accelerator, topology, kernel
//! command line, setup) boots once, runs the boot check and the setup every
//! trial of the group starts with, and is saved; every trial of that group
//! then starts from a restore of the saved state into its own run folder,
//! with its own fresh backing files, and inherits the setup's records (see
//! [`super::Prelude`]).
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
//! virtio-pmem guest: a restored virtio-pmem device never answered a flush,
//! headers written back or not.
//!
//! Saved states live in the cache under a key of every input that shapes
//! the guest: the image's content key, the QEMU binary (path, size,
//! mtime), the accelerator, QEMU's whole command line with the run
//! folder's paths replaced by placeholders, the save point, and the CXL
//! regions the setup assembles (their method is not on the command line). Any change makes a new key; an
//! old state is never loaded into a different machine.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

use super::{Config, GuestEnv};
use crate::topology::{Loaded, Topology};
use crate::vm::{cmdline, GuestFiles, LaunchSpec, RunDir};
use crate::vm::{Machine, StartSpec};

/// What a guest is started as: a topology, extra kernel arguments, whether
/// the harness assembles its CXL regions, and whether the case drives
/// QEMU's device models itself (QMP steps).
#[derive(Clone, Copy)]
pub struct Group<'a> {
    pub topology: &'a Loaded,
    pub kernel_args: &'a str,
    pub assemble: bool,
    pub device_model: bool,
}

/// A saved state, what a trial restored from it inherits, and the point
/// of the guest's life it was saved at.
#[derive(Clone, Debug)]
pub struct Saved {
    pub state: PathBuf,
    pub prelude: super::Prelude,
    pub point: SavePoint,
}

/// Where a group's guest is saved.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SavePoint {
    /// After the boot check, the drivers and the setup (CXL regions
    /// assembled): a trial starts at its first step, once
    /// [`Machine::reattach_devices`] has given the CXL devices back what
    /// the restore lost.
    Ready,
    /// After the boot check, before the drivers init leaves to the harness:
    /// each trial loads them and runs the setup itself.
    BeforeDrivers,
}

/// Where the group's guest is saved: before its drivers when the restore
/// would lose device state its case depends on. A virtio-pmem device comes
/// back unable to answer a flush whatever is written back; a CXL device
/// comes back without what its drivers set up through its registers and
/// mailbox beyond the PCI headers and the HDM decoders (MSI-X table, event
/// interrupt policy, mailbox interrupt, RAS masks), which a case that
/// drives the device model through QMP (poison, events, errors) can reach.
pub fn save_point(g: Group<'_>) -> SavePoint {
    let t = g.t();
    if !t.virtio_pmem.is_empty() || (t.cxl.is_some() && g.device_model) {
        SavePoint::BeforeDrivers
    } else {
        SavePoint::Ready
    }
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
) -> Result<(), String> {
    let (out, what) = if point == Some(SavePoint::Ready) {
        (m.reattach_devices().await, "reattaching the devices")
    } else {
        (m.load_drivers().await, "loading the topology's drivers")
    };
    match out {
        Err(e) => return Err(format!("{what}: {e}")),
        Ok(Some(out)) if !out.success() => {
            return Err(format!("{what} failed: {}", out.stderr_text().trim()))
        }
        Ok(_) => {}
    }
    if point == Some(SavePoint::Ready) {
        return Ok(());
    }
    crate::assemble::run(m, t)
        .await
        .map_err(|e| format!("CXL region assembly: {e}"))
}

impl<'a> Group<'a> {
    pub fn of(trial: &'a crate::suite::Trial) -> Group<'a> {
        let spec = &trial.case.spec;
        Group {
            topology: &trial.topology,
            kernel_args: &spec.kernel_args,
            assemble: spec.assemble,
            device_model: spec
                .steps
                .iter()
                .any(|s| matches!(s.action, crate::suite::Action::Qmp { .. })),
        }
    }
    fn t(&self) -> &'a Topology {
        &self.topology.topology
    }
}

/// The cache key of a group's saved state.
pub fn key(env: &GuestEnv, g: Group<'_>) -> String {
    let placeholder = Path::new("RUN");
    let t = g.t();
    let files = GuestFiles::under(placeholder, placeholder, t);
    let argv = cmdline::argv(&LaunchSpec {
        topology: t,
        kernel: Path::new("IMAGE/vmlinuz"),
        initrd: Path::new("IMAGE/initramfs.cpio"),
        files: &files,
        accel: env.accel,
        extra_append: g.kernel_args,
        incoming: None,
    });
    let qemu = std::fs::metadata(&env.qemu)
        .map(|m| format!("{} {:?}", m.len(), m.modified().ok()))
        .unwrap_or_default();
    let material = format!(
        "state 5\nimage {}\nqemu {} {qemu}\n{}argv {}\n",
        env.image.manifest.key,
        env.qemu.display(),
        setup_material(g),
        argv.join(" ")
    );
    crate::image::sha256_hex(material.as_bytes())
}

/// The part of the key QEMU's arguments do not show: whether and how the
/// setup assembles regions (a guest saved ready has them: their method,
/// members and granularity are inputs too) and the save point.
fn setup_material(g: Group<'_>) -> String {
    let regions = g.t().cxl.as_ref().map(|c| format!("{:?}", c.regions));
    format!(
        "assemble {}\npoint {:?}\nregions {regions:?}\n",
        g.assemble,
        save_point(g)
    )
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
/// cold boots. A state that cannot be made is an infrastructure error.
pub fn state_for(
    config: &Config,
    env: &GuestEnv,
    trial: &crate::suite::Trial,
) -> Result<Option<Saved>, String> {
    if trial.case.spec.cold {
        return Ok(None);
    }
    state(config, env, Group::of(trial))
}

/// Groups whose template failed its boot check or setup in this process:
/// their trials boot cold, each to its own verdict.
fn cold_groups() -> &'static Mutex<std::collections::HashSet<String>> {
    static COLD: OnceLock<Mutex<std::collections::HashSet<String>>> = OnceLock::new();
    COLD.get_or_init(Default::default)
}

/// The saved state of a group, unless the run asks for cold boots.
pub fn state(config: &Config, env: &GuestEnv, g: Group<'_>) -> Result<Option<Saved>, String> {
    if config.cold {
        return Ok(None);
    }
    let key = key(env, g);
    let dir = config.build.cache.join("states").join(&key[..16]);
    let load = || -> Result<Option<Saved>, String> {
        let state = dir.join("state");
        let Ok(text) = std::fs::read_to_string(dir.join("prelude.json")) else {
            return Ok(None);
        };
        let prelude = serde_json::from_str(&text)
            .map_err(|e| format!("{}: {e}", dir.join("prelude.json").display()))?;
        if !state.exists() {
            return Ok(None);
        }
        super::states::touch(&dir);
        Ok(Some(Saved {
            state,
            prelude,
            point: save_point(g),
        }))
    };
    if let Some(s) = load()? {
        return Ok(Some(s));
    }
    let lock = lock_for(&key);
    let _held = lock.lock().unwrap_or_else(|e| e.into_inner());
    if cold_groups()
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .contains(&key)
    {
        return Ok(None);
    }
    if let Some(s) = load()? {
        return Ok(Some(s));
    }
    let saved = save_state(config, env, g, &dir).map_err(|e| {
        format!(
            "saving the ready guest of {} for warm starts: {e}",
            g.topology.name
        )
    })?;
    if !saved {
        cold_groups()
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key);
        return Ok(None);
    }
    load()
}

/// Boots the group's guest, runs its boot check and setup, and saves it;
/// `false` when the boot or setup fails the case (nothing saved).
fn save_state(config: &Config, env: &GuestEnv, g: Group<'_>, dir: &Path) -> Result<bool, String> {
    let t0 = Instant::now();
    let parent = dir.parent().expect("states folder");
    std::fs::create_dir_all(parent).map_err(|e| format!("{}: {e}", parent.display()))?;
    let staging = tempfile::tempdir_in(parent).map_err(|e| format!("{}: {e}", parent.display()))?;
    let run = RunDir::create(staging.path(), "template", g.t()).map_err(|e| e.to_string())?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let tmp_state = staging.path().join("state");
    let result = rt.block_on(async {
        let spec = StartSpec {
            qemu_binary: &env.qemu,
            image: &env.image,
            topology: g.t(),
            accel: env.accel,
            extra_append: g.kernel_args,
            boot_timeout: config.boot_timeout,
            incoming: None,
        };
        let m = match Machine::start(&spec, run).await {
            Ok(m) => m,
            // A panic is a verdict on the kernel, not trouble of the host:
            // the trials boot cold and each gets it.
            Err(e) if !e.is_infrastructure() => return Ok(None),
            Err(e) => return Err(e.to_string()),
        };
        let ready = m.times.agent_ready;
        let (m, prelude) = match super::case::template(m, g.t(), g.assemble, save_point(g)).await? {
            super::case::Template::Ready(m, p) => (*m, p),
            super::case::Template::Fails => return Ok(None),
        };
        let run = m.save(&tmp_state).await.map_err(|e| e.to_string())?;
        run.remove();
        Ok::<_, String>(Some((ready, prelude)))
    });
    let Some((ready, prelude)) = result? else {
        return Ok(false);
    };
    let json = serde_json::to_string(&prelude).expect("a prelude serializes");
    std::fs::write(staging.path().join("prelude.json"), json)
        .map_err(|e| format!("{}: {e}", staging.path().display()))?;
    let meta = format!(
        "topology {}\nkernel_args {:?}\nboot to agent ready {:.2}s\nsaved in {:.2}s\n",
        g.topology.name,
        g.kernel_args,
        ready.as_secs_f64(),
        t0.elapsed().as_secs_f64()
    );
    std::fs::write(staging.path().join("about.txt"), meta)
        .map_err(|e| format!("{}: {e}", staging.path().display()))?;
    let staged = staging.keep();
    // Another process may have saved the same state first; either is good.
    if std::fs::rename(&staged, dir).is_err() && !dir.join("state").exists() {
        return Err(format!(
            "could not move {} to {}",
            staged.display(),
            dir.display()
        ));
    }
    let _ = std::fs::remove_dir_all(&staged);
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn group(t: &Loaded, device_model: bool) -> Group<'_> {
        Group {
            topology: t,
            kernel_args: "",
            assemble: true,
            device_model,
        }
    }

    #[test]
    fn cxl_guests_are_saved_ready_unless_the_case_drives_the_device_model() {
        let cxl = crate::topology::load("cxl-x4").unwrap();
        let nfit = crate::topology::load("nfit-1").unwrap();
        let vpmem = crate::topology::load("virtio-pmem-1").unwrap();
        assert_eq!(save_point(group(&cxl, false)), SavePoint::Ready);
        assert_eq!(save_point(group(&cxl, true)), SavePoint::BeforeDrivers);
        // NFIT devices are restored whole: QMP steps change nothing.
        assert_eq!(save_point(group(&nfit, true)), SavePoint::Ready);
        assert_eq!(save_point(group(&vpmem, false)), SavePoint::BeforeDrivers);
    }

    #[test]
    fn the_assembly_method_and_the_save_point_are_in_the_key() {
        // Same QEMU arguments, regions made by cxl-cli or through sysfs.
        let cli = crate::topology::load("cxl-x6").unwrap();
        let sysfs = crate::topology::load("cxl-x6-sysfs").unwrap();
        let (a, b) = (group(&cli, false), group(&sysfs, false));
        assert_ne!(setup_material(a), setup_material(b));
        assert_ne!(setup_material(a), setup_material(group(&cli, true)));
        assert_eq!(setup_material(a), setup_material(group(&cli, false)));
    }
}
