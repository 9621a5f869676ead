//! A finding as a case file in the suites' format, ready to move into
//! suites/regressions: the topology, a description naming the broken
//! invariant, the seed and the sequence, the steps as they ran (the
//! labels' initialization first, as explore's guests start), and after the
//! step that broke the invariant, a step that checks it, so the case fails
//! the same way under `ndharness run`.

use super::generate::GENERATOR;
use super::invariant::{Invariant, Violation};
use super::search::Finding;
use super::sequence::StepLog;
use crate::suite::{Action, CaseSpec, ExitExpect, Expect, Step, TopologyRef};

/// The case's YAML, written through the suites' own types
/// ([`CaseSpec`]), so it loads as any case does.
pub fn render(finding: &Finding, topology: &str, kernel: &str) -> String {
    match case(finding, topology, kernel) {
        Some(case) => serde_yaml_ng::to_string(&case).expect("a case serializes"),
        None => String::new(),
    }
}

/// The finding as a case; `None` when its run broke no invariant.
pub fn case(finding: &Finding, topology: &str, kernel: &str) -> Option<CaseSpec> {
    let run = &finding.run;
    let (at, violation) = run.violation.as_ref()?;
    let broken = &run.steps[*at];
    let mut description = format!(
        "Found by `ndharness explore --topology {topology} --seed {}` (sequence {}, \
         generator {GENERATOR}) on {kernel}, shrunk from {} steps to {}: invariant \
         {} broken at `{}`: {}. Judged by its steps and the kernel log",
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
    let mut steps = Vec::new();
    let spec = |steps: Vec<Step>, description: String| CaseSpec {
        description,
        topology: TopologyRef(vec![topology.to_owned()]),
        ignored: Default::default(),
        known_failures: Default::default(),
        bug: None,
        kernel_args: String::new(),
        cold: false,
        modes: Vec::new(),
        assemble: true,
        ndctl_tests: false,
        skip_exit: None,
        snapshots: false,
        step_timeout: crate::suite::CaseSpec::DEFAULT_STEP_TIMEOUT,
        steps,
    };
    if matches!(broken.op, super::model::Op::Prepare) {
        // The kernel reported it while the guest was prepared (drivers,
        // regions, labels): the case's own preparation reproduces it.
        description.push('.');
        return Some(spec(
            vec![run_step("true", ExitExpect::Success)],
            description,
        ));
    }
    if !topology.starts_with("cxl") {
        steps.push(run_step(
            "ndctl disable-region all && ndctl init-labels -f all && ndctl enable-region all",
            ExitExpect::Success,
        ));
    }
    for (i, log) in run.steps.iter().enumerate() {
        let Some(command) = &log.command else {
            continue;
        };
        if command == "reboot" {
            steps.push(Step {
                action: Action::Reboot,
                expect: Expect::default(),
                timeout: None,
            });
        } else if i == *at {
            steps.push(run_step(command, expectation(violation, log)));
        } else {
            // As it ended when found; a refusal then is a refusal now.
            let exit = match log.exit_code {
                Some(0) => ExitExpect::Success,
                _ => ExitExpect::Failure,
            };
            steps.push(run_step(command, exit));
        }
        if i == *at {
            if let Some(check) = check(&run.region, violation, log) {
                description.push_str(&format!(
                    "; the step after it checks {}: {}",
                    violation.invariant,
                    rule(violation.invariant)
                ));
                steps.push(run_step(&check, ExitExpect::Success));
            }
        }
    }
    description.push('.');
    Some(spec(steps, description))
}

/// A `run:` step expecting `exit`.
fn run_step(command: &str, exit: ExitExpect) -> Step {
    Step {
        action: Action::Run(command.to_owned()),
        expect: Expect {
            exit,
            ..Expect::default()
        },
        timeout: None,
    }
}

/// The step that broke the invariant: as it ended, unless the invariant is
/// that it should have succeeded (then the default, exit 0, fails it).
fn expectation(v: &Violation, log: &StepLog) -> ExitExpect {
    let refused = log.exit_code != Some(0);
    match v.invariant {
        Invariant::CreateKeepsItsWord if v.how == "refused" => ExitExpect::Success,
        Invariant::NoKernelReport | Invariant::DaxRoundTripReturns => ExitExpect::Success,
        _ if refused => ExitExpect::Failure,
        _ => ExitExpect::Success,
    }
}

fn rule(invariant: Invariant) -> &'static str {
    match invariant {
        Invariant::NoKernelReport => "no kernel report",
        Invariant::CreateKeepsItsWord => {
            "a refused create leaves no namespace behind and takes no capacity; a created one is enabled in its mode"
        }
        Invariant::CapacityConserved => "with every namespace gone, the whole region is available",
        Invariant::DaxRoundTripReturns => "a devdax device taken to system-ram comes back to devdax",
        Invariant::RegionFollowsItsDimms => {
            "a region enables when its DIMMs are enabled, and not while one is disabled"
        }
        Invariant::ListAgreesWithSysfs => "ndctl list and sysfs agree on enabled",
        Invariant::RebootKeepsNamespaces => {
            "a reboot, a driver reload or the region enabled again brings the region and its namespaces' sizes back"
        }
        Invariant::EnabledIsReadable => "an enabled namespace reads at both ends",
    }
}

/// A shell line that fails while the invariant stays broken.
fn check(region: &str, v: &Violation, log: &StepLog) -> Option<String> {
    let r = format!("/sys/bus/nd/devices/{region}");
    match v.invariant {
        // The step itself, expected to succeed, is the check.
        Invariant::NoKernelReport | Invariant::DaxRoundTripReturns => None,
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
        // `ndctl enable-region` exits 0 when it enabled none: the region's
        // driver tells.
        Invariant::RegionFollowsItsDimms if v.how == "refused" => Some(format!("test -e {r}/driver")),
        Invariant::RegionFollowsItsDimms => Some(format!("test ! -e {r}/driver")),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_with_quotes_and_colons_read_back_as_they_were() {
        for command in [
            "ndctl create-namespace -r region0 -m sector -s 16777216",
            "echo 4096 > /sys/bus/nd/devices/region0/align",
            "x=1; grep -q '\"mode\":\"fsdax\"'",
            "a: b # c",
            "- looks like a list",
        ] {
            let case = CaseSpec {
                steps: vec![run_step(command, ExitExpect::Failure)],
                ..crate::yaml::parse("c.yaml", "topology: nfit-1\nsteps: []\n").unwrap()
            };
            let yaml = serde_yaml_ng::to_string(&case).unwrap();
            let back: CaseSpec = crate::yaml::parse("c.yaml", &yaml).unwrap();
            assert_eq!(back, case, "{yaml}");
        }
    }
}
