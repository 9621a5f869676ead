//! Loading and validating topologies: shipped names, strict YAML, and the
//! rules a topology must meet before anything boots.

use super::*;

fn invalid(yaml: &str) -> String {
    let t: Topology = crate::yaml::parse("t.yaml", yaml).unwrap();
    t.validate("t.yaml").unwrap_err().to_string()
}

#[test]
fn shipped_topologies_load() {
    for name in named_topologies() {
        load(name).unwrap_or_else(|e| panic!("{name}: {e}"));
    }
}

#[test]
fn unknown_name_lists_known_ones() {
    let err = load("nfit-99").unwrap_err().to_string();
    assert!(err.contains("unknown topology `nfit-99`"), "{err}");
    assert!(err.contains("nfit-1"), "{err}");
}

#[test]
fn node_out_of_range() {
    let err = invalid("nvdimms:\n  - size: 1G\n    node: 1\n");
    assert!(err.contains("nvdimms[0].node"), "{err}");
    assert!(err.contains("1 NUMA node(s)"), "{err}");
}

#[test]
fn label_area_too_small() {
    let err = invalid("nvdimms:\n  - size: 1G\n    label_size: 4K\n");
    assert!(err.contains("nvdimms[0].label_size"), "{err}");
}

#[test]
fn dimm_size_misaligned() {
    let err = invalid("nvdimms:\n  - size: 129M\n");
    assert!(err.contains("multiple of 2M"), "{err}");
    // 2M multiples plus the label area: a region of whole 2M units.
    let t: Topology = crate::yaml::parse(
        "t.yaml",
        "nvdimms:\n  - size: 1048704K\n    label_size: 128K\n",
    )
    .unwrap();
    t.validate("t.yaml").unwrap();
    let err = invalid("nvdimms:\n  - size: 1048640K\n    label_size: 128K\n");
    assert!(err.contains("or that plus its label size"), "{err}");
}

#[test]
fn nfit_test_is_loaded_or_available() {
    let t: Topology = crate::yaml::parse("t.yaml", "nfit_test: available\n").unwrap();
    assert_eq!(t.nfit_test, Some(MockBus::Available));
    assert!(t.has_pmem() && !t.has_nfit());
    let err = crate::yaml::parse::<Topology>("t.yaml", "nfit_test: yes\n")
        .unwrap_err()
        .to_string();
    assert!(err.contains("loaded") && err.contains("available"), "{err}");
}

#[test]
fn unknown_field_is_an_error() {
    let err = crate::yaml::parse::<Topology>("t.yaml", "nvdimms:\n  - size: 1G\n    colour: red\n")
        .unwrap_err()
        .to_string();
    assert!(err.contains("t.yaml:3:"), "{err}");
    assert!(err.contains("nvdimms[0].colour"), "{err}");
}

#[test]
fn hotplug_space_counts_dimms() {
    let t = load("nfit-2").unwrap().topology;
    assert_eq!(t.hotplug_space(), (2, Size::gib(3)));
}

#[test]
fn e820_must_stay_clear_of_kernel_and_initramfs() {
    let err = invalid("machine: { memory: 1G }\ne820:\n  - { size: 512M, offset: 128M }\n");
    assert!(err.contains("e820[0]"), "{err}");
    assert!(err.contains("the kernel sits below"), "{err}");
    let err = invalid("machine: { memory: 2G }\ne820:\n  - { size: 512M, offset: 1G }\n  - { size: 256M, offset: 1280M }\n");
    assert!(err.contains("overlap"), "{err}");
}

#[test]
fn virtio_pmem_size() {
    let err = invalid("virtio_pmem:\n  - size: 3M\n");
    assert!(err.contains("virtio_pmem[0].size"), "{err}");
}

#[test]
fn written_out_topologies_read_back_the_same() {
    let dir = tempfile::tempdir().unwrap();
    for name in super::named::names() {
        let a = super::load(name).unwrap();
        let path = dir.path().join(format!("{name}.yaml"));
        std::fs::write(&path, serde_yaml_ng::to_string(&a.topology).unwrap()).unwrap();
        let b = super::load(path.to_str().unwrap()).unwrap();
        assert_eq!(a.topology, b.topology, "{name}");
    }
}
