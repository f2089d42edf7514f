//! Authorization: whether a call may go ahead, decided on what the
//! caller proved ([`CallInfo`]); the [`Authorizer`] trait and the
//! policies that come with it.
//!
//! An authorizer is a decision on data, made where the call is (a
//! connection's reader thread, or a call thread): it never waits for
//! anyone. A decision that has to wait for someone (JavaScript's
//! authorizer, say) is part of the dispatcher's lookup, which may answer
//! later.

use crate::error::{Error, Result};
use crate::security::{Blessing, BlessingPattern, Principal, RemoteIdentity};

/// A call as an authorizer sees it: what is asked, by whom, of whom.
/// (The RPC server's calls are one.)
pub trait CallInfo {
    /// The method, UpperCamelCase.
    fn method(&self) -> &str;
    /// The object: what is left of the name after the server.
    fn suffix(&self) -> &str;
    /// Who is calling: the key and the blessings its session proved.
    fn remote(&self) -> &RemoteIdentity;
    /// The caller's blessing names that count for this call: chains that
    /// verify, under a root this server trusts, with every caveat met
    /// (see [`Principal::proven_names`]).
    fn remote_names(&self) -> &[String];
    /// Who serves the call.
    fn local(&self) -> &Principal;
}

/// Decides whether a call may go ahead.
pub trait Authorizer: Send + Sync + 'static {
    /// `Ok` to allow; an error (usually `NoAccess`) to refuse. Must not
    /// block (see the module documentation).
    fn authorize(&self, call: &dyn CallInfo) -> Result<()>;
}

/// Allows every call.
pub struct AllowAll;

impl Authorizer for AllowAll {
    fn authorize(&self, _: &dyn CallInfo) -> Result<()> {
        Ok(())
    }
}

/// Allows a call when one of the caller's proven names matches a pattern
/// whose methods include the call's (`*`: every method).
#[derive(Clone, Debug, Default)]
pub struct AclAuthorizer {
    entries: Vec<(BlessingPattern, Vec<String>)>,
}

impl AclAuthorizer {
    /// An ACL that allows nothing yet.
    pub fn new() -> AclAuthorizer {
        AclAuthorizer::default()
    }

    /// Allows callers matching `pattern` to call `methods`.
    pub fn allow(mut self, pattern: &str, methods: &[&str]) -> Result<AclAuthorizer> {
        let methods = methods
            .iter()
            .map(|m| crate::naming::upper_first(m))
            .collect();
        self.entries.push((BlessingPattern::new(pattern)?, methods));
        Ok(self)
    }
}

impl Authorizer for AclAuthorizer {
    fn authorize(&self, call: &dyn CallInfo) -> Result<()> {
        let names = call.remote_names();
        let method = crate::naming::upper_first(call.method());
        // (`...` is everyone, as in the mount table's access lists.)
        let allowed = self.entries.iter().any(|(p, methods)| {
            methods.iter().any(|m| m == "*" || *m == method)
                && (p.as_str() == "..." || names.iter().any(|n| p.matches(n)))
        });
        if allowed {
            Ok(())
        } else {
            Err(Error::no_access(format!(
                "{method}: the caller's blessings {names:?} are not in the ACL"
            )))
        }
    }
}

/// Allows callers that proved a name under a root the server trusts (its
/// principal family), and refuses the rest. (The daemon's default was
/// this; it is now [`Delegation`].)
pub struct SameFamily;

impl Authorizer for SameFamily {
    fn authorize(&self, call: &dyn CallInfo) -> Result<()> {
        if call.remote_names().is_empty() {
            return Err(Error::no_access(format!(
                "{}: the caller proved no blessing of this daemon's principal family (its blessings: {:?}); run the daemon with --open-access to admit anyone",
                call.method(),
                call.remote().claimed_names()
            )));
        }
        Ok(())
    }
}

/// The default policy of servers that JavaScript serves (Vanadium's
/// default authorizer): a call is allowed when one of the names the caller
/// proved and one of the server's own blessing names are the same, or one
/// extends the other (`alice` and `alice/phone`). So the pages of one
/// origin (`<daemon>/<origin>`) may call each other, the daemon's own
/// principal (`<daemon>`) and the tools that share its credentials reach
/// every page, and pages of two origins, or callers of another principal,
/// are refused.
pub struct Delegation;

impl Authorizer for Delegation {
    fn authorize(&self, call: &dyn CallInfo) -> Result<()> {
        let caller = call.remote_names();
        let server = call.local().blessings();
        // (Per call: compared element by element, nothing allocated.)
        let allowed = server
            .iter()
            .any(|b| caller.iter().any(|c| related_to_blessing(c, b)));
        if allowed {
            return Ok(());
        }
        let server: Vec<String> = server.iter().map(|b| b.name()).collect();
        Err(Error::no_access(if caller.is_empty() {
            format!(
                "{}: the caller proved no blessing this server recognizes (it presented {:?}); this server ({server:?}) admits callers whose blessings equal or extend its own, or that its own extend",
                call.method(),
                call.remote().claimed_names()
            )
        } else {
            format!(
                "{}: the caller's blessings {caller:?} neither equal, extend nor are extended by this server's {server:?}",
                call.method(),
            )
        }))
    }
}

/// Whether the name `name` and the blessing `b`'s name are the same, or one
/// extends the other (see [`related`](crate::security::access::related)).
fn related_to_blessing(name: &str, b: &Blessing) -> bool {
    let mut parts = name.split('/');
    for cert in b.chain() {
        match parts.next() {
            // The name ends first: the blessing extends it.
            None => return true,
            Some(p) if p == cert.extension => {}
            Some(_) => return false,
        }
    }
    // The blessing ended: equal, or the name extends it.
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::security::Principal;
    use crate::security::access::related;

    #[test]
    fn related_to_a_blessing_is_related_to_its_name() {
        let root = Principal::new_self_blessed("a").unwrap();
        let b = Principal::new_blessed_by(&root, "b", vec![]).unwrap();
        let blessing = &b.blessings()[0];
        for n in ["a", "a/b", "a/b/c", "a/c", "ab", "a/bc", "x/b", "b"] {
            assert_eq!(related_to_blessing(n, blessing), related(n, "a/b"), "{n}");
        }
    }
}
