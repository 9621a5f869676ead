//! DESIGN.md true to the code: every path it names (`runner::start::Prelude`,
//! `CaseGuest::bring_up`, `vm::machine::state`) is a module, an item of the
//! module it gives, or a member of the type it gives, in `harness/src`;
//! and every source file opens with a `//!` header saying what it owns.
//! Reads the sources only.

mod sources;

use std::path::Path;

/// Crates and tools whose paths DESIGN.md may name: not ours to check.
const FOREIGN: &[&str] = &[
    "std",
    "qapi",
    "serde",
    "tokio",
    "insta",
    "libtest_mimic",
    "proptest",
];

struct Module {
    /// `runner::trial::trace`
    name: String,
    text: String,
}

fn modules() -> Vec<Module> {
    sources::source_files()
        .into_iter()
        .map(|(name, _, text)| Module {
            name: name.strip_suffix("lib").unwrap_or(&name).to_owned(),
            text,
        })
        .collect()
}

/// Whether `text` defines (or re-exports) an item called `name`.
fn defines(text: &str, name: &str) -> bool {
    let kinds = [
        "struct", "enum", "type", "trait", "fn", "const", "static", "mod",
    ];
    text.lines().any(|line| {
        let words: Vec<&str> = line
            .split(|c: char| !(c.is_alphanumeric() || c == '_'))
            .filter(|w| !w.is_empty())
            .collect();
        let item = words
            .windows(2)
            .any(|w| kinds.contains(&w[0]) && w[1] == name);
        let reexport = line.trim_start().starts_with("pub use") && words.contains(&name);
        item || reexport
    })
}

/// Whether `text` gives type `ty` a member `member`: a method, an
/// associated const, a field or an enum variant.
fn has_member(text: &str, member: &str) -> bool {
    defines(text, member)
        || text.lines().any(|line| {
            let t = line.trim_start();
            let t = t.strip_prefix("pub ").unwrap_or(t);
            t.strip_prefix(member).is_some_and(|rest| {
                rest.starts_with(':')
                    || rest.starts_with(',')
                    || rest.starts_with(" {")
                    || rest.starts_with('(')
            })
        })
}

/// Why `path` names nothing in the crate, or `None` when it does.
fn unresolved(path: &str, modules: &[Module]) -> Option<String> {
    let segments: Vec<&str> = path.split("::").collect();
    if FOREIGN.contains(&segments[0]) {
        return None;
    }
    // The longest prefix that names a module: the module of that path, or
    // one whose path ends with it (`trial::trace` is
    // `runner::trial::trace`); any of them may hold the rest.
    for k in (1..=segments.len()).rev() {
        let prefix = segments[..k].join("::");
        let mut candidates: Vec<&Module> = modules.iter().filter(|m| m.name == prefix).collect();
        candidates.extend(
            modules
                .iter()
                .filter(|m| m.name.ends_with(&format!("::{prefix}"))),
        );
        if candidates.is_empty() {
            continue;
        }
        let why: Vec<String> = candidates
            .iter()
            .filter_map(|m| in_module(path, Some(m), &segments[k..], modules))
            .collect();
        return (why.len() == candidates.len()).then(|| why[0].clone());
    }
    in_module(path, None, &segments, modules)
}

/// Why `rest` (an item, then a member) is not in `module` (none: anywhere).
fn in_module(
    path: &str,
    module: Option<&Module>,
    rest: &[&str],
    modules: &[Module],
) -> Option<String> {
    let (item, members) = rest.split_first()?;
    // The files that define the item: the module's own (and its children,
    // for re-exports), or anywhere when no module was named.
    let owners: Vec<&Module> = modules
        .iter()
        .filter(|m| match module {
            Some(parent) => {
                m.name == parent.name || m.name.starts_with(&format!("{}::", parent.name))
            }
            None => true,
        })
        .filter(|m| defines(&m.text, item))
        .collect();
    if owners.is_empty() {
        let place = module.map_or("the crate".to_owned(), |m| format!("`{}`", m.name));
        return Some(format!("`{path}`: no `{item}` in {place}"));
    }
    let member = members.first()?;
    // A member is in the type's own file or in a file with an `impl` of it.
    let found = modules.iter().any(|m| {
        let related = owners.iter().any(|o| o.name == m.name)
            || m.text.contains(&format!("impl {item}"))
            || m.text.contains(&format!(" {item}<"));
        related && has_member(&m.text, member)
    });
    (!found).then(|| format!("`{path}`: `{item}` has no `{member}`"))
}

/// The paths DESIGN.md names: every `a::b` in it, in code or backticks.
fn named_paths(design: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut word = String::new();
    for c in design.chars().chain(std::iter::once(' ')) {
        if c.is_alphanumeric() || c == '_' || c == ':' {
            word.push(c);
            continue;
        }
        let w = word.trim_matches(':');
        if w.contains("::") && !w.contains(":::") && w.split("::").all(|s| !s.is_empty()) {
            out.push(w.to_owned());
        }
        word.clear();
    }
    out.sort();
    out.dedup();
    out
}

#[test]
fn every_path_design_names_exists_where_it_says() {
    let design =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../DESIGN.md"))
            .unwrap();
    let modules = modules();
    let paths = named_paths(&design);
    assert!(paths.len() > 40, "{} paths named", paths.len());
    let wrong: Vec<String> = paths
        .iter()
        .filter_map(|p| unresolved(p, &modules))
        .collect();
    assert!(
        wrong.is_empty(),
        "DESIGN.md names what is not there: {wrong:#?}"
    );
}

#[test]
fn the_check_finds_a_path_that_moved() {
    let modules = modules();
    assert!(unresolved("runner::start::Prelude", &modules).is_none());
    assert!(unresolved("CaseGuest::bring_up", &modules).is_none());
    assert!(unresolved("runner::case::Prelude", &modules).is_some());
    assert!(unresolved("Machine::no_such_method", &modules).is_some());
}

#[test]
fn every_source_file_says_what_it_owns() {
    let headless: Vec<String> = modules()
        .iter()
        .filter(|m| !m.text.trim_start().starts_with("//!"))
        .map(|m| m.name.clone())
        .collect();
    assert!(
        headless.is_empty(),
        "files without a //! header: {headless:#?}"
    );
}
