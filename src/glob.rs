//! Glob patterns over names: elements separated by `/`, where an element
//! may use `*` (any run of characters), `?` (one character), `[abc]`,
//! `[a-z]` and `[^a-z]` (one character of, or not of, a set) and `\x` (the
//! character `x` itself), and the element `...` matches zero or more whole
//! elements. A pattern that breaks these rules (an unclosed `[`, an empty
//! set, a reversed range, a `\` at the end) is `BadArg`.
//!
//! Matching is done element by element with a set of pattern positions
//! (an NFA), so that a mount table can match part of a name and hand the
//! rest of the pattern to the mount table below it.
//!
//! ```
//! use wspr::glob::Pattern;
//! let p = Pattern::parse("demo/*").unwrap();
//! assert!(p.matches("demo/adder"));
//! assert!(!p.matches("demo/adder/x"));
//! assert!(Pattern::parse("...").unwrap().matches("a/b/c"));
//! ```

use crate::error::{Error, Result};

/// Most elements in a pattern.
pub const MAX_ELEMENTS: usize = 64;

#[derive(Clone, Debug, PartialEq, Eq)]
enum Elem {
    Rest,
    /// An element, as written and as tokens (for matching).
    Lit(String, Vec<Tok>),
}

/// One token of an element's pattern.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Tok {
    /// This character.
    Char(char),
    /// `?`: any one character.
    Any,
    /// `*`: any run of characters.
    Star,
    /// `[...]`: one character in (or, negated, not in) these ranges.
    Class {
        negated: bool,
        ranges: Vec<(char, char)>,
    },
}

impl Tok {
    fn matches(&self, c: char) -> bool {
        match self {
            Tok::Char(x) => *x == c,
            Tok::Any => true,
            Tok::Star => false,
            Tok::Class { negated, ranges } => {
                ranges.iter().any(|&(lo, hi)| lo <= c && c <= hi) != *negated
            }
        }
    }
}

/// The tokens of one element of `pattern`.
fn tokens(pattern: &str, elem: &str) -> Result<Vec<Tok>> {
    let bad = |why: &str| {
        Error::bad_arg(format!(
            "glob pattern {pattern:?}: {why} (in element {elem:?}); see the syntax: * ? [a-z] [^a-z] \\x ..."
        ))
    };
    let mut out = Vec::new();
    let mut chars = elem.chars().peekable();
    // A character of a set: itself, or escaped; `-` and `]` only escaped.
    let set_char = |chars: &mut std::iter::Peekable<std::str::Chars>| -> Result<char> {
        match chars.next() {
            None => Err(bad("'[' is not closed by ']'")),
            Some('\\') => chars.next().ok_or_else(|| bad("'\\' at the end")),
            Some(c @ (']' | '-')) => Err(bad(&format!(
                "'{c}' where a character of a set is expected (escape it as \\{c})"
            ))),
            Some(c) => Ok(c),
        }
    };
    while let Some(c) = chars.next() {
        match c {
            '*' => out.push(Tok::Star),
            '?' => out.push(Tok::Any),
            '\\' => out.push(Tok::Char(
                chars.next().ok_or_else(|| bad("'\\' at the end"))?,
            )),
            '[' => {
                let negated = chars.next_if(|&c| c == '^' || c == '!').is_some();
                let mut ranges = Vec::new();
                loop {
                    if chars.next_if_eq(&']').is_some() {
                        if ranges.is_empty() {
                            return Err(bad("an empty set []"));
                        }
                        break;
                    }
                    let lo = set_char(&mut chars)?;
                    let hi = if chars.next_if_eq(&'-').is_some() {
                        set_char(&mut chars)?
                    } else {
                        lo
                    };
                    if lo > hi {
                        return Err(bad(&format!("the range {lo}-{hi} is reversed")));
                    }
                    ranges.push((lo, hi));
                }
                out.push(Tok::Class { negated, ranges });
            }
            c => out.push(Tok::Char(c)),
        }
    }
    Ok(out)
}

/// A parsed glob pattern.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pattern {
    elems: Vec<Elem>,
}

/// Positions reached in a pattern after some elements of a name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct States(Vec<usize>);

impl Pattern {
    /// Parses a pattern; empty elements are ignored. A pattern is at most
    /// [`naming::MAX_NAME_LEN`](crate::naming::MAX_NAME_LEN) bytes long.
    pub fn parse(p: &str) -> Result<Pattern> {
        let max = crate::naming::MAX_NAME_LEN;
        if p.len() > max {
            return Err(Error::bad_arg(format!(
                "pattern of {} bytes, limit {max}",
                p.len()
            )));
        }
        let elems: Vec<Elem> = p
            .split('/')
            .filter(|e| !e.is_empty())
            .map(|e| {
                Ok(if e == "..." {
                    Elem::Rest
                } else {
                    Elem::Lit(e.to_string(), tokens(p, e)?)
                })
            })
            .collect::<Result<_>>()?;
        if elems.len() > MAX_ELEMENTS {
            return Err(Error::bad_arg(format!(
                "pattern has {} elements, limit {MAX_ELEMENTS}",
                elems.len()
            )));
        }
        Ok(Pattern { elems })
    }

    /// The positions before any element is matched.
    pub fn start(&self) -> States {
        self.closure(vec![0])
    }

    fn closure(&self, mut states: Vec<usize>) -> States {
        let mut i = 0;
        while i < states.len() {
            let s = states[i];
            if s < self.elems.len() && self.elems[s] == Elem::Rest && !states.contains(&(s + 1)) {
                states.push(s + 1);
            }
            i += 1;
        }
        states.sort_unstable();
        states.dedup();
        States(states)
    }

