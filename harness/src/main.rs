//! The `ndharness` command line: parse, set up signals, hand each command
//! to its module in [`cli`].

mod cli;

use std::process::ExitCode;

use clap::Parser;
use cli::args::{Cli, Command, StatesAction, TopologyAction};

fn main() -> ExitCode {
    // `ndharness ... | head` ends quietly, as other command-line tools do.
    // SAFETY: restoring the default action of a signal at start-up, before
    // any thread exists.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let parsed = Cli::parse();
    install_ctrl_c();
    match dispatch(parsed.command) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {}", chain(&e));
            ExitCode::from(2)
        }
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
        Command::Boot(args) => cli::boot::boot(args),
        Command::Run(args) => cli::run::run(args),
        Command::Compare(args) => cli::compare::compare(args),
        Command::MergeResults(args) => cli::merge::merge(args),
        Command::Bisect(args) => cli::bisect::bisect(args),
        Command::Bench(args) => cli::bench::bench(args),
        Command::Explore(args) => cli::explore::explore(args),
        Command::Validate(args) => cli::validate::validate(args),
        Command::Mutate(args) => cli::mutate::mutate(args),
        Command::States { action } => cli::states::states(action.unwrap_or(StatesAction::List)),
        Command::Topology {
            action: TopologyAction::Show { topology },
        } => cli::topology::show(&topology),
    }
}
