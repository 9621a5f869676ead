//! One `power_cut:` step from start to verdicts: the label areas read
//! before it, the step run once with its crash images taken (before each
//! label write or each namespace write, or at random moments, and after
//! it), then for each crash point the selection judges
//! ([`super::sample`]) its labels read on the host and a guest started on
//! it, and the image judged ([`classify::judge`]). Images and restart folders are kept only
//! for the points that broke something: they are the evidence.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::classify::{self, CrashOutcome, Generations};
use super::filesystem;
use super::media::{self, Media};
use super::record::{self, CrashImage, CrashPoint, MediaWrite, Watched};
use super::restart::{self, Checks};
use super::sample::{self, Chosen};
use crate::suite::PointSelection;
use crate::suite::{CutPoints, FilesystemCheck, PowerCut};
use crate::vm::agent::ExecOutput;
use crate::vm::machine::{self, Machine, StartSpec};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Media(#[from] media::Error),
    #[error(transparent)]
    Record(#[from] record::Error),
    #[error("the files the filesystem check keeps could not be read before the step: {0}")]
    Kept(String),
    #[error("restarting on the image {point}: {source}")]
    Restart {
        point: CrashPoint,
        source: restart::Error,
    },
}

/// How one crash point came out.
#[derive(Clone, Debug)]
pub struct PointResult {
    pub point: CrashPoint,
    pub outcome: CrashOutcome,
    /// The restart and its checks.
    pub cost: Duration,
    /// What the sectors or the filesystem held, when the step names them.
    pub checked: Option<String>,
    /// The image and the restart's run folder, kept for a violation.
    pub evidence: Option<(PathBuf, PathBuf)>,
}

/// What a power-cut step did.
pub struct CutReport {
    /// The step's own run (the guest that was never cut).
    pub output: Result<ExecOutput, machine::Error>,
    /// What the points were taken before; none for random moments (their
    /// outcomes vary from run to run, so the transcript does not name
    /// them).
    pub watched: Option<Watched>,
    pub writes: Vec<MediaWrite>,
    pub points: Vec<PointResult>,
    /// Which of the recorded points were judged.
    pub chosen: Chosen,
}

impl CutReport {
    pub fn violations(&self) -> impl Iterator<Item = &PointResult> {
        self.points
            .iter()
            .filter(|p| matches!(p.outcome, CrashOutcome::Violation(_)))
    }

    /// The lines the transcript shows: stable for a given kernel when the
    /// points are writes, and the same whether every point or a
    /// sample was judged (the outcomes' tally is in [`Self::details`]).
    pub fn summary(&self) -> String {
        let mut lines = Vec::new();
        let violations = self.violations().count();
        if let Some(watched) = self.watched {
            let mut per_device: Vec<(String, usize)> = Vec::new();
            for w in &self.writes {
                match per_device.iter_mut().find(|(d, _)| *d == w.device) {
                    Some((_, n)) => *n += 1,
                    None => per_device.push((w.device.clone(), 1)),
                }
            }
            let by: Vec<String> = per_device.iter().map(|(d, n)| format!("{d} {n}")).collect();
            lines.push(format!(
                "{}: {} ({})",
                watched.noun(),
                self.writes.len(),
                by.join(", ")
            ));
            lines.push(match violations {
                0 => "crash points: no violation".to_owned(),
                n => format!("crash points: {n} violations"),
            });
        } else {
            // How many moments fell inside the step varies: not shown.
            lines.push(format!(
                "crash points at random moments and after the step: {violations} violations"
            ));
        }
        for v in self.violations() {
            lines.push(format!("  {}: {}", v.point, v.outcome));
        }
        lines.join("\n")
    }

    /// How the judged points came out, by class, and how they were chosen.
    pub fn tally(&self) -> String {
        let outcomes: Vec<CrashOutcome> = self.points.iter().map(|p| p.outcome.clone()).collect();
        let tally: Vec<String> = classify::tally(&outcomes)
            .iter()
            .map(|(class, n)| format!("{class} {n}"))
            .collect();
        let chosen = self
            .chosen
            .describe()
            .unwrap_or_else(|| format!("all {} crash points judged", self.points.len()));
        format!("{chosen}: {}", tally.join(", "))
    }

    /// One line per point with its cost, for the evidence.
    pub fn details(&self) -> String {
        let mut text = format!("{}\n", self.tally());
        for w in &self.writes {
            text.push_str(&format!(
                "write {}: {} offset {:#x} length {}\n",
                w.number, w.device, w.offset, w.length
            ));
        }
        for p in &self.points {
            let sectors = p
                .checked
                .as_ref()
                .map(|s| format!("; {s}"))
                .unwrap_or_default();
            text.push_str(&format!(
                "{}: {}{sectors} ({:.2} s)\n",
                p.point,
                p.outcome,
                p.cost.as_secs_f64()
            ));
        }
        text
    }
}

/// Where a cut step works.
pub struct CutPlace<'a> {
    /// The trial's start (its saved state): each restart starts from it.
    pub spec: &'a StartSpec<'a>,
    /// Crash images and restart folders go under it.
    pub dir: &'a Path,
    /// Seeds the random moments and the sample (the trial's name and step).
    pub seed: u64,
    /// Which recorded points are judged.
    pub selection: PointSelection,
}

