//! make over a kernel tree: out of tree into the build folder, for
//! x86_64, through ccache when installed, every line appended to the
//! build's log and shown as the stage's current item.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::{have, Error};
use crate::stages::Stage;
use crate::tool::{self, Limit, Tool};

/// make over a tree, out of tree into `out`, logged to `out/build.log`.
pub(super) struct Make {
    tree: PathBuf,
    out: PathBuf,
    pub(super) log: PathBuf,
    ccache: bool,
}

impl Make {
    pub(super) fn new(tree: &Path, out: &Path) -> Make {
        Make {
            tree: tree.to_owned(),
            out: out.to_owned(),
            log: out.join("build.log"),
            ccache: have("ccache"),
        }
    }

    pub(super) fn tree(&self) -> &Path {
        &self.tree
    }

    /// `make -C TREE O=OUT ARCH=x86_64 ARGS`.
    pub(super) fn run(
        &self,
        args: &[String],
        limit: Limit,
        stage: &mut Stage,
    ) -> Result<(), Error> {
        let mut cmd = Command::new("make");
        cmd.arg("-C")
            .arg(&self.tree)
            .arg(format!("O={}", self.out.display()))
            .arg("ARCH=x86_64");
        if self.ccache {
            cmd.arg("CC=ccache gcc");
        }
        cmd.args(args);
        self.logged(&mut cmd, limit, stage)
    }

    /// Runs `cmd` with stdout and stderr appended to the log; its lines are
    /// the stage's items.
    pub(super) fn logged(
        &self,
        cmd: &mut Command,
        limit: Limit,
        stage: &mut Stage,
    ) -> Result<(), Error> {
        let shown = format!(
            "{} {}",
            cmd.get_program().to_string_lossy(),
            cmd.get_args()
                .map(|a| a.to_string_lossy().into_owned())
                .collect::<Vec<_>>()
                .join(" ")
        );
        let mut on_line = |line: &str| stage.item(line);
        let ran = Tool::new(limit, cmd)
            .shown(format!("`{shown}`"))
            .log(&self.log)
            .on_line(&mut on_line)
            .run();
        match ran {
            Ok(_) => Ok(()),
            Err(tool::Error::Failed { status, tail, .. }) => Err(Error::Build {
                command: shown,
                code: status.code().map_or("by signal".into(), |c| c.to_string()),
                log: self.log.clone(),
                tail: tail.0.join("\n"),
            }),
            Err(other) => Err(Error::Tool(other, self.log.clone())),
        }
    }
}
