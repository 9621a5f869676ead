//! One step of a case in the guest: a guest command between kernel-log
//! markers, or a host-side action (QMP, hotplug) followed by a guest
//! command that waits for its effect, so the kernel's reaction is the
//! step's.

use std::time::Duration;

use crate::command_line::shell;
use crate::suite::{Action, Step};
use crate::vm::machine::{self, Machine, StepRun};

/// Runs step number `number` of the trial.
pub async fn run_step(
    m: &mut Machine,
    number: usize,
    step: &Step,
    timeout: Duration,
) -> machine::Result<StepRun> {
    match &step.action {
        Action::HotplugNvdimm { size, label_size } => {
            let before = m.hotplug_nvdimm(*size, *label_size).await?;
            let wait = format!(
                "i=0; while [ $(ls /sys/bus/nd/devices | grep -c '^nmem') -le {before} ]; do \
                 i=$((i+1)); [ $i -gt 100 ] && echo 'the guest saw no new NVDIMM within 10s' >&2 && exit 1; \
                 sleep 0.1; done; ls /sys/bus/nd/devices | grep '^nmem' | sort"
            );
            m.step(number, &shell(wait), timeout).await
        }
        Action::Qmp { command, arguments } => {
            let answer = m.qmp_step(command, arguments).await?;
            // Settle: the guest's reaction (an interrupt, a log line) lands
            // in this step's kernel records.
            let mut run = m.step(number, &shell("sleep 0.5"), timeout).await?;
            match answer {
                Ok(v) => {
                    run.output.stdout = serde_json::to_string_pretty(&v)
                        .unwrap_or_default()
                        .into_bytes();
                }
                Err(e) => {
                    run.output.exit_code = Some(1);
                    run.output.stderr = e.to_string().into_bytes();
                }
            }
            Ok(run)
        }
        action => m.step(number, &action.argv(), timeout).await,
    }
}
