//! Known failures: a case that fails for a known reason on some guests
//! (kernels, ndctl versions) and topologies still runs there. A failure
//! that says what the entry says is reported as a known failure, with its
//! reason, and does not fail the run; a trial that passes where its entry
//! expects a failure is reported as such, so that a stale entry is noticed
//! (the bug was fixed); a failure that says something else is a failure.
//!
//! ```yaml
//! known_failures:
//!   - reason: a cut between two DIMMs' index updates leaves the region unprobeable
//!     kernels: [debian-6.12]
//!     topologies: [cxl-x2, cxl-x6]
//!     says: has no label at positions
//! ```

use serde::{Deserialize, Serialize};

use super::ignore::GuestNames;

/// One known failure and where it applies (everywhere when it names no
/// kernel, ndctl or topology).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct KnownFailure {
    pub reason: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub kernels: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ndctl: Vec<String>,
    /// Topology names (`cxl-x6`); empty: any.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub topologies: Vec<String>,
    /// Text the failure message must contain to be this known failure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub says: Option<String>,
}

impl KnownFailure {
    fn applies_to(&self, guest: &GuestNames, topology: &str) -> bool {
        let any_or =
            |names: &[String], name: &str| names.is_empty() || names.iter().any(|n| n == name);
        any_or(&self.kernels, &guest.kernel)
            && (self.ndctl.is_empty() || self.ndctl.iter().any(|n| guest.ndctl.contains(n)))
            && any_or(&self.topologies, topology)
    }

    /// Whether a failure with `message` is this one.
    pub fn matches(&self, message: &str) -> bool {
        self.says.as_deref().is_none_or(|s| message.contains(s))
    }
}

/// A case's `known_failures:` (none by default).
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(transparent)]
pub struct KnownFailures(pub Vec<KnownFailure>);

impl KnownFailures {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The entries for a trial on `topology` on `guest`.
    pub fn entries_for<'a>(&'a self, guest: &GuestNames, topology: &str) -> Vec<&'a KnownFailure> {
        self.0
            .iter()
            .filter(|e| e.applies_to(guest, topology))
            .collect()
    }
}

/// What a trial's outcome is, given its case's known failures.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Judged {
    /// No entry applies, or the failure is not the known one: as it came.
    AsItCame,
    /// Failed as the entry says.
    Known(String),
    /// Passed where the entry expects a failure: the entry is stale.
    Stale(String),
}

/// Judges a trial that passed (`failure` none) or failed with `failure`,
/// given the entries that apply to it: the first whose text the failure
/// says is its known failure.
pub fn judge(entries: &[&KnownFailure], failure: Option<&str>) -> Judged {
    match (entries.first(), failure) {
        (None, _) => Judged::AsItCame,
        (Some(e), None) => Judged::Stale(e.reason.clone()),
        (Some(_), Some(message)) => entries
            .iter()
            .find(|e| e.matches(message))
            .map_or(Judged::AsItCame, |e| Judged::Known(e.reason.clone())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Case {
        #[serde(default)]
        known_failures: KnownFailures,
    }

    fn parse(yaml: &str) -> Result<KnownFailures, crate::yaml::Error> {
        crate::yaml::parse::<Case>("case.yaml", yaml).map(|c| c.known_failures)
    }

    #[test]
    fn an_entry_applies_to_its_guests_and_topologies_only() {
        let k = parse(
            "known_failures:\n  - reason: cut between DIMMs\n    kernels: [debian-6.12]\n    topologies: [cxl-x2]\n    says: no label\n",
        )
        .unwrap();
        let stock = GuestNames::new("debian-6.12", &["81"]);
        let old = GuestNames::new("debian-6.1", &["76"]);
        assert_eq!(k.entries_for(&stock, "cxl-x2").len(), 1);
        assert!(k.entries_for(&stock, "nfit-1").is_empty());
        assert!(k.entries_for(&old, "cxl-x2").is_empty());
        assert_eq!(parse("{}\n").unwrap(), KnownFailures::default());
    }

    #[test]
    fn known_stale_and_other_failures() {
        let e = KnownFailure {
            reason: "r".into(),
            kernels: vec![],
            ndctl: vec![],
            topologies: vec![],
            says: Some("missing label".into()),
        };
        let other = KnownFailure {
            reason: "o".into(),
            says: Some("orphan labels".into()),
            ..e.clone()
        };
        assert_eq!(judge(&[], Some("boom")), Judged::AsItCame);
        assert_eq!(
            judge(&[&e], Some("nmem1 missing label for X")),
            Judged::Known("r".into())
        );
        assert_eq!(judge(&[&e], Some("kernel BUG")), Judged::AsItCame);
        assert_eq!(judge(&[&e], None), Judged::Stale("r".into()));
        assert_eq!(
            judge(&[&e, &other], Some("3 orphan labels")),
            Judged::Known("o".into()),
            "any entry whose text the failure says"
        );
    }

    #[test]
    fn a_typo_names_the_file_and_line() {
        let e = parse("known_failures:\n  - reason: x\n    topology: [cxl-x2]\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("case.yaml:3"), "{e}");
    }
}
