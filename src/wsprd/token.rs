//! A user's identity from a token: JWTs of the issuers the daemon trusts
//! (`--token-issuer NAME=KEYFILE`), checked by `jsonwebtoken`, and what a
//! pipe becomes with one: its principal blessed
//! `<daemon>/<origin>/<issuer>:<subject>`, with an expiry caveat at the
//! token's `exp` (see `docs/security.md`, "Users from tokens").
//!
//! The token comes in the pipe's first message (type 20, `{token}`); the
//! same message later on the pipe renews it (the same issuer and subject).
//! Past the token's `exp` without a renewal, the pipe's requests are
//! refused with `NoAccess` and it is closed (1008) saying why. This file
//! holds the checks and the pipe's token state; `user` drives them for a
//! pipe (the pipe's thread asks it about each message first).

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;

use crate::error::{Error, Result};
use crate::security::{Principal, check_extension};
use crate::sync::lock;
use crate::timer::TimerId;

/// An issuer of tokens (JWTs) whose users pipes may be: its tokens carry
/// `iss` equal to `name`, and are signed by the key in `key_file`.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct TokenIssuer {
    /// Its name: the tokens' `iss`, and the part of its users' blessing
    /// names before the `:` (1 to 64 ASCII letters, digits, `.`, `_`, `-`).
    pub name: String,
    /// Its public key, PEM (`BEGIN PUBLIC KEY`): Ed25519 (EdDSA), ECDSA
    /// P-256 or P-384 (ES256, ES384), or RSA (RS256 to PS512).
    pub key_file: std::path::PathBuf,
}

impl TokenIssuer {
    /// The issuer `name` with its public key in `key_file`.
    pub fn new(name: impl Into<String>, key_file: impl Into<std::path::PathBuf>) -> Self {
        TokenIssuer {
            name: name.into(),
            key_file: key_file.into(),
        }
    }
}

/// The longest token taken, in bytes.
pub const MAX_TOKEN_BYTES: usize = 16 * 1024;

/// The close code of a pipe refused or ended for its token (policy
/// violation).
pub const CLOSE_TOKEN: u16 = 1008;

/// The longest issuer name.
const MAX_ISSUER_NAME: usize = 64;

/// Checks an issuer's name (`--token-issuer NAME=...`): 1 to 64 ASCII
/// letters, digits, `.`, `_` or `-`. It is the `iss` the issuer's tokens
/// carry, and the part of its users' blessing names before the `:`.
pub fn check_issuer_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= MAX_ISSUER_NAME
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        && name != "."
        && name != "..";
    if ok {
        Ok(())
    } else {
        Err(Error::bad_arg(format!(
            "token issuer name {name:?}: use 1 to {MAX_ISSUER_NAME} ASCII letters, digits, '.', '_' or '-' (it is the tokens' iss, and goes into blessing names)"
        )))
    }
}

/// The blessing name component of a user: `<issuer>:<subject>`, the
/// subject with every byte but ASCII letters, digits and
/// `-._~@+=,!|:` written `%XX` (so a subject can hold no `/`, space,
/// invisible or look-alike character, and two subjects never meet in one
/// name). At most 256 bytes, or `NoAccess`.
pub fn user_extension(issuer: &str, subject: &str) -> Result<String> {
    if subject.is_empty() {
        return Err(Error::no_access("the token's subject (sub) is empty"));
    }
    let mut e = String::with_capacity(issuer.len() + 1 + subject.len());
    e.push_str(issuer);
    e.push(':');
    for b in subject.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~@+=,!|:".contains(&b) {
            e.push(b as char);
        } else {
            e.push_str(&format!("%{b:02X}"));
        }
    }
    if e.len() > crate::security::MAX_EXTENSION {
        return Err(Error::no_access(format!(
            "the token's subject is too long for a blessing name ({} bytes as {e:.40}..., limit {})",
            e.len(),
            crate::security::MAX_EXTENSION
        )));
    }
    check_extension(&e).map_err(|err| Error::no_access(err.msg().to_string()))?;
    Ok(e)
}

/// One trusted issuer.
struct Issuer {
    name: String,
    key: DecodingKey,
    /// What its key verifies: EdDSA, ES256 and ES384, or RS/PS 256 to 512.
    algorithms: Vec<Algorithm>,
}

/// The issuers the daemon trusts, and what their tokens must say.
pub(crate) struct Issuers {
    /// Their keys as last read; [`Issuers::reload`] swaps the whole set.
    issuers: RwLock<Arc<Vec<Issuer>>>,
    /// Where the keys are read from.
    config: Vec<TokenIssuer>,
    audiences: Vec<String>,
    leeway: Duration,
}

/// A token that checked out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Verified {
    pub issuer: String,
    pub subject: String,
    /// Its `exp`, in milliseconds since the epoch.
    pub expires_ms: u64,
}

