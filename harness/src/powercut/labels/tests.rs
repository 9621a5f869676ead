//! Label areas written in code the way the kernel writes them
//! ([`builder`]), read back: good areas give their namespaces; every cut
//! of the kernel's write order keeps the invariants; and the check fails
//! where it must: a corrupted newer index (the older one is used, the
//! namespace set changes, the damage is reported), an index written before
//! its label, a uuid at one of two positions.

mod builder;

use std::collections::BTreeSet;

use self::builder::{uuid, Namespace, Region, Write};
use super::*;

const AREA: usize = 128 << 10;

fn ns(n: u8, claim: ClaimClass) -> Namespace {
    Namespace {
        uuid: uuid(n),
        name: format!("ns{n}"),
        rawsize: 64 << 20,
        claim,
    }
}

fn parse_all(areas: &[Vec<u8>], layout: LabelLayout) -> Vec<LabelArea> {
    areas
        .iter()
        .map(|a| LabelArea::parse(a, layout).unwrap())
        .collect()
}

fn uuids(set: &BTreeSet<NamespaceKey>) -> Vec<Uuid> {
    set.iter().map(|k| k.uuid).collect()
}

#[test]
fn fletcher64_is_the_kernels() {
    // Words 1, 2: lo = 1 then 3, hi = 1 + 3.
    assert_eq!(fletcher64(&[1, 0, 0, 0, 2, 0, 0, 0]), 4 << 32 | 3);
    // lo wraps at 32 bits; hi is summed in 64 and its carry shifted out:
    // hi = 0xffff_ffff + 0xffff_fffe = 0x1_ffff_fffd.
    assert_eq!(fletcher64(&[0xff; 8]), 0xffff_fffd << 32 | 0xffff_fffe);
}

#[test]
fn a_good_v1_2_area_gives_its_namespaces() {
    let mut region = Region::new(1, AREA, LabelLayout::Efi, 256);
    region.update(&ns(1, ClaimClass::Pfn));
    region.update(&ns(2, ClaimClass::None));
    let areas = parse_all(&region.replay(&region.log), LabelLayout::Efi);
    let area = &areas[0];
    assert_eq!((area.label_size, area.index_size), (256, 256));
    assert_eq!(area.indexes.each_ref().map(|i| i.nslot), [510, 510]);
    assert!(area.indexes.iter().all(|i| i.is_valid()));
    // init (3, 2), then four index writes: 1 (index 1), 2 (0), 3 (1), 1 (0).
    assert_eq!(area.current, Some(0));
    assert_eq!(area.indexes.each_ref().map(|i| i.seq), [1, 3]);
    let slots: Vec<u32> = area.labels.iter().map(|l| l.slot).collect();
    assert_eq!(slots, [1, 2], "the second pass's labels");
    assert!(area.labels.iter().all(|l| l.is_valid() && l.flags == 0));
    let found = namespaces(&areas);
    let expected: BTreeSet<NamespaceKey> = [(1, ClaimClass::Pfn), (2, ClaimClass::None)]
        .into_iter()
        .map(|(n, claim)| NamespaceKey {
            uuid: uuid(n),
            size: 64 << 20,
            name: format!("ns{n}"),
            claim,
            lbasize: 0,
            missing_positions: Vec::new(),
        })
        .collect();
    assert_eq!(found, expected);
    assert_eq!(check(&areas), vec![]);
}

#[test]
fn v1_1_and_cxl_areas_parse_too() {
    let mut region = Region::new(2, AREA, LabelLayout::Efi, 128);
    region.update(&ns(1, ClaimClass::Dax));
    let areas = parse_all(&region.replay(&region.log), LabelLayout::Efi);
    assert_eq!(areas[0].label_size, 128);
    assert_eq!(areas[0].indexes[0].nslot, 1020);
    let found = namespaces(&areas);
    // v1.1 labels have no abstraction GUID: the claim is lost.
    assert_eq!(
        found.first().map(|k| (k.size, k.claim)),
        Some((128 << 20, ClaimClass::None))
    );
    assert_eq!(check(&areas), vec![]);

    let mut region = Region::new(2, AREA, LabelLayout::Cxl, 256);
    region.update(&ns(1, ClaimClass::Btt));
    let areas = parse_all(&region.replay(&region.log), LabelLayout::Cxl);
    let key = namespaces(&areas).pop_first().unwrap();
    assert_eq!(
        (key.uuid, key.size, key.claim),
        (uuid(1), 128 << 20, ClaimClass::Btt)
    );
    assert_eq!((key.name.as_str(), key.lbasize), ("ns1", 512));
    assert_eq!(check(&areas), vec![]);
    // Read as EFI, a CXL label's uuid field is its type: not the namespace.
    let as_efi = parse_all(&region.replay(&region.log), LabelLayout::Efi);
    assert!(!uuids(&namespaces(&as_efi)).contains(&uuid(1)));
}

