//! Shell command lines, one home: the `/bin/sh -c SCRIPT` argv the guest
//! agent runs ([`shell`]), and POSIX quoting of the words put into a
//! script or shown to a user to paste ([`quote`], through the `shlex`
//! crate).

/// The argv that runs `script` with the guest's (or host's) `/bin/sh`.
pub fn shell(script: impl Into<String>) -> [String; 3] {
    ["/bin/sh".into(), "-c".into(), script.into()]
}

/// `word` as one shell word: bare when it is safe, quoted otherwise. A NUL
/// byte (no shell word can hold one) is dropped.
pub fn quote(word: &str) -> String {
    match shlex::try_quote(word) {
        Ok(quoted) => quoted.into_owned(),
        Err(_) => quote(&word.replace('\0', "")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn safe_words_stay_bare_and_the_rest_survive_the_shell() {
        assert_eq!(quote("/dev/pmem0"), "/dev/pmem0");
        for word in ["a b", "it's", "$(reboot)", "", "x\"y", "tab\there"] {
            let out = std::process::Command::new("sh")
                .args(["-c", &format!("printf %s {}", quote(word))])
                .output()
                .unwrap();
            assert_eq!(String::from_utf8(out.stdout).unwrap(), word, "{word:?}");
        }
        assert_eq!(quote("a\0b"), "ab");
    }

    #[test]
    fn a_script_runs_under_sh() {
        assert_eq!(shell("true"), ["/bin/sh", "-c", "true"]);
    }
}
