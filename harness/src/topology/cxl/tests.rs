//! CXL: the `ways` shorthand written out, interleave position order, and the
//! shapes refused before boot with the YAML path that breaks a rule.

use super::*;
use crate::topology::{load, Topology};

fn invalid(yaml: &str) -> String {
    let t: Topology = crate::yaml::parse("t.yaml", yaml).unwrap();
    match t
        .expand("t.yaml")
        .and_then(|t| t.validate("t.yaml").map(|_| t))
    {
        Ok(_) => panic!("accepted:\n{yaml}"),
        Err(e) => e.to_string(),
    }
}

/// Each row: a topology that must not boot, the YAML path and a phrase the
/// reason must carry.
const INVALID: &[(&str, &str, &str)] = &[
    ("cxl: { ways: 5 }", "cxl.ways", "5-way interleave is not possible"),
    ("cxl: { ways: 7 }", "cxl.ways", "widths are 1, 2, 3, 4, 6, 8, 12 and 16"),
    ("cxl: { ways: 32 }", "cxl.ways", "not possible"),
    ("cxl: { ways: 0 }", "cxl.ways", "not possible"),
    ("cxl: { ways: 2, windows: [{ targets: [0] }] }", "cxl.ways", "shorthand"),
    ("cxl: { host_bridges: [] }", "cxl.host_bridges", "at least one host bridge"),
    (
        "cxl:\n  host_bridges: [{ root_ports: [{ device: {} }] }]\n  windows: [{ targets: [0, 1] }]\n",
        "cxl.windows[0].targets",
        "host bridge 1 does not exist",
    ),
    (
        "cxl:\n  host_bridges: [{ root_ports: [{ device: {} }] }, { root_ports: [{ device: {} }] }, { root_ports: [{ device: {} }] }, { root_ports: [{ device: {} }] }, { root_ports: [{ device: {} }] }]\n  windows: [{ targets: [0, 1, 2, 3, 4] }]\n",
        "cxl.windows[0].targets",
        "1, 2, 4, 8, 16, 3, 6 or 12",
    ),
    (
        "cxl:\n  host_bridges: [{ root_ports: [{ device: {} }] }]\n  windows: [{ targets: [0], size: 300M }]\n",
        "cxl.windows[0].size",
        "multiple of 256M",
    ),
    (
        "cxl:\n  host_bridges: [{ root_ports: [{ device: {} }] }]\n  windows: [{ targets: [0], granularity: 128 }]\n",
        "cxl.windows[0].granularity",
        "256 to 16K",
    ),
    (
        "cxl:\n  host_bridges: [{ root_ports: [{ device: {} }] }]\n  windows: [{ targets: [0], granularity: 32K }]\n",
        "cxl.windows[0].granularity",
        "256 to 16K",
    ),
    (
        "cxl:\n  host_bridges: [{ root_ports: [{ device: {} }, { device: {} }, { device: {} }] }]\n  windows: [{ targets: [0] }]\n  regions: [{ ways: 3 }]\n",
        "cxl.regions[0].ways",
        "only powers of two",
    ),
    (
        "cxl:\n  host_bridges: [{ root_ports: [{ device: {} }, { device: {} }, { device: {} }, { device: {} }, { device: {} }, { device: {} }, { device: {} }, { device: {} }, { device: {} }] }]\n",
        "cxl.host_bridges[0].root_ports",
        "at most 8 targets",
    ),
    (
        "cxl:\n  host_bridges: [{ root_ports: [{ device: { size: 100M } }] }]\n",
        "cxl.host_bridges[0].root_ports[0].device.size",
        "multiple of 256M",
    ),
    (
        "cxl:\n  host_bridges: [{ root_ports: [{ device: { lsa: 4K } }] }]\n",
        "cxl.host_bridges[0].root_ports[0].device.lsa",
        "at least 128K",
    ),
    (
        "cxl:\n  host_bridges: [{ root_ports: [{}] }]\n",
        "cxl.host_bridges[0].root_ports[0]",
        "needs a `device` or a `switch`",
    ),
    (
        "cxl:\n  host_bridges: [{ root_ports: [{ device: {} }, { device: {} }] }]\n  windows: [{ targets: [0] }]\n  regions: [{ ways: 4 }]\n",
        "cxl.regions[0].ways",
        "too few devices",
    ),
    (
        "cxl:\n  host_bridges: [{ root_ports: [{ device: { size: 4G } }, { device: { size: 4G } }] }]\n  windows: [{ targets: [0], size: 4G }]\n  regions: [{ ways: 2 }]\n",
        "cxl.regions[0].window",
        "does not fit",
    ),
    (
        "cxl:\n  host_bridges: [{ root_ports: [{ device: {} }] }]\n  windows: [{ targets: [0] }]\n  regions: [{ window: 1, ways: 1 }]\n",
        "cxl.regions[0].window",
        "window 1 does not exist",
    ),
    (
        "cxl:\n  host_bridges: [{ root_ports: [{ device: {} }] }]\n  windows: [{ targets: [0] }]\n  regions: [{ ways: 1 }, { ways: 1 }, { ways: 1 }, { ways: 1 }, { ways: 1 }]\n",
        "cxl.regions[4].window",
        "HDM decoders",
    ),
    ("machine: { kind: pc }\ncxl: { ways: 2 }\n", "machine.kind", "q35"),
];

