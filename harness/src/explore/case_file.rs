//! A finding as a case file in the suites' format, ready to move into
//! suites/regressions: the topology, a description naming the broken
//! invariant, the seed and the sequence, the steps as they ran (the
//! labels' initialization first, as explore's guests start), and after the
//! step that broke the invariant, a step that checks it, so the case fails
//! the same way under `ndharness run`.

use std::fmt::Write as _;

use super::generate::GENERATOR;
use super::invariant::{Invariant, Violation};
use super::search::Finding;
use super::sequence::StepLog;

/// The case's YAML.
pub fn render(finding: &Finding, topology: &str, kernel: &str) -> String {
    let run = &finding.run;
    let Some((at, violation)) = &run.violation else {
        return String::new();
    };
    let broken = &run.steps[*at];
    let mut out = String::new();
    let _ = writeln!(out, "description: >");
    let description = format!(
        "Found by `ndharness explore --topology {topology} --seed {}` (sequence {}, \
         generator {GENERATOR}) on {kernel}, shrunk from {} steps to {}: invariant \
         {} broken at `{}`: {}.",
        finding.seed,
        finding.index,
        finding.generated,
        finding.minimal.len(),
        violation.invariant,
        broken
            .command
            .as_deref()
            .unwrap_or("the guest's preparation (drivers, regions, labels)"),
        violation.detail
    );
    for line in wrap(&description, 72) {
        let _ = writeln!(out, "  {line}");
    }
    let _ = writeln!(out, "topology: {topology}");
    let _ = writeln!(
        out,
        "# Judged by its steps and the kernel log: what it checks is in them."
    );
    let _ = writeln!(out, "snapshots: false");
    let _ = writeln!(out, "steps:");
    if matches!(broken.op, super::model::Op::Prepare) {
        // The kernel reported it while the guest was prepared (drivers,
        // regions, labels): the case's own preparation reproduces it.
        step(&mut out, "true", None);
        return out;
    }
    if !topology.starts_with("cxl") {
        step(
            &mut out,
            "ndctl disable-region all && ndctl init-labels -f all && ndctl enable-region all",
            None,
        );
    }
    for (i, log) in run.steps.iter().enumerate() {
        let Some(command) = &log.command else {
            continue;
        };
        if command == "reboot" {
            let _ = writeln!(out, "  - reboot: {{}}");
        } else if i == *at {
            step(&mut out, command, expectation(violation, log));
        } else {
            // As it ended when found; a refusal then is a refusal now.
            let any = (log.exit_code != Some(0)).then_some("{ exit: failure }");
            step(&mut out, command, any);
        }
        if i == *at {
            if let Some(check) = check(&run.region, violation, log) {
                let _ = writeln!(
                    out,
                    "  # {}: {}",
                    violation.invariant,
                    rule(violation.invariant)
                );
                step(&mut out, &check, None);
            }
        }
    }
    out
}

fn step(out: &mut String, command: &str, expect: Option<&str>) {
    let _ = writeln!(out, "  - run: {}", yaml_string(command));
    if let Some(e) = expect {
        let _ = writeln!(out, "    expect: {e}");
    }
}

/// The step that broke the invariant: as it ended, unless the invariant is
/// that it should have succeeded (then the default, exit 0, fails it).
fn expectation(v: &Violation, log: &StepLog) -> Option<&'static str> {
    let refused = log.exit_code != Some(0);
    match v.invariant {
        Invariant::CreateKeepsItsWord if v.detail.contains("was refused, though") => None,
        Invariant::NoKernelReport => None,
        _ if refused => Some("{ exit: failure }"),
        _ => None,
    }
}

fn rule(invariant: Invariant) -> &'static str {
    match invariant {
        Invariant::NoKernelReport => "no kernel report",
        Invariant::CreateKeepsItsWord => {
            "a refused create leaves no namespace behind and takes no capacity; a created one is enabled in its mode"
        }
        Invariant::CapacityConserved => "with every namespace gone, the whole region is available",
        Invariant::ListAgreesWithSysfs => "ndctl list and sysfs agree on enabled",
        Invariant::RebootKeepsNamespaces => {
            "a reboot or a driver reload brings the region and its namespaces' sizes back"
        }
        Invariant::EnabledIsReadable => "an enabled namespace reads at both ends",
    }
}

