//! Access lists: which blessing patterns may do what, per tag (the shape
//! of Vanadium's `access.Permissions`). The mount table keeps one set per
//! node of its name tree (see `docs/security.md`).
//!
//! ```
//! use wspr::security::access::{Permissions, Tag};
//! let p: Permissions = serde_json::from_str(r#"{"Admin": ["alice"], "Resolve": ["..."]}"#)?;
//! assert!(p.get(Tag::Admin).unwrap().includes(&["alice".to_string()]));
//! assert!(!p.get(Tag::Admin).unwrap().includes(&["alice/phone".to_string()]));
//! // "..." is everyone, even a caller who proved no name at all.
//! assert!(p.get(Tag::Resolve).unwrap().includes(&[]));
//! assert!(p.get(Tag::Mount).is_none());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::security::BlessingPattern;

/// Most patterns in one access list.
pub const MAX_PATTERNS: usize = 64;

/// What an access list grants, for the mount table's names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Tag {
    /// Resolve the name (`ResolveStep`).
    Resolve,
    /// List the children (`Glob`) and read the permissions
    /// (`GetPermissions`).
    Read,
    /// Mount and unmount servers at the name.
    Mount,
    /// Make a child name below it.
    Create,
    /// Change the permissions (`SetPermissions`) and delete the name
    /// (`Delete`); stands in for every other tag.
    Admin,
}

impl Tag {
    /// Every tag, in order.
    pub const ALL: [Tag; 5] = [Tag::Resolve, Tag::Read, Tag::Mount, Tag::Create, Tag::Admin];

    /// The tag's name (`"Resolve"`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Tag::Resolve => "Resolve",
            Tag::Read => "Read",
            Tag::Mount => "Mount",
            Tag::Create => "Create",
            Tag::Admin => "Admin",
        }
    }

    /// Parses a tag's name.
    pub fn parse(s: &str) -> Result<Tag> {
        Tag::ALL
            .into_iter()
            .find(|t| t.as_str() == s)
            .ok_or_else(|| {
                Error::bad_arg(format!(
                    "unknown permission tag {s:?} (tags: Resolve, Read, Mount, Create, Admin)"
                ))
            })
    }
}

impl fmt::Display for Tag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Blessing patterns. A caller is in the list when one of the names it
/// proved matches one of them; the pattern `...` takes everyone, a caller
/// that proved no name included.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AccessList {
    patterns: Vec<BlessingPattern>,
}

impl AccessList {
    /// A list of `patterns` (at most [`MAX_PATTERNS`]; duplicates dropped).
    pub fn new(patterns: Vec<BlessingPattern>) -> Result<AccessList> {
        let mut out: Vec<BlessingPattern> = Vec::with_capacity(patterns.len());
        for p in patterns {
            if !out.contains(&p) {
                out.push(p);
            }
        }
        if out.len() > MAX_PATTERNS {
            return Err(Error::bad_arg(format!(
                "an access list of {} patterns (limit {MAX_PATTERNS})",
                out.len()
            )));
        }
        Ok(AccessList { patterns: out })
    }

    /// Parses each pattern.
    pub fn parse<S: AsRef<str>>(patterns: &[S]) -> Result<AccessList> {
        AccessList::new(
            patterns
                .iter()
                .map(|p| BlessingPattern::new(p.as_ref()))
                .collect::<Result<_>>()?,
        )
    }

    /// Exactly these names (each as a pattern that matches only itself).
    pub fn names(names: &[String]) -> Result<AccessList> {
        AccessList::parse(names)
    }

    /// The patterns.
    pub fn patterns(&self) -> &[BlessingPattern] {
        &self.patterns
    }

    /// Whether a caller that proved `names` is in the list.
    pub fn includes(&self, names: &[String]) -> bool {
        self.patterns
            .iter()
            .any(|p| p.as_str() == "..." || names.iter().any(|n| p.matches(n)))
    }

    /// Whether the list holds the pattern `p` itself.
    pub fn contains(&self, p: &BlessingPattern) -> bool {
        self.patterns.contains(p)
    }

    /// Adds a pattern (if not there already).
    pub fn add(&mut self, p: BlessingPattern) -> Result<()> {
        if !self.patterns.contains(&p) {
            if self.patterns.len() >= MAX_PATTERNS {
                return Err(Error::bad_arg(format!(
                    "an access list of more than {MAX_PATTERNS} patterns"
                )));
            }
            self.patterns.push(p);
        }
        Ok(())
    }

    /// Whether the list is empty (no one is in it).
    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }
}

/// An access list per tag. A tag with no list is not set here (the mount
/// table then takes its parent's).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(
    try_from = "BTreeMap<String, Vec<String>>",
    into = "BTreeMap<String, Vec<String>>"
)]
pub struct Permissions {
    lists: BTreeMap<Tag, AccessList>,
}

impl Permissions {
    /// No tag set.
    pub fn new() -> Permissions {
        Permissions::default()
    }

    /// The list of `tag`, if set.
    pub fn get(&self, tag: Tag) -> Option<&AccessList> {
        self.lists.get(&tag)
    }

    /// The list of `tag`, set (empty) if it was not.
    pub fn get_mut(&mut self, tag: Tag) -> &mut AccessList {
        self.lists.entry(tag).or_default()
    }

