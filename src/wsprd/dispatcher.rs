//! A server whose objects live in JavaScript, and its dispatcher.
//!
//! For every call to the server (unless an earlier reply for the same
//! suffix and method was `cacheable`), [`JsDispatcher::lookup`] opens a new
//! even flow on the pipe, sends DispatcherLookup `{serverId, suffix,
//! method}`, and blocks on a `bounded(1)` channel registered in the pipe's
//! flow table until JavaScript's lookupResponse arrives, the lookup timeout
//! or the caller's deadline passes (`Timeout`), the caller goes away, or
//! the server stops or its pipe closes (`Aborted`). The reply builds a
//! [`JsInvoker`](crate::wsprd::invoker::JsInvoker) for the handle and the
//! signature JavaScript gave.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, select};
use serde::Serialize;
use serde_json::{Value, json};

use crate::error::{Error, Result, ids};
use crate::naming;
use crate::pool::lock;
use crate::rpc::{Authorizer, Dispatcher, Listener, Lookup, Server, ServerCall, Signature};
use crate::security::Blessing;
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
    /// thread waiting on JavaScript for this server.
    stop_tx: Mutex<Option<Sender<()>>>,
    pub stop_rx: Receiver<()>,
    cache: Mutex<HashMap<(String, String), Arc<Found>>>,
    pub lookup_timeout: Duration,
}

impl ServerState {
    /// Sends a message of the daemon's to JavaScript on a new flow and
    /// waits for the reply on `rx`, until the lookup timeout, the caller's
    /// deadline, the caller's cancel, or the server's stop.
    pub(crate) fn ask<T>(
        &self,
        call: &ServerCall,
        flow: Flow,
        rx: &Receiver<Result<T>>,
        kind: OutType,
        message: &Value,
        what: &str,
    ) -> Result<T> {
        let pipe = self
            .pipe
            .upgrade()
            .ok_or_else(|| Error::aborted("the server's pipe has closed"))?;
        if pipe.is_closed() {
            return Err(Error::aborted("the server's pipe has closed"));
        }
        let id = pipe.open_flow(flow)?;
        if let Err(e) = pipe.send(id, kind, message) {
            pipe.remove_flow(id);
            return Err(e);
        }
        let limit = Instant::now() + self.lookup_timeout;
        let (deadline, whose) = match call.deadline() {
            Some(d) if d < limit => (d, "the call's deadline"),
            _ => (limit, "the lookup timeout"),
        };
        drop(pipe);
        let done = call.done().clone();
        let got = select! {
            recv(rx) -> r => match r {
                Ok(reply) => reply,
                Err(_) => Err(Error::aborted("the server's pipe has closed")),
            },
            recv(self.stop_rx) -> _ => Err(Error::aborted("the server has stopped")),
            recv(done) -> _ => Err(Error::aborted("the caller went away")),
            default(deadline.saturating_duration_since(Instant::now())) => Err(Error::timeout(format!(
                "JavaScript did not answer the {what} within {whose}"
            ))),
        };
        if let Some(p) = self.pipe.upgrade() {
            p.remove_flow(id);
        }
        got
    }

    /// Ends every wait on JavaScript for this server, at once.
    pub(crate) fn stop(&self) {
        lock(&self.stop_tx).take();
    }
}

/// The dispatcher of a JavaScript server.
pub(crate) struct JsDispatcher(pub Arc<ServerState>);

impl Dispatcher for JsDispatcher {
    /// A cached lookup reply without an authorizer of JavaScript's needs
    /// no thread; anything else goes to `lookup` on a pool thread.
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

    fn lookup(&self, call: &ServerCall) -> Result<Lookup> {
        let state = &self.0;
        let method = naming::lower_first(call.method());
        let key = (call.suffix().to_string(), method.clone());
        let cached = lock(&state.cache).get(&key).cloned();
        let found = match cached {
            Some(f) => f,
            None => {
                let (tx, rx) = crossbeam_channel::bounded(1);
                let reply = state.ask(
                    call,
                    Flow::Lookup(tx),
                    &rx,
                    OutType::DispatcherLookup,
                    &json!({"serverId": state.id, "suffix": call.suffix(), "method": method}),
                    "lookup",
                )?;
                if let Some(e) = protocol::js_error(&reply.err, ids::UNKNOWN) {
                    return Err(e);
                }
                let handle = reply
                    .handle
                    .ok_or_else(|| Error::internal("JavaScript's lookup reply has no handle"))?;
                if handle < 0 {
                    return Err(Error::no_exist(format!(
                        "no JavaScript object for {:?}",
                        call.suffix()
                    )));
                }
                let found = Arc::new(Found {
                    handle,
                    signature: reply.signature.unwrap_or_default(),
                    has_authorizer: reply.has_authorizer,
                });
                if reply.cacheable {
                    // Suffixes come from callers: the cache is bounded.
                    let mut cache = lock(&state.cache);
                    if cache.len() >= MAX_CACHED_LOOKUPS {
                        cache.clear();
                    }
                    cache.insert(key, found.clone());
                }
                found
            }
        };
        let authorizer: Option<Arc<dyn Authorizer>> = found.has_authorizer.then(|| {
            Arc::new(JsAuthorizer {
                state: state.clone(),
                handle: found.handle,
            }) as Arc<dyn Authorizer>
        });
        Ok(Lookup {
            invoker: Arc::new(JsInvoker {
                state: state.clone(),
                found,
            }),
            authorizer,
        })
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

/// Asks JavaScript whether a call may go ahead (AuthRequest).
struct JsAuthorizer {
    state: Arc<ServerState>,
    handle: i64,
}

impl Authorizer for JsAuthorizer {
    fn authorize(&self, call: &ServerCall) -> Result<()> {
        let pipe = self
            .state
            .pipe
            .upgrade()
            .ok_or_else(|| Error::aborted("the server's pipe has closed"))?;
        let method = naming::lower_first(call.method());
        let (ctx, identity) = context(&pipe, call, &method)?;
        let (tx, rx) = crossbeam_channel::bounded(1);
        let reply = self.state.ask(
            call,
            Flow::Auth(tx),
            &rx,
            OutType::AuthRequest,
            &json!({"serverId": self.state.id, "handle": self.handle, "context": ctx}),
            "authorization request",
        );
        pipe.identities.remove(identity);
        let reply = reply?;
        match protocol::js_error(&reply.err, ids::NO_ACCESS) {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
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
            cache: Mutex::new(HashMap::new()),
            lookup_timeout,
        });
        // Served and mounted as the pipe's own principal: the name is the
        // page's, and callers check the server proves the page's names.
        let rpc = listener.serve_with_client(
            Arc::new(JsDispatcher(state.clone())),
            false,
            &pipe.client,
        )?;
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
