//! Glob patterns over names: elements separated by `/`, where an element
//! may use `*` (any run of characters) and `?` (one character), and the
//! element `...` matches zero or more whole elements.
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
    /// An element, as written and as characters (for matching).
    Lit(String, Vec<char>),
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
                if e == "..." {
                    Elem::Rest
                } else {
                    Elem::Lit(e.to_string(), e.chars().collect())
                }
            })
            .collect();
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
        let elem: Vec<char> = elem.chars().collect();
        let mut next = Vec::new();
        for &s in &states.0 {
            match self.elems.get(s) {
                Some(Elem::Rest) => next.push(s),
                Some(Elem::Lit(_, p)) if wildcard(p, &elem) => next.push(s + 1),
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

/// Matches one element against a `*` / `?` wildcard.
fn wildcard(p: &[char], t: &[char]) -> bool {
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
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
    while pi < p.len() && p[pi] == '*' {
        pi += 1;
    }
    pi == p.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(p: &str, s: &str) -> bool {
        wildcard(
            &p.chars().collect::<Vec<_>>(),
            &s.chars().collect::<Vec<_>>(),
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
