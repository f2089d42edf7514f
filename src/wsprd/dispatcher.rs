//! A server whose objects live in JavaScript, and its dispatcher.
//!
//! For every call to the server (unless an earlier reply for the same
//! suffix and method was `cacheable`), [`JsDispatcher`] parks the call in
//! the pipe's flow table under a new even flow and sends DispatcherLookup
//! `{serverId, suffix, method}`: no thread waits for JavaScript. The pipe
//! thread goes on with the call when JavaScript's lookupResponse arrives
//! ([`lookup_answered`]): the reply builds a
//! [`JsInvoker`](crate::wsprd::invoker::JsInvoker) for the handle and the
//! signature JavaScript gave. Otherwise the call ends when the lookup
//! timeout passes (the daemon's timer; `Timeout`), at the caller's
//! deadline (kept by the RPC server; `Timeout`), when the caller cancels,
//! or when the server stops or its pipe closes (`Aborted`). When the
//! object has an authorizer of JavaScript's, the lookup goes on to ask it
//! the same way (AuthRequest, [`auth_answered`]): the call reaches the
//! server's invocation only once JavaScript has allowed it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use serde::Serialize;
use serde_json::json;

use crate::error::{Error, Result, ids};
use crate::naming;
use crate::rpc::{Dispatcher, Listener, Lookup, Pending, Server, ServerCall, Signature};
use crate::security::{AllowAll, Authorizer, Blessing};
use crate::sync::lock;
use crate::timer::TimerId;
use crate::wsprd::identity::Identity;
use crate::wsprd::invoker::JsInvoker;
use crate::wsprd::pipe::{Flow, Pipe};
use crate::wsprd::protocol::{self, OutType};

/// Cacheable lookup replies kept per server (all dropped when full).
const MAX_CACHED_LOOKUPS: usize = 1024;

/// JavaScript's lookupResponse, decoded (or why it could not be).
pub(crate) type LookupReply = Result<protocol::LookupResponse>;
/// JavaScript's authResponse, decoded.
pub(crate) type AuthReply = Result<protocol::AuthResponse>;

/// What a lookup found: a JavaScript object and how to call it.
pub(crate) struct Found {
    pub handle: i64,
    /// lowerCamelCase method names, as JavaScript gave them.
    pub signature: Signature,
    pub has_authorizer: bool,
}

/// The state a server's dispatcher, invokers and authorizers share.
pub(crate) struct ServerState {
    pub id: u64,
    pub pipe: Weak<Pipe>,
    /// Never sent on: dropped when the server stops, which wakes every
    /// thread relaying a streaming request of this server.
    stop_tx: Mutex<Option<Sender<()>>>,
    pub stop_rx: Receiver<()>,
    /// Set when the server stops.
    stopped: AtomicBool,
    cache: Mutex<HashMap<(String, String), Arc<Found>>>,
    pub lookup_timeout: Duration,
}

/// A call waiting in the pipe's flow table for JavaScript's lookupResponse
/// or authResponse; no thread waits with it.
pub(crate) struct Waiting {
    pending: Pending,
    state: Arc<ServerState>,
    /// The lookup timeout's timer (none when the caller's deadline, which
    /// the RPC server keeps, comes first).
    timer: Option<TimerId>,
    /// A lookup's cache key: suffix and lowerCamelCase method.
    key: (String, String),
    /// An authorization's identity handle for the caller, freed with the
    /// flow.
    identity: Option<u64>,
    /// What the lookup found, for an authorization.
    found: Option<Arc<Found>>,
}

impl Waiting {
    /// Frees what the wait holds besides the call.
    fn release(&mut self, pipe: &Pipe) {
        if let Some(t) = self.timer.take() {
            pipe.shared.timer.cancel(t);
        }
        if let Some(h) = self.identity.take() {
            pipe.identities.remove(h);
        }
    }

    /// Ends the wait with `err` for the caller.
    pub(crate) fn fail(mut self, pipe: &Pipe, err: Error) {
        self.release(pipe);
        self.pending.fail(err);
    }

