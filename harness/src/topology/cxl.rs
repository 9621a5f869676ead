//! CXL persistent memory: host bridges, root ports, switches, type-3
//! devices, fixed memory windows and the regions interleaved across them.
//!
//! `cxl: { ways: 6 }` is shorthand for the smallest topology QEMU and Linux
//! accept at that width; [`Cxl::expand`] writes it out.

use serde::{Deserialize, Serialize};

use crate::size::Size;

/// A CXL shape that cannot be built: a shorthand misused, a width no window
/// can encode, a region that does not fit its window.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "`method` goes with the `ways` shorthand; in a written-out topology set it per region"
    )]
    MethodWithoutShorthand,
    #[error("`ways` is shorthand for a whole topology; leave out host_bridges, windows and regions, or leave out `ways`")]
    ShorthandWithTopology,
    #[error(
        "{ways}-way interleave is not possible: a CXL window interleaves 1, 2, 4, 8 or 16 host bridges, or 3, 6 or 12 \
         (3 times a power of two), and below a host bridge only powers of two; widths are 1, 2, 3, 4, 6, 8, 12 and 16"
    )]
    ImpossibleWidth { ways: u32 },
    #[error("window {window} does not exist ({count} defined)")]
    NoWindow { window: usize, count: usize },
    #[error("a {ways}-way region cannot spread evenly over a window of {bridges} host bridge(s)")]
    Uneven { ways: u32, bridges: u32 },
    #[error("host bridge {bridge} has too few devices for a {ways}-way region")]
    TooFewDevices { bridge: usize, ways: u32 },
}

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
    pub fn expand(&self) -> Result<Cxl, Error> {
        let Some(ways) = self.ways else {
            if self.method.is_some() {
                return Err(Error::MethodWithoutShorthand);
            }
            return Ok(self.clone());
        };
        if !self.host_bridges.is_empty() || !self.windows.is_empty() || !self.regions.is_empty() {
            return Err(Error::ShorthandWithTopology);
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
        for (host_bridge, bridge) in self.host_bridges.iter().enumerate() {
            for (root_port, port) in bridge.root_ports.iter().enumerate() {
                // Below the root port itself, then below each switch port.
                let below = port.device.iter().map(|device| (None, device));
                let behind_switch =
                    port.switch.iter().flat_map(|switch| {
                        switch.downstream.iter().enumerate().filter_map(
                            |(switch_port, downstream)| {
                                Some((Some(switch_port), downstream.device.as_ref()?))
                            },
                        )
                    });
                for (switch_port, device) in below.chain(behind_switch) {
                    let place = DevicePlace {
                        index: out.len(),
                        host_bridge,
                        root_port,
                        switch_port,
                    };
                    out.push((place, device));
                }
            }
        }
        out
    }

    /// The devices of `region` in interleave position order: positions
    /// alternate host bridges first, then root ports, then switch ports
    /// (position p sits on host bridge p mod k, where k is the window's
    /// target count).
    pub fn position_order(&self, region: &Region) -> Result<Vec<DevicePlace>, Error> {
        let window = self.windows.get(region.window).ok_or(Error::NoWindow {
            window: region.window,
            count: self.windows.len(),
        })?;
        let bridges = window.targets.len() as u32;
        if bridges == 0 || !region.ways.is_multiple_of(bridges) {
            return Err(Error::Uneven {
                ways: region.ways,
                bridges,
            });
        }
        let per_bridge = (region.ways / bridges) as usize;
        let devices = self.devices();
        let mut order = Vec::with_capacity(region.ways as usize);
        for position in 0..region.ways as usize {
            let bridge = window.targets[position % bridges as usize];
            let slot = position / bridges as usize;
            let under: Vec<&DevicePlace> = devices
                .iter()
                .map(|(place, _)| place)
                .filter(|place| place.host_bridge == bridge)
                .collect();
            let place = below_bridge(&under, per_bridge, slot).ok_or(Error::TooFewDevices {
                bridge,
                ways: region.ways,
            })?;
            order.push(place.clone());
        }
        Ok(order)
    }
}

/// A rule a topology breaks: the YAML path under `cxl` and the reason.
#[derive(Debug, PartialEq)]
pub struct Violation {
    pub yaml_path: String,
    pub reason: String,
}

