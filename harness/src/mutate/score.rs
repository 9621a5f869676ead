//! What each mutant came to (killed by which checks, timed out, survived,
//! did not build), and the mutation score per check set: the conformance suites,
//! ndctl's tests, the mock buses' cases, power cuts, explore, and any of
//! them. As text, mutate.json and mutate.html.

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use super::Mutant;
use crate::runner::compare::Hang;

/// How a mutant ended.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "outcome", rename_all = "kebab-case")]
pub enum Fate {
    /// Some check saw it: these trials (or explore findings) differ from
    /// the unmutated kernel's.
    Killed {
        by: Vec<Kill>,
    },
    /// Every check that saw it hung: the mutant's guests never came up
    /// (where the unmutated kernel's did), or its steps never finished.
    /// Seen, so counted as killed by those checks' sets.
    TimedOut {
        by: Vec<Kill>,
    },
    /// Every check came out as on the unmutated kernel.
    Survived,
    DidNotApply {
        why: String,
    },
    DidNotBuild {
        why: String,
    },
    /// The harness failed (not the mutant's doing): not counted.
    Error {
        why: String,
    },
}

/// One check that saw a mutant.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Kill {
    /// The trial, or `explore: INVARIANT (HOW) at OP on TOPOLOGY`.
    pub check: String,
    pub set: &'static str,
    /// `pass -> FAIL`, or what differs.
    pub how: String,
    /// The mutant's guest hung here.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hung: Option<Hang>,
}

impl Fate {
    /// Killed, or timed out when every check that saw the mutant hung.
    pub fn seen_by(by: Vec<Kill>) -> Fate {
        if !by.is_empty() && by.iter().all(|k| k.hung.is_some()) {
            Fate::TimedOut { by }
        } else {
            Fate::Killed { by }
        }
    }

    /// The checks that saw it, killed or timed out.
    pub fn seen(&self) -> Option<&[Kill]> {
        match self {
            Fate::Killed { by } | Fate::TimedOut { by } => Some(by),
            _ => None,
        }
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct MutantResult {
    #[serde(flatten)]
    pub mutant: Mutant,
    #[serde(flatten)]
    pub fate: Fate,
    pub build_seconds: f64,
    pub run_seconds: f64,
}

/// The check sets scores are given for.
pub const SETS: [&str; 5] = [
    "suites",
    "ndctl's tests",
    "mock buses",
    "power cuts",
    "explore",
];

/// The check set of a trial (or an explore finding).
pub fn check_set(check: &str) -> &'static str {
    let suite = check.split("::").next().unwrap_or_default();
    match suite {
        _ if check.starts_with("explore: ") => "explore",
        "ndctl" => "ndctl's tests",
        "power-cut" => "power cuts",
        "cxl-test" | "nfit-test" => "mock buses",
        _ => "suites",
    }
}

/// One set's score: mutants it killed, of those that built and ran.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Score {
    pub set: &'static str,
    pub killed: usize,
    pub of: usize,
}

/// A score as the last run's mutate.json has it, for the score from run
/// to run.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PreviousScore {
    pub set: String,
    pub killed: usize,
    pub of: usize,
}

/// The scores of a mutate.json (none when it is not one).
pub fn previous_scores(report_json: &str) -> Vec<PreviousScore> {
    #[derive(Deserialize)]
    struct Scores {
        scores: Vec<PreviousScore>,
    }
    serde_json::from_str::<Scores>(report_json).map_or_else(|_| Vec::new(), |r| r.scores)
}

/// The previous run's scores as one line (`any 38 of 43, suites ...`).
pub fn render_previous(previous: &[PreviousScore]) -> Option<String> {
    let parts: Vec<String> = previous
        .iter()
        .map(|s| format!("{} {} of {}", s.set, s.killed, s.of))
        .collect();
    (!parts.is_empty()).then(|| parts.join(", "))
}

impl Score {
    pub fn percent(&self) -> f64 {
        if self.of == 0 {
            0.0
        } else {
            100.0 * self.killed as f64 / self.of as f64
        }
    }
}

/// The score of each set that ran, then `any` (killed by some set).
pub fn scores(results: &[MutantResult], ran: &[&'static str]) -> Vec<Score> {
    let judged: Vec<&MutantResult> = results
        .iter()
        .filter(|r| r.fate.seen().is_some() || r.fate == Fate::Survived)
        .collect();
    let killed_by = |set: Option<&str>| {
        judged
            .iter()
            .filter(|r| {
                r.fate
                    .seen()
                    .is_some_and(|by| by.iter().any(|k| set.is_none_or(|s| k.set == s)))
            })
            .count()
    };
    let mut out: Vec<Score> = SETS
        .iter()
        .filter(|s| ran.contains(s))
        .map(|set| Score {
            set,
            killed: killed_by(Some(set)),
            of: judged.len(),
        })
        .collect();
    out.push(Score {
        set: "any",
        killed: killed_by(None),
        of: judged.len(),
    });
    out
}

fn outcome_word(o: &Fate) -> &'static str {
    match o {
        Fate::Killed { .. } => "killed",
        Fate::TimedOut { .. } => "timed-out",
        Fate::Survived => "SURVIVED",
        Fate::DidNotApply { .. } => "no-apply",
        Fate::DidNotBuild { .. } => "no-build",
        Fate::Error { .. } => "ERROR",
    }
}

