//! The `ndharness` command line: parse, set up signals, hand each command
//! to its module in [`cli`].

mod cli;

use std::process::ExitCode;

use clap::Parser;
use cli::args::{Cli, Command, StatesAction, TopologyAction};

/// The exit code of a command line that does not parse (sysexits'
/// EX_USAGE): never one a run ends with.
const USAGE: u8 = 64;

fn main() -> ExitCode {
    // A usage error is 64 (EX_USAGE), apart from a run's 2 (infrastructure).
    let parsed = match Cli::try_parse() {
        Ok(parsed) => parsed,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { USAGE } else { 0 });
        }
    };
    if prints_only(&parsed.command) {
        // `ndharness run --list | head` ends quietly, as other
        // command-line tools do.
        // SAFETY: restoring the default action of a signal at start-up,
        // before any thread exists.
        unsafe {
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        }
    }
    install_ctrl_c();
    match dispatch(parsed.command) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {}", chain(&e));
            let usage = e.downcast_ref::<cli::Usage>().is_some();
            ExitCode::from(if usage { USAGE } else { 2 })
        }
    }
}

/// Whether the command only prints (a list, a man page, a completion
/// script, a topology), and may die of SIGPIPE when its reader goes. The
/// others drive guests and talk to QEMU over sockets and pipes: a write to
/// a QEMU that was killed must be an error they handle (EPIPE, then a
/// retry or an infrastructure error), never a silent death of the harness
/// (seen once in the faults test: a QEMU killed mid-step took the run with
/// it, exit by signal, nothing said).
fn prints_only(command: &Command) -> bool {
    match command {
        Command::Run(args) => args.list,
        Command::Completions { .. } | Command::Man { .. } | Command::Topology { .. } => true,
        _ => false,
    }
}

/// The error and its causes, each said once: most messages already name
/// their cause ("failed to access PATH: No space left on device").
fn chain(e: &anyhow::Error) -> String {
    let mut text = e.to_string();
    for cause in e.chain().skip(1) {
        let cause = cause.to_string();
        if !text.contains(&cause) {
            text.push_str(": ");
            text.push_str(&cause);
        }
    }
    text
}

fn install_ctrl_c() {
    let _ = ctrlc::set_handler(|| {
        // A `boot` shell's raw mode, undone before exit() skips its guard.
        cli::shell::restore_terminal();
        ndharness::supervisor::kill_all();
        eprintln!("\ninterrupted: every guest and host tool this run started has been stopped");
        // exit() skips destructors; the guests are already dead, and their
        // run folders are kept as evidence.
        std::process::exit(130);
    });
}

fn dispatch(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Image { action } => cli::image::image(action),
        Command::Boot(mut args) => {
            cli::settings::for_guest(&mut args.guest)?;
            cli::boot::boot(args)
        }
        Command::Run(mut args) => {
            cli::settings::for_run(&mut args)?;
            cli::run::run(args)
        }
        Command::Compare(args) => cli::compare::compare(args),
        Command::MergeResults(args) => cli::merge::merge(args),
        Command::Bisect(args) => cli::bisect::bisect(args),
        Command::Bench(args) => cli::bench::bench(args),
        Command::Explore(mut args) => {
            cli::settings::for_guest(&mut args.guest)?;
            cli::explore::explore(args)
        }
        Command::Validate(args) => cli::validate::validate(args),
        Command::Completions { shell } => cli::manual::completions(shell),
        Command::Man { out } => cli::manual::man_pages(&out),
        Command::Mutate(args) => cli::mutate::mutate(args),
        Command::States { action } => cli::states::states(action.unwrap_or(StatesAction::List)),
        Command::Topology {
            action: TopologyAction::Show { topology },
        } => cli::topology::show(&topology),
    }
}
