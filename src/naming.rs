//! Object names and endpoints.
//!
//! A *rooted* name starts with `/` and names a server directly:
//! `/<endpoint>/<suffix>`. A *relative* name (`demo/adder`) is resolved
//! through the name space roots. A rooted name whose suffix starts with a
//! second `/` (`/<endpoint>//x`) is *terminal*: the server at the endpoint
//! serves `x` itself and nobody asks it to resolve further.
//!
//! An endpoint string carries the server's address, its routing id and
//! whether it is a mount table:
//!
//! ```text
//! @w1@127.0.0.1:40123@00000000075bcd15@m@@
//!  |   |               |                 |
//!  |   address         routing id (hex)  m = mount table, s = leaf server
//!  format version
//! ```
//!
//! A bare address (`127.0.0.1:8125`) is accepted as an endpoint too. It has
//! no routing id (any server at that address answers) and is taken to be a
//! mount table, which is what a name space root always is.
//!
//! ```
//! use wspr::naming::{Endpoint, Name};
//! let ep = Endpoint::new("127.0.0.1:8125", 7, false);
//! let name = Name::parse(&format!("/{ep}/a/b")).unwrap();
//! assert_eq!(name.endpoint().unwrap(), &ep);
//! assert_eq!(name.suffix(), "a/b");
//! assert!(!ep.is_mount_table());
//! ```

use std::fmt;

use crate::error::{Error, Result};

/// The longest name accepted from a peer, in bytes.
pub const MAX_NAME_LEN: usize = 4096;

/// Where a server listens and which server it is.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Endpoint {
    address: String,
    routing_id: u64,
    mount_table: bool,
}

impl Endpoint {
    /// An endpoint for a server at `address` with routing id `routing_id`
    /// (0: any server there).
    pub fn new(address: impl Into<String>, routing_id: u64, mount_table: bool) -> Endpoint {
        Endpoint {
            address: address.into(),
            routing_id,
            mount_table,
        }
    }

    /// Parses `@w1@addr@rid@m@@` or a bare `host:port`.
    pub fn parse(s: &str) -> Result<Endpoint> {
        let bad = |why: &str| Error::bad_arg(format!("invalid endpoint {s:?}: {why}"));
        if s.len() > MAX_NAME_LEN {
            return Err(bad("too long"));
        }
        if let Some(rest) = s.strip_prefix('@') {
            // w1, address, rid, kind, "", "" (no more), without a Vec:
            // every call a client places parses its server's endpoint.
            let mut split = rest.split('@');
            let mut parts = [""; 6];
            for p in parts.iter_mut() {
                *p = split
                    .next()
                    .ok_or_else(|| bad("expected @w1@address@routing-id@m|s@@"))?;
            }
            if split.next().is_some() || !parts[4].is_empty() || !parts[5].is_empty() {
                return Err(bad("expected @w1@address@routing-id@m|s@@"));
            }
            if parts[0] != "w1" {
                return Err(bad("unknown endpoint format version"));
            }
            check_address(parts[1]).map_err(|why| bad(&why))?;
            let routing_id =
                u64::from_str_radix(parts[2], 16).map_err(|_| bad("routing id is not hex"))?;
            let mount_table = match parts[3] {
                "m" => true,
                "s" => false,
                _ => return Err(bad("kind must be m or s")),
            };
            Ok(Endpoint::new(parts[1], routing_id, mount_table))
        } else {
            check_address(s).map_err(|why| bad(&why))?;
            Ok(Endpoint::new(s, 0, true))
        }
    }

    /// The `host:port` the server listens on.
    pub fn address(&self) -> &str {
        &self.address
    }

    /// The server's routing id (0: whichever server listens there).
    pub fn routing_id(&self) -> u64 {
        self.routing_id
    }

    /// Whether the server is a mount table (and so may be asked to resolve names).
    pub fn is_mount_table(&self) -> bool {
        self.mount_table
    }