    /// The positions after matching one more element.
    pub fn step(&self, states: &States, elem: &str) -> States {
        self.step_counting(states, elem, &mut 0)
    }

    /// [`step`](Self::step), adding the work it took to `work`: one per
    /// position, and one per character comparison of an element's match
    /// (at least the element's length; up to its length times the
    /// pattern element's, for `*` followed by many `?`). A matcher that
    /// serves others (a mount table, under its lock) bounds what one
    /// pattern may cost it.
    pub fn step_counting(&self, states: &States, elem: &str, work: &mut u64) -> States {
        let elem: Vec<char> = elem.chars().collect();
        let mut next = Vec::new();
        for &s in &states.0 {
            *work += 1;
            match self.elems.get(s) {
                Some(Elem::Rest) => next.push(s),
                Some(Elem::Lit(_, p)) if wildcard(p, &elem, work) => next.push(s + 1),
                _ => {}
            }
        }
        self.closure(next)
    }

    /// The positions after matching every element of `name`.
    pub fn walk(&self, name: &str) -> States {
        name.split('/')
            .filter(|e| !e.is_empty())
            .fold(self.start(), |st, e| self.step(&st, e))
    }

    /// Whether a name that reached `states` matches the whole pattern.
    pub fn is_final(&self, states: &States) -> bool {
        states.0.contains(&self.elems.len())
    }

    /// Whether no continuation can match.
    pub fn is_dead(states: &States) -> bool {
        states.0.is_empty()
    }

    /// Whether `name` matches the whole pattern.
    pub fn matches(&self, name: &str) -> bool {
        self.is_final(&self.walk(name))
    }

    /// Whether some of the pattern is still to match below a name that
    /// reached `states` (whether [`remainders`](Self::remainders) would be
    /// empty, without making them).
    pub fn has_remainder(&self, states: &States) -> bool {
        states.0.iter().any(|&s| s < self.elems.len())
    }

    /// The patterns still to match below a name that reached `states`
    /// (without the empty one a final state leaves).
    pub fn remainders(&self, states: &States) -> Vec<String> {
        states
            .0
            .iter()
            .filter(|&&s| s < self.elems.len())
            .map(|&s| {
                self.elems[s..]
                    .iter()
                    .map(|e| match e {
                        Elem::Rest => "...",
                        Elem::Lit(l, _) => l.as_str(),
                    })
                    .collect::<Vec<_>>()
                    .join("/")
            })
            .collect()
    }
}

/// Matches one element against its tokens, counting its steps in `work`.
fn wildcard(p: &[Tok], t: &[char], work: &mut u64) -> bool {
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        *work += 1;
        if pi < p.len() && p[pi].matches(t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == Tok::Star {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == Tok::Star {
        pi += 1;
    }
    pi == p.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(p: &str, s: &str) -> bool {
        wildcard(
            &tokens(p, p).unwrap(),
            &s.chars().collect::<Vec<_>>(),
            &mut 0,
        )
    }

    #[test]
    fn element_wildcards() {
        assert!(w("*", "abc"));
        assert!(w("a*c", "abbbc"));
        assert!(w("a?c", "abc"));
        assert!(!w("a?c", "abbc"));
        assert!(w("", ""));
        assert!(!w("", "a"));
    }

    #[test]
    fn sets_and_escapes() {
        assert!(w("tab[ab]", "taba"));
        assert!(!w("tab[ab]", "tabc"));
        assert!(w("[a-c]*", "beta"));
        assert!(!w("[^a-c]*", "beta"));
        assert!(w("[!a-c]*", "delta"));
        assert!(w("x[a\\-]", "x-"));
        assert!(w("\\*", "*"));
        assert!(!w("\\*", "a"));
        assert!(w("\\[a]", "[a]"));
        assert!(w("x]", "x]"), "a ']' outside a set is itself");
    }

    #[test]
    fn malformed_patterns_are_bad_arg() {
        for p in [
            "[", "a[b", "[]", "[^]", "[b-a]", "a\\", "[a-]", "[-a]", "ok/[/ok",
        ] {
            let e = Pattern::parse(p).expect_err(p);
            assert!(e.is(crate::error::ids::BAD_ARG), "{p}: {e}");
            assert!(
                e.msg().contains(&format!("{p:?}")),
                "{p}: names the pattern: {e}"
            );
        }
        assert!(Pattern::parse("tabs/[a-f0-9]*").is_ok());
    }

    #[test]
    fn patterns() {
        let p = Pattern::parse("*").unwrap();
        assert!(p.matches("demo"));
        assert!(!p.matches("demo/adder"));
        let all = Pattern::parse("...").unwrap();
        assert!(all.matches("demo"));
        assert!(all.matches("demo/adder"));
        let mid = Pattern::parse("a/.../z").unwrap();
        assert!(mid.matches("a/z"));
        assert!(mid.matches("a/b/c/z"));
        assert!(!mid.matches("a/b"));
    }

    #[test]
    fn remainders_continue_below_a_mount_point() {
        let p = Pattern::parse("sub/*/x").unwrap();
        let st = p.walk("sub");
        assert!(!p.is_final(&st));
        assert_eq!(p.remainders(&st), vec!["*/x".to_string()]);
        assert!(p.has_remainder(&st));
        assert!(!p.has_remainder(&p.walk("a/b/x")));
        let r = Pattern::parse("...").unwrap();
        let st = r.walk("sub");
        assert!(r.is_final(&st));
        assert_eq!(r.remainders(&st), vec!["...".to_string()]);
        assert!(Pattern::is_dead(&Pattern::parse("a").unwrap().walk("b")));
        // A peer's pattern is bounded like a name.
        assert!(Pattern::parse(&"a".repeat(crate::naming::MAX_NAME_LEN + 1)).is_err());
    }
}
