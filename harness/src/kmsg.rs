//! The guest's kernel log, read as /dev/kmsg records (with sequence numbers),
//! split by the step markers the guest writes, and searched for the reports
//! that mean the kernel is unhappy.

use std::fmt;

/// One /dev/kmsg record.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Record {
    pub level: u8,
    pub facility: u8,
    pub seq: u64,
    pub ts_usec: u64,
    pub message: String,
}

impl Record {
    /// Written by the harness itself (`ndharness: ...` to /dev/kmsg).
    pub fn is_harness(&self) -> bool {
        self.facility != 0 && self.message.starts_with("ndharness: ")
    }
}

/// A step marker written by the guest's step wrapper.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Marker {
    Begin(usize),
    End(usize),
}

pub fn marker(r: &Record) -> Option<Marker> {
    let rest = r.message.strip_prefix("ndharness: step ")?;
    let (n, what) = rest.split_once(' ')?;
    let n = n.parse().ok()?;
    match what {
        "begin" => Some(Marker::Begin(n)),
        "end" => Some(Marker::End(n)),
        _ => None,
    }
}

/// Parses `prio,seq,ts,flags;message` lines; continuation lines (` KEY=v`)
/// carry device metadata and are skipped.
pub fn parse_line(line: &str) -> Option<Record> {
    let (head, message) = line.split_once(';')?;
    let mut f = head.split(',');
    let prio: u32 = f.next()?.parse().ok()?;
    let seq = f.next()?.parse().ok()?;
    let ts_usec = f.next()?.parse().ok()?;
    Some(Record {
        level: (prio & 7) as u8,
        facility: (prio >> 3) as u8,
        seq,
        ts_usec,
        message: unescape(message),
    })
}

/// /dev/kmsg writes non-printable bytes as `\xNN`.
fn unescape(s: &str) -> String {
    if !s.contains("\\x") {
        return s.to_owned();
    }
    let mut out = Vec::with_capacity(s.len());
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 3 < b.len() && b[i + 1] == b'x' {
            if let Ok(v) = u8::from_str_radix(&s[i + 2..i + 4], 16) {
                out.push(v);
                i += 4;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Incremental reader state over the guest's kmsg log file.
#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct Cursor {
    /// Bytes of the log file consumed.
    pub offset: u64,
    last_seq: Option<u64>,
}

impl Cursor {
    /// Consumes complete lines of `bytes` (read at `self.offset`); records
    /// already seen (the reader restarted) are dropped by sequence number.
    pub fn feed(&mut self, bytes: &[u8]) -> Vec<Record> {
        let complete = match bytes.iter().rposition(|&b| b == b'\n') {
            Some(i) => &bytes[..=i],
            None => return Vec::new(),
        };
        self.offset += complete.len() as u64;
        let text = String::from_utf8_lossy(complete);
        let mut out = Vec::new();
        for line in text.lines().filter(|l| !l.starts_with(' ')) {
            let Some(r) = parse_line(line) else { continue };
            if self.last_seq.is_some_and(|s| r.seq <= s) {
                continue;
            }
            self.last_seq = Some(r.seq);
            out.push(r);
        }
        out
    }
}

/// Kinds of kernel reports that fail a case unless it expects them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum ProblemKind {
    Warning,
    Bug,
    Oops,
    CallTrace,
    Panic,
    Lockdep,
    Sanitizer,
    Hang,
}

impl ProblemKind {
    /// As the kernel words it, where it has one word.
    pub fn name(self) -> &'static str {
        match self {
            ProblemKind::Warning => "WARNING",
            ProblemKind::Bug => "BUG",
            ProblemKind::Oops => "Oops",
            ProblemKind::CallTrace => "Call Trace",
            ProblemKind::Panic => "panic",
            ProblemKind::Lockdep => "lockdep",
            ProblemKind::Sanitizer => "sanitizer",
            ProblemKind::Hang => "hang",
        }
    }
}

impl fmt::Display for ProblemKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The line a kernel panic starts with, in the log and on the console.
pub const PANIC_LINE: &str = "Kernel panic - not syncing";

