//! The command line's manual outside `--help`: shell completion scripts
//! (`ndharness completions SHELL`, clap_complete) and man pages
//! (`ndharness man --out DIR`, clap_mangen), both made from the same clap
//! types as the parser, so they cannot say otherwise.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use clap::CommandFactory;

use super::args::Cli;

/// The completion script of `shell`, on stdout.
pub fn completions(shell: clap_complete::Shell) -> anyhow::Result<ExitCode> {
    let mut command = Cli::command();
    clap_complete::generate(shell, &mut command, "ndharness", &mut std::io::stdout());
    Ok(ExitCode::SUCCESS)
}

/// ndharness.1 and a page per command (ndharness-run.1, ...) in `out`.
pub fn man_pages(out: &Path) -> anyhow::Result<ExitCode> {
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let command = Cli::command();
    clap_mangen::generate_to(command, out)
        .with_context(|| format!("writing the man pages into {}", out.display()))?;
    let pages = std::fs::read_dir(out)
        .map(|d| {
            d.flatten()
                .filter(|e| e.path().extension().is_some_and(|x| x == "1"))
                .count()
        })
        .unwrap_or(0);
    println!(
        "{pages} man pages in {} (man -l {}/ndharness.1)",
        out.display(),
        out.display()
    );
    Ok(ExitCode::SUCCESS)
}
