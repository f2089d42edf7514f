//! Identities in the daemon: each pipe's own principal, and the identity
//! handles JavaScript works with (contract section 5: createIdentity,
//! blessIdentity, unlinkIdentity; `remoteId.handle` of server requests).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Deserialize;
use serde_json::{Value, json};

use crate::error::{Error, Result};
use crate::security::{Blessing, BlessingPattern, Caveat, Principal, check_extension};
use crate::sync::lock;

/// Most identity handles one pipe may hold.
pub const MAX_IDENTITIES: usize = 4096;

/// How long a blessing made by blessIdentity lasts when the request gives
/// no duration: one day.
pub const DEFAULT_BLESSING: Duration = Duration::from_secs(24 * 3600);

/// The name component of a pipe without a token on a daemon that trusts
/// token issuers: `<daemon>/<origin>/anonymous`. (It cannot be a user's,
/// which always holds a `:`.)
pub const TOKENLESS: &str = "anonymous";

/// Who a pipe is before (or without) a token: its `base`
/// (`<daemon>/<origin>`, which blesses its users) when the daemon trusts
/// no token issuer; otherwise `<daemon>/<origin>/anonymous`, the same key
/// named apart from its users. As `<daemon>/<origin>` it would be the
/// blesser of every user of the origin, and the default rule (one name
/// extends the other) would let any page without a token reach every
/// user's objects.
pub(crate) fn tokenless(base: &Arc<Principal>, issuers: bool) -> Result<Arc<Principal>> {
    if !issuers {
        return Ok(base.clone());
    }
    let b = base.bless(&base.public_key(), TOKENLESS, vec![])?;
    Ok(Arc::new(base.with_blessing(b)?))
}

/// The blessing name component for a pipe from `origin`:
/// `http://localhost:3000` gives `http:localhost:3000`; no Origin gives
/// `local`.
pub fn origin_extension(origin: Option<&str>) -> String {
    let Some(o) = origin.map(str::trim).filter(|o| !o.is_empty()) else {
        return "local".to_string();
    };
    let e: String = o
        .replacen("://", ":", 1)
        .chars()
        .map(|c| {
            if c == '/' || c.is_whitespace() || c.is_control() {
                '_'
            } else {
                c
            }
        })
        .take(200)
        .collect();
    if check_extension(&e).is_ok() {
        e
    } else {
        "unknown-origin".to_string()
    }
}

/// An identity JavaScript holds a handle to: a public key and its
/// blessings, with the private key when the daemon holds it.
#[derive(Clone)]
pub struct Identity {
    public_key: [u8; 32],
    blessings: Vec<Blessing>,
    principal: Option<Arc<Principal>>,
}

impl Identity {
    fn of(principal: Principal) -> Identity {
        Identity {
            public_key: principal.public_key(),
            blessings: principal.blessings().to_vec(),
            principal: Some(Arc::new(principal)),
        }
    }

    /// An identity known only by what a peer proved.
    pub fn remote(public_key: [u8; 32], blessings: Vec<Blessing>) -> Identity {
        Identity {
            public_key,
            blessings,
            principal: None,
        }
    }

    /// The blessings.
    #[cfg(any(test, feature = "testing"))]
    pub fn blessings(&self) -> &[Blessing] {
        &self.blessings
    }

    /// The blessing names.
    pub fn names(&self) -> Vec<String> {
        self.blessings.iter().map(Blessing::name).collect()
    }
}

/// `data` of blessIdentity (8).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BlessRequest {
    /// The identity to bless.
    pub handle: u64,
    /// The extension it is blessed as.
    pub name: String,
    /// How long the blessing lasts; absent or 0: [`DEFAULT_BLESSING`].
    /// Every blessing the daemon makes expires.
    #[serde(default)]
    pub duration_ms: Option<u64>,
    /// Caveats: `{"_type": "MethodCaveat" | "PeerBlessingsCaveat", "data": [..]}`.
    #[serde(default)]
    pub caveats: Vec<CaveatRequest>,
}

/// One caveat of a blessIdentity request.
#[derive(Debug, Deserialize)]
pub struct CaveatRequest {
    /// The caveat's kind.
    #[serde(rename = "_type")]
    pub kind: String,
    /// Its list.
    #[serde(default)]
    pub data: Vec<String>,
}

/// The caveats a request asks for.
pub fn caveats(req: &BlessRequest) -> Result<Vec<Caveat>> {
    let lasts = req
        .duration_ms
        .filter(|ms| *ms > 0)
        .map_or(DEFAULT_BLESSING, Duration::from_millis);
    let mut out = vec![Caveat::expiry_in(lasts)];
    for c in &req.caveats {
        if c.data.is_empty() {
            return Err(Error::bad_arg(format!("caveat {} has no data", c.kind)));
        }
        out.push(match c.kind.as_str() {
            "MethodCaveat" => Caveat::Method(c.data.clone()),
            "PeerBlessingsCaveat" => Caveat::PeerBlessings(
                c.data
                    .iter()
                    .map(|p| BlessingPattern::new(p))
                    .collect::<Result<_>>()?,
            ),
            other => return Err(Error::bad_arg(format!("unknown caveat type {other:?}"))),
        });
    }
    Ok(out)
}

/// Blesses `identity` by `blesser` as the request says; the new identity.
/// The daemon's blesser is the requesting pipe's own principal, so the
/// name is `<daemon>/<origin>/<name>`: a page can name identities only
/// under its own origin (contract extension, see `docs/security.md`).
pub fn bless(blesser: &Principal, identity: &Identity, req: &BlessRequest) -> Result<Identity> {
    let caveats = caveats(req)?;
    let b = blesser.bless(&identity.public_key, &req.name, caveats)?;
    Ok(match &identity.principal {
        Some(p) => Identity::of(p.with_blessing(b)?),
        None => Identity::remote(identity.public_key, vec![b]),
    })
}

/// A pipe's identity handles.
#[derive(Default)]
pub struct Identities(Mutex<Handles>);

/// The handles and the last one given (0: none yet; handles start at 1).
#[derive(Default)]
struct Handles {
    last: u64,
    map: HashMap<u64, Identity>,
}

impl Identities {
    /// Adds an identity; its handle.
    pub fn add(&self, id: Identity) -> Result<u64> {
        let mut h = lock(&self.0);
        if h.map.len() >= MAX_IDENTITIES {
            return Err(Error::bad_arg(format!(
                "this pipe holds {MAX_IDENTITIES} identities, the limit; unlink some"
            )));
        }
        h.last += 1;
        let handle = h.last;
        h.map.insert(handle, id);
        Ok(handle)
    }

    /// The identity at `handle`.
    pub fn get(&self, handle: u64) -> Option<Identity> {
        lock(&self.0).map.get(&handle).cloned()
    }

    /// Forgets `handle`.
    pub fn remove(&self, handle: u64) {
        lock(&self.0).map.remove(&handle);
    }
}

/// `{handle, names}`, the answer to createIdentity and blessIdentity.
pub fn describe(handle: u64, id: &Identity) -> Value {
    json!({"handle": handle, "names": id.names()})
}

/// createIdentity (10): a new self-blessed identity named `name`.
pub fn create(name: &str) -> Result<Identity> {
    Ok(Identity::of(Principal::new_self_blessed(name)?))
}
