//! The dispatcher of a server whose objects live in JavaScript.
//!
//! For every call to the server (unless an earlier reply for the same
//! suffix and method was `cacheable`), [`JsDispatcher`] parks the call in
//! the pipe's flow table under a new even flow and sends DispatcherLookup
//! `{serverId, suffix, method}`: no thread waits for JavaScript. The pipe
//! thread goes on with the call when JavaScript's lookupResponse arrives:
//! the reply builds a [`JsInvoker`] for the handle and the signature
//! JavaScript gave. Otherwise the call ends when the lookup timeout passes
//! (the daemon's timer; `Timeout`), at the caller's deadline (kept by the
//! RPC server; `Timeout`), when the caller cancels, or when the server
//! stops or its pipe closes (`Aborted`). When the object has an authorizer
//! of JavaScript's, the lookup goes on to ask it the same way
//! (AuthRequest): the call reaches the server's invocation only once
//! JavaScript has allowed it.

use std::sync::Arc;
use std::time::Instant;

use serde::Serialize;
use serde_json::json;

use crate::error::{Error, ids};
use crate::naming;
use crate::rpc::{Dispatcher, Lookup, Pending, Step};
use crate::security::{AllowAll, Authorizer};
use crate::sync::lock;
use crate::timer::TimerId;
use crate::wsprd::js_server::invoker::JsInvoker;
use crate::wsprd::js_server::state::{Found, ServerState, context};
use crate::wsprd::pipe::{Flow, Parked, Pipe, Unsent};
use crate::wsprd::protocol::{self, InType, OutType};

/// Cacheable lookup replies kept per server (all dropped when full).
const MAX_CACHED_LOOKUPS: usize = 1024;

/// The dispatcher of a JavaScript server.
pub(crate) struct JsDispatcher(pub Arc<ServerState>);

impl Dispatcher for JsDispatcher {
    /// A cached lookup reply without an authorizer of JavaScript's needs
    /// no JavaScript at all: the call goes on at once. Otherwise
    /// JavaScript is asked, with the call parked in the pipe's flow table
    /// (see the module documentation).
    fn lookup(&self, pending: Pending) -> Step<Pending> {
        let state = &self.0;
        let call = pending.call();
        let key = (
            call.suffix().to_string(),
            naming::lower_first(call.method()),
        );
        let cached = lock(&state.cache).get(&key).cloned();
        if let Some(found) = &cached
            && !found.has_authorizer
        {
            pending.found(Ok(lookup_for(state, found.clone())));
            return Step::Done;
        }
        let pipe = match state.live_pipe() {
            Ok(p) => p,
            Err(e) => {
                pending.fail(e);
                return Step::Done;
            }
        };
        if let Some(found) = cached {
            go_on(state, pending, found);
            return Step::Later;
        }
        let message = json!({"serverId": state.id, "suffix": key.0, "method": key.1});
        let waiting = Waiting {
            pending,
            state: state.clone(),
            timer: None,
            what: Asked::Lookup { key },
        };
        park(&pipe, waiting, OutType::DispatcherLookup, &message);
        Step::Later
    }
}

/// The lookup of a call to an object JavaScript found, whose authorizer
/// (if it has one) has allowed the call.
fn lookup_for(state: &Arc<ServerState>, found: Arc<Found>) -> Lookup {
    // JavaScript has decided: nothing more to ask.
    static DECIDED: std::sync::OnceLock<Arc<dyn Authorizer>> = std::sync::OnceLock::new();
    let authorizer = found
        .has_authorizer
        .then(|| DECIDED.get_or_init(|| Arc::new(AllowAll)).clone());
    Lookup {
        invoker: Arc::new(JsInvoker {
            state: state.clone(),
            found,
        }),
        authorizer,
    }
}

/// Goes on with a call to an object JavaScript found: to its authorizer
/// first, if it has one (see [`authorize`]).
fn go_on(state: &Arc<ServerState>, pending: Pending, found: Arc<Found>) {
    if found.has_authorizer {
        authorize(state, pending, found);
    } else {
        pending.found(Ok(lookup_for(state, found)));
    }
}

/// Asks JavaScript's authorizer whether the call may go ahead, with the
/// call parked in the pipe's flow table (AuthRequest; see the module
/// documentation).
fn authorize(state: &Arc<ServerState>, pending: Pending, found: Arc<Found>) {
    let pipe = match state.live_pipe() {
        Ok(p) => p,
        Err(e) => return pending.fail(e),
    };
    let call = pending.call();
    let method = naming::lower_first(call.method());
    let (message, identity) = match context(&pipe, call, &method) {
        Ok((ctx, identity)) => (
            json!({"serverId": state.id, "handle": found.handle, "context": ctx}),
            identity,
        ),
        Err(e) => return pending.fail(e),
    };
    let waiting = Waiting {
        pending,
        state: state.clone(),
        timer: None,
        what: Asked::Authorization { found, identity },
    };
    park(&pipe, waiting, OutType::AuthRequest, &message);
}

/// What a parked call waits for JavaScript to answer.
enum Asked {
    /// Which object serves it; `key` (suffix and lowerCamelCase method)
    /// caches the answer.
    Lookup { key: (String, String) },
    /// Whether the object's authorizer allows it; `identity` is the
    /// caller's handle in the AuthRequest, freed with the flow.
    Authorization { found: Arc<Found>, identity: u64 },
}

impl Asked {
    /// The reply JavaScript sends.
    fn answer(&self) -> InType {
        match self {
            Asked::Lookup { .. } => InType::LookupResponse,
            Asked::Authorization { .. } => InType::AuthResponse,
        }
    }