/// The reports' first lines, most specific first: the titles syzkaller
/// sorts kernel reports by (panics, sanitizers, lockdep, hangs and
/// stalls, BUGs, oopses and traps, warnings). A pattern matches at the
/// start of a message, after a `subsystem: ` prefix (`watchdog: BUG: soft
/// lockup`), or anywhere when it is long enough to say what it is.
const PATTERNS: &[(&str, ProblemKind)] = &[
    (PANIC_LINE, ProblemKind::Panic),
    ("BUG: KASAN:", ProblemKind::Sanitizer),
    ("BUG: KFENCE:", ProblemKind::Sanitizer),
    ("BUG: KMSAN:", ProblemKind::Sanitizer),
    ("BUG: KCSAN:", ProblemKind::Sanitizer),
    ("UBSAN:", ProblemKind::Sanitizer),
    ("KFENCE:", ProblemKind::Sanitizer),
    ("unreferenced object 0x", ProblemKind::Sanitizer),
    ("possible circular locking dependency", ProblemKind::Lockdep),
    ("possible recursive locking", ProblemKind::Lockdep),
    ("inconsistent lock state", ProblemKind::Lockdep),
    (
        "possible irq lock inversion dependency",
        ProblemKind::Lockdep,
    ),
    ("suspicious RCU usage", ProblemKind::Lockdep),
    ("trying to register non-static key", ProblemKind::Lockdep),
    (
        "lock held when returning to user space",
        ProblemKind::Lockdep,
    ),
    ("BUG: soft lockup", ProblemKind::Hang),
    ("Watchdog detected hard LOCKUP", ProblemKind::Hang),
    ("blocked for more than", ProblemKind::Hang),
    ("detected stalls on CPUs/tasks", ProblemKind::Hang),
    ("self-detected stall on CPU", ProblemKind::Hang),
    ("detected expedited stalls", ProblemKind::Hang),
    ("rcu_sched detected stalls", ProblemKind::Hang),
    ("rcu_preempt detected stalls", ProblemKind::Hang),
    ("BUG: workqueue lockup", ProblemKind::Hang),
    ("WARNING:", ProblemKind::Warning),
    ("refcount_t: ", ProblemKind::Warning),
    ("BUG:", ProblemKind::Bug),
    ("kernel BUG at", ProblemKind::Bug),
    ("list_add corruption", ProblemKind::Bug),
    ("list_del corruption", ProblemKind::Bug),
    ("Oops:", ProblemKind::Oops),
    ("general protection fault", ProblemKind::Oops),
    ("Unable to handle kernel", ProblemKind::Oops),
    ("divide error:", ProblemKind::Oops),
    ("invalid opcode:", ProblemKind::Oops),
    ("stack segment:", ProblemKind::Oops),
    ("double fault:", ProblemKind::Oops),
    ("Call Trace:", ProblemKind::CallTrace),
];

/// The report kind a record starts, if any.
pub fn problem(r: &Record) -> Option<ProblemKind> {
    if r.is_harness() {
        return None;
    }
    let m = r.message.trim_start();
    // `watchdog: BUG: soft lockup`, `cxl_pmem: WARNING: ...`: a report
    // behind a subsystem's prefix.
    let after_prefix = m
        .split_once(": ")
        .filter(|(prefix, _)| !prefix.contains(' '))
        .map(|(_, rest)| rest);
    PATTERNS
        .iter()
        .find(|(p, _)| {
            m.starts_with(p)
                || after_prefix.is_some_and(|rest| rest.starts_with(p))
                || (p.len() > 12 && m.contains(p))
        })
        .map(|(_, k)| *k)
}