/// `Err` of a [`Violation`] at `yaml_path`.
fn violation<T>(yaml_path: impl Into<String>, reason: impl Into<String>) -> Result<T, Violation> {
    Err(Violation {
        yaml_path: yaml_path.into(),
        reason: reason.into(),
    })
}

fn pow2(n: u64) -> bool {
    n != 0 && n & (n - 1) == 0
}

/// Where a port sits: what may be below it depends on it.
#[derive(Clone, Copy, PartialEq, Eq)]
enum PortLevel {
    /// A host bridge's root port: a device or a switch.
    Root,
    /// A switch's downstream port: a device only.
    BelowSwitch,
}

impl Cxl {
    /// Checks an expanded topology against what QEMU and Linux accept.
    pub fn validate(&self) -> Result<(), Violation> {
        self.validate_host_bridges()?;
        for (index, window) in self.windows.iter().enumerate() {
            self.validate_window(index, window)?;
        }
        let mut decoders = std::collections::BTreeMap::new();
        for (index, region) in self.regions.iter().enumerate() {
            self.validate_region(index, region, &mut decoders)?;
        }
        Ok(())
    }

    fn validate_host_bridges(&self) -> Result<(), Violation> {
        if self.host_bridges.is_empty() {
            return violation("cxl.host_bridges", "CXL needs at least one host bridge");
        }
        if self.host_bridges.len() > MAX_HOST_BRIDGES {
            return violation(
                "cxl.host_bridges",
                format!(
                    "{} host bridges leave too few PCI buses each; at most {MAX_HOST_BRIDGES}",
                    self.host_bridges.len()
                ),
            );
        }
        for (index, bridge) in self.host_bridges.iter().enumerate() {
            let at = format!("cxl.host_bridges[{index}].root_ports");
            if bridge.root_ports.is_empty() || bridge.root_ports.len() > MAX_PORT_TARGETS {
                return violation(at, format!("a host bridge has 1 to {MAX_PORT_TARGETS} root ports (Linux decodes at most {MAX_PORT_TARGETS} targets per port); this one has {}", bridge.root_ports.len()));
            }
            for (port_index, port) in bridge.root_ports.iter().enumerate() {
                check_port(port, &format!("{at}[{port_index}]"), PortLevel::Root)?;
            }
        }
        Ok(())
    }

    fn validate_window(&self, index: usize, window: &Window) -> Result<(), Violation> {
        let at = |field: &str| format!("cxl.windows[{index}].{field}");
        let bridges = window.targets.len() as u32;
        if !WINDOW_WAYS.contains(&bridges) {
            return violation(at("targets"), format!("a window interleaves 1, 2, 4, 8, 16, 3, 6 or 12 host bridges; this one has {bridges}"));
        }
        if let Some(target) = window
            .targets
            .iter()
            .find(|t| **t >= self.host_bridges.len())
        {
            return violation(
                at("targets"),
                format!(
                    "host bridge {target} does not exist ({} defined)",
                    self.host_bridges.len()
                ),
            );
        }
        let mut seen = window.targets.clone();
        seen.sort();
        seen.dedup();
        if seen.len() != window.targets.len() {
            return violation(at("targets"), "a host bridge appears twice in one window");
        }
        if window.size.bytes() == 0 || !window.size.bytes().is_multiple_of(Size::mib(256).bytes()) {
            return violation(
                at("size"),
                format!("a window's size is a multiple of 256M; got {}", window.size),
            );
        }
        check_granularity(window.granularity, &at("granularity"))
    }

