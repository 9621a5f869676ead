//! `ndharness bisect`: `git bisect run` over a kernel tree, each step an
//! `ndharness run --bisect` of the case on the tree's kernel. The step's
//! command line is composed from the `run` command's own types and
//! rendered by [`run_argv`], the one place that knows each of its flags.

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::process::{Command as Process, ExitCode, ExitStatus};

use super::args::{
    BisectArgs, Common, GuestArgs, KcidbArgs, MachineArgs, RunArgs, SelectArgs, ShareArgs,
};
use super::config::find_root;
use anyhow::Context;
use ndharness::suite::PointSelection;
use ndharness::tool::{self, Tool};

pub fn bisect(args: BisectArgs) -> anyhow::Result<ExitCode> {
    let root = find_root(args.common.root.as_deref())?;
    let tree = &args.kernel_tree;
    if !has_commits(tree, [&args.good, &args.bad])? {
        anyhow::bail!(
            "{} has no commits {} and {}: --kernel-tree must be a git work tree holding both",
            tree.display(),
            args.good,
            args.bad
        );
    }
    if !git(tree, ["bisect", "start", &args.bad, &args.good])?.success() {
        anyhow::bail!("git bisect start {} {} failed", args.bad, args.good);
    }
    let exe = std::env::current_exe()?;
    let step = step_args(&args, root, tree.canonicalize()?);
    let mut step_command = vec![exe.into_os_string(), "run".into()];
    step_command.extend(run_argv(&step));
    let shown: Vec<_> = step_command.iter().map(|a| a.to_string_lossy()).collect();
    eprintln!("git bisect run {}", shown.join(" "));
    let bisect_run = ["bisect", "run"].map(OsString::from);
    let status = git_within(
        tool::GIT_BISECT_RUN,
        tree,
        bisect_run.into_iter().chain(step_command),
    );
    // Whatever the search came to, the tree is left as it was found.
    let log = git(tree, ["bisect", "log"]);
    git(tree, ["bisect", "reset"])?;
    let status = status?;
    log?;
    Ok(ExitCode::from(if status.success() { 0 } else { 1 }))
}

fn git<A: AsRef<OsStr>>(
    tree: &Path,
    args: impl IntoIterator<Item = A>,
) -> anyhow::Result<ExitStatus> {
    git_within(tool::GIT, tree, args)
}

/// git in `tree`, its output the user's, killed (its steps too) after the
/// deadline of `limit`.
fn git_within<A: AsRef<OsStr>>(
    limit: tool::Limit,
    tree: &Path,
    args: impl IntoIterator<Item = A>,
) -> anyhow::Result<ExitStatus> {
    let mut cmd = Process::new("git");
    cmd.arg("-C").arg(tree).args(args);
    let name = format!("`{}`", shown(&cmd));
    let done = Tool::new(limit, &mut cmd)
        .shown(name)
        .inherit()
        .output()
        .with_context(|| format!("running git in {}", tree.display()))?;
    Ok(done.status)
}

fn shown(cmd: &Process) -> String {
    let args: Vec<_> = cmd.get_args().map(|a| a.to_string_lossy()).collect();
    format!("{} {}", cmd.get_program().to_string_lossy(), args.join(" "))
}

/// Whether `tree` has every revision of `revisions` as a commit.
fn has_commits<'a>(
    tree: &Path,
    revisions: impl IntoIterator<Item = &'a String>,
) -> anyhow::Result<bool> {
    for revision in revisions {
        let commit = format!("{revision}^{{commit}}");
        if !git(tree, ["rev-parse", "--verify", "-q", &commit])?.success() {
            return Ok(false);
        }
    }
    Ok(true)
}

/// The `run` a bisect step is: the case, judged as `git bisect run` reads
/// it (`--bisect`), on the kernel built from `tree`, with this command's
/// root, mirror, accelerator and boot timeout.
fn step_args(args: &BisectArgs, root: PathBuf, tree: PathBuf) -> RunArgs {
    RunArgs {
        filters: vec![args.case.clone()],
        exact: args.exact,
        bisect: true,
        guest: GuestArgs {
            common: Common {
                root: Some(root),
                mirror: args.common.mirror.clone(),
            },
            select: SelectArgs {
                kernel_tree: Some(tree),
                ..SelectArgs::default()
            },
            machine: args.machine.clone(),
            ..GuestArgs::default()
        },
        ..RunArgs::default()
    }
}

/// A command line being written, flag by flag.
#[derive(Default)]
struct Argv(Vec<OsString>);

impl Argv {
    fn positional(&mut self, value: Option<&String>) {
        self.0.extend(value.map(OsString::from));
    }

