//! `ndharness states`: the saved guest states of warm starts in the cache,
//! listed or pruned.

use std::process::ExitCode;
use std::time::SystemTime;

use ndharness::runner::warm::states;

use super::args::StatesAction;

pub fn states(action: StatesAction) -> anyhow::Result<ExitCode> {
    let dir = ndharness::image::cache_dir().join("states");
    match action {
        StatesAction::List => {
            let all = states::list(&dir);
            let now = SystemTime::now();
            for s in &all {
                let age = now.duration_since(s.last_used).unwrap_or_default();
                println!(
                    "{:>6.1} days ago  {:>6.0} MB  {:<16} {}",
                    age.as_secs_f64() / 86400.0,
                    s.bytes as f64 / 1e6,
                    s.topology,
                    s.dir.display()
                );
            }
            let total: u64 = all.iter().map(|s| s.bytes).sum();
            println!(
                "{} saved states, {:.1} GB in {} (most recently used last)",
                all.len(),
                total as f64 / 1e9,
                dir.display()
            );
        }
        StatesAction::Prune {
            older_than,
            max_size,
        } => {
            let aged = states::prune(&dir, older_than);
            println!(
                "removed {} saved states unused for {} ({:.1} GB) from {}",
                aged.entries,
                humantime::format_duration(older_than),
                aged.bytes as f64 / 1e9,
                dir.display()
            );
            if let Some(max) = max_size {
                let capped = states::cap(&dir, max.bytes());
                println!(
                    "removed {} least recently used saved states ({:.1} GB) to keep {} under {max}",
                    capped.entries,
                    capped.bytes as f64 / 1e9,
                    dir.display()
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