/// The report kind a line of the serial console starts, when it is one a
/// command may never come back from (an Oops, a BUG, a panic): a console
/// line is a record's message after its `[  seconds.micros] ` stamp.
pub fn fatal_console_report(line: &str) -> Option<ProblemKind> {
    let message = match line.trim_start().strip_prefix('[') {
        Some(rest) => rest.split_once(']').map_or(line, |(_, m)| m),
        None => line,
    };
    let record = Record {
        level: 0,
        facility: 0,
        seq: 0,
        ts_usec: 0,
        message: message.trim_start().to_owned(),
    };
    problem(&record)
        .filter(|k| matches!(k, ProblemKind::Oops | ProblemKind::Bug | ProblemKind::Panic))
}

/// Subsystems whose messages go into transcripts.
const PMEM_WORDS: &[&str] = &[
    "nvdimm",
    "nd_",
    "ndbus",
    "nmem",
    "pmem",
    "dax",
    "cxl",
    "pfn",
    "btt",
    "region",
    "namespace",
    "nfit",
    "libnvdimm",
    "label",
];

/// Warning-level lines that say how busy the host was, not what the kernel
/// did: they come and go from run to run under TCG.
const HOST_NOISE: &[&str] = &[
    "hrtimer: interrupt took",
    "sched: RT throttling activated",
    "clocksource: timekeeping watchdog",
    "clocksource: Long readout interval",
    "tsc: Marking TSC unstable",
    // The watchdog's verdict, said again at warning level by the TSC code.
    "TSC found unstable after boot",
];

