//! `ndharness merge-results OUT DIR...`: the shards' results.json made one
//! run ([`ndharness::runner::merge`]), written to OUT as results.json,
//! junit.xml and report.html, summarized, and its exit code recomputed.

use std::process::ExitCode;

use anyhow::Context;
use ndharness::runner::merge;
use ndharness::runner::reporter::html::{self, Previous};
use ndharness::runner::reporter::{json, kcidb, results, summary};

use super::args::MergeArgs;

pub fn merge(args: MergeArgs) -> anyhow::Result<ExitCode> {
    let previous = match &args.previous {
        Some(path) => Some(Previous {
            record: json::read(path).context("--previous")?,
            source: path.clone(),
        }),
        None => None,
    };
    let inputs = merge::read_all(&args.inputs)?;
    let merged = merge::merge(inputs)?;
    let run = &merged.record;
    print!("{}", summary::summary(run));
    for p in &merged.missing {
        eprintln!("error: no results for shard {p}: its trials were not reported");
    }
    results::keep_previous(&args.out);
    let previous = previous.or_else(|| html::previous_in(&args.out));
    let (json, junit) = results::write(&args.out, run)
        .with_context(|| format!("failed to write results to {}", args.out.display()))?;
    let page = html::write(&args.out, run, previous.as_ref())
        .with_context(|| format!("failed to write report.html to {}", args.out.display()))?;
    println!(
        "  merged {} shards: {} {} {}",
        run.shards.len(),
        json.display(),
        junit.display(),
        page.display()
    );
    if let Some((file, origin)) = args.kcidb.file_and_origin() {
        kcidb::write(&file, run, &origin)
            .with_context(|| format!("failed to write {}", file.display()))?;
        println!("  kcidb:  {}", file.display());
    }
    Ok(ExitCode::from(run.exit_code))
}
