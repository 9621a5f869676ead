//! `ndharness bench`: where a run's time goes, cold against warm, measured
//! in one run on this machine and printed side by side (medians over N
//! repetitions), and written as JSON. Run on demand; never a timed test.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde::Serialize;

use super::{Config, GuestEnv};
use crate::image::{self, ImageFiles};
use crate::vm::RunDir;
use crate::vm::{Machine, StartSpec};

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
    fn new(what: impl Into<String>, mut samples: Vec<f64>, note: Option<String>) -> Measure {
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
}

/// Every measurement, in the order printed.
pub fn bench(config: &Config, env: &GuestEnv, opts: &Options) -> anyhow::Result<Vec<Measure>> {
    let mut out = Vec::new();
    out.extend(image_builds(config, opts.runs)?);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    for name in &opts.topologies {
        let topo = crate::topology::load(name)?;
        let group = super::warm::Group {
            topology: &topo,
            kernel_args: "",
            assemble: true,
            device_model: false,
        };
        let drivers = crate::vm::cmdline::driver_modules(&topo.topology);
        let mut trip = Vec::new();
        let mut cold = Starts::default();
        for _ in 0..opts.runs {
            cold.push(
                rt.block_on(start_once(config, env, &topo, None))?,
                &mut trip,
            );
        }
        let t0 = Instant::now();
        let state = super::warm::state(config, env, group)
            .map_err(anyhow::Error::msg)?
            .ok_or_else(|| anyhow::anyhow!("{name}: no saved state (its template failed)"))?;
        let made = t0.elapsed().as_secs_f64();
        let mut warm = Starts::default();
        for _ in 0..opts.runs {
            warm.push(
                rt.block_on(start_once(config, env, &topo, Some(&state)))?,
                &mut trip,
            );
        }
        let size = std::fs::metadata(&state.state)
            .map(|m| m.len())
            .unwrap_or(0);
        let note = format!(
            "state {} MB; found or saved in {made:.2}s",
            size / 1_000_000
        );
        out.push(Measure::new(
            format!("{name}: cold boot to agent ready"),
            cold.agent,
            None,
        ));
        out.push(Measure::new(
            format!("{name}: warm start to agent ready"),
            warm.agent,
            Some(note),
        ));
        if !drivers.is_empty() {
            let what = if crate::assemble::wanted(&topo.topology) {
                "CXL regions assembled"
            } else {
                "drivers probed"
            };
            let how = match state.point {
                super::warm::SavePoint::Ready => {
                    "saved with them; PCI config written back, regions committed again"
                }
                super::warm::SavePoint::BeforeDrivers => "PCI config written back, then modprobe",
            };
            out.push(Measure::new(
                format!("{name}: cold boot to {what}"),
                cold.drivers,
                None,
            ));
            out.push(Measure::new(
                format!("{name}: warm start to {what}"),
                warm.drivers,
                Some(how.into()),
            ));
        }
        out.push(Measure::new(
            format!("{name}: guest command round trip (`true`)"),
            trip,
            None,
        ));
    }
    if let Some(filter) = &opts.suite_filter {
        for cold in [true, false] {
            let mut c = config.clone();
            c.cold = cold;
            c.results_dir = config
                .results_dir
                .join(if cold { "bench-cold" } else { "bench-warm" });
            let args = libtest_mimic::Arguments {
                filter: Some(filter.clone()).filter(|f| !f.is_empty()),
                skip: opts.suite_skip.clone(),
                test_threads: opts.test_threads,
                quiet: true,
                ..Default::default()
            };
            let t0 = Instant::now();
            let o = super::execute(super::Shared::new(c), &args);
            let wall = t0.elapsed().as_secs_f64();
            let passed = o
                .results
                .iter()
                .filter(|r| r.status == super::Status::Pass)
                .count();
            out.push(Measure::new(
                format!(
                    "suite `{filter}`{} wall, {}",
                    opts.suite_skip
                        .iter()
                        .map(|s| format!(" --skip {s}"))
                        .collect::<String>(),
                    if cold { "cold" } else { "warm" }
                ),
                vec![wall],
                Some(format!(
                    "{passed}/{} passed, exit {}",
                    o.results.len(),
                    o.code
                )),
            ));
        }
    }
    Ok(out)
}

/// Seconds from QEMU start, per start.
#[derive(Default)]
struct Starts {
    agent: Vec<f64>,
    drivers: Vec<f64>,
}

impl Starts {
    fn push(&mut self, (agent, drivers, rtt): (f64, f64, Vec<f64>), trip: &mut Vec<f64>) {
        self.agent.push(agent);
        self.drivers.push(drivers);
        trip.extend(rtt);
    }
}

/// One start (cold, or from `state`) to a ready agent, then to the
/// topology's drivers loaded and CXL regions assembled (as a trial starts
/// its steps), then ten round trips and a stop.
async fn start_once(
    config: &Config,
    env: &GuestEnv,
    topo: &crate::topology::Loaded,
    saved: Option<&super::warm::Saved>,
) -> anyhow::Result<(f64, f64, Vec<f64>)> {
    let state = saved.map(|s| s.state.as_path());
    let run = RunDir::create(
        &config.runs_dir,
        &format!("bench-{}", topo.name),
        &topo.topology,
    )?;
    let spec = StartSpec {
        qemu_binary: &env.qemu,
        image: &env.image,
        topology: &topo.topology,
        accel: env.accel,
        extra_append: "",
        boot_timeout: config.boot_timeout,
        incoming: state,
    };
    let mut m = Machine::start(&spec, run).await?;
    let since_ready = Instant::now();
    let ready = m.times.agent_ready.as_secs_f64();
    super::warm::ready_devices(&mut m, &topo.topology, saved.map(|s| s.point))
        .await
        .map_err(anyhow::Error::msg)?;
    let drivers = ready + since_ready.elapsed().as_secs_f64();
    let mut rtt = Vec::new();
    for _ in 0..10 {
        let t0 = Instant::now();
        m.exec(&["true".to_owned()], Duration::from_secs(30))
            .await?;
        rtt.push(t0.elapsed().as_secs_f64());
    }
    m.stop().await.remove();
    Ok((ready, drivers, rtt))
}

/// Image build into an empty image folder (packages already downloaded:
/// the network is not what is measured), then the cached lookup.
fn image_builds(config: &Config, runs: usize) -> anyhow::Result<Vec<Measure>> {
    let files = ImageFiles::load(&config.images_dir(), &config.image)?;
    let (mut cold, mut warm) = (Vec::new(), Vec::new());
    for _ in 0..runs {
        let tmp = tempfile::tempdir_in(&config.build.cache)?;
        let debs = config.build.cache.join("debs");
        std::os::unix::fs::symlink(&debs, tmp.path().join("debs"))?;
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
