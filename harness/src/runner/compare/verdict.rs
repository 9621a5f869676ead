//! A patch's verdict from a comparison of its baseline and its candidate
//! (`ndharness validate`, `ndharness mutate`): per trial whether the
//! change fixed it (its status better), regressed it (its status worse),
//! changed what it shows (the same status, other output: a behaviour
//! change to review, which gates as a regression does), left it as it
//! was, or touched a trial that already varies on the baseline (flaky
//! there: not the patch's doing); then one word for the whole: no change,
//! fixes, changes (behaviour to review, no status worse) or regresses.
//! Pure: what ran is in the [`Comparison`].

use std::collections::BTreeSet;

use serde::Serialize;

use super::{Comparison, Hang, TrialComparison};

/// What the change did to one trial.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Effect {
    /// Worse status.
    Regresses,
    /// The same status, other output (transcript, layout, kernel log).
    Changes,
    /// Better status.
    Fixes,
    /// It differs, but it already differs between runs of the baseline.
    FlakyOnBaseline,
    /// A side could not run it (infrastructure error, not run).
    NotCompared,
    Same,
}

impl Effect {
    pub fn word(self) -> &'static str {
        match self {
            Effect::Regresses => "regresses",
            Effect::Changes => "changes",
            Effect::Fixes => "fixes",
            Effect::FlakyOnBaseline => "flaky",
            Effect::NotCompared => "not compared",
            Effect::Same => "same",
        }
    }
}

/// One trial's effect, with what differs.
#[derive(Clone, Debug, Serialize)]
pub struct TrialEffect {
    pub name: String,
    pub effect: Effect,
    pub baseline: String,
    pub candidate: String,
    /// The aspects that differ (`status`, `transcript`, `layout layout`...).
    pub differs: Vec<String>,
    /// The candidate's failure message, first line, when it did not pass.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub said: Option<String>,
    /// The candidate hung here (its guest never came up, or a step never
    /// finished).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hung: Option<Hang>,
}

/// The whole change in one word.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Word {
    NoChange,
    Fixes,
    /// No status worse, but some trial shows other output: a behaviour
    /// change to review, which gates as a regression does.
    Changes,
    Regresses,
}

#[derive(Clone, Debug, Serialize)]
pub struct PatchVerdict {
    pub verdict: Word,
    /// Every trial that is not the same, worst first.
    pub trials: Vec<TrialEffect>,
    pub same: usize,
}

impl PatchVerdict {
    pub fn count(&self, effect: Effect) -> usize {
        self.trials.iter().filter(|t| t.effect == effect).count()
    }

    /// As `run`'s: 1 a regression or a behaviour change, else 2 a trial
    /// not compared (infrastructure), else 0.
    pub fn exit_code(&self) -> u8 {
        if matches!(self.verdict, Word::Regresses | Word::Changes) {
            1
        } else if self.count(Effect::NotCompared) > 0 {
            2
        } else {
            0
        }
    }

    /// Adds explore's difference: a finding only the candidate has
    /// regresses, one only the baseline has is fixed.
    pub fn add_explore(&mut self, only_baseline: &[String], only_candidate: &[String]) {
        for (found, effect, before, after) in [
            (only_candidate, Effect::Regresses, "no finding", "finding"),
            (only_baseline, Effect::Fixes, "finding", "no finding"),
        ] {
            for f in found {
                self.trials.push(TrialEffect {
                    name: format!("explore: {f}"),
                    effect,
                    baseline: before.into(),
                    candidate: after.into(),
                    differs: Vec::new(),
                    said: None,
                    hung: None,
                });
            }
        }
        self.trials
            .sort_by(|a, b| (a.effect, &a.name).cmp(&(b.effect, &b.name)));
        self.verdict = word(&self.trials);
    }

    /// The verdict line and one line per trial that is not the same.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for t in &self.trials {
            let differs = if t.differs.is_empty() {
                String::new()
            } else {
                format!("  ({} differs)", t.differs.join(", "))
            };
            out.push_str(&format!(
                "  {:<12} {}  {} -> {}{differs}\n",
                t.effect.word(),
                t.name,
                t.baseline,
                t.candidate
            ));
            if let Some(said) = &t.said {
                out.push_str(&format!("               {said}\n"));
            }
        }
        let word = match self.verdict {
            Word::NoChange => "no change",
            Word::Fixes => "fixes",
            Word::Changes => "changes",
            Word::Regresses => "regresses",
        };
        let mut counts = vec![format!("{} same", self.same)];
        for effect in [
            Effect::Regresses,
            Effect::Changes,
            Effect::Fixes,
            Effect::FlakyOnBaseline,
            Effect::NotCompared,
        ] {
            let n = self.count(effect);
            if n > 0 {
                counts.push(format!("{n} {}", effect.word()));
            }
        }
        out.push_str(&format!("verdict: {word} ({})\n", counts.join(", ")));
        out
    }
}

