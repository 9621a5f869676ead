//! When a case is not run, and where: `ignored: REASON` everywhere, or a
//! list of entries each naming the guests it applies to (the kernels and
//! ndctl versions by the names `--kernel` and `--ndctl` take), as kdevops
//! keeps its expunge lists per kernel. Elsewhere the trial runs.
//!
//! ```yaml
//! ignored:
//!   - reason: needs cxl_test, which cannot load on Debian's kernels
//!     kernels: [debian-6.12, debian-6.1]
//!   - reason: ndctl 76 has no `cxl list --media-errors`
//!     ndctl: ["76"]
//! ```

use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;

/// The names of the guest a trial runs on, as `--kernel` and `--ndctl`
/// take them (`own` for the user's own build).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GuestNames {
    pub kernel: String,
    /// The ndctl's name and its aliases (`81`, `trixie`).
    pub ndctl: Vec<String>,
}

impl GuestNames {
    /// The name of a kernel or ndctl the user built.
    pub const OWN: &'static str = "own";

    pub fn new(kernel: &str, ndctl: &[&str]) -> GuestNames {
        GuestNames {
            kernel: kernel.to_owned(),
            ndctl: ndctl.iter().map(|n| (*n).to_owned()).collect(),
        }
    }
}

/// One reason not to run, on the guests it names (all when it names none).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct IgnoreEntry {
    pub reason: String,
    /// Kernel names (`debian-6.1`, `debian-6.12-mock`, `own`); empty: any.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub kernels: Vec<String>,
    /// ndctl names (`81`, `76`, `own`); empty: any.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ndctl: Vec<String>,
}

impl IgnoreEntry {
    fn applies_to(&self, guest: &GuestNames) -> bool {
        let kernel = self.kernels.is_empty() || self.kernels.contains(&guest.kernel);
        let ndctl = self.ndctl.is_empty() || self.ndctl.iter().any(|n| guest.ndctl.contains(n));
        kernel && ndctl
    }
}

/// A case's `ignored:`: no entry (the default) runs everywhere.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Ignored(pub Vec<IgnoreEntry>);

impl Ignored {
    /// Not run anywhere, for `reason`.
    pub fn everywhere(reason: impl Into<String>) -> Ignored {
        Ignored(vec![IgnoreEntry {
            reason: reason.into(),
            kernels: Vec::new(),
            ndctl: Vec::new(),
        }])
    }

    /// Why the case is not run on `guest`: the first entry that applies.
    pub fn reason_for(&self, guest: &GuestNames) -> Option<&str> {
        self.0
            .iter()
            .find(|e| e.applies_to(guest))
            .map(|e| e.reason.as_str())
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Written as the list of its entries.
impl serde::Serialize for Ignored {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(s)
    }
}

impl<'de> Deserialize<'de> for Ignored {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct IgnoredVisitor;
        impl<'de> Visitor<'de> for IgnoredVisitor {
            type Value = Ignored;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a reason, or a list of { reason, kernels, ndctl }")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Ignored, E> {
                Ok(Ignored::everywhere(v))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Ignored, E> {
                Ok(Ignored::default())
            }
            fn visit_none<E: de::Error>(self) -> Result<Ignored, E> {
                Ok(Ignored::default())
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Ignored, A::Error> {
                let mut entries = Vec::new();
                while let Some(entry) = seq.next_element::<IgnoreEntry>()? {
                    entries.push(entry);
                }
                Ok(Ignored(entries))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Ignored, A::Error> {
                let entry = IgnoreEntry::deserialize(de::value::MapAccessDeserializer::new(map))?;
                Ok(Ignored(vec![entry]))
            }
        }
        d.deserialize_any(IgnoredVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Case {
        #[serde(default)]
        ignored: Ignored,
    }

    fn parse(yaml: &str) -> Result<Ignored, crate::yaml::Error> {
        crate::yaml::parse::<Case>("case.yaml", yaml).map(|c| c.ignored)
    }

    #[test]
    fn a_reason_applies_everywhere_and_a_list_where_it_says() {
        let stock = GuestNames::new("debian-6.12", &["81", "trixie"]);
        let old = GuestNames::new("debian-6.1", &["76", "bookworm"]);
        let mock = GuestNames::new("debian-6.12-mock", &["81", "trixie"]);
        assert_eq!(parse("{}\n").unwrap(), Ignored::default());
        assert_eq!(parse("ignored: ~\n").unwrap(), Ignored::default());
        let all = parse("ignored: not yet\n").unwrap();
        assert_eq!(all.reason_for(&mock), Some("not yet"));
        let some = parse(
            "ignored:\n  - reason: no cxl_test\n    kernels: [debian-6.12, debian-6.1]\n  - reason: old ndctl\n    ndctl: [bookworm]\n",
        )
        .unwrap();
        assert_eq!(some.reason_for(&stock), Some("no cxl_test"));
        assert_eq!(some.reason_for(&old), Some("no cxl_test"));
        assert_eq!(some.reason_for(&mock), None, "runs where no entry applies");
        let own = GuestNames::new(GuestNames::OWN, &["76"]);
        assert_eq!(some.reason_for(&own), None);
        let own_old = GuestNames::new(GuestNames::OWN, &["bookworm"]);
        assert_eq!(some.reason_for(&own_old), Some("old ndctl"));
    }

    #[test]
    fn a_typo_in_an_entry_names_its_path() {
        let e = parse("ignored:\n  - reason: x\n    kernel: [debian-6.1]\n").unwrap_err();
        let text = e.to_string();
        assert!(text.contains("case.yaml:3"), "{text}");
        assert!(text.contains("kernel"), "{text}");
        let e = parse("ignored: 7\n").unwrap_err().to_string();
        assert!(e.contains("a reason, or a list"), "{e}");
    }
}