    /// What is asked, for messages.
    fn what(&self) -> &'static str {
        match self {
            Asked::Lookup { .. } => "lookup",
            Asked::Authorization { .. } => "authorization request",
        }
    }
}

/// A call waiting in the pipe's flow table for JavaScript's lookupResponse
/// or authResponse; no thread waits with it.
struct Waiting {
    pending: Pending,
    state: Arc<ServerState>,
    /// The lookup timeout's timer (none when the caller's deadline, which
    /// the RPC server keeps, comes first).
    timer: Option<TimerId>,
    what: Asked,
}

impl Waiting {
    /// Frees what the wait holds besides the call.
    fn free(&mut self, pipe: &Pipe) {
        if let Some(t) = self.timer.take() {
            pipe.shared.timer.cancel(t);
        }
        if let Asked::Authorization { identity, .. } = &self.what {
            pipe.identities.remove(*identity);
        }
    }
}

impl Parked for Waiting {
    fn answered(mut self: Box<Self>, pipe: &Arc<Pipe>, id: u64, data: protocol::Data) {
        self.free(pipe);
        let Waiting {
            pending,
            state,
            what,
            ..
        } = *self;
        match what {
            Asked::Lookup { key } => {
                let reply = pipe.reply_data::<protocol::LookupResponse>(id, data, "lookupResponse");
                lookup_answered(&state, pending, key, reply);
            }
            Asked::Authorization { found, .. } => {
                // Anything but a clear yes refuses.
                let answer = pipe
                    .reply_data::<protocol::AuthResponse>(id, data, "authResponse")
                    .and_then(|r| match protocol::js_error(&r.err, ids::NO_ACCESS) {
                        Some(e) => Err(e),
                        None => Ok(()),
                    });
                match answer {
                    Ok(()) => pending.found(Ok(lookup_for(&state, found))),
                    Err(e) => pending.fail(e),
                }
            }
        }
    }

    fn fail(mut self: Box<Self>, pipe: &Pipe, err: Error) {
        self.free(pipe);
        self.pending.fail(err);
    }

    fn release(mut self: Box<Self>, pipe: &Pipe) {
        self.free(pipe);
    }
}

/// JavaScript answered a lookup (on the pipe thread): the call goes on.
fn lookup_answered(
    state: &Arc<ServerState>,
    pending: Pending,
    key: (String, String),
    reply: crate::error::Result<protocol::LookupResponse>,
) {
    let found = reply.and_then(|reply| {
        if let Some(e) = protocol::js_error(&reply.err, ids::UNKNOWN) {
            return Err(e);
        }
        let handle = reply
            .handle
            .ok_or_else(|| Error::internal("JavaScript's lookup reply has no handle"))?;
        if handle < 0 {
            return Err(Error::no_exist(format!(
                "no JavaScript object for {:?}",
                pending.call().suffix()
            )));
        }
        Ok((
            Arc::new(Found {
                handle,
                signature: reply.signature.unwrap_or_default(),
                has_authorizer: reply.has_authorizer,
            }),
            reply.cacheable,
        ))
    });
    match found {
        Err(e) => pending.fail(e),
        Ok((found, cacheable)) => {
            if cacheable && !state.is_stopped() {
                // Suffixes come from callers: the cache is bounded.
                let mut cache = lock(&state.cache);
                if cache.len() >= MAX_CACHED_LOOKUPS {
                    cache.clear();
                }
                cache.insert(key, found.clone());
            }
            go_on(state, pending, found);
        }
    }
}

/// Parks `waiting` in the pipe's flow table under a new flow and sends
/// `message` of `kind` to JavaScript on it. The caller's cancel, its
/// deadline, the server's stop (which aborts the server's calls) and the
/// pipe's close take it out again; so does the lookup timeout, on the
/// daemon's timer.
fn park(pipe: &Arc<Pipe>, mut waiting: Waiting, kind: OutType, message: &impl Serialize) {
    let what = waiting.what.what();
    let id = match pipe.reserve() {
        Ok(id) => id,
        Err(e) => return Box::new(waiting).fail(pipe, e),
    };
    let weak = Arc::downgrade(pipe);
    // (At once if the caller has already gone: the id is withdrawn, and
    // the fill below says so.)
    waiting.pending.on_cancel(move || {
        if let Some(p) = weak.upgrade()
            && let Some(Flow::Parked { wait, .. }) = p.withdraw(id)
        {
            // The caller has had its answer; dropping the call is all.
            wait.release(&p);
        }
    });
    let state = waiting.state.clone();
    let limit = Instant::now() + state.lookup_timeout;
    if waiting.pending.call().deadline().is_none_or(|d| d > limit) {
        let weak = Arc::downgrade(pipe);
        let ms = state.lookup_timeout.as_millis();
        waiting.timer = Some(pipe.shared.timer.schedule(limit, move || {
            if let Some(p) = weak.upgrade()
                && let Some(w) = p.take_parked(id)
            {
                w.fail(
                    &p,
                    Error::timeout(format!(
                        "JavaScript did not answer the {what} within the lookup timeout ({ms} ms, --lookup-timeout-ms)"
                    )),
                );
            }
        }));
    }
    let flow = Flow::Parked {
        answer: waiting.what.answer(),
        wait: Box::new(waiting),
    };
    if let Err(refused) = pipe.fill_and_send(id, flow, kind, message) {
        let (unsent, flow) = *refused;
        let e = match unsent {
            // The caller went (its call aborted by the server's stop, say),
            // or the pipe closed, while it was set up.
            Unsent::Cancelled | Unsent::Closed => {
                Error::aborted(format!("the {what} was abandoned"))
            }
            Unsent::Failed(e) => e,
        };
        if let Flow::Parked { wait, .. } = flow {
            wait.fail(pipe, e);
        }
    }
}
