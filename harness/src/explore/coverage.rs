//! Coverage of an exploration: the steps run by operation and by the mode
//! of the namespace it made or acted on.

use std::collections::BTreeMap;

use super::model::Op;
use super::sequence::SequenceRun;

/// Steps run, by (operation, mode).
pub type Coverage = BTreeMap<(String, String), usize>;

/// Counts a run's steps into `coverage`.
pub fn count(coverage: &mut Coverage, run: &SequenceRun) {
    for log in run.steps.iter().filter(|l| l.command.is_some()) {
        let mode = match &log.op {
            Op::Create { mode, .. } | Op::Reconfigure { mode, .. } => mode.to_string(),
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
