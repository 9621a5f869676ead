//! The verdict on one crash image: what its label areas hold (read on the
//! host), what the guest started on it found, and which generation of the
//! step it is: the namespaces before the step, after it, or between (ndctl
//! makes a namespace with several label updates, uuid, size, sector size,
//! claim: each is atomic, the command is not, so a cut may leave a
//! namespace of the step's uuid at its raw size and no claim yet). Anything
//! else is a violation: labels the kernel's write order never leaves, a
//! namespace that is neither before nor after nor the step's own, a kernel
//! that does not find what the labels hold, a kernel report, a failing
//! `check-labels`, a further create refused.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use super::filesystem::FilesystemView;
use super::labels::{LabelViolation, NamespaceKey, Uuid};
use super::sectors::SectorTally;

/// What a guest started on a crash image showed.
#[derive(Clone, Debug, Default)]
pub struct GuestView {
    /// Namespaces with capacity, by sysfs: raw UUID and raw size.
    pub namespaces: BTreeSet<(Uuid, u64)>,
    pub region_enabled: bool,
    /// Kernel reports (first lines) while the drivers probed.
    pub kernel_reports: Vec<String>,
    /// `ndctl check-labels` per DIMM: its name and whether it passed.
    pub check_labels: Vec<(String, bool)>,
    /// A create of one align after the checks: none when the region had
    /// no room for it; else whether it succeeded.
    pub further_create: Option<bool>,
    /// The drivers or the CXL region assembly failing, as it said.
    pub setup_failure: Option<String>,
    /// The sectors a case asked to be read, judged.
    pub sectors: Option<SectorTally>,
    /// The filesystem a case asked to be checked, and what it showed.
    pub filesystem: Option<FilesystemView>,
}

/// How a crash image came out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CrashOutcome {
    Before,
    After,
    Between,
    Violation(String),
}

impl CrashOutcome {
    pub fn class(&self) -> &'static str {
        match self {
            CrashOutcome::Before => "before",
            CrashOutcome::After => "after",
            CrashOutcome::Between => "between",
            CrashOutcome::Violation(_) => "VIOLATION",
        }
    }
}

impl fmt::Display for CrashOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CrashOutcome::Violation(why) => write!(f, "VIOLATION: {why}"),
            other => f.write_str(other.class()),
        }
    }
}

/// The namespace sets the step went from and to (by their labels).
#[derive(Clone, Debug)]
pub struct Generations {
    pub before: BTreeSet<NamespaceKey>,
    pub after: BTreeSet<NamespaceKey>,
}

fn uuids(set: &BTreeSet<NamespaceKey>) -> BTreeSet<Uuid> {
    set.iter().map(|k| k.uuid).collect()
}

/// Judges one crash image.
pub fn judge(
    media: &BTreeSet<NamespaceKey>,
    label_violations: &[LabelViolation],
    guest: &GuestView,
    generations: &Generations,
) -> CrashOutcome {
    judge_with_interrupted(media, label_violations, &[], guest, generations)
}

/// [`judge`], with the updates the cut interrupted ([`labels::interrupted`]):
/// a reader must roll each back (UEFI 2.7, 13.19), so the region must come
/// back without it.
///
/// [`labels::interrupted`]: super::labels::interrupted
pub fn judge_with_interrupted(
    media: &BTreeSet<NamespaceKey>,
    label_violations: &[LabelViolation],
    interrupted: &[Uuid],
    guest: &GuestView,
    generations: &Generations,
) -> CrashOutcome {
    if let Some(v) = label_violations.first() {
        return CrashOutcome::Violation(format!("labels: {v}"));
    }
    if let Some(report) = guest.kernel_reports.first() {
        return CrashOutcome::Violation(format!(
            "kernel report while the drivers probed: {report}"
        ));
    }
    if let (Some(uuid), false) = (interrupted.first(), guest.region_enabled) {
        return CrashOutcome::Violation(format!(
            "uuid {uuid} is an update the cut interrupted (its set incomplete, marked \
             UPDATING), which a reader must roll back (UEFI 2.7, 13.19); the region will \
             not probe"
        ));
    }
    if let Some(failure) = &guest.setup_failure {
        return CrashOutcome::Violation(failure.clone());
    }
    if let Some(sectors) = guest.sectors.as_ref().filter(|s| !s.is_consistent()) {
        return CrashOutcome::Violation(sectors.to_string());
    }
    if let Some(filesystem) = guest.filesystem.as_ref().filter(|f| !f.is_consistent()) {
        return CrashOutcome::Violation(filesystem.to_string());
    }
    let held: BTreeSet<(Uuid, u64)> = media
        .iter()
        .filter(|k| k.missing_positions.is_empty())
        .map(|k| (k.uuid, k.size))
        .collect();
    if !held.is_empty() && !guest.region_enabled {
        return CrashOutcome::Violation(format!(
            "the region did not come back, though its labels hold {} namespaces",
            held.len()
        ));
    }
    if held != guest.namespaces {
        return CrashOutcome::Violation(format!(
            "the kernel found {:?}, the labels hold {:?}",
            guest.namespaces, held
        ));
    }
    if let Some((dimm, _)) = guest.check_labels.iter().find(|(_, ok)| !ok) {
        return CrashOutcome::Violation(format!("`ndctl check-labels {dimm}` failed"));
    }
    if guest.further_create == Some(false) {
        return CrashOutcome::Violation("a further create-namespace was refused".into());
    }
    generation(media, generations)
}

