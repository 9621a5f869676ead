//! Filter expressions (`run -E`), after nextest's filtersets: predicates
//! on the parts of a trial's name, `suite(GLOB)`, `case(GLOB)`,
//! `topology(GLOB)` and `name(GLOB)` (the whole `suite::case::topology`),
//! on the run's guest, `kernel(GLOB)` and `ndctl(GLOB)` (the names `run`
//! reports: `debian-7.3-mock`, `81`, `own`), and on what the trial is
//! here, `status(runs)`, `status(known)` (it runs, with a known failure
//! for this guest) or `status(ignored)` (it does not run here); joined
//! with `&` (and), `|` (or), `!` (not) and parentheses, `!` binding
//! tightest and `&` tighter than `|`:
//! `suite(cxl) & !topology(cxl-x8) | case(reboot-*)`.

use globset::{Glob, GlobMatcher};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("filter expression `{text}`, at {at}: {why}")]
    Syntax {
        text: String,
        at: usize,
        why: String,
    },
}

/// What a trial is on this run's guest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    /// It runs, and no known failure applies.
    Runs,
    /// It runs, with a known failure for this guest and topology.
    Known,
    /// It does not run here (ignored for this guest, or it cannot).
    Ignored,
}

impl Status {
    const WORDS: [(&'static str, Status); 3] = [
        ("runs", Status::Runs),
        ("known", Status::Known),
        ("ignored", Status::Ignored),
    ];
}

/// What an expression is matched against: a trial on the run's guest.
#[derive(Clone, Copy, Debug)]
pub struct Subject<'a> {
    /// `suite::case::topology`
    pub name: &'a str,
    pub kernel: &'a str,
    /// The ndctl's name and its aliases.
    pub ndctl: &'a [String],
    pub status: Status,
}

/// A parsed expression.
#[derive(Clone, Debug)]
pub enum Expr {
    Suite(GlobMatcher),
    Case(GlobMatcher),
    Topology(GlobMatcher),
    Name(GlobMatcher),
    Kernel(GlobMatcher),
    Ndctl(GlobMatcher),
    Status(Status),
    Not(Box<Expr>),
    And(Box<Expr>, Box<Expr>),
    Or(Box<Expr>, Box<Expr>),
}

impl Expr {
    /// Parses `text`.
    pub fn parse(text: &str) -> Result<Expr, Error> {
        let mut p = Parser { text, at: 0 };
        let expr = p.or()?;
        p.space();
        if p.at < text.len() {
            return Err(p.error("more after the expression"));
        }
        Ok(expr)
    }

    /// Whether the trial matches.
    pub fn matches(&self, subject: &Subject) -> bool {
        let mut parts = subject.name.splitn(3, "::");
        let mut part = || parts.next().unwrap_or("");
        let (suite, case, topology) = (part(), part(), part());
        self.eval(subject, [suite, case, topology])
    }

    fn eval(&self, subject: &Subject, [suite, case, topology]: [&str; 3]) -> bool {
        let parts = [suite, case, topology];
        match self {
            Expr::Suite(g) => g.is_match(suite),
            Expr::Case(g) => g.is_match(case),
            Expr::Topology(g) => g.is_match(topology),
            Expr::Name(g) => g.is_match(subject.name),
            Expr::Kernel(g) => g.is_match(subject.kernel),
            Expr::Ndctl(g) => subject.ndctl.iter().any(|n| g.is_match(n)),
            Expr::Status(status) => subject.status == *status,
            Expr::Not(e) => !e.eval(subject, parts),
            Expr::And(a, b) => a.eval(subject, parts) && b.eval(subject, parts),
            Expr::Or(a, b) => a.eval(subject, parts) || b.eval(subject, parts),
        }
    }
}

struct Parser<'t> {
    text: &'t str,
    at: usize,
}

