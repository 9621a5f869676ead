//! Filter expressions (`run -E`), after nextest's filtersets: predicates
//! on the parts of a trial's name, `suite(GLOB)`, `case(GLOB)`,
//! `topology(GLOB)` and `name(GLOB)` (the whole `suite::case::topology`),
//! joined with `&` (and), `|` (or), `!` (not) and parentheses, `!` binding
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

/// A parsed expression.
#[derive(Clone, Debug)]
pub enum Expr {
    Suite(GlobMatcher),
    Case(GlobMatcher),
    Topology(GlobMatcher),
    Name(GlobMatcher),
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

    /// Whether the trial `name` (`suite::case::topology`) matches.
    pub fn matches(&self, name: &str) -> bool {
        let mut parts = name.splitn(3, "::");
        let (suite, case, topology) = (
            parts.next().unwrap_or(""),
            parts.next().unwrap_or(""),
            parts.next().unwrap_or(""),
        );
        self.eval(name, suite, case, topology)
    }

    fn eval(&self, name: &str, suite: &str, case: &str, topology: &str) -> bool {
        match self {
            Expr::Suite(g) => g.is_match(suite),
            Expr::Case(g) => g.is_match(case),
            Expr::Topology(g) => g.is_match(topology),
            Expr::Name(g) => g.is_match(name),
            Expr::Not(e) => !e.eval(name, suite, case, topology),
            Expr::And(a, b) => {
                a.eval(name, suite, case, topology) && b.eval(name, suite, case, topology)
            }
            Expr::Or(a, b) => {
                a.eval(name, suite, case, topology) || b.eval(name, suite, case, topology)
            }
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
            return Err(self.error("a predicate: suite(..), case(..), topology(..) or name(..)"));
        }
        let args = &rest[name_len + 1..];
        let Some(close) = args.find(')') else {
            return Err(self.error("a predicate without its `)`"));
        };
        let pattern = args[..close].trim();
        let glob = Glob::new(pattern)
            .map_err(|e| self.error(&format!("`{pattern}` is no glob: {e}")))?
            .compile_matcher();
        let expr = match name {
            "suite" => Expr::Suite(glob),
            "case" => Expr::Case(glob),
            "topology" => Expr::Topology(glob),
            "name" => Expr::Name(glob),
            other => {
                return Err(self.error(&format!(
                    "`{other}` is no predicate (suite, case, topology, name)"
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

    #[test]
    fn predicates_and_operators_select_as_written() {
        let e = Expr::parse("suite(cxl) & !topology(cxl-x8) | case(reboot-*)").unwrap();
        assert!(e.matches("cxl::data-round-trip::cxl-x2"));
        assert!(!e.matches("cxl::data-round-trip::cxl-x8"));
        assert!(e.matches("labels::reboot-keeps-namespaces::nfit-1"));
        assert!(!e.matches("basic::fsdax-devdax-one-dimm::nfit-1"));
        let grouped = Expr::parse("suite(cxl) & (topology(cxl-x8) | topology(cxl-x1))").unwrap();
        assert!(grouped.matches("cxl::x::cxl-x1") && !grouped.matches("cxl::x::cxl-x2"));
        assert!(Expr::parse("name(power-cut::*::nfit-1)")
            .unwrap()
            .matches("power-cut::create::nfit-1"));
    }

    #[test]
    fn a_malformed_expression_says_where() {
        for (text, why) in [
            ("suite(cxl", "without its `)`"),
            ("colour(red)", "no predicate"),
            ("suite(cxl) &", "a predicate"),
            ("(suite(cxl)", "without its `)`"),
            ("suite(cxl) x", "more after"),
        ] {
            let e = Expr::parse(text).unwrap_err().to_string();
            assert!(e.contains(why), "{text}: {e}");
        }
    }
}
