//! Warm start: a guest of each (image, QEMU, accelerator, topology, kernel
//! command line, setup) boots once, runs the boot check and the setup every
//! trial of the group starts with, and is saved; every trial of that group
//! then starts from a restore of the saved state into its own run folder,
//! with its own fresh backing files, and inherits the setup's records (see
//! [`super::Prelude`]).
//!
//! Devices QEMU 10.0.2 does not save (CXL ports and memory devices,
//! virtio-pmem: no migration description) are saved before their drivers
//! load: the template keeps a copy of their PCI configuration space in
//! guest memory, and each restored trial writes it back, loads the drivers
//! and runs the setup (CXL region assembly) itself, as a cold boot does
//! after its agent answers. Saved after the drivers had probed, such a
//! guest failed: restored before assembly, `cxl create-region` timed out
//! committing a decoder; restored after it, every label read through the
//! memdev mailbox failed with EIO; a restored virtio-pmem guest never
//! answered a flush. The cause, measured: the root ports' configuration
//! space came back as after a reset (secondary bus 0, command 0), so
//! nothing behind them was reachable.
//!
//! Saved states live in the cache under a key of every input that shapes
//! the guest: the image's content key, the QEMU binary (path, size,
//! mtime), the accelerator and QEMU's whole command line with the run
//! folder's paths replaced by placeholders. Any change makes a new key; an
//! old state is never loaded into a different machine.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

use super::{Config, GuestEnv};
use crate::machine::{Machine, StartSpec};
use crate::qemu::{self, GuestFiles, LaunchSpec, RunDir};
use crate::topology::{Loaded, Topology};

/// What a guest is started as: a topology, extra kernel arguments, and
/// whether the harness assembles its CXL regions.
#[derive(Clone, Copy)]
pub struct Group<'a> {
    pub topology: &'a Loaded,
    pub kernel_args: &'a str,
    pub assemble: bool,
}

/// A saved state and what a trial restored from it inherits.
#[derive(Clone, Debug)]
pub struct Saved {
    pub state: PathBuf,
    pub prelude: super::Prelude,
}

impl<'a> Group<'a> {
    pub fn of(trial: &'a crate::suite::Trial) -> Group<'a> {
        Group {
            topology: &trial.topology,
            kernel_args: &trial.case.spec.kernel_args,
            assemble: trial.case.spec.assemble,
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
    let argv = qemu::cmdline::argv(&LaunchSpec {
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
        "state 4\nimage {}\nqemu {} {qemu}\nassemble {}\nargv {}\n",
        env.image.manifest.key,
        env.qemu.display(),
        g.assemble,
        argv.join(" ")
    );
    crate::image::sha256_hex(material.as_bytes())
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
        Ok(Some(Saved { state, prelude }))
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
        let (m, prelude) = match super::case::template(m, g.t(), g.assemble).await? {
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
