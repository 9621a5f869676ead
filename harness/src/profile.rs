//! Profiles: named selections of the trials, from a look in minutes to
//! everything, kept in one file (`suites/profiles.yaml`) as nextest keeps
//! its profiles. A profile is one or more runs, each on a line (a kernel
//! name; none: the run's own) with its trials as whole-name patterns, and
//! says which crash points its power cuts judge.
//!
//! ```yaml
//! check:
//!   description: what .ci/run runs on each change
//!   power_cuts: sample
//!   runs:
//!     - skip: ["ndctl::*"]
//!     - kernel: debian-7.3-mock
//!       trials: ["ndctl::*"]
//! ```

use std::collections::BTreeMap;
use std::path::Path;

use globset::{Glob, GlobSet, GlobSetBuilder};
use serde::Deserialize;

use crate::suite::PointSelection;

/// The file under the repository root that holds the profiles.
pub const FILE: &str = "suites/profiles.yaml";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Yaml(#[from] crate::yaml::Error),
    #[error("no profile `{name}` in {FILE}; it has: {available}")]
    Unknown { name: String, available: String },
    #[error("{FILE}: profile `{profile}`: pattern `{pattern}`: {source}")]
    Pattern {
        profile: String,
        pattern: String,
        source: globset::Error,
    },
}

/// Every profile, by name.
#[derive(Clone, Debug, Deserialize)]
#[serde(transparent)]
pub struct Profiles(BTreeMap<String, Profile>);

/// One named selection.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    /// What it is for and what it takes.
    pub description: String,
    /// Which crash points power cuts judge [default: a sample].
    #[serde(default)]
    pub power_cuts: PointSelection,
    pub runs: Vec<ProfileRun>,
}

/// One run of a profile: a line and its trials.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProfileRun {
    /// A kernel name (`--kernel`); none: the line the command names (the
    /// default line unless it names one).
    #[serde(default)]
    pub kernel: Option<String>,
    /// Trials to take, as whole-name patterns (`suite::case::topology`,
    /// `*` any text); none: every trial.
    #[serde(default)]
    pub trials: Vec<String>,
    /// Trials to leave out, as patterns.
    #[serde(default)]
    pub skip: Vec<String>,
}

/// A run's trials as compiled patterns: taken when some `trials` pattern
/// (or none is given) and no `skip` pattern matches the whole name.
#[derive(Clone, Debug)]
pub struct TrialSet {
    take: Option<GlobSet>,
    skip: GlobSet,
}

impl TrialSet {
    /// Whether the trial named `name` is in the set.
    pub fn contains(&self, name: &str) -> bool {
        self.take.as_ref().is_none_or(|t| t.is_match(name)) && !self.skip.is_match(name)
    }

    /// Any of `sets`: what a profile's runs take together, on one line.
    pub fn any_of(sets: Vec<TrialSet>) -> AnyOf {
        AnyOf(sets)
    }
}

/// The union of several runs' trials (a profile on a line the user named).
#[derive(Clone, Debug)]
pub struct AnyOf(Vec<TrialSet>);

impl AnyOf {
    pub fn contains(&self, name: &str) -> bool {
        self.0.iter().any(|s| s.contains(name))
    }
}

impl Profiles {
    /// The profiles of the repository at `root`.
    pub fn load(root: &Path) -> Result<Profiles, Error> {
        Ok(crate::yaml::load(&root.join(FILE))?)
    }

    /// Profile `name`.
    pub fn get(&self, name: &str) -> Result<&Profile, Error> {
        self.0.get(name).ok_or_else(|| Error::Unknown {
            name: name.to_owned(),
            available: self.names().join(", "),
        })
    }

    pub fn names(&self) -> Vec<String> {
        self.0.keys().cloned().collect()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&String, &Profile)> {
        self.0.iter()
    }
}

impl ProfileRun {
    /// This run's trials, compiled (`profile` names it in an error).
    pub fn trial_set(&self, profile: &str) -> Result<TrialSet, Error> {
        let take = if self.trials.is_empty() {
            None
        } else {
            Some(glob_set(profile, &self.trials)?)
        };
        Ok(TrialSet {
            take,
            skip: glob_set(profile, &self.skip)?,
        })
    }

