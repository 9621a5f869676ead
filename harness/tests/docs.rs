//! The docs say what works: README.md stays short (a newcomer's five
//! minutes, the rest in the book), every `ndharness` command in README.md
//! and book/src parses (each run with `--help` put before any `--`, so
//! clap checks every flag and nothing boots), every `run` example's
//! filter selects a trial (`--list`), every complete case (`# case:
//! PATH`) is the file it names, and every case fragment that has a
//! topology and steps loads with the suites' own parser. Boots nothing.

mod scratch;

use std::path::{Path, PathBuf};

use scratch::{ndharness, text};

const README_LINES: usize = 200;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .canonicalize()
        .unwrap()
}

/// README.md and every page of the book.
fn pages() -> Vec<(PathBuf, String)> {
    let root = repo();
    let mut out = vec![root.join("README.md")];
    let book = root.join("book/src");
    let mut pages: Vec<PathBuf> = std::fs::read_dir(&book)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    pages.sort();
    out.extend(pages);
    out.into_iter()
        .map(|p| {
            let text = std::fs::read_to_string(&p).unwrap();
            (p, text)
        })
        .collect()
}

/// The fenced blocks of `text` with their info string (```console).
fn blocks(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut open: Option<(String, String)> = None;
    for line in text.lines() {
        let fence = line.trim_start().strip_prefix("```");
        match (&mut open, fence) {
            (None, Some(info)) => open = Some((info.trim().to_owned(), String::new())),
            (Some(_), Some(_)) => out.push(open.take().expect("open")),
            (Some((_, body)), None) => {
                body.push_str(line);
                body.push('\n');
            }
            (None, None) => {}
        }
    }
    out
}

/// The `ndharness` command lines of a console or sh block, as words.
fn commands(body: &str) -> Vec<Vec<String>> {
    body.lines()
        .map(|l| l.trim_start().strip_prefix("$ ").unwrap_or(l.trim_start()))
        .filter(|l| l.starts_with("ndharness "))
        .map(|l| shlex::split(l).unwrap_or_else(|| panic!("`{l}` does not split as sh")))
        .collect()
}

#[test]
fn the_readme_is_short_and_links_into_the_book() {
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    let lines = readme.lines().count();
    assert!(lines <= README_LINES, "README.md has {lines} lines");
    assert!(readme.contains("book/"), "README links into the book");
    let summary = std::fs::read_to_string(repo().join("book/src/SUMMARY.md")).unwrap();
    for (page, _) in pages().iter().skip(1) {
        let name = page.file_name().unwrap().to_string_lossy();
        if name != "SUMMARY.md" {
            assert!(
                summary.contains(&format!("({name})")),
                "SUMMARY.md lacks {name}"
            );
        }
    }
}

#[test]
fn every_command_in_the_docs_parses_and_every_run_filter_selects() {
    let root = repo();
    let mut checked = 0;
    for (page, text) in pages() {
        for (info, body) in blocks(&text) {
            if !matches!(info.as_str(), "console" | "sh" | "bash") {
                continue;
            }
            for words in commands(&body) {
                let o = parse_only(&words, &root);
                assert!(
                    o.status.success(),
                    "{}: `{}` does not parse:\n{}",
                    page.display(),
                    words.join(" "),
                    text_of(&o)
                );
                checked += 1;
                let plain_run = words.get(1).is_some_and(|w| w == "run")
                    && !words.iter().any(|w| {
                        w.starts_with("--kernel-tree")
                            || w.starts_with("--share")
                            || w.starts_with("--modules")
                            || w.starts_with("--kernel=/")
                    })
                    // A user's own ndctl (a path) is not on this machine.
                    && !words.windows(2).any(|w| w[0] == "--ndctl" && w[1].contains('/'));
                if plain_run && !words.iter().any(|w| w == "--list") {
                    let mut list: Vec<&str> = words[1..].iter().map(String::as_str).collect();
                    list.push("--list");
                    let o = ndharness(&list).current_dir(&root).output().unwrap();
                    let out = String::from_utf8_lossy(&o.stdout);
                    assert!(
                        out.lines().any(|l| l.ends_with(": test")),
                        "{}: `{}` selects no trial:\n{}",
                        page.display(),
                        words.join(" "),
                        text_of(&o)
                    );
                }
            }
        }
    }
    assert!(checked >= 40, "only {checked} commands in the docs");
}

/// `ndharness WORDS` with `--help` put before any `--`: clap checks every
/// flag, nothing runs.
fn parse_only(words: &[String], root: &Path) -> std::process::Output {
    let mut args: Vec<&str> = words[1..].iter().map(String::as_str).collect();
    let end = args.iter().position(|a| *a == "--").unwrap_or(args.len());
    args.insert(end, "--help");
    ndharness(&args).current_dir(root).output().unwrap()
}

fn text_of(o: &std::process::Output) -> String {
    text(o)
}

#[test]
fn every_case_in_the_docs_is_its_file_or_loads() {
    let root = repo();
    let mut cases = 0;
    for (page, text) in pages() {
        for (info, body) in blocks(&text) {
            if info != "yaml" {
                continue;
            }
            let first = body.lines().next().unwrap_or_default();
            if let Some(path) = first.strip_prefix("# case: ") {
                let file = root.join(path.trim());
                let on_disk = std::fs::read_to_string(&file)
                    .unwrap_or_else(|e| panic!("{}: {}: {e}", page.display(), file.display()));
                let shown = body.split_once('\n').map_or("", |(_, rest)| rest);
                assert_eq!(
                    shown.trim_end(),
                    on_disk.trim_end(),
                    "{}: {path}",
                    page.display()
                );
                cases += 1;
                continue;
            }
            assert!(
                first.starts_with("# fragment") || first.starts_with("# profile"),
                "{}: a yaml block starts with `# case: PATH` or `# fragment`: {first}",
                page.display()
            );
            if body.lines().any(|l| l.starts_with("topology:"))
                && body.lines().any(|l| l.starts_with("steps:"))
            {
                let name = format!("{} (fragment)", page.display());
                let loaded: Result<ndharness::suite::CaseSpec, _> =
                    ndharness::yaml::parse(&name, &body);
                assert!(loaded.is_ok(), "{name}: {}\n{body}", loaded.unwrap_err());
                cases += 1;
            }
        }
    }
    assert!(cases >= 10, "only {cases} cases in the docs");
}

#[test]
fn the_examples_in_help_parse_and_man_pages_and_completions_are_made() {
    let root = repo();
    let mut examples = 0;
    for command in ["run", "boot", "validate", "mutate"] {
        let help = ndharness(&[command, "--help"]).output().unwrap();
        let help = String::from_utf8_lossy(&help.stdout).into_owned();
        for line in help
            .lines()
            .filter(|l| l.trim_start().starts_with("ndharness "))
        {
            // The example, without the words that explain it.
            let example = line.trim().split("   ").next().unwrap_or_default();
            let words = shlex::split(example).unwrap();
            let o = parse_only(&words, &root);
            assert!(
                o.status.success(),
                "`{example}` in {command} --help: {}",
                text(&o)
            );
            examples += 1;
        }
    }
    assert!(examples >= 12, "{examples} examples");
    let man = tempfile::tempdir().unwrap();
    let o = ndharness(&["man", "--out", man.path().to_str().unwrap()])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    for page in ["ndharness.1", "ndharness-run.1", "ndharness-validate.1"] {
        assert!(man.path().join(page).exists(), "{page}");
    }
    let bash = ndharness(&["completions", "bash"]).output().unwrap();
    assert!(String::from_utf8_lossy(&bash.stdout).contains("complete -F"));
}
