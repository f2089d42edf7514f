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
//! holds the checks and the pipe's token state; `pipe` asks it about each
//! message first.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use serde_json::json;

use crate::error::{Error, Result};
use crate::security::{Caveat, Principal, check_extension};
use crate::sync::lock;
use crate::timer::TimerId;
use crate::wsprd::pipe::Pipe;
use crate::wsprd::protocol::{self, InType, Incoming};

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
    issuers: Vec<Issuer>,
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

fn millis(t: SystemTime) -> u64 {
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
        let issuers = issuers
            .iter()
            .map(|i| {
                let (key, algorithms) = read_key(&i.name, &i.key_file)?;
                Ok(Issuer {
                    name: i.name.clone(),
                    key,
                    algorithms,
                })
            })
            .collect::<Result<_>>()?;
        Ok(Some(Issuers {
            issuers,
            audiences: audiences.to_vec(),
            leeway,
        }))
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
        let issuer = self.issuers.iter().find(|i| i.name == iss).ok_or_else(|| {
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

/// What [`PipeToken::gate`] decided for a message.
pub(crate) enum Gate {
    /// The pipe goes on with it.
    Pass,
    /// Taken care of (answered, or the pipe is closing).
    Done,
}

impl PipeToken {
    pub(crate) fn new(base: Arc<Principal>) -> PipeToken {
        PipeToken {
            state: Mutex::new(State::default()),
            expires_ms: AtomicU64::new(0),
            base,
        }
    }

    /// At the pipe's start: with `--require-token`, a pipe that has not
    /// presented a token within the setup time is closed.
    pub(crate) fn start(pipe: &Arc<Pipe>) {
        let shared = &pipe.shared;
        if !shared.config.require_token {
            return;
        }
        let weak = Arc::downgrade(pipe);
        let within = shared.config.setup_timeout;
        let id = shared.timer.schedule(Instant::now() + within, move || {
            if let Some(pipe) = weak.upgrade()
                && lock(&pipe.token.state).user.is_none()
            {
                log::info!("pipe {}: no token within {within:?}; closing", pipe.id);
                pipe.close(
                    CLOSE_TOKEN,
                    &format!("a token is required, and none came within {within:?}"),
                );
            }
        });
        lock(&pipe.token.state).timer = Some(id);
    }

    /// Cancels the pipe's timer (the pipe has closed).
    pub(crate) fn stop(&self, timer: &crate::timer::Timer) {
        if let Some(t) = lock(&self.state).timer.take() {
            timer.cancel(t);
        }
    }

    /// Whether the pipe's token has expired at `now_ms`.
    fn expired(&self, now_ms: u64) -> bool {
        let exp = self.expires_ms.load(Ordering::SeqCst);
        exp != 0 && exp <= now_ms
    }

    /// Looks at a message before the pipe does: takes tokens, refuses
    /// anything before the token when one is required, and requests once
    /// the token has expired.
    pub(crate) fn gate(pipe: &Arc<Pipe>, m: &Incoming) -> Gate {
        let t = &pipe.token;
        let first = {
            let mut st = lock(&t.state);
            !std::mem::replace(&mut st.started, true)
        };
        if m.kind == InType::Token {
            on_token(pipe, m, first);
            return Gate::Done;
        }
        if first && pipe.shared.config.require_token {
            let e = Error::no_access(
                "this daemon requires a token: send it in the pipe's first message (type 20, {token})",
            );
            pipe.send_error(m.id, &e);
            pipe.close(CLOSE_TOKEN, "a token is required first");
            return Gate::Done;
        }
        if m.kind.is_request() && t.expired(millis(SystemTime::now())) {
            pipe.send_error(m.id, &expired_error(t.expires_ms.load(Ordering::SeqCst)));
            return Gate::Done;
        }
        Gate::Pass
    }
}

fn expired_error(expires_ms: u64) -> Error {
    Error::no_access(format!(
        "the pipe's token expired at {} (ms since the epoch); connect again with a fresh one, or refresh it before it expires",
        expires_ms
    ))
}

/// `data` of a token message.
#[derive(Deserialize)]
struct TokenData {
    token: String,
}

/// A token message: the first of the pipe sets its user; a later one
/// renews the token of the same user.
fn on_token(pipe: &Arc<Pipe>, m: &Incoming, first: bool) {
    let id = m.id;
    if id.is_multiple_of(2) {
        return pipe.send_error(
            id,
            &Error::bad_arg(format!(
                "flow id {id} is even; JavaScript's flows use odd ids"
            )),
        );
    }
    if pipe.flows().contains_key(&id) {
        return pipe.send_error(id, &Error::bad_arg(format!("flow id {id} is in use")));
    }
    let refuse = |e: &Error, close: bool| {
        pipe.send_error(id, e);
        if close {
            pipe.close(CLOSE_TOKEN, &format!("{:.100}", e.msg()));
        }
    };
    let data = match protocol::data::<TokenData>(m.data.clone(), "token") {
        Ok(d) => d,
        Err(e) => return refuse(&e, first),
    };
    let Some(issuers) = &pipe.shared.tokens else {
        return refuse(
            &Error::no_access("this daemon trusts no token issuer (--token-issuer)"),
            first,
        );
    };
    let had = lock(&pipe.token.state).user.clone();
    if !first && had.is_none() {
        return refuse(
            &Error::bad_arg(
                "a token is taken only as the pipe's first message; this pipe has no user (connect again, with the token first)",
            ),
            false,
        );
    }
    let v = match issuers.verify(&data.token, SystemTime::now()) {
        Ok(v) => v,
        Err(e) => {
            log::info!("pipe {}: {}", pipe.id, e.msg());
            // A refused renewal leaves the pipe its token until it expires.
            return refuse(&e, first);
        }
    };
    if let Some((iss, sub)) = &had
        && (iss != &v.issuer || sub != &v.subject)
    {
        return refuse(
            &Error::no_access(format!(
                "a renewed token must be for the pipe's user ({iss}, subject {sub:?}); this one is for {} (subject {:?})",
                v.issuer, v.subject
            )),
            false,
        );
    }
    let principal = match user_principal(&pipe.token.base, &v) {
        Ok(p) => p,
        Err(e) => return refuse(&e, first),
    };
    let names = principal.names();
    pipe.client.set_principal(principal);
    pipe.token.expires_ms.store(v.expires_ms, Ordering::SeqCst);
    schedule_expiry(pipe, v.expires_ms);
    lock(&pipe.token.state).user = Some((v.issuer.clone(), v.subject.clone()));
    log::info!(
        "pipe {}: {} token of {}, subject {:?}: now {} until {} ms",
        pipe.id,
        if first { "accepted the" } else { "renewed the" },
        v.issuer,
        v.subject,
        names.join(", "),
        v.expires_ms
    );
    pipe.finish_request(id, Ok(json!({"names": names, "expiresAt": v.expires_ms})));
}

/// The pipe's principal for a user: the same key, named only
/// `<daemon>/<origin>/<issuer>:<subject>` (blessed by the pipe's own
/// `<daemon>/<origin>`), until the token expires.
fn user_principal(base: &Principal, v: &Verified) -> Result<Arc<Principal>> {
    let ext = user_extension(&v.issuer, &v.subject)?;
    let b = base.bless(&base.public_key(), &ext, vec![Caveat::Expiry(v.expires_ms)])?;
    Ok(Arc::new(base.with_blessing(b)?))
}

/// Ends the pipe when its token expires (unless renewed by then): its
/// requests in flight are answered `NoAccess`, then it closes (1008).
fn schedule_expiry(pipe: &Arc<Pipe>, expires_ms: u64) {
    let left = Duration::from_millis(expires_ms.saturating_sub(millis(SystemTime::now())));
    let weak = Arc::downgrade(pipe);
    let id = pipe.shared.timer.schedule(Instant::now() + left, move || {
        let Some(pipe) = weak.upgrade() else { return };
        // (Renewed meanwhile: a later timer is set.)
        if !pipe.token.expired(millis(SystemTime::now())) {
            return;
        }
        let exp = pipe.token.expires_ms.load(Ordering::SeqCst);
        log::info!("pipe {}: its token expired; closing", pipe.id);
        pipe.fail_requests(&expired_error(exp));
        pipe.close(
            CLOSE_TOKEN,
            "the token expired; connect again with a fresh one",
        );
    });
    if let Some(old) = lock(&pipe.token.state).timer.replace(id) {
        pipe.shared.timer.cancel(old);
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