    /// The rooted name of `suffix` on this server.
    pub fn name(&self, suffix: &str) -> String {
        join(&format!("/{self}"), suffix)
    }
}

fn check_address(a: &str) -> std::result::Result<(), String> {
    if a.is_empty() {
        return Err("empty address".into());
    }
    // (ASCII, the usual case, byte by byte: a control character is
    // ASCII's is_ascii_control, a whitespace one its whitespace or the
    // vertical tab, which is a control character too.)
    let forbidden = if a.is_ascii() {
        a.bytes()
            .any(|b| b == b'/' || b == b'@' || b.is_ascii_whitespace() || b.is_ascii_control())
    } else {
        a.contains(['/', '@']) || a.chars().any(|c| c.is_whitespace() || c.is_control())
    };
    if forbidden {
        return Err("address has a forbidden character".into());
    }
    let port = a.rsplit_once(':').map(|(_, p)| p);
    match port.map(|p| p.parse::<u16>()) {
        Some(Ok(_)) => Ok(()),
        _ => Err("address needs host:port".into()),
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = if self.mount_table { 'm' } else { 's' };
        write!(f, "@w1@{}@{:016x}@{kind}@@", self.address, self.routing_id)
    }
}

/// A parsed name: either relative, or a server's endpoint and a suffix.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Name {
    endpoint: Option<Endpoint>,
    suffix: String,
    terminal: bool,
}

impl Name {
    /// Parses a rooted or relative name.
    pub fn parse(name: &str) -> Result<Name> {
        if name.len() > MAX_NAME_LEN {
            return Err(Error::bad_arg(format!(
                "name of {} bytes is longer than {MAX_NAME_LEN}",
                name.len()
            )));
        }
        let control = if name.is_ascii() {
            name.bytes().any(|b| b.is_ascii_control())
        } else {
            name.chars().any(char::is_control)
        };
        if control {
            return Err(Error::bad_arg(format!(
                "name {name:?} has a control character"
            )));
        }
        let Some(rest) = name.strip_prefix('/') else {
            return Ok(Name {
                endpoint: None,
                suffix: clean(name),
                terminal: false,
            });
        };
        let (ep, suffix) = rest.split_once('/').unwrap_or((rest, ""));
        let endpoint = Endpoint::parse(ep)?;
        let terminal = suffix.starts_with('/');
        Ok(Name {
            endpoint: Some(endpoint),
            suffix: clean(suffix),
            terminal,
        })
    }

    /// The server's endpoint, for a rooted name.
    pub fn endpoint(&self) -> Option<&Endpoint> {
        self.endpoint.as_ref()
    }

    /// What the server sees of the name (relative names: the whole name).
    pub fn suffix(&self) -> &str {
        &self.suffix
    }

    /// Whether the name says it must not be resolved further.
    pub fn is_terminal(&self) -> bool {
        self.terminal || self.endpoint.as_ref().is_some_and(|e| !e.is_mount_table())
    }
}

/// Removes empty components: `a//b/` becomes `a/b`.
pub fn clean(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for part in name.split('/').filter(|p| !p.is_empty()) {
        if !out.is_empty() {
            out.push('/');
        }
        out.push_str(part);
    }
    out
}

/// Joins two names with one `/`.
pub fn join(a: &str, b: &str) -> String {
    let a = a.trim_end_matches('/');
    let b = b.trim_start_matches('/');
    match (a.is_empty(), b.is_empty()) {
        (_, true) => a.to_string(),
        (true, false) => b.to_string(),
        _ => format!("{a}/{b}"),
    }
}

/// Splits a relative name into its first component and the rest.
pub fn split_first(name: &str) -> (&str, &str) {
    let name = name.trim_start_matches('/');
    name.split_once('/').unwrap_or((name, ""))
}

