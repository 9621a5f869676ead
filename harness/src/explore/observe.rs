//! What the guest shows of the explored region after each step, read in one
//! round trip: the region's sysfs attributes, its namespaces as sysfs has
//! them, as `ndctl list -N -i` has them, and whether each pmem block device
//! reads at its first and last block. The script is here, and so is the
//! parser of what it prints (pure, tested on recorded output).

use serde_json::Value;

use crate::suite::Mode;

/// The region's own attributes (absent while the region is disabled).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RegionState {
    pub size: u64,
    pub align: u64,
    pub available: u64,
    pub max_extent: u64,
    pub enabled: bool,
}

/// A namespace as sysfs has it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SysfsNamespace {
    pub dev: String,
    /// Raw size (0: the region's seed).
    pub size: u64,
    pub mode: Option<Mode>,
    pub enabled: bool,
    /// The namespace's own UUID (its label's), whatever its claim.
    pub uuid: Option<String>,
}

/// A namespace as `ndctl list -N -i` has it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListedNamespace {
    pub dev: String,
    pub mode: Option<Mode>,
    /// Usable size, as ndctl shows it.
    pub size: u64,
    pub uuid: Option<String>,
    pub enabled: bool,
    pub blockdev: Option<String>,
    /// The device-dax device of a devdax namespace.
    pub chardev: Option<String>,
}

/// Everything read after a step.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Observation {
    pub region: Option<RegionState>,
    pub sysfs: Vec<SysfsNamespace>,
    pub listed: Vec<ListedNamespace>,
    /// Block devices and whether both ends read.
    pub reads: Vec<(String, bool)>,
}

impl Observation {
    /// The namespaces that hold capacity (seeds of size 0 left out).
    pub fn sized(&self) -> Vec<&SysfsNamespace> {
        self.sysfs.iter().filter(|n| n.size > 0).collect()
    }

    /// Whether the region was there and enabled.
    pub fn region_enabled(&self) -> bool {
        self.region.is_some_and(|r| r.enabled)
    }

    pub fn listed(&self, dev: &str) -> Option<&ListedNamespace> {
        self.listed.iter().find(|n| n.dev == dev)
    }
}

/// The script that prints an [`Observation`] of `region`. It reads sysfs
/// with the shell's own `read` (a `cat` per attribute was a fork and an
/// exec each: 534 ms for a region of five namespaces under TCG, most of a
/// step); only the block reads and `ndctl list` start processes.
pub fn script(region: &str) -> String {
    format!(
        r#"r=/sys/bus/nd/devices/{region}
v() {{ x=-; read -r x 2>/dev/null <"$1"; }}
on() {{ if [ -e "$1/driver" ]; then e=1; else e=0; fi; }}
v $r/size; s=$x; v $r/align; a=$x; v $r/available_size; f=$x; v $r/max_available_extent; m=$x; on $r
echo "region $s $a $f $m $e"
for n in $r/namespace*; do
  [ -d "$n" ] || continue
  # A claimed namespace (sector, fsdax, devdax) is enabled through its claim.
  h=; read -r h 2>/dev/null <$n/holder; on $n
  if [ -n "$h" ] && [ -e /sys/bus/nd/devices/$h ]; then on /sys/bus/nd/devices/$h; fi
  v $n/size; s=$x; v $n/mode; m=$x; x=; read -r x 2>/dev/null <$n/uuid
  echo "namespace ${{n##*/}} $s $m $e $x"
done
for b in /sys/block/pmem*; do
  [ -e "$b" ] || continue
  d=${{b##*/}}; read -r z <$b/size; blocks=$(( z / 8 ))
  if dd if=/dev/$d of=/dev/null bs=4096 count=1 2>/dev/null &&
     dd if=/dev/$d of=/dev/null bs=4096 count=1 skip=$((blocks - 1)) 2>/dev/null; then
    echo "read $d 1"; else echo "read $d 0"; fi
done
echo "ndctl"
ndctl list -N -i -r {region} 2>/dev/null
"#
    )
}

/// A sysfs number: decimal, or hexadecimal with `0x` (the region's align).
fn number(word: Option<&str>) -> Option<u64> {
    let word = word?;
    match word.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => word.parse().ok(),
    }
}

/// The kernel's name of a namespace mode (sysfs `mode`) or ndctl's.
pub fn mode_named(name: &str) -> Option<Mode> {
    match name {
        "fsdax" | "memory" => Some(Mode::Fsdax),
        "devdax" | "dax" => Some(Mode::Devdax),
        "sector" | "safe" => Some(Mode::Sector),
        "raw" => Some(Mode::Raw),
        _ => None,
    }
}

/// Parses what [`script`] printed.
pub fn parse(text: &str) -> Observation {
    let (head, json) = text.split_once("\nndctl\n").unwrap_or((text, ""));
    let mut seen = Observation::default();
    for line in head.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["region", size, align, available, extent, enabled] => {
                seen.region = (|| {
                    Some(RegionState {
                        size: number(Some(size))?,
                        align: number(Some(align))?,
                        available: number(Some(available))?,
                        max_extent: number(Some(extent))?,
                        enabled: *enabled == "1",
                    })
                })();
            }
            ["namespace", dev, size, mode, enabled, rest @ ..] => seen.sysfs.push(SysfsNamespace {
                dev: (*dev).to_owned(),
                size: number(Some(size)).unwrap_or(0),
                mode: mode_named(mode),
                enabled: *enabled == "1",
                uuid: rest.first().filter(|u| **u != "-").map(|u| (*u).to_owned()),
            }),
            ["read", dev, ok] => seen.reads.push(((*dev).to_owned(), *ok == "1")),
            _ => {}
        }
    }
    seen.listed = listed(json);
    seen
}

