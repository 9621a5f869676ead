//! CXL persistent memory: host bridges, root ports, switches, type-3
//! devices, fixed memory windows and the regions interleaved across them.
//!
//! `cxl: { ways: 6 }` is shorthand for the smallest topology QEMU and Linux
//! accept at that width; [`Cxl::expand`] writes it out.

use serde::{Deserialize, Serialize};

use crate::size::Size;

/// Interleave ways a CXL fixed memory window can encode (QEMU's CFMWS and
/// Linux's decoders): powers of two up to 16, and 3 times a power of two.
pub const WINDOW_WAYS: [u32; 8] = [1, 2, 4, 8, 16, 3, 6, 12];
/// Linux programs at most 8 targets into one decoder.
pub const MAX_PORT_TARGETS: usize = 8;
/// HDM decoders per CXL component in QEMU.
pub const DECODERS_PER_PORT: usize = 4;

#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Cxl {
    /// Shorthand: the width of one region; everything else is derived.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ways: Option<u32>,
    /// Shorthand: how the harness creates that region.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<AssembleMethod>,
    #[serde(default)]
    pub host_bridges: Vec<HostBridge>,
    #[serde(default)]
    pub windows: Vec<Window>,
    #[serde(default)]
    pub regions: Vec<Region>,
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct HostBridge {
    pub root_ports: Vec<Port>,
}

