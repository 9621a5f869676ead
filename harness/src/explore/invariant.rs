//! The invariants `explore` checks after every step, each as named code
//! over what the guest showed before and after it ([`Observation`]), what
//! the step was and how it ended ([`StepResult`]). Pure: each is tested on
//! recorded observations.
//!
//! Refined from the kernel's documented rules where it legitimately refuses
//! what a plain reading would expect (and never weakened to fit):
//! - a sector namespace holds a BTT, whose arena must be at least 16 MiB
//!   after the 4 KiB before it (drivers/nvdimm/btt.h ARENA_MIN_SIZE,
//!   Documentation/driver-api/nvdimm/btt.rst), so a smaller one may be
//!   refused; refused, it must still leave nothing behind;
//! - a namespace of any mode but raw is at least 16 MiB: the kernel's
//!   `nd_namespace_store()` restriction, which ndctl checks before it asks
//!   ("'--size=' must be >= 16MiB for 'devdax' mode", ndctl/namespace.c);
//!   below 16 MiB only a raw namespace is promised, whatever the region's
//!   align; a smaller create of another mode may be refused, and refused
//!   it must leave nothing behind;
//! - device-dax has no read(2) (it is mapped, not read), so "can be read"
//!   is checked on the namespaces with a block device;
//! - a region hands out capacity in units of its align (its
//!   `available_size` is rounded down to it: `nd_region_available_dpa`),
//!   so "the whole region available" is its size rounded down to its
//!   align;
//! - a region of labelled DIMMs needs every one of them to tell its
//!   namespaces' capacity apart (`init_active_labels()`: "labels needed
//!   to disambiguate dpa"), so it may not be enabled while one is
//!   disabled; the explored topologies' DIMMs all have labels;
//! - kmem hot-adds only whole memory blocks (128 MiB on x86) of a dax
//!   device's range (drivers/dax/kmem.c), so a device may be refused as
//!   system-ram; refused, a round trip promised nothing, but one that
//!   went through system-ram must come back to devdax.

use std::collections::BTreeSet;
use std::fmt;

use super::model::Op;
use super::observe::Observation;
use crate::kmsg::{self, Record};
use crate::suite::Mode;

/// The named invariants.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Invariant {
    /// No kernel report (WARNING, BUG, Oops, lockdep, KASAN, hung task).
    NoKernelReport,
    /// A region enables when its DIMMs are, and is refused while one of
    /// them is disabled (first after a report: a region up without its
    /// DIMM is the cause of what its capacity and namespaces show then).
    RegionFollowsItsDimms,
    /// A create the region can hold succeeds, enabled, in its mode; a
    /// refused one leaves no namespace behind and takes no capacity.
    CreateKeepsItsWord,
    /// With every namespace gone, the whole region is available again.
    CapacityConserved,
    /// A devdax device the kernel took as system-ram goes back to devdax
    /// (the memory offlined and removed, the range free for device-dax
    /// again); whether it may become system-ram at all depends on its size
    /// and placement, so a refusal there is no finding.
    DaxRoundTripReturns,
    /// `ndctl list` agrees with sysfs on the namespaces, their modes and
    /// whether they are enabled.
    ListAgreesWithSysfs,
    /// After a reboot (a driver reload, the region enabled again), the
    /// same namespaces (uuid, size, mode) as the labels held before.
    RebootKeepsNamespaces,
    /// An enabled namespace with a block device reads at both ends.
    EnabledIsReadable,
}

impl fmt::Display for Invariant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Invariant::NoKernelReport => "no-kernel-report",
            Invariant::CreateKeepsItsWord => "create-keeps-its-word",
            Invariant::CapacityConserved => "capacity-conserved",
            Invariant::DaxRoundTripReturns => "dax-round-trip-returns",
            Invariant::RegionFollowsItsDimms => "region-follows-its-dimms",
            Invariant::ListAgreesWithSysfs => "list-agrees-with-sysfs",
            Invariant::RebootKeepsNamespaces => "reboot-keeps-namespaces",
            Invariant::EnabledIsReadable => "enabled-is-readable",
        })
    }
}

/// A broken invariant: which, how, and what the guest showed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    pub invariant: Invariant,
    /// The way it broke, a word or two (`refused`, `left-behind`; a kernel
    /// report's kind, `WARNING`): one invariant broken two ways at one
    /// operation is two bugs, not one seen twice.
    pub how: &'static str,
    pub detail: String,
    /// The kernel report's first line, when there is one.
    pub kernel_line: Option<String>,
}

