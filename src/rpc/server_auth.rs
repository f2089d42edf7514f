//! The client authorizes the server before it sends it anything.
//!
//! Once a connection's session is up, and before the first request on it
//! is written, the client decides from the server's proof alone whether
//! this is the server it means to reach:
//!
//! - the name space recorded blessing names for the server (the mount
//!   entry it was resolved through): the server must prove one of them;
//! - the caller pinned patterns ([`CallOptions::server_blessings`]): the
//!   server must prove a name matching one of them;
//! - neither: the server must prove at least one name under a root the
//!   client recognizes.
//!
//! A server that fails gets nothing (no method, no argument); the caller
//! gets `NoAccess` saying which names were expected and which were proven.
//! Proven means what [`Principal::proven_names`] says, with the client as
//! the peer; a server blessing restricted to certain methods never counts
//! (the server is judged once, not per method). The verdict is kept per
//! connection and expectation, so a connection is judged once per
//! expectation, not per call.
//!
//! [`CallOptions::server_blessings`]: crate::rpc::CallOptions::server_blessings

use std::sync::Mutex;

use crate::error::{Error, Result};
use crate::security::RemoteIdentity;
use crate::security::{BlessingPattern, Principal};
use crate::sync::lock;

/// Verdicts kept per connection (then forgotten all at once).
const MAX_VERDICTS: usize = 32;

/// What the client expects of a server.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Expect<'a> {
    /// The names the name space recorded for it (exact names, or patterns).
    pub recorded: &'a [String],
    /// The patterns the caller pinned.
    pub pinned: &'a [BlessingPattern],
}

#[cfg(test)]
impl Expect<'_> {
    /// No expectation: any server that proves a recognized name.
    pub(crate) const NONE: Expect<'static> = Expect {
        recorded: &[],
        pinned: &[],
    };
}

/// One verdict: the names recorded, the patterns pinned, and the verdict.
type Verdict = (Vec<String>, Vec<String>, Result<()>);

/// The verdicts of one connection.
#[derive(Default)]
pub(crate) struct Verdicts(Mutex<Vec<Verdict>>);

impl Verdicts {
    /// Whether the server at the other end of this connection (`server`,
    /// at `address`) may receive a request under `expect`; judged once per
    /// expectation.
    pub(crate) fn check(
        &self,
        client: &Principal,
        server: &RemoteIdentity,
        address: &str,
        expect: Expect,
    ) -> Result<()> {
        {
            let cache = lock(&self.0);
            let hit = cache.iter().find(|(r, p, _)| {
                r.as_slice() == expect.recorded
                    && p.len() == expect.pinned.len()
                    && p.iter().zip(expect.pinned).all(|(a, b)| a == b.as_str())
            });
            if let Some((_, _, verdict)) = hit {
                return verdict.clone();
            }
        }
        // (Judged without the lock.)
        let verdict = authorize_server(client, server, address, expect);
        if let Err(e) = &verdict {
            // Once per connection and expectation: someone may be in the
            // middle, or a name points at the wrong server.
            log::warn!("{}", e.msg());
        }
        let mut cache = lock(&self.0);
        if cache.len() >= MAX_VERDICTS {
            cache.clear();
        }
        cache.push((
            expect.recorded.to_vec(),
            expect
                .pinned
                .iter()
                .map(|p| p.as_str().to_string())
                .collect(),
            verdict.clone(),
        ));
        verdict
    }
}

