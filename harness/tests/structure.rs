//! The shape of the code, checked like behaviour: no file under
//! `harness/src` over 600 lines, no function over 100 lines, no import
//! cycle among modules (a module is a file; `crate::` and `super::` paths
//! are its imports), and no `Result<_, String>`. Reads the sources only.

mod sources;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

const MAX_FILE_LINES: usize = 600;
const MAX_FN_LINES: usize = 100;

fn sources() -> Vec<(String, PathBuf, String)> {
    sources::source_files()
}

/// The code of a file without its `#[cfg(test)] mod tests` block and
/// without comments (what the module depends on at run time).
fn code(text: &str) -> String {
    let cut = text.find("#[cfg(test)]\nmod ").unwrap_or(text.len());
    text[..cut]
        .lines()
        .map(|l| l.split("//").next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn no_file_is_over_the_limit() {
    let long: Vec<String> = sources()
        .iter()
        .filter(|(_, _, text)| text.lines().count() > MAX_FILE_LINES)
        .map(|(_, p, text)| format!("{} ({} lines)", p.display(), text.lines().count()))
        .collect();
    assert!(
        long.is_empty(),
        "files over {MAX_FILE_LINES} lines: {long:#?}"
    );
}

/// Each `fn` with the number of lines from its signature to its closing
/// brace (the brace at the signature's indentation).
fn function_lengths(text: &str) -> Vec<(String, usize)> {
    let lines: Vec<&str> = text.lines().collect();
    let mut out = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let trimmed = line.trim_start();
        let indent = line.len() - trimmed.len();
        let is_fn = [
            "fn ",
            "pub fn ",
            "async fn ",
            "pub async fn ",
            "pub(crate) fn ",
            "pub(super) fn ",
            "pub(crate) async fn ",
            "pub(super) async fn ",
        ]
        .iter()
        .any(|p| trimmed.starts_with(p));
        if !is_fn || trimmed.ends_with(';') {
            continue;
        }
        let close = format!("{}}}", " ".repeat(indent));
        if let Some(end) = lines[i + 1..].iter().position(|l| *l == close) {
            let name = trimmed.split('(').next().unwrap_or(trimmed).to_owned();
            out.push((name, end + 2));
        }
    }
    out
}

#[test]
fn no_function_is_over_the_limit() {
    let mut long = Vec::new();
    for (_, path, text) in sources() {
        for (name, n) in function_lengths(&text) {
            if n > MAX_FN_LINES {
                long.push(format!("{}: {name} ({n} lines)", path.display()));
            }
        }
    }
    assert!(
        long.is_empty(),
        "functions over {MAX_FN_LINES} lines: {long:#?}"
    );
}

#[test]
fn the_length_check_sees_functions() {
    let text =
        "fn a() {\n    x;\n}\n\nimpl A {\n    pub async fn b(\n        y: u8,\n    ) {\n    }\n}\n";
    assert_eq!(
        function_lengths(text),
        vec![("fn a".to_owned(), 3), ("pub async fn b".to_owned(), 4)]
    );
}

/// The modules `text` (of module `module`) refers to through `crate::` and
/// `super::` paths, resolved to the longest module path that exists.
fn imports(module: &str, text: &str, modules: &BTreeSet<String>) -> BTreeSet<String> {
    let resolve = |parts: &[String]| -> Option<String> {
        (1..=parts.len())
            .rev()
            .map(|i| parts[..i].join("::"))
            .find(|m| modules.contains(m))
    };
    let here: Vec<String> = if module == "lib" || module == "main" {
        Vec::new()
    } else {
        module.split("::").map(str::to_owned).collect()
    };
    let words = |s: &str| -> Vec<String> {
        s.split("::")
            .map(|w| w.trim().to_owned())
            .filter(|w| !w.is_empty() && w != "self")
            .collect()
    };
    let mut out = BTreeSet::new();
    let code = code(text);
    for (base, rest) in code
        .match_indices("crate::")
        .map(|(i, _)| ("crate", &code[i + 7..]))
        .chain(
            code.match_indices("super::")
                .map(|(i, _)| ("super", &code[i + 7..])),
        )
    {
        let path: String = rest
            .chars()
            .take_while(|c| {
                c.is_alphanumeric()
                    || *c == '_'
                    || *c == ':'
                    || *c == '{'
                    || *c == '}'
                    || *c == ','
                    || *c == ' '
                    || *c == '\n'
            })
            .collect();
        let prefix_end = path.find('{').unwrap_or(path.len());
        let mut prefix = if base == "crate" {
            Vec::new()
        } else {
            here[..here.len().saturating_sub(1)].to_vec()
        };
        prefix.extend(words(&path[..prefix_end]));
        let mut targets = vec![prefix.clone()];
        if let Some(group) = path[prefix_end..].strip_prefix('{') {
            let group = group.split('}').next().unwrap_or("");
            for item in group.split(',') {
                let mut t = prefix.clone();
                t.extend(words(item));
                targets.push(t);
            }
        }
        for t in targets {
            if let Some(m) = resolve(&t) {
                if m != module {
                    out.insert(m);
                }
            }
        }
    }
    out
}

/// Strongly connected components of more than one module (Tarjan).
fn cycles(edges: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    struct Walk<'a> {
        edges: &'a BTreeMap<String, BTreeSet<String>>,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on_stack: BTreeSet<&'a str>,
        found: Vec<Vec<String>>,
    }
    impl<'a> Walk<'a> {
        fn visit(&mut self, v: &'a str) {
            let n = self.index.len();
            self.index.insert(v, n);
            self.low.insert(v, n);
            self.stack.push(v);
            self.on_stack.insert(v);
            for w in self.edges.get(v).into_iter().flatten() {
                let w = w.as_str();
                if !self.index.contains_key(w) {
                    self.visit(w);
                    let lw = self.low[w];
                    let lv = self.low.get_mut(v).unwrap();
                    *lv = (*lv).min(lw);
                } else if self.on_stack.contains(w) {
                    let iw = self.index[w];
                    let lv = self.low.get_mut(v).unwrap();
                    *lv = (*lv).min(iw);
                }
            }
            if self.low[v] == self.index[v] {
                let mut component = Vec::new();
                while let Some(w) = self.stack.pop() {
                    self.on_stack.remove(w);
                    component.push(w.to_owned());
                    if w == v {
                        break;
                    }
                }
                if component.len() > 1 {
                    component.sort();
                    self.found.push(component);
                }
            }
        }
    }
    let mut walk = Walk {
        edges,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        found: Vec::new(),
    };
    for v in edges.keys() {
        if !walk.index.contains_key(v.as_str()) {
            walk.visit(v);
        }
    }
    walk.found
}