    fn switch(&mut self, flag: &str, on: bool) {
        if on {
            self.0.push(flag.into());
        }
    }

    fn value(&mut self, flag: &str, value: impl AsRef<OsStr>) {
        self.0.push(flag.into());
        self.0.push(value.as_ref().to_owned());
    }

    fn optional(&mut self, flag: &str, value: Option<impl AsRef<OsStr>>) {
        if let Some(value) = value {
            self.value(flag, value);
        }
    }
}

/// The words after `ndharness run` that parse back to `run`: every field
/// is taken apart by name, so a flag added to the types does not compile
/// here until it is rendered.
pub fn run_argv(run: &RunArgs) -> Vec<OsString> {
    let RunArgs {
        filters,
        filter_expr,
        profile,
        power_cuts,
        power_cut_seed,
        list,
        exact,
        ignored,
        include_ignored,
        skip,
        test_threads,
        results,
        bisect,
        new_variant,
        repeat,
        until_failure,
        soak,
        no_tests,
        slow_after,
        partition,
        previous,
        kcidb: KcidbArgs {
            kcidb,
            kcidb_origin,
        },
        share: ShareArgs { shares },
        guest,
    } = run;
    let mut argv = Argv::default();
    for filter in filters {
        argv.positional(Some(filter));
    }
    argv.optional("--filter-expr", filter_expr.as_ref());
    argv.optional("--profile", profile.as_ref());
    // Parsed from the flag: every write or the default sample.
    let points = power_cuts.map(|p| match p {
        PointSelection::Every => "every-write",
        PointSelection::Sample { .. } => "sample",
    });
    argv.optional("--power-cuts", points);
    argv.optional("--power-cut-seed", power_cut_seed.map(|n| n.to_string()));
    argv.switch("--list", *list);
    argv.switch("--exact", *exact);
    argv.switch("--ignored", *ignored);
    argv.switch("--include-ignored", *include_ignored);
    for name in skip {
        argv.value("--skip", name);
    }
    argv.optional("--test-threads", test_threads.map(|n| n.to_string()));
    argv.optional("--out", results.as_ref());
    argv.switch("--bisect", *bisect);
    argv.switch("--new-variant", *new_variant);
    argv.optional("--repeat", repeat.map(|n| n.to_string()));
    argv.switch("--until-failure", *until_failure);
    let soak = soak.map(|d| humantime::format_duration(d).to_string());
    let no_tests = match no_tests {
        ndharness::runner::result::NoTests::Fail => None,
        ndharness::runner::result::NoTests::Warn => Some("warn"),
        ndharness::runner::result::NoTests::Pass => Some("pass"),
    };
    argv.optional("--no-tests", no_tests);
    let slow_after = slow_after.map(|d| humantime::format_duration(d).to_string());
    argv.optional("--slow-after", slow_after);
    argv.optional("--soak", soak);
    argv.optional("--partition", partition.map(|p| p.to_string()));
    argv.optional("--previous", previous.as_ref());
    argv.optional("--kcidb", kcidb.as_ref());
    argv.optional("--kcidb-origin", kcidb_origin.as_ref().map(|o| o.as_str()));
    for s in shares {
        argv.value(
            "--share",
            format!("{}:{}", s.host.display(), s.guest.display()),
        );
    }
    guest_argv(&mut argv, guest);
    argv.0
}

fn guest_argv(argv: &mut Argv, guest: &GuestArgs) {
    let GuestArgs {
        common: Common { root, mirror },
        image,
        select:
            SelectArgs {
                kernel,
                modules,
                ndctl,
                kernel_tree,
                kernel_config,
            },
        machine:
            MachineArgs {
                accel,
                boot_timeout,
                qemu,
                cold,
            },
        runs_dir,
    } = guest;
    argv.optional("--root", root.as_ref());
    argv.optional("--mirror", mirror.as_ref());
    argv.optional("--image", image.as_ref());
    argv.optional("--kernel", kernel.as_ref());
    argv.optional("--modules", modules.as_ref());
    argv.optional("--ndctl", ndctl.as_ref());
    argv.optional("--kernel-tree", kernel_tree.as_ref());
    argv.optional("--kernel-config", kernel_config.as_ref());
    let accel = clap::ValueEnum::to_possible_value(accel).expect("every accelerator has a name");
    argv.value("--accel", accel.get_name());
    argv.value(
        "--boot-timeout",
        humantime::format_duration(*boot_timeout).to_string(),
    );
    argv.optional("--qemu", qemu.as_ref());
    argv.switch("--cold", *cold);
    argv.optional("--runs-dir", runs_dir.as_ref());
}

#[cfg(test)]
mod tests {
    use clap::Parser;
    use ndharness::vm::accel::AccelChoice;

