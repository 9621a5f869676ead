//! `ndharness mutate`: how many kernel bugs the checks catch. The tree is
//! built and checked once unmutated (the reference), then each mutant
//! (hand-written, from mutants/hand, and generated, `--generate N`) is
//! planted in its overlay alone, rebuilt (one object or a few), checked,
//! and compared with the reference: killed (by which trials, or explore
//! findings), survived, or did not apply or build. Guests boot cold: a
//! saved state is no use to the next kernel. mutate.json is written after
//! each mutant, so a run stopped part-way keeps what it measured.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context;
use ndharness::mutate::score::{self, Fate, Kill, MutantResult};
use ndharness::mutate::{self, generate, Mutant};
use ndharness::overlay::Change;
use ndharness::runner::compare::{self, verdict};
use serde::Serialize;

use super::args::MutateArgs;
use super::sides::{Bench, BuildFailure, Built, SideRun};
use ndharness::explore::Until;

/// mutate.json.
#[derive(Serialize)]
struct Report<'a> {
    tree: String,
    profile: &'a str,
    /// The FILTERs, space-separated (none: the profile's trials).
    filter: Option<String>,
    power_cut: bool,
    explore_seconds: Option<f64>,
    seed: u64,
    reference_seconds: f64,
    reference_runs: u32,
    /// Trials that differed between the reference's runs: their
    /// differences on a mutant kill nothing.
    flaky_on_reference: &'a BTreeSet<String>,
    scores: Vec<score::Score>,
    /// The scores of the run before (its mutate.json, now previous.json):
    /// the score from run to run.
    previous_scores: &'a [score::PreviousScore],
    mutants: &'a [MutantResult],
}

/// What the reference's runs established.
struct ReferenceFacts {
    /// Its build and all its runs.
    seconds: f64,
    /// The trials that differed between its runs.
    flaky: BTreeSet<String>,
    /// Explore's findings over its runs, when explore ran.
    explore: Option<ReferenceFindings>,
}

/// Explore's findings (labels) over the reference's runs.
struct ReferenceFindings {
    /// In any run: one of them on a mutant kills nothing, a finding beyond
    /// them ends the mutant's explore.
    in_any: BTreeSet<String>,
    /// In every run: one of them a mutant lacks kills it.
    in_every: BTreeSet<String>,
}

pub fn mutate(args: MutateArgs) -> anyhow::Result<ExitCode> {
    let mut checks = args.checks.clone();
    checks.machine.cold = true;
    let mut bench = Bench::new(&checks)?;
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| bench.root.join("target/ndharness/mutate"));
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    let previous = keep_previous(&out)?;
    let library = if args.mutants.is_empty() {
        vec![bench.root.join("mutants/hand")]
    } else {
        args.mutants.clone()
    };
    let mut mutants = mutate::load(&library)?;
    let seed = args.seed.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
    });
    let started = Instant::now();
    println!("mutate: {} (unmutated first)", bench.tree().display());
    let built = bench
        .build(&Change::none("unmutated"))
        .map_err(|e| anyhow::anyhow!("the unmutated tree: {e}"))?;
    if args.generate > 0 {
        mutants.extend(generated(&bench, args.generate, seed)?);
    }
    if !args.only.is_empty() {
        mutants.retain(|m| args.only.iter().any(|o| m.name.contains(o.as_str())));
    }
    if mutants.is_empty() {
        anyhow::bail!(
            "no mutant to run (library {library:?}, --only {:?})",
            args.only
        );
    }
    let (reference, facts) = run_reference(&mut bench, &built, &out, seed, args.repeat)?;
    println!(
        "reference: {} trials in {:.0}s ({} runs); {} mutants",
        reference.side.results.len(),
        facts.seconds,
        args.repeat,
        mutants.len()
    );
    if !facts.flaky.is_empty() {
        let names: Vec<&str> = facts.flaky.iter().map(String::as_str).collect();
        println!(
            "flaky on the reference (their differences kill nothing): {}",
            names.join(" ")
        );
    }
    // The check sets the reference ran: the ones a score is given for.
    let ran = ran_sets(&reference, &checks);
    let run = RunFacts {
        seed,
        reference: &facts,
        ran: &ran,
        previous: &previous,
    };
    let mut results = Vec::new();
    for (i, mutant) in mutants.iter().enumerate() {
        if args.budget.is_some_and(|b| started.elapsed() > b) {
            println!("budget spent: {} mutants not run", mutants.len() - i);
            break;
        }
        println!(
            "\n[{}/{}] {} ({})",
            i + 1,
            mutants.len(),
            mutant.name,
            mutant.class
        );
        let result = one(&mut bench, mutant, &reference, &facts, &out, seed);
        println!("  {}", score::render_line(&result));
        results.push(result);
        write(&out, &bench, &args, &run, &results)?;
    }
    // The overlay as the tree is, for whoever builds it next.
    let _ = bench.build(&Change::none("unmutated"));
    let scores = score::scores(&results, &ran);
    println!("\n{}", score::render_text(&results, &scores));
    if let Some(line) = score::render_previous(&previous) {
        println!("  previous run: {line}");
    }
    let (json, html) = write(&out, &bench, &args, &run, &results)?;
    println!("  report: {} {}", json.display(), html.display());
    let errors = results.iter().any(|r| matches!(r.fate, Fate::Error { .. }));
    Ok(ExitCode::from(if errors { 2 } else { 0 }))
}

