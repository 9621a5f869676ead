//! One namespace label in a slot, in either layout of
//! drivers/nvdimm/label.h: `struct nvdimm_efi_label` (UEFI, 128 bytes in
//! v1.1, 256 in v1.2) and `struct nvdimm_cxl_label` (CXL 2.0 Table 212,
//! 256 bytes); its claim class, and `slot_valid` (label.c:375-387): the
//! slot field names the slot, and the checksum holds where there is one.

use std::fmt;

use super::index::checksum_without_field;
use super::{read_u16, read_u32, read_u64, LabelLayout};

/// NSLABEL_FLAG_UPDATING: set by the first pass of an update, cleared by
/// the second (label.c:1096, :1104). The kernel never reads it back.
pub const FLAG_UPDATING: u32 = 0x8;
/// NSLABEL_NAME_LEN.
pub const NAME_LEN: usize = 64;
/// Where the checksum sits in a 256-byte label of either layout.
pub const CHECKSUM_AT: usize = 248;
/// Where the slot field sits in either layout.
pub const SLOT_AT: usize = 120;

/// A UUID as stored, bytes in order: printed as sysfs and `ndctl list`
/// print a namespace's uuid (`%pUb`).
#[derive(Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Uuid(pub [u8; 16]);

impl Uuid {
    /// Parses the text form (`%pUb` order).
    pub fn parse(text: &str) -> Option<Uuid> {
        let hex: String = text.chars().filter(|c| *c != '-').collect();
        if hex.len() != 32 {
            return None;
        }
        let mut bytes = [0u8; 16];
        for (i, b) in bytes.iter_mut().enumerate() {
            *b = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
        }
        Some(Uuid(bytes))
    }

    /// The bytes a `guid_t` holds for this text: the first three fields
    /// little-endian (what `guid_parse` makes of the same string).
    pub fn as_guid_bytes(&self) -> [u8; 16] {
        let mut b = self.0;
        b[..4].reverse();
        b[4..6].reverse();
        b[6..8].reverse();
        b
    }

    pub fn is_nil(&self) -> bool {
        self.0 == [0; 16]
    }
}

impl fmt::Display for Uuid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, b) in self.0.iter().enumerate() {
            if matches!(i, 4 | 6 | 8 | 10) {
                f.write_str("-")?;
            }
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Uuid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self}")
    }
}

/// The personality a label claims for its namespace (`enum
/// nvdimm_claim_class`), from the EFI abstraction GUID (v1.2) or the CXL
/// abstraction UUID; v1.1 labels have none.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ClaimClass {
    /// Raw: no claim.
    None,
    /// Sector mode.
    Btt,
    Btt2,
    /// fsdax (a pfn info block).
    Pfn,
    /// devdax.
    Dax,
    /// An identifier the kernel does not know.
    Unknown,
}

const CLAIMS: [(&str, ClaimClass); 4] = [
    ("8aed63a2-29a2-4c66-8b12-f05d15d3922a", ClaimClass::Btt),
    ("18633bfc-1735-4217-8ac9-17239282d3f8", ClaimClass::Btt2),
    ("266400ba-fb9f-4677-bcb0-968f11d0d225", ClaimClass::Pfn),
    ("97a86d9c-3cdd-4eda-986f-5068b4f80088", ClaimClass::Dax),
];

impl ClaimClass {
    /// `guid_to_nvdimm_cclass` / `uuid_to_nvdimm_cclass`: `stored` is a
    /// `guid_t` in EFI labels and a `uuid_t` in CXL ones.
    fn from_stored(stored: [u8; 16], as_guid: bool) -> ClaimClass {
        if stored == [0; 16] {
            return ClaimClass::None;
        }
        CLAIMS
            .iter()
            .find(|(text, _)| {
                let id = Uuid::parse(text).unwrap_or_default();
                stored == if as_guid { id.as_guid_bytes() } else { id.0 }
            })
            .map_or(ClaimClass::Unknown, |(_, class)| *class)
    }

    /// The bytes a label of `layout` stores for this class.
    pub fn stored(self, layout: LabelLayout) -> [u8; 16] {
        let Some((text, _)) = CLAIMS.iter().find(|(_, c)| *c == self) else {
            return [0; 16];
        };
        let id = Uuid::parse(text).unwrap_or_default();
        match layout {
            LabelLayout::Efi => id.as_guid_bytes(),
            LabelLayout::Cxl => id.0,
        }
    }
}

/// The fields only one layout has.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LabelFormat {
    Efi {
        /// Labels in the set: the region's width.
        nlabel: u16,
        isetcookie: u64,
        align: u8,
        /// v1.2 only, as stored (`guid_t`).
        type_guid: Option<[u8; 16]>,
    },
    Cxl {
        /// CXL_NAMESPACE_UUID for a namespace label.
        type_uuid: Uuid,
        nrange: u16,
        /// In 256 MiB units.
        align: u32,
        region_uuid: Uuid,
    },
}

/// Why the kernel skips a label in an in-use slot (`slot_valid`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LabelFault {
    #[error("slot field {stored}, the label sits in slot {slot}")]
    Slot { stored: u32, slot: u32 },
    #[error("checksum {stored:#018x}, computed {computed:#018x}")]
    Checksum { stored: u64, computed: u64 },
}

