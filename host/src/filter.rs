//! Boolean name filters (WS-006): the grammar of overlay `tags = "..."` and of the
//! `wask query --tags/--projects/--tasks` options.
//!
//! ```text
//! filter := or
//! or     := and ( "|" and )*
//! and    := not ( "&" not )*
//! not    := "!" not | atom
//! atom   := NAME | "(" or ")"
//! ```
//!
//! `NAME` follows ID-001 (ASCII letters, digits, `_`, `-`; first a letter or digit; 1
//! to 64 bytes). Whitespace may separate tokens. Precedence is `!` over `&` over `|`,
//! so `a & !b | c` is `(a & (!b)) | c`. What a name means is the caller's: a tag a
//! project has, a project's name, a task's name; [`Filter::matches`] asks the caller.
//!
//! Nesting is bounded: at most [`MAX_NESTING`] `!` and `(` may be open at once, so no
//! filter, however long, can exhaust the stack of the parser or of anything that walks
//! what it built.
//!
//! A syntax error carries the byte offset where it was found and what was expected
//! there ([`FilterError`]), so a caller can point at the exact column, inside a TOML
//! string or on a command line. [`Filter`]'s `Display` is a canonical form: single
//! spaces around binary operators, parentheses only where precedence needs them, and
//! chains of one operator flattened (`(a & b) & c` prints `a & b & c`).

use crate::workspace::check_name;
use std::fmt;

/// How deeply `!` and parentheses may nest: far beyond any filter a person writes.
pub const MAX_NESTING: usize = 64;

/// A parsed filter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Filter {
    expr: Expr,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Expr {
    Name(String),
    Not(Box<Expr>),
    /// Two or more operands, none of them itself an `And`.
    And(Vec<Expr>),
    /// Two or more operands, none of them itself an `Or`.
    Or(Vec<Expr>),
}

/// A filter syntax error: where (`offset`, in bytes from the start of the filter text)
/// and what was expected there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilterError {
    pub offset: usize,
    pub message: String,
}

impl fmt::Display for FilterError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (at byte {})", self.message, self.offset)
    }
}

impl std::error::Error for FilterError {}

impl FilterError {
    /// The 0-based column of the error in `text` (the filter it came from), counted in
    /// characters.
    pub fn column(&self, text: &str) -> usize {
        text.get(..self.offset)
            .map(|s| s.chars().count())
            .unwrap_or(self.offset)
    }

    /// Two lines: `text` (around the error, if it is long) and a caret under the
    /// error's column, each after `indent`.
    pub fn caret(&self, text: &str, indent: &str) -> String {
        let (shown, at) = crate::workspace::diag::window(
            text,
            self.offset.min(text.len()),
            crate::workspace::diag::MAX_SHOWN,
        );
        let column = shown.get(..at).map(|s| s.chars().count()).unwrap_or(0);
        format!("{indent}{shown}\n{indent}{}^", " ".repeat(column))
    }
}

impl Filter {
    /// Parses a filter; see the module documentation for the grammar.
    pub fn parse(text: &str) -> Result<Filter, FilterError> {
        let mut p = Parser {
            text,
            pos: 0,
            depth: 0,
        };
        p.skip_ws();
        if p.pos == text.len() {
            return Err(FilterError {
                offset: p.pos,
                message: "expected a name, `!` or `(`: the filter is empty".into(),
            });
        }
        let expr = p.or()?;
        p.skip_ws();
        match p.peek() {
            None => Ok(Filter { expr }),
            Some(')') => Err(p.error("unexpected `)`: no `(` is open here")),
            Some(c) if is_name_char(c) || c == '!' || c == '(' => Err(p.error(
                "expected `&`, `|` or the end of the filter; write `a & b` or `a | b` between two terms",
            )),
            Some(c) => Err(p.bad_char(c, "`&`, `|` or the end of the filter")),
        }
    }

    /// Whether the filter holds when a name holds exactly where `has` says so.
    pub fn matches(&self, has: impl Fn(&str) -> bool) -> bool {
        self.expr.eval(&has)
    }

    /// Every name the filter mentions, sorted, without repeats.
    pub fn names(&self) -> Vec<&str> {
        fn walk<'a>(e: &'a Expr, out: &mut Vec<&'a str>) {
            match e {
                Expr::Name(n) => out.push(n),
                Expr::Not(e) => walk(e, out),
                Expr::And(v) | Expr::Or(v) => v.iter().for_each(|e| walk(e, out)),
            }
        }
        let mut out = Vec::new();
        walk(&self.expr, &mut out);
        out.sort_unstable();
        out.dedup();
        out
    }
}