/// Reads a public key (PEM) and tells what it verifies.
fn read_key(name: &str, path: &std::path::Path) -> Result<(DecodingKey, Vec<Algorithm>)> {
    let pem = std::fs::read(path).map_err(|e| {
        Error::bad_arg(format!(
            "token issuer {name}: key file {}: {e}",
            path.display()
        ))
    })?;
    if let Ok(k) = DecodingKey::from_ed_pem(&pem) {
        return Ok((k, vec![Algorithm::EdDSA]));
    }
    if let Ok(k) = DecodingKey::from_ec_pem(&pem) {
        return Ok((k, vec![Algorithm::ES256, Algorithm::ES384]));
    }
    if let Ok(k) = DecodingKey::from_rsa_pem(&pem) {
        use Algorithm::*;
        return Ok((k, vec![RS256, RS384, RS512, PS256, PS384, PS512]));
    }
    Err(Error::bad_arg(format!(
        "token issuer {name}: {} holds no public key this daemon takes (PEM \"BEGIN PUBLIC KEY\": Ed25519, ECDSA P-256 or P-384, or RSA)",
        path.display()
    )))
}

/// Every issuer's key, or the first that cannot be read.
fn read_keys(issuers: &[TokenIssuer]) -> Result<Vec<Issuer>> {
    issuers
        .iter()
        .map(|i| {
            let (key, algorithms) = read_key(&i.name, &i.key_file)?;
            Ok(Issuer {
                name: i.name.clone(),
                key,
                algorithms,
            })
        })
        .collect()
}

/// The claims read (besides those `jsonwebtoken` checks).
#[derive(Deserialize)]
struct Claims {
    sub: String,
    exp: u64,
}

/// `iss`, read before the signature is checked, to pick the key.
#[derive(Deserialize)]
struct IssuerClaim {
    iss: Option<String>,
}

