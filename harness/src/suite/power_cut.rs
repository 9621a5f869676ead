//! The `power_cut:` step of the case format: a guest command run with
//! power cuts taken during it, where (before every label write or every
//! namespace write, or at random moments) and what else each restart must
//! show (sectors of a known pattern, all old or all new, and unchanged by
//! later writes to others; a filesystem).
//!
//! ```yaml
//! - power_cut:
//!     run: ndctl create-namespace -r region0 -m fsdax -s 64M
//!     points: label-writes
//! - power_cut:
//!     run: /case/write-sectors.sh /dev/pmem0s 0x22
//!     points: { random: 8, within: 2s }
//!     sectors: { device: /dev/pmem0s, count: 256, values: [0x11, 0x22] }
//! - power_cut:
//!     run: for i in 1 2 3; do dd if=/dev/urandom of=/mnt/pmem/new.$i bs=1M count=1 2>/dev/null; sync; done
//!     points: { random: 8, within: 2s }
//!     filesystem: { device: /dev/pmem0, mount: /mnt/pmem, kept: [kept] }
//! ```

use std::fmt;
use std::time::Duration;

use serde::Deserialize;

use super::duration as humantime_serde_compat;

/// What a `power_cut:` step runs and how it cuts.
#[derive(Clone, Debug, PartialEq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct PowerCut {
    /// The shell line the cuts fall in.
    pub run: String,
    pub points: CutPoints,
    /// Sectors each restart reads and checks, for a step that writes them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sectors: Option<SectorCheck>,
    /// A filesystem each restart mounts (its journal replayed), whose
    /// files written and synced before the step must read back as they
    /// were, and which e2fsck then finds clean.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filesystem: Option<FilesystemCheck>,
}

/// Where the cuts fall (the end of the step is always one more).
#[derive(Clone, Debug, PartialEq)]
pub enum CutPoints {
    /// Just before each label write the step makes (the bus's control
    /// entry, stopped through QEMU's gdbstub).
    LabelWrites,
    /// Just before each write the step makes through a namespace's byte
    /// interface (`nsio_rw_bytes`: BTT's data blocks, flog, map and info
    /// blocks; a pfn info block).
    NamespaceWrites,
    /// `count` moments drawn uniformly within `within` of the step's start
    /// (a moment after the step ended takes no image).
    Random { count: u32, within: Duration },
}

/// Written as a case file has it: `label-writes`, or `{ random: N,
/// within: 2s }`.
impl serde::Serialize for CutPoints {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        match self {
            CutPoints::LabelWrites => s.serialize_str("label-writes"),
            CutPoints::NamespaceWrites => s.serialize_str("namespace-writes"),
            CutPoints::Random { count, within } => {
                let mut map = s.serialize_map(Some(2))?;
                map.serialize_entry("random", count)?;
                let within = humantime::format_duration(*within).to_string();
                map.serialize_entry("within", &within)?;
                map.end()
            }
        }
    }
}

impl<'de> Deserialize<'de> for CutPoints {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Name(String),
            Random(RawRandom),
        }
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct RawRandom {
            random: u32,
            #[serde(default, with = "humantime_serde_compat::option")]
            within: Option<Duration>,
        }
        match Raw::deserialize(d)? {
            Raw::Name(name) if name == "label-writes" => Ok(CutPoints::LabelWrites),
            Raw::Name(name) if name == "namespace-writes" => Ok(CutPoints::NamespaceWrites),
            Raw::Name(name) => Err(serde::de::Error::custom(format!(
                "`{name}` is not a set of cut points: use `label-writes`, `namespace-writes` or `{{ random: N, within: 2s }}`"
            ))),
            Raw::Random(RawRandom { random: 0, .. }) => Err(serde::de::Error::custom(
                "`random: 0` takes no cut: give at least 1",
            )),
            Raw::Random(r) => Ok(CutPoints::Random {
                count: r.random,
                within: r.within.unwrap_or(Duration::from_secs(2)),
            }),
        }
    }
}

/// Sectors written with a known pattern: after any cut, each of the first
/// `count` sectors of `device` must hold one of `values` in every byte
/// (BTT's promise: a sector write is all old or all new). With
/// `then_write: N`, each CPU of the restarted guest then writes the N
/// sectors after them, and the `count` sectors must still hold what they
/// held: a write never lands on another sector's block (a BTT that came
/// back with a block both mapped and free gives it to the next write).
#[derive(Clone, Debug, PartialEq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct SectorCheck {
    pub device: String,
    pub count: u64,
    #[serde(default = "default_sector_size")]
    pub size: u64,
    pub values: Vec<u8>,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub then_write: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// ext4 on a pmem block device, mounted at `mount` while the step runs:
/// the files `kept` (relative to `mount`), written and synced before the
/// step, must read back unchanged after any cut, and the filesystem must
/// be clean (`e2fsck -fn`) once its journal has been replayed.
#[derive(Clone, Debug, PartialEq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct FilesystemCheck {
    pub device: String,
    pub mount: String,
    pub kept: Vec<String>,
}

fn default_sector_size() -> u64 {
    4096
}

