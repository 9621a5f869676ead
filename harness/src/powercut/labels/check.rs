//! What the label areas of one region say together: the namespaces the
//! kernel would find in them (`scan_labels`, `has_uuid_at_pos`,
//! `create_namespace_pmem` in drivers/nvdimm/namespace_devs.c), and the
//! invariants a power cut must keep, which the kernel's write order
//! (label into a free slot, then the other index) promises at any cut:
//!
//! 1. each DIMM has a valid index (or was never labelled);
//! 2. every in-use slot of the current index holds a valid label;
//! 3. (the namespace set is the one before or after the step: the caller
//!    compares [`namespaces`] with the generations it knows);
//! 4. on a W-way region each uuid is at all positions 0..W-1, or none.
//!
//! Beside them, [`check`] reports what no cut of that order leaves: an
//! index block written but invalid beside a valid one (a torn or corrupted
//! write) and a uuid twice on one DIMM.
//!
//! The kernel checks the interleave-set cookie, the type GUID and the DPA
//! range of a label against the region too; none of them is on the media,
//! so they are not checked here.

use std::collections::{BTreeMap, BTreeSet};

use super::index::IndexFault;
use super::label::{ClaimClass, LabelFault, LabelFormat, NamespaceLabel, Uuid};
use super::LabelArea;

/// A namespace as the label areas of its region describe it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NamespaceKey {
    pub uuid: Uuid,
    /// The sum of its labels' rawsize over the DIMMs.
    pub size: u64,
    /// The name, claim class and lbasize of its position-0 label (of the
    /// first found, when position 0 has none).
    pub name: String,
    pub claim: ClaimClass,
    pub lbasize: u64,
    /// Positions 0..W-1 that hold no label of this uuid: empty for a
    /// namespace the kernel would create (see [`LabelViolation`]'s
    /// `PartialNamespace` and `OrphanLabels` for what it does otherwise).
    pub missing_positions: Vec<u16>,
}

/// A broken invariant of the label areas of one region (`dimm` is the
/// area's place in the slice given to [`check`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LabelViolation {
    #[error("DIMM {dimm}: no valid index block (index 0: {}, index 1: {})", faults[0], faults[1])]
    NoValidIndex {
        dimm: usize,
        faults: [IndexFault; 2],
    },
    /// A block that was written (not all zero) but does not validate,
    /// beside a valid one. The kernel writes whole blocks, so only a torn
    /// or corrupted write leaves one; the kernel falls back to the other.
    #[error("DIMM {dimm}: index {index} is damaged ({fault}); the kernel uses the other")]
    IndexDamaged {
        dimm: usize,
        index: usize,
        fault: IndexFault,
    },
    #[error("DIMM {dimm}: slot {slot} is in use in the current index but its label is invalid ({fault})")]
    InvalidLabelInUse {
        dimm: usize,
        slot: u32,
        fault: LabelFault,
    },
    /// The kernel refuses a uuid found twice on one DIMM
    /// (`has_uuid_at_pos`: "duplicate entry for uuid").
    #[error("DIMM {dimm}: uuid {uuid} in slots {slots:?}")]
    DuplicateUuid {
        dimm: usize,
        uuid: Uuid,
        slots: Vec<u32>,
    },
    /// The first DIMM holds a label of the uuid, so the kernel tries the
    /// namespace and fails the whole region's probe ("missing label for"):
    /// every namespace of the region is gone.
    #[error("uuid {uuid} has no label at positions {missing:?} of a {width}-way region; the region will not probe")]
    PartialNamespace {
        uuid: Uuid,
        width: usize,
        missing: Vec<u16>,
    },
    /// The first DIMM holds no label of the uuid, so the kernel never
    /// looks at the others (`scan_labels` walks the first mapping only);
    /// their DPA stays reserved.
    #[error("uuid {uuid} has no label at positions {missing:?} of a {width}-way region, none on its first DIMM: orphan labels")]
    OrphanLabels {
        uuid: Uuid,
        width: usize,
        missing: Vec<u16>,
    },
}

/// The namespaces the active labels of a region's DIMMs describe; `areas`
/// holds one area per DIMM of the region, so W = `areas.len()`. A uuid
/// missing at some positions is there too, with those positions.
pub fn namespaces(areas: &[LabelArea]) -> BTreeSet<NamespaceKey> {
    let width = areas.len();
    let mut by_uuid: BTreeMap<Uuid, Vec<&NamespaceLabel>> = BTreeMap::new();
    for area in areas {
        let mut seen = BTreeSet::new();
        // One label a uuid a DIMM, as `select_pmem_id` takes the first.
        for label in area.active_labels() {
            if seen.insert(label.uuid) {
                by_uuid.entry(label.uuid).or_default().push(label);
            }
        }
    }
    by_uuid
        .into_iter()
        .map(|(uuid, labels)| namespace(uuid, &labels, width))
        .collect()
}

