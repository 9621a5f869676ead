//! Checkpoint capture: the stable names of the guest's probe-order devices
//! and the layout a snapshot holds (what ndctl and cxl list, names
//! replaced, normalized), each in one guest round trip.

use crate::runner::result::Cause;
use std::time::Duration;

use super::verdict::Verdict;
use crate::names::Names;
use crate::topology::Topology;
use crate::vm::machine::{self, Machine};

/// What the stable names are made from (CXL only: NFIT devices are named
/// in ACPI order).
const NAME_LISTINGS: [&[&str]; 3] = [
    &["cxl", "list", "-M"],
    &["cxl", "list", "-P", "-E"],
    &["ndctl", "list", "-D"],
];

/// Whether the guest has CXL devices the kernel names in probe order
/// (QEMU's, or the mock bus cxl_test's).
fn has_cxl(t: &Topology) -> bool {
    t.cxl.is_some() || t.cxl_test.is_some()
}

/// The guest's probe-order names and their stable replacements.
pub async fn stable_names(m: &Machine, t: &Topology) -> Result<Names, Verdict> {
    if !has_cxl(t) {
        return Ok(Names::default());
    }
    let (outs, _) = m.exec_each(&NAME_LISTINGS, Duration::from_secs(60)).await?;
    Ok(names_from(&outs))
}

/// The names from the outputs of [`NAME_LISTINGS`], in that order.
fn names_from(outs: &[(i32, String)]) -> Names {
    Names::from_listings(&outs[0].1, &outs[1].1, &outs[2].1)
}

/// The listings a layout snapshot holds.
fn layout_listings(t: &Topology) -> Vec<&'static [&'static str]> {
    let mut listings: Vec<&[&str]> = Vec::new();
    if t.has_nfit() || has_cxl(t) || t.nfit_test.is_some() {
        listings.push(&["ndctl", "list", "-RDNu"]);
    }
    if has_cxl(t) {
        listings.push(&["cxl", "list", "-RDMu"]);
    }
    listings
}

/// The stable names and the layout a snapshot holds, from one guest round
/// trip.
pub async fn names_and_layout(m: &Machine, t: &Topology) -> Result<(Names, String), Verdict> {
    let mut commands: Vec<&[&str]> = Vec::new();
    if has_cxl(t) {
        commands.extend(NAME_LISTINGS);
    }
    let name_count = commands.len();
    let listings = layout_listings(t);
    commands.extend(&listings);
    if commands.is_empty() {
        return Ok((Names::default(), String::new()));
    }
    let (outs, stderr) = m.exec_each(&commands, Duration::from_secs(60)).await?;
    let names = if name_count == 0 {
        Names::default()
    } else {
        names_from(&outs)
    };
    let outs = &outs[name_count..];
    if let Some(failed) = machine::first_failure(&listings, outs, &stderr) {
        let what = "listing the layout".to_owned();
        return Err(Verdict::fail(Cause::Setup { what }, failed));
    }
    let mut text = String::new();
    for (argv, (_, stdout)) in listings.iter().zip(outs) {
        let body = crate::normalize::output(&names.apply(stdout));
        text.push_str(&format!("$ {}\n{body}\n", argv.join(" ")));
    }
    Ok((names, text))
}