impl PowerCut {
    /// How the transcript names the step.
    pub fn display(&self) -> String {
        let points = match &self.points {
            CutPoints::LabelWrites => "at each label write".to_owned(),
            CutPoints::NamespaceWrites => "at each namespace write".to_owned(),
            CutPoints::Random { count, within } => {
                format!("at {count} random moments within {within:?}")
            }
        };
        format!("power cut {points}: {}", self.run)
    }
}

/// How many crash points of a step a run judges.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PointSelection {
    /// Every write (label or namespace) and the end of the step.
    Every,
    /// The points that must be judged and `extra` more from `seed` (the
    /// trial's own when none); at most `limit` in all (the must-haves
    /// first, boundaries before ends).
    Sample {
        extra: usize,
        limit: Option<usize>,
        seed: Option<u64>,
    },
}

impl Default for PointSelection {
    /// What a run judges unless told otherwise: the sample.
    fn default() -> Self {
        PointSelection::Sample {
            extra: 3,
            limit: None,
            seed: None,
        }
    }
}

impl fmt::Display for PointSelection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PointSelection::Every => f.write_str("every write"),
            PointSelection::Sample { extra, limit, .. } => {
                write!(
                    f,
                    "a sample (ends, tears across DIMMs or structures, {extra} more"
                )?;
                if let Some(l) = limit {
                    write!(f, ", at most {l}")?;
                }
                f.write_str(")")
            }
        }
    }
}

/// `every-write`, `sample`, or `{ sample: EXTRA, limit: N }` (a profile's
/// `power_cuts:`).
impl<'de> Deserialize<'de> for PointSelection {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Name(String),
            Sample(RawSample),
        }
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct RawSample {
            sample: usize,
            #[serde(default)]
            limit: Option<usize>,
        }
        match Raw::deserialize(d)? {
            Raw::Name(name) => name.parse().map_err(serde::de::Error::custom),
            Raw::Sample(RawSample { limit: Some(0), .. }) => Err(serde::de::Error::custom(
                "`limit: 0` judges no crash point: give at least 1",
            )),
            Raw::Sample(r) => Ok(PointSelection::Sample {
                extra: r.sample,
                limit: r.limit,
                seed: None,
            }),
        }
    }
}

/// A name that is not a choice of crash points.
#[derive(Debug, thiserror::Error)]
#[error("`{0}` is not a choice of crash points: use `every-write` or `sample` (or, in a profile, `{{ sample: EXTRA, limit: N }}`)")]
pub struct UnknownPointSelection(String);

impl std::str::FromStr for PointSelection {
    type Err = UnknownPointSelection;

    /// `every-write` or `sample` (`--power-cuts`).
    fn from_str(s: &str) -> Result<Self, UnknownPointSelection> {
        match s {
            "every-write" | "all" => Ok(PointSelection::Every),
            "sample" => Ok(PointSelection::default()),
            other => Err(UnknownPointSelection(other.to_owned())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(yaml: &str) -> Result<PowerCut, serde_yaml_ng::Error> {
        serde_yaml_ng::from_str(yaml)
    }

    #[test]
    fn points_are_label_or_namespace_writes_or_random_moments() {
        let p = parse("run: ndctl create-namespace\npoints: label-writes\n").unwrap();
        assert_eq!(p.points, CutPoints::LabelWrites);
        assert_eq!(p.sectors, None);
        let p = parse("run: x\npoints: { random: 8, within: 500ms }\nsectors: { device: /dev/pmem0s, count: 4, values: [0x11, 0x22] }\n").unwrap();
        assert_eq!(
            p.points,
            CutPoints::Random {
                count: 8,
                within: Duration::from_millis(500)
            }
        );
        let s = p.sectors.unwrap();
        assert_eq!(
            (s.size, s.values, s.then_write),
            (4096, vec![0x11, 0x22], 0)
        );
        let p = parse("run: x\npoints: namespace-writes\nsectors: { device: /dev/pmem0s, count: 4, values: [0x11, 0x22], then_write: 8 }\n").unwrap();
        assert_eq!(p.points, CutPoints::NamespaceWrites);
        assert_eq!(p.sectors.unwrap().then_write, 8);
        let p = parse("run: x\npoints: { random: 3 }\n").unwrap();
        assert_eq!(
            p.points,
            CutPoints::Random {
                count: 3,
                within: Duration::from_secs(2)
            }
        );
    }

    #[test]
    fn bad_points_say_what_is_accepted() {
        let e = parse("run: x\npoints: every-write\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("label-writes") && e.contains("namespace-writes"),
            "{e}"
        );
        let e = parse("run: x\npoints: { random: 0 }\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("at least 1"), "{e}");
        assert!(parse("run: x\n").is_err(), "points are required");
    }

    #[test]
    fn a_filesystem_check_names_its_device_mount_and_kept_files() {
        let p = parse("run: x\npoints: { random: 2 }\nfilesystem: { device: /dev/pmem0, mount: /mnt/pmem, kept: [a, b/c] }\n").unwrap();
        let f = p.filesystem.unwrap();
        assert_eq!(
            (f.device.as_str(), f.mount.as_str()),
            ("/dev/pmem0", "/mnt/pmem")
        );
        assert_eq!(f.kept, vec!["a", "b/c"]);
        assert!(
            parse("run: x\npoints: { random: 2 }\nfilesystem: { device: /dev/pmem0 }\n").is_err()
        );
    }
}
