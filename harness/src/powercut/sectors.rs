//! BTT's promise, checked on what a restarted guest reads: after a cut,
//! every sector a step was writing holds all of its old pattern or all of
//! its new one, never a mix (a torn sector) nor anything else; and writes
//! to other sectors after the restart leave them as they were.

use std::fmt;

/// What the sectors read after a cut held.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SectorTally {
    /// Sectors by the value they hold, in the order of `values`.
    pub by_value: Vec<(u8, u64)>,
    /// Sectors that are not one allowed value throughout: their number
    /// and the first offending byte's offset in the sector.
    pub torn: Vec<(u64, usize)>,
    /// Fewer bytes read than asked for.
    pub short: Option<u64>,
    /// Sectors that read differently after the restarted guest wrote
    /// other sectors: their number, and the first byte before and after.
    pub changed: Vec<(u64, u8, u8)>,
    /// What the guest said when writing the other sectors failed, or
    /// reading the checked ones again came back short.
    pub after_writes_failed: Option<String>,
}

impl SectorTally {
    pub fn is_consistent(&self) -> bool {
        self.torn.is_empty()
            && self.short.is_none()
            && self.changed.is_empty()
            && self.after_writes_failed.is_none()
    }
}

impl fmt::Display for SectorTally {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let held: Vec<String> = self
            .by_value
            .iter()
            .map(|(v, n)| format!("{n} of 0x{v:02x}"))
            .collect();
        write!(f, "sectors: {}", held.join(", "))?;
        if let Some(bytes) = self.short {
            write!(f, "; only {bytes} bytes read")?;
        }
        if let Some((sector, at)) = self.torn.first() {
            write!(
                f,
                "; {} torn (sector {sector} differs at byte {at})",
                self.torn.len()
            )?;
        }
        if let Some(failure) = &self.after_writes_failed {
            write!(f, "; writes to other sectors: {failure}")?;
        }
        if let Some((sector, before, after)) = self.changed.first() {
            write!(
                f,
                "; {} changed by writes to other sectors (sector {sector}: 0x{before:02x}, then 0x{after:02x})",
                self.changed.len()
            )?;
        }
        Ok(())
    }
}

/// Judges `bytes`, `count` sectors of `size` bytes, each of which must
/// hold one of `values` in every byte.
pub fn tally(bytes: &[u8], size: u64, count: u64, values: &[u8]) -> SectorTally {
    let mut t = SectorTally {
        by_value: values.iter().map(|v| (*v, 0)).collect(),
        ..Default::default()
    };
    let size = size.max(1) as usize;
    if (bytes.len() as u64) < size as u64 * count {
        t.short = Some(bytes.len() as u64);
    }
    for (n, sector) in bytes.chunks(size).take(count as usize).enumerate() {
        let first = sector[0];
        let uniform = sector.iter().position(|b| *b != first);
        match (uniform, t.by_value.iter_mut().find(|(v, _)| *v == first)) {
            (None, Some((_, held))) => *held += 1,
            (None, None) => t.torn.push((n as u64, 0)),
            (Some(at), _) => t.torn.push((n as u64, at)),
        }
    }
    t
}

/// The guest command that writes the `then_write` sectors after the
/// checked ones from each CPU in turn (each CPU has its own BTT lane and
/// free block), with a byte none of the checked sectors may hold.
pub fn write_others(check: &crate::suite::SectorCheck) -> String {
    // Any byte does to see a change; one the sectors may not hold also
    // shows what landed there.
    let byte = (0..=255u8)
        .map(|b| b.wrapping_add(0x5a))
        .find(|b| !check.values.contains(b))
        .unwrap_or(0x5a);
    let (first, last) = (check.count, check.count + check.then_write - 1);
    format!(
        "dd if=/dev/zero bs={size} count=1 2>/dev/null | tr '\\000' '\\{byte:03o}' > /tmp/other-sectors; \
         for cpu in $(seq 0 $(($(nproc) - 1))); do for i in $(seq {first} {last}); do \
         taskset -c $cpu dd if=/tmp/other-sectors of={device} bs={size} seek=$i count=1 oflag=direct 2>/dev/null \
         || echo \"writing sector $i from cpu $cpu failed\" >&2; done; done",
        size = check.size,
        device = check.device,
    )
}

