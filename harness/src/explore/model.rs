//! The reference model `explore` generates sequences from: what it knows of
//! a region (size, align, what it predicts is available, its namespaces by
//! slot), the operations ([`Op`]) a sequence is made of, which are possible
//! in each state (preconditions), and how each changes the model.
//!
//! The model only predicts: a sequence is generated whole before the guest
//! runs it, and the kernel decides every outcome (the invariants read the
//! real state, [`super::invariant`]). Sizes are symbolic ([`SizeChoice`]),
//! resolved against the real region right before the step, so a step keeps
//! its meaning when shrinking deletes the ones before it. A namespace is
//! named by the slot its create step carries, never by a count, so deleting
//! an earlier create cannot make a later step point at another namespace.

use std::collections::BTreeMap;

use proptest::prelude::*;
use proptest::sample::select;
use proptest::strategy::{BoxedStrategy, Just, Union};

use crate::suite::Mode;

/// A namespace's handle in a sequence: fixed when its create is generated.
pub type Slot = u32;

/// A create's size, resolved against the region before the step.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SizeChoice {
    /// `k` times the region's align.
    Aligns(u32),
    /// `k` aligns plus `delta` bytes (negative: less): off the align.
    OffAlign { aligns: u32, delta: i32 },
    /// All the region has available now.
    Available,
    /// The region's whole size (more than is available once anything is).
    Whole,
}

/// How an fsdax or devdax namespace keeps its page map.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum MapLocation {
    /// In the namespace itself (`-M dev`).
    Device,
    /// In system memory (`-M mem`).
    Memory,
}

/// One operation of a sequence.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    Create {
        slot: Slot,
        mode: Mode,
        size: SizeChoice,
        /// `-a`: the namespace's align, where its mode takes one.
        align: Option<u64>,
        map: Option<MapLocation>,
    },
    Destroy {
        slot: Slot,
    },
    Disable {
        slot: Slot,
    },
    Enable {
        slot: Slot,
    },
    /// `create-namespace -f -e`: the namespace in another mode, in place.
    Reconfigure {
        slot: Slot,
        mode: Mode,
    },
    /// daxctl reconfigure-device to system-ram, then back to devdax.
    DaxRoundTrip {
        slot: Slot,
    },
    RegionDisable,
    RegionEnable,
    /// A write to the region's `align` (the kernel may refuse it).
    WriteAlign {
        align: u64,
    },
    /// `ndctl init-labels -f`, on a disabled region.
    InitLabels,
    /// Power off and boot again on the same backing files.
    Reboot,
    /// CXL: the CXL region disabled and enabled again (its pmem region
    /// and nvdimm bridge torn down and probed again).
    CxlRegionCycle,
    /// CXL: the CXL region destroyed and created again on the same
    /// devices, their labels kept.
    CxlRegionRecreate,
    /// CXL: the region destroyed, `cxl_pmem` and `cxl_mem` unloaded and
    /// loaded again, and the region created again on the same devices as
    /// soon as their endpoints are back (labels kept): what a developer
    /// reloading a driver under test does. The namespaces must come back
    /// as after a reboot.
    CxlDriverReload,
    /// CXL: one DIMM of the region (its interleave `position`) taken away
    /// from the pmem stack: its `cxl_nvdimm` unbound through sysfs, where
    /// the kernel offers the unbind (6.12's driver has no bind files). The
    /// nd region goes with it; until [`Op::CxlDimmBind`], only the CXL
    /// region's own operations and a reboot apply.
    CxlDimmUnbind {
        position: u32,
    },
    /// CXL: the DIMM bound again and the CXL region cycled: the region and
    /// its namespaces must come back as the labels hold them.
    CxlDimmBind,
    /// `ndctl disable-dimm` on the region's DIMM at mapping `position`,
    /// the region disabled: until [`Op::DimmEnable`], enabling the region
    /// must be refused (its labels are needed to tell its namespaces'
    /// capacity apart), and only that, the DIMM enabled, or a reboot apply.
    DimmDisable {
        position: u32,
    },
    /// `ndctl enable-dimm` on the DIMM [`Op::DimmDisable`] disabled.
    DimmEnable,
    /// What the guest does before the first step (the drivers, the CXL
    /// regions' assembly, the labels): never generated, it names where a
    /// kernel report came from when it came before any step.
    Prepare,
}

