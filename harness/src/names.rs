//! Stable names for devices the kernel numbers in probe order.
//!
//! cxl_pci and cxl_mem probe asynchronously, so `mem3` on one boot is `mem0`
//! on the next, and so are the endpoint ports, switch ports, their decoders
//! and the CXL nvdimms. Each has an identity that does not change: a
//! memdev's serial number (the harness gives every type-3 device one), an
//! endpoint's memdev, a switch port's PCI address. [`Names`] maps the guest's
//! names to names built from those, e.g. `mem3` -> `mem(sn1)`,
//! `decoder7.0` -> `decoder(endpoint sn1).0`.

use std::collections::BTreeMap;
use std::sync::LazyLock;

use regex::{Captures, Regex};
use serde_json::Value;

static NAME: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"\b(mem|endpoint|port|nmem)(\d+)\b|\bdecoder(\d+)\.(\d+)\b").unwrap()
});

/// Guest device name -> stable name.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Names {
    map: BTreeMap<String, String>,
    /// Port id -> stable port label, for `decoderID.N`.
    ports: BTreeMap<u64, String>,
}

impl Names {
    /// Builds the map from `cxl list -M`, `cxl list -P -E` and `ndctl list -D`
    /// output (any of them may be empty).
    pub fn from_listings(memdevs: &str, ports: &str, dimms: &str) -> Names {
        let mut n = Names::default();
        let mut serial_of = BTreeMap::new();
        for m in objects(memdevs) {
            if let (Some(dev), Some(sn)) = (
                str_field(&m, "memdev"),
                m.get("serial").and_then(Value::as_u64),
            ) {
                serial_of.insert(dev.clone(), sn);
                n.map.insert(dev, format!("mem(sn{sn})"));
            }
        }
        for p in objects(ports) {
            let host = str_field(&p, "host").unwrap_or_default();
            if let Some(ep) = str_field(&p, "endpoint") {
                let label = match serial_of.get(&host) {
                    Some(sn) => format!("endpoint sn{sn}"),
                    None => format!("endpoint {host}"),
                };
                n.add_port(&ep, "endpoint", label);
            } else if let Some(port) = str_field(&p, "port") {
                n.add_port(&port, "port", format!("port {host}"));
            }
        }
        for d in objects(dimms) {
            // CXL nvdimms carry the memdev's serial as their id; NFIT ones
            // (vendor-serial strings) keep their ACPI-ordered names.
            if let (Some(dev), Some(id)) = (str_field(&d, "dev"), str_field(&d, "id")) {
                if id.chars().all(|c| c.is_ascii_digit()) {
                    n.map.insert(dev, format!("nmem(sn{id})"));
                }
            }
        }
        n
    }

    fn add_port(&mut self, name: &str, prefix: &str, label: String) {
        if let Some(id) = name.strip_prefix(prefix).and_then(|d| d.parse().ok()) {
            self.ports.insert(id, label.clone());
        }
        self.map.insert(
            name.to_owned(),
            format!(
                "{prefix}({})",
                label.trim_start_matches(&format!("{prefix} "))
            ),
        );
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Replaces every known probe-order name in `s`.
    pub fn apply(&self, s: &str) -> String {
        if self.map.is_empty() {
            return s.to_owned();
        }
        NAME.replace_all(s, |c: &Captures| {
            if let (Some(port), Some(n)) = (c.get(3), c.get(4)) {
                let id: u64 = port.as_str().parse().unwrap_or(u64::MAX);
                return match self.ports.get(&id) {
                    Some(label) => format!("decoder({label}).{}", n.as_str()),
                    None => c[0].to_owned(),
                };
            }
            self.map
                .get(&c[0])
                .cloned()
                .unwrap_or_else(|| c[0].to_owned())
        })
        .into_owned()
    }
}

fn str_field(v: &Value, key: &str) -> Option<String> {
    v.get(key).and_then(Value::as_str).map(str::to_owned)
}

/// Every JSON object in a listing, at any depth.
fn objects(json: &str) -> Vec<Value> {
    fn walk(v: &Value, out: &mut Vec<Value>) {
        match v {
            Value::Array(a) => a.iter().for_each(|x| walk(x, out)),
            Value::Object(m) => {
                out.push(v.clone());
                m.values().for_each(|x| walk(x, out));
            }
            _ => {}
        }
    }
    let mut out = Vec::new();
    if let Ok(v) = serde_json::from_str::<Value>(json.trim()) {
        walk(&v, &mut out);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names() -> Names {
        Names::from_listings(
            r#"[{"memdev":"mem1","serial":1},{"memdev":"mem0","serial":2}]"#,
            r#"[{"port":"port1","host":"pci0000:0c","ports:port1":[{"port":"port4","host":"0000:0d:00.0"}]},
                {"endpoint":"endpoint3","host":"mem1"},{"endpoint":"endpoint2","host":"mem0"}]"#,
            r#"[{"dev":"nmem1","id":"1"},{"dev":"nmem0","id":"8680-56341200"}]"#,
        )
    }

    #[test]
    fn renames_by_identity() {
        let s = "cxl create-region -w 2 mem0 mem1; decoder3.0 on endpoint3 below port4, decoder1.0, decoder0.0; nmem1 nmem0";
        insta::assert_snapshot!(names().apply(s), @"cxl create-region -w 2 mem(sn2) mem(sn1); decoder(endpoint sn1).0 on endpoint(sn1) below port(0000:0d:00.0), decoder(port pci0000:0c).0, decoder0.0; nmem(sn1) nmem0");
    }

    #[test]
    fn leaves_other_words_alone() {
        assert_eq!(
            names().apply("memory mem12 region0 pmem0"),
            "memory mem12 region0 pmem0"
        );
        assert_eq!(Names::default().apply("mem0"), "mem0");
    }
}