    /// Every pattern of the run.
    pub fn patterns(&self) -> impl Iterator<Item = &String> {
        self.trials.iter().chain(&self.skip)
    }
}

/// One pattern, matched against whole names.
pub fn glob(profile: &str, pattern: &str) -> Result<globset::GlobMatcher, Error> {
    Ok(compile(profile, pattern)?.compile_matcher())
}

fn compile(profile: &str, pattern: &str) -> Result<Glob, Error> {
    // `::` separates the parts of a name; `*` may cross it, and `[` is
    // no class in a trial's name.
    globset::GlobBuilder::new(pattern)
        .literal_separator(false)
        .build()
        .map_err(|source| Error::Pattern {
            profile: profile.to_owned(),
            pattern: pattern.to_owned(),
            source,
        })
}

fn glob_set(profile: &str, patterns: &[String]) -> Result<GlobSet, Error> {
    let mut set = GlobSetBuilder::new();
    for p in patterns {
        set.add(compile(profile, p)?);
    }
    set.build().map_err(|source| Error::Pattern {
        profile: profile.to_owned(),
        pattern: patterns.join(" "),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(yaml: &str) -> Result<Profiles, crate::yaml::Error> {
        crate::yaml::parse("profiles.yaml", yaml)
    }

    #[test]
    fn runs_take_patterns_and_skip_others() {
        let p = parse(
            "check:\n  description: d\n  runs:\n    - skip: ['ndctl::*', 'modes::*::cxl-x2']\n    - kernel: debian-7.3-mock\n      trials: ['ndctl::*']\n",
        )
        .unwrap();
        let check = p.get("check").unwrap();
        assert_eq!(check.power_cuts, PointSelection::default());
        let first = check.runs[0].trial_set("check").unwrap();
        assert!(first.contains("modes::fsdax::nfit-1"));
        assert!(!first.contains("modes::fsdax::cxl-x2"));
        assert!(first.contains("modes::fsdax::cxl-x2-sysfs"));
        assert!(!first.contains("ndctl::create.sh::nfit-test-modules"));
        let second = check.runs[1].trial_set("check").unwrap();
        assert_eq!(check.runs[1].kernel.as_deref(), Some("debian-7.3-mock"));
        assert!(second.contains("ndctl::create.sh::nfit-test-modules"));
        assert!(!second.contains("modes::fsdax::nfit-1"));
        let both = TrialSet::any_of(vec![first, second]);
        assert!(both.contains("ndctl::create.sh::nfit-test-modules"));
        assert!(both.contains("modes::fsdax::nfit-1"));
    }

    #[test]
    fn power_cuts_are_every_write_or_a_sample() {
        let p = parse("full:\n  description: d\n  power_cuts: every-write\n  runs: [{}]\nsmoke:\n  description: d\n  power_cuts: { sample: 0, limit: 1 }\n  runs: [{}]\n").unwrap();
        assert_eq!(p.get("full").unwrap().power_cuts, PointSelection::Every);
        assert_eq!(
            p.get("smoke").unwrap().power_cuts,
            PointSelection::Sample {
                extra: 0,
                limit: Some(1),
                seed: None
            }
        );
    }

    #[test]
    fn errors_name_the_file_the_path_and_the_choices() {
        let e = parse("full:\n  description: d\n  runs: [{ kernels: x }]\n").unwrap_err();
        let text = e.to_string();
        assert!(text.contains("profiles.yaml:3"), "{text}");
        assert!(text.contains("full.runs[0]"), "{text}");
        let e = parse("full:\n  description: d\n  power_cuts: every\n  runs: [{}]\n").unwrap_err();
        assert!(e.to_string().contains("every-write"), "{e}");
        let p = parse("full:\n  description: d\n  runs: [{}]\n").unwrap();
        let e = p.get("nightly").unwrap_err().to_string();
        assert!(e.contains("it has: full"), "{e}");
    }
}
