//! Byte sizes written the way QEMU and ndctl write them: `1G`, `128K`, `256M`.

use std::fmt;

use serde::{Deserialize, Deserializer};

/// A size that did not parse.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("unknown size unit `{unit}` in `{text}` (use K, M, G or T)")]
    UnknownUnit { unit: char, text: String },
    #[error("`{text}` is not a size (examples: 128K, 256M, 1G)")]
    NotASize { text: String },
    #[error("size `{text}` overflows 64 bits")]
    Overflow { text: String },
}

/// A size in bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Size(pub u64);

const UNITS: [(char, u64); 4] = [
    ('T', 1 << 40),
    ('G', 1 << 30),
    ('M', 1 << 20),
    ('K', 1 << 10),
];

impl Size {
    pub const fn mib(n: u64) -> Size {
        Size(n << 20)
    }

    pub const fn gib(n: u64) -> Size {
        Size(n << 30)
    }

    pub fn bytes(self) -> u64 {
        self.0
    }

    /// Parses `512`, `128K`, `256M`, `1G`, `2T` (binary units, optional `iB`/`B`).
    pub fn parse(text: &str) -> Result<Size, Error> {
        let trimmed = text.trim();
        let number = trimmed
            .strip_suffix("iB")
            .or_else(|| trimmed.strip_suffix('B'))
            .unwrap_or(trimmed);
        let (digits, multiplier) = match number.chars().last() {
            Some(unit) if unit.is_ascii_alphabetic() => {
                let upper = unit.to_ascii_uppercase();
                let multiplier = UNITS
                    .iter()
                    .find(|(u, _)| *u == upper)
                    .map(|(_, m)| *m)
                    .ok_or_else(|| Error::UnknownUnit {
                        unit,
                        text: text.to_owned(),
                    })?;
                (&number[..number.len() - 1], multiplier)
            }
            _ => (number, 1),
        };
        let count: u64 = digits.trim().parse().map_err(|_| Error::NotASize {
            text: text.to_owned(),
        })?;
        count
            .checked_mul(multiplier)
            .map(Size)
            .ok_or_else(|| Error::Overflow {
                text: text.to_owned(),
            })
    }
}

/// Renders with the largest unit that divides exactly, as QEMU accepts it.
impl std::str::FromStr for Size {
    type Err = Error;
    fn from_str(text: &str) -> Result<Size, Error> {
        Size::parse(text)
    }
}

impl fmt::Display for Size {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (unit, mult) in UNITS {
            if self.0 >= mult && self.0.is_multiple_of(mult) {
                return write!(f, "{}{unit}", self.0 / mult);
            }
        }
        write!(f, "{}", self.0)
    }
}

/// Written back the way it is read: `256M`, `1G`, `128K`.
impl serde::Serialize for Size {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Size {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct SizeVisitor;
        impl serde::de::Visitor<'_> for SizeVisitor {
            type Value = Size;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a size such as 128K, 256M or 1G")
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Size, E> {
                Ok(Size(v))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Size, E> {
                Size::parse(v).map_err(E::custom)
            }
        }
        d.deserialize_any(SizeVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_units() {
        assert_eq!(Size::parse("128K").unwrap(), Size(128 << 10));
        assert_eq!(Size::parse("1G").unwrap(), Size::gib(1));
        assert_eq!(Size::parse("256MiB").unwrap(), Size::mib(256));
        assert_eq!(Size::parse("4096").unwrap(), Size(4096));
    }

    #[test]
    fn rejects_garbage() {
        assert!(Size::parse("12Q")
            .unwrap_err()
            .to_string()
            .contains("unknown size unit `Q` in `12Q`"));
        assert!(Size::parse("lots").is_err());
    }

    #[test]
    fn displays_largest_exact_unit() {
        assert_eq!(Size::gib(1).to_string(), "1G");
        assert_eq!(Size(1536 << 20).to_string(), "1536M");
        assert_eq!(Size(100).to_string(), "100");
    }
}