pub(crate) fn millis(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

impl Issuers {
    /// The configured issuers with their keys read, or none.
    pub(crate) fn load(
        issuers: &[TokenIssuer],
        audiences: &[String],
        leeway: Duration,
    ) -> Result<Option<Issuers>> {
        if issuers.is_empty() {
            return Ok(None);
        }
        Ok(Some(Issuers {
            issuers: RwLock::new(Arc::new(read_keys(issuers)?)),
            config: issuers.to_vec(),
            audiences: audiences.to_vec(),
            leeway,
        }))
    }

    /// Reads every issuer's key file again (SIGHUP): tokens checked from
    /// now on need the new keys. All or nothing: if one file cannot be
    /// used, the keys in use stay and the error says which. Pipes that
    /// already proved a token keep their user until its `exp`.
    pub(crate) fn reload(&self) -> Result<()> {
        let keys = Arc::new(read_keys(&self.config)?);
        *self.issuers.write().unwrap_or_else(|p| p.into_inner()) = keys;
        Ok(())
    }

    /// Checks `token` at `now`: a known issuer's signature with an
    /// algorithm of that issuer's key (never `none`, never an HMAC keyed
    /// with the public key), `iss`, `sub`, `exp` and `aud` present, `aud`
    /// one of the daemon's, `nbf` (if any) passed and `exp` not passed
    /// (`nbf` with the leeway for clocks that differ; `exp` without: the
    /// blessing ends there). `NoAccess` saying what is wrong, otherwise.
    pub(crate) fn verify(&self, token: &str, now: SystemTime) -> Result<Verified> {
        let refused = |why: String| Error::no_access(format!("token refused: {why}"));
        if token.len() > MAX_TOKEN_BYTES {
            return Err(refused(format!(
                "{} bytes, limit {MAX_TOKEN_BYTES}",
                token.len()
            )));
        }
        let header = jsonwebtoken::decode_header(token).map_err(|e| {
            refused(format!(
                "not a JWT, or its algorithm is not one this daemon takes (\"none\" never is): {e}"
            ))
        })?;
        let iss = jsonwebtoken::dangerous::insecure_decode_claims::<IssuerClaim>(token)
            .map_err(|e| refused(format!("its claims cannot be read: {e}")))?
            .iss
            .ok_or_else(|| refused("it has no issuer (iss)".into()))?;
        let issuers = self
            .issuers
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let issuer = issuers.iter().find(|i| i.name == iss).ok_or_else(|| {
            refused(format!(
                "its issuer {iss:?} is not one this daemon trusts (--token-issuer)"
            ))
        })?;
        if !issuer.algorithms.contains(&header.alg) {
            return Err(refused(format!(
                "it is signed with {:?}, which the key of issuer {} does not make (it makes {:?})",
                header.alg, issuer.name, issuer.algorithms
            )));
        }
        let mut v = Validation::new(header.alg);
        v.algorithms = issuer.algorithms.clone();
        v.set_required_spec_claims(&["exp", "sub", "iss", "aud"]);
        v.set_issuer(&[&issuer.name]);
        v.set_audience(&self.audiences);
        v.leeway = self.leeway.as_secs();
        v.validate_nbf = true;
        v.validate_exp = true;
        let data = jsonwebtoken::decode::<Claims>(token, &issuer.key, &v).map_err(|e| {
            refused(match e.kind() {
                ErrorKind::InvalidSignature => {
                    format!("its signature is not issuer {}'s", issuer.name)
                }
                ErrorKind::ExpiredSignature => "it has expired (exp)".into(),
                ErrorKind::ImmatureSignature => "it is not valid yet (nbf)".into(),
                ErrorKind::InvalidAudience => format!(
                    "it is for another audience (aud); this daemon takes {:?} (--token-audience)",
                    self.audiences
                ),
                ErrorKind::InvalidIssuer => "its issuer (iss) does not match".into(),
                ErrorKind::MissingRequiredClaim(c) => format!("it has no {c} claim"),
                ErrorKind::InvalidAlgorithm => {
                    "its algorithm is not one of its issuer's key".into()
                }
                _ => format!("it is malformed: {e}"),
            })
        })?;
        let expires_ms = data.claims.exp.saturating_mul(1000);
        if expires_ms <= millis(now) {
            return Err(refused("it has expired (exp)".into()));
        }
        Ok(Verified {
            issuer: issuer.name.clone(),
            subject: data.claims.sub,
            expires_ms,
        })
    }
}

/// What a pipe knows of its token.
#[derive(Default)]
struct State {
    /// The pipe's first message has been read (a token is taken only as
    /// the first).
    started: bool,
    /// The user: (issuer, subject).
    user: Option<(String, String)>,
    /// The timer that ends the pipe (at the token's expiry; with
    /// `--require-token`, at the setup time if no token came).
    timer: Option<TimerId>,
}

/// A pipe's token: its user, when the token expires, and the principal
/// the pipe started as (`<daemon>/<origin>`, the same key), which blesses
/// the user's name.
pub(crate) struct PipeToken {
    state: Mutex<State>,
    /// The token's expiry, ms since the epoch (0: no token).
    expires_ms: AtomicU64,
    base: Arc<Principal>,
}

impl PipeToken {
    pub(crate) fn new(base: Arc<Principal>) -> PipeToken {
        PipeToken {
            state: Mutex::new(State::default()),
            expires_ms: AtomicU64::new(0),
            base,
        }
    }

    /// The principal the pipe started as, which blesses its user's name.
    pub(crate) fn base(&self) -> &Arc<Principal> {
        &self.base
    }

    /// Marks the pipe's first message read; whether this was it.
    pub(crate) fn first(&self) -> bool {
        !std::mem::replace(&mut lock(&self.state).started, true)
    }

    /// The pipe's user: (issuer, subject).
    pub(crate) fn user(&self) -> Option<(String, String)> {
        lock(&self.state).user.clone()
    }

    /// The pipe's user now has a token of `user` until `expires_ms`.
    pub(crate) fn set_user(&self, user: (String, String), expires_ms: u64) {
        self.expires_ms.store(expires_ms, Ordering::SeqCst);
        lock(&self.state).user = Some(user);
    }

    /// The timer that ends the pipe; the one it replaces.
    pub(crate) fn set_timer(&self, id: TimerId) -> Option<TimerId> {
        lock(&self.state).timer.replace(id)
    }

    /// Cancels the pipe's timer (the pipe has closed).
    pub(crate) fn stop(&self, timer: &crate::timer::Timer) {
        if let Some(t) = lock(&self.state).timer.take() {
            timer.cancel(t);
        }
    }

    /// The token's expiry, ms since the epoch (0: no token).
    pub(crate) fn expires_ms(&self) -> u64 {
        self.expires_ms.load(Ordering::SeqCst)
    }

    /// Whether the pipe's token has expired at `now_ms`.
    pub(crate) fn expired(&self, now_ms: u64) -> bool {
        let exp = self.expires_ms.load(Ordering::SeqCst);
        exp != 0 && exp <= now_ms
    }
}

/// Distinct issuer names (for the settings check).
pub(crate) fn check_issuers(names: &[&str]) -> Result<()> {
    let mut seen = HashSet::new();
    for n in names {
        check_issuer_name(n)?;
        if !seen.insert(*n) {
            return Err(Error::bad_arg(format!("token issuer {n} is given twice")));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_names_are_one_safe_component() {
        assert_eq!(user_extension("acme", "alice").unwrap(), "acme:alice");
        assert_eq!(
            user_extension("acme", "auth0|123:x@y.z").unwrap(),
            "acme:auth0|123:x@y.z"
        );
        // '/', '%', spaces, invisible and non-ASCII characters are escaped:
        // no two subjects meet in one name.
        assert_eq!(user_extension("i", "a/b").unwrap(), "i:a%2Fb");
        assert_eq!(user_extension("i", "a%2Fb").unwrap(), "i:a%252Fb");
        assert_eq!(
            user_extension("i", "a b\u{200b}").unwrap(),
            "i:a%20b%E2%80%8B"
        );
        assert_eq!(user_extension("i", "аlice").unwrap(), "i:%D0%B0lice");
        assert_eq!(user_extension("i", "...").unwrap(), "i:...");
        assert!(user_extension("i", "").is_err());
        assert!(user_extension("i", &"x".repeat(300)).is_err());
        for bad in ["", "a:b", "a/b", "a b", ".", "..", &"x".repeat(65)] {
            assert!(check_issuer_name(bad).is_err(), "{bad}");
        }
        check_issuer_name("accounts.example-1_x").unwrap();
    }
}
