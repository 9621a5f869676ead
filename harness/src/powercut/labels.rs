//! A namespace label area read as the kernel reads it at boot
//! (drivers/nvdimm/label.c, label.h in Linux 6.12): the two index blocks
//! and which is current ([`index`]), the labels of the current index's
//! in-use slots ([`label`]), the namespaces they describe across the DIMMs
//! of a region and the invariants a power cut must keep ([`check`]), and
//! where a backing file keeps its label area ([`backing`]).
//!
//! Layout of an area (128 KiB, 256-byte labels): index 0 at 0, index 1 at
//! the index size (256), slot `s` at twice the index size + 256·s.
//! Nothing is updated in place: a label goes to a slot the current index
//! marks free, then the other index is written with a newer sequence
//! number and that slot marked in use.

pub mod backing;
pub mod check;
pub mod index;
pub mod label;

use std::path::PathBuf;

pub use backing::{read_cxl_lsa, read_nfit_label_area};
pub use check::{check, interrupted, namespaces, LabelViolation, NamespaceKey};
pub use index::{IndexBlock, IndexFault};
pub use label::{ClaimClass, LabelFault, LabelFormat, NamespaceLabel, Uuid};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("a {size}-byte label area cannot hold two index blocks and two labels")]
    AreaTooSmall { size: usize },
    #[error("failed to read the label area of {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is {len} bytes, less than its {label_size}-byte label area")]
    BackingTooSmall {
        path: PathBuf,
        len: u64,
        label_size: u64,
    },
}

pub type Result<T> = std::result::Result<T, Error>;

/// The label layout the kernel writes, which is not the bus's: Linux 6.12
/// never sets `nvdimm_drvdata.cxl` (the field is declared and read, never
/// assigned), so it writes EFI v1.2 labels into CXL LSAs too. `Cxl` reads
/// the CXL 2.0 layout, for kernels that use it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LabelLayout {
    /// `struct nvdimm_efi_label`: 128-byte (v1.1) or 256-byte (v1.2)
    /// labels, the size declared by the index and probed as the kernel
    /// does (128, then 256).
    Efi,
    /// `struct nvdimm_cxl_label`: 256-byte labels, always checksummed.
    Cxl,
}

impl LabelLayout {
    /// The label sizes `nd_label_validate` probes, in its order. A CXL
    /// label does not fit 128 bytes, so only 256 is tried for it.
    fn label_sizes(self) -> &'static [usize] {
        match self {
            LabelLayout::Efi => &[128, 256],
            LabelLayout::Cxl => &[256],
        }
    }
}

/// A label area as the kernel would read it at the next boot.
#[derive(Debug, Clone)]
pub struct LabelArea {
    pub layout: LabelLayout,
    /// The area's size in bytes (`config_size`).
    pub size: usize,
    /// The label size the indexes were validated for (128 or 256).
    pub label_size: usize,
    /// One index block's size.
    pub index_size: usize,
    /// Index 0 and index 1, with the kernel's verdict on each.
    pub indexes: [IndexBlock; 2],
    /// The index the kernel uses, if any is valid.
    pub current: Option<usize>,
    /// The labels of the current index's in-use slots, valid or not, by
    /// slot; empty without a current index.
    pub labels: Vec<NamespaceLabel>,
    /// Every byte zero: a DIMM never labelled.
    pub blank: bool,
}

impl LabelArea {
    /// Reads `bytes`, a whole label area, in `layout`.
    pub fn parse(bytes: &[u8], layout: LabelLayout) -> Result<LabelArea> {
        let too_small = || Error::AreaTooSmall { size: bytes.len() };
        // nd_label_data_init gives up when not even 128-byte labels fit.
        index::index_size(bytes.len(), 128).ok_or_else(too_small)?;
        let pair = index::probe(bytes, layout.label_sizes()).ok_or_else(too_small)?;
        let labels = match pair.current {
            Some(current) => {
                let index = &pair.blocks[current];
                let base = 2 * pair.index_size;
                index
                    .in_use_slots()
                    .map(|slot| {
                        let at = base + slot as usize * pair.label_size;
                        let bytes = &bytes[at..at + pair.label_size];
                        NamespaceLabel::read(bytes, slot, layout)
                    })
                    .collect()
            }
            None => Vec::new(),
        };
        Ok(LabelArea {
            layout,
            size: bytes.len(),
            label_size: pair.label_size,
            index_size: pair.index_size,
            indexes: pair.blocks,
            current: pair.current,
            labels,
            blank: bytes.iter().all(|b| *b == 0),
        })
    }

    /// The index the kernel uses.
    pub fn current_index(&self) -> Option<&IndexBlock> {
        self.current.map(|c| &self.indexes[c])
    }

    /// The labels the kernel takes in (`nd_label_active`): valid labels in
    /// in-use slots of the current index.
    pub fn active_labels(&self) -> impl Iterator<Item = &NamespaceLabel> {
        self.labels.iter().filter(|l| l.is_valid())
    }
}

/// `nd_fletcher64` (drivers/nvdimm/core.c:179-192): over little-endian
/// u32 words, a wrapping 32-bit sum and the sum of its running values;
/// the result is the second in the high half, the first in the low half.
pub fn fletcher64(bytes: &[u8]) -> u64 {
    let mut lo: u32 = 0;
    let mut hi: u64 = 0;
    for word in bytes.chunks_exact(4) {
        lo = lo.wrapping_add(u32::from_le_bytes([word[0], word[1], word[2], word[3]]));
        hi = hi.wrapping_add(u64::from(lo));
    }
    (hi << 32) | u64::from(lo)
}

fn read_u16(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

fn read_u32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn read_u64(b: &[u8], at: usize) -> u64 {
    let mut le = [0u8; 8];
    le.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(le)
}

#[cfg(test)]
mod tests;