impl Op {
    /// The operation's kind, for coverage and finding keys.
    pub fn kind(&self) -> &'static str {
        match self {
            Op::Create { .. } => "create",
            Op::Destroy { .. } => "destroy",
            Op::Disable { .. } => "disable",
            Op::Enable { .. } => "enable",
            Op::Reconfigure { .. } => "reconfigure",
            Op::DaxRoundTrip { .. } => "dax-round-trip",
            Op::RegionDisable => "region-disable",
            Op::RegionEnable => "region-enable",
            Op::WriteAlign { .. } => "write-align",
            Op::InitLabels => "init-labels",
            Op::Reboot => "reboot",
            Op::CxlRegionCycle => "cxl-region-cycle",
            Op::CxlRegionRecreate => "cxl-region-recreate",
            Op::CxlDriverReload => "cxl-driver-reload",
            Op::CxlDimmUnbind { .. } => "cxl-dimm-unbind",
            Op::CxlDimmBind => "cxl-dimm-bind",
            Op::DimmDisable { .. } => "dimm-disable",
            Op::DimmEnable => "dimm-enable",
            Op::Prepare => "prepare",
        }
    }

    /// Whether the namespaces after the operation are read back from the
    /// labels (a reboot, a driver reload, a DIMM bound again, the region
    /// enabled again): the set must be the one the labels held.
    pub fn rebuilds_from_labels(&self) -> bool {
        matches!(
            self,
            Op::Reboot | Op::CxlDriverReload | Op::CxlDimmBind | Op::RegionEnable
        )
    }

    /// Whether the region must be found again after the operation: a CXL
    /// region operation may rename the nd region or take it away.
    pub fn renews_region(&self) -> bool {
        matches!(
            self,
            Op::CxlRegionCycle
                | Op::CxlRegionRecreate
                | Op::CxlDriverReload
                | Op::CxlDimmUnbind { .. }
                | Op::CxlDimmBind
        )
    }

    /// The slot the operation names, if any.
    pub fn slot(&self) -> Option<Slot> {
        match self {
            Op::Create { slot, .. }
            | Op::Destroy { slot }
            | Op::Disable { slot }
            | Op::Enable { slot }
            | Op::Reconfigure { slot, .. }
            | Op::DaxRoundTrip { slot } => Some(*slot),
            _ => None,
        }
    }
}

/// What the model knows of a namespace it predicts exists.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PredictedNamespace {
    pub mode: Mode,
    pub enabled: bool,
}

/// The region a sequence starts on, as the explorer found it in the guest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RegionShape {
    pub size: u64,
    pub align: u64,
    /// A CXL region's interleave ways (none: not CXL): the CXL region
    /// operations apply, and a DIMM is named by its position below it.
    pub cxl_ways: Option<u32>,
    /// The DIMMs the nd region maps (its `mappingN`), which
    /// [`Op::DimmDisable`] names by position.
    pub dimms: u32,
}

/// The model of one region.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Model {
    pub shape: RegionShape,
    pub region_enabled: bool,
    pub namespaces: BTreeMap<Slot, PredictedNamespace>,
    pub next_slot: Slot,
    /// The position of the DIMM [`Op::CxlDimmUnbind`] took away.
    pub dimm_unbound: Option<u32>,
    /// The position of the DIMM [`Op::DimmDisable`] disabled.
    pub dimm_disabled: Option<u32>,
    /// Operations applied so far (the replay strategy indexes by it).
    pub applied: usize,
}

const MIB: u64 = 1 << 20;

fn any_mode() -> impl Strategy<Value = Mode> {
    select(vec![Mode::Fsdax, Mode::Devdax, Mode::Sector, Mode::Raw])
}

fn size_choices() -> Vec<SizeChoice> {
    vec![
        SizeChoice::Aligns(1),
        SizeChoice::Aligns(2),
        SizeChoice::Aligns(4),
        SizeChoice::OffAlign {
            aligns: 1,
            delta: 4096,
        },
        SizeChoice::OffAlign {
            aligns: 1,
            delta: -4096,
        },
        SizeChoice::OffAlign {
            aligns: 0,
            delta: 4 << 20,
        },
        SizeChoice::Available,
        SizeChoice::Whole,
    ]
}

