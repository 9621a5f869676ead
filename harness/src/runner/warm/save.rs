//! Making a saved state: the group's template guest booted once, taken
//! through its boot check and setup ([`crate::runner::trial::template`]),
//! saved with QMP `migrate` into a staging folder, then moved into the
//! cache in one rename.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::{save_point, TemplateSpec};
use crate::runner::start::Prelude;
use crate::runner::trial::template::{self, Template};
use crate::runner::{Config, GuestEnv};
use crate::vm::{machine, Machine, RunDir};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An I/O error at a path (the state's files, its proof).
    #[error(transparent)]
    Io(#[from] crate::proof::Error),
    #[error(transparent)]
    Qemu(#[from] crate::vm::qemu::Error),
    #[error(transparent)]
    Guest(#[from] machine::Error),
    #[error(transparent)]
    Template(#[from] template::InfrastructureError),
    #[error("could not move {from} to {to}")]
    Move { from: PathBuf, to: PathBuf },
    #[error(transparent)]
    NoSpace(#[from] crate::space::NoSpace),
}

impl Error {
    /// Whether the save failed for lack of disk space: refused before it
    /// started, or the disk filled while QEMU wrote the state or the
    /// backing files were copied beside it.
    pub fn is_no_space(&self) -> bool {
        let full = |e: &std::io::Error| e.raw_os_error() == Some(libc::ENOSPC);
        match self {
            Error::NoSpace(_) => true,
            Error::Io(e) => full(&e.source),
            Error::Qemu(crate::vm::qemu::Error::RunDir { source, .. })
            | Error::Guest(machine::Error::Qemu(crate::vm::qemu::Error::RunDir {
                source, ..
            })) => full(source),
            // QEMU's migration error carries strerror(ENOSPC).
            Error::Guest(machine::Error::State(what)) => what.contains("No space left on device"),
            _ => false,
        }
    }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Io(crate::proof::Error::at(path, source))
}

/// Boots the group's guest, runs its boot check and setup, and saves it
/// into `dir`; `false` when the boot or setup fails the case (nothing
/// saved).
pub fn save_state(
    config: &Config,
    env: &GuestEnv,
    spec: TemplateSpec<'_>,
    dir: &Path,
) -> Result<bool, Error> {
    let t0 = Instant::now();
    let parent = dir.parent().expect("states folder");
    std::fs::create_dir_all(parent).map_err(io(parent))?;
    let needs = crate::space::saved_state(spec.topology().machine.memory.bytes());
    crate::space::require(parent, needs, "a saved guest state")?;
    let staging = tempfile::tempdir_in(parent).map_err(io(parent))?;
    let run = RunDir::create(staging.path(), "template", spec.topology())?;
    let rt = crate::vm::runtime().map_err(io(staging.path()))?;
    let tmp_state = staging.path().join("state");
    let Some((ready, prelude)) = rt.block_on(boot_and_save(config, env, spec, run, &tmp_state))?
    else {
        return Ok(false);
    };
    let json = serde_json::to_string(&prelude).expect("a prelude serializes");
    std::fs::write(staging.path().join("prelude.json"), json).map_err(io(staging.path()))?;
    let meta = format!(
        "topology {}\nkernel_args {:?}\nboot to agent ready {:.2}s\nsaved in {:.2}s\n",
        spec.topology.name,
        spec.kernel_args,
        ready.as_secs_f64(),
        t0.elapsed().as_secs_f64()
    );
    std::fs::write(staging.path().join("about.txt"), meta).map_err(io(staging.path()))?;
    super::proof::record(staging.path())?;
    let staged = staging.keep();
    // Another process may have saved the same state first; either is good.
    if std::fs::rename(&staged, dir).is_err() && !dir.join("state").exists() {
        return Err(Error::Move {
            from: staged,
            to: dir.to_owned(),
        });
    }
    let _ = std::fs::remove_dir_all(&staged);
    Ok(true)
}

/// The template guest's life: started, prepared, saved to `state`. `None`
/// when the boot or the setup fails the case.
async fn boot_and_save(
    config: &Config,
    env: &GuestEnv,
    spec: TemplateSpec<'_>,
    run: RunDir,
    state: &Path,
) -> Result<Option<(Duration, Prelude)>, Error> {
    let start = env
        .start_spec(spec.topology(), config.boot_timeout)
        .with_append(spec.kernel_args)
        .with_shares(spec.shares);
    let m = match Machine::start(&start, run).await {
        Ok(m) => m,
        // A panic is a verdict on the kernel, not trouble of the host:
        // the trials boot cold and each gets it.
        Err(e) if !e.is_infrastructure() => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let ready = m.times.agent_ready;
    let prepared = template::prepare(m, spec.topology(), spec.assembly, save_point(spec)).await?;
    let (m, prelude) = match prepared {
        Template::Ready(m, p) => (*m, p),
        Template::Fails => return Ok(None),
    };
    m.save(state).await?.remove();
    Ok(Some((ready, prelude)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_disk_is_told_from_other_save_failures() {
        let enospc = || std::io::Error::from_raw_os_error(libc::ENOSPC);
        let at = Path::new("/cache/states/x");
        assert!(Error::Io(crate::proof::Error::at(at, enospc())).is_no_space());
        let migrate = "saving it failed: Unable to write to file: No space left on device";
        assert!(Error::Guest(machine::Error::State(migrate.into())).is_no_space());
        let eacces = std::io::Error::from_raw_os_error(libc::EACCES);
        assert!(!Error::Io(crate::proof::Error::at(at, eacces)).is_no_space());
        let slow = "saving it took over 120 s";
        assert!(!Error::Guest(machine::Error::State(slow.into())).is_no_space());
    }
}