/// Judges the second read of the checked sectors, `after`, made once the
/// other sectors were written (`write_failure`: what the guest said when a
/// write failed): each sector that reads differently from `before`, and a
/// read or a write that failed.
pub fn after_writes(
    tally: &mut SectorTally,
    before: &[u8],
    after: &[u8],
    size: u64,
    write_failure: Option<String>,
) {
    tally.changed = changed(before, after, size);
    tally.after_writes_failed = write_failure.or_else(|| {
        (after.len() != before.len()).then(|| {
            format!(
                "the second read gave {} bytes, the first {}",
                after.len(),
                before.len()
            )
        })
    });
}

/// The sectors of `size` bytes that differ between `before` and `after`
/// (two reads of the same sectors), with their first bytes.
fn changed(before: &[u8], after: &[u8], size: u64) -> Vec<(u64, u8, u8)> {
    let size = size.max(1) as usize;
    before
        .chunks(size)
        .zip(after.chunks(size))
        .enumerate()
        .filter(|(_, (b, a))| b != a)
        .map(|(n, (b, a))| (n as u64, b[0], a[0]))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whole_old_and_new_sectors_are_consistent() {
        let mut bytes = vec![0x11u8; 3 * 512];
        bytes[512..1024].fill(0x22);
        let t = tally(&bytes, 512, 3, &[0x11, 0x22]);
        assert!(t.is_consistent(), "{t}");
        assert_eq!(t.by_value, vec![(0x11, 2), (0x22, 1)]);
        assert_eq!(t.to_string(), "sectors: 2 of 0x11, 1 of 0x22");
    }

    #[test]
    fn the_other_sectors_are_written_from_every_cpu_with_a_byte_not_checked() {
        let check = crate::suite::SectorCheck {
            device: "/dev/pmem0s".into(),
            count: 4,
            size: 4096,
            values: vec![0x11, 0x5a],
            then_write: 8,
        };
        let script = write_others(&check);
        assert!(script.contains("tr '\\000' '\\133'"), "0x5b: {script}");
        assert!(script.contains("$(seq 4 11)"), "{script}");
        assert!(
            script.contains(
                "taskset -c $cpu dd if=/tmp/other-sectors of=/dev/pmem0s bs=4096 seek=$i"
            ),
            "{script}"
        );
    }

    #[test]
    fn a_sector_another_write_landed_on_is_caught() {
        let before = [vec![0x11u8; 512], vec![0x22u8; 512]].concat();
        let mut after = before.clone();
        assert!(changed(&before, &after, 512).is_empty());
        after[512..].fill(0x5a);
        let mut t = tally(&before, 512, 2, &[0x11, 0x22]);
        after_writes(&mut t, &before, &after, 512, None);
        assert_eq!(t.changed, vec![(1, 0x22, 0x5a)]);
        assert!(!t.is_consistent());
        assert!(
            t.to_string()
                .ends_with("; 1 changed by writes to other sectors (sector 1: 0x22, then 0x5a)"),
            "{t}"
        );
    }

    #[test]
    fn a_failed_write_or_a_short_second_read_checks_nothing_and_says_so() {
        let before = vec![0x11u8; 1024];
        let mut t = tally(&before, 512, 2, &[0x11]);
        after_writes(&mut t, &before, &before[..512], 512, None);
        assert!(!t.is_consistent());
        assert!(
            t.to_string()
                .contains("the second read gave 512 bytes, the first 1024"),
            "{t}"
        );
        let failed = Some("writing sector 9 from cpu 1 failed".to_owned());
        after_writes(&mut t, &before, &before, 512, failed);
        assert!(
            t.to_string()
                .ends_with("; writes to other sectors: writing sector 9 from cpu 1 failed"),
            "{t}"
        );
    }

    #[test]
    fn a_torn_or_foreign_or_short_read_is_caught() {
        let mut bytes = vec![0x11u8; 2 * 512];
        bytes[512 + 100..].fill(0x22);
        let t = tally(&bytes, 512, 2, &[0x11, 0x22]);
        assert_eq!(t.torn, vec![(1, 100)]);
        assert!(
            t.to_string().contains("sector 1 differs at byte 100"),
            "{t}"
        );
        let t = tally(&[0u8; 512], 512, 1, &[0x11, 0x22]);
        assert_eq!(t.torn, vec![(0, 0)], "zeros are neither value");
        let t = tally(&[0x11u8; 512], 512, 2, &[0x11]);
        assert_eq!(t.short, Some(512));
        assert!(!t.is_consistent());
    }
}