/// A shell line that fails while the invariant stays broken.
fn check(region: &str, v: &Violation, log: &StepLog) -> Option<String> {
    let r = format!("/sys/bus/nd/devices/{region}");
    match v.invariant {
        Invariant::NoKernelReport => None,
        Invariant::CreateKeepsItsWord if log.exit_code != Some(0) => {
            let held = log.before.sized().len();
            let available = log.before.region.map(|s| s.available)?;
            Some(format!(
                "n=0; for s in {r}/namespace*/size; do [ \"$(cat $s)\" = 0 ] || n=$((n+1)); done; \
                 test $n = {held} && test $(cat {r}/available_size) = {available}"
            ))
        }
        Invariant::CreateKeepsItsWord => {
            let mode = match &log.op {
                super::model::Op::Create { mode, .. } => mode.to_string(),
                _ => return None,
            };
            Some(format!(
                "ndctl list -N -r {region} | grep -q '\"mode\":\"{mode}\"' && ! ndctl list -N -i -r {region} | grep -q '\"state\":\"disabled\"'"
            ))
        }
        Invariant::CapacityConserved => Some(format!(
            "a=$(($(cat {r}/align))); test $(cat {r}/available_size) = $(( $(cat {r}/size) / a * a ))"
        )),
        Invariant::ListAgreesWithSysfs => Some(format!(
            "for n in {r}/namespace*; do [ \"$(cat $n/size)\" = 0 ] && continue; \
             s=0; [ -e $n/driver ] && s=1; l=1; ndctl list -N -i -n ${{n##*/}} | grep -q '\"state\":\"disabled\"' && l=0; \
             test $s = $l || exit 1; done"
        )),
        Invariant::RebootKeepsNamespaces => {
            let sizes: Vec<String> = log
                .before
                .sized()
                .iter()
                .map(|n| n.size.to_string())
                .collect();
            Some(format!(
                "test -d {r} && test \"$(cat {r}/namespace*/size | grep -v '^0$' | sort -n | tr '\\n' ' ')\" = \"{}\"",
                sizes.iter().map(|s| format!("{s} ")).collect::<String>()
            ))
        }
        Invariant::EnabledIsReadable => Some(
            "for b in /sys/block/pmem*; do d=${b##*/}; n=$(( $(cat $b/size) / 8 )); \
             dd if=/dev/$d of=/dev/null bs=4096 count=1 && dd if=/dev/$d of=/dev/null bs=4096 count=1 skip=$((n - 1)) || exit 1; done"
                .into(),
        ),
    }
}

/// A YAML scalar holding `text` as it is.
fn yaml_string(text: &str) -> String {
    let plain = !text.is_empty()
        && !text.contains(": ")
        && !text.contains(" #")
        && !text.starts_with([
            '!', '&', '*', '{', '[', '"', '\'', '|', '>', '%', '@', '`', '-', '?',
        ])
        && !text.contains('\'');
    if plain {
        text.to_owned()
    } else {
        format!("'{}'", text.replace('\'', "''"))
    }
}

fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines = vec![String::new()];
    for word in text.split_whitespace() {
        let line = lines.last_mut().expect("one line");
        if !line.is_empty() && line.len() + 1 + word.len() > width {
            lines.push(word.to_owned());
        } else {
            if !line.is_empty() {
                line.push(' ');
            }
            line.push_str(word);
        }
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_become_yaml_that_reads_back() {
        for command in [
            "ndctl create-namespace -r region0 -m sector -s 16777216",
            "echo 4096 > /sys/bus/nd/devices/region0/align",
            "x=1; grep -q '\"mode\":\"fsdax\"'",
            "a: b # c",
        ] {
            let yaml = format!("run: {}\n", yaml_string(command));
            let v: serde_yaml_ng::Value = serde_yaml_ng::from_str(&yaml).unwrap();
            assert_eq!(v["run"].as_str(), Some(command), "{yaml}");
        }
    }
}
