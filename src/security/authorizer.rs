//! Authorizers that decide on the names a caller proved.

use crate::error::{Error, Result};
use crate::rpc::{Authorizer, ServerCall};
use crate::security::BlessingPattern;

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
    fn authorize(&self, call: &ServerCall) -> Result<()> {
        let names = call.remote_names();
        let method = crate::naming::upper_first(call.method());
        let allowed = self.entries.iter().any(|(p, methods)| {
            methods.iter().any(|m| m == "*" || *m == method) && names.iter().any(|n| p.matches(n))
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

/// The default policy of servers that JavaScript serves: allow callers
/// that proved a name under a root the server trusts (its principal
/// family), refuse the rest.
pub struct SameFamily;

impl Authorizer for SameFamily {
    fn authorize(&self, call: &ServerCall) -> Result<()> {
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
