//! Where QEMU keeps a label area in a backing file: an NFIT NVDIMM's is
//! the last `label-size` bytes of its memory backend (hw/mem/nvdimm.c
//! `nvdimm_prepare_memory_region`: `label_data = ram_ptr + size -
//! label_size`), a CXL type-3 device's is its whole LSA file (hw/mem/
//! cxl_type3.c `set_lsa`: the LSA offset is the file offset).

use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

use super::{Error, Result};

/// The label area of an NVDIMM backing file: its last `label_size` bytes.
pub fn read_nfit_label_area(backing: &Path, label_size: u64) -> Result<Vec<u8>> {
    let read_err = |source| Error::Read {
        path: backing.to_owned(),
        source,
    };
    let mut file = std::fs::File::open(backing).map_err(read_err)?;
    let len = file.metadata().map_err(read_err)?.len();
    if len < label_size {
        return Err(Error::BackingTooSmall {
            path: backing.to_owned(),
            len,
            label_size,
        });
    }
    file.seek(SeekFrom::Start(len - label_size))
        .map_err(read_err)?;
    let mut area = vec![0u8; label_size as usize];
    file.read_exact(&mut area).map_err(read_err)?;
    Ok(area)
}

/// The label area of a CXL LSA backing file: all of it.
pub fn read_cxl_lsa(lsa: &Path) -> Result<Vec<u8>> {
    std::fs::read(lsa).map_err(|source| Error::Read {
        path: lsa.to_owned(),
        source,
    })
}
