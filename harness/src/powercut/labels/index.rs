//! The two index blocks of a label area: their geometry (the kernel's
//! `sizeof_namespace_index`), their fields, their validation exactly as
//! `__nd_label_validate` does it (drivers/nvdimm/label.c:94-249), and the
//! choice of the current one (`best_seq`, `nd_inc_seq`).

use super::{fletcher64, read_u16, read_u32, read_u64};

/// "NAMESPACE_INDEX\0" (label.c:27).
pub const SIGNATURE: &[u8; 16] = b"NAMESPACE_INDEX\0";
/// `sizeof(struct nd_namespace_index)`: the fields before the free bitmap.
pub const HEADER_SIZE: usize = 72;
/// NSINDEX_ALIGN (label.h).
const ALIGN: usize = 256;
const CHECKSUM_AT: usize = 64;

/// `__sizeof_namespace_index`: the header and one free bit a slot, rounded
/// up to 256 bytes.
pub fn index_size_for(nslot: usize) -> usize {
    (HEADER_SIZE + nslot.div_ceil(8)).next_multiple_of(ALIGN)
}

/// `nvdimm_num_label_slots`: the slots left once room for two indexes
/// sized for a slot count from the whole area is taken.
pub fn label_slots(area_size: usize, label_size: usize) -> Option<usize> {
    let first_guess = area_size / label_size;
    let index_blocks = index_size_for(first_guess) / ALIGN;
    let rest = area_size.checked_sub(ALIGN * index_blocks * 2)?;
    Some(rest / label_size)
}

/// `sizeof_namespace_index`: one index block's size for `label_size`
/// labels, or None where the area cannot hold two indexes and two labels.
pub fn index_size(area_size: usize, label_size: usize) -> Option<usize> {
    let nslot = label_slots(area_size, label_size)?;
    let space = area_size.checked_sub(nslot * label_size)?;
    let size = index_size_for(nslot);
    (size * 2 <= space && nslot >= 2).then_some(size)
}

/// `nd_inc_seq`: 1 → 2 → 3 → 1 (0 is never valid).
pub fn next_seq(seq: u32) -> u32 {
    [0, 2, 3, 1][(seq & 3) as usize]
}

/// `best_seq`: of two sequence numbers, the newer.
pub fn best_seq(a: u32, b: u32) -> u32 {
    let (a, b) = (a & 3, b & 3);
    if a == 0 || a == b {
        b
    } else if b == 0 {
        a
    } else if next_seq(a) == b {
        b
    } else {
        a
    }
}

/// Why the kernel would not use an index block, in the order it checks.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IndexFault {
    #[error("no NAMESPACE_INDEX signature")]
    Signature,
    #[error("labelsize field {0} (v1.2 allows 0 and 1)")]
    LabelSizeField(u8),
    #[error("declares {declared}-byte labels, probed for {probed}")]
    LabelSize { declared: usize, probed: usize },
    #[error("checksum {stored:#018x}, computed {computed:#018x}")]
    Checksum { stored: u64, computed: u64 },
    #[error("sequence number {0:#x} (low two bits zero)")]
    Sequence(u32),
    #[error("myoff {found:#x}, expected {expected:#x}")]
    MyOffset { found: u64, expected: u64 },
    #[error("otheroff {found:#x}, expected {expected:#x}")]
    OtherOffset { found: u64, expected: u64 },
    #[error("labeloff {found:#x}, expected {expected:#x}")]
    LabelOffset { found: u64, expected: u64 },
    #[error("mysize {found:#x}, outside {min:#x}..={max:#x}")]
    MySize { found: u64, min: u64, max: u64 },
    #[error("{nslot} slots do not fit a {area_size}-byte area")]
    SlotCount { nslot: u32, area_size: usize },
}

impl IndexFault {
    fn is_label_size(&self) -> bool {
        matches!(self, IndexFault::LabelSize { .. })
    }
}