/// Whether `server` proves what `expect` asks of it, to `client`.
pub(crate) fn authorize_server(
    client: &Principal,
    server: &RemoteIdentity,
    address: &str,
    expect: Expect,
) -> Result<()> {
    // No method: a server is judged for the connection, not per call.
    let proven = client.proven_names(server, "");
    let matches = |patterns: &mut dyn Iterator<Item = Option<BlessingPattern>>| {
        patterns
            .flatten()
            .any(|p| proven.iter().any(|n| p.matches(n)))
    };
    let recorded_ok = expect.recorded.is_empty()
        || matches(&mut expect.recorded.iter().map(|r| BlessingPattern::new(r).ok()));
    let pinned_ok =
        expect.pinned.is_empty() || matches(&mut expect.pinned.iter().map(|p| Some(p.clone())));
    let anything = !expect.recorded.is_empty() || !expect.pinned.is_empty() || !proven.is_empty();
    if recorded_ok && pinned_ok && anything {
        return Ok(());
    }
    let shown = if proven.is_empty() {
        format!(
            "it proved no name this client recognizes (it presented {:?})",
            server.claimed_names()
        )
    } else {
        format!("it proved {proven:?}")
    };
    let mut wanted = Vec::new();
    if !recorded_ok {
        wanted.push(format!(
            "one of {:?} (recorded by the name space)",
            expect.recorded
        ));
    }
    if !pinned_ok {
        let pinned: Vec<&str> = expect.pinned.iter().map(|p| p.as_str()).collect();
        wanted.push(format!("a name matching {pinned:?} (pinned by the caller)"));
    }
    if wanted.is_empty() {
        wanted.push("a name under a root this client recognizes".to_string());
    }
    Err(Error::no_access(format!(
        "the server at {address} is not the one expected: nothing was sent to it; expected {}, and {shown}",
        wanted.join(" and ")
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(p: &Principal) -> RemoteIdentity {
        RemoteIdentity::new(p.public_key(), p.blessings().to_vec())
    }

    #[test]
    fn the_verdicts() {
        let root = Principal::new_self_blessed("root").unwrap();
        let client = Principal::new_blessed_by(&root, "client", vec![]).unwrap();
        let server = Principal::new_blessed_by(&root, "svc", vec![]).unwrap();
        let stranger = Principal::new_self_blessed("root").unwrap();
        let s = id(&server);
        let ok = |e: Expect, who: &RemoteIdentity| authorize_server(&client, who, "h:1", e);
        let rec = vec!["root/svc".to_string()];
        let other = vec!["root/other".to_string()];
        let pin = vec![BlessingPattern::new("root/...").unwrap()];
        let bad_pin = vec![BlessingPattern::new("root/other/...").unwrap()];
        assert!(ok(Expect::NONE, &s).is_ok());
        let e = |recorded: &'static [String], pinned| Expect { recorded, pinned };
        let rec: &'static [String] = rec.leak();
        let other: &'static [String] = other.leak();
        assert!(ok(e(rec, &[]), &s).is_ok());
        assert!(ok(e(rec, &pin), &s).is_ok());
        let err = ok(e(other, &[]), &s).unwrap_err();
        assert_eq!(err.id(), crate::error::ids::NO_ACCESS);
        assert!(
            err.msg().contains("root/other") && err.msg().contains("root/svc"),
            "{err}"
        );
        let err = ok(e(rec, &bad_pin), &s).unwrap_err();
        assert!(err.msg().contains("pinned"), "{err}");
        // A key that names itself "root" is not the root the client trusts.
        let err = ok(Expect::NONE, &id(&stranger)).unwrap_err();
        assert!(err.msg().contains("recognizes"), "{err}");
        assert!(ok(e(&[], &pin), &id(&stranger)).is_err());
        // A method caveat on the server's blessing: never counts.
        let narrow = Principal::new_blessed_by(
            &root,
            "svc",
            vec![crate::security::Caveat::Method(vec!["Add".into()])],
        )
        .unwrap();
        assert!(ok(e(rec, &[]), &id(&narrow)).is_err());
    }

    #[test]
    fn verdicts_are_kept_per_expectation() {
        let root = Principal::new_self_blessed("root").unwrap();
        let server = Principal::new_blessed_by(&root, "svc", vec![]).unwrap();
        let v = Verdicts::default();
        let s = id(&server);
        let rec = vec!["root/svc".to_string()];
        let other = vec!["root/x".to_string()];
        let e = |r: &[String]| {
            v.check(
                &root,
                &s,
                "h:1",
                Expect {
                    recorded: r,
                    pinned: &[],
                },
            )
        };
        assert!(e(&rec).is_ok());
        assert!(e(&other).is_err());
        assert!(
            e(&rec).is_ok(),
            "a refusal for one expectation is not one for another"
        );
        assert_eq!(lock(&v.0).len(), 2);
    }
}