/// Whether a record belongs in a transcript: the pmem stack's messages and
/// anything at warning level or worse, less host-timing noise.
pub fn relevant(r: &Record) -> bool {
    if r.is_harness() || HOST_NOISE.iter().any(|n| r.message.contains(n)) {
        return false;
    }
    if r.facility == 0 && r.level <= 4 {
        return true;
    }
    let m = r.message.to_ascii_lowercase();
    PMEM_WORDS.iter().any(|w| m.contains(w))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_record_and_level() {
        let r =
            parse_line("4,812,5123456,-;WARNING: CPU: 1 PID: 42 at drivers/nvdimm/pfn_devs.c:1 x")
                .unwrap();
        assert_eq!(
            (r.level, r.facility, r.seq, r.ts_usec),
            (4, 0, 812, 5123456)
        );
        assert_eq!(problem(&r), Some(ProblemKind::Warning));
    }

    #[test]
    fn reports_are_found_by_their_titles_behind_a_prefix_too() {
        let kind = |message: &str| {
            problem(&Record {
                level: 0,
                facility: 0,
                seq: 1,
                ts_usec: 0,
                message: message.into(),
            })
        };
        for (message, want) in [
            (
                "watchdog: BUG: soft lockup - CPU#1 stuck for 22s! [ndctl:341]",
                ProblemKind::Hang,
            ),
            ("Watchdog detected hard LOCKUP on cpu 1", ProblemKind::Hang),
            (
                "rcu: INFO: rcu_preempt detected stalls on CPUs/tasks:",
                ProblemKind::Hang,
            ),
            (
                "rcu: INFO: rcu_sched self-detected stall on CPU",
                ProblemKind::Hang,
            ),
            (
                "INFO: task ndctl:301 blocked for more than 120 seconds.",
                ProblemKind::Hang,
            ),
            (
                "BUG: workqueue lockup - pool cpus=0 node=0",
                ProblemKind::Hang,
            ),
            (
                "UBSAN: array-index-out-of-bounds in drivers/nvdimm/label.c:412:9",
                ProblemKind::Sanitizer,
            ),
            (
                "BUG: KFENCE: out-of-bounds read in nd_label_validate+0x2c/0x90",
                ProblemKind::Sanitizer,
            ),
            (
                "BUG: KASAN: slab-use-after-free in cxl_pmem_ctl+0x1/0x2",
                ProblemKind::Sanitizer,
            ),
            (
                "unreferenced object 0xffff888004a1c000 (size 256):",
                ProblemKind::Sanitizer,
            ),
            ("WARNING: suspicious RCU usage", ProblemKind::Lockdep),
            (
                "INFO: trying to register non-static key.",
                ProblemKind::Lockdep,
            ),
            (
                "refcount_t: underflow; use-after-free.",
                ProblemKind::Warning,
            ),
            (
                "list_add corruption. prev->next should be next",
                ProblemKind::Bug,
            ),
            (
                "BUG: sleeping function called from invalid context at mm/slab.c:1",
                ProblemKind::Bug,
            ),
            (
                "divide error: 0000 [#1] PREEMPT SMP NOPTI",
                ProblemKind::Oops,
            ),
            (
                "invalid opcode: 0000 [#1] PREEMPT SMP NOPTI",
                ProblemKind::Oops,
            ),
            (
                "cxl_pmem: WARNING: label area too small",
                ProblemKind::Warning,
            ),
        ] {
            assert_eq!(kind(message), Some(want), "{message}");
        }
        for benign in [
            "nd_pmem namespace0.0: unable to guarantee persistence of writes",
            "nd_region region0: nmem1: BUGGY firmware is not a report",
            "systemd: Started the step",
        ] {
            assert_eq!(kind(benign), None, "{benign}");
        }
    }

    #[test]
    fn markers_round_trip() {
        let r = parse_line("12,900,1,-;ndharness: step 3 begin").unwrap();
        assert_eq!(marker(&r), Some(Marker::Begin(3)));
        assert!(r.is_harness());
        assert!(!relevant(&r));
    }

    #[test]
    fn cursor_keeps_partial_lines_and_drops_repeats() {
        let mut c = Cursor::default();
        let first = b"6,1,0,-;nd_pmem namespace0.0: ok\n SUBSYSTEM=nd\n6,2,0,-;half";
        let got = c.feed(first);
        assert_eq!(got.len(), 1);
        assert_eq!(c.offset, 47);
        let got = c.feed(b"6,1,0,-;nd_pmem namespace0.0: ok\n6,2,0,-;nd_btt btt0.0: done\n");
        assert_eq!(got.iter().map(|r| r.seq).collect::<Vec<_>>(), vec![2]);
    }

    #[test]
    fn unescapes_bytes() {
        let r = parse_line("6,1,0,-;a\\x0ab").unwrap();
        assert_eq!(r.message, "a\nb");
    }

    #[test]
    fn fatal_reports_on_the_console() {
        let oops = "[   12.345678] BUG: kernel NULL pointer dereference, address: 0000000000000008";
        assert_eq!(fatal_console_report(oops), Some(ProblemKind::Bug));
        assert_eq!(
            fatal_console_report(
                "[    3.1] Oops: general protection fault, probably for non-canonical address"
            ),
            Some(ProblemKind::Oops)
        );
        assert_eq!(
            fatal_console_report("[    9.0] Kernel panic - not syncing: Fatal exception"),
            Some(ProblemKind::Panic)
        );
        // A warning is judged when the step ends, not ended early.
        assert_eq!(
            fatal_console_report("[    1.0] WARNING: CPU: 0 PID: 1 at x.c:1"),
            None
        );
        assert_eq!(
            fatal_console_report("nd_pmem namespace0.0: unable to guarantee persistence"),
            None
        );
    }

    #[test]
    fn relevance() {
        let pmem = parse_line("6,1,0,-;pmem0: detected capacity change from 0 to 262144").unwrap();
        let other = parse_line("6,2,0,-;virtio_net virtio0: up").unwrap();
        assert!(relevant(&pmem));
        assert!(!relevant(&other));
        let noise = parse_line("4,3,0,-;hrtimer: interrupt took 1234567 ns").unwrap();
        assert!(!relevant(&noise));
        // Seen in a CI run on a loaded host: the watchdog's three lines.
        for line in [
            "4,4,0,-;clocksource: timekeeping watchdog on CPU1: wd-tsc-wd excessive read-back delay of 3488310ns vs. limit of 125000ns",
            "6,5,0,-;tsc: Marking TSC unstable due to clocksource watchdog",
            "4,6,0,-;TSC found unstable after boot, most likely due to broken BIOS. Use 'tsc=unstable'.",
        ] {
            assert!(!relevant(&parse_line(line).unwrap()), "{line}");
        }
    }
}