#[test]
fn no_module_cycle() {
    let all = sources();
    let modules: BTreeSet<String> = all.iter().map(|(m, _, _)| m.clone()).collect();
    let edges: BTreeMap<String, BTreeSet<String>> = all
        .iter()
        .map(|(m, _, text)| (m.clone(), imports(m, text, &modules)))
        .collect();
    let found = cycles(&edges);
    assert!(found.is_empty(), "module import cycles: {found:#?}");
}

#[test]
fn the_cycle_check_sees_a_cycle() {
    let modules: BTreeSet<String> = ["a", "a::b", "c"].iter().map(|s| s.to_string()).collect();
    let a = imports(
        "a",
        "use crate::c::{X, Y};\nfn f() { super::nothing(); }\n",
        &modules,
    );
    assert_eq!(a, ["c".to_owned()].into());
    let b = imports(
        "a::b",
        "use super::{c_like, x};\nuse crate::{c, a::b};\n",
        &modules,
    );
    assert_eq!(b, ["a".to_owned(), "c".to_owned()].into());
    let mut edges = BTreeMap::new();
    edges.insert("a".to_owned(), a);
    edges.insert("c".to_owned(), ["a".to_owned()].into());
    edges.insert("a::b".to_owned(), b);
    assert_eq!(cycles(&edges), vec![vec!["a".to_owned(), "c".to_owned()]]);
}

#[test]
fn no_string_errors() {
    let found: Vec<String> = sources()
        .iter()
        .flat_map(|(_, path, text)| {
            code(text)
                .lines()
                .filter(|l| {
                    l.contains("Result<")
                        && l.split("Result<")
                            .skip(1)
                            .any(|r| r.split(';').next().unwrap_or("").contains(", String>"))
                })
                .map(|l| format!("{}: {}", path.display(), l.trim()))
                .collect::<Vec<_>>()
        })
        .collect();
    assert!(
        found.is_empty(),
        "Result<_, String> in library code: {found:#?}"
    );
}