    /// Checks one region; `decoders` counts the HDM decoders each host
    /// bridge has given to the regions checked so far.
    fn validate_region(
        &self,
        index: usize,
        region: &Region,
        decoders: &mut std::collections::BTreeMap<usize, usize>,
    ) -> Result<(), Violation> {
        let at = |field: &str| format!("cxl.regions[{index}].{field}");
        let Some(window) = self.windows.get(region.window) else {
            return violation(
                at("window"),
                format!(
                    "window {} does not exist ({} defined)",
                    region.window,
                    self.windows.len()
                ),
            );
        };
        if !WINDOW_WAYS.contains(&region.ways) {
            let reason = shape_for(region.ways)
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            return violation(at("ways"), reason);
        }
        let bridges = window.targets.len() as u32;
        if !region.ways.is_multiple_of(bridges) || !pow2(u64::from(region.ways / bridges)) {
            return violation(at("ways"), format!(
                "{} ways over a window of {bridges} host bridge(s) leaves {}/{bridges} per bridge; below a host bridge only powers of two interleave",
                region.ways, region.ways
            ));
        }
        check_granularity(region.granularity, &at("granularity"))?;
        let order = self
            .position_order(region)
            .or_else(|e| violation(at("ways"), e.to_string()))?;
        let devices = self.devices();
        let smallest = order
            .iter()
            .map(|place| devices[place.index].1.size.bytes())
            .min()
            .unwrap_or(0);
        if smallest * u64::from(region.ways) > window.size.bytes() {
            return violation(
                at("window"),
                format!(
                    "{} ways x {} does not fit the window's {}",
                    region.ways,
                    Size(smallest),
                    window.size
                ),
            );
        }
        for target in &window.targets {
            let count = decoders.entry(*target).or_insert(0usize);
            *count += 1;
            if *count > DECODERS_PER_PORT {
                return violation(at("window"), format!("host bridge {target} would need more than the {DECODERS_PER_PORT} HDM decoders QEMU gives a port"));
            }
        }
        Ok(())
    }
}

/// pxb-cxl bus numbers are spaced 40 apart below bus 255.
pub const MAX_HOST_BRIDGES: usize = 6;

fn check_port(port: &Port, at: &str, level: PortLevel) -> Result<(), Violation> {
    match (&port.device, &port.switch) {
        (Some(_), Some(_)) => violation(at, "a port holds a device or a switch, not both"),
        (None, None) => violation(at, "a port needs a `device` or a `switch`"),
        (Some(device), None) => {
            if device.size.bytes() == 0 || device.size.bytes() % Size::mib(256).bytes() != 0 {
                return violation(
                    format!("{at}.device.size"),
                    format!(
                        "a type-3 device's persistent size is a multiple of 256M; got {}",
                        device.size
                    ),
                );
            }
            if device.lsa.bytes() < 128 << 10 {
                return violation(
                    format!("{at}.device.lsa"),
                    format!(
                        "ndctl needs a label area of at least 128K; got {}",
                        device.lsa
                    ),
                );
            }
            Ok(())
        }
        (None, Some(switch)) => {
            if level == PortLevel::BelowSwitch {
                return violation(
                    format!("{at}.switch"),
                    "switches below switches are not supported",
                );
            }
            if switch.downstream.is_empty() || switch.downstream.len() > MAX_PORT_TARGETS {
                return violation(
                    format!("{at}.switch.downstream"),
                    format!(
                        "a switch has 1 to {MAX_PORT_TARGETS} downstream ports; this one has {}",
                        switch.downstream.len()
                    ),
                );
            }
            for (index, downstream) in switch.downstream.iter().enumerate() {
                check_port(
                    downstream,
                    &format!("{at}.switch.downstream[{index}]"),
                    PortLevel::BelowSwitch,
                )?;
            }
            Ok(())
        }
    }
}

fn check_granularity(granularity: Size, at: &str) -> Result<(), Violation> {
    let bytes = granularity.bytes();
    if !pow2(bytes) || !(256..=16384).contains(&bytes) {
        return violation(
            at,
            format!("interleave granularity is a power of two from 256 to 16K bytes; got {bytes}"),
        );
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
        let mut ports: Vec<usize> = under.iter().map(|place| place.root_port).collect();
        ports.dedup();
        ports
    };
    let alternating = ports.len().min(per_bridge).max(1);
    let root_port = ports.get(slot % alternating)?;
    let behind: Vec<&&DevicePlace> = under
        .iter()
        .filter(|place| place.root_port == *root_port)
        .collect();
    behind.get(slot / alternating).map(|place| **place)
}

/// Host bridges x root ports for a width, smallest first.
pub fn shape_for(ways: u32) -> Result<(u32, u32), Error> {
    match ways {
        1 | 2 | 4 => Ok((1, ways)),
        8 | 16 => Ok((ways / 4, 4)),
        3 | 6 | 12 => Ok((3, ways / 3)),
        _ => Err(Error::ImpossibleWidth { ways }),
    }
}

#[cfg(test)]
mod tests;
