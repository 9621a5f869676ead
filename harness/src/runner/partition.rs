//! `--partition`: one shard of the selected trials, for CI systems that
//! run a suite on several machines at once. The meanings are nextest's:
//! `count:K/N` deals the selected trials, in their sorted order, round
//! robin (trial i goes to shard i mod N + 1); `hash:K/N` puts a trial in
//! the shard its name hashes to, so a trial stays in its shard when others
//! come and go. Either way a shard is computed from the names alone: every
//! shard agrees on the split without talking to another.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Error {
    #[error("partition `{0}`: expected count:K/N or hash:K/N, with 1 <= K <= N (e.g. count:1/4)")]
    Syntax(String),
    #[error("partition `{0}`: shard {1} of {2} does not exist; shards are numbered 1 to {2}")]
    NoSuchShard(String, u32, u32),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Method {
    /// Round robin over the sorted selection: shards differ in size by at
    /// most one trial.
    Count,
    /// By a hash of the trial's name: stable when the selection changes.
    Hash,
}

/// Shard `shard` (1-based) of `total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Partition {
    pub method: Method,
    pub shard: u32,
    pub total: u32,
}

impl Partition {
    /// Whether the trial `name`, at `index` in the sorted selection, is
    /// this shard's.
    pub fn keeps(&self, index: usize, name: &str) -> bool {
        let slot = match self.method {
            Method::Count => index as u64 % u64::from(self.total),
            Method::Hash => name_hash(name) % u64::from(self.total),
        };
        slot == u64::from(self.shard - 1)
    }

    /// This shard's part of `sorted` (the selected trials' names, sorted).
    pub fn split<'a>(&self, sorted: &[&'a str]) -> Vec<&'a str> {
        sorted
            .iter()
            .enumerate()
            .filter(|(i, name)| self.keeps(*i, name))
            .map(|(_, name)| *name)
            .collect()
    }
}

/// The first eight bytes of the name's SHA-256: the same on every host and
/// in every release, unlike std's hasher.
fn name_hash(name: &str) -> u64 {
    let digest = Sha256::digest(name.as_bytes());
    u64::from_be_bytes(digest[..8].try_into().expect("eight bytes"))
}

impl FromStr for Partition {
    type Err = Error;

    /// `count:K/N`, `hash:K/N`, or `K/N` (count).
    fn from_str(s: &str) -> Result<Partition, Error> {
        let syntax = || Error::Syntax(s.to_owned());
        let (method, rest) = match s.split_once(':') {
            Some(("count", rest)) => (Method::Count, rest),
            Some(("hash", rest)) => (Method::Hash, rest),
            Some(_) => return Err(syntax()),
            None => (Method::Count, s),
        };
        let (k, n) = rest.split_once('/').ok_or_else(syntax)?;
        let shard: u32 = k.trim().parse().map_err(|_| syntax())?;
        let total: u32 = n.trim().parse().map_err(|_| syntax())?;
        if shard == 0 || total == 0 || shard > total {
            return Err(Error::NoSuchShard(s.to_owned(), shard, total));
        }
        Ok(Partition {
            method,
            shard,
            total,
        })
    }
}

impl fmt::Display for Partition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let method = match self.method {
            Method::Count => "count",
            Method::Hash => "hash",
        };
        write!(f, "{method}:{}/{}", self.shard, self.total)
    }
}

impl TryFrom<String> for Partition {
    type Error = Error;
    fn try_from(s: String) -> Result<Partition, Error> {
        s.parse()
    }
}

impl From<Partition> for String {
    fn from(p: Partition) -> String {
        p.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("s::case{i:02}::nfit-1")).collect()
    }

    #[test]
    fn parses_nextests_forms() {
        let p: Partition = "count:2/3".parse().unwrap();
        assert_eq!((p.method, p.shard, p.total), (Method::Count, 2, 3));
        assert_eq!("2/3".parse::<Partition>().unwrap(), p);
        assert_eq!(
            "hash:1/4".parse::<Partition>().unwrap().method,
            Method::Hash
        );
        assert_eq!(p.to_string(), "count:2/3");
        assert!(matches!(
            "0/3".parse::<Partition>(),
            Err(Error::NoSuchShard(..))
        ));
        assert!(matches!(
            "4/3".parse::<Partition>(),
            Err(Error::NoSuchShard(..))
        ));
        for bad in ["", "2", "x:1/2", "count:1-2", "count:a/2", "1/"] {
            assert!(
                matches!(bad.parse::<Partition>(), Err(Error::Syntax(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn count_deals_the_sorted_trials_round_robin() {
        let all = names(7);
        let sorted: Vec<&str> = all.iter().map(String::as_str).collect();
        let shard = |k| Partition::from_str(&format!("count:{k}/3")).unwrap();
        assert_eq!(shard(1).split(&sorted), [sorted[0], sorted[3], sorted[6]]);
        assert_eq!(shard(2).split(&sorted), [sorted[1], sorted[4]]);
        assert_eq!(shard(3).split(&sorted), [sorted[2], sorted[5]]);
    }

    /// Every trial in exactly one shard, for both methods and any count.
    #[test]
    fn shards_cover_the_selection_once() {
        let all = names(23);
        let sorted: Vec<&str> = all.iter().map(String::as_str).collect();
        for method in ["count", "hash"] {
            for total in 1..=6 {
                let mut seen: Vec<&str> = (1..=total)
                    .flat_map(|k| {
                        Partition::from_str(&format!("{method}:{k}/{total}"))
                            .unwrap()
                            .split(&sorted)
                    })
                    .collect();
                seen.sort();
                assert_eq!(seen, sorted, "{method} over {total}");
            }
        }
    }

    #[test]
    fn a_hash_shard_keeps_its_trials_when_others_come_and_go() {
        let all = names(20);
        let p: Partition = "hash:2/3".parse().unwrap();
        let sorted: Vec<&str> = all.iter().map(String::as_str).collect();
        let fewer: Vec<&str> = sorted.iter().copied().step_by(2).collect();
        let kept = p.split(&sorted);
        for name in p.split(&fewer) {
            assert!(kept.contains(&name), "{name}");
        }
        // Stable across releases: a change here reshuffles every CI's shards.
        assert_eq!(
            name_hash("basic::fsdax-devdax-one-dimm::nfit-1"),
            17604946818448137703
        );
    }

    #[test]
    fn serializes_as_its_flag() {
        let p: Partition = "hash:3/5".parse().unwrap();
        assert_eq!(serde_json::to_string(&p).unwrap(), r#""hash:3/5""#);
        let back: Partition = serde_json::from_str(r#""hash:3/5""#).unwrap();
        assert_eq!(back, p);
    }
}
