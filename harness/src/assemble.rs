//! CXL region assembly in the guest: map memdevs to the devices the topology
//! placed (by the serial number the harness gave each), create each region
//! with its members in interleave position order, and initialize labels so
//! the nvdimm region on top is ready for namespaces.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::topology::cxl::{AssembleMethod, Cxl, Region};
use crate::topology::Topology;
use crate::vm::machine::{self, Machine};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("no memdev with serial {0} in the guest (cxl list -M)")]
    NoMemdev(u64),
    #[error("no endpoint for {0} in the guest (cxl list -E)")]
    NoEndpoint(String),
    #[error("`{command}` is not JSON: {source}")]
    NotJson {
        command: &'static str,
        source: serde_json::Error,
    },
    #[error("`cxl list -M` gave neither a list nor an object")]
    NotAList,
    #[error("memdev without serial or name in `cxl list -M`: {0}")]
    Unnamed(serde_json::Value),
    #[error("the guest has no CXL memdev (`cxl list -M` is empty): were the topology's drivers loaded (Machine::load_drivers)?")]
    NoMemdevs,
    #[error(transparent)]
    Order(#[from] crate::topology::cxl::Error),
    /// A listing or an assembly command failed: what it printed.
    #[error("{0}")]
    Failed(String),
    #[error(transparent)]
    Guest(#[from] machine::Error),
}

pub type Result<T> = std::result::Result<T, Error>;

/// What an assembly does with the label areas.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Labels {
    /// New devices: initialize them, so the regions are divisible.
    Initialize,
    /// After a reboot: the labels on the devices must survive.
    Keep,
}

/// Serial number -> the guest's memdev name (`mem3`).
pub type MemdevBySerial = BTreeMap<u64, String>;

/// memdev name -> its endpoint's first decoder (`decoderK.0`).
pub type DecoderByMemdev = BTreeMap<String, String>;

/// What the guest calls each device: memdev name, and the endpoint decoder
/// the sysfs method programs.
#[derive(Clone, Debug, Default)]
pub struct GuestDevices {
    pub memdev: MemdevBySerial,
    pub endpoint_decoder: DecoderByMemdev,
}

/// The guest commands that assemble every region marked `assemble`.
pub fn commands(cxl: &Cxl, guest: &GuestDevices) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for region in cxl.regions.iter().filter(|r| r.assemble) {
        let order = cxl.position_order(region)?;
        let names = order
            .iter()
            .map(|d| {
                guest
                    .memdev
                    .get(&d.serial())
                    .cloned()
                    .ok_or(Error::NoMemdev(d.serial()))
            })
            .collect::<Result<Vec<_>>>()?;
        out.push(match region.method {
            AssembleMethod::Cli => format!(
                "cxl create-region -m -t pmem -d decoder0.{} -w {} -g {} {}",
                region.window,
                region.ways,
                region.granularity.bytes(),
                names.join(" ")
            ),
            AssembleMethod::Sysfs => {
                let smallest = order
                    .iter()
                    .map(|p| cxl.devices()[p.index].1.size.bytes())
                    .min()
                    .unwrap_or(0);
                sysfs_script(region, &names, guest, smallest)?
            }
        });
    }
    if !out.is_empty() {
        // New label areas read as label-less; labels make regions divisible.
        out.push("ndctl disable-region all".into());
        out.push("ndctl init-labels -f all".into());
        out.push("ndctl enable-region all".into());
    }
    Ok(out)
}

