//! Warm start: a guest of each (image, QEMU, accelerator, topology, kernel
//! command line) boots once, is saved the moment its agent answers, and
//! every trial of that group starts from a restore of the saved state into
//! its own run folder, with its own fresh backing files.
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

/// What a guest is started as: a topology and extra kernel arguments.
#[derive(Clone, Copy)]
pub struct Group<'a> {
    pub topology: &'a Loaded,
    pub kernel_args: &'a str,
}

impl<'a> Group<'a> {
    pub fn of(trial: &'a crate::suite::Trial) -> Group<'a> {
        Group {
            topology: &trial.topology,
            kernel_args: &trial.case.spec.kernel_args,
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
        "state 1\nimage {}\nqemu {} {qemu}\nargv {}\n",
        env.image.manifest.key,
        env.qemu.display(),
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
) -> Result<Option<PathBuf>, String> {
    if trial.case.spec.cold {
        return Ok(None);
    }
    state(config, env, Group::of(trial))
}

/// Whether a restored guest of this topology works; the others boot cold.
/// Measured with QEMU 10.0.2 and kernel 6.12: a CXL guest restored before
/// region assembly fails `cxl create-region` with "failed to commit
/// decode: Connection timed out" (the decoder's committed bit never
/// comes); on a restored virtio-pmem guest, `ndctl create-namespace -f -e
/// namespace0.0 -m fsdax` never returns (its flush request is not
/// answered).
pub fn restorable(t: &Topology) -> bool {
    t.cxl.is_none() && t.virtio_pmem.is_empty()
}

/// The saved state of a group, unless the run asks for cold boots.
pub fn state(config: &Config, env: &GuestEnv, g: Group<'_>) -> Result<Option<PathBuf>, String> {
    if config.cold || !restorable(g.t()) {
        return Ok(None);
    }
    let key = key(env, g);
    let dir = config.build.cache.join("states").join(&key[..16]);
    let state = dir.join("state");
    if state.exists() {
        return Ok(Some(state));
    }
    let lock = lock_for(&key);
    let _held = lock.lock().unwrap_or_else(|e| e.into_inner());
    if state.exists() {
        return Ok(Some(state));
    }
    save_state(config, env, g, &dir).map_err(|e| {
        format!(
            "saving the ready guest of {} for warm starts: {e}",
            g.topology.name
        )
    })?;
    Ok(Some(state))
}

fn save_state(config: &Config, env: &GuestEnv, g: Group<'_>, dir: &Path) -> Result<(), String> {
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
        let m = Machine::start(&spec, run)
            .await
            .map_err(|e| e.to_string())?;
        let ready = m.times.agent_ready;
        let run = m.save(&tmp_state).await.map_err(|e| e.to_string())?;
        run.remove();
        Ok::<_, String>(ready)
    });
    let ready = result?;
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
    Ok(())
}
