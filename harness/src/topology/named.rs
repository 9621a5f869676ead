//! Topologies that ship with the harness, addressed by name.

pub const NAMED: &[(&str, &str)] = &[
    ("nfit-1", include_str!("../../topologies/nfit-1.yaml")),
    ("nfit-2", include_str!("../../topologies/nfit-2.yaml")),
];

pub fn get(name: &str) -> Option<&'static str> {
    NAMED.iter().find(|(n, _)| *n == name).map(|(_, t)| *t)
}

pub fn names() -> Vec<&'static str> {
    NAMED.iter().map(|(n, _)| *n).collect()
}
