//! Strict YAML loading: every error names the file, the line and the YAML path.

use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;

/// A YAML document that did not parse into the expected type.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("failed to read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{file}{location}: at `{yaml_path}`: {message}")]
    Parse {
        file: String,
        location: String,
        yaml_path: String,
        message: String,
    },
}

/// Reads and parses `path` strictly.
pub fn load<T: DeserializeOwned>(path: &Path) -> Result<T, Error> {
    let text = std::fs::read_to_string(path).map_err(|source| Error::Read {
        path: path.to_owned(),
        source,
    })?;
    parse(&path.display().to_string(), &text)
}

/// Parses `text`, reporting errors against the name `file`.
pub fn parse<T: DeserializeOwned>(file: &str, text: &str) -> Result<T, Error> {
    let de = serde_yaml_ng::Deserializer::from_str(text);
    serde_path_to_error::deserialize(de).map_err(|err| {
        let yaml_path = err.path().to_string();
        let inner = err.into_inner();
        let location = inner
            .location()
            .map(|l| format!(":{}:{}", l.line(), l.column()))
            .unwrap_or_default();
        Error::Parse {
            file: file.to_owned(),
            location,
            yaml_path,
            message: strip_location(&inner.to_string()),
        }
    })
}

/// serde_yaml_ng appends " at line L column C" to its messages; the error
/// already carries the location up front, so drop the repetition.
fn strip_location(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(i) => message[..i].to_owned(),
        None => message.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Outer {
        items: Vec<Inner>,
    }

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Inner {
        name: String,
    }

    #[test]
    fn unknown_field_names_file_line_and_path() {
        let text = "items:\n  - name: a\n  - name: b\n    colour: red\n";
        let err = parse::<Outer>("case.yaml", text).unwrap_err().to_string();
        assert!(err.starts_with("case.yaml:4:"), "{err}");
        assert!(err.contains("`items[1].colour`"), "{err}");
        assert!(err.contains("unknown field `colour`"), "{err}");
    }

    #[test]
    fn syntax_error_names_line() {
        let err = parse::<Outer>("x.yaml", "items: [\n")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("x.yaml:"), "{err}");
    }
}