fn namespace(uuid: Uuid, labels: &[&NamespaceLabel], width: usize) -> NamespaceKey {
    let present: BTreeSet<u16> = labels
        .iter()
        .filter(|l| counts_in_set(l, width))
        .map(|l| l.position)
        .collect();
    let missing_positions = (0..width as u16).filter(|p| !present.contains(p)).collect();
    let head = labels
        .iter()
        .find(|l| l.position == 0)
        .or(labels.first())
        .copied();
    NamespaceKey {
        uuid,
        size: labels.iter().map(|l| l.rawsize).sum(),
        name: head.map(|l| l.name.clone()).unwrap_or_default(),
        claim: head.map_or(ClaimClass::None, |l| l.claim),
        lbasize: head.map_or(0, |l| l.lbasize),
        missing_positions,
    }
}

/// `nsl_validate_nlabel`: an EFI label counts at its position only when
/// its set is as wide as the region; CXL labels have no such field.
fn counts_in_set(label: &NamespaceLabel, width: usize) -> bool {
    match label.format {
        LabelFormat::Efi { nlabel, .. } => usize::from(nlabel) == width,
        LabelFormat::Cxl { .. } => true,
    }
}

/// The uuids of a region's interrupted updates: sets missing at some
/// positions whose labels are marked UPDATING. The UEFI specification
/// (2.7, 13.19, "Recovery Steps for a Non-Local Label Set") makes them a
/// state a reader must expect: it rolls the interrupted create back. No
/// broken invariant of the media, then; a kernel that fails the region on
/// one is judged by the restart ([`crate::powercut::classify::judge`]).
pub fn interrupted(areas: &[LabelArea]) -> Vec<Uuid> {
    let mut out: BTreeSet<Uuid> = BTreeSet::new();
    let partial: BTreeSet<Uuid> = namespaces(areas)
        .into_iter()
        .filter(|ns| !ns.missing_positions.is_empty())
        .map(|ns| ns.uuid)
        .collect();
    for area in areas {
        for label in area.active_labels() {
            if partial.contains(&label.uuid) && label.flags & super::label::FLAG_UPDATING != 0 {
                out.insert(label.uuid);
            }
        }
    }
    out.into_iter().collect()
}

/// Every broken invariant of a region's label areas: one area per DIMM,
/// in the region's mapping order (the DIMM at position 0 first). An
/// interrupted update ([`interrupted`]) is not one.
pub fn check(areas: &[LabelArea]) -> Vec<LabelViolation> {
    let mut found = Vec::new();
    for (dimm, area) in areas.iter().enumerate() {
        found.extend(index_violations(dimm, area));
        found.extend(label_violations(dimm, area));
    }
    let on_first_dimm: BTreeSet<Uuid> = areas
        .first()
        .map(|a| a.active_labels().map(|l| l.uuid).collect())
        .unwrap_or_default();
    let width = areas.len();
    let interrupted = interrupted(areas);
    for ns in namespaces(areas) {
        let (uuid, missing) = (ns.uuid, ns.missing_positions);
        if missing.is_empty() || interrupted.contains(&uuid) {
            continue;
        }
        found.push(if on_first_dimm.contains(&uuid) {
            LabelViolation::PartialNamespace {
                uuid,
                width,
                missing,
            }
        } else {
            LabelViolation::OrphanLabels {
                uuid,
                width,
                missing,
            }
        });
    }
    found
}

fn index_violations(dimm: usize, area: &LabelArea) -> Vec<LabelViolation> {
    let fault = |i: usize| area.indexes[i].fault.clone();
    match (area.current, fault(0), fault(1)) {
        (None, Some(f0), Some(f1)) if !area.blank => vec![LabelViolation::NoValidIndex {
            dimm,
            faults: [f0, f1],
        }],
        (Some(current), ..) => {
            let other = 1 - current;
            match fault(other) {
                Some(fault) if !area.indexes[other].blank => vec![LabelViolation::IndexDamaged {
                    dimm,
                    index: other,
                    fault,
                }],
                _ => Vec::new(),
            }
        }
        _ => Vec::new(),
    }
}

fn label_violations(dimm: usize, area: &LabelArea) -> Vec<LabelViolation> {
    let mut found: Vec<LabelViolation> = area
        .labels
        .iter()
        .filter_map(|l| {
            l.fault
                .clone()
                .map(|fault| LabelViolation::InvalidLabelInUse {
                    dimm,
                    slot: l.slot,
                    fault,
                })
        })
        .collect();
    let mut slots_by_uuid: BTreeMap<Uuid, Vec<u32>> = BTreeMap::new();
    for label in area.active_labels() {
        slots_by_uuid
            .entry(label.uuid)
            .or_default()
            .push(label.slot);
    }
    found.extend(
        slots_by_uuid
            .into_iter()
            .filter(|(_, slots)| slots.len() > 1)
            .map(|(uuid, slots)| LabelViolation::DuplicateUuid { dimm, uuid, slots }),
    );
    found
}
