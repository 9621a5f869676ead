//! CXL region assembly in the guest: map memdevs to the devices the topology
//! placed (by the serial number the harness gave each), create each region
//! with its members in interleave position order, and initialize labels so
//! the nvdimm region on top is ready for namespaces.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::topology::cxl::Cxl;
use crate::topology::Topology;

/// The guest commands that assemble every region marked `assemble`, given
/// the guest's memdev name for each device serial.
pub fn commands(cxl: &Cxl, memdevs: &BTreeMap<u64, String>) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    for region in cxl.regions.iter().filter(|r| r.assemble) {
        let order = cxl.position_order(region)?;
        let names = order
            .iter()
            .map(|d| {
                memdevs.get(&d.serial()).cloned().ok_or_else(|| {
                    format!(
                        "no memdev with serial {} in the guest (cxl list -M)",
                        d.serial()
                    )
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        out.push(format!(
            "cxl create-region -m -t pmem -d decoder0.{} -w {} -g {} {}",
            region.window,
            region.ways,
            region.granularity.bytes(),
            names.join(" ")
        ));
    }
    if !out.is_empty() {
        // New label areas read as label-less; labels make regions divisible.
        out.push("ndctl disable-region all".into());
        out.push("ndctl init-labels -f all".into());
        out.push("ndctl enable-region all".into());
    }
    Ok(out)
}

/// `cxl list -M` JSON to serial -> memdev name.
pub fn memdevs_by_serial(json: &str) -> Result<BTreeMap<u64, String>, String> {
    let v: serde_json::Value =
        serde_json::from_str(json).map_err(|e| format!("`cxl list -M` is not JSON: {e}"))?;
    let list = match v {
        serde_json::Value::Array(a) => a,
        serde_json::Value::Object(_) => vec![v],
        _ => return Err("`cxl list -M` gave neither a list nor an object".into()),
    };
    list.iter()
        .map(|m| {
            let serial = m.get("serial").and_then(serde_json::Value::as_u64);
            let name = m.get("memdev").and_then(serde_json::Value::as_str);
            match (serial, name) {
                (Some(s), Some(n)) => Ok((s, n.to_owned())),
                _ => Err(format!(
                    "memdev without serial or name in `cxl list -M`: {m}"
                )),
            }
        })
        .collect()
}

/// Whether the topology asks the harness to assemble anything.
pub fn wanted(t: &Topology) -> bool {
    t.cxl
        .as_ref()
        .is_some_and(|c| c.regions.iter().any(|r| r.assemble))
}

/// Queries the guest and returns the assembly commands.
pub async fn plan(m: &crate::machine::Machine, t: &Topology) -> Result<Vec<String>, String> {
    let Some(cxl) = &t.cxl else {
        return Ok(Vec::new());
    };
    if !wanted(t) {
        return Ok(Vec::new());
    }
    let argv: Vec<String> = ["cxl", "list", "-M"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let out = m
        .exec(&argv, Duration::from_secs(60))
        .await
        .map_err(|e| e.to_string())?;
    if !out.success() {
        return Err(format!("`cxl list -M` failed: {}", out.stderr_text()));
    }
    commands(cxl, &memdevs_by_serial(&out.stdout_text())?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cxl(ways: u32) -> Cxl {
        Cxl {
            ways: Some(ways),
            ..Default::default()
        }
        .expand()
        .unwrap()
    }

    #[test]
    fn x6_alternates_host_bridges_with_guest_names() {
        // Names as the guest numbered them, unrelated to topology order.
        let memdevs: BTreeMap<u64, String> = [
            (1, "mem4"),
            (2, "mem2"),
            (3, "mem5"),
            (4, "mem0"),
            (5, "mem3"),
            (6, "mem1"),
        ]
        .into_iter()
        .map(|(s, n)| (s, n.to_owned()))
        .collect();
        let cmds = commands(&cxl(6), &memdevs).unwrap();
        // Positions: HB0 RP0 (sn1), HB1 RP0 (sn3), HB2 RP0 (sn5), HB0 RP1 (sn2), ...
        insta::assert_snapshot!(cmds.join("\n"), @r"
        cxl create-region -m -t pmem -d decoder0.0 -w 6 -g 256 mem4 mem5 mem3 mem2 mem0 mem1
        ndctl disable-region all
        ndctl init-labels -f all
        ndctl enable-region all
        ");
    }

    #[test]
    fn missing_memdev_is_named() {
        let err = commands(&cxl(2), &BTreeMap::new()).unwrap_err();
        assert!(err.contains("serial 1"), "{err}");
    }

    #[test]
    fn parses_cxl_list() {
        let m = memdevs_by_serial(r#"[{"memdev":"mem1","serial":2},{"memdev":"mem0","serial":1}]"#)
            .unwrap();
        assert_eq!(m[&1], "mem0");
        let one = memdevs_by_serial(r#"{"memdev":"mem0","serial":1}"#).unwrap();
        assert_eq!(one.len(), 1);
    }
}
