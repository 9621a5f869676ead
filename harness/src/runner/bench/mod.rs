//! `ndharness bench`: where a run's time goes, cold against warm, measured
//! in one run on this machine and printed side by side (medians over N
//! repetitions), and written as JSON. Run on demand; never a timed test.

use std::path::PathBuf;
use std::time::Instant;

use serde::Serialize;

mod power_cut;
mod starts;
mod suite;

use super::{Config, GuestEnv};
use crate::image::{self, ImageFiles};

#[derive(Debug, Serialize)]
pub struct Measure {
    pub what: String,
    /// Seconds, each repetition.
    pub samples: Vec<f64>,
    pub median: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

impl Measure {
    pub fn new(what: impl Into<String>, mut samples: Vec<f64>, note: Option<String>) -> Measure {
        samples.sort_by(f64::total_cmp);
        let median = match samples.len() {
            0 => f64::NAN,
            n if n % 2 == 1 => samples[n / 2],
            n => (samples[n / 2 - 1] + samples[n / 2]) / 2.0,
        };
        Measure {
            what: what.into(),
            samples,
            median,
            note,
        }
    }
}

pub struct Options {
    pub runs: usize,
    pub topologies: Vec<String>,
    /// Trials for the suite-wall comparison (a libtest filter); `None` skips it.
    pub suite_filter: Option<String>,
    /// Trials left out of it (libtest `--skip`).
    pub suite_skip: Vec<String>,
    pub test_threads: Option<usize>,
    /// Topologies whose power-cut cost is measured (a recorded
    /// create-namespace and its crash points).
    pub power_cut: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Topology(#[from] crate::topology::Error),
    #[error(transparent)]
    Image(#[from] crate::image::Error),
    #[error(transparent)]
    Qemu(#[from] crate::vm::qemu::Error),
    #[error(transparent)]
    Guest(#[from] crate::vm::machine::Error),
    #[error(transparent)]
    Warm(#[from] super::warm::Error),
    #[error(transparent)]
    GuestEnv(#[from] super::guest_env::Error),
    #[error(transparent)]
    Ready(#[from] super::warm::ReadyError),
    #[error("power cut: {0}")]
    PowerCut(String),
    #[error("{0}: no saved state (its template failed)")]
    NoState(String),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Every measurement, in the order printed.
pub fn bench(config: &Config, env: &GuestEnv, opts: &Options) -> Result<Vec<Measure>, Error> {
    // Each topology on the image it needs, as `run` does (a mock bus
    // topology on the test image), or a refusal before anything is measured.
    let mut guests = Vec::new();
    for name in &opts.topologies {
        let topo = crate::topology::load(name)?;
        let t = &topo.topology;
        let own = if t.has_mock_bus() {
            Some(super::guest_env::for_topology(config, &topo)?)
        } else {
            None
        };
        guests.push((topo, own));
    }
    let mut out = Vec::new();
    out.extend(image_builds(config, opts.runs)?);
    for (topo, own) in &guests {
        out.extend(starts::measure(
            config,
            own.as_ref().unwrap_or(env),
            topo,
            opts.runs,
        )?);
    }
    for name in &opts.power_cut {
        out.extend(power_cut::measure(config, env, name, opts.runs)?);
    }
    if let Some(filter) = &opts.suite_filter {
        out.extend(suite::walls(config, filter, opts));
    }
    Ok(out)
}

/// Image build into an empty image folder (packages already downloaded:
/// the network is not what is measured), then the cached lookup.
fn image_builds(config: &Config, runs: usize) -> Result<Vec<Measure>, Error> {
    let files = ImageFiles::load(&config.images_dir(), &config.image)?;
    let (mut cold, mut warm) = (Vec::new(), Vec::new());
    let io = |path: &std::path::Path| {
        let path = path.to_owned();
        move |source| Error::Io { path, source }
    };
    for _ in 0..runs {
        let tmp = tempfile::tempdir_in(&config.build.cache).map_err(io(&config.build.cache))?;
        let debs = config.build.cache.join("debs");
        std::os::unix::fs::symlink(&debs, tmp.path().join("debs")).map_err(io(tmp.path()))?;
        let mut opts = config.build.clone();
        opts.cache = PathBuf::from(tmp.path());
        let t0 = Instant::now();
        image::build(&files, &opts)?;
        cold.push(t0.elapsed().as_secs_f64());
        let t0 = Instant::now();
        image::build(&files, &opts)?;
        warm.push(t0.elapsed().as_secs_f64());
    }
    Ok(vec![
        Measure::new(
            format!("image `{}` build, cold (packages downloaded)", config.image),
            cold,
            None,
        ),
        Measure::new(
            format!("image `{}` build, warm (cached)", config.image),
            warm,
            None,
        ),
    ])
}

pub fn render(measures: &[Measure]) -> String {
    let mut s =
        String::from("\nmeasure                                               median      runs\n");
    for m in measures {
        let median = if m.median.is_nan() {
            "-".to_owned()
        } else {
            format!("{:.3}s", m.median)
        };
        s.push_str(&format!(
            "{:52} {:>9} {:>6}{}\n",
            m.what,
            median,
            m.samples.len(),
            m.note
                .as_ref()
                .map(|n| format!("   {n}"))
                .unwrap_or_default()
        ));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians() {
        assert_eq!(Measure::new("x", vec![3.0, 1.0, 2.0], None).median, 2.0);
        assert_eq!(
            Measure::new("x", vec![4.0, 1.0, 2.0, 3.0], None).median,
            2.5
        );
        assert!(Measure::new("x", vec![], None).median.is_nan());
    }
}