    /// Whether the caller has gone (cancelled, deadline passed).
    pub(crate) fn is_cancelled(&self) -> bool {
        self.pending.call().is_cancelled()
    }
}

impl ServerState {
    /// Whether the server has stopped.
    pub(crate) fn is_stopped(&self) -> bool {
        self.stopped.load(Ordering::SeqCst)
    }

    /// Parks `waiting` in the pipe's flow table under a new flow, wrapped
    /// by `wrap`, and sends `message` of `kind` to JavaScript on it. The
    /// caller's cancel, its deadline, the server's stop (which aborts the
    /// server's calls) and the pipe's close take it out again; so does the
    /// lookup timeout, on the daemon's timer.
    fn park(
        &self,
        pipe: &Arc<Pipe>,
        mut waiting: Waiting,
        wrap: fn(Box<Waiting>) -> Flow,
        kind: OutType,
        message: &impl Serialize,
        what: &'static str,
    ) {
        let id = pipe.new_flow_id();
        let weak = Arc::downgrade(pipe);
        // (At once if the caller has already gone; there is no flow yet.)
        waiting.pending.on_cancel(move || {
            if let Some(p) = weak.upgrade()
                && let Some(mut w) = p.take_waiting(id)
            {
                // The caller has had its answer; dropping the call is all.
                w.release(&p);
            }
        });
        let limit = Instant::now() + self.lookup_timeout;
        if waiting.pending.call().deadline().is_none_or(|d| d > limit) {
            let weak = Arc::downgrade(pipe);
            let ms = self.lookup_timeout.as_millis();
            waiting.timer = Some(pipe.shared.timer.schedule(limit, move || {
                if let Some(p) = weak.upgrade()
                    && let Some(w) = p.take_waiting(id)
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
        if let Err(refused) = pipe.insert_flow(id, wrap(Box::new(waiting))) {
            let (e, flow) = *refused;
            if let Flow::Lookup(w) | Flow::Auth(w) = flow {
                w.fail(pipe, e);
            }
            return;
        }
        // The caller went, the server stopped or the pipe closed between
        // the checks before and the insert: whatever ended it found no
        // flow to take out.
        let gone = match pipe.flows().get(&id) {
            Some(Flow::Lookup(w) | Flow::Auth(w)) => w.is_cancelled(),
            _ => false,
        };
        if gone || self.is_stopped() || pipe.is_closed() {
            if let Some(w) = pipe.take_waiting(id) {
                w.fail(pipe, Error::aborted(format!("the {what} was abandoned")));
            }
            return;
        }
        if let Err(e) = pipe.send(id, kind, message)
            && let Some(w) = pipe.take_waiting(id)
        {
            w.fail(pipe, e);
        }
    }

    /// Ends every wait on JavaScript for this server, at once.
    pub(crate) fn stop(&self) {
        self.stopped.store(true, Ordering::SeqCst);
        lock(&self.stop_tx).take();
    }

    /// The lookup of a call to an object JavaScript found, whose
    /// authorizer (if it has one) has allowed the call.
    fn lookup_for(self: &Arc<Self>, found: Arc<Found>) -> Lookup {
        // JavaScript has decided: nothing more to ask.
        static DECIDED: std::sync::OnceLock<Arc<dyn Authorizer>> = std::sync::OnceLock::new();
        let authorizer = found
            .has_authorizer
            .then(|| DECIDED.get_or_init(|| Arc::new(AllowAll)).clone());
        Lookup {
            invoker: Arc::new(JsInvoker {
                state: self.clone(),
                found,
            }),
            authorizer,
        }
    }

    /// Goes on with a call to an object JavaScript found: to its
    /// authorizer first, if it has one (see [`ServerState::authorize`]).
    fn go_on(self: &Arc<Self>, pending: Pending, found: Arc<Found>) {
        if found.has_authorizer {
            self.authorize(pending, found);
        } else {
            pending.found(Ok(self.lookup_for(found)));
        }
    }

    /// Asks JavaScript's authorizer whether the call may go ahead, with
    /// the call parked in the pipe's flow table (AuthRequest; see the
    /// module documentation).
    fn authorize(self: &Arc<Self>, pending: Pending, found: Arc<Found>) {
        let pipe = match self.live_pipe() {
            Ok(p) => p,
            Err(e) => return pending.fail(e),
        };
        let call = pending.call();
        let method = naming::lower_first(call.method());
        let (message, identity) = match context(&pipe, call, &method) {
            Ok((ctx, identity)) => (
                json!({"serverId": self.id, "handle": found.handle, "context": ctx}),
                identity,
            ),
            Err(e) => return pending.fail(e),
        };
        let waiting = Waiting {
            pending,
            state: self.clone(),
            timer: None,
            key: Default::default(),
            identity: Some(identity),
            found: Some(found),
        };
        self.park(
            &pipe,
            waiting,
            Flow::Auth,
            OutType::AuthRequest,
            &message,
            "authorization request",
        );
    }

    /// The pipe, unless it has closed or the server has stopped.
    fn live_pipe(&self) -> Result<Arc<Pipe>> {
        if self.is_stopped() {
            return Err(Error::aborted("the server has stopped"));
        }
        self.pipe
            .upgrade()
            .filter(|p| !p.is_closed())
            .ok_or_else(|| Error::aborted("the server's pipe has closed"))
    }
}

/// JavaScript answered a lookup (on the pipe thread): the call goes on.
pub(crate) fn lookup_answered(pipe: &Pipe, mut w: Box<Waiting>, reply: LookupReply) {
    w.release(pipe);
    let Waiting {
        pending,
        state,
        key,
        ..
    } = *w;
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
            state.go_on(pending, found);
        }
    }
}

/// JavaScript answered an authorization (on the pipe thread): the call
/// goes on, or its caller gets the refusal. Anything but a clear yes
/// refuses.
pub(crate) fn auth_answered(pipe: &Pipe, mut w: Box<Waiting>, reply: AuthReply) {
    w.release(pipe);
    let answer = reply.and_then(|r| match protocol::js_error(&r.err, ids::NO_ACCESS) {
        Some(e) => Err(e),
        None => Ok(()),
    });
    let Waiting {
        pending,
        state,
        found,
        ..
    } = *w;
    match (answer, found) {
        (Ok(()), Some(found)) => pending.found(Ok(state.lookup_for(found))),
        (Err(e), _) => pending.fail(e),
        (Ok(()), None) => pending.fail(Error::no_access(
            "an authorization answered for a call whose lookup is lost",
        )),
    }
}

/// The dispatcher of a JavaScript server.
pub(crate) struct JsDispatcher(pub Arc<ServerState>);

impl Dispatcher for JsDispatcher {
    /// A cached lookup reply without an authorizer of JavaScript's needs
    /// no JavaScript at all.
    fn lookup_now(&self, call: &ServerCall) -> Option<Result<Lookup>> {
        let state = &self.0;
        let key = (
            call.suffix().to_string(),
            naming::lower_first(call.method()),
        );
        let found = lock(&state.cache).get(&key).cloned()?;
        if found.has_authorizer {
            return None;
        }
        Some(Ok(Lookup {
            invoker: Arc::new(JsInvoker {
                state: state.clone(),
                found,
            }),
            authorizer: None,
        }))
    }

    /// Asks JavaScript, with the call parked in the pipe's flow table (see
    /// the module documentation); a cached reply goes on at once.
    fn lookup_later(&self, pending: Pending) -> Option<Pending> {
        let state = &self.0;
        let pipe = match state.live_pipe() {
            Ok(p) => p,
            Err(e) => {
                pending.fail(e);
                return None;
            }
        };
        let call = pending.call();
        let key = (
            call.suffix().to_string(),
            naming::lower_first(call.method()),
        );
        let cached = lock(&state.cache).get(&key).cloned();
        if let Some(found) = cached {
            state.go_on(pending, found);
            return None;
        }
        let message = json!({"serverId": state.id, "suffix": key.0, "method": key.1});
        let waiting = Waiting {
            pending,
            state: state.clone(),
            timer: None,
            key,
            identity: None,
            found: None,
        };
        state.park(
            &pipe,
            waiting,
            Flow::Lookup,
            OutType::DispatcherLookup,
            &message,
            "lookup",
        );
        None
    }

    /// Never used: every lookup goes to [`JsDispatcher::lookup_later`],
    /// which holds no thread. Refuses, should it ever be asked.
    fn lookup(&self, _call: &ServerCall) -> Result<Lookup> {
        Err(Error::internal(
            "a JavaScript server's lookup is answered later, never on a waiting thread",
        ))
    }
}

/// The context JavaScript sees for a call (in ServerRequest and
/// AuthRequest), borrowed from the call and written straight to JSON.
/// Fields in alphabetical order, as a JSON object of them would have.
#[derive(Serialize)]
pub(crate) struct Context<'a> {
    method: &'a str,
    name: &'a str,
    #[serde(rename = "remoteId")]
    remote_id: RemoteId<'a>,
    suffix: &'a str,
    /// Milliseconds left before the caller's deadline.
    #[serde(skip_serializing_if = "Option::is_none")]
    timeout: Option<u64>,
}

/// The caller as JavaScript sees it: an identity handle and the names it
/// proved.
#[derive(Serialize)]
struct RemoteId<'a> {
    handle: u64,
    names: &'a [String],
}