/// How good a status is: a pass over a failure; `None` for what says
/// nothing of the kernel (an error, a trial not run).
fn rank(status: &str) -> Option<u8> {
    match status {
        "pass" => Some(2),
        "FAIL" | "known" => Some(1),
        "ignored" => Some(0),
        _ => None,
    }
}

fn effect(t: &TrialComparison, flaky: &BTreeSet<String>) -> Effect {
    if t.same {
        return Effect::Same;
    }
    // To `run` a guest that never comes up is the host's trouble; here
    // the baseline's came up on the same host with the same harness, so
    // the candidate's kernel is what hangs.
    if t.candidate_hung == Some(Hang::Boot) && rank(&t.baseline).is_some() {
        return if flaky.contains(&t.name) {
            Effect::FlakyOnBaseline
        } else {
            Effect::Regresses
        };
    }
    let (Some(b), Some(c)) = (rank(&t.baseline), rank(&t.candidate)) else {
        return Effect::NotCompared;
    };
    if flaky.contains(&t.name) {
        return Effect::FlakyOnBaseline;
    }
    match c.cmp(&b) {
        std::cmp::Ordering::Greater => Effect::Fixes,
        std::cmp::Ordering::Less => Effect::Regresses,
        std::cmp::Ordering::Equal => Effect::Changes,
    }
}

/// The verdict on `comparison`; `flaky` names the trials that already
/// differ between runs of the baseline.
pub fn judge(comparison: &Comparison, flaky: &BTreeSet<String>) -> PatchVerdict {
    let mut trials: Vec<TrialEffect> = comparison
        .trials
        .iter()
        .map(|t| (t, effect(t, flaky)))
        .map(|(t, effect)| TrialEffect {
            name: t.name.clone(),
            effect,
            baseline: t.baseline.clone(),
            candidate: t.candidate.clone(),
            differs: t
                .aspects
                .iter()
                .filter(|a| !a.same)
                .map(|a| a.what.clone())
                .collect(),
            said: match (t.candidate_hung, effect) {
                (Some(Hang::Boot), Effect::Regresses) => Some(format!(
                    "{}, where the baseline's did (the serial console's last lines are in its message)",
                    Hang::Boot.describe()
                )),
                _ => t
                    .candidate_message
                    .as_deref()
                    .and_then(|m| m.lines().next())
                    .map(str::to_owned),
            },
            hung: t.candidate_hung,
        })
        .collect();
    let same = trials.iter().filter(|t| t.effect == Effect::Same).count();
    trials.retain(|t| t.effect != Effect::Same);
    trials.sort_by(|a, b| (a.effect, &a.name).cmp(&(b.effect, &b.name)));
    PatchVerdict {
        verdict: word(&trials),
        trials,
        same,
    }
}

/// The word for trials' effects: any regression regresses; else any
/// behaviour change changes; else any fix fixes.
fn word(trials: &[TrialEffect]) -> Word {
    let any = |effect| trials.iter().any(|t| t.effect == effect);
    if any(Effect::Regresses) {
        Word::Regresses
    } else if any(Effect::Changes) {
        Word::Changes
    } else if any(Effect::Fixes) {
        Word::Fixes
    } else {
        Word::NoChange
    }
}