/// How a step ended.
#[derive(Clone, Debug, Default)]
pub struct StepResult {
    /// The command run (none: the operation had nothing to act on).
    pub command: Option<String>,
    pub exit_code: Option<i32>,
    /// The kernel records of the step and of the moments around it.
    pub kernel: Vec<Record>,
    /// A fatal report the guest's console showed (its first line).
    pub console_report: Option<String>,
}

impl StepResult {
    fn succeeded(&self) -> bool {
        self.exit_code == Some(0)
    }
}

/// The exit status of a dax round trip whose first half, the conversion
/// to system-ram, was refused (the command is `...; daxctl
/// reconfigure-device -m system-ram DEV || { ...; exit 75; }; daxctl
/// reconfigure-device -f -m devdax DEV`): any other failure is the way
/// back's. daxctl itself exits 1 or a negative errno's low byte (240 for
/// EBUSY), never 75.
pub const SYSTEM_RAM_REFUSED: i32 = 75;

/// How far a dax round trip went, read from its exit status: the one
/// reading of [`SYSTEM_RAM_REFUSED`]'s protocol (the invariant judges a
/// `Stuck` one, coverage counts them all).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RoundTrip {
    /// Through system-ram and back to devdax.
    Back,
    /// Not taken as system-ram (too small or misplaced for a memory block).
    Refused,
    /// Through system-ram, but the way back to devdax failed.
    Stuck { code: i32 },
    /// No exit status: a hang or a kernel report ended it.
    NoExit,
}

impl RoundTrip {
    pub fn of(exit_code: Option<i32>) -> RoundTrip {
        match exit_code {
            None => RoundTrip::NoExit,
            Some(0) => RoundTrip::Back,
            Some(SYSTEM_RAM_REFUSED) => RoundTrip::Refused,
            Some(code) => RoundTrip::Stuck { code },
        }
    }
}

/// The region's DIMMs as a step found them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dimms {
    AllEnabled,
    /// One disabled (`ndctl disable-dimm`).
    OneDisabled,
}

/// What a step expected of its create, from the real region before it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CreateRequest {
    pub mode: Mode,
    pub bytes: u64,
}

/// The smallest namespace of a mode other than raw.
const NAMESPACE_MIN: u64 = 16 << 20;

/// BTT's smallest arena and what precedes it in the namespace.
const BTT_MIN_ARENA: u64 = 16 << 20;
const BTT_OFFSET: u64 = 4096;

/// Whether the region, as it was before, promised a create of `req`.
pub fn create_promised(before: &Observation, req: CreateRequest) -> bool {
    let Some(region) = before.region.filter(|r| r.enabled) else {
        return false;
    };
    let fits =
        req.bytes > 0 && req.bytes.is_multiple_of(region.align) && req.bytes <= region.max_extent;
    let btt_room = req.mode != Mode::Sector || req.bytes >= BTT_MIN_ARENA + BTT_OFFSET;
    let namespace_room = req.mode == Mode::Raw || req.bytes >= NAMESPACE_MIN;
    fits && btt_room && namespace_room
}

/// Every invariant the step broke, in the order listed in [`Invariant`].
pub fn check(
    op: &Op,
    create: Option<CreateRequest>,
    before: &Observation,
    result: &StepResult,
    after: &Observation,
    dimms: Dimms,
) -> Vec<Violation> {
    let mut found = Vec::new();
    found.extend(no_kernel_report(result));
    if let Some(req) = create {
        found.extend(create_keeps_its_word(req, before, result, after));
    }
    found.extend(capacity_conserved(after));
    found.extend(dax_round_trip_returns(op, result));
    found.extend(region_follows_its_dimms(op, after, dimms));
    found.extend(list_agrees_with_sysfs(after));
    // A region not enabled shows no namespaces: that is the enable's
    // refusal, judged above, not the labels'.
    if op.rebuilds_from_labels() && (after.region_enabled() || !matches!(op, Op::RegionEnable)) {
        found.extend(reboot_keeps_namespaces(before, after));
    }
    found.extend(enabled_is_readable(after));
    found
}

/// What a step broke when its region did not come back: the region gone
/// (and any kernel report), not the namespaces it took with it, so one
/// bug has one name whatever the labels held.
pub fn region_gone(mut broken: Vec<Violation>, op: &Op) -> Vec<Violation> {
    broken.retain(|v| v.invariant != Invariant::RebootKeepsNamespaces);
    broken.push(region_lost(op));
    broken
}

/// An operation that must bring the nd region back (a reboot, a CXL
/// region's operations, a DIMM bound again) left the guest without one.
pub fn region_lost(op: &Op) -> Violation {
    Violation {
        invariant: Invariant::RebootKeepsNamespaces,
        how: "region-lost",
        detail: format!("the nd region did not come back after {}", op.kind()),
        kernel_line: None,
    }
}