    use super::*;
    use crate::cli::args::{Cli, Command};

    fn parse(words: impl IntoIterator<Item = OsString>) -> Command {
        let argv = ["ndharness".into()].into_iter().chain(words);
        Cli::try_parse_from(argv).unwrap().command
    }

    fn parse_run(argv: Vec<OsString>) -> RunArgs {
        match parse(["run".into()].into_iter().chain(argv)) {
            Command::Run(run) => run,
            _ => panic!("`run` parsed as another command"),
        }
    }

    #[test]
    fn every_run_flag_renders_and_parses_back() {
        let run = RunArgs {
            filters: vec!["basic::fsdax".into(), "cxl::".into()],
            filter_expr: Some("suite(cxl) & !topology(cxl-x8)".into()),
            profile: Some("check".into()),
            power_cuts: Some(PointSelection::Every),
            power_cut_seed: Some(42),
            list: true,
            exact: true,
            ignored: true,
            include_ignored: true,
            skip: vec!["ndctl::".into(), "with space".into()],
            test_threads: Some(3),
            results: Some("/results dir".into()),
            bisect: true,
            new_variant: true,
            repeat: Some(4),
            until_failure: true,
            soak: Some(std::time::Duration::from_secs(5400)),
            no_tests: ndharness::runner::result::NoTests::Warn,
            slow_after: Some(std::time::Duration::from_secs(90)),
            partition: Some("hash:2/5".parse().unwrap()),
            previous: Some("/old/results.json".into()),
            kcidb: KcidbArgs {
                kcidb: Some("/out/kcidb.json".into()),
                kcidb_origin: Some("my_lab".parse().unwrap()),
            },
            share: ShareArgs {
                // Parsing finds the host folders: ones every host has.
                shares: vec![
                    ndharness::vm::Share {
                        host: "/tmp".into(),
                        guest: "/tmp".into(),
                        read_only: false,
                    },
                    ndharness::vm::Share {
                        host: "/".into(),
                        guest: "/mnt/host root".into(),
                        read_only: false,
                    },
                ],
            },
            guest: GuestArgs {
                common: Common {
                    root: Some("/repo".into()),
                    mirror: Some("http://mirror.example/debian".into()),
                },
                image: Some("nfit-test".into()),
                select: SelectArgs {
                    kernel: Some("/k/bzImage".into()),
                    modules: Some("/k/modules".into()),
                    ndctl: Some("/ndctl/destdir".into()),
                    kernel_tree: Some("/src/linux".into()),
                    kernel_config: Some("/src/my.config".into()),
                },
                machine: MachineArgs {
                    accel: AccelChoice::Tcg,
                    boot_timeout: std::time::Duration::from_secs(33),
                    qemu: Some("/opt/qemu/bin/qemu-system-x86_64".into()),
                    cold: true,
                },
                runs_dir: Some("/runs".into()),
            },
        };
        assert_eq!(parse_run(run_argv(&run)), run);
        let defaults = RunArgs {
            guest: GuestArgs {
                common: Common {
                    root: Some("/repo".into()),
                    mirror: None,
                },
                ..GuestArgs::default()
            },
            ..RunArgs::default()
        };
        assert_eq!(parse_run(run_argv(&defaults)), defaults);
    }

    #[test]
    fn a_bisect_step_runs_the_case_on_the_tree_with_the_bisect_flags() {
        let words = "bisect --case basic::fsdax --exact --good v6.11 --bad v6.12 \
                     --kernel-tree /src/linux --mirror http://m/debian --accel kvm \
                     --boot-timeout 45 --cold";
        let Command::Bisect(args) = parse(words.split(' ').map(OsString::from)) else {
            panic!("`bisect` parsed as another command");
        };
        let step = step_args(&args, "/repo".into(), "/src/linux".into());
        let parsed = parse_run(run_argv(&step));
        assert_eq!(parsed, step);
        assert_eq!(parsed.filters, ["basic::fsdax"]);
        assert!(parsed.exact && parsed.bisect);
        let guest = &parsed.guest;
        assert_eq!(guest.common.root.as_deref(), Some(Path::new("/repo")));
        assert_eq!(guest.common.mirror.as_deref(), Some("http://m/debian"));
        assert_eq!(
            guest.select.kernel_tree.as_deref(),
            Some(Path::new("/src/linux"))
        );
        assert_eq!(guest.machine.accel, AccelChoice::Kvm);
        assert_eq!(
            guest.machine.boot_timeout,
            std::time::Duration::from_secs(45)
        );
        assert!(
            guest.machine.cold,
            "bisect --cold is passed on to each step"
        );
    }
}