/// The trials that differ between two runs of the same side.
pub fn differing(comparison: &Comparison) -> BTreeSet<String> {
    comparison
        .trials
        .iter()
        .filter(|t| !t.same)
        .map(|t| t.name.clone())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::super::{Aspect, Side};
    use super::*;

    fn side() -> Side {
        Side {
            spec: "x".into(),
            info: Default::default(),
            exit_code: 0,
            snapshots: Default::default(),
            results: Vec::new(),
        }
    }

    fn trial(
        name: &str,
        baseline: &str,
        candidate: &str,
        transcript_same: bool,
    ) -> TrialComparison {
        let aspects = vec![
            Aspect {
                what: "status".into(),
                same: baseline == candidate,
                diff: None,
            },
            Aspect {
                what: "transcript".into(),
                same: transcript_same,
                diff: None,
            },
        ];
        TrialComparison {
            name: name.into(),
            baseline: baseline.into(),
            candidate: candidate.into(),
            comparable: rank(baseline).is_some() && rank(candidate).is_some(),
            same: aspects.iter().all(|a| a.same),
            aspects,
            baseline_message: None,
            candidate_message: (candidate != "pass").then(|| "step 3: exit code 1\nmore".into()),
            candidate_hung: None,
        }
    }

    fn comparison(trials: Vec<TrialComparison>) -> Comparison {
        Comparison {
            baseline: side(),
            candidate: side(),
            trials,
        }
    }

    #[test]
    fn nothing_differs_no_change() {
        let c = comparison(vec![
            trial("a", "pass", "pass", true),
            trial("b", "known", "known", true),
        ]);
        let v = judge(&c, &BTreeSet::new());
        assert_eq!((v.verdict, v.same, v.exit_code()), (Word::NoChange, 2, 0));
    }

    #[test]
    fn a_worse_status_or_other_output_regresses_and_names_the_trial() {
        let c = comparison(vec![
            trial("a", "pass", "FAIL", false),
            trial("b", "pass", "pass", false),
            trial("c", "known", "pass", false),
        ]);
        let v = judge(&c, &BTreeSet::new());
        assert_eq!((v.verdict, v.exit_code()), (Word::Regresses, 1));
        let effects: Vec<(&str, Effect)> = v
            .trials
            .iter()
            .map(|t| (t.name.as_str(), t.effect))
            .collect();
        assert_eq!(
            effects,
            [
                ("a", Effect::Regresses),
                ("b", Effect::Changes),
                ("c", Effect::Fixes)
            ]
        );
        let text = v.render();
        assert!(
            text.contains("regresses    a  pass -> FAIL  (status, transcript differs)"),
            "{text}"
        );
        assert!(
            text.contains("step 3: exit code 1")
                && text.ends_with("verdict: regresses (0 same, 1 regresses, 1 changes, 1 fixes)\n"),
            "{text}"
        );
    }

    #[test]
    fn other_output_with_no_worse_status_changes_and_gates() {
        let c = comparison(vec![
            trial("b", "pass", "pass", false),
            trial("c", "known", "pass", false),
        ]);
        let v = judge(&c, &BTreeSet::new());
        assert_eq!((v.verdict, v.exit_code()), (Word::Changes, 1));
        let text = v.render();
        assert!(
            text.ends_with("verdict: changes (0 same, 1 changes, 1 fixes)\n"),
            "{text}"
        );
    }

    #[test]
    fn a_better_status_alone_fixes() {
        let c = comparison(vec![
            trial("p", "known", "pass", false),
            trial("q", "pass", "pass", true),
        ]);
        let v = judge(&c, &BTreeSet::new());
        assert_eq!((v.verdict, v.exit_code()), (Word::Fixes, 0));
    }

    #[test]
    fn a_difference_the_baseline_already_has_is_flaky_not_a_regression() {
        let c = comparison(vec![trial("f", "pass", "FAIL", false)]);
        let flaky = BTreeSet::from(["f".to_owned()]);
        let v = judge(&c, &flaky);
        assert_eq!(
            (v.verdict, v.trials[0].effect),
            (Word::NoChange, Effect::FlakyOnBaseline)
        );
    }

    #[test]
    fn an_infrastructure_error_is_not_compared_and_exits_2() {
        let c = comparison(vec![trial("e", "pass", "ERROR", false)]);
        let v = judge(&c, &BTreeSet::new());
        assert_eq!((v.verdict, v.exit_code()), (Word::NoChange, 2));
    }

    #[test]
    fn a_candidate_whose_guest_never_comes_up_regresses_where_the_baseline_ran() {
        let mut hung = trial("h", "pass", "ERROR", false);
        hung.candidate_hung = Some(Hang::Boot);
        let mut both = trial("e", "ERROR", "ERROR", true);
        both.candidate_hung = Some(Hang::Boot);
        let v = judge(&comparison(vec![hung, both]), &BTreeSet::new());
        assert_eq!((v.verdict, v.exit_code()), (Word::Regresses, 1));
        assert_eq!(v.trials[0].effect, Effect::Regresses);
        let text = v.render();
        assert!(
            text.contains("regresses    h  pass -> ERROR")
                && text.contains(
                    "its guest never came up (the boot timeout), where the baseline's did"
                ),
            "{text}"
        );
        // Where the baseline did not run it, it is not compared.
        let mut unrun = trial("e", "not run", "ERROR", false);
        unrun.candidate_hung = Some(Hang::Boot);
        let v = judge(&comparison(vec![unrun]), &BTreeSet::new());
        assert_eq!((v.verdict, v.exit_code()), (Word::NoChange, 2));
        assert!(!v.render().contains("where the baseline's did"));
    }
}