/// What sits below a root port or a switch's downstream port.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Port {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device: Option<Type3>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub switch: Option<Switch>,
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Switch {
    pub downstream: Vec<Port>,
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Type3 {
    #[serde(default = "default_device_size")]
    pub size: Size,
    #[serde(default = "default_lsa_size")]
    pub lsa: Size,
}

fn default_device_size() -> Size {
    Size::mib(256)
}
fn default_lsa_size() -> Size {
    Size(128 << 10)
}

impl Default for Type3 {
    fn default() -> Self {
        Type3 {
            size: default_device_size(),
            lsa: default_lsa_size(),
        }
    }
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Window {
    /// Host bridge indices, in interleave order.
    pub targets: Vec<usize>,
    #[serde(default = "default_window_size")]
    pub size: Size,
    #[serde(default = "default_granularity")]
    pub granularity: Size,
}

fn default_window_size() -> Size {
    Size::gib(8)
}
fn default_granularity() -> Size {
    Size(256)
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Region {
    #[serde(default)]
    pub window: usize,
    pub ways: u32,
    #[serde(default = "default_granularity")]
    pub granularity: Size,
    /// Create it (and initialize its labels) before the case's steps;
    /// false leaves region creation to the case.
    #[serde(default = "yes")]
    pub assemble: bool,
    /// How the harness creates it.
    #[serde(default)]
    pub method: AssembleMethod,
}

#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum AssembleMethod {
    /// `cxl create-region`.
    #[default]
    Cli,
    /// The kernel's sysfs ABI, step by step, as cxl-cli drives it.
    Sysfs,
}

fn yes() -> bool {
    true
}

/// One type-3 device with where it sits, in QEMU creation order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DevicePlace {
    /// Index in creation order; QEMU id `cxl-pmem{index}`, serial index+1.
    pub index: usize,
    pub host_bridge: usize,
    pub root_port: usize,
    /// Downstream port index when behind a switch.
    pub switch_port: Option<usize>,
}

impl DevicePlace {
    pub fn serial(&self) -> u64 {
        self.index as u64 + 1
    }
}

impl Cxl {
    /// Writes out the `ways` shorthand (a no-op for explicit topologies).
    pub fn expand(&self) -> Result<Cxl, String> {
        let Some(ways) = self.ways else {
            if self.method.is_some() {
                return Err("`method` goes with the `ways` shorthand; in a written-out topology set it per region".into());
            }
            return Ok(self.clone());
        };
        if !self.host_bridges.is_empty() || !self.windows.is_empty() || !self.regions.is_empty() {
            return Err("`ways` is shorthand for a whole topology; leave out host_bridges, windows and regions, or leave out `ways`".into());
        }
        let (bridges, ports) = shape_for(ways)?;
        let port = || Port {
            device: Some(Type3::default()),
            switch: None,
        };
        Ok(Cxl {
            ways: None,
            method: None,
            host_bridges: (0..bridges)
                .map(|_| HostBridge {
                    root_ports: (0..ports).map(|_| port()).collect(),
                })
                .collect(),
            windows: vec![Window {
                targets: (0..bridges as usize).collect(),
                size: default_window_size(),
                granularity: default_granularity(),
            }],
            regions: vec![Region {
                window: 0,
                ways,
                granularity: default_granularity(),
                assemble: true,
                method: self.method.unwrap_or_default(),
            }],
        })
    }

    /// Every type-3 device, in the order QEMU creates them.
    pub fn devices(&self) -> Vec<(DevicePlace, &Type3)> {
        let mut out = Vec::new();
        for (h, hb) in self.host_bridges.iter().enumerate() {
            for (r, rp) in hb.root_ports.iter().enumerate() {
                if let Some(d) = &rp.device {
                    let index = out.len();
                    out.push((
                        DevicePlace {
                            index,
                            host_bridge: h,
                            root_port: r,
                            switch_port: None,
                        },
                        d,
                    ));
                }
                if let Some(sw) = &rp.switch {
                    for (s, dp) in sw.downstream.iter().enumerate() {
                        if let Some(d) = &dp.device {
                            let index = out.len();
                            out.push((
                                DevicePlace {
                                    index,
                                    host_bridge: h,
                                    root_port: r,
                                    switch_port: Some(s),
                                },
                                d,
                            ));
                        }
                    }
                }
            }
        }
        out
    }

    /// The devices of `region` in interleave position order: positions
    /// alternate host bridges first, then root ports, then switch ports
    /// (position p sits on host bridge p mod k, where k is the window's
    /// target count).
    pub fn position_order(&self, region: &Region) -> Result<Vec<DevicePlace>, String> {
        let window = self.windows.get(region.window).ok_or("no such window")?;
        let k = window.targets.len() as u32;
        if k == 0 || region.ways % k != 0 {
            return Err(format!(
                "a {}-way region cannot spread evenly over a window of {k} host bridge(s)",
                region.ways
            ));
        }
        let per_bridge = (region.ways / k) as usize;
        let devices = self.devices();
        let mut order = Vec::with_capacity(region.ways as usize);
        for p in 0..region.ways as usize {
            let hb = window.targets[p % k as usize];
            let slot = p / k as usize;
            let under: Vec<&DevicePlace> = devices
                .iter()
                .map(|(d, _)| d)
                .filter(|d| d.host_bridge == hb)
                .collect();
            let d = below_bridge(&under, per_bridge, slot).ok_or_else(|| {
                format!(
                    "host bridge {hb} has too few devices for a {}-way region",
                    region.ways
                )
            })?;
            order.push(d.clone());
        }
        Ok(order)
    }
}

/// A rule a topology breaks: the YAML path under `cxl` and the reason.
pub type Violation = (String, String);

fn pow2(n: u64) -> bool {
    n != 0 && n & (n - 1) == 0
}

impl Cxl {
    /// Checks an expanded topology against what QEMU and Linux accept.
    pub fn validate(&self) -> Result<(), Violation> {
        let v = |path: String, reason: String| Err((path, reason));
        if self.host_bridges.is_empty() {
            return v(
                "cxl.host_bridges".into(),
                "CXL needs at least one host bridge".into(),
            );
        }
        if self.host_bridges.len() > MAX_HOST_BRIDGES {
            return v(
                "cxl.host_bridges".into(),
                format!(
                    "{} host bridges leave too few PCI buses each; at most {MAX_HOST_BRIDGES}",
                    self.host_bridges.len()
                ),
            );
        }
        for (h, hb) in self.host_bridges.iter().enumerate() {
            let at = format!("cxl.host_bridges[{h}].root_ports");
            if hb.root_ports.is_empty() || hb.root_ports.len() > MAX_PORT_TARGETS {
                return v(at, format!("a host bridge has 1 to {MAX_PORT_TARGETS} root ports (Linux decodes at most {MAX_PORT_TARGETS} targets per port); this one has {}", hb.root_ports.len()));
            }
            for (r, rp) in hb.root_ports.iter().enumerate() {
                check_port(rp, &format!("{at}[{r}]"), true)?;
            }
        }
        for (w, win) in self.windows.iter().enumerate() {
            let at = |f: &str| format!("cxl.windows[{w}].{f}");
            let k = win.targets.len() as u32;
            if !WINDOW_WAYS.contains(&k) {
                return v(at("targets"), format!("a window interleaves 1, 2, 4, 8, 16, 3, 6 or 12 host bridges; this one has {k}"));
            }
            if let Some(t) = win.targets.iter().find(|t| **t >= self.host_bridges.len()) {
                return v(
                    at("targets"),
                    format!(
                        "host bridge {t} does not exist ({} defined)",
                        self.host_bridges.len()
                    ),
                );
            }
            let mut seen = win.targets.clone();
            seen.sort();
            seen.dedup();
            if seen.len() != win.targets.len() {
                return v(
                    at("targets"),
                    "a host bridge appears twice in one window".into(),
                );
            }
            if win.size.bytes() == 0 || win.size.bytes() % Size::mib(256).bytes() != 0 {
                return v(
                    at("size"),
                    format!("a window's size is a multiple of 256M; got {}", win.size),
                );
            }
            check_granularity(win.granularity, &at("granularity"))?;
        }
        let mut decoders = std::collections::BTreeMap::new();
        for (i, r) in self.regions.iter().enumerate() {
            let at = |f: &str| format!("cxl.regions[{i}].{f}");
            let Some(win) = self.windows.get(r.window) else {
                return v(
                    at("window"),
                    format!(
                        "window {} does not exist ({} defined)",
                        r.window,
                        self.windows.len()
                    ),
                );
            };
            if !WINDOW_WAYS.contains(&r.ways) {
                return v(at("ways"), shape_for(r.ways).err().unwrap_or_default());
            }
            let k = win.targets.len() as u32;
            if r.ways % k != 0 || !pow2(u64::from(r.ways / k)) {
                return v(at("ways"), format!(
                    "{} ways over a window of {k} host bridge(s) leaves {}/{k} per bridge; below a host bridge only powers of two interleave",
                    r.ways, r.ways
                ));
            }
            check_granularity(r.granularity, &at("granularity"))?;
            let order = self.position_order(r).map_err(|e| (at("ways"), e))?;
            let devices = self.devices();
            let smallest = order
                .iter()
                .map(|p| devices[p.index].1.size.bytes())
                .min()
                .unwrap_or(0);
            if smallest * u64::from(r.ways) > win.size.bytes() {
                return v(
                    at("window"),
                    format!(
                        "{} ways x {} does not fit the window's {}",
                        r.ways,
                        Size(smallest),
                        win.size
                    ),
                );
            }
            for t in &win.targets {
                let n = decoders.entry(*t).or_insert(0usize);
                *n += 1;
                if *n > DECODERS_PER_PORT {
                    return v(at("window"), format!("host bridge {t} would need more than the {DECODERS_PER_PORT} HDM decoders QEMU gives a port"));
                }
            }
        }
        Ok(())
    }
}

/// pxb-cxl bus numbers are spaced 40 apart below bus 255.
pub const MAX_HOST_BRIDGES: usize = 6;

fn check_port(p: &Port, at: &str, root: bool) -> Result<(), Violation> {
    match (&p.device, &p.switch) {
        (Some(_), Some(_)) => Err((
            at.into(),
            "a port holds a device or a switch, not both".into(),
        )),
        (None, None) => Err((at.into(), "a port needs a `device` or a `switch`".into())),
        (Some(d), None) => {
            if d.size.bytes() == 0 || d.size.bytes() % Size::mib(256).bytes() != 0 {
                return Err((
                    format!("{at}.device.size"),
                    format!(
                        "a type-3 device's persistent size is a multiple of 256M; got {}",
                        d.size
                    ),
                ));
            }
            if d.lsa.bytes() < 128 << 10 {
                return Err((
                    format!("{at}.device.lsa"),
                    format!("ndctl needs a label area of at least 128K; got {}", d.lsa),
                ));
            }
            Ok(())
        }
        (None, Some(sw)) => {
            if !root {
                return Err((
                    format!("{at}.switch"),
                    "switches below switches are not supported".into(),
                ));
            }
            if sw.downstream.is_empty() || sw.downstream.len() > MAX_PORT_TARGETS {
                return Err((
                    format!("{at}.switch.downstream"),
                    format!(
                        "a switch has 1 to {MAX_PORT_TARGETS} downstream ports; this one has {}",
                        sw.downstream.len()
                    ),
                ));
            }
            for (i, dp) in sw.downstream.iter().enumerate() {
                check_port(dp, &format!("{at}.switch.downstream[{i}]"), false)?;
            }
            Ok(())
        }
    }
}

fn check_granularity(g: Size, at: &str) -> Result<(), Violation> {
    let b = g.bytes();
    if !pow2(b) || !(256..=16384).contains(&b) {
        return Err((
            at.into(),
            format!("interleave granularity is a power of two from 256 to 16K bytes; got {b}"),
        ));
    }
    Ok(())
}

/// The `slot`-th position below one host bridge: root ports alternate first,
/// then a switch's downstream ports.
fn below_bridge<'a>(
    under: &[&'a DevicePlace],
    per_bridge: usize,
    slot: usize,
) -> Option<&'a DevicePlace> {
    let ports: Vec<usize> = {
        let mut p: Vec<usize> = under.iter().map(|d| d.root_port).collect();
        p.dedup();
        p
    };
    let m = ports.len().min(per_bridge).max(1);
    let rp = ports.get(slot % m)?;
    let behind: Vec<&&DevicePlace> = under.iter().filter(|d| d.root_port == *rp).collect();
    behind.get(slot / m).map(|d| **d)
}

/// Host bridges x root ports for a width, smallest first.
pub fn shape_for(ways: u32) -> Result<(u32, u32), String> {
    match ways {
        1 | 2 | 4 => Ok((1, ways)),
        8 | 16 => Ok((ways / 4, 4)),
        3 | 6 | 12 => Ok((3, ways / 3)),
        _ => Err(format!(
            "{ways}-way interleave is not possible: a CXL window interleaves 1, 2, 4, 8 or 16 host bridges, or 3, 6 or 12 \
             (3 times a power of two), and below a host bridge only powers of two; widths are 1, 2, 3, 4, 6, 8, 12 and 16"
        )),
    }
}

#[cfg(test)]
mod tests;