impl std::str::FromStr for Filter {
    type Err = FilterError;
    fn from_str(s: &str) -> Result<Filter, FilterError> {
        Filter::parse(s)
    }
}

impl Expr {
    fn eval(&self, has: &dyn Fn(&str) -> bool) -> bool {
        match self {
            Expr::Name(n) => has(n),
            Expr::Not(e) => !e.eval(has),
            Expr::And(v) => v.iter().all(|e| e.eval(has)),
            Expr::Or(v) => v.iter().any(|e| e.eval(has)),
        }
    }

    /// Binding strength: the higher, the fewer parentheses it needs.
    fn precedence(&self) -> u8 {
        match self {
            Expr::Or(_) => 0,
            Expr::And(_) => 1,
            Expr::Not(_) | Expr::Name(_) => 2,
        }
    }

    fn fmt_in(&self, f: &mut fmt::Formatter<'_>, min: u8) -> fmt::Result {
        if self.precedence() < min {
            write!(f, "(")?;
            self.fmt_in(f, 0)?;
            return write!(f, ")");
        }
        let chain = |f: &mut fmt::Formatter<'_>, v: &[Expr], op: &str, min: u8| {
            for (i, e) in v.iter().enumerate() {
                if i > 0 {
                    write!(f, " {op} ")?;
                }
                e.fmt_in(f, min)?;
            }
            Ok(())
        };
        match self {
            Expr::Name(n) => write!(f, "{n}"),
            Expr::Not(e) => {
                write!(f, "!")?;
                e.fmt_in(f, 2)
            }
            Expr::And(v) => chain(f, v, "&", 2),
            Expr::Or(v) => chain(f, v, "|", 1),
        }
    }
}

impl fmt::Display for Filter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.expr.fmt_in(f, 0)
    }
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == '-'
}

struct Parser<'t> {
    text: &'t str,
    pos: usize,
    /// `!` and `(` open around the current position.
    depth: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<char> {
        self.text[self.pos..].chars().next()
    }

    fn skip_ws(&mut self) {
        while let Some(c) = self.peek().filter(|c| c.is_whitespace()) {
            self.pos += c.len_utf8();
        }
    }

    fn error(&self, message: impl Into<String>) -> FilterError {
        FilterError {
            offset: self.pos,
            message: message.into(),
        }
    }

    fn bad_char(&self, c: char, expected: &str) -> FilterError {
        self.error(format!(
            "unexpected {c:?}: expected {expected} (names use ASCII letters, digits, `_` and `-`)"
        ))
    }

    /// `and ( "|" and )*`
    fn or(&mut self) -> Result<Expr, FilterError> {
        let mut terms = Vec::new();
        push_flat(&mut terms, self.and(None)?, |e| matches!(e, Expr::Or(_)));
        loop {
            self.skip_ws();
            if self.peek() != Some('|') {
                break;
            }
            self.pos += 1;
            push_flat(&mut terms, self.and(Some('|'))?, |e| {
                matches!(e, Expr::Or(_))
            });
        }
        Ok(single_or(terms, Expr::Or))
    }

    /// `not ( "&" not )*`; `after` is the operator just read, for messages.
    fn and(&mut self, after: Option<char>) -> Result<Expr, FilterError> {
        let mut terms = Vec::new();
        push_flat(&mut terms, self.not(after)?, |e| matches!(e, Expr::And(_)));
        loop {
            self.skip_ws();
            if self.peek() != Some('&') {
                break;
            }
            self.pos += 1;
            push_flat(&mut terms, self.not(Some('&'))?, |e| {
                matches!(e, Expr::And(_))
            });
        }
        Ok(single_or(terms, Expr::And))
    }

    /// `"!" not | atom`
    fn not(&mut self, after: Option<char>) -> Result<Expr, FilterError> {
        self.skip_ws();
        let start = self.pos;
        let expected = match after {
            Some(op) => format!("a name, `!` or `(` after `{op}`"),
            None => "a name, `!` or `(`".to_string(),
        };
        if matches!(self.peek(), Some('!' | '(')) {
            if self.depth == MAX_NESTING {
                return Err(self.error(format!(
                    "the filter nests `!` and parentheses more than {MAX_NESTING} deep"
                )));
            }
            self.depth += 1;
        }
        let parsed = self.not_or_atom(start, &expected);
        if matches!(self.text[start..].chars().next(), Some('!' | '(')) {
            self.depth -= 1;
        }
        parsed
    }

    fn not_or_atom(&mut self, start: usize, expected: &str) -> Result<Expr, FilterError> {
        match self.peek() {
            None => Err(self.error(format!("expected {expected}, found the end of the filter"))),
            Some('!') => {
                self.pos += 1;
                Ok(Expr::Not(Box::new(self.not(Some('!'))?)))
            }
            Some('(') => {
                self.pos += 1;
                self.skip_ws();
                if self.peek() == Some(')') {
                    return Err(self.error("expected a name, `!` or `(`: `()` is empty"));
                }
                let inner = self.or()?;
                self.skip_ws();
                match self.peek() {
                    Some(')') => {
                        self.pos += 1;
                        Ok(inner)
                    }
                    None => Err(self.error(format!(
                        "expected `)` to close the `(` at byte {start}, found the end of the filter"
                    ))),
                    Some(c) if is_name_char(c) || c == '!' || c == '(' => Err(self.error(
                        "expected `&`, `|` or `)`; write `a & b` or `a | b` between two terms",
                    )),
                    Some(c) => Err(self.bad_char(c, "`&`, `|` or `)`")),
                }
            }
            Some(c) if is_name_char(c) => {
                let len = self.text[start..]
                    .find(|c: char| !is_name_char(c))
                    .unwrap_or(self.text.len() - start);
                let name = &self.text[start..start + len];
                check_name(name).map_err(|e| self.error(format!("bad name `{name}`: {e}")))?;
                self.pos += len;
                Ok(Expr::Name(name.to_string()))
            }
            Some('&' | '|' | ')') => {
                let c = self.peek().unwrap();
                Err(self.error(format!("expected {expected}, found `{c}`")))
            }
            Some(c) => Err(self.bad_char(c, expected)),
        }
    }
}

