//! Run-dependent values out, everything else kept: UUIDs, PIDs, kernel
//! pointers and CPU numbers become named placeholders (kernel timestamps
//! are left out of transcripts altogether, `transcript::kernel_line`);
//! sizes, modes, aligns, device names and error texts stay as they are.
//!
//! UUIDs are numbered per trial in order of first appearance ([`Uuids`]),
//! so a snapshot still shows which namespace is which, and that a UUID
//! survived a reboot.

use std::sync::LazyLock;

use regex::Regex;
use serde_json::Value;

static UUID: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"\b[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\b")
        .unwrap()
});
static PID: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"\b(PID|pid)([:=] ?)\d+").unwrap());
/// A kernel address: the top byte set, as with 4-level paging
/// (`ffff888004a1b2c3`) and with 5-level paging, which `-cpu max` gives the
/// guest (`0xff5994fa925f9000`, nfit_test's region lines).
static KPTR: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"\b(0x)?ff[0-9a-f]{14}\b").unwrap());
static COMM_CPU: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"\bCPU: \d+").unwrap());

/// Redacts run-dependent values in free text (UUIDs are left to [`Uuids`]).
pub fn text(s: &str) -> String {
    let s = PID.replace_all(s, "$1$2[pid]");
    let s = KPTR.replace_all(&s, "[kptr]");
    COMM_CPU.replace_all(&s, "CPU: [cpu]").into_owned()
}

/// UUID numbering over everything one trial snapshots: the first UUID seen
/// becomes `[uuid-1]`, and stays `[uuid-1]` wherever it appears again. The
/// nil UUID is not run-dependent and stays.
#[derive(Debug, Default)]
pub struct Uuids {
    seen: std::collections::HashMap<String, usize>,
}

impl Uuids {
    pub fn apply(&mut self, s: &str) -> String {
        UUID.replace_all(s, |c: &regex::Captures| {
            let u = c[0].to_ascii_lowercase();
            if u.bytes().all(|b| b == b'0' || b == b'-') {
                return u;
            }
            let next = self.seen.len() + 1;
            let n = *self.seen.entry(u).or_insert(next);
            format!("[uuid-{n}]")
        })
        .into_owned()
    }
}

/// Normalizes ndctl/cxl/daxctl JSON: run-dependent values redacted, arrays of
/// devices sorted by their `dev` name (listing order follows readdir).
pub fn json(v: &Value) -> Value {
    match v {
        Value::String(s) => Value::String(text(s)),
        Value::Array(items) => {
            let mut items: Vec<Value> = items.iter().map(json).collect();
            sort_devices(&mut items);
            Value::Array(items)
        }
        Value::Object(map) => {
            Value::Object(map.iter().map(|(k, v)| (k.clone(), json(v))).collect())
        }
        other => other.clone(),
    }
}

/// Orders a list of devices by what identifies them: interleave position,
/// else the first name-like key all items share.
fn sort_devices(items: &mut [Value]) {
    if items
        .iter()
        .all(|i| i.get("position").is_some_and(Value::is_u64))
    {
        items.sort_by_key(|i| i.get("position").and_then(Value::as_u64));
        return;
    }
    for key in [
        "dev", "memdev", "endpoint", "port", "decoder", "chardev", "dimm",
    ] {
        if items
            .iter()
            .all(|i| i.get(key).is_some_and(Value::is_string))
        {
            items.sort_by_key(|i| dev_key(i, key));
            return;
        }
    }
}

/// `namespace10.0` after `namespace2.0`: digit runs compare as numbers.
fn dev_key(v: &Value, key: &str) -> Vec<(String, u64)> {
    let s = v.get(key).and_then(Value::as_str).unwrap_or_default();
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut digits = false;
    let mut flush = |cur: &mut String, digits: bool| {
        if digits {
            out.push((String::new(), cur.parse().unwrap_or(u64::MAX)));
        } else {
            out.push((cur.clone(), 0));
        }
        cur.clear();
    };
    for c in s.chars() {
        if c.is_ascii_digit() != digits && !cur.is_empty() {
            flush(&mut cur, digits);
        }
        digits = c.is_ascii_digit();
        cur.push(c);
    }
    flush(&mut cur, digits);
    out
}

/// Command output: JSON pretty-printed after normalizing, text redacted.
pub fn output(s: &str) -> String {
    let trimmed = s.trim();
    if trimmed.starts_with('{') || trimmed.starts_with('[') {
        if let Ok(v) = serde_json::from_str::<Value>(trimmed) {
            return serde_json::to_string_pretty(&json(&v)).expect("JSON values serialize");
        }
    }
    text(s.trim_end())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuids_and_pids_go() {
        let s = "uuid 6f0e5e3c-8a3b-4c2d-9e1f-0123456789ab on CPU: 1 PID: 321 at ffff888004a1b2c3";
        assert_eq!(
            text("nfit region [0xff5994fa925f9000-0xff5994fa925f900b]"),
            "nfit region [[kptr]-[kptr]]"
        );
        assert_eq!(
            text("serial 0x8a34567890abcdef"),
            "serial 0x8a34567890abcdef"
        );
        let mut ids = Uuids::default();
        insta::assert_snapshot!(ids.apply(&text(s)), @"uuid [uuid-1] on CPU: [cpu] PID: [pid] at [kptr]");
    }

    #[test]
    fn uuids_are_numbered_by_first_appearance() {
        let a = "6f0e5e3c-8a3b-4c2d-9e1f-0123456789ab";
        let b = "11111111-2222-4333-8444-555555555555";
        let mut ids = Uuids::default();
        assert_eq!(ids.apply(&format!("{b} {a}")), "[uuid-1] [uuid-2]");
        assert_eq!(
            ids.apply(&format!("{} then {b}", a.to_uppercase())),
            "[uuid-2] then [uuid-1]"
        );
        let nil = "00000000-0000-0000-0000-000000000000";
        assert_eq!(ids.apply(nil), nil);
    }

    #[test]
    fn sizes_and_errors_stay() {
        let s =
            "failed to create namespace: align setting is 0x1000000 size 0x8400000 is misaligned";
        assert_eq!(text(s), s);
    }

    #[test]
    fn devices_sort_by_name_numerically() {
        let v: Value = serde_json::from_str(
            r#"[{"dev":"namespace10.0"},{"dev":"namespace2.0"},{"dev":"namespace0.0","uuid":"6f0e5e3c-8a3b-4c2d-9e1f-0123456789ab"}]"#,
        )
        .unwrap();
        insta::assert_snapshot!(output(&v.to_string()), @r#"
        [
          {
            "dev": "namespace0.0",
            "uuid": "6f0e5e3c-8a3b-4c2d-9e1f-0123456789ab"
          },
          {
            "dev": "namespace2.0"
          },
          {
            "dev": "namespace10.0"
          }
        ]
        "#);
    }

    #[test]
    fn plain_text_passes_through() {
        assert_eq!(output("disabled 1 region\n"), "disabled 1 region");
    }
}
