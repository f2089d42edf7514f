//! A pipe's user: the token it presents as its first message (type 20),
//! its renewals, and its expiry, checked by `token` and driven here for
//! the pipe's thread, which asks [`gate`] about every message first.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use serde::Deserialize;
use serde_json::json;

use crate::error::{Error, Result};
use crate::security::{Caveat, Principal};
use crate::wsprd::pipe::Pipe;
use crate::wsprd::protocol::{self, InType, Incoming};
use crate::wsprd::token::{CLOSE_TOKEN, Verified, millis, user_extension};

/// What [`gate`] decided for a message.
pub(crate) enum Gate {
    /// The pipe goes on with it.
    Pass,
    /// Taken care of (answered, or the pipe is closing).
    Done,
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
            && pipe.token.user().is_none()
        {
            log::info!("pipe {}: no token within {within:?}; closing", pipe.id);
            pipe.close(
                CLOSE_TOKEN,
                &format!("a token is required, and none came within {within:?}"),
            );
        }
    });
    pipe.token.set_timer(id);
}

/// Looks at a message before the pipe does: takes tokens, refuses
/// anything before the token when one is required, and requests once
/// the token has expired.
pub(crate) fn gate(pipe: &Arc<Pipe>, m: &Incoming) -> Gate {
    let t = &pipe.token;
    let first = t.first();
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
        pipe.send_error(m.id, &expired_error(t.expires_ms()));
        return Gate::Done;
    }
    Gate::Pass
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
    if pipe.has_flow(id) {
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
    let had = pipe.token.user();
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
    let principal = match user_principal(pipe.token.base(), &v) {
        Ok(p) => p,
        Err(e) => return refuse(&e, first),
    };
    let names = principal.names();
    pipe.client.set_principal(principal);
    pipe.token
        .set_user((v.issuer.clone(), v.subject.clone()), v.expires_ms);
    schedule_expiry(pipe, v.expires_ms);
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
        let exp = pipe.token.expires_ms();
        log::info!("pipe {}: its token expired; closing", pipe.id);
        pipe.fail_requests(&expired_error(exp));
        pipe.close(
            CLOSE_TOKEN,
            "the token expired; connect again with a fresh one",
        );
    });
    if let Some(old) = pipe.token.set_timer(id) {
        pipe.shared.timer.cancel(old);
    }
}
