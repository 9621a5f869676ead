//! Each invariant on observations as the guest printed them: one where it
//! holds, and a recorded one that breaks it.

use super::*;
use crate::explore::model::SizeChoice;
use crate::explore::observe::parse;

const EMPTY: &str = "region 1073610752 16777216 1056964608 1056964608 1
namespace namespace0.0 0 raw 0
ndctl
";

/// `sizes/sector-minimum` as the explorer saw it: a 16 MiB sector create
/// refused, and the namespace left behind holding the region's seed.
const SECTOR_LEFT_BEHIND: &str = "region 1073610752 16777216 1056833536 1056833536 1
namespace namespace0.0 16777216 safe 0 u1
namespace namespace0.1 0 raw 0
ndctl
[{\"dev\":\"namespace0.0\",\"mode\":\"sector\",\"size\":16777216,\"uuid\":\"u1\",\"state\":\"disabled\"}]
";

const FSDAX_MADE: &str = "region 1073610752 16777216 1056833536 1056833536 1
namespace namespace0.0 16777216 memory 1 u1
namespace namespace0.1 0 raw 0
read pmem0 1
ndctl
{\"dev\":\"namespace0.0\",\"mode\":\"fsdax\",\"size\":14680064,\"uuid\":\"u1\",\"blockdev\":\"pmem0\"}
";

fn create(mode: Mode) -> Op {
    Op::Create {
        slot: 0,
        mode,
        size: SizeChoice::Aligns(1),
        align: None,
        map: None,
    }
}

fn ended(code: i32) -> StepResult {
    StepResult {
        command: Some("ndctl create-namespace".into()),
        exit_code: Some(code),
        ..Default::default()
    }
}

fn kernel_record(level: u8, message: &str) -> Record {
    Record {
        level,
        facility: 0,
        seq: 9,
        ts_usec: 1,
        message: message.into(),
    }
}

fn names(found: &[Violation]) -> Vec<Invariant> {
    found.iter().map(|v| v.invariant).collect()
}

#[test]
fn a_refused_sector_create_that_leaves_a_namespace_behind_breaks_its_word() {
    let req = CreateRequest {
        mode: Mode::Sector,
        bytes: 16 << 20,
    };
    let before = parse(EMPTY);
    // The BTT minimum makes the refusal itself legitimate...
    assert!(!create_promised(&before, req));
    let found = check(
        &create(Mode::Sector),
        Some(req),
        &before,
        &ended(1),
        &parse(SECTOR_LEFT_BEHIND),
        Dimms::AllEnabled,
    );
    assert_eq!(names(&found), vec![Invariant::CreateKeepsItsWord]);
    // ...not what it leaves.
    assert!(
        found[0].detail.contains("left namespace0.0 behind"),
        "{}",
        found[0].detail
    );
    // Refused cleanly: nothing broken.
    let clean = check(
        &create(Mode::Sector),
        Some(req),
        &before,
        &ended(1),
        &parse(EMPTY),
        Dimms::AllEnabled,
    );
    assert!(clean.is_empty(), "{clean:?}");
}

#[test]
fn a_promised_create_that_is_refused_breaks_its_word() {
    let req = CreateRequest {
        mode: Mode::Fsdax,
        bytes: 16 << 20,
    };
    let before = parse(EMPTY);
    assert!(create_promised(&before, req));
    let found = check(
        &create(Mode::Fsdax),
        Some(req),
        &before,
        &ended(1),
        &before,
        Dimms::AllEnabled,
    );
    assert_eq!(names(&found), vec![Invariant::CreateKeepsItsWord]);
    // Another bug than a sector namespace left behind, though the same
    // invariant breaks at the same operation: told apart by how.
    assert_eq!(found[0].how, "refused");
    let left_behind = check(
        &create(Mode::Sector),
        Some(CreateRequest {
            mode: Mode::Sector,
            bytes: 16 << 20,
        }),
        &before,
        &ended(1),
        &parse(SECTOR_LEFT_BEHIND),
        Dimms::AllEnabled,
    );
    assert_eq!(left_behind[0].how, "left-behind");
    let kept = check(
        &create(Mode::Fsdax),
        Some(req),
        &before,
        &ended(0),
        &parse(FSDAX_MADE),
        Dimms::AllEnabled,
    );
    assert!(kept.is_empty(), "{kept:?}");
    // Made, but in another mode.
    let wrong = FSDAX_MADE
        .replace("\"fsdax\"", "\"raw\"")
        .replace("memory", "raw");
    let found = check(
        &create(Mode::Fsdax),
        Some(req),
        &before,
        &ended(0),
        &parse(&wrong),
        Dimms::AllEnabled,
    );
    assert_eq!(names(&found), vec![Invariant::CreateKeepsItsWord]);
    assert_eq!(found[0].how, "wrong-mode");
}

/// Seed 7 on nfit-1, before this rule: the region's align written down to
/// 2 MiB made a 4 MiB devdax create look promised, and ndctl refused it as
/// below 16 MiB. Below 16 MiB only raw is promised; refused, it must still
/// leave nothing behind.
#[test]
fn below_16_mib_only_raw_is_promised_whatever_the_region_align() {
    let before = parse(&EMPTY.replace(
        "1073610752 16777216 1056964608 1056964608",
        "1073610752 2097152 1071644672 1071644672",
    ));
    let small = |mode| CreateRequest {
        mode,
        bytes: 4 << 20,
    };
    assert!(create_promised(&before, small(Mode::Raw)));
    for mode in [Mode::Fsdax, Mode::Devdax, Mode::Sector] {
        assert!(!create_promised(&before, small(mode)), "{mode:?}");
    }
    let found = check(
        &create(Mode::Devdax),
        Some(small(Mode::Devdax)),
        &before,
        &ended(1),
        &before,
        Dimms::AllEnabled,
    );
    assert!(found.is_empty(), "{found:?}");
}

#[test]
fn capacity_lost_with_no_namespace_left_is_found() {
    let lost = EMPTY.replace(
        "1073610752 16777216 1056964608 1056964608",
        "1073610752 16777216 1040187392 1040187392",
    );
    let found = check(
        &Op::Destroy { slot: 0 },
        None,
        &parse(FSDAX_MADE),
        &ended(0),
        &parse(&lost),
        Dimms::AllEnabled,
    );
    assert_eq!(names(&found), vec![Invariant::CapacityConserved]);
}

#[test]
fn ndctl_and_sysfs_disagreeing_is_found() {
    let disagree = FSDAX_MADE.replace("memory 1", "memory 0");
    let found = check(
        &Op::Disable { slot: 0 },
        None,
        &parse(FSDAX_MADE),
        &ended(0),
        &parse(&disagree),
        Dimms::AllEnabled,
    );
    assert_eq!(names(&found), vec![Invariant::ListAgreesWithSysfs]);
}

#[test]
fn a_namespace_lost_in_a_reboot_is_found() {
    let found = check(
        &Op::Reboot,
        None,
        &parse(FSDAX_MADE),
        &ended(0),
        &parse(EMPTY),
        Dimms::AllEnabled,
    );
    assert_eq!(names(&found), vec![Invariant::RebootKeepsNamespaces]);
    let same = check(
        &Op::Reboot,
        None,
        &parse(FSDAX_MADE),
        &ended(0),
        &parse(FSDAX_MADE),
        Dimms::AllEnabled,
    );
    assert!(same.is_empty());
}

#[test]
fn a_disabled_namespace_coming_back_enabled_after_a_reboot_is_the_same_namespace() {
    // Disabled, it shows raw (no claim); after the reboot its sector claim.
    let disabled = "region 1073610752 16777216 1040187392 1040187392 1
namespace namespace0.0 33554432 raw 0 u7
ndctl
[{\"dev\":\"namespace0.0\",\"mode\":\"raw\",\"size\":33554432,\"uuid\":\"u7\",\"state\":\"disabled\"}]
";
    let back = "region 1073610752 16777216 1040187392 1040187392 1
namespace namespace0.0 33554432 safe 1 u7
ndctl
[{\"dev\":\"namespace0.0\",\"mode\":\"sector\",\"size\":32899072,\"uuid\":\"b9\"}]
";
    let found = check(
        &Op::Reboot,
        None,
        &parse(disabled),
        &ended(0),
        &parse(back),
        Dimms::AllEnabled,
    );
    assert!(found.is_empty(), "{found:?}");
    // An enabled fsdax namespace that comes back in another mode is not.
    let raw = FSDAX_MADE
        .replace("memory 1", "raw 1")
        .replace("\"fsdax\"", "\"raw\"");
    let found = check(
        &Op::Reboot,
        None,
        &parse(FSDAX_MADE),
        &ended(0),
        &parse(&raw),
        Dimms::AllEnabled,
    );
    assert_eq!(names(&found), vec![Invariant::RebootKeepsNamespaces]);
}

#[test]
fn an_enabled_namespace_that_does_not_read_is_found() {
    let unreadable = FSDAX_MADE.replace("read pmem0 1", "read pmem0 0");
    let found = check(
        &Op::Enable { slot: 0 },
        None,
        &parse(FSDAX_MADE),
        &ended(0),
        &parse(&unreadable),
        Dimms::AllEnabled,
    );
    assert_eq!(names(&found), vec![Invariant::EnabledIsReadable]);
}

#[test]
fn a_kernel_report_in_the_step_is_found() {
    let mut result = ended(0);
    result.kernel = vec![kernel_record(
        4,
        "WARNING: CPU: 0 PID: 77 at drivers/nvdimm/label.c:123 nd_label_write",
    )];
    let found = check(
        &Op::RegionEnable,
        None,
        &parse(EMPTY),
        &result,
        &parse(EMPTY),
        Dimms::AllEnabled,
    );
    assert_eq!(names(&found), vec![Invariant::NoKernelReport]);
    assert!(found[0]
        .kernel_line
        .as_deref()
        .unwrap()
        .contains("nd_label_write"));
    assert_eq!(found[0].how, "WARNING");
}

/// A region that did not come back with namespaces in its labels: one
/// finding, the region lost, not the namespaces it took with it too (a
/// shrink that drops the creates would otherwise be another bug).
#[test]
fn a_lost_region_is_one_finding_whatever_its_labels_held() {
    let reload = Op::CxlDriverReload;
    let empty = Observation::default();
    let held = parse(FSDAX_MADE);
    let found = check(&reload, None, &held, &ended(0), &empty, Dimms::AllEnabled);
    assert!(
        found.iter().any(|v| v.how == "namespaces-differ"),
        "{found:?}"
    );
    let found = in_order(region_gone(found, &reload));
    let hows: Vec<&str> = found.iter().map(|v| v.how).collect();
    assert_eq!(hows, ["region-lost"]);
}

/// 6.1's NULL dereference in `release_mappings` as a driver reload met it:
/// the Oops killed `cxl create-region`, and the nd region never came
/// back. The finding is the report, not the lost region.
#[test]
fn a_kernel_report_that_took_the_region_with_it_is_the_finding() {
    let mut result = ended(137);
    result.kernel = vec![kernel_record(
        1,
        "BUG: kernel NULL pointer dereference, address: 0000000000000300",
    )];
    let reload = Op::CxlDriverReload;
    let empty = Observation::default();
    let found = check(
        &reload,
        None,
        &parse(EMPTY),
        &result,
        &empty,
        Dimms::AllEnabled,
    );
    let found = in_order(region_gone(found, &reload));
    assert_eq!(found[0].invariant, Invariant::NoKernelReport, "{found:?}");
    assert!(found[0].detail.contains("NULL pointer"), "{found:?}");
    assert_eq!(
        found.last().map(|v| v.detail.as_str()),
        Some("the nd region did not come back after cxl-driver-reload")
    );
}

const DEVDAX_MADE: &str = "region 1073610752 16777216 805306368 805306368 1
namespace namespace0.0 268435456 dax 1 u1
namespace namespace0.1 0 raw 0
ndctl
{\"dev\":\"namespace0.0\",\"mode\":\"devdax\",\"size\":266338304,\"uuid\":\"u1\",\"chardev\":\"dax0.0\"}
";

fn round_trip_ended(code: i32) -> StepResult {
    StepResult {
        command: Some(format!(
            "daxctl reconfigure-device -m system-ram dax0.0 || exit {SYSTEM_RAM_REFUSED}; daxctl reconfigure-device -f -m devdax dax0.0"
        )),
        exit_code: Some(code),
        ..Default::default()
    }
}

/// The memory went online, but device-dax could not have its range back
/// (the kmem resources kept): the round trip is stuck in its second half.
#[test]
fn a_dax_round_trip_that_does_not_come_back_is_found() {
    let seen = parse(DEVDAX_MADE);
    let found = check(
        &Op::DaxRoundTrip { slot: 0 },
        None,
        &seen,
        &round_trip_ended(1),
        &seen,
        Dimms::AllEnabled,
    );
    assert_eq!(names(&found), vec![Invariant::DaxRoundTripReturns]);
    assert_eq!(found[0].how, "stuck");
}

/// A device too small or misplaced for a memory block may not become
/// system-ram; refused there, the round trip promised nothing.
#[test]
fn a_dax_round_trip_refused_system_ram_breaks_nothing() {
    let seen = parse(DEVDAX_MADE);
    for code in [0, SYSTEM_RAM_REFUSED] {
        let found = check(
            &Op::DaxRoundTrip { slot: 0 },
            None,
            &seen,
            &round_trip_ended(code),
            &seen,
            Dimms::AllEnabled,
        );
        assert!(found.is_empty(), "exit {code}: {found:?}");
    }
    // Only the round trip is judged by its exit status.
    let found = check(
        &Op::Enable { slot: 0 },
        None,
        &seen,
        &ended(1),
        &seen,
        Dimms::AllEnabled,
    );
    assert!(found.is_empty(), "{found:?}");
}

/// A region disabled, as the observation script prints it.
const REGION_DISABLED: &str = "region 1073610752 16777216 0 0 0
ndctl
";

/// `ndctl enable-region` (which exits 0 when it enabled none) on a region
/// whose labels hold `labels`, the guest showing `after` then.
fn region_enable(labels: &str, after: &str, dimms: Dimms) -> Vec<Violation> {
    let result = ended(0);
    check(
        &Op::RegionEnable,
        None,
        &parse(labels),
        &result,
        &parse(after),
        dimms,
    )
}

/// The mutant of a region that enables without one of its labelled DIMMs:
/// it comes up, and the namespaces its labels hold do not.
#[test]
fn a_region_enabled_while_a_dimm_is_disabled_is_found() {
    let found = region_enable(FSDAX_MADE, EMPTY, Dimms::OneDisabled);
    assert_eq!(
        names(&found),
        vec![
            Invariant::RegionFollowsItsDimms,
            Invariant::RebootKeepsNamespaces
        ]
    );
    assert_eq!(found[0].how, "enabled-without-dimm");
    // Refused, and the region still disabled: as it must be.
    let refused = region_enable(FSDAX_MADE, REGION_DISABLED, Dimms::OneDisabled);
    assert!(refused.is_empty(), "{refused:?}");
}

#[test]
fn a_region_enabled_again_brings_back_what_its_labels_hold() {
    let back = region_enable(FSDAX_MADE, FSDAX_MADE, Dimms::AllEnabled);
    assert!(back.is_empty(), "{back:?}");
    let lost = region_enable(FSDAX_MADE, EMPTY, Dimms::AllEnabled);
    assert_eq!(names(&lost), vec![Invariant::RebootKeepsNamespaces]);
    let refused = region_enable(FSDAX_MADE, REGION_DISABLED, Dimms::AllEnabled);
    assert_eq!(names(&refused), vec![Invariant::RegionFollowsItsDimms]);
    assert_eq!(refused[0].how, "refused");
}

/// The mutant as explore found it on cxl-x2 (the region disabled, a DIMM
/// disabled, the region enabled): up with no capacity. The region up
/// without its DIMM is the finding, not the capacity it shows then.
#[test]
fn a_region_up_without_its_dimm_is_named_before_its_capacity() {
    let up_empty = "region 536870912 16777216 0 0 1
namespace namespace0.0 0 raw 0
ndctl
";
    let found = in_order(region_enable(REGION_DISABLED, up_empty, Dimms::OneDisabled));
    assert_eq!(
        found[0].invariant,
        Invariant::RegionFollowsItsDimms,
        "{found:?}"
    );
    assert!(names(&found).contains(&Invariant::CapacityConserved));
}
