//! The page of report.html, section by section: the run (guest, schedule,
//! counts), what changed since the previous run, each failure with its
//! evidence, and every trial.

use std::fmt::Write as _;
use std::path::Path;

use super::changes::{rows, Change, Row};
use super::{diff_lines, escape, Previous};
use crate::runner::reporter::{count, RunRecord};
use crate::runner::result::{Status, TrialResult};
use crate::runner::tally::{tally, RepeatedOutcome, Tally};
use crate::transcript::evidence_reports;

/// A transcript longer than this is cut in the page (its file has it all).
const TRANSCRIPT_MAX: usize = 200_000;

const STYLE: &str = "
body{font:14px/1.45 system-ui,-apple-system,'Segoe UI',sans-serif;margin:0;color:#1f2328;background:#f6f8fa}
main{max-width:1200px;margin:0 auto;padding:24px}
h1{font-size:24px;margin:0 0 4px}h2{font-size:18px;margin:28px 0 10px;padding-bottom:4px;border-bottom:1px solid #d0d7de}
.card{background:#fff;border:1px solid #d0d7de;border-radius:6px;padding:12px 16px;margin:10px 0}
.meta{color:#59636e;margin:0}.meta b{color:#1f2328;font-weight:600}
.facts{display:grid;grid-template-columns:max-content 1fr;gap:2px 16px;margin:0}.facts dt{color:#59636e}.facts dd{margin:0;font-weight:600;overflow-wrap:anywhere}
.counts span{display:inline-block;margin:8px 8px 0 0;padding:4px 12px;border-radius:14px;font-weight:600}
table{border-collapse:collapse;width:100%;background:#fff;border:1px solid #d0d7de}
th,td{padding:4px 10px;text-align:left;border-bottom:1px solid #eaeef2;vertical-align:top}
th{background:#f6f8fa;font-weight:600}th:first-child{width:42%}td.num,th.num{text-align:right;font-variant-numeric:tabular-nums}
tr:hover td{background:#f6f8fa}td a{color:inherit}
.st{font-weight:700;font-size:12px;padding:1px 7px;border-radius:10px;white-space:nowrap}
.pass{background:#dafbe1;color:#116329}.fail{background:#ffebe9;color:#a40e26}.error{background:#fff1e5;color:#953800}
.flaky{background:#fbefff;color:#8250df}.ignored{background:#eaeef2;color:#59636e}.known{background:#fff1e5;color:#9a6700}
.slower{color:#a40e26}.faster{color:#116329}.muted{color:#59636e}
pre{background:#f6f8fa;border:1px solid #eaeef2;border-radius:6px;padding:8px 10px;white-space:pre-wrap;overflow-wrap:anywhere;font:12px/1.4 ui-monospace,SFMono-Regular,Menlo,monospace;margin:6px 0}
.add{color:#116329;background:#dafbe1;display:inline-block;width:100%}.del{color:#a40e26;background:#ffebe9;display:inline-block;width:100%}.hunk{color:#59636e}
details>summary{cursor:pointer;font-weight:600;margin:6px 0}h3{font-size:15px;margin:0 0 6px}h4{font-size:13px;margin:10px 0 2px}
";

/// The whole page.
pub fn render(run: &RunRecord, previous: Option<&Previous>) -> String {
    let mut h = String::new();
    let _ = write!(
        h,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <title>ndharness run: {}</title><style>{STYLE}</style></head><body><main>\n",
        escape(&run.info.kernel)
    );
    h.push_str(&header(run));
    let rows = previous.map(|p| rows(&p.record.results, &run.results));
    if let (Some(p), Some(rows)) = (previous, &rows) {
        h.push_str(&changes(p, rows));
    }
    h.push_str(&failures(&run.results));
    h.push_str(&trials(run, rows.as_deref()));
    h.push_str("</main></body></html>\n");
    h
}

/// The CSS class of an outcome.
fn class(o: RepeatedOutcome) -> &'static str {
    match o {
        RepeatedOutcome::Pass => "pass",
        RepeatedOutcome::Flaky => "flaky",
        RepeatedOutcome::Fail => "fail",
        RepeatedOutcome::Error => "error",
        RepeatedOutcome::Ignored => "ignored",
        RepeatedOutcome::Known => "known",
    }
}

/// A run's status as the outcome of one run.
fn outcome(s: Status) -> RepeatedOutcome {
    match s {
        Status::Pass => RepeatedOutcome::Pass,
        Status::Fail => RepeatedOutcome::Fail,
        Status::Error => RepeatedOutcome::Error,
        Status::Ignored => RepeatedOutcome::Ignored,
        Status::KnownFailure => RepeatedOutcome::Known,
    }
}

/// The word of an outcome, coloured.
fn badge(o: RepeatedOutcome) -> String {
    format!("<span class=\"st {}\">{}</span>", class(o), o.word())
}

fn status_badge(s: Status) -> String {
    badge(outcome(s))
}

/// An anchor for a run of a trial.
fn anchor(r: &TrialResult) -> String {
    let id: String = r
        .display_name()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    format!("f-{id}")
}

fn header(run: &RunRecord) -> String {
    let mut h = String::from("<h1>ndharness run</h1>\n<div class=\"card\">\n");
    let i = &run.info;
    let mut facts = vec![
        ("kernel", i.kernel.clone()),
        ("image", format!("{} ({})", i.image, i.image_key)),
        ("accel", i.accel.clone()),
        ("start", i.start.clone()),
        ("ended", run.date.clone().unwrap_or_default()),
        ("wall", format!("{:.1} s", run.wall.as_secs_f64())),
        ("exit code", run.exit_code.to_string()),
    ];
    if let Some(p) = &run.schedule.partition {
        facts.push(("shard", p.to_string()));
    }
    if let Some(how) = run.schedule.repeat.describe() {
        facts.push(("repeated", how));
    }
    if let Some(s) = &run.schedule.stopped {
        facts.push(("stopped", s.clone()));
    }
    if !run.shards.is_empty() {
        let shards: Vec<String> = run
            .shards
            .iter()
            .map(|s| match &s.partition {
                Some(p) => format!("{p} ({} trials, exit {})", s.trials, s.exit_code),
                None => format!("{} ({} trials)", s.source.display(), s.trials),
            })
            .collect();
        facts.push(("merged from", shards.join(", ")));
    }
    h.push_str("<dl class=\"facts\">\n");
    for (k, v) in facts.iter().filter(|(_, v)| !v.is_empty()) {
        let _ = writeln!(h, "<dt>{k}</dt><dd>{}</dd>", escape(v));
    }
    h.push_str("</dl>\n");
    let of = |s| run.results.iter().filter(|r| r.status == s).count();
    h.push_str("<div class=\"counts\">");
    for (s, word) in [
        (Status::Pass, "passed"),
        (Status::Fail, "failed"),
        (Status::Error, "errors"),
        (Status::Ignored, "ignored"),
        (Status::KnownFailure, "known failures"),
    ] {
        let _ = write!(
            h,
            "<span class=\"{}\">{} {word}</span>",
            class(outcome(s)),
            of(s)
        );
    }
    if run.schedule.repeat.is_repeating() {
        let tallies = tally(&run.results);
        let flaky = tallies
            .iter()
            .filter(|t| t.outcome() == RepeatedOutcome::Flaky)
            .count();
        let _ = write!(
            h,
            "<span class=\"flaky\">{flaky} of {} flaky</span>",
            count(tallies.len(), "trial")
        );
    }
    h.push_str("</div>\n</div>\n");
    h
}

/// Status changes, new and gone trials, and notable times, against the
/// previous run.
fn changes(previous: &Previous, rows: &[Row]) -> String {
    let mut h = String::from("<h2>What changed since the previous run</h2>\n<div class=\"card\">");
    let p = &previous.record;
    let _ = writeln!(
        h,
        "<p class=\"meta\">previous run: <b>{}</b>, kernel <b>{}</b>, {} results, ended {}</p>",
        escape(&previous.source.display().to_string()),
        escape(&p.info.kernel),
        p.results.len(),
        escape(p.date.as_deref().unwrap_or("(unknown)"))
    );
    let groups = [
        (Change::Regressed, "Regressed (passed before)"),
        (Change::Fixed, "Fixed (failed before)"),
        (Change::Status, "Other status changes"),
        (Change::New, "New trials"),
        (Change::Slower, "Slower"),
        (Change::Faster, "Faster"),
    ];
    let mut any = false;
    for (kind, title) in groups {
        let of_kind: Vec<&Row> = rows.iter().filter(|r| r.change() == kind).collect();
        if of_kind.is_empty() {
            continue;
        }
        any = true;
        let _ = writeln!(h, "<h4>{title}: {}</h4>", of_kind.len());
        h.push_str(&change_table(&of_kind));
    }
    if !any {
        h.push_str("<p>No trial changed status, none is new, and no time moved by a fifth and a second.</p>");
    }
    let gone = rows.iter().filter(|r| r.change() == Change::Gone).count();
    if gone > 0 {
        let _ = writeln!(
            h,
            "<p class=\"muted\">{} of the previous run not in this one (another filter or shard).</p>",
            count(gone, "trial")
        );
    }
    h.push_str("</div>\n");
    h
}

fn change_table(rows: &[&Row]) -> String {
    let mut h = String::from(
        "<table><tr><th>trial</th><th>previous</th><th>now</th>\
         <th class=\"num\">previous time</th><th class=\"num\">time</th><th class=\"num\">change</th></tr>\n",
    );
    for r in rows {
        let _ = writeln!(
            h,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td>{}</tr>",
            escape(&r.name),
            outcome_cell(r.previous.as_ref()),
            outcome_cell(r.current.as_ref()),
            time(r.previous.as_ref()),
            time(r.current.as_ref()),
            delta_cell(r)
        );
    }
    h.push_str("</table>\n");
    h
}

fn outcome_cell(t: Option<&Tally>) -> String {
    match t {
        None => "<span class=\"muted\">-</span>".to_owned(),
        Some(t) if t.runs > 1 => format!("{} {}", badge(t.outcome()), t.fraction()),
        Some(t) => badge(t.outcome()),
    }
}

fn time(t: Option<&Tally>) -> String {
    match t {
        Some(t) if t.runs > 0 => format!("{:.1} s", t.mean.as_secs_f64()),
        _ => "-".to_owned(),
    }
}

/// The time change, coloured when notable.
fn delta_cell(r: &Row) -> String {
    let (Some(p), Some(c)) = (&r.previous, &r.current) else {
        return "<td class=\"num\"></td>".to_owned();
    };
    if p.runs == 0 || c.runs == 0 {
        return "<td class=\"num\"></td>".to_owned();
    }
    let d = c.mean.as_secs_f64() - p.mean.as_secs_f64();
    let class = match r.time_change() {
        Some(d) if d > 0.0 => "slower",
        Some(_) => "faster",
        None => "muted",
    };
    let pct = match p.mean.as_secs_f64() {
        b if b > 0.0 => format!(" ({:+.0}%)", 100.0 * d / b),
        _ => String::new(),
    };
    format!("<td class=\"num {class}\">{d:+.1} s{pct}</td>")
}

/// Each failed or errored run: message, kernel reports, transcript. The
/// later runs of a trial that failed with the same message are named on
/// the first one's card instead of repeating it.
fn failures(results: &[TrialResult]) -> String {
    let mut failed: Vec<&TrialResult> = results
        .iter()
        .filter(|r| matches!(r.status, Status::Fail | Status::Error))
        .collect();
    if failed.is_empty() {
        return String::new();
    }
    failed.sort_by(|a, b| (&a.name, a.repetition).cmp(&(&b.name, b.repetition)));
    let mut h = format!("<h2>Failures ({})</h2>\n", failed.len());
    let mut cards: Vec<(&TrialResult, Vec<&TrialResult>)> = Vec::new();
    for r in failed {
        let same = |c: &&mut (&TrialResult, Vec<&TrialResult>)| {
            c.0.name == r.name && c.0.status == r.status && message(c.0) == message(r)
        };
        match cards.iter_mut().find(same) {
            Some((_, again)) => again.push(r),
            None => cards.push((r, Vec::new())),
        }
    }
    for (r, again) in cards {
        h.push_str(&card(r, &again));
    }
    h
}

/// One failure's card; `again`: the runs that failed the same way.
fn card(r: &TrialResult, again: &[&TrialResult]) -> String {
    let mut h = format!(
        "<div class=\"card\" id=\"{}\"><h3>{} {}</h3>\n",
        anchor(r),
        status_badge(r.status),
        escape(&r.display_name())
    );
    if let Some(p) = &r.evidence {
        let _ = writeln!(
            h,
            "<p class=\"meta\">evidence: <b>{}</b></p>",
            escape(&p.display().to_string())
        );
    }
    if !again.is_empty() {
        let _ = writeln!(
            h,
            "<p class=\"meta\">the same message in {}:</p><pre>{}</pre>",
            count(again.len(), "more run"),
            escape(
                &again
                    .iter()
                    .map(|a| {
                        let folder = a.evidence.as_ref().map(|p| p.display().to_string());
                        format!("{}  {}", a.display_name(), folder.unwrap_or_default())
                    })
                    .collect::<Vec<_>>()
                    .join("\n")
            )
        );
    }
    let _ = writeln!(h, "<pre>{}</pre>", diff_lines(message(r)));
    if let Some(p) = &r.evidence {
        h.push_str(&evidence(p));
    }
    h.push_str("</div>\n");
    h
}

/// A failure's message without the evidence line.
fn message(r: &TrialResult) -> &str {
    without_evidence(r.message.as_deref().unwrap_or_default())
}

/// A failure message without its last line, `evidence: FOLDER`, which
/// the card shows apart.
fn without_evidence(message: &str) -> &str {
    let trimmed = message.trim_end();
    match trimmed.rsplit_once('\n') {
        Some((head, last)) if last.starts_with("evidence: ") => head,
        _ => trimmed,
    }
}

/// The kernel reports in the trial's transcript, and the transcript folded.
fn evidence(folder: &Path) -> String {
    let path = folder.join("transcript.txt");
    let Ok(text) = std::fs::read_to_string(&path) else {
        return format!(
            "<p class=\"muted\">no {} here (a CI job keeps it among its artifacts)</p>\n",
            escape(&path.display().to_string())
        );
    };
    let mut h = String::new();
    let reports = evidence_reports(&text);
    if !reports.is_empty() {
        let _ = writeln!(h, "<h4>kernel reports ({})</h4>", reports.len());
    }
    for (step, lines) in reports {
        let _ = writeln!(
            h,
            "<pre><span class=\"hunk\">{}</span>\n{}</pre>",
            escape(&step),
            escape(&lines.join("\n"))
        );
    }
    let cut = if text.len() > TRANSCRIPT_MAX {
        let end = (0..=TRANSCRIPT_MAX)
            .rev()
            .find(|i| text.is_char_boundary(*i))
            .unwrap_or(0);
        format!(
            "{}\n[... cut: the whole transcript is in the file]",
            &text[..end]
        )
    } else {
        text.clone()
    };
    let _ = writeln!(
        h,
        "<details><summary>step transcript ({} lines)</summary><pre>{}</pre></details>",
        text.lines().count(),
        escape(&cut)
    );
    h
}

/// Every trial: outcome (pass rate when repeated), time, and the previous
/// run's beside them.
fn trials(run: &RunRecord, rows_with_previous: Option<&[Row]>) -> String {
    let own;
    let rows = match rows_with_previous {
        Some(rows) => rows,
        None => {
            own = rows(&[], &run.results);
            &own
        }
    };
    let with_previous = rows_with_previous.is_some();
    let mut h = String::from(
        "<h2>All trials</h2>\n<table><tr><th>trial</th><th>status</th><th class=\"num\">time</th>",
    );
    if with_previous {
        h.push_str(
            "<th>previous</th><th class=\"num\">previous time</th><th class=\"num\">change</th>",
        );
    }
    h.push_str("</tr>\n");
    let failing: Vec<&TrialResult> = run
        .results
        .iter()
        .filter(|r| r.evidence.is_some())
        .collect();
    for r in rows.iter().filter(|r| r.current.is_some()) {
        let link = failing
            .iter()
            .find(|f| f.name == r.name)
            .map(|f| format!("<a href=\"#{}\">{}</a>", anchor(f), escape(&r.name)))
            .unwrap_or_else(|| escape(&r.name));
        let _ = write!(
            h,
            "<tr><td>{link}</td><td>{}</td><td class=\"num\">{}</td>",
            outcome_cell(r.current.as_ref()),
            time(r.current.as_ref())
        );
        if with_previous {
            let _ = write!(
                h,
                "<td>{}</td><td class=\"num\">{}</td>{}",
                outcome_cell(r.previous.as_ref()),
                time(r.previous.as_ref()),
                delta_cell(r)
            );
        }
        h.push_str("</tr>\n");
    }
    h.push_str("</table>\n");
    h
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::runner::result::sample;

    #[test]
    fn a_page_of_a_run_against_its_previous() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("transcript.txt"),
            "### step 2 (0.1 s): echo <x>\nexit: Some(0) signal: None\n--- stdout\n<script>\n--- stderr\n\n--- kernel\n[    5.000000] <4> BUG: kernel NULL pointer dereference, address: 0000000000000300\n\n",
        )
        .unwrap();
        let mut bad = sample("s::bad::nfit-1", Status::Fail);
        bad.evidence = Some(dir.path().to_owned());
        bad.message = Some("step 2: <exit> 1\n--- a.snap\n+++ this run\n-old\n+new".into());
        let mut slow = sample("s::slow::nfit-1", Status::Pass);
        slow.duration = Duration::from_secs(9);
        let run = RunRecord {
            results: vec![bad, slow.clone()],
            ..Default::default()
        };
        let mut before = slow;
        before.duration = Duration::from_secs(3);
        let previous = Previous {
            source: "/r/previous.json".into(),
            record: RunRecord {
                results: vec![sample("s::bad::nfit-1", Status::Pass), before],
                ..Default::default()
            },
        };
        let page = render(&run, Some(&previous));
        assert!(
            !page.contains("<script>") && !page.contains("<exit>"),
            "unescaped guest output"
        );
        assert!(page.contains("&lt;script&gt;"));
        assert!(page.contains("<span class=\"del\">-old</span>"));
        assert!(page.contains("BUG: kernel NULL pointer dereference"));
        assert!(page.contains("<h4>Regressed (passed before): 1</h4>"));
        assert!(page.contains("<h4>Slower: 1</h4>"));
        assert!(
            page.contains("<td class=\"num slower\">+6.0 s (+200%)</td>"),
            "{page}"
        );
        assert!(page.contains("href=\"#f-s--bad--nfit-1\""));
        assert!(page.contains("id=\"f-s--bad--nfit-1\""));
    }

    #[test]
    fn runs_that_failed_alike_share_a_card() {
        let runs: Vec<TrialResult> = (1..=3)
            .map(|n| {
                let mut r = sample("s::bad::nfit-1", Status::Fail);
                r.repetition = Some(n);
                r.message = Some(match n {
                    2 => "step 1: exit 2\nevidence: /runs/x.rep2".into(),
                    _ => format!("step 1: exit 1\nevidence: /runs/x.rep{n}"),
                });
                r.evidence = Some(format!("/runs/x.rep{n}").into());
                r
            })
            .collect();
        let page = failures(&runs);
        assert!(page.starts_with("<h2>Failures (3)</h2>"), "{page}");
        assert_eq!(page.matches("class=\"card\"").count(), 2, "{page}");
        assert!(
            page.contains(
                "the same message in 1 more run:</p><pre>s::bad::nfit-1#3  /runs/x.rep3</pre>"
            ),
            "{page}"
        );
        // No outside resources: nothing to fetch.
        assert!(!page.contains("http://") && !page.contains("https://") && !page.contains("src="));
    }
}