/// Pushes `e` onto a chain, splicing in its operands if it is the same operator
/// (associativity), so equal filters print the same.
fn push_flat(terms: &mut Vec<Expr>, e: Expr, same: impl Fn(&Expr) -> bool) {
    if same(&e) {
        match e {
            Expr::And(v) | Expr::Or(v) => terms.extend(v),
            _ => unreachable!(),
        }
    } else {
        terms.push(e);
    }
}

fn single_or(mut terms: Vec<Expr>, make: fn(Vec<Expr>) -> Expr) -> Expr {
    if terms.len() == 1 {
        terms.pop().unwrap()
    } else {
        make(terms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eval(filter: &str, set: &[&str]) -> bool {
        Filter::parse(filter)
            .unwrap_or_else(|e| panic!("{filter}: {e}"))
            .matches(|n| set.contains(&n))
    }

    fn canon(filter: &str) -> String {
        Filter::parse(filter).unwrap().to_string()
    }

    fn err(filter: &str) -> FilterError {
        match Filter::parse(filter) {
            Ok(f) => panic!("`{filter}` parsed as `{f}`"),
            Err(e) => e,
        }
    }

    #[test]
    fn names_are_atoms() {
        assert!(eval("docs", &["docs"]));
        assert!(!eval("docs", &["web"]));
        assert!(eval("  web-1_x ", &["web-1_x"]));
        assert!(eval("9lives", &["9lives"]));
    }

    #[test]
    fn not_binds_tighter_than_and_tighter_than_or() {
        // a & !b | c  ==  (a & (!b)) | c
        assert_eq!(canon("a & !b | c"), "a & !b | c");
        assert!(eval("a & !b | c", &["c"]));
        assert!(eval("a & !b | c", &["a"]));
        assert!(!eval("a & !b | c", &["a", "b"]));
        assert!(eval("a & !b | c", &["a", "b", "c"]));
        // a | b & c  ==  a | (b & c)
        assert!(eval("a | b & c", &["a"]));
        assert!(!eval("a | b & c", &["b"]));
        assert!(eval("a|b&c", &["b", "c"]));
        // !a & b  ==  (!a) & b
        assert!(eval("!a & b", &["b"]));
        assert!(!eval("!a & b", &[]));
        assert!(eval("!!a", &["a"]));
    }

    #[test]
    fn parentheses_override_precedence() {
        assert!(!eval("(a | b) & c", &["a"]));
        assert!(eval("(a | b) & c", &["b", "c"]));
        assert!(eval("!(a & b)", &["a"]));
        assert!(!eval("!(a & b)", &["a", "b"]));
        assert!(eval("((a))", &["a"]));
        assert!(eval("a & (b | !(c | d))", &["a"]));
        assert!(!eval("a & (b | !(c | d))", &["a", "d"]));
    }

    #[test]
    fn display_is_canonical() {
        assert_eq!(canon("a&b|c"), "a & b | c");
        assert_eq!(canon("(a & b) | c"), "a & b | c");
        assert_eq!(canon("(a | b) & c"), "(a | b) & c");
        assert_eq!(canon("(a & b) & c"), "a & b & c");
        assert_eq!(canon("a | (b | c)"), "a | b | c");
        assert_eq!(canon("! ( a | b )"), "!(a | b)");
        assert_eq!(canon("!(!a)"), "!!a");
        assert_eq!(canon("((x))"), "x");
        assert_eq!(canon("!(a & b) & c"), "!(a & b) & c");
        // The canonical form parses back to itself.
        for f in ["a & !b | c", "(a | b) & !(c | d & e)", "!!x"] {
            assert_eq!(canon(&canon(f)), canon(f));
        }
    }

    #[test]
    fn names_lists_every_atom_once() {
        let f = Filter::parse("b & !a | (b | c)").unwrap();
        assert_eq!(f.names(), ["a", "b", "c"]);
    }

    #[test]
    fn errors_point_at_the_offset() {
        let e = err("");
        assert_eq!(e.offset, 0);
        assert!(e.message.contains("empty"), "{e}");
        let e = err("   ");
        assert_eq!(e.offset, 3);
        assert!(e.message.contains("empty"), "{e}");

        // Dangling operators.
        let e = err("a &");
        assert_eq!(
            (e.offset, e.message.contains("after `&`")),
            (3, true),
            "{e}"
        );
        let e = err("a | ");
        assert_eq!(e.offset, 4);
        assert!(e.message.contains("end of the filter"), "{e}");
        let e = err("!");
        assert_eq!(e.offset, 1);
        let e = err("& a");
        assert_eq!(e.offset, 0);
        assert!(e.message.contains("found `&`"), "{e}");
        let e = err("a & | b");
        assert_eq!(e.offset, 4);
        assert!(e.message.contains("after `&`, found `|`"), "{e}");

        // Unbalanced parentheses.
        let e = err("(a | b");
        assert_eq!(e.offset, 6);
        assert!(e.message.contains("expected `)`"), "{e}");
        assert!(e.message.contains("byte 0"), "{e}");
        let e = err("a & (b | (c)");
        assert_eq!(e.offset, 12);
        assert!(e.message.contains("byte 4"), "{e}");
        let e = err("a)");
        assert_eq!(e.offset, 1);
        assert!(e.message.contains("unexpected `)`"), "{e}");
        let e = err("()");
        assert_eq!(e.offset, 1);

        // Characters outside the grammar.
        let e = err("a $ b");
        assert_eq!(e.offset, 2);
        assert!(e.message.contains("'$'"), "{e}");
        let e = err("a.b");
        assert_eq!(e.offset, 1);
        let e = err("é");
        assert_eq!(e.offset, 0);
        let e = err("a & é");
        assert_eq!(e.offset, 4);
        assert_eq!(e.column("a & é"), 4);

        // Two terms with no operator between them.
        let e = err("a b");
        assert_eq!(e.offset, 2);
        assert!(e.message.contains("expected `&`, `|`"), "{e}");
        let e = err("(a b)");
        assert_eq!(e.offset, 3);

        // Names break ID-001.
        let e = err("a & -x");
        assert_eq!(e.offset, 4);
        assert!(e.message.contains("bad name `-x`"), "{e}");
        let long = format!("a | {}", "x".repeat(65));
        assert_eq!(err(&long).offset, 4);
    }

    #[test]
    fn nesting_is_bounded_wherever_it_comes_from() {
        let deep =
            |open: &str, close: &str, n: usize| format!("{}a{}", open.repeat(n), close.repeat(n));
        assert!(Filter::parse(&deep("(", ")", MAX_NESTING)).is_ok());
        assert!(Filter::parse(&deep("!", "", MAX_NESTING)).is_ok());
        for text in [
            deep("(", ")", 20_000),
            deep("!", "", 30_000),
            deep("!(", ")", 10_000),
            format!("a | {}", deep("(", ")", MAX_NESTING + 1)),
        ] {
            let e = Filter::parse(&text).unwrap_err();
            assert!(e.message.contains("more than 64 deep"), "{e}");
        }
        // Siblings do not add up: only what is open at once counts.
        let wide = vec![deep("(", ")", 60); 100].join(" | ");
        assert!(Filter::parse(&wide).is_ok());
    }

    #[test]
    fn caret_sits_under_the_column() {
        // A no-break space is whitespace: two bytes, one column.
        let text = "\u{a0}a & $";
        let e = err(text);
        assert_eq!(e.offset, 6);
        assert_eq!(e.column(text), 5);
        assert_eq!(e.caret(text, "  "), "  \u{a0}a & $\n       ^");
    }
}
