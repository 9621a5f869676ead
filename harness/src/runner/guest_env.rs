//! The guest every trial of a run boots: the image (built or found in the
//! cache), the QEMU binary and the accelerator, resolved once per run
//! ([`GuestEnvs`]), with a second image for the trials that need a mock
//! bus (`nfit_test`, `cxl_test`); [`for_topology`] picks the same way for
//! one guest outside a run.

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use super::Config;
use crate::image::{self, Image, ImageFiles};
use crate::kbuild::MockBuses;
use crate::suite::Trial;
use crate::topology::{Loaded, Topology};
use crate::vm::{Accel, StartSpec};

/// The image, QEMU and accelerator a guest uses.
#[derive(Clone, Debug)]
pub struct GuestEnv {
    pub image: Image,
    pub qemu: PathBuf,
    pub accel: Accel,
}

impl GuestEnv {
    /// A cold boot of `topology` in this guest (see [`StartSpec::boot`]).
    pub fn start_spec<'a>(
        &'a self,
        topology: &'a Topology,
        boot_timeout: Duration,
    ) -> StartSpec<'a> {
        StartSpec::boot(&self.qemu, &self.image, topology, self.accel, boot_timeout)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Qemu(#[from] crate::vm::qemu::Error),
    #[error(transparent)]
    Image(#[from] image::Error),
    #[error("failed to start a runtime: {0}")]
    Runtime(std::io::Error),
    /// The run cannot give an nfit_test trial the guest it needs.
    #[error("{0}")]
    NoNfitTest(String),
}

/// Builds (or finds) the run's image and resolves QEMU and the accelerator.
pub fn prepare(config: &Config) -> Result<GuestEnv, Error> {
    prepare_image(config, &config.image)
}

fn prepare_image(config: &Config, name: &str) -> Result<GuestEnv, Error> {
    let qemu = crate::vm::find_binary()?;
    let files = ImageFiles::load(&config.images_dir(), name)?;
    let image = image::build(&files, &config.build)?;
    let rt = crate::vm::runtime().map_err(Error::Runtime)?;
    let accel = rt.block_on(crate::vm::accel::resolve(
        config.accel,
        &qemu,
        &image.kernel,
        &config.build.cache,
    ))?;
    Ok(GuestEnv { image, qemu, accel })
}

/// The guests of one run, each prepared on first use.
#[derive(Default)]
pub struct GuestEnvs {
    main: OnceLock<Result<GuestEnv, Arc<Error>>>,
    /// The nfit_test image's, when it is another.
    nfit_test: OnceLock<Result<GuestEnv, Arc<Error>>>,
}

impl GuestEnvs {
    /// The run's guest.
    pub fn main(&self, config: &Config) -> Result<GuestEnv, Arc<Error>> {
        self.main
            .get_or_init(|| prepare(config).map_err(Arc::new))
            .clone()
    }

    /// The guest `trial` runs on: the run's, or for a mock bus topology or
    /// ndctl's own tests the run's test image ([`Config::test_image`]).
    pub fn for_trial(&self, config: &Config, trial: &Trial) -> Result<GuestEnv, Arc<Error>> {
        if !trial.needs_test_image() {
            return self.main(config);
        }
        if let Some(why) = cannot_run(config, trial) {
            return Err(Arc::new(Error::NoNfitTest(why)));
        }
        match config.test_image.as_ref().map(|(name, _)| name) {
            Some(name) if *name != config.image => self
                .nfit_test
                .get_or_init(|| prepare_image(config, name).map_err(Arc::new))
                .clone(),
            _ => self.main(config),
        }
    }
}

/// The guest a topology boots on outside a run (`boot`, `bench`), as a
/// trial on it would: the run's image, or for a mock bus topology the
/// run's test image ([`Config::test_image`]). An error names the flag to
/// pass when no image of the configuration has the mock bus.
pub fn for_topology(config: &Config, topology: &Loaded) -> Result<GuestEnv, Error> {
    let t = &topology.topology;
    let wants = MockBuses {
        nfit_test: t.nfit_test.is_some(),
        cxl_test: t.cxl_test.is_some(),
    };
    if !wants.nfit_test && !wants.cxl_test {
        return prepare(config);
    }
    if let Some(why) = missing(config, wants, false) {
        return Err(Error::NoNfitTest(format!(
            "topology {} {why}",
            topology.name
        )));
    }
    match &config.test_image {
        Some((name, _)) => prepare_image(config, name),
        None => prepare(config),
    }
}

/// Why `trial` cannot run with this configuration: it needs a mock bus or
/// ndctl's tests, and no image of the run has them. None: it can.
pub fn cannot_run(config: &Config, trial: &Trial) -> Option<String> {
    if !trial.needs_test_image() {
        return None;
    }
    missing(config, trial.mock_buses(), trial.case.spec.ndctl_tests)
}

/// What the run's test image lacks of the mock buses `wants` (and of
/// ndctl's own tests, which every test image ships), said with the flag
/// that gets it; None when it has them.
fn missing(config: &Config, wants: MockBuses, ndctl_tests: bool) -> Option<String> {
    let has = config.test_image.as_ref().map(|(_, mocks)| *mocks);
    let missing = match has {
        Some(has) if (!wants.nfit_test || has.nfit_test) && (!wants.cxl_test || has.cxl_test) => {
            return None
        }
        _ if wants.cxl_test => "cxl_test",
        _ if wants.nfit_test => "nfit_test",
        _ if ndctl_tests => "ndctl's own tests",
        _ => return None,
    };
    let needs = format!("needs {missing}");
    Some(if config.build.user_ndctl.is_some() {
        format!("{needs}, with ndctl's tests, which are built for the packaged ndctl, not the DESTDIR you gave (give your ndctl source tree to --ndctl: it is built with its own tests)")
    } else if config.build.user_kernel.is_some() {
        format!("{needs}, which your kernel's modules do not have (build it with --kernel-tree, which builds the mock buses)")
    } else if wants.cxl_test {
        format!(
            "{needs}, which Debian's packaged kernels cannot load (CXL core built in); run it with a mock kernel: --kernel debian-7.3-mock, debian-7.2-mock or debian-6.12-mock"
        )
    } else {
        format!(
            "{needs}, which no image builds for image `{}`'s kernel and ndctl; run it with --image nfit-test or a mock kernel (--kernel debian-7.3-mock or debian-6.12-mock)",
            config.image
        )
    })
}