/// A namespace label as read from its slot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamespaceLabel {
    /// The slot it was read from.
    pub slot: u32,
    pub uuid: Uuid,
    /// Up to the first NUL.
    pub name: String,
    pub flags: u32,
    /// Its place in the interleave set.
    pub position: u16,
    pub dpa: u64,
    /// This DIMM's part of the namespace.
    pub rawsize: u64,
    pub lbasize: u64,
    pub claim: ClaimClass,
    pub format: LabelFormat,
    /// Why the kernel would skip it; None for a valid label.
    pub fault: Option<LabelFault>,
}

impl NamespaceLabel {
    pub fn is_valid(&self) -> bool {
        self.fault.is_none()
    }

    /// The label of `bytes` (one slot, `label_size` long) read from `slot`.
    pub fn read(bytes: &[u8], slot: u32, layout: LabelLayout) -> NamespaceLabel {
        let mut label = match layout {
            LabelLayout::Efi => read_efi(bytes, slot),
            LabelLayout::Cxl => read_cxl(bytes, slot),
        };
        label.fault = slot_fault(bytes, slot, layout).err();
        label
    }
}

fn read_efi(b: &[u8], slot: u32) -> NamespaceLabel {
    let v1_2 = b.len() >= 256;
    let guid_at = |at: usize| -> [u8; 16] { b[at..at + 16].try_into().unwrap_or_default() };
    NamespaceLabel {
        slot,
        uuid: Uuid(guid_at(0)),
        name: name(&b[16..16 + NAME_LEN]),
        flags: read_u32(b, 80),
        position: read_u16(b, 86),
        dpa: read_u64(b, 104),
        rawsize: read_u64(b, 112),
        lbasize: read_u64(b, 96),
        claim: if v1_2 {
            ClaimClass::from_stored(guid_at(144), true)
        } else {
            ClaimClass::None
        },
        format: LabelFormat::Efi {
            nlabel: read_u16(b, 84),
            isetcookie: read_u64(b, 88),
            align: b[124],
            type_guid: v1_2.then(|| guid_at(128)),
        },
        fault: None,
    }
}

fn read_cxl(b: &[u8], slot: u32) -> NamespaceLabel {
    let uuid_at = |at: usize| Uuid(b[at..at + 16].try_into().unwrap_or_default());
    NamespaceLabel {
        slot,
        uuid: uuid_at(16),
        name: name(&b[32..32 + NAME_LEN]),
        flags: read_u32(b, 96),
        position: read_u16(b, 102),
        dpa: read_u64(b, 104),
        rawsize: read_u64(b, 112),
        lbasize: u64::from(read_u16(b, 160)),
        claim: ClaimClass::from_stored(uuid_at(144).0, false),
        format: LabelFormat::Cxl {
            type_uuid: uuid_at(0),
            nrange: read_u16(b, 100),
            align: read_u32(b, 124),
            region_uuid: uuid_at(128),
        },
        fault: None,
    }
}

/// `slot_valid`: the slot field first, then the checksum, which a CXL
/// label always has and an EFI label from v1.2 (256 bytes) on.
fn slot_fault(b: &[u8], slot: u32, layout: LabelLayout) -> Result<(), LabelFault> {
    let stored = read_u32(b, SLOT_AT);
    if stored != slot {
        return Err(LabelFault::Slot { stored, slot });
    }
    let has_checksum = layout == LabelLayout::Cxl || b.len() > CHECKSUM_AT;
    if !has_checksum {
        return Ok(());
    }
    let stored = read_u64(b, CHECKSUM_AT);
    let computed = checksum_without_field(b, CHECKSUM_AT);
    if stored != computed {
        return Err(LabelFault::Checksum { stored, computed });
    }
    Ok(())
}

fn name(bytes: &[u8]) -> String {
    let end = bytes.iter().position(|b| *b == 0).unwrap_or(bytes.len());
    String::from_utf8_lossy(&bytes[..end]).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuids_print_in_stored_order_and_guids_swap_three_fields() {
        let id = Uuid::parse("266400ba-fb9f-4677-bcb0-968f11d0d225").unwrap();
        assert_eq!(id.0[0], 0x26);
        assert_eq!(id.to_string(), "266400ba-fb9f-4677-bcb0-968f11d0d225");
        let guid = id.as_guid_bytes();
        assert_eq!(
            &guid[..8],
            &[0xba, 0x00, 0x64, 0x26, 0x9f, 0xfb, 0x77, 0x46]
        );
        assert_eq!(&guid[8..], &id.0[8..]);
        assert_eq!(Uuid::parse("not-a-uuid"), None);
    }

    #[test]
    fn claim_classes_round_trip_through_both_layouts() {
        for class in [
            ClaimClass::Btt,
            ClaimClass::Btt2,
            ClaimClass::Pfn,
            ClaimClass::Dax,
        ] {
            let efi = class.stored(LabelLayout::Efi);
            let cxl = class.stored(LabelLayout::Cxl);
            assert_ne!(efi, cxl);
            assert_eq!(ClaimClass::from_stored(efi, true), class);
            assert_eq!(ClaimClass::from_stored(cxl, false), class);
            assert_eq!(ClaimClass::from_stored(cxl, true), ClaimClass::Unknown);
        }
        assert_eq!(ClaimClass::from_stored([0; 16], true), ClaimClass::None);
    }
}