    /// Sets the list of `tag`.
    pub fn set(&mut self, tag: Tag, list: AccessList) {
        self.lists.insert(tag, list);
    }

    /// Builder form of [`Permissions::set`], parsing the patterns.
    pub fn with(mut self, tag: Tag, patterns: &[&str]) -> Result<Permissions> {
        self.set(tag, AccessList::parse(patterns)?);
        Ok(self)
    }

    /// The tags set, in order, with their lists.
    pub fn iter(&self) -> impl Iterator<Item = (Tag, &AccessList)> {
        self.lists.iter().map(|(t, l)| (*t, l))
    }

    /// Whether no tag is set.
    pub fn is_empty(&self) -> bool {
        self.lists.is_empty()
    }
}

impl TryFrom<BTreeMap<String, Vec<String>>> for Permissions {
    type Error = Error;

    fn try_from(m: BTreeMap<String, Vec<String>>) -> Result<Permissions> {
        let mut p = Permissions::new();
        for (tag, patterns) in m {
            let tag = Tag::parse(&tag)?;
            let list = AccessList::parse(&patterns)
                .map_err(|e| Error::bad_arg(format!("{tag}: {}", e.msg())))?;
            p.set(tag, list);
        }
        Ok(p)
    }
}

impl From<Permissions> for BTreeMap<String, Vec<String>> {
    fn from(p: Permissions) -> Self {
        p.lists
            .into_iter()
            .map(|(t, l)| {
                (
                    t.as_str().to_string(),
                    l.patterns.iter().map(|p| p.as_str().to_string()).collect(),
                )
            })
            .collect()
    }
}

/// Whether two blessing names are one and the same or one extends the
/// other (`alice` and `alice/phone`): the default rule of who may call
/// whom (see [`Delegation`](crate::security::Delegation)).
pub fn related(a: &str, b: &str) -> bool {
    let extends = |long: &str, short: &str| {
        long.len() > short.len() && long.starts_with(short) && long.as_bytes()[short.len()] == b'/'
    };
    a == b || extends(a, b) || extends(b, a)
}

/// Patterns that match exactly the names [`related`] to `name`: `name`
/// and its extensions (`name/...`), and each name it extends (its
/// blessers: `a` and `a/b` for `a/b/c`, exactly). A server that proves one
/// of these is the party named `name`, one it delegated to, or one that
/// could issue `name` itself.
pub fn related_patterns(name: &str) -> Vec<String> {
    let mut out = vec![format!("{name}/...")];
    let mut at = 0;
    while let Some(i) = name[at..].find('/') {
        out.push(name[..at + i].to_string());
        at += i + 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_take_names_and_everyone() {
        let l = AccessList::parse(&["alice", "bob/..."]).unwrap();
        let n = |s: &str| vec![s.to_string()];
        assert!(l.includes(&n("alice")));
        assert!(!l.includes(&n("alice/phone")), "exact");
        assert!(l.includes(&n("bob")));
        assert!(l.includes(&n("bob/phone")));
        assert!(!l.includes(&n("mallory")));
        assert!(!l.includes(&[]), "no names: only `...` takes it");
        assert!(AccessList::parse(&["..."]).unwrap().includes(&[]));
        assert!(!AccessList::default().includes(&n("alice")));
    }

    #[test]
    fn json_round_trip_and_refusals() {
        let p: Permissions =
            serde_json::from_str(r#"{"Admin": ["a", "a"], "Mount": ["b/..."]}"#).unwrap();
        assert_eq!(
            p.get(Tag::Admin).unwrap().patterns().len(),
            1,
            "deduplicated"
        );
        let back = serde_json::to_value(&p).unwrap();
        assert_eq!(
            back,
            serde_json::json!({"Admin": ["a"], "Mount": ["b/..."]})
        );
        for bad in [
            r#"{"Write": ["a"]}"#,
            r#"{"Admin": ["a//b"]}"#,
            r#"{"Admin": "a"}"#,
            r#"["Admin"]"#,
        ] {
            assert!(serde_json::from_str::<Permissions>(bad).is_err(), "{bad}");
        }
        let many: Vec<String> = (0..=MAX_PATTERNS).map(|i| format!("p{i}")).collect();
        let json = serde_json::json!({ "Read": many });
        assert!(serde_json::from_value::<Permissions>(json).is_err());
    }

    #[test]
    fn related_names() {
        assert!(related("a", "a"));
        assert!(related("a", "a/b"));
        assert!(related("a/b/c", "a"));
        assert!(!related("a/b", "a/c"));
        assert!(!related("ab", "a"));
        assert!(!related("a", "ab/c"));
    }

    #[test]
    fn related_patterns_match_the_related_names() {
        let ps = related_patterns("a/b/c");
        assert_eq!(ps, vec!["a/b/c/...", "a", "a/b"]);
        let list = AccessList::parse(&ps).unwrap();
        for n in ["a/b/c", "a/b/c/d", "a", "a/b", "a/b/x", "a/bc", "x", "b/c"] {
            assert_eq!(list.includes(&[n.to_string()]), related(n, "a/b/c"), "{n}");
        }
    }
}