#[test]
fn a_blank_area_has_no_index_and_breaks_nothing() {
    let areas = parse_all(&[vec![0u8; AREA]], LabelLayout::Efi);
    assert_eq!(areas[0].current, None);
    assert!(areas[0].blank);
    assert_eq!(areas[0].indexes[0].fault, Some(IndexFault::Signature));
    assert_eq!(check(&areas), vec![]);
    assert!(matches!(
        LabelArea::parse(&[0u8; 600], LabelLayout::Efi),
        Err(Error::AreaTooSmall { size: 600 })
    ));
}

/// Every prefix of the kernel's writes is a power cut. On one DIMM each
/// keeps the invariants and shows the namespaces before or after.
#[test]
fn every_cut_of_the_kernels_order_is_consistent() {
    let mut region = Region::new(1, AREA, LabelLayout::Efi, 256);
    region.update(&ns(1, ClaimClass::Pfn));
    let start = region.log.len();
    region.update(&ns(2, ClaimClass::Dax));
    region.delete(uuid(1));
    let generations = [vec![uuid(1)], vec![uuid(1), uuid(2)], vec![uuid(2)]];
    for cut in start..=region.log.len() {
        let areas = parse_all(&region.replay(&region.log[..cut]), LabelLayout::Efi);
        assert_eq!(check(&areas), vec![], "cut after write {cut}");
        let found = uuids(&namespaces(&areas));
        assert!(generations.contains(&found), "cut {cut}: {found:?}");
    }
}

/// On a 2-way region the kernel's order leaves a uuid at position 0 only
/// between DIMM 0's first-pass index write and DIMM 1's: the two cuts
/// after which the set is incomplete. Its label is marked UPDATING, so it
/// is an interrupted update (UEFI 2.7, 13.19: the reader rolls it back),
/// not a broken invariant of the media.
#[test]
fn cuts_inside_a_2_way_creates_first_pass_are_interrupted_updates() {
    let mut region = Region::new(2, AREA, LabelLayout::Efi, 256);
    let start = region.log.len();
    region.update(&ns(1, ClaimClass::Pfn));
    let interrupted_at: Vec<usize> = (start..=region.log.len())
        .filter(|&cut| {
            let areas = parse_all(&region.replay(&region.log[..cut]), LabelLayout::Efi);
            assert_eq!(check(&areas), vec![], "cut {cut}");
            !interrupted(&areas).is_empty()
        })
        .collect();
    assert_eq!(interrupted_at, [start + 2, start + 3]);
}

#[test]
fn a_corrupted_newer_index_falls_back_to_the_older_one() {
    let mut region = Region::new(1, AREA, LabelLayout::Efi, 256);
    region.update(&ns(1, ClaimClass::Pfn));
    region.update(&ns(2, ClaimClass::Pfn));
    region.delete(uuid(2));
    let mut image = region.replay(&region.log);
    let good = parse_all(&image, LabelLayout::Efi);
    let newer = good[0].current.unwrap();
    assert_eq!(uuids(&namespaces(&good)), [uuid(1)]);

    // One byte of the newer index's free bitmap.
    let at = good[0].indexes[newer].offset + 100;
    image[0][at] ^= 0x01;
    let corrupt = parse_all(&image, LabelLayout::Efi);
    assert_eq!(
        corrupt[0].current,
        Some(1 - newer),
        "the older index is used"
    );
    assert!(matches!(
        corrupt[0].indexes[newer].fault,
        Some(IndexFault::Checksum { .. })
    ));
    // The destroyed namespace is back: the set is neither before nor after.
    assert_eq!(uuids(&namespaces(&corrupt)), [uuid(1), uuid(2)]);
    assert_eq!(
        check(&corrupt),
        vec![LabelViolation::IndexDamaged {
            dimm: 0,
            index: newer,
            fault: corrupt[0].indexes[newer].fault.clone().unwrap(),
        }]
    );
}