/// Runs `cut` in `m` with its power cuts and judges every crash image.
pub async fn run(
    m: &Machine,
    cut: &PowerCut,
    timeout: Duration,
    place: &CutPlace<'_>,
) -> Result<CutReport, Error> {
    let topology = place.spec.topology;
    let regions = media::regions(topology, &m.run.files)?;
    let before = media::read(&regions, &m.run.path)?;
    let images_dir = place.dir.join("images");
    let checksums = match &cut.filesystem {
        Some(check) => Some(kept_checksums(m, check, timeout).await?),
        None => None,
    };
    let watched = Watched::of(&cut.points);
    let recorded = record_step(m, cut, watched, timeout, place, &images_dir).await?;
    let after_dir = &recorded
        .images
        .last()
        .expect("the image after the step")
        .dir;
    let after = media::read(&regions, after_dir)?;
    let generations = Generations {
        before: before.namespaces,
        after: after.namespaces,
    };
    let checks = Checks {
        regions: regions.len(),
        sectors: cut.sectors.as_ref(),
        filesystem: cut.filesystem.as_ref().zip(checksums.as_deref()),
    };
    let crash_points: Vec<CrashPoint> = recorded.images.iter().map(|i| i.point.clone()).collect();
    let chosen = sample::choose(
        place.selection,
        watched,
        &recorded.writes,
        &crash_points,
        place.seed,
    );
    let mut points = Vec::new();
    for (i, image) in recorded.images.iter().enumerate() {
        if !chosen.keep.contains(&i) {
            remove(image);
            continue;
        }
        let t0 = Instant::now();
        let media = media::read(&regions, &image.dir)?;
        let name = format!("restart-{}", i + 1);
        let restart_error = |source| Error::Restart {
            point: image.point.clone(),
            source,
        };
        let (view, run) = restart::restart(place.spec, place.dir, &name, image, &media, &checks)
            .await
            .map_err(restart_error)?;
        let checked = view.as_ref().ok().and_then(|v| {
            let parts: Vec<String> = (v.sectors.iter().map(ToString::to_string))
                .chain(v.filesystem.iter().map(ToString::to_string))
                .collect();
            (!parts.is_empty()).then(|| parts.join("; "))
        });
        let outcome = match view {
            Ok(view) => judge(&media, &view, &generations),
            Err(e) if !e.is_infrastructure() => {
                let first = e.to_string().lines().next().unwrap_or("").to_owned();
                CrashOutcome::Violation(format!("the restarted guest failed: {first}"))
            }
            Err(e) => return Err(restart_error(e)),
        };
        let evidence = if matches!(outcome, CrashOutcome::Violation(_)) {
            Some((image.dir.clone(), run.path.clone()))
        } else {
            run.remove();
            remove(image);
            None
        };
        points.push(PointResult {
            point: image.point.clone(),
            outcome,
            cost: t0.elapsed(),
            checked,
            evidence,
        });
    }
    Ok(CutReport {
        watched,
        output: recorded.output,
        writes: recorded.writes,
        points,
        chosen,
    })
}

/// Runs the step once with its crash images taken into `images_dir`.
async fn record_step(
    m: &Machine,
    cut: &PowerCut,
    watched: Option<Watched>,
    timeout: Duration,
    place: &CutPlace<'_>,
    images_dir: &Path,
) -> Result<record::Recorded, Error> {
    let argv = crate::command_line::shell(cut.run.clone());
    if let CutPoints::Random { count, within } = &cut.points {
        let moments = moments(place.seed, *count, *within);
        return Ok(record::at_moments(m, &argv, timeout, &moments, images_dir).await?);
    }
    let watched = watched.expect("points not at random moments are writes");
    let address = record::symbol(m, watched.entry(place.spec.topology)).await?;
    Ok(record::before_writes(m, &argv, timeout, watched, address, images_dir).await?)
}

/// The kept files' checksums, from the live guest before the step.
async fn kept_checksums(
    m: &Machine,
    check: &FilesystemCheck,
    timeout: Duration,
) -> Result<String, Error> {
    let argv = crate::command_line::shell(filesystem::checksums_command(check));
    let out = m.exec(&argv, timeout).await.map_err(record::Error::Guest)?;
    if !out.success() {
        return Err(Error::Kept(filesystem::first_lines(
            &format!("{}{}", out.stdout_text(), out.stderr_text()),
            3,
        )));
    }
    Ok(out.stdout_text())
}

fn judge(media: &Media, view: &classify::GuestView, generations: &Generations) -> CrashOutcome {
    let violations: Vec<_> = media.violations.iter().map(|(_, v)| v.clone()).collect();
    let interrupted: Vec<_> = media.interrupted.iter().map(|(_, u)| *u).collect();
    match classify::judge_with_interrupted(
        &media.namespaces,
        &violations,
        &interrupted,
        view,
        generations,
    ) {
        // Name the region the labels broke in.
        CrashOutcome::Violation(why) if !violations.is_empty() => CrashOutcome::Violation(format!(
            "{why} ({})",
            media.first_violation().unwrap_or_default()
        )),
        other => other,
    }
}

fn remove(image: &CrashImage) {
    let _ = std::fs::remove_dir_all(&image.dir);
}

/// `count` moments within `within`, sorted, the same for the same seed
/// (splitmix64: a case's cuts fall at the same moments run after run).
pub fn moments(seed: u64, count: u32, within: Duration) -> Vec<Duration> {
    let mut state = seed;
    let mut next = || crate::seeded::splitmix64(&mut state);
    let span = within.as_micros().max(1) as u64;
    let mut out: Vec<Duration> = (0..count)
        .map(|_| Duration::from_micros(next() % span))
        .collect();
    out.sort();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn moments_are_sorted_within_and_fixed_by_the_seed() {
        let a = moments(7, 16, Duration::from_secs(2));
        assert_eq!(a.len(), 16);
        assert!(a.windows(2).all(|w| w[0] <= w[1]));
        assert!(a.iter().all(|m| *m < Duration::from_secs(2)));
        assert_eq!(a, moments(7, 16, Duration::from_secs(2)));
        assert_ne!(a, moments(8, 16, Duration::from_secs(2)));
    }
}