/// What a step broke, in the order [`Invariant`] lists them (the first is
/// the finding): a kernel report that took the region with it is the
/// report.
pub fn in_order(mut broken: Vec<Violation>) -> Vec<Violation> {
    broken.sort_by_key(|v| v.invariant);
    broken
}

fn violation(invariant: Invariant, how: &'static str, detail: String) -> Option<Violation> {
    Some(Violation {
        invariant,
        how,
        detail,
        kernel_line: None,
    })
}

fn no_kernel_report(result: &StepResult) -> Option<Violation> {
    let from_log = result.kernel.iter().find_map(|r| {
        kmsg::problem(r).map(|kind| (kind, format!("kernel {kind}: {}", r.message.trim())))
    });
    let from_console = || {
        let line = result.console_report.clone()?;
        Some((kmsg::fatal_console_report(&line)?, line))
    };
    let (kind, line) = from_log.or_else(from_console)?;
    Some(kernel_report(kind.name(), line))
}

/// A kernel report as the violation of `no-kernel-report`: `how` its kind
/// (`WARNING`, `BUG`, `Oops`), `line` its first line.
pub fn kernel_report(how: &'static str, line: String) -> Violation {
    Violation {
        invariant: Invariant::NoKernelReport,
        how,
        detail: line.clone(),
        kernel_line: Some(line),
    }
}

fn create_keeps_its_word(
    req: CreateRequest,
    before: &Observation,
    result: &StepResult,
    after: &Observation,
) -> Option<Violation> {
    let old: Vec<&str> = before.sized().iter().map(|n| n.dev.as_str()).collect();
    let new: Vec<_> = after
        .sized()
        .into_iter()
        .filter(|n| !old.contains(&n.dev.as_str()))
        .collect();
    if result.succeeded() {
        let made = new.iter().find_map(|n| after.listed(&n.dev));
        return match made {
            Some(ns) if ns.enabled && ns.mode == Some(req.mode) => None,
            Some(ns) => violation(
                Invariant::CreateKeepsItsWord,
                if ns.mode == Some(req.mode) {
                    "disabled"
                } else {
                    "wrong-mode"
                },
                format!(
                    "create of {} {} bytes succeeded, but {} is {} and {}",
                    req.mode,
                    req.bytes,
                    ns.dev,
                    ns.mode.map_or("of no mode".to_owned(), |m| m.to_string()),
                    if ns.enabled { "enabled" } else { "disabled" }
                ),
            ),
            None => violation(
                Invariant::CreateKeepsItsWord,
                "made-nothing",
                format!(
                    "create of {} {} bytes succeeded but made no namespace",
                    req.mode, req.bytes
                ),
            ),
        };
    }
    if let Some(left) = new.first() {
        return violation(
            Invariant::CreateKeepsItsWord,
            "left-behind",
            format!(
                "refused create of {} {} bytes left {} behind ({} bytes, {})",
                req.mode,
                req.bytes,
                left.dev,
                left.size,
                if left.enabled { "enabled" } else { "disabled" }
            ),
        );
    }
    let taken = match (before.region, after.region) {
        (Some(b), Some(a)) if a.available < b.available => Some(b.available - a.available),
        _ => None,
    };
    if let Some(taken) = taken {
        return violation(
            Invariant::CreateKeepsItsWord,
            "took-capacity",
            format!(
                "refused create of {} {} bytes took {taken} bytes of capacity",
                req.mode, req.bytes
            ),
        );
    }
    if create_promised(before, req) {
        return violation(
            Invariant::CreateKeepsItsWord,
            "refused",
            format!(
                "create of {} {} bytes was refused, though the region's align divides it and its largest free extent holds it",
                req.mode, req.bytes
            ),
        );
    }
    None
}

fn capacity_conserved(after: &Observation) -> Option<Violation> {
    let region = after.region.filter(|r| r.enabled)?;
    let whole = region.size - region.size % region.align.max(1);
    if !after.sized().is_empty() || region.available == whole {
        return None;
    }
    violation(
        Invariant::CapacityConserved,
        "not-returned",
        format!(
            "no namespace holds capacity, yet {} bytes are available of the region's {} ({} in its align's units)",
            region.available, region.size, whole
        ),
    )
}

