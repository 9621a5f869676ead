//! compare.html: the comparison as a page, every differing trial with its
//! diffs, what the guests printed escaped.

use std::fmt::Write as _;

use super::Comparison;
use crate::runner::reporter::html::diff_lines;
pub(super) use crate::runner::reporter::html::escape;

/// One page, no outside resources: sides, counts, then each differing
/// trial as a folded section with its diffs coloured.
pub fn render_html(c: &Comparison) -> String {
    let mut h = String::new();
    h.push_str("<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>ndharness compare</title>\n<style>\n");
    h.push_str("body{font-family:sans-serif;margin:2em;max-width:110em}pre{background:#f6f6f6;padding:.6em;overflow-x:auto}\n");
    h.push_str(
        ".add{color:#064;background:#e6ffec}.del{color:#800;background:#ffebe9}.hunk{color:#555}\n",
    );
    h.push_str("table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:.2em .6em;text-align:left}\n");
    h.push_str(".same{color:#064}.differs{color:#800;font-weight:bold}.nc{color:#a60}\n</style></head><body>\n");
    h.push_str("<h1>ndharness compare</h1>\n<table><tr><th></th><th>guest</th><th>image</th><th>kernel</th><th>ndctl</th><th>exit</th></tr>\n");
    for (label, s) in [("baseline", &c.baseline), ("candidate", &c.candidate)] {
        let _ = writeln!(
            h,
            "<tr><th>{label}</th><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            escape(&s.spec),
            escape(&s.info.image),
            escape(&s.info.kernel),
            escape(&s.info.ndctl_source),
            s.exit_code
        );
    }
    let differ = c.differing().count();
    let nc = c.incomparable().count();
    let _ = writeln!(
        h,
        "</table>\n<p>{} trials: {} the same, <span class=\"differs\">{differ} differ</span>, <span class=\"nc\">{nc} not compared</span>.</p>",
        c.trials.len(),
        c.trials.len() - differ - nc
    );
    h.push_str(
        "<table><tr><th>trial</th><th>baseline</th><th>candidate</th><th>result</th></tr>\n",
    );
    for t in &c.trials {
        let (class, word) = match (t.comparable, t.same) {
            (false, _) => ("nc", "not compared".to_owned()),
            (true, true) => ("same", "same".to_owned()),
            (true, false) => (
                "differs",
                t.aspects
                    .iter()
                    .filter(|a| !a.same)
                    .map(|a| a.what.clone())
                    .collect::<Vec<_>>()
                    .join(", "),
            ),
        };
        let link = if t.comparable && !t.same {
            format!("<a href=\"#{0}\">{0}</a>", escape(&t.name))
        } else {
            escape(&t.name)
        };
        let _ = writeln!(
            h,
            "<tr><td>{link}</td><td>{}</td><td>{}</td><td class=\"{class}\">{}</td></tr>",
            t.baseline,
            t.candidate,
            escape(&word)
        );
    }
    h.push_str("</table>\n");
    for t in c.differing() {
        let _ = writeln!(
            h,
            "<details open id=\"{0}\"><summary><b>{0}</b>: baseline {1}, candidate {2}</summary>",
            escape(&t.name),
            t.baseline,
            t.candidate
        );
        for m in [&t.baseline_message, &t.candidate_message]
            .into_iter()
            .flatten()
        {
            let _ = writeln!(h, "<pre>{}</pre>", escape(m));
        }
        for a in t.aspects.iter().filter(|a| !a.same) {
            let _ = writeln!(h, "<h4>{}</h4>", escape(&a.what));
            let Some(d) = &a.diff else { continue };
            let _ = writeln!(h, "<pre>{}</pre>", diff_lines(d));
        }
        h.push_str("</details>\n");
    }
    h.push_str("</body></html>\n");
    h
}