/// One shell line that creates a pmem region through sysfs, traced (`set
/// -x`) so the transcript shows every write.
fn sysfs_script(
    region: &Region,
    memdevs: &[String],
    guest: &GuestDevices,
    per_device: u64,
) -> Result<String> {
    let d = "/sys/bus/cxl/devices";
    let root = format!("{d}/decoder0.{}", region.window);
    let mut s = vec![
        "set -ex".to_owned(),
        format!("r=$(cat {root}/create_pmem_region)"),
        format!("echo $r > {root}/create_pmem_region"),
        format!("cat /proc/sys/kernel/random/uuid > {d}/$r/uuid"),
        format!(
            "echo {} > {d}/$r/interleave_granularity",
            region.granularity.bytes()
        ),
        format!("echo {} > {d}/$r/interleave_ways", region.ways),
    ];
    let mut decoders = Vec::new();
    for m in memdevs {
        let dec = guest
            .endpoint_decoder
            .get(m)
            .ok_or_else(|| Error::NoEndpoint(m.clone()))?;
        s.push(format!("echo pmem > {d}/{dec}/mode"));
        s.push(format!("echo {per_device} > {d}/{dec}/dpa_size"));
        decoders.push(dec.clone());
    }
    s.push(format!(
        "echo {} > {d}/$r/size",
        per_device * u64::from(region.ways)
    ));
    for (pos, dec) in decoders.iter().enumerate() {
        s.push(format!("echo {dec} > {d}/$r/target{pos}"));
    }
    s.push(format!("echo 1 > {d}/$r/commit"));
    s.push("echo $r > /sys/bus/cxl/drivers/cxl_region/bind".to_owned());
    Ok(s.join("; "))
}

/// `cxl list -E` JSON to memdev -> endpoint decoder `decoderK.0`.
pub fn endpoint_decoders(json: &str) -> Result<DecoderByMemdev> {
    let v: serde_json::Value = serde_json::from_str(json).map_err(|source| Error::NotJson {
        command: "cxl list -E",
        source,
    })?;
    let mut out = BTreeMap::new();
    let mut stack = vec![&v];
    while let Some(x) = stack.pop() {
        match x {
            serde_json::Value::Array(a) => stack.extend(a),
            serde_json::Value::Object(m) => {
                let ep = m.get("endpoint").and_then(|e| e.as_str());
                let host = m.get("host").and_then(|h| h.as_str());
                if let (Some(ep), Some(host)) = (ep, host) {
                    let id = ep.trim_start_matches("endpoint");
                    out.insert(host.to_owned(), format!("decoder{id}.0"));
                }
                stack.extend(m.values());
            }
            _ => {}
        }
    }
    Ok(out)
}