impl Parser<'_> {
    fn error(&self, why: &str) -> Error {
        Error::Syntax {
            text: self.text.to_owned(),
            at: self.at,
            why: why.to_owned(),
        }
    }

    fn space(&mut self) {
        while self.text[self.at..].starts_with(' ') {
            self.at += 1;
        }
    }

    fn eat(&mut self, token: char) -> bool {
        self.space();
        if self.text[self.at..].starts_with(token) {
            self.at += token.len_utf8();
            true
        } else {
            false
        }
    }

    fn or(&mut self) -> Result<Expr, Error> {
        let mut left = self.and()?;
        while self.eat('|') {
            left = Expr::Or(Box::new(left), Box::new(self.and()?));
        }
        Ok(left)
    }

    fn and(&mut self) -> Result<Expr, Error> {
        let mut left = self.not()?;
        while self.eat('&') {
            left = Expr::And(Box::new(left), Box::new(self.not()?));
        }
        Ok(left)
    }

    fn not(&mut self) -> Result<Expr, Error> {
        if self.eat('!') {
            return Ok(Expr::Not(Box::new(self.not()?)));
        }
        if self.eat('(') {
            let inner = self.or()?;
            if !self.eat(')') {
                return Err(self.error("a `(` without its `)`"));
            }
            return Ok(inner);
        }
        self.predicate()
    }

    fn predicate(&mut self) -> Result<Expr, Error> {
        self.space();
        let rest = &self.text[self.at..];
        let name_len = rest
            .find(|c: char| !c.is_ascii_alphabetic())
            .unwrap_or(rest.len());
        let name = &rest[..name_len];
        if !rest[name_len..].starts_with('(') {
            return Err(self.error(
                "a predicate: suite(..), case(..), topology(..), name(..), kernel(..), ndctl(..) or status(..)",
            ));
        }
        let args = &rest[name_len + 1..];
        let Some(close) = args.find(')') else {
            return Err(self.error("a predicate without its `)`"));
        };
        let pattern = args[..close].trim();
        if name == "status" {
            let Some((_, status)) = Status::WORDS.iter().find(|(w, _)| *w == pattern) else {
                return Err(self.error(&format!("`{pattern}` is no status (runs, known, ignored)")));
            };
            self.at += name_len + 1 + close + 1;
            return Ok(Expr::Status(*status));
        }
        let glob = Glob::new(pattern)
            .map_err(|e| self.error(&format!("`{pattern}` is no glob: {e}")))?
            .compile_matcher();
        let expr = match name {
            "suite" => Expr::Suite(glob),
            "case" => Expr::Case(glob),
            "topology" => Expr::Topology(glob),
            "name" => Expr::Name(glob),
            "kernel" => Expr::Kernel(glob),
            "ndctl" => Expr::Ndctl(glob),
            other => {
                return Err(self.error(&format!(
                    "`{other}` is no predicate (suite, case, topology, name, kernel, ndctl, status)"
                )))
            }
        };
        self.at += name_len + 1 + close + 1;
        Ok(expr)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Whether `e` matches a trial that runs, on a guest with no names.
    fn named(e: &Expr, name: &str) -> bool {
        e.matches(&Subject {
            name,
            kernel: "",
            ndctl: &[],
            status: Status::Runs,
        })
    }

    #[test]
    fn predicates_and_operators_select_as_written() {
        let e = Expr::parse("suite(cxl) & !topology(cxl-x8) | case(reboot-*)").unwrap();
        assert!(named(&e, "cxl::data-round-trip::cxl-x2"));
        assert!(!named(&e, "cxl::data-round-trip::cxl-x8"));
        assert!(named(&e, "labels::reboot-keeps-namespaces::nfit-1"));
        assert!(!named(&e, "basic::fsdax-devdax-one-dimm::nfit-1"));
        let grouped = Expr::parse("suite(cxl) & (topology(cxl-x8) | topology(cxl-x1))").unwrap();
        assert!(named(&grouped, "cxl::x::cxl-x1") && !named(&grouped, "cxl::x::cxl-x2"));
        let e = Expr::parse("name(power-cut::*::nfit-1)").unwrap();
        assert!(named(&e, "power-cut::create::nfit-1"));
    }

    #[test]
    fn the_guest_and_the_status_are_predicates_too() {
        let ndctl = ["81".to_owned(), "trixie".to_owned()];
        let on = |status| Subject {
            name: "ndctl::create.sh::nfit-test-modules",
            kernel: "debian-7.3-mock",
            ndctl: &ndctl,
            status,
        };
        let e = Expr::parse("kernel(*-mock) & ndctl(trixie) & !status(ignored)").unwrap();
        assert!(e.matches(&on(Status::Runs)) && e.matches(&on(Status::Known)));
        assert!(!e.matches(&on(Status::Ignored)));
        let known = Expr::parse("status(known)").unwrap();
        assert!(known.matches(&on(Status::Known)) && !known.matches(&on(Status::Runs)));
        assert!(!Expr::parse("kernel(debian-6.12)")
            .unwrap()
            .matches(&on(Status::Runs)));
    }

    #[test]
    fn a_malformed_expression_says_where() {
        for (text, why) in [
            ("suite(cxl", "without its `)`"),
            ("colour(red)", "no predicate"),
            ("suite(cxl) &", "a predicate"),
            ("(suite(cxl)", "without its `)`"),
            ("suite(cxl) x", "more after"),
            ("status(flaky)", "no status (runs, known, ignored)"),
        ] {
            let e = Expr::parse(text).unwrap_err().to_string();
            assert!(e.contains(why), "{text}: {e}");
        }
    }
}