#[test]
fn both_indexes_damaged_is_reported_with_what_is_wrong() {
    let mut region = Region::new(1, AREA, LabelLayout::Efi, 256);
    region.update(&ns(1, ClaimClass::None));
    let mut image = region.replay(&region.log);
    image[0][20] ^= 0x40; // index 0's seq
    image[0][256 + 56] ^= 0x01; // index 1's nslot
    let areas = parse_all(&image, LabelLayout::Efi);
    assert_eq!(areas[0].current, None);
    assert_eq!(areas[0].label_size, 256, "the faults of the 256-byte probe");
    let [f0, f1] = areas[0].indexes.clone().map(|i| i.fault.unwrap());
    assert!(matches!(f0, IndexFault::Checksum { .. }), "{f0}");
    assert!(matches!(f1, IndexFault::Checksum { .. }), "{f1}");
    assert_eq!(
        check(&areas),
        vec![LabelViolation::NoValidIndex {
            dimm: 0,
            faults: [f0, f1]
        }]
    );
    assert!(namespaces(&areas).is_empty());
}

/// The label write of an update replayed after its index write: at the
/// cut between them, the current index marks in use a slot never written.
#[test]
fn an_index_written_before_its_label_is_flagged() {
    let mut region = Region::new(1, AREA, LabelLayout::Efi, 256);
    region.update(&ns(1, ClaimClass::Pfn));
    let n = region.log.len();
    let (label, index) = (&region.log[n - 2], &region.log[n - 1]);
    assert!(!label.is_index(&region.dimms[0]) && index.is_index(&region.dimms[0]));
    let reordered: Vec<&Write> = region.log[..n - 2].iter().chain([index]).collect();
    let areas = parse_all(&region.replay(reordered), LabelLayout::Efi);
    let slot = areas[0].labels.iter().find(|l| !l.is_valid()).unwrap().slot;
    assert_eq!(
        check(&areas),
        vec![LabelViolation::InvalidLabelInUse {
            dimm: 0,
            slot,
            fault: LabelFault::Slot { stored: 0, slot },
        }]
    );
    // The kernel skips the bad label: the namespace is gone as well.
    assert!(namespaces(&areas).is_empty());
}

#[test]
fn a_label_whose_checksum_fails_is_flagged() {
    let mut region = Region::new(1, AREA, LabelLayout::Efi, 256);
    region.update(&ns(1, ClaimClass::Pfn));
    let mut image = region.replay(&region.log);
    let slot = LabelArea::parse(&image[0], LabelLayout::Efi)
        .unwrap()
        .labels[0]
        .slot;
    image[0][region.dimms[0].slot_offset(slot) + 20] ^= 0x01; // its name
    let areas = parse_all(&image, LabelLayout::Efi);
    assert!(matches!(
        check(&areas).as_slice(),
        [LabelViolation::InvalidLabelInUse {
            fault: LabelFault::Checksum { .. },
            ..
        }]
    ));
}

