//! Guest starts, cold against warm, for one topology: to a ready agent,
//! to the drivers probed and the CXL regions assembled, and the agent's
//! round trip.

use std::time::{Duration, Instant};

use super::{Error, Measure};
use crate::runner::start::{SavePoint, SavedState};
use crate::runner::warm::{self, TemplateSpec};
use crate::runner::{Config, GuestEnv};
use crate::topology::Loaded;
use crate::vm::{Machine, RunDir};

/// The measures of topology `topo`: `runs` cold boots, its saved state
/// found or made, `runs` warm starts.
pub fn measure(
    config: &Config,
    env: &GuestEnv,
    topo: &Loaded,
    runs: usize,
) -> Result<Vec<Measure>, Error> {
    let name = &topo.name;
    let rt = crate::vm::runtime().map_err(|source| Error::Io {
        path: config.runs_dir.clone(),
        source,
    })?;
    let mut trip = Vec::new();
    let mut cold = Starts::default();
    for _ in 0..runs {
        cold.push(rt.block_on(start_once(config, env, topo, None))?, &mut trip);
    }
    let t0 = Instant::now();
    let state = warm::state(config, env, TemplateSpec::plain(topo, &[]))?
        .ok_or_else(|| Error::NoState(name.to_owned()))?;
    let made = t0.elapsed().as_secs_f64();
    let mut warm = Starts::default();
    for _ in 0..runs {
        let start = rt.block_on(start_once(config, env, topo, Some(&state)))?;
        warm.push(start, &mut trip);
    }
    let size = std::fs::metadata(&state.state)
        .map(|m| m.len())
        .unwrap_or(0);
    let note = format!(
        "state {} MB; found or saved in {made:.2}s",
        size / 1_000_000
    );
    let mut out = vec![
        Measure::new(
            format!("{name}: cold boot to agent ready"),
            cold.agent,
            None,
        ),
        Measure::new(
            format!("{name}: warm start to agent ready"),
            warm.agent,
            Some(note),
        ),
    ];
    if !crate::vm::modules::driver_modules(&topo.topology).is_empty() {
        let what = if crate::assemble::wanted(&topo.topology) {
            "CXL regions assembled"
        } else {
            "drivers probed"
        };
        let how = match state.point {
            SavePoint::Ready => "saved with them; PCI config written back, regions committed again",
            SavePoint::BeforeDrivers => "PCI config written back, then modprobe",
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
    topo: &Loaded,
    saved: Option<&SavedState>,
) -> Result<(f64, f64, Vec<f64>), Error> {
    let state = saved.map(|s| s.state.as_path());
    let run = RunDir::create(
        &config.runs_dir,
        &format!("bench-{}", topo.name),
        &topo.topology,
    )?;
    let spec = env
        .start_spec(&topo.topology, config.boot_timeout)
        .with_incoming(state);
    let mut m = Machine::start(&spec, run).await?;
    let since_ready = Instant::now();
    let ready = m.times.agent_ready.as_secs_f64();
    warm::ready_devices(&mut m, &topo.topology, saved.map(|s| s.point)).await?;
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
