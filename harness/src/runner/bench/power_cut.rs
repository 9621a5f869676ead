//! What a power cut costs: a guest started warm (from its state saved
//! before the pmem drivers, as a power-cut case's is), labels initialized,
//! then a create-namespace recorded with a crash image before each label
//! write, and every image judged on a guest started again on it. The cost
//! per crash point is the restart and its checks.

use std::time::{Duration, Instant};

use super::{Error, Measure};
use crate::powercut::cut::{self, CutPlace};
use crate::runner::warm::{self, TemplateSpec};
use crate::runner::{Config, GuestEnv};
use crate::suite::PointSelection;
use crate::suite::{CutPoints, PowerCut};
use crate::topology::{Loaded, PmemDrivers};
use crate::vm::{Machine, RunDir};

const INIT_LABELS: &str =
    "ndctl disable-region all && ndctl init-labels -f all && ndctl enable-region all";

/// `runs` recorded create-namespace steps on `name`: the step with its
/// recording, and each crash point's restart and checks.
pub fn measure(
    config: &Config,
    env: &GuestEnv,
    name: &str,
    runs: usize,
) -> Result<Vec<Measure>, Error> {
    let mut topo: Loaded = crate::topology::load(name)?;
    topo.topology.pmem_drivers = PmemDrivers::AfterStart;
    let rt = crate::vm::runtime().map_err(|source| Error::Io {
        path: config.runs_dir.clone(),
        source,
    })?;
    let state = warm::state(config, env, TemplateSpec::plain(&topo, &[]))?
        .ok_or_else(|| Error::NoState(name.to_owned()))?;
    let (mut steps, mut points) = (Vec::new(), Vec::new());
    let mut outcomes = String::new();
    for _ in 0..runs {
        let (step, costs, summary) = rt.block_on(once(config, env, &topo, &state))?;
        steps.push(step);
        points.extend(costs);
        outcomes = summary;
    }
    Ok(vec![
        Measure::new(
            format!("{name}: create-namespace, recorded at each label write"),
            steps,
            None,
        ),
        Measure::new(
            format!("{name}: one crash point (restart on the image, checks)"),
            points,
            Some(outcomes),
        ),
    ])
}

/// One recorded step: its time, each point's cost, the summary line.
async fn once(
    config: &Config,
    env: &GuestEnv,
    topo: &Loaded,
    saved: &crate::runner::start::SavedState,
) -> Result<(f64, Vec<f64>, String), Error> {
    let run = RunDir::create(
        &config.runs_dir,
        &format!("bench-power-cut-{}", topo.name),
        &topo.topology,
    )?;
    let spec = env
        .start_spec(&topo.topology, config.boot_timeout)
        .with_incoming(Some(&saved.state));
    let mut m = Machine::start(&spec, run).await?;
    warm::ready_devices(&mut m, &topo.topology, Some(saved.point)).await?;
    let argv = crate::command_line::shell(INIT_LABELS.to_owned());
    m.exec(&argv, Duration::from_secs(60)).await?;
    let dir = m.run.path.join("power-cut");
    let place = CutPlace {
        spec: &spec,
        dir: &dir,
        seed: 1,
        // The bench measures the cost of every point.
        selection: PointSelection::Every,
    };
    let step = PowerCut {
        run:
            "ndctl create-namespace -r region0 -m fsdax -s $(cat /sys/bus/nd/devices/region0/align)"
                .into(),
        points: CutPoints::LabelWrites,
        sectors: None,
        filesystem: None,
    };
    let t0 = Instant::now();
    let report = cut::run(&m, &step, Duration::from_secs(120), &place)
        .await
        .map_err(|e| Error::PowerCut(e.to_string()))?;
    let total = t0.elapsed().as_secs_f64();
    let costs: Vec<f64> = report.points.iter().map(|p| p.cost.as_secs_f64()).collect();
    let recording = total - costs.iter().sum::<f64>();
    // The counts; each violation's detail is the suite's to show.
    let summary = report
        .summary()
        .lines()
        .filter(|line| !line.starts_with("  "))
        .collect::<Vec<_>>()
        .join("; ");
    m.stop().await.remove();
    Ok((recording, costs, summary))
}