fn region_follows_its_dimms(op: &Op, after: &Observation, dimms: Dimms) -> Option<Violation> {
    if !matches!(op, Op::RegionEnable) {
        return None;
    }
    match (dimms, after.region_enabled()) {
        (Dimms::OneDisabled, true) => violation(
            Invariant::RegionFollowsItsDimms,
            "enabled-without-dimm",
            "the region was enabled while one of its DIMMs was disabled".into(),
        ),
        (Dimms::AllEnabled, false) => violation(
            Invariant::RegionFollowsItsDimms,
            "refused",
            "the region was not enabled, with every DIMM of it enabled".into(),
        ),
        _ => None,
    }
}

fn dax_round_trip_returns(op: &Op, result: &StepResult) -> Option<Violation> {
    if !matches!(op, Op::DaxRoundTrip { .. }) {
        return None;
    }
    let RoundTrip::Stuck { code } = RoundTrip::of(result.exit_code) else {
        return None;
    };
    violation(
        Invariant::DaxRoundTripReturns,
        "stuck",
        format!("the device became system-ram, but its way back to devdax failed (exit {code})"),
    )
}

fn list_agrees_with_sysfs(after: &Observation) -> Option<Violation> {
    for ns in after.sized() {
        let Some(listed) = after.listed(&ns.dev) else {
            return violation(
                Invariant::ListAgreesWithSysfs,
                "not-listed",
                format!(
                    "sysfs has {} ({} bytes), ndctl list does not",
                    ns.dev, ns.size
                ),
            );
        };
        if listed.enabled != ns.enabled || listed.mode != ns.mode {
            return violation(
                Invariant::ListAgreesWithSysfs,
                "state-differs",
                format!(
                    "{}: ndctl says {:?} {}, sysfs says {:?} {}",
                    ns.dev,
                    listed.mode,
                    if listed.enabled {
                        "enabled"
                    } else {
                        "disabled"
                    },
                    ns.mode,
                    if ns.enabled { "enabled" } else { "disabled" }
                ),
            );
        }
    }
    let sized: Vec<&str> = after.sized().iter().map(|n| n.dev.as_str()).collect();
    let extra = after
        .listed
        .iter()
        .find(|l| l.size > 0 && !sized.contains(&l.dev.as_str()))?;
    violation(
        Invariant::ListAgreesWithSysfs,
        "listed-only",
        format!(
            "ndctl list has {}, sysfs has no such sized namespace",
            extra.dev
        ),
    )
}

/// The namespaces the labels hold, as the guest shows them: each one's
/// own UUID and raw size (sysfs, whatever its claim and state), and the
/// mode of those that are enabled (a disabled namespace shows no claim).
type NamespaceSet = (
    BTreeSet<(Option<String>, u64)>,
    BTreeSet<(Option<String>, Option<Mode>)>,
);

fn namespace_set(seen: &Observation) -> NamespaceSet {
    let held = seen
        .sized()
        .iter()
        .map(|n| (n.uuid.clone(), n.size))
        .collect();
    let modes = seen
        .sized()
        .iter()
        .filter(|n| n.enabled)
        .map(|n| (n.uuid.clone(), seen.listed(&n.dev).and_then(|l| l.mode)))
        .collect();
    (held, modes)
}

fn reboot_keeps_namespaces(before: &Observation, after: &Observation) -> Option<Violation> {
    let (was, was_modes) = namespace_set(before);
    let (is, is_modes) = namespace_set(after);
    if was != is {
        return violation(
            Invariant::RebootKeepsNamespaces,
            "namespaces-differ",
            format!("before the reboot {was:?}, after it {is:?}"),
        );
    }
    let changed = was_modes.difference(&is_modes).next()?;
    violation(
        Invariant::RebootKeepsNamespaces,
        "mode-lost",
        format!(
            "{changed:?} was enabled in that mode before the reboot, not after it ({is_modes:?})"
        ),
    )
}

fn enabled_is_readable(after: &Observation) -> Option<Violation> {
    for ns in after.listed.iter().filter(|n| n.enabled && n.size > 0) {
        let Some(block) = &ns.blockdev else {
            continue;
        };
        match after.reads.iter().find(|(dev, _)| dev == block) {
            Some((_, true)) => {}
            Some((_, false)) => {
                return violation(
                    Invariant::EnabledIsReadable,
                    "unreadable",
                    format!(
                        "{} is enabled but /dev/{block} does not read at both ends",
                        ns.dev
                    ),
                )
            }
            None => {
                return violation(
                    Invariant::EnabledIsReadable,
                    "no-block-device",
                    format!(
                        "{} is enabled with block device {block}, which does not exist",
                        ns.dev
                    ),
                )
            }
        }
    }
    None
}

#[cfg(test)]
mod tests;