/// A mutant's line: its fate, rebuild and check seconds, name, and what
/// killed it (or what should have, or why it did not run).
pub fn render_line(r: &MutantResult) -> String {
    let detail = match &r.fate {
        Fate::Killed { by } | Fate::TimedOut { by } => {
            let first: Vec<&str> = by.iter().take(3).map(|k| k.check.as_str()).collect();
            let more = by.len().saturating_sub(3);
            let more = if more > 0 {
                format!(" +{more}")
            } else {
                String::new()
            };
            format!("by {}{more}", first.join(", "))
        }
        Fate::Survived => r.mutant.expect.clone(),
        Fate::DidNotApply { why } | Fate::DidNotBuild { why } | Fate::Error { why } => {
            why.lines().next().unwrap_or_default().to_owned()
        }
    };
    format!(
        "{:<9} {:>5.0}s {:>5.0}s  {}  {detail}",
        outcome_word(&r.fate),
        r.build_seconds,
        r.run_seconds,
        r.mutant.name
    )
}

/// One line per mutant, then the scores and the time per mutant.
pub fn render_text(results: &[MutantResult], scores: &[Score]) -> String {
    let mut out = String::new();
    for r in results {
        let _ = writeln!(out, "  {}", render_line(r));
    }
    let _ = writeln!(out, "\n  score by check set");
    for s in scores {
        let _ = writeln!(
            out,
            "  {:<14} {:>3} of {:<3} {:>5.1}%",
            s.set,
            s.killed,
            s.of,
            s.percent()
        );
    }
    let ran: Vec<&MutantResult> = results.iter().filter(|r| r.run_seconds > 0.0).collect();
    if !ran.is_empty() {
        let median = |mut v: Vec<f64>| {
            v.sort_by(f64::total_cmp);
            v[v.len() / 2]
        };
        let _ = writeln!(
            out,
            "  per mutant (median): rebuild {:.0}s, run {:.0}s",
            median(ran.iter().map(|r| r.build_seconds).collect()),
            median(ran.iter().map(|r| r.run_seconds).collect())
        );
    }
    out
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// mutate.html: the scores, then each mutant with its class, what it
/// models and what killed it.
pub fn render_html(
    results: &[MutantResult],
    scores: &[Score],
    previous: &[PreviousScore],
    title: &str,
) -> String {
    let mut rows = String::new();
    for r in results {
        let by = match &r.fate {
            Fate::Killed { by } | Fate::TimedOut { by } => by
                .iter()
                .map(|k| {
                    let hung = k
                        .hung
                        .map(|h| format!(", hung: {}", h.describe()))
                        .unwrap_or_default();
                    format!(
                        "{} <small>({}, {}{hung})</small>",
                        escape(&k.check),
                        k.set,
                        escape(&k.how)
                    )
                })
                .collect::<Vec<_>>()
                .join("<br>"),
            Fate::DidNotApply { why } | Fate::DidNotBuild { why } | Fate::Error { why } => {
                format!("<pre>{}</pre>", escape(why))
            }
            Fate::Survived => String::new(),
        };
        let _ = writeln!(
            rows,
            "<tr class=\"{}\"><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{by}</td><td>{:.0}s + {:.0}s</td></tr>",
            outcome_word(&r.fate).to_lowercase(),
            escape(&r.mutant.name),
            escape(&r.mutant.class),
            outcome_word(&r.fate),
            escape(&r.mutant.expect),
            r.build_seconds,
            r.run_seconds
        );
    }
    let score_rows: String = scores
        .iter()
        .map(|s| {
            let before = previous
                .iter()
                .find(|p| p.set == s.set)
                .map_or("-".to_owned(), |p| format!("{} of {}", p.killed, p.of));
            format!(
                "<tr><td>{}</td><td>{} of {}</td><td>{:.1}%</td><td>{}</td></tr>",
                s.set,
                s.killed,
                s.of,
                s.percent(),
                escape(&before)
            )
        })
        .collect();
    format!(
        "<!doctype html><meta charset=utf-8><title>{t}</title>\
         <style>body{{font-family:sans-serif}}td{{vertical-align:top;padding:2px 8px}}\
         tr.survived{{background:#fdd}}tr.killed,tr.timed-out{{background:#efe}}pre{{margin:0;white-space:pre-wrap}}</style>\
         <h1>{t}</h1><h2>Score by check set</h2>\
         <table><tr><th>check set</th><th>killed</th><th></th><th>the run before</th></tr>{score_rows}</table>\
         <h2>Mutants</h2><table><tr><th>mutant</th><th>class</th><th>outcome</th><th>expected</th><th>killed by</th><th>rebuild + run</th></tr>\n{rows}</table>",
        t = escape(title)
    )
}

#[cfg(test)]
mod tests {
    use super::super::Origin;
    use super::*;
    use crate::overlay::Change;

    fn result(name: &str, fate: Fate) -> MutantResult {
        MutantResult {
            mutant: Mutant {
                name: name.into(),
                class: "off-by-one".into(),
                models: "none".into(),
                expect: "a create fails".into(),
                origin: Origin::Hand {
                    file: "x.patch".into(),
                },
                change: Change::none(name),
                variants: Vec::new(),
            },
            fate,
            build_seconds: 20.0,
            run_seconds: 60.0,
        }
    }

    fn kill(check: &str) -> Kill {
        Kill {
            check: check.into(),
            set: check_set(check),
            how: "pass -> FAIL".into(),
            hung: None,
        }
    }

    #[test]
    fn scores_count_what_each_set_killed_of_what_ran() {
        let results = vec![
            result(
                "a",
                Fate::Killed {
                    by: vec![
                        kill("basic::x::nfit-1"),
                        kill("ndctl::create.sh::nfit-test-modules"),
                    ],
                },
            ),
            result(
                "b",
                Fate::Killed {
                    by: vec![kill("power-cut::create::cxl-x2")],
                },
            ),
            result("c", Fate::Survived),
            result(
                "d",
                Fate::DidNotBuild {
                    why: "error: x".into(),
                },
            ),
        ];
        let s = scores(&results, &SETS);
        let get = |set: &str| s.iter().find(|x| x.set == set).map(|x| (x.killed, x.of));
        assert_eq!(get("suites"), Some((1, 3)));
        assert_eq!(get("ndctl's tests"), Some((1, 3)));
        assert_eq!(get("power cuts"), Some((1, 3)));
        assert_eq!(get("explore"), Some((0, 3)));
        assert_eq!(get("any"), Some((2, 3)));
        let text = render_text(&results, &s);
        assert!(
            text.contains("SURVIVED") && text.contains("no-build") && text.contains("66.7%"),
            "{text}"
        );
        let previous = previous_scores(r#"{"scores": [{"set": "any", "killed": 1, "of": 3}]}"#);
        let html = render_html(&results, &s, &previous, "mutate");
        assert!(html.contains("<tr class=\"survived\">"));
        assert!(
            html.contains("<td>any</td><td>2 of 3</td><td>66.7%</td><td>1 of 3</td>"),
            "{html}"
        );
        assert_eq!(render_previous(&previous).as_deref(), Some("any 1 of 3"));
        assert!(previous_scores("not a report").is_empty());
    }

    #[test]
    fn a_mutant_every_check_saw_hang_timed_out_and_counts_as_seen() {
        let hung = |check: &str, hang| Kill {
            hung: Some(hang),
            ..kill(check)
        };
        let timed_out = Fate::seen_by(vec![
            hung("basic::x::nfit-1", Hang::Boot),
            hung("ndctl::create.sh::nfit-test-modules", Hang::Step(2)),
        ]);
        assert!(matches!(timed_out, Fate::TimedOut { .. }), "{timed_out:?}");
        let killed = Fate::seen_by(vec![
            hung("basic::x::nfit-1", Hang::Boot),
            kill("power-cut::create::cxl-x2"),
        ]);
        assert!(matches!(killed, Fate::Killed { .. }), "{killed:?}");
        let results = vec![result("t", timed_out), result("s", Fate::Survived)];
        let s = scores(&results, &SETS);
        let any = s.iter().find(|x| x.set == "any").unwrap();
        assert_eq!((any.killed, any.of), (1, 2));
        let text = render_text(&results, &s);
        assert!(
            text.contains("timed-out") && text.contains("by basic::x::nfit-1"),
            "{text}"
        );
    }

    #[test]
    fn checks_fall_in_their_sets() {
        assert_eq!(
            check_set("explore: no-kernel-report at create on cxl-x2"),
            "explore"
        );
        assert_eq!(
            check_set("cxl-test::labels-and-regions::cxl-test"),
            "mock buses"
        );
        assert_eq!(check_set("sizes::aligned-multiples::cxl-x6"), "suites");
    }
}