/// The check sets the reference ran.
fn ran_sets(reference: &SideRun, checks: &super::args::patch::Checks) -> Vec<&'static str> {
    let mut sets: Vec<&'static str> = reference
        .side
        .results
        .iter()
        .map(|r| score::check_set(&r.name))
        .collect();
    if checks.explore.is_some() {
        sets.push("explore");
    }
    sets.sort();
    sets.dedup();
    sets
}

/// Explore's difference on a mutant: its findings that no run of the
/// reference had, and the findings every run of the reference had that it
/// lacks, unless its explore ended early (at a new finding: it did not
/// look for them).
fn mutant_explore_difference(
    reference: &ReferenceFindings,
    mutant: &BTreeSet<String>,
    ended_early: bool,
) -> (Vec<String>, Vec<String>) {
    let only_mutant = mutant.difference(&reference.in_any).cloned().collect();
    let lacking = if ended_early {
        Vec::new()
    } else {
        reference.in_every.difference(mutant).cloned().collect()
    };
    (lacking, only_mutant)
}

/// `count` mutants generated over the tree's chosen functions, sampled
/// by `seed`.
fn generated(bench: &Bench, count: usize, seed: u64) -> anyhow::Result<Vec<Mutant>> {
    let src = bench.src();
    let sites = generate::sites(&src, generate::TARGETS);
    let total = sites.len();
    let chosen = ndharness::seeded::sample(sites, count, seed);
    println!(
        "generated: {} of {total} sites in {} functions (seed {seed}: --seed {seed} repeats it)",
        chosen.len(),
        generate::TARGETS.len()
    );
    let mut mutants = Vec::new();
    for (i, site) in chosen.iter().enumerate() {
        mutants.push(generate::mutant(&src, site, i + 1)?);
    }
    Ok(mutants)
}

/// The last run's report moved to `previous.json` (a run that failed
/// before writing its own leaves the one before it there), and its
/// scores, to compare this run's with.
fn keep_previous(out: &Path) -> anyhow::Result<Vec<score::PreviousScore>> {
    let previous = out.join("previous.json");
    if out.join("mutate.json").exists() {
        std::fs::rename(out.join("mutate.json"), &previous)
            .with_context(|| format!("keeping {}", previous.display()))?;
    }
    Ok(std::fs::read_to_string(&previous)
        .map(|text| score::previous_scores(&text))
        .unwrap_or_default())
}

/// The unmutated tree's checks, `repeat` times: the first run is the
/// reference, the trials that differ in a later one are flaky.
fn run_reference(
    bench: &mut Bench,
    built: &Built,
    out: &Path,
    seed: u64,
    repeat: u32,
) -> anyhow::Result<(SideRun, ReferenceFacts)> {
    let reference = bench.run(built, "unmutated", &out.join("unmutated"), seed)?;
    let mut facts = ReferenceFacts {
        seconds: reference.seconds + built.seconds,
        flaky: BTreeSet::new(),
        explore: reference.findings.as_ref().map(|found| ReferenceFindings {
            in_any: found.clone(),
            in_every: found.clone(),
        }),
    };
    for n in 2..=repeat {
        let dir = out.join(format!("unmutated-{n}"));
        let again = bench.run(built, "unmutated", &dir, seed)?;
        facts.seconds += again.seconds;
        if let (Some(seen), Some(found)) = (&mut facts.explore, &again.findings) {
            seen.in_any.extend(found.iter().cloned());
            seen.in_every.retain(|label| found.contains(label));
        }
        let between = compare::compare(reference.side.clone(), again.side);
        facts.flaky.extend(verdict::differing(&between));
    }
    Ok((reference, facts))
}