/// UpperCamelCase of a method name (`streamingAdd` to `StreamingAdd`).
pub fn upper_first(s: &str) -> String {
    if let Some(first) = s.as_bytes().first().filter(|b| b.is_ascii()) {
        let mut out = String::with_capacity(s.len());
        out.push(first.to_ascii_uppercase() as char);
        out.push_str(&s[1..]);
        return out;
    }
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

/// lowerCamelCase of a method name (`StreamingAdd` to `streamingAdd`).
pub fn lower_first(s: &str) -> String {
    if let Some(first) = s.as_bytes().first().filter(|b| b.is_ascii()) {
        let mut out = String::with_capacity(s.len());
        out.push(first.to_ascii_lowercase() as char);
        out.push_str(&s[1..]);
        return out;
    }
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_lowercase().chain(c).collect(),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_round_trip() {
        let ep = Endpoint::new("127.0.0.1:4000", 0xabc, true);
        let s = ep.to_string();
        assert_eq!(s, "@w1@127.0.0.1:4000@0000000000000abc@m@@");
        assert_eq!(Endpoint::parse(&s).unwrap(), ep);
        let v6 = Endpoint::parse("[::1]:80").unwrap();
        assert_eq!(v6.address(), "[::1]:80");
        assert!(v6.is_mount_table());
    }

    #[test]
    fn bad_endpoints_are_refused() {
        for bad in [
            "",
            "@w1@a:1@zz@m@@",
            "@w2@a:1@1@m@@",
            "@w1@a:1@1@x@@",
            "@w1@a:1@1@m@",
            "host",
            "host:notaport",
            "a b:1",
            "@w1@a:1@1@m@@@",
            "@w1@a:1@1@m@@x",
            "@w1@a\u{b}b:1@1@m@@",
            "@w1@a\u{7f}b:1@1@m@@",
            "@w1@a\u{85}b:1@1@m@@",
            "@w1@a\u{2003}b:1@1@m@@",
            "a/b:1",
            "a@b:1",
        ] {
            assert!(Endpoint::parse(bad).is_err(), "{bad:?} accepted");
        }
        // Not ASCII, and nothing forbidden: the general path takes it.
        assert_eq!(Endpoint::parse("hôte:1").unwrap().address(), "hôte:1");
    }

    #[test]
    fn names() {
        let n = Name::parse("/127.0.0.1:1/a//b/").unwrap();
        assert_eq!(n.suffix(), "a/b");
        assert!(!n.is_terminal());
        let t = Name::parse("/127.0.0.1:1//x").unwrap();
        assert!(t.is_terminal());
        assert_eq!(t.suffix(), "x");
        let leaf = Endpoint::new("h:1", 1, false);
        assert!(Name::parse(&leaf.name("x")).unwrap().is_terminal());
        let r = Name::parse("demo/adder").unwrap();
        assert!(r.endpoint().is_none());
        assert!(Name::parse("/nope/x").is_err());
        assert!(Name::parse("a\u{0}b").is_err());
        assert!(Name::parse("a\u{7f}b").is_err());
        assert!(Name::parse("é\u{85}b").is_err());
        assert_eq!(Name::parse("dé/mo").unwrap().suffix(), "dé/mo");
    }

    #[test]
    fn join_split_case() {
        assert_eq!(join("/a/", "/b"), "/a/b");
        assert_eq!(join("", "b"), "b");
        assert_eq!(join("a", ""), "a");
        assert_eq!(split_first("a/b/c"), ("a", "b/c"));
        assert_eq!(split_first("a"), ("a", ""));
        assert_eq!(upper_first("streamingAdd"), "StreamingAdd");
        assert_eq!(lower_first("Add"), "add");
        assert_eq!(lower_first(""), "");
        assert_eq!(upper_first(""), "");
        assert_eq!(upper_first("a"), "A");
        assert_eq!(upper_first("1x"), "1x");
        assert_eq!(upper_first("éa"), "Éa");
        assert_eq!(lower_first("Éa"), "éa");
        assert_eq!(upper_first("ßx"), "SSx");
    }
}