/// Per mode, the namespace aligns (`-a`) it takes.
fn aligns_for(mode: Mode) -> Vec<Option<u64>> {
    match mode {
        Mode::Fsdax | Mode::Devdax => vec![None, Some(4096), Some(2 * MIB)],
        Mode::Sector | Mode::Raw => vec![None],
    }
}

fn maps_for(mode: Mode) -> Vec<Option<MapLocation>> {
    match mode {
        Mode::Fsdax | Mode::Devdax => {
            vec![None, Some(MapLocation::Device), Some(MapLocation::Memory)]
        }
        Mode::Sector | Mode::Raw => vec![None],
    }
}

impl Model {
    pub fn new(shape: RegionShape) -> Model {
        Model {
            shape,
            region_enabled: true,
            namespaces: BTreeMap::new(),
            next_slot: 0,
            dimm_unbound: None,
            dimm_disabled: None,
            applied: 0,
        }
    }

    fn slots_where(&self, pred: impl Fn(&PredictedNamespace) -> bool) -> Vec<Slot> {
        self.namespaces
            .iter()
            .filter(|(_, n)| pred(n))
            .map(|(s, _)| *s)
            .collect()
    }

    /// The operations possible now, weighted: creates most, the region's
    /// own operations least (a reboot costs a cold boot).
    pub fn transitions(&self) -> BoxedStrategy<Op> {
        let mut arms: Vec<(u32, BoxedStrategy<Op>)> = vec![(1, Just(Op::Reboot).boxed())];
        if self.dimm_unbound.is_some() {
            // A DIMM short: the CXL region probed without it, or the DIMM
            // back.
            arms.push((2, Just(Op::CxlDimmBind).boxed()));
            arms.push((1, Just(Op::CxlRegionCycle).boxed()));
            arms.push((1, Just(Op::CxlRegionRecreate).boxed()));
        } else if self.region_enabled {
            let slot = self.next_slot;
            let create = any_mode()
                .prop_flat_map(move |mode| {
                    (
                        Just(mode),
                        select(size_choices()),
                        select(aligns_for(mode)),
                        select(maps_for(mode)),
                    )
                })
                .prop_map(move |(mode, size, align, map)| Op::Create {
                    slot,
                    mode,
                    size,
                    align,
                    map,
                });
            arms.push((8, create.boxed()));
            arms.push((1, Just(Op::RegionDisable).boxed()));
            let all = self.slots_where(|_| true);
            if !all.is_empty() {
                let pick = || select(all.clone());
                arms.push((4, pick().prop_map(|slot| Op::Destroy { slot }).boxed()));
                arms.push((1, pick().prop_map(|slot| Op::Disable { slot }).boxed()));
                arms.push((1, pick().prop_map(|slot| Op::Enable { slot }).boxed()));
                let reconfigure =
                    (pick(), any_mode()).prop_map(|(slot, mode)| Op::Reconfigure { slot, mode });
                arms.push((2, reconfigure.boxed()));
            }
            if let Some(ways) = self.shape.cxl_ways {
                arms.push((1, Just(Op::CxlRegionCycle).boxed()));
                arms.push((1, Just(Op::CxlRegionRecreate).boxed()));
                arms.push((1, Just(Op::CxlDriverReload).boxed()));
                let unbind = (0..ways.max(1)).prop_map(|position| Op::CxlDimmUnbind { position });
                arms.push((1, unbind.boxed()));
            }
            let devdax = self.slots_where(|n| n.mode == Mode::Devdax && n.enabled);
            if !devdax.is_empty() {
                arms.push((
                    1,
                    select(devdax)
                        .prop_map(|slot| Op::DaxRoundTrip { slot })
                        .boxed(),
                ));
            }
        } else if self.dimm_disabled.is_some() {
            // A DIMM off: the region's enable refused, or the DIMM back.
            arms.push((2, Just(Op::RegionEnable).boxed()));
            arms.push((2, Just(Op::DimmEnable).boxed()));
        } else {
            arms.push((4, Just(Op::RegionEnable).boxed()));
            arms.push((1, Just(Op::InitLabels).boxed()));
            if self.shape.dimms > 0 {
                let disable =
                    (0..self.shape.dimms).prop_map(|position| Op::DimmDisable { position });
                arms.push((1, disable.boxed()));
            }
            let aligns = vec![4096, 2 * MIB, self.shape.align, 2 * self.shape.align];
            arms.push((
                1,
                select(aligns)
                    .prop_map(|align| Op::WriteAlign { align })
                    .boxed(),
            ));
        }
        // A shrink candidate costs a guest: each operation stays as it was
        // generated (no morphing of one kind into another), only deleted.
        Union::new_weighted(arms).no_shrink().boxed()
    }

