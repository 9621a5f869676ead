//! The crate's source files as the tests that read code see them: each
//! with its module path (`runner::trial::trace`; `mod.rs` and `lib.rs` name
//! their folder), its file and its text.

use std::path::{Path, PathBuf};

/// Every `.rs` file under `harness/src`, sorted by module path.
pub fn source_files() -> Vec<(String, PathBuf, String)> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut out = Vec::new();
    let mut stack = vec![src.clone()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let rel = path.strip_prefix(&src).unwrap().with_extension("");
                let mut parts: Vec<String> = rel
                    .components()
                    .map(|c| c.as_os_str().to_string_lossy().into_owned())
                    .collect();
                if parts.last().is_some_and(|p| p == "mod") {
                    parts.pop();
                }
                let module = parts.join("::");
                let text = std::fs::read_to_string(&path).unwrap();
                out.push((module, path, text));
            }
        }
    }
    out.sort();
    out
}
