//! Coverage of an exploration: the steps run by operation and by the mode
//! of the namespace it made or acted on; a dax round trip by how far it
//! went: through system-ram (`system-ram`), refused that half
//! (`refused`), or with no exit status (`no-exit`: a hang or a kernel
//! report ended it). A round trip that never reaches kmem tests nothing
//! of it.

use std::collections::BTreeMap;

use super::invariant::RoundTrip;
use super::model::Op;
use super::sequence::SequenceRun;

/// Steps run, by (operation, mode).
pub type Coverage = BTreeMap<(String, String), usize>;

/// Counts a run's steps into `coverage`.
pub fn count(coverage: &mut Coverage, run: &SequenceRun) {
    for log in run.steps.iter().filter(|l| l.command.is_some()) {
        let mode = match &log.op {
            Op::Create { mode, .. } | Op::Reconfigure { mode, .. } => mode.to_string(),
            Op::DaxRoundTrip { .. } => match RoundTrip::of(log.exit_code) {
                RoundTrip::Refused => "refused".to_owned(),
                RoundTrip::Back | RoundTrip::Stuck { .. } => "system-ram".to_owned(),
                RoundTrip::NoExit => "no-exit".to_owned(),
            },
            _ => log
                .before
                .listed
                .iter()
                .find(|n| {
                    log.command
                        .as_deref()
                        .is_some_and(|c| c.split_whitespace().any(|w| w == n.dev))
                })
                .and_then(|n| n.mode)
                .map_or("-".to_owned(), |m| m.to_string()),
        };
        *coverage
            .entry((log.op.kind().to_owned(), mode))
            .or_default() += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::explore::invariant::SYSTEM_RAM_REFUSED;
    use crate::explore::sequence::StepLog;

    fn round_trip(exit_code: i32) -> StepLog {
        StepLog {
            op: Op::DaxRoundTrip { slot: 0 },
            command: Some("daxctl reconfigure-device -m system-ram dax0.0".into()),
            exit_code: Some(exit_code),
            stdout: String::new(),
            stderr: String::new(),
            kernel: Vec::new(),
            before: Default::default(),
        }
    }

    #[test]
    fn a_dax_round_trip_counts_by_whether_it_reached_system_ram() {
        let mut hung = round_trip(0);
        hung.exit_code = None;
        let run = SequenceRun {
            steps: vec![
                round_trip(0),
                round_trip(SYSTEM_RAM_REFUSED),
                round_trip(240),
                hung,
            ],
            ..Default::default()
        };
        let mut coverage = Coverage::new();
        count(&mut coverage, &run);
        let key = |mode: &str| ("dax-round-trip".to_owned(), mode.to_owned());
        assert_eq!(coverage.get(&key("system-ram")), Some(&2));
        assert_eq!(coverage.get(&key("refused")), Some(&1));
        assert_eq!(coverage.get(&key("no-exit")), Some(&1));
    }
}