/// `cxl list -M` JSON to serial -> memdev name.
pub fn memdevs_by_serial(json: &str) -> Result<MemdevBySerial> {
    let v: serde_json::Value = serde_json::from_str(json).map_err(|source| Error::NotJson {
        command: "cxl list -M",
        source,
    })?;
    let list = match v {
        serde_json::Value::Array(a) => a,
        serde_json::Value::Object(_) => vec![v],
        _ => return Err(Error::NotAList),
    };
    list.iter()
        .map(|m| {
            let serial = m.get("serial").and_then(serde_json::Value::as_u64);
            let name = m.get("memdev").and_then(serde_json::Value::as_str);
            match (serial, name) {
                (Some(s), Some(n)) => Ok((s, n.to_owned())),
                _ => Err(Error::Unnamed(m.clone())),
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

/// Queries the guest and returns the assembly commands. After a reboot
/// ([`Labels::Keep`]) only the regions are created again: the labels
/// already on the devices must survive.
pub async fn plan(m: &Machine, t: &Topology, labels: Labels) -> Result<Vec<String>> {
    let Some(cxl) = &t.cxl else {
        return Ok(Vec::new());
    };
    if !wanted(t) {
        return Ok(Vec::new());
    }
    let listed = list(m, &[&["cxl", "list", "-M"], &["cxl", "list", "-E"]]).await?;
    let memdev = memdevs_by_serial(&listed[0])?;
    if memdev.is_empty() {
        return Err(Error::NoMemdevs);
    }
    let guest = GuestDevices {
        memdev,
        endpoint_decoder: endpoint_decoders(&listed[1])?,
    };
    let mut cmds = commands(cxl, &guest)?;
    if labels == Labels::Keep {
        cmds.retain(|c| !c.starts_with("ndctl "));
        // The namespaces the labels describe probe asynchronously after the
        // region binds; reading wait_probe flushes the nd bus's probe queue,
        // so the case's next step finds their block and dax devices.
        cmds.push("cat /sys/bus/nd/devices/ndbus*/wait_probe".into());
    }
    Ok(cmds)
}

/// Plans and runs the assembly outside a case (`boot`, `bench`): each
/// command must succeed.
pub async fn run(m: &Machine, t: &Topology) -> Result<()> {
    for line in plan(m, t, Labels::Initialize).await? {
        let argv = crate::command_line::shell(line.clone());
        let out = m.exec(&argv, Duration::from_secs(120)).await?;
        if !out.success() {
            return Err(Error::Failed(format!(
                "`{line}` failed: {}{}",
                out.stdout_text(),
                out.stderr_text()
            )));
        }
    }
    Ok(())
}

/// The outputs of `commands`, run in one guest round trip; an error names
/// the first that failed.
async fn list(m: &Machine, commands: &[&[&str]]) -> Result<Vec<String>> {
    let (outs, stderr) = m.exec_each(commands, Duration::from_secs(60)).await?;
    if let Some(failed) = machine::first_failure(commands, &outs, &stderr) {
        return Err(Error::Failed(failed));
    }
    Ok(outs.into_iter().map(|(_, stdout)| stdout).collect())
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
        let guest = GuestDevices {
            memdev: memdevs,
            ..Default::default()
        };
        let cmds = commands(&cxl(6), &guest).unwrap();
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
        let err = commands(&cxl(2), &GuestDevices::default()).unwrap_err();
        assert!(err.to_string().contains("serial 1"), "{err}");
    }

    #[test]
    fn parses_cxl_list() {
        let m = memdevs_by_serial(r#"[{"memdev":"mem1","serial":2},{"memdev":"mem0","serial":1}]"#)
            .unwrap();
        assert_eq!(m[&1], "mem0");
        let one = memdevs_by_serial(r#"{"memdev":"mem0","serial":1}"#).unwrap();
        assert_eq!(one.len(), 1);
    }

    #[test]
    fn sysfs_method_writes_every_attribute_in_position_order() {
        let mut c = cxl(2);
        c.regions[0].method = AssembleMethod::Sysfs;
        let guest = GuestDevices {
            memdev: [(1, "mem1"), (2, "mem0")].into_iter().map(|(s, n)| (s, n.to_owned())).collect(),
            endpoint_decoder: endpoint_decoders(
                r#"[{"port":"port1","endpoints:port1":[{"endpoint":"endpoint2","host":"mem0"},{"endpoint":"endpoint3","host":"mem1"}]}]"#,
            )
            .unwrap(),
        };
        let cmds = commands(&c, &guest).unwrap();
        insta::assert_snapshot!(cmds[0].replace("; ", "\n"), @r"
        set -ex
        r=$(cat /sys/bus/cxl/devices/decoder0.0/create_pmem_region)
        echo $r > /sys/bus/cxl/devices/decoder0.0/create_pmem_region
        cat /proc/sys/kernel/random/uuid > /sys/bus/cxl/devices/$r/uuid
        echo 256 > /sys/bus/cxl/devices/$r/interleave_granularity
        echo 2 > /sys/bus/cxl/devices/$r/interleave_ways
        echo pmem > /sys/bus/cxl/devices/decoder3.0/mode
        echo 268435456 > /sys/bus/cxl/devices/decoder3.0/dpa_size
        echo pmem > /sys/bus/cxl/devices/decoder2.0/mode
        echo 268435456 > /sys/bus/cxl/devices/decoder2.0/dpa_size
        echo 536870912 > /sys/bus/cxl/devices/$r/size
        echo decoder3.0 > /sys/bus/cxl/devices/$r/target0
        echo decoder2.0 > /sys/bus/cxl/devices/$r/target1
        echo 1 > /sys/bus/cxl/devices/$r/commit
        echo $r > /sys/bus/cxl/drivers/cxl_region/bind
        ");
    }
}