/// One mutant planted, built, checked and judged against the reference.
fn one(
    bench: &mut Bench,
    mutant: &Mutant,
    reference: &SideRun,
    facts: &ReferenceFacts,
    out: &Path,
    seed: u64,
) -> MutantResult {
    let result = |fate, build_seconds, run_seconds| MutantResult {
        mutant: mutant.clone(),
        fate,
        build_seconds,
        run_seconds,
    };
    let t0 = Instant::now();
    let mut built = bench.build(&mutant.change);
    for variant in &mutant.variants {
        if !matches!(built, Err(BuildFailure::DoesNotApply(_))) {
            break;
        }
        built = bench.build(variant);
    }
    let built = match built {
        Ok(built) => built,
        Err(BuildFailure::DoesNotApply(why)) => return result(Fate::DidNotApply { why }, 0.0, 0.0),
        Err(BuildFailure::DoesNotBuild(why)) => {
            return result(Fate::DidNotBuild { why }, t0.elapsed().as_secs_f64(), 0.0)
        }
        Err(BuildFailure::Other(e)) => {
            let why = format!("{e:#}");
            return result(Fate::Error { why }, t0.elapsed().as_secs_f64(), 0.0);
        }
    };
    let dir = out.join("runs").join(&mutant.name);
    let until = match &facts.explore {
        Some(seen) => Until::NewFinding(seen.in_any.clone()),
        None => Until::Budget,
    };
    let run = match bench.run_until(&built, &mutant.name, &dir, seed, &until) {
        Ok(run) => run,
        Err(e) => {
            let why = format!("{e:#}");
            return result(Fate::Error { why }, built.seconds, 0.0);
        }
    };
    let run_seconds = run.seconds;
    let comparison = compare::compare(reference.side.clone(), run.side);
    let mut judged = verdict::judge(&comparison, &facts.flaky);
    if let (Some(seen), Some(found)) = (&facts.explore, &run.findings) {
        let (only_baseline, only_candidate) =
            mutant_explore_difference(seen, found, run.explore_ended_by.is_some());
        judged.add_explore(&only_baseline, &only_candidate);
    }
    let by: Vec<Kill> = judged
        .trials
        .iter()
        .filter(|t| {
            matches!(
                t.effect,
                verdict::Effect::Regresses | verdict::Effect::Changes | verdict::Effect::Fixes
            )
        })
        .map(|t| Kill {
            check: t.name.clone(),
            set: score::check_set(&t.name),
            how: if t.differs.is_empty() || t.baseline != t.candidate {
                format!("{} -> {}", t.baseline, t.candidate)
            } else {
                format!("{} differs", t.differs.join(", "))
            },
            hung: t.hung,
        })
        .collect();
    let compared = judged.same + judged.trials.len() - judged.count(verdict::Effect::NotCompared);
    let fate = if !by.is_empty() {
        Fate::seen_by(by)
    } else if compared == 0 {
        Fate::Error {
            why: "no trial could be compared (infrastructure errors)".into(),
        }
    } else {
        Fate::Survived
    };
    // A killed mutant's evidence is its results; its guests' folders go.
    if fate.seen().is_some() {
        let _ = std::fs::remove_dir_all(dir.join("runs"));
    }
    result(fate, built.seconds, run_seconds)
}

/// What the whole run shares, for its reports.
struct RunFacts<'a> {
    seed: u64,
    reference: &'a ReferenceFacts,
    /// The check sets the reference ran.
    ran: &'a [&'static str],
    previous: &'a [score::PreviousScore],
}

/// mutate.json and mutate.html as they stand.
fn write(
    out: &Path,
    bench: &Bench,
    args: &MutateArgs,
    run: &RunFacts,
    results: &[MutantResult],
) -> anyhow::Result<(std::path::PathBuf, std::path::PathBuf)> {
    let RunFacts {
        seed,
        reference,
        ran,
        previous,
    } = *run;
    let scores = score::scores(results, ran);
    let report = Report {
        tree: bench.tree().display().to_string(),
        profile: &args.checks.profile,
        filter: (!args.checks.filters.is_empty()).then(|| args.checks.filters.join(" ")),
        power_cut: args.checks.power_cut,
        explore_seconds: args.checks.explore.map(|d| d.as_secs_f64()),
        seed,
        reference_seconds: reference.seconds,
        reference_runs: args.repeat,
        flaky_on_reference: &reference.flaky,
        scores: scores.clone(),
        previous_scores: previous,
        mutants: results,
    };
    let json = out.join("mutate.json");
    std::fs::write(
        &json,
        serde_json::to_string_pretty(&report).expect("a report serializes"),
    )
    .with_context(|| format!("writing {}", json.display()))?;
    let html = out.join("mutate.html");
    let title = format!("ndharness mutate: {}", bench.tree().display());
    std::fs::write(
        &html,
        score::render_html(results, &scores, previous, &title),
    )
    .with_context(|| format!("writing {}", html.display()))?;
    Ok((json, html))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(labels: &[&str]) -> BTreeSet<String> {
        labels.iter().map(|l| l.to_string()).collect()
    }

    #[test]
    fn a_mutants_explore_is_judged_against_every_reference_run() {
        // `c` came in the reference's second run only, `b` in both: flaky
        // `c` neither kills when found nor when lacking.
        let reference = ReferenceFindings {
            in_any: set(&["b at destroy on cxl-x2", "c at create on cxl-x2"]),
            in_every: set(&["b at destroy on cxl-x2"]),
        };
        let mutant = set(&["d at reboot on nfit-1"]);
        let (lacking, new) = mutant_explore_difference(&reference, &mutant, false);
        assert_eq!(lacking, vec!["b at destroy on cxl-x2"]);
        assert_eq!(new, vec!["d at reboot on nfit-1"]);
        // Ended early at `d`: what it did not reach is no difference.
        let (lacking, new) = mutant_explore_difference(&reference, &mutant, true);
        assert!(lacking.is_empty());
        assert_eq!(new, vec!["d at reboot on nfit-1"]);
        let (lacking, new) = mutant_explore_difference(&reference, &reference.in_every, false);
        assert!(lacking.is_empty() && new.is_empty());
    }
}