    /// Whether `op` makes sense in this state (re-checked by the library on
    /// every shrink candidate).
    pub fn preconditions(&self, op: &Op) -> bool {
        let has = |slot: &Slot| self.namespaces.contains_key(slot);
        // The nd region is there: the region enabled, no DIMM taken away.
        let whole = self.region_enabled && self.dimm_unbound.is_none();
        let cxl = self.shape.cxl_ways.is_some();
        match op {
            Op::Create { slot, .. } => whole && !has(slot),
            Op::Destroy { slot }
            | Op::Disable { slot }
            | Op::Enable { slot }
            | Op::Reconfigure { slot, .. } => whole && has(slot),
            Op::DaxRoundTrip { slot } => {
                whole
                    && self
                        .namespaces
                        .get(slot)
                        .is_some_and(|n| n.mode == Mode::Devdax && n.enabled)
            }
            Op::RegionDisable => whole,
            Op::CxlDriverReload => whole && cxl,
            Op::CxlDimmUnbind { position } => {
                whole && self.shape.cxl_ways.is_some_and(|ways| *position < ways)
            }
            Op::CxlRegionCycle | Op::CxlRegionRecreate => self.region_enabled && cxl,
            Op::CxlDimmBind => self.dimm_unbound.is_some(),
            Op::RegionEnable => !self.region_enabled,
            Op::InitLabels | Op::WriteAlign { .. } => {
                !self.region_enabled && self.dimm_disabled.is_none()
            }
            Op::DimmDisable { position } => {
                !self.region_enabled
                    && self.dimm_disabled.is_none()
                    && self.dimm_unbound.is_none()
                    && *position < self.shape.dimms
            }
            Op::DimmEnable => self.dimm_disabled.is_some(),
            Op::Reboot => true,
            Op::Prepare => false,
        }
    }

