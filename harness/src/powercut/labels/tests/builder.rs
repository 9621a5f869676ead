//! Label areas made in code, the way the kernel makes them: `init_labels`
//! (both indexes, all slots free), `__pmem_label_update` (the label into
//! the first free slot, the old label of the uuid freed, then the other
//! index with the next sequence number) and `del_labels` (the index
//! only). Every write is recorded, so a test can replay any prefix of
//! them, or replay them out of order, onto a blank area.

use std::collections::BTreeMap;

use crate::powercut::labels::index::{self, next_seq, HEADER_SIZE, SIGNATURE};
use crate::powercut::labels::label::{CHECKSUM_AT, FLAG_UPDATING, NAME_LEN, SLOT_AT};
use crate::powercut::labels::{fletcher64, ClaimClass, LabelLayout, Uuid};

/// One write of the kernel to a DIMM's label area.
#[derive(Debug, Clone)]
pub struct Write {
    pub dimm: usize,
    pub offset: usize,
    pub bytes: Vec<u8>,
}

impl Write {
    pub fn is_index(&self, dimm: &Dimm) -> bool {
        self.offset < 2 * dimm.index_size
    }
}

/// What a namespace's labels say.
#[derive(Debug, Clone)]
pub struct Namespace {
    pub uuid: Uuid,
    pub name: String,
    /// Each DIMM's part.
    pub rawsize: u64,
    pub claim: ClaimClass,
}

pub fn uuid(n: u8) -> Uuid {
    let mut b = [0u8; 16];
    b[0] = 0xa0 | n;
    b[15] = n;
    Uuid(b)
}

/// One DIMM's label area and the kernel's view of it.
pub struct Dimm {
    pub number: usize,
    pub layout: LabelLayout,
    pub area_size: usize,
    pub label_size: usize,
    pub index_size: usize,
    pub nslot: usize,
    /// The index the next update writes (`ns_next`), and the current seq.
    next: usize,
    seq: u32,
    /// In-use slots of the current index and the uuid each holds.
    in_use: BTreeMap<u32, Uuid>,
}

impl Dimm {
    pub fn new(number: usize, area_size: usize, layout: LabelLayout, label_size: usize) -> Dimm {
        Dimm {
            number,
            layout,
            area_size,
            label_size,
            index_size: index::index_size(area_size, label_size).expect("room for labels"),
            nslot: index::label_slots(area_size, label_size).expect("room for labels"),
            next: 0,
            seq: 0,
            in_use: BTreeMap::new(),
        }
    }

    /// `init_labels`: index 0 with seq 3, index 1 with seq 2; 0 current.
    pub fn init(&mut self, log: &mut Vec<Write>) {
        for (i, seq) in [(0, 3), (1, 2)] {
            let bytes = self.index_block(i, seq);
            log.push(self.write(i * self.index_size, bytes));
        }
        self.seq = 3;
        self.next = 1;
    }

    /// `__pmem_label_update` of `ns` at `position` in a `width`-way set.
    pub fn update(
        &mut self,
        ns: &Namespace,
        position: u16,
        width: u16,
        flags: u32,
        log: &mut Vec<Write>,
    ) {
        let slot = (0..self.nslot as u32)
            .find(|s| !self.in_use.contains_key(s))
            .expect("a free slot");
        let label = self.label(ns, slot, position, width, flags);
        log.push(self.write(self.slot_offset(slot), label));
        self.in_use.retain(|_, u| *u != ns.uuid);
        self.in_use.insert(slot, ns.uuid);
        self.write_next_index(log);
    }

    /// `del_labels`: the uuid's slots freed, the other index written.
    pub fn delete(&mut self, uuid: Uuid, log: &mut Vec<Write>) {
        self.in_use.retain(|_, u| *u != uuid);
        self.write_next_index(log);
    }

    fn write_next_index(&mut self, log: &mut Vec<Write>) {
        let seq = next_seq(self.seq);
        let bytes = self.index_block(self.next, seq);
        log.push(self.write(self.next * self.index_size, bytes));
        self.seq = seq;
        self.next = 1 - self.next;
    }

    fn write(&self, offset: usize, bytes: Vec<u8>) -> Write {
        Write {
            dimm: self.number,
            offset,
            bytes,
        }
    }

    pub fn slot_offset(&self, slot: u32) -> usize {
        2 * self.index_size + slot as usize * self.label_size
    }

