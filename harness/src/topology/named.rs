//! Topologies that ship with the harness, addressed by name.

pub const NAMED: &[(&str, &str)] = &[
    ("nfit-1", include_str!("../../topologies/nfit-1.yaml")),
    ("nfit-2", include_str!("../../topologies/nfit-2.yaml")),
    ("nfit-3g", include_str!("../../topologies/nfit-3g.yaml")),
    (
        "nfit-hotplug",
        include_str!("../../topologies/nfit-hotplug.yaml"),
    ),
    ("e820-1", include_str!("../../topologies/e820-1.yaml")),
    ("e820-2g", include_str!("../../topologies/e820-2g.yaml")),
    ("nfit-test", include_str!("../../topologies/nfit-test.yaml")),
    (
        "nfit-test-modules",
        include_str!("../../topologies/nfit-test-modules.yaml"),
    ),
    ("nfit-6g", include_str!("../../topologies/nfit-6g.yaml")),
    ("cxl-test", include_str!("../../topologies/cxl-test.yaml")),
    (
        "cxl-test-one-node",
        include_str!("../../topologies/cxl-test-one-node.yaml"),
    ),
    (
        "cxl-test-modules",
        include_str!("../../topologies/cxl-test-modules.yaml"),
    ),
    (
        "virtio-pmem-1",
        include_str!("../../topologies/virtio-pmem-1.yaml"),
    ),
    ("cxl-x1", "cxl: { ways: 1 }\n"),
    ("cxl-x2", "cxl: { ways: 2 }\n"),
    ("cxl-x3", "cxl: { ways: 3 }\n"),
    ("cxl-x4", "cxl: { ways: 4 }\n"),
    ("cxl-x6", "cxl: { ways: 6 }\n"),
    ("cxl-x8", "cxl: { ways: 8 }\n"),
    ("cxl-x12", "cxl: { ways: 12 }\n"),
    ("cxl-x16", "cxl: { ways: 16 }\n"),
    ("cxl-x6-sysfs", "cxl: { ways: 6, method: sysfs }\n"),
    (
        "cxl-x4-switch",
        include_str!("../../topologies/cxl-x4-switch.yaml"),
    ),
    (
        "cxl-x8-switch",
        include_str!("../../topologies/cxl-x8-switch.yaml"),
    ),
];

pub fn get(name: &str) -> Option<&'static str> {
    NAMED.iter().find(|(n, _)| *n == name).map(|(_, t)| *t)
}

pub fn names() -> Vec<&'static str> {
    NAMED.iter().map(|(n, _)| *n).collect()
}