/// One index block as read, with the kernel's verdict on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexBlock {
    /// Its offset in the label area (0 or the index size).
    pub offset: usize,
    pub seq: u32,
    pub myoff: u64,
    pub mysize: u64,
    pub otheroff: u64,
    pub labeloff: u64,
    pub nslot: u32,
    pub major: u16,
    pub minor: u16,
    /// log2(label size) - 7 from v1.2 on.
    pub labelsize: u8,
    pub checksum: u64,
    /// The free bitmap: bit `s` (little-endian bit order) set = slot `s` free.
    pub free: Vec<u8>,
    /// Why the kernel would reject it; None for a valid block.
    pub fault: Option<IndexFault>,
    /// Every byte zero: a block never written.
    pub blank: bool,
}

impl IndexBlock {
    pub fn is_valid(&self) -> bool {
        self.fault.is_none()
    }

    /// Whether the bitmap marks `slot` free (`test_bit_le`).
    pub fn is_free(&self, slot: u32) -> bool {
        let byte = self.free.get(slot as usize / 8).copied().unwrap_or(0xff);
        byte & (1 << (slot % 8)) != 0
    }

    /// The slots below `nslot` the bitmap marks in use.
    pub fn in_use_slots(&self) -> impl Iterator<Item = u32> + '_ {
        (0..self.nslot).filter(|s| !self.is_free(*s))
    }

    /// Reads block `number` (0 or 1) of `area` and validates it as the
    /// kernel does for `label_size` labels and `index_size` blocks.
    fn read(area: &[u8], number: usize, label_size: usize, index_size: usize) -> IndexBlock {
        let offset = number * index_size;
        let block = &area[offset..offset + index_size];
        let mut index = IndexBlock {
            offset,
            seq: read_u32(block, 20),
            myoff: read_u64(block, 24),
            mysize: read_u64(block, 32),
            otheroff: read_u64(block, 40),
            labeloff: read_u64(block, 48),
            nslot: read_u32(block, 56),
            major: read_u16(block, 60),
            minor: read_u16(block, 62),
            labelsize: block[19],
            checksum: read_u64(block, CHECKSUM_AT),
            free: block[HEADER_SIZE..].to_vec(),
            fault: None,
            blank: block.iter().all(|b| *b == 0),
        };
        index.fault = index.validate(block, number, label_size, area.len()).err();
        index
    }

    fn validate(
        &self,
        block: &[u8],
        number: usize,
        label_size: usize,
        area_size: usize,
    ) -> Result<(), IndexFault> {
        if &block[..16] != SIGNATURE {
            return Err(IndexFault::Signature);
        }
        let declared = self.declared_label_size()?;
        if declared != label_size {
            let probed = label_size;
            return Err(IndexFault::LabelSize { declared, probed });
        }
        let computed = checksum_without_field(block, CHECKSUM_AT);
        if computed != self.checksum {
            let stored = self.checksum;
            return Err(IndexFault::Checksum { stored, computed });
        }
        if self.seq & 3 == 0 {
            return Err(IndexFault::Sequence(self.seq));
        }
        let size = block.len() as u64;
        let expect = |found: u64, expected: u64, fault: fn(u64, u64) -> IndexFault| {
            (found == expected)
                .then_some(())
                .ok_or(fault(found, expected))
        };
        let n = number as u64;
        expect(self.myoff, n * size, |found, expected| {
            IndexFault::MyOffset { found, expected }
        })?;
        expect(self.otheroff, (1 - n) * size, |found, expected| {
            IndexFault::OtherOffset { found, expected }
        })?;
        expect(self.labeloff, 2 * size, |found, expected| {
            IndexFault::LabelOffset { found, expected }
        })?;
        let min = HEADER_SIZE as u64;
        if self.mysize > size || self.mysize < min {
            let found = self.mysize;
            return Err(IndexFault::MySize {
                found,
                min,
                max: size,
            });
        }
        let needed = u64::from(self.nslot) * label_size as u64 + 2 * size;
        if needed > area_size as u64 {
            let nslot = self.nslot;
            return Err(IndexFault::SlotCount { nslot, area_size });
        }
        Ok(())
    }

    /// 128 bytes before v1.2; `1 << (7 + labelsize)` from v1.2 on.
    fn declared_label_size(&self) -> Result<usize, IndexFault> {
        let version = u32::from(self.major) * 100 + u32::from(self.minor);
        if version < 102 {
            return Ok(128);
        }
        if self.labelsize > 1 {
            return Err(IndexFault::LabelSizeField(self.labelsize));
        }
        Ok(1 << (7 + self.labelsize))
    }
}

