//! Several guest commands in one agent round trip: a shell script that
//! prints each command's output followed by its exit code, and the parser
//! that cuts them apart.

use std::time::Duration;

use super::{Error, Machine, Result};

/// The end mark [`Machine::exec_each`] prints after each command's output.
const EACH_MARK: &str = "\n@@ndharness-exit=";

impl Machine {
    /// Runs several commands (words without shell syntax) in one guest
    /// round trip, one after the other; returns each one's exit code and
    /// stdout, and the stderr of them all.
    pub async fn exec_each(
        &self,
        commands: &[&[&str]],
        timeout: Duration,
    ) -> Result<(Vec<(i32, String)>, String)> {
        let script = each_script(commands);
        let argv = crate::command_line::shell(script);
        let out = self.exec(&argv, timeout).await?;
        let parts = split_each(&out.stdout_text(), commands.len()).ok_or_else(|| {
            Error::Mismatch(format!(
                "`{}` printed no end mark for each command: {}",
                argv[2],
                out.stderr_text()
            ))
        })?;
        Ok((parts, out.stderr_text()))
    }
}

/// A shell script running `commands` in turn, each followed by its exit
/// code on a line of its own.
fn each_script(commands: &[&[&str]]) -> String {
    commands
        .iter()
        .map(|words| {
            debug_assert!(words.iter().all(|w| w
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_./=:".contains(c))));
            format!(
                "{}; printf '{}%d\\n' $?",
                words.join(" "),
                EACH_MARK.replace('\n', "\\n")
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// Each command's exit code and output from what [`each_script`] printed;
/// `None` unless there are exactly `n` end marks.
fn split_each(stdout: &str, n: usize) -> Option<Vec<(i32, String)>> {
    let mut out = Vec::with_capacity(n);
    let mut rest = stdout;
    for _ in 0..n {
        let at = rest.find(EACH_MARK)?;
        let (output, tail) = rest.split_at(at);
        let tail = &tail[EACH_MARK.len()..];
        let nl = tail.find('\n')?;
        out.push((tail[..nl].parse().ok()?, output.to_owned()));
        rest = &tail[nl + 1..];
    }
    rest.is_empty().then_some(out)
}

/// The first of `commands` whose exit code in `outs` (from
/// [`Machine::exec_each`]) is not 0, as "`COMMAND` failed: STDERR".
pub fn first_failure(commands: &[&[&str]], outs: &[(i32, String)], stderr: &str) -> Option<String> {
    commands
        .iter()
        .zip(outs)
        .find(|(_, (code, _))| *code != 0)
        .map(|(argv, _)| format!("`{}` failed: {stderr}", argv.join(" ")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_command_gets_its_own_output_and_exit_code() {
        let script = each_script(&[&["cxl", "list", "-M"], &["ndctl", "list", "-D"]]);
        assert_eq!(
            script,
            "cxl list -M; printf '\\n@@ndharness-exit=%d\\n' $?; \
             ndctl list -D; printf '\\n@@ndharness-exit=%d\\n' $?"
        );
        // As the shell prints it: output with or without its own last newline.
        let stdout = "[\n  {}\n]\n\n@@ndharness-exit=0\nno newline\n@@ndharness-exit=1\n";
        assert_eq!(
            split_each(stdout, 2).unwrap(),
            vec![(0, "[\n  {}\n]\n".to_owned()), (1, "no newline".to_owned())]
        );
        assert_eq!(
            split_each("\n@@ndharness-exit=0\n", 1).unwrap(),
            vec![(0, String::new())]
        );
        // A missing or an extra mark is not taken for output.
        assert!(split_each(stdout, 3).is_none());
        assert!(split_each(stdout, 1).is_none());
        // The first command that failed is named, with the stderr of all.
        let cmds: [&[&str]; 2] = [&["cxl", "list", "-M"], &["ndctl", "list", "-D"]];
        let outs = split_each(stdout, 2).unwrap();
        assert_eq!(
            first_failure(&cmds, &outs, "no bus"),
            Some("`ndctl list -D` failed: no bus".to_owned())
        );
        assert_eq!(first_failure(&cmds[..1], &outs[..1], ""), None);
    }
}