    /// The state after `op`, as the model predicts it.
    pub fn apply(mut self, op: &Op) -> Model {
        self.applied += 1;
        match op {
            Op::Create { slot, mode, .. } => {
                self.next_slot = self.next_slot.max(slot + 1);
                let namespace = PredictedNamespace {
                    mode: *mode,
                    enabled: true,
                };
                self.namespaces.insert(*slot, namespace);
            }
            Op::Destroy { slot } => {
                self.namespaces.remove(slot);
            }
            Op::Disable { slot } | Op::Enable { slot } => {
                let enabled = matches!(op, Op::Enable { .. });
                if let Some(n) = self.namespaces.get_mut(slot) {
                    n.enabled = enabled;
                }
            }
            Op::Reconfigure { slot, mode } => {
                if let Some(n) = self.namespaces.get_mut(slot) {
                    n.mode = *mode;
                    n.enabled = true;
                }
            }
            Op::CxlDimmUnbind { position } => self.dimm_unbound = Some(*position),
            Op::CxlDimmBind => self.dimm_unbound = None,
            // The guest boots with every DIMM and region up.
            Op::Reboot => {
                self.dimm_unbound = None;
                self.dimm_disabled = None;
                self.region_enabled = true;
            }
            Op::DimmDisable { position } => self.dimm_disabled = Some(*position),
            Op::DimmEnable => self.dimm_disabled = None,
            Op::DaxRoundTrip { .. }
            | Op::WriteAlign { .. }
            | Op::CxlRegionCycle
            | Op::CxlRegionRecreate
            | Op::CxlDriverReload
            | Op::Prepare => {}
            Op::RegionDisable => self.region_enabled = false,
            // Refused while a DIMM is off.
            Op::RegionEnable => self.region_enabled = self.dimm_disabled.is_none(),
            Op::InitLabels => self.namespaces.clear(),
        }
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape() -> RegionShape {
        RegionShape {
            size: 1 << 30,
            align: 16 * MIB,
            cxl_ways: None,
            dimms: 1,
        }
    }

    #[test]
    fn preconditions_follow_the_region_and_the_slots() {
        let m = Model::new(shape());
        let create = Op::Create {
            slot: 0,
            mode: Mode::Devdax,
            size: SizeChoice::Aligns(1),
            align: None,
            map: None,
        };
        assert!(m.preconditions(&create));
        assert!(!m.preconditions(&Op::Destroy { slot: 0 }));
        assert!(!m.preconditions(&Op::RegionEnable));
        let m = m.apply(&create);
        assert_eq!(m.next_slot, 1);
        assert!(!m.preconditions(&create), "a slot is created once");
        assert!(m.preconditions(&Op::DaxRoundTrip { slot: 0 }));
        let m = m.apply(&Op::RegionDisable);
        assert!(!m.preconditions(&Op::Destroy { slot: 0 }));
        assert!(m.preconditions(&Op::InitLabels));
        let m = m.apply(&Op::InitLabels).apply(&Op::RegionEnable);
        assert!(m.namespaces.is_empty());
    }

    #[test]
    fn a_dimm_taken_away_leaves_the_cxl_region_operations_until_it_is_back() {
        let four = RegionShape {
            cxl_ways: Some(4),
            ..shape()
        };
        let create = Op::Create {
            slot: 0,
            mode: Mode::Fsdax,
            size: SizeChoice::Aligns(1),
            align: None,
            map: None,
        };
        let m = Model::new(four);
        assert!(m.preconditions(&Op::CxlDimmUnbind { position: 3 }));
        assert!(!m.preconditions(&Op::CxlDimmUnbind { position: 4 }));
        assert!(!m.preconditions(&Op::CxlDimmBind));
        assert!(!Model::new(shape()).preconditions(&Op::CxlDimmUnbind { position: 0 }));
        let short = m.apply(&Op::CxlDimmUnbind { position: 3 });
        assert_eq!(short.dimm_unbound, Some(3));
        for nd in [create.clone(), Op::RegionDisable, Op::CxlDriverReload] {
            assert!(!short.preconditions(&nd), "{nd:?} needs the nd region");
        }
        for cxl in [
            Op::CxlRegionCycle,
            Op::CxlRegionRecreate,
            Op::CxlDimmBind,
            Op::Reboot,
        ] {
            assert!(short.preconditions(&cxl), "{cxl:?}");
        }
        assert_eq!(short.clone().apply(&Op::Reboot).dimm_unbound, None);
        let back = short.apply(&Op::CxlDimmBind);
        assert!(back.preconditions(&create));
        assert!(Op::CxlDimmBind.rebuilds_from_labels());
    }

    #[test]
    fn a_dimm_disabled_leaves_the_region_off_until_it_is_back() {
        let two = RegionShape {
            dimms: 2,
            ..shape()
        };
        let m = Model::new(two);
        assert!(
            !m.preconditions(&Op::DimmDisable { position: 0 }),
            "region on"
        );
        let off = m.apply(&Op::RegionDisable);
        assert!(off.preconditions(&Op::DimmDisable { position: 1 }));
        assert!(!off.preconditions(&Op::DimmDisable { position: 2 }));
        assert!(!off.preconditions(&Op::DimmEnable));
        let short = off.apply(&Op::DimmDisable { position: 1 });
        assert_eq!(short.dimm_disabled, Some(1));
        for op in [
            Op::InitLabels,
            Op::WriteAlign { align: 4096 },
            Op::DimmDisable { position: 0 },
        ] {
            assert!(!short.preconditions(&op), "{op:?} with a DIMM off");
        }
        // The enable is tried, and refused: the region stays off.
        assert!(short.preconditions(&Op::RegionEnable));
        let still = short.clone().apply(&Op::RegionEnable);
        assert!(!still.region_enabled);
        assert!(Op::RegionEnable.rebuilds_from_labels());
        let back = still.apply(&Op::DimmEnable).apply(&Op::RegionEnable);
        assert!(back.region_enabled && back.dimm_disabled.is_none());
        let rebooted = short.apply(&Op::Reboot);
        assert!(rebooted.region_enabled && rebooted.dimm_disabled.is_none());
    }
}