/// `nd_fletcher64` of `block` read with the u64 at `field` as zero.
pub fn checksum_without_field(block: &[u8], field: usize) -> u64 {
    let mut copy = block.to_vec();
    copy[field..field + 8].fill(0);
    fletcher64(&copy)
}

/// Both index blocks as the kernel reads them for one label size.
#[derive(Debug, Clone)]
pub struct IndexPair {
    pub label_size: usize,
    pub index_size: usize,
    pub blocks: [IndexBlock; 2],
    /// The block `__nd_label_validate` returns: the only valid one, or of
    /// two valid ones the one whose sequence number `best_seq` picks.
    pub current: Option<usize>,
}

impl IndexPair {
    fn read(area: &[u8], label_size: usize, index_size: usize) -> IndexPair {
        let blocks = [0, 1].map(|n| IndexBlock::read(area, n, label_size, index_size));
        let current = match (blocks[0].is_valid(), blocks[1].is_valid()) {
            (false, false) => None,
            (true, false) => Some(0),
            (false, true) => Some(1),
            (true, true) => {
                let best = best_seq(blocks[0].seq, blocks[1].seq);
                Some(if best == blocks[1].seq & 3 { 1 } else { 0 })
            }
        };
        IndexPair {
            label_size,
            index_size,
            blocks,
            current,
        }
    }

    fn any_label_size_fault(&self) -> bool {
        self.blocks
            .iter()
            .any(|b| b.fault.as_ref().is_some_and(IndexFault::is_label_size))
    }
}

/// `nd_label_validate`: tries each label size in turn and keeps the first
/// for which an index is valid. When none is, the pair kept for the report
/// is the last one whose faults are not a label-size mismatch (the faults
/// that say what is wrong with the block), else the last one tried.
pub fn probe(area: &[u8], label_sizes: &[usize]) -> Option<IndexPair> {
    let pairs: Vec<IndexPair> = label_sizes
        .iter()
        .filter_map(|&ls| index_size(area.len(), ls).map(|is| IndexPair::read(area, ls, is)))
        .collect();
    if let Some(found) = pairs.iter().find(|p| p.current.is_some()) {
        return Some(found.clone());
    }
    let telling = pairs.iter().rev().find(|p| !p.any_label_size_fault());
    telling.or(pairs.last()).cloned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn geometry_matches_the_kernel_for_128k() {
        // 128 KiB: 256-byte indexes either way; 1020 v1.1 slots, 510 v1.2.
        assert_eq!(index_size(128 << 10, 128), Some(256));
        assert_eq!(label_slots(128 << 10, 128), Some(1020));
        assert_eq!(index_size(128 << 10, 256), Some(256));
        assert_eq!(label_slots(128 << 10, 256), Some(510));
        // A 1 MiB area of 128-byte labels needs 1280-byte indexes.
        assert_eq!(index_size(1 << 20, 128), Some(1280));
        // ND_LABEL_MIN_SIZE: two indexes and two labels, no less.
        assert_eq!(index_size(1024, 256), Some(256));
        assert_eq!(index_size(1023, 256), None);
        assert_eq!(index_size(100, 256), None);
    }

    #[test]
    fn sequence_numbers_cycle_and_the_newer_wins() {
        assert_eq!([1, 2, 3].map(next_seq), [2, 3, 1]);
        assert_eq!(best_seq(1, 2), 2);
        assert_eq!(best_seq(2, 3), 3);
        assert_eq!(best_seq(3, 1), 1);
        assert_eq!(best_seq(2, 1), 2);
        assert_eq!(best_seq(3, 3), 3);
        assert_eq!(best_seq(0, 2), 2);
        assert_eq!(best_seq(2, 0), 2);
    }
}