/// The namespaces of `ndctl list -N` (an object, a list, or nothing).
fn listed(json: &str) -> Vec<ListedNamespace> {
    let value: Value = match serde_json::from_str(json.trim()) {
        Ok(v) => v,
        Err(_) => return Vec::new(),
    };
    let items = match value {
        Value::Array(items) => items,
        object @ Value::Object(_) => vec![object],
        _ => Vec::new(),
    };
    items.iter().filter_map(listed_one).collect()
}

fn listed_one(v: &Value) -> Option<ListedNamespace> {
    let text = |key: &str| v.get(key).and_then(Value::as_str).map(str::to_owned);
    // `ndctl list -N` names a devdax namespace's device at its top level;
    // with -X it is under its dax region.
    let chardev = text("chardev").or_else(|| {
        v.get("daxregion")
            .and_then(|r| r.get("devices"))
            .and_then(Value::as_array)
            .and_then(|d| d.first())
            .and_then(|d| d.get("chardev"))
            .and_then(Value::as_str)
            .map(str::to_owned)
    });
    Some(ListedNamespace {
        dev: text("dev")?,
        mode: text("mode").as_deref().and_then(mode_named),
        size: v.get("size").and_then(Value::as_u64).unwrap_or(0),
        uuid: text("uuid"),
        enabled: text("state").as_deref() != Some("disabled"),
        blockdev: text("blockdev"),
        chardev,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// As the script printed it on nfit-1 after a sector create refused.
    const SECTOR_LEFT_BEHIND: &str = "region 1073610752 0x1000000 1056833536 1056833536 1
namespace namespace0.0 16777216 safe 0
namespace namespace0.1 0 raw 0
read pmem0s 1
ndctl
[
  {
    \"dev\":\"namespace0.0\",
    \"mode\":\"sector\",
    \"size\":16777216,
    \"uuid\":\"1e0cd7b5-1d8b-4d0b-9b33-3b2a6c0d8c29\",
    \"state\":\"disabled\"
  }
]
";

    #[test]
    fn the_script_output_reads_back() {
        let seen = parse(SECTOR_LEFT_BEHIND);
        let region = seen.region.unwrap();
        assert_eq!((region.size, region.align), (1073610752, 16 << 20));
        assert_eq!(region.available, 1056833536);
        assert_eq!(seen.sysfs.len(), 2);
        assert_eq!(seen.sized().len(), 1);
        assert_eq!(seen.sysfs[0].mode, Some(Mode::Sector));
        assert!(!seen.sysfs[0].enabled);
        let listed = seen.listed("namespace0.0").unwrap();
        assert!(!listed.enabled && listed.size == 16 << 20);
        assert_eq!(seen.reads, vec![("pmem0s".to_owned(), true)]);
    }

    #[test]
    fn one_namespace_is_an_object_and_none_is_nothing() {
        let one =
            "region - - - - 0\nndctl\n{\"dev\":\"namespace0.0\",\"mode\":\"devdax\",\"size\":1,\
                   \"daxregion\":{\"devices\":[{\"chardev\":\"dax0.0\"}]}}\n";
        let seen = parse(one);
        assert_eq!(seen.region, None, "a disabled region shows no attributes");
        assert_eq!(seen.listed[0].chardev.as_deref(), Some("dax0.0"));
        assert!(parse("region 1 1 1 1 1\nndctl\n").listed.is_empty());
    }

    #[test]
    fn a_devdax_namespace_names_its_device_as_ndctl_list_dash_n_prints_it() {
        let one = "region - - - - 0\nndctl\n{\"dev\":\"namespace0.0\",\"mode\":\"devdax\",\
                   \"map\":\"dev\",\"size\":65011712,\"chardev\":\"dax0.0\",\"align\":2097152}\n";
        assert_eq!(parse(one).listed[0].chardev.as_deref(), Some("dax0.0"));
    }
}