    /// `nd_label_write_index`: the block, its free bitmap (bits past nslot
    /// clear), its checksum.
    pub fn index_block(&self, number: usize, seq: u32) -> Vec<u8> {
        let mut b = vec![0u8; self.index_size];
        b[..16].copy_from_slice(SIGNATURE);
        b[19] = (self.label_size >> 8) as u8;
        put(&mut b, 20, &seq.to_le_bytes());
        put(
            &mut b,
            24,
            &((number * self.index_size) as u64).to_le_bytes(),
        );
        put(&mut b, 32, &(self.index_size as u64).to_le_bytes());
        put(
            &mut b,
            40,
            &(((1 - number) * self.index_size) as u64).to_le_bytes(),
        );
        put(&mut b, 48, &((2 * self.index_size) as u64).to_le_bytes());
        put(&mut b, 56, &(self.nslot as u32).to_le_bytes());
        put(&mut b, 60, &1u16.to_le_bytes());
        let minor: u16 = if self.label_size < 256 { 1 } else { 2 };
        put(&mut b, 62, &minor.to_le_bytes());
        for slot in 0..self.nslot {
            if !self.in_use.contains_key(&(slot as u32)) {
                b[HEADER_SIZE + slot / 8] |= 1 << (slot % 8);
            }
        }
        let sum = fletcher64(&b);
        put(&mut b, 64, &sum.to_le_bytes());
        b
    }

    /// A label of this DIMM's layout and size, checksummed where it has one.
    pub fn label(
        &self,
        ns: &Namespace,
        slot: u32,
        position: u16,
        width: u16,
        flags: u32,
    ) -> Vec<u8> {
        let mut b = vec![0u8; self.label_size];
        let mut name = ns.name.as_bytes().to_vec();
        name.resize(NAME_LEN, 0);
        let dpa = u64::from(position) * 0x1000_0000;
        match self.layout {
            LabelLayout::Efi => {
                put(&mut b, 0, &ns.uuid.0);
                put(&mut b, 16, &name);
                put(&mut b, 80, &flags.to_le_bytes());
                put(&mut b, 84, &width.to_le_bytes());
                put(&mut b, 86, &position.to_le_bytes());
                put(&mut b, 88, &0x1234_5678u64.to_le_bytes());
                put(&mut b, 104, &dpa.to_le_bytes());
                put(&mut b, 112, &ns.rawsize.to_le_bytes());
                if self.label_size >= 256 {
                    put(&mut b, 144, &ns.claim.stored(LabelLayout::Efi));
                }
            }
            LabelLayout::Cxl => {
                let namespace_type = Uuid::parse("68bb2c0a-5a77-4937-9f85-3caf41a0f93c").unwrap();
                put(&mut b, 0, &namespace_type.0);
                put(&mut b, 16, &ns.uuid.0);
                put(&mut b, 32, &name);
                put(&mut b, 96, &flags.to_le_bytes());
                put(&mut b, 100, &1u16.to_le_bytes());
                put(&mut b, 102, &position.to_le_bytes());
                put(&mut b, 104, &dpa.to_le_bytes());
                put(&mut b, 112, &ns.rawsize.to_le_bytes());
                put(&mut b, 144, &ns.claim.stored(LabelLayout::Cxl));
                put(&mut b, 160, &512u16.to_le_bytes());
            }
        }
        put(&mut b, SLOT_AT, &slot.to_le_bytes());
        if self.label_size > CHECKSUM_AT {
            let sum = fletcher64(&b);
            put(&mut b, CHECKSUM_AT, &sum.to_le_bytes());
        }
        b
    }
}

fn put(b: &mut [u8], at: usize, bytes: &[u8]) {
    b[at..at + bytes.len()].copy_from_slice(bytes);
}

/// The DIMMs of one region and every write the kernel made to them.
pub struct Region {
    pub dimms: Vec<Dimm>,
    pub log: Vec<Write>,
}

impl Region {
    /// `width` DIMMs with `area_size` areas, labels initialized.
    pub fn new(width: usize, area_size: usize, layout: LabelLayout, label_size: usize) -> Region {
        let mut region = Region {
            dimms: (0..width)
                .map(|n| Dimm::new(n, area_size, layout, label_size))
                .collect(),
            log: Vec::new(),
        };
        for dimm in &mut region.dimms {
            dimm.init(&mut region.log);
        }
        region
    }

    /// `nd_pmem_namespace_label_update` with a size: every DIMM with
    /// UPDATING set, then every DIMM with it clear.
    pub fn update(&mut self, ns: &Namespace) {
        let width = self.dimms.len() as u16;
        for flags in [FLAG_UPDATING, 0] {
            for (position, dimm) in self.dimms.iter_mut().enumerate() {
                dimm.update(ns, position as u16, width, flags, &mut self.log);
            }
        }
    }

    /// `nd_pmem_namespace_label_update` with size 0: `del_labels` on each.
    pub fn delete(&mut self, uuid: Uuid) {
        for dimm in &mut self.dimms {
            dimm.delete(uuid, &mut self.log);
        }
    }

    /// Each DIMM's area after `writes`, applied in order to blank areas.
    pub fn replay<'a>(&self, writes: impl IntoIterator<Item = &'a Write>) -> Vec<Vec<u8>> {
        let mut areas: Vec<Vec<u8>> = self.dimms.iter().map(|d| vec![0u8; d.area_size]).collect();
        for w in writes {
            areas[w.dimm][w.offset..w.offset + w.bytes.len()].copy_from_slice(&w.bytes);
        }
        areas
    }
}