/// Which generation of the step `media` is.
fn generation(media: &BTreeSet<NamespaceKey>, generations: &Generations) -> CrashOutcome {
    if *media == generations.before {
        return CrashOutcome::Before;
    }
    if *media == generations.after {
        return CrashOutcome::After;
    }
    let known: BTreeSet<Uuid> = uuids(&generations.before)
        .union(&uuids(&generations.after))
        .copied()
        .collect();
    if let Some(stranger) = media.iter().find(|k| !known.contains(&k.uuid)) {
        return CrashOutcome::Violation(format!(
            "namespace {:?} is neither before the step, nor after it, nor the step's own",
            stranger.uuid
        ));
    }
    let kept: BTreeSet<Uuid> = uuids(&generations.before)
        .intersection(&uuids(&generations.after))
        .copied()
        .collect();
    if let Some(lost) = kept.difference(&uuids(media)).next() {
        return CrashOutcome::Violation(format!(
            "namespace {lost:?}, which the step leaves alone, is gone"
        ));
    }
    CrashOutcome::Between
}

/// Outcomes counted by class, for the transcript.
pub fn tally(outcomes: &[CrashOutcome]) -> BTreeMap<&'static str, usize> {
    let mut counts = BTreeMap::new();
    for o in outcomes {
        *counts.entry(o.class()).or_default() += 1;
    }
    counts
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::powercut::labels::ClaimClass;

    fn key(byte: u8, size: u64, claim: ClaimClass) -> NamespaceKey {
        NamespaceKey {
            uuid: Uuid([byte; 16]),
            size,
            name: String::new(),
            claim,
            lbasize: 0,
            missing_positions: Vec::new(),
        }
    }

    fn guest_on(media: &BTreeSet<NamespaceKey>) -> GuestView {
        GuestView {
            namespaces: media.iter().map(|k| (k.uuid, k.size)).collect(),
            region_enabled: true,
            further_create: Some(true),
            ..Default::default()
        }
    }

    #[test]
    fn before_after_and_between_a_create() {
        let old = key(1, 64 << 20, ClaimClass::Pfn);
        let new = key(2, 32 << 20, ClaimClass::Pfn);
        let gens = Generations {
            before: [old.clone()].into(),
            after: [old.clone(), new.clone()].into(),
        };
        let judge_media = |m: BTreeSet<NamespaceKey>| judge(&m, &[], &guest_on(&m), &gens);
        assert_eq!(judge_media(gens.before.clone()), CrashOutcome::Before);
        assert_eq!(judge_media(gens.after.clone()), CrashOutcome::After);
        // The new namespace at its size, its claim not yet written.
        let raw = key(2, 32 << 20, ClaimClass::None);
        assert_eq!(
            judge_media([old.clone(), raw].into()),
            CrashOutcome::Between
        );
        // The old namespace gone, or a stranger: never a cut's doing.
        assert!(matches!(
            judge_media([new.clone()].into()),
            CrashOutcome::Violation(_)
        ));
        let stranger = key(9, 16 << 20, ClaimClass::None);
        assert!(matches!(
            judge_media([old, stranger].into()),
            CrashOutcome::Violation(_)
        ));
    }

    #[test]
    fn an_interrupted_update_is_rolled_back_or_the_region_is_lost() {
        let old = key(1, 64 << 20, ClaimClass::Pfn);
        let torn = NamespaceKey {
            missing_positions: vec![1],
            ..key(2, 32 << 20, ClaimClass::Pfn)
        };
        let gens = Generations {
            before: [old.clone()].into(),
            after: [old.clone(), key(2, 64 << 20, ClaimClass::Pfn)].into(),
        };
        let media: BTreeSet<NamespaceKey> = [old.clone(), torn.clone()].into();
        // Rolled back: the region came back with the old namespace only.
        let guest = guest_on(&[old.clone()].into());
        let outcome = judge_with_interrupted(&media, &[], &[torn.uuid], &guest, &gens);
        assert!(!matches!(outcome, CrashOutcome::Violation(_)), "{outcome}");
        // The region refused: every namespace of it is lost.
        let mut lost = guest_on(&BTreeSet::new());
        lost.region_enabled = false;
        let outcome = judge_with_interrupted(&media, &[], &[torn.uuid], &lost, &gens);
        assert!(
            matches!(&outcome, CrashOutcome::Violation(w) if w.contains("roll back") && w.contains("the region will not probe")),
            "{outcome}"
        );
    }

    #[test]
    fn a_kernel_that_does_not_find_the_labels_namespaces_is_a_violation() {
        let new = key(2, 32 << 20, ClaimClass::Pfn);
        let gens = Generations {
            before: BTreeSet::new(),
            after: [new.clone()].into(),
        };
        let media: BTreeSet<NamespaceKey> = [new].into();
        let mut guest = guest_on(&media);
        guest.region_enabled = false;
        guest.namespaces.clear();
        let outcome = judge(&media, &[], &guest, &gens);
        assert!(
            matches!(&outcome, CrashOutcome::Violation(w) if w.contains("did not come back")),
            "{outcome}"
        );
        let mut guest = guest_on(&media);
        guest.check_labels.push(("nmem0".into(), false));
        assert!(matches!(
            judge(&media, &[], &guest, &gens),
            CrashOutcome::Violation(_)
        ));
        let mut guest = guest_on(&media);
        guest.kernel_reports.push("WARNING: at label.c".into());
        assert!(matches!(
            judge(&media, &[], &guest, &gens),
            CrashOutcome::Violation(_)
        ));
        let counted = tally(&[
            CrashOutcome::Before,
            CrashOutcome::Before,
            CrashOutcome::After,
        ]);
        assert_eq!(counted.get("before"), Some(&2));
    }
}
