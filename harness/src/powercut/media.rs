//! What a set of backing files holds as labels, region by region: an NFIT
//! NVDIMM is a region of its own (its label area the tail of its file), a
//! CXL region is its devices' LSA files in interleave position order. Read
//! from a crash image's folder (files by name) or from the running guest's
//! own files.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use super::labels::{self, LabelArea, LabelLayout, LabelViolation, NamespaceKey, Uuid};
use crate::topology::Topology;
use crate::vm::GuestFiles;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Labels(#[from] labels::Error),
    #[error("CXL region {region}: {source}")]
    Order {
        region: usize,
        source: crate::topology::cxl::Error,
    },
    #[error("the topology has no label areas (NFIT NVDIMMs or CXL regions) to cut power on")]
    NoLabelAreas,
}

/// Where one DIMM keeps its label area.
#[derive(Clone, Debug)]
enum AreaSource {
    /// The last `label_size` bytes of an NVDIMM's backing file.
    NfitTail { file: String, label_size: u64 },
    /// A CXL device's whole LSA file.
    CxlLsa { file: String },
}

/// The label areas of one region, position 0 first.
#[derive(Clone, Debug)]
pub struct RegionAreas {
    /// How messages name it (`nvdimm 0`, `CXL region 0`).
    pub name: String,
    areas: Vec<AreaSource>,
}

/// The regions of `topology` and where their label areas are, by file
/// name (the same in a run folder and in a crash image).
pub fn regions(topology: &Topology, files: &GuestFiles) -> Result<Vec<RegionAreas>, Error> {
    let name_of = |p: &PathBuf| {
        p.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    };
    let mut out = Vec::new();
    for (i, (dimm, file)) in topology
        .nvdimms
        .iter()
        .zip(&files.nvdimm_backing)
        .enumerate()
    {
        out.push(RegionAreas {
            name: format!("nvdimm {i}"),
            areas: vec![AreaSource::NfitTail {
                file: name_of(file),
                label_size: dimm.label_size.bytes(),
            }],
        });
    }
    if let Some(cxl) = &topology.cxl {
        for (r, region) in cxl.regions.iter().enumerate() {
            let order = cxl
                .position_order(region)
                .map_err(|source| Error::Order { region: r, source })?;
            let areas = order
                .iter()
                .filter_map(|place| files.cxl_backing.get(place.index))
                .map(|(_, lsa)| AreaSource::CxlLsa { file: name_of(lsa) })
                .collect();
            out.push(RegionAreas {
                name: format!("CXL region {r}"),
                areas,
            });
        }
    }
    if out.is_empty() {
        return Err(Error::NoLabelAreas);
    }
    Ok(out)
}

/// What the labels of every region say, as the kernel would read them.
#[derive(Clone, Debug, Default)]
pub struct Media {
    /// Every region's namespaces (uuids are unique across regions).
    pub namespaces: BTreeSet<NamespaceKey>,
    /// Broken invariants, each with its region's name.
    pub violations: Vec<(String, LabelViolation)>,
    /// Updates a cut interrupted (incomplete sets marked UPDATING), each
    /// with its region's name: for the kernel to roll back.
    pub interrupted: Vec<(String, Uuid)>,
    /// Some DIMM has a valid index: the regions are not label-less.
    pub labelled: bool,
}

impl Media {
    /// The first violation, as a message.
    pub fn first_violation(&self) -> Option<String> {
        self.violations
            .first()
            .map(|(region, v)| format!("{region}: {v}"))
    }
}

/// Reads the label areas of `regions` from the files in `dir`.
pub fn read(regions: &[RegionAreas], dir: &Path) -> Result<Media, Error> {
    let mut media = Media::default();
    for region in regions {
        let mut areas = Vec::new();
        for source in &region.areas {
            let bytes = match source {
                AreaSource::NfitTail { file, label_size } => {
                    labels::read_nfit_label_area(&dir.join(file), *label_size)?
                }
                AreaSource::CxlLsa { file } => labels::read_cxl_lsa(&dir.join(file))?,
            };
            // Linux writes EFI v1.2 labels on both buses (see LabelLayout).
            areas.push(LabelArea::parse(&bytes, LabelLayout::Efi)?);
        }
        media.labelled |= areas.iter().any(|a| a.current.is_some());
        media.namespaces.extend(labels::namespaces(&areas));
        media.interrupted.extend(
            labels::interrupted(&areas)
                .into_iter()
                .map(|u| (region.name.clone(), u)),
        );
        media.violations.extend(
            labels::check(&areas)
                .into_iter()
                .map(|v| (region.name.clone(), v)),
        );
    }
    Ok(media)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_nvdimm_is_a_region_and_cxl_regions_follow_positions() {
        let dir = Path::new("/run");
        let t = crate::topology::load("nfit-2").unwrap().topology;
        let files = GuestFiles::under(dir, dir, &t);
        let r = regions(&t, &files).unwrap();
        assert_eq!(r.len(), 2);
        assert_eq!(r[1].name, "nvdimm 1");
        let t = crate::topology::load("cxl-x6").unwrap().topology;
        let files = GuestFiles::under(dir, dir, &t);
        let r = regions(&t, &files).unwrap();
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].areas.len(), 6);
        let t = crate::topology::load("virtio-pmem-1").unwrap().topology;
        let files = GuestFiles::under(dir, dir, &t);
        assert!(matches!(regions(&t, &files), Err(Error::NoLabelAreas)));
    }

    #[test]
    fn an_unlabelled_image_holds_no_namespace_and_breaks_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let t = crate::topology::load("nfit-1").unwrap().topology;
        let files = GuestFiles::under(dir.path(), dir.path(), &t);
        let f = std::fs::File::create(&files.nvdimm_backing[0]).unwrap();
        f.set_len(t.nvdimms[0].size.bytes()).unwrap();
        let media = read(&regions(&t, &files).unwrap(), dir.path()).unwrap();
        assert!(media.namespaces.is_empty());
        assert!(media.violations.is_empty(), "{:?}", media.violations);
    }
}