/// The context of `call` (whose method JavaScript knows as `method`), and
/// the identity handle it registered for the caller, which the flow's owner
/// frees when the flow ends.
pub(crate) fn context<'a>(
    pipe: &Pipe,
    call: &'a ServerCall,
    method: &'a str,
) -> Result<(Context<'a>, u64)> {
    let names = call.remote_names();
    let proven: Vec<Blessing> = call.remote_blessings().cloned().collect();
    let handle = pipe
        .identities
        .add(Identity::remote(call.remote().public_key(), proven))?;
    let ctx = Context {
        method,
        name: call.name(),
        remote_id: RemoteId { handle, names },
        suffix: call.suffix(),
        timeout: call
            .deadline()
            .map(|d| d.saturating_duration_since(Instant::now()).as_millis() as u64),
    };
    Ok((ctx, handle))
}

/// A server whose objects live in a pipe's JavaScript.
pub(crate) struct JsServer {
    pub state: Arc<ServerState>,
    pub rpc: Server,
}

impl JsServer {
    /// Adds a server to `listener` for JavaScript's `server_id`.
    pub(crate) fn new(
        listener: &Listener,
        pipe: &Arc<Pipe>,
        server_id: u64,
        lookup_timeout: Duration,
    ) -> Result<JsServer> {
        let (stop_tx, stop_rx) = crossbeam_channel::bounded(0);
        let state = Arc::new(ServerState {
            id: server_id,
            pipe: Arc::downgrade(pipe),
            stop_tx: Mutex::new(Some(stop_tx)),
            stop_rx,
            stopped: AtomicBool::new(false),
            cache: Mutex::new(HashMap::new()),
            lookup_timeout,
        });
        // Served and mounted as the pipe's own principal: the name is the
        // page's, and callers check the server proves the page's names.
        let rpc =
            listener.serve_with_client(Arc::new(JsDispatcher(state.clone())), &pipe.client)?;
        Ok(JsServer { state, rpc })
    }

    /// The endpoint string JavaScript gets from serve.
    pub(crate) fn endpoint(&self) -> String {
        self.rpc.endpoint().to_string()
    }

    /// Ends every wait on JavaScript at once, unmounts the names, aborts
    /// calls in flight and closes the server's connections.
    pub(crate) fn stop(&self) {
        self.state.stop();
        self.rpc.abort();
        log::info!("server {} ({}) stopped", self.state.id, self.rpc.endpoint());
    }
}
