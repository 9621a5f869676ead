//! BTT's promise, checked on what a restarted guest reads: after a cut,
//! every sector a step was writing holds all of its old pattern or all of
//! its new one, never a mix (a torn sector) nor anything else.

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
}

impl SectorTally {
    pub fn is_consistent(&self) -> bool {
        self.torn.is_empty() && self.short.is_none()
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