#[test]
fn invalid_topologies_are_explained_before_boot() {
    assert!(INVALID.len() >= 10);
    for (yaml, path, phrase) in INVALID {
        let err = invalid(yaml);
        assert!(err.contains(&format!("`{path}`")), "{yaml}\n-> {err}");
        assert!(err.contains(phrase), "{yaml}\n-> {err}");
    }
}

#[test]
fn shorthand_expands_to_the_smallest_shape() {
    for (ways, bridges, ports) in [
        (1, 1, 1),
        (2, 1, 2),
        (3, 3, 1),
        (4, 1, 4),
        (6, 3, 2),
        (8, 2, 4),
        (12, 3, 4),
        (16, 4, 4),
    ] {
        let c = Cxl {
            ways: Some(ways),
            ..Default::default()
        }
        .expand()
        .unwrap();
        assert_eq!(c.host_bridges.len(), bridges, "x{ways}");
        assert!(
            c.host_bridges.iter().all(|h| h.root_ports.len() == ports),
            "x{ways}"
        );
        assert_eq!(c.windows[0].targets.len(), bridges, "x{ways}");
        assert_eq!(c.regions[0].ways, ways);
        c.validate().unwrap();
    }
}

#[test]
fn a_file_with_only_ways_is_a_complete_topology() {
    let t = crate::topology::load("cxl-x6").unwrap().topology;
    assert_eq!(t.machine_kind(), crate::topology::MachineKind::Q35);
    assert_eq!(t.cxl.unwrap().devices().len(), 6);
}

/// Properties of the position order at every shipped width: every device
/// exactly once, host bridges in round-robin, and each bridge's devices
/// alternating its root ports (then switch ports).
#[test]
fn position_order_properties() {
    for name in crate::topology::named_topologies()
        .into_iter()
        .filter(|n| n.starts_with("cxl"))
    {
        // cxl-test*: the mock bus, no QEMU CXL.
        let Some(cxl) = load(name).unwrap().topology.cxl else {
            continue;
        };
        let region = &cxl.regions[0];
        let window = &cxl.windows[region.window];
        let order = cxl.position_order(region).unwrap();
        let k = window.targets.len();
        assert_eq!(order.len(), region.ways as usize, "{name}");
        let mut seen: Vec<usize> = order.iter().map(|d| d.index).collect();
        seen.sort();
        seen.dedup();
        assert_eq!(seen.len(), order.len(), "{name}: a device twice");
        for (p, d) in order.iter().enumerate() {
            assert_eq!(d.host_bridge, window.targets[p % k], "{name}: position {p}");
        }
        for hb in &window.targets {
            let mine: Vec<&DevicePlace> = order.iter().filter(|d| d.host_bridge == *hb).collect();
            let ports: std::collections::BTreeSet<usize> =
                mine.iter().map(|d| d.root_port).collect();
            for (i, d) in mine.iter().enumerate() {
                let expected = *ports.iter().nth(i % ports.len()).unwrap();
                assert_eq!(d.root_port, expected, "{name}: bridge {hb} slot {i}");
            }
        }
    }
}

#[test]
fn position_order_through_switches() {
    let cxl = load("cxl-x8-switch").unwrap().topology.cxl.unwrap();
    let order = cxl.position_order(&cxl.regions[0]).unwrap();
    let places: Vec<(usize, Option<usize>)> = order
        .iter()
        .map(|d| (d.host_bridge, d.switch_port))
        .collect();
    assert_eq!(
        places,
        [
            (0, Some(0)),
            (1, Some(0)),
            (0, Some(1)),
            (1, Some(1)),
            (0, Some(2)),
            (1, Some(2)),
            (0, Some(3)),
            (1, Some(3))
        ]
    );
}