/// A uuid at one of two positions: marked UPDATING (a create's first
/// pass cut short) it is an interrupted update; not marked (a label one
/// DIMM kept while the other lost it), the region will not probe.
#[test]
fn a_uuid_at_one_of_two_positions_is_flagged_unless_marked_updating() {
    let mut region = Region::new(2, AREA, LabelLayout::Efi, 256);
    let start = region.log.len();
    region.update(&ns(1, ClaimClass::None));
    let cut = start + 2;
    assert!(region.log[start..cut].iter().all(|w| w.dimm == 0));
    let areas = parse_all(&region.replay(&region.log[..cut]), LabelLayout::Efi);
    let found = namespaces(&areas);
    assert_eq!(
        found.first().map(|k| k.missing_positions.clone()),
        Some(vec![1])
    );
    assert_eq!(check(&areas), vec![]);
    assert_eq!(interrupted(&areas), vec![uuid(1)]);
    // The same set, its flag cleared on DIMM 0 alone (as if DIMM 1's
    // labels were lost): a broken set, not an interrupted update.
    let mut unmarked = Region::new(2, AREA, LabelLayout::Efi, 256);
    let from = unmarked.log.len();
    unmarked.dimms[0].update(&ns(1, ClaimClass::None), 0, 2, 0, &mut unmarked.log);
    let areas = parse_all(&unmarked.replay(&unmarked.log[..]), LabelLayout::Efi);
    assert!(unmarked.log[from..].iter().all(|w| w.dimm == 0));
    assert_eq!(
        check(&areas),
        vec![LabelViolation::PartialNamespace {
            uuid: uuid(1),
            width: 2,
            missing: vec![1],
        }]
    );
    assert!(interrupted(&areas).is_empty());
    // Once both first-pass labels are in, the namespace is whole.
    let areas = parse_all(&region.replay(&region.log[..start + 4]), LabelLayout::Efi);
    assert_eq!(check(&areas), vec![]);
    assert!(interrupted(&areas).is_empty());
}

/// A cut inside a destroy on a 2-way region: DIMM 0's index no longer
/// has the label, DIMM 1's still does. The kernel ignores such labels.
#[test]
fn labels_left_on_the_second_dimm_are_orphans() {
    let mut region = Region::new(2, AREA, LabelLayout::Efi, 256);
    region.update(&ns(1, ClaimClass::None));
    region.delete(uuid(1));
    let cut = region.log.len() - 1;
    assert_eq!(region.log[cut].dimm, 1);
    let areas = parse_all(&region.replay(&region.log[..cut]), LabelLayout::Efi);
    assert_eq!(
        check(&areas),
        vec![LabelViolation::OrphanLabels {
            uuid: uuid(1),
            width: 2,
            missing: vec![0],
        }]
    );
}

#[test]
fn a_uuid_twice_on_one_dimm_is_flagged() {
    let mut region = Region::new(1, AREA, LabelLayout::Efi, 256);
    region.update(&ns(1, ClaimClass::None));
    let mut image = region.replay(&region.log);
    let dimm = &region.dimms[0];
    // A second valid label of the same uuid in slot 7, marked in use.
    let copy = dimm.label(&ns(1, ClaimClass::None), 7, 0, 1, 0);
    let at = dimm.slot_offset(7);
    image[0][at..at + copy.len()].copy_from_slice(&copy);
    let current = LabelArea::parse(&image[0], LabelLayout::Efi)
        .unwrap()
        .current
        .unwrap();
    let block = current * dimm.index_size;
    image[0][block + 72] &= !(1 << 7);
    image[0][block + 64..block + 72].fill(0);
    let sum = fletcher64(&image[0][block..block + dimm.index_size]);
    image[0][block + 64..block + 72].copy_from_slice(&sum.to_le_bytes());
    let areas = parse_all(&image, LabelLayout::Efi);
    assert!(matches!(
        check(&areas).as_slice(),
        [LabelViolation::DuplicateUuid { slots, .. }] if slots.len() == 2
    ));
}

#[test]
fn backing_files_keep_the_area_at_their_end_or_whole() {
    let dir = tempfile::tempdir().unwrap();
    let nvdimm = dir.path().join("nvdimm.img");
    let mut bytes = vec![0xaa_u8; 3 << 20];
    bytes[(3 << 20) - AREA..].fill(0x55);
    std::fs::write(&nvdimm, &bytes).unwrap();
    let area = read_nfit_label_area(&nvdimm, AREA as u64).unwrap();
    assert_eq!(area.len(), AREA);
    assert!(area.iter().all(|b| *b == 0x55));
    assert!(matches!(
        read_nfit_label_area(&nvdimm, 4 << 20),
        Err(Error::BackingTooSmall { .. })
    ));
    let lsa = dir.path().join("lsa.img");
    std::fs::write(&lsa, vec![7u8; AREA]).unwrap();
    assert_eq!(read_cxl_lsa(&lsa).unwrap(), vec![7u8; AREA]);
    let missing = read_cxl_lsa(&dir.path().join("none")).unwrap_err();
    assert!(missing.to_string().contains("none"), "{missing}");
}
