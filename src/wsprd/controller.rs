//! What the daemon does for JavaScript's requests (contract section 5):
//! calls, serve, stopServer, signature and namespace. These run on the
//! daemon's worker pool, because they block on the network; a call holds
//! its worker only until the request has left, then its results flow back
//! through a [`CallSink`] on the connection's reader thread.

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use serde_json::value::RawValue;
use serde_json::{Value, json};

use crate::error::{Error, Result};
use crate::flow::Queued;
use crate::naming;
use crate::rpc::{CallEvent, CallHandle, CallOptions, CallSink, OfferError, SinkCall, Started};
use crate::sync::lock;
use crate::wsprd::identity;
use crate::wsprd::js_server::JsServer;
use crate::wsprd::metrics;
use crate::wsprd::pipe::{Next, Pipe, Served};
use crate::wsprd::protocol::{self, InType, Incoming, NamespaceRequest, OutType};

/// How long a signature stays cached.
const SIGNATURE_TTL: Duration = Duration::from_secs(600);
/// Signatures kept in the cache.
const MAX_SIGNATURES: usize = 1024;

/// Runs one request of JavaScript's (on a worker).
pub(crate) fn handle(pipe: &Arc<Pipe>, m: Incoming) {
    let id = m.id;
    let result: Result<Value> = match m.kind {
        InType::Namespace => return namespace(pipe, id, m.data),
        InType::Serve => serve(pipe, m.data),
        InType::StopServer => stop_server(pipe, m.data),
        InType::RemoveName => remove_name(pipe, m.data),
        InType::Signature => return signature(pipe, id, m.data),
        InType::CreateIdentity => create_identity(pipe, m.data),
        InType::BlessIdentity => bless_identity(pipe, m.data),
        _ => Err(Error::bad_protocol("not a request")),
    };
    pipe.finish_request(id, result);
}

/// Relays a call's events to JavaScript, in order, and nothing after the
/// call's end (a deadline's Timeout may race with the last items). A
/// streaming call's stream is closed before its Final even when the server
/// ended the call without closing it first.
struct JsCallSink {
    pipe: Weak<Pipe>,
    id: u64,
    /// The call's serial among those that use the id in turn.
    serial: u64,
    streaming: bool,
    state: Mutex<SinkState>,
    /// When the call arrived, and `name.method` at debug (for `/metrics`
    /// and the call's log line).
    started: Instant,
    label: Option<String>,
}

#[derive(Default)]
struct SinkState {
    stream_closed: bool,
    ended: bool,
}

impl CallSink for JsCallSink {
    fn event(&self, event: CallEvent) {
        let Some(pipe) = self.pipe.upgrade() else {
            return;
        };
        {
            let mut st = lock(&self.state);
            if st.ended {
                return;
            }
            match event {
                CallEvent::Item(v, token) => {
                    let _ = pipe.send_later(self.id, OutType::Stream, &v, Some(Box::new(token)));
                }
                CallEvent::StreamClosed => {
                    st.stream_closed = true;
                    let _ = pipe.send_later(self.id, OutType::StreamClose, &Value::Null, None);
                }
                CallEvent::Done(result) => {
                    st.ended = true;
                    pipe.end_call(self.id, self.serial);
                    pipe.shared.calls.ended(
                        pipe.id,
                        self.label.as_deref(),
                        self.started,
                        result.as_ref().err(),
                    );
                    match result {
                        Ok(results) => {
                            if self.streaming && !st.stream_closed {
                                let _ = pipe.send_later(
                                    self.id,
                                    OutType::StreamClose,
                                    &Value::Null,
                                    None,
                                );
                            }
                            let _ = pipe.send_later(self.id, OutType::Final, &results, None);
                        }
                        Err(e) => {
                            pipe.shared.stats.errors.fetch_add(1, Ordering::Relaxed);
                            log::info!("pipe {}: flow {}: {e}", pipe.id, self.id);
                            let _ = pipe.send_later(self.id, OutType::Error, &e.to_json(), None);
                        }
                    }
                }
            }
        }
        pipe.kick();
    }
}

/// A call of JavaScript's, checked and ready to start.
pub(crate) struct PreparedCall {
    /// The call's serial among those that use the id in turn.
    serial: u64,
    call: SinkCall,
    started: Instant,
}

/// A call that could not start ends with `e`.
fn not_started(pipe: &Arc<Pipe>, id: u64, label: Option<String>, started: Instant, e: Error) {
    pipe.shared
        .calls
        .ended(pipe.id, label.as_deref(), started, Some(&e));
    pipe.finish_request(id, Err(e));
}

/// Checks a call's data (on the pipe thread).
pub(crate) fn prepare_call(
    pipe: &Arc<Pipe>,
    id: u64,
    serial: u64,
    data: protocol::Data,
) -> Result<PreparedCall> {
    let req: protocol::CallRequest = protocol::data(data, "call")?;
    if req.method.is_empty() {
        return Err(Error::bad_arg("bad call data: empty method"));
    }
    let opts = match req.timeout {
        Some(t) if t.is_nan() || t < 0.0 => {
            return Err(Error::bad_arg("bad call data: negative timeout"));
        }
        Some(t) if t > 0.0 => CallOptions::timeout(Duration::from_secs_f64(t.min(1e9) / 1000.0)),
        _ => CallOptions::default(),
    }
    .with_server_blessings(server_blessings(&req.server_blessings)?);
    let method = naming::upper_first(&req.method);
    let started = Instant::now();
    let sink = Arc::new(JsCallSink {
        pipe: Arc::downgrade(pipe),
        id,
        serial,
        streaming: req.is_streaming,
        state: Mutex::new(SinkState::default()),
        started,
        label: metrics::call_label(&req.name, &method),
    });
    Ok(PreparedCall {
        serial,
        call: SinkCall::new(req.name, method, req.in_args, opts, sink),
        started,
    })
}

/// The patterns of a call's `serverBlessings`.
fn server_blessings(patterns: &[String]) -> Result<Vec<crate::security::BlessingPattern>> {
    if patterns.len() > crate::security::access::MAX_PATTERNS {
        return Err(Error::bad_arg(format!(
            "bad call data: {} serverBlessings (limit {})",
            patterns.len(),
            crate::security::access::MAX_PATTERNS
        )));
    }
    patterns
        .iter()
        .map(|p| {
            crate::security::BlessingPattern::new(p)
                .map_err(|e| Error::bad_arg(format!("bad call data: serverBlessings: {}", e.msg())))
        })
        .collect()
}

/// Starts a call of JavaScript's where it is: at once when that needs no
/// waiting (on the pipe thread: a cached name and an open connection),
/// else on one of the pipe's workers, which may resolve the name and
/// connect. Once placed, what JavaScript streamed meanwhile follows it.
pub(crate) fn start_call(pipe: &Arc<Pipe>, id: u64, prepared: PreparedCall) {
    let PreparedCall {
        serial,
        call,
        started,
    } = prepared;
    // (Made only when debug logging is on.)
    let label = metrics::call_label(call.name(), call.method());
    let handle = match pipe.client.start_call_with_sink(call) {
        Started::Now(Ok(h)) => h,
        Started::Now(Err(e)) => {
            // A limit the call reached while starting says more.
            let why = pipe.call_failure(id, serial);
            return not_started(pipe, id, label, started, why.unwrap_or(e));
        }
        Started::Thread(call) => {
            let p = pipe.clone();
            let prepared = PreparedCall {
                serial,
                call: call.on_thread(),
                started,
            };
            if let Err(e) = pipe.run_job(Box::new(move || start_call(&p, id, prepared))) {
                pipe.remove_flow(id);
                pipe.send_error(id, &e);
            }
            return;
        }
    };
    // Send what JavaScript streamed while the call was starting, then let
    // the pipe thread send directly. Only one thread sends at a time.
    let mut handle = handle;
    loop {
        match pipe.call_started(id, serial, handle) {
            Next::Open => return,
            Next::End(h, why) => {
                return match why {
                    Some(e) => h.end(e),
                    None => h.cancel(),
                };
            }
            Next::Send(h, batch) => {
                if let Err(e) = send_buffered(&h, batch) {
                    return h.end(pipe.offer_error(e));
                }
                handle = h;
            }
        }
    }
}

fn send_buffered(
    handle: &CallHandle,
    batch: VecDeque<Queued<Box<RawValue>>>,
) -> std::result::Result<(), OfferError> {
    for b in batch {
        match b {
            // (The item's charge goes with it; a wait for credit charges
            // the pipe's budget again, in the client.)
            Queued::Item { item, .. } => handle.offer(&*item)?,
            Queued::Close => handle.close_send().map_err(OfferError::Failed)?,
        }
    }
    Ok(())
}

fn create_identity(pipe: &Arc<Pipe>, data: protocol::Data) -> Result<Value> {
    let name: String = protocol::data(data, "createIdentity")?;
    let id = identity::create(&name)?;
    let handle = pipe.identities.add(id.clone())?;
    Ok(identity::describe(handle, &id))
}

fn bless_identity(pipe: &Arc<Pipe>, data: protocol::Data) -> Result<Value> {
    let req: identity::BlessRequest = protocol::data(data, "blessIdentity")?;
    let id = pipe
        .identities
        .get(req.handle)
        .ok_or_else(|| Error::no_exist(format!("no identity with handle {}", req.handle)))?;
    // Under the pipe's own name (<daemon>/<origin>), never the daemon's.
    let blessed = identity::bless(&pipe.principal(), &id, &req)?;
    let handle = pipe.identities.add(blessed.clone())?;
    Ok(identity::describe(handle, &blessed))
}

fn serve(pipe: &Arc<Pipe>, data: protocol::Data) -> Result<Value> {
    let req: protocol::ServeRequest = protocol::data(data, "serve")?;
    if naming::clean(&req.name).is_empty() {
        return Err(Error::bad_arg("bad serve data: empty name"));
    }
    let shared = &pipe.shared;
    let (server, created) = {
        let mut servers = lock(&pipe.servers);
        match servers.get(&req.server_id) {
            Some(s) => (s.clone(), false),
            None if servers.len() >= shared.config.max_servers_per_pipe => {
                return Err(crate::wsprd::shared::limit_reached(
                    &shared.stats.limits.servers,
                    format!(
                        "this pipe serves {} servers (--max-servers-per-pipe)",
                        servers.len()
                    ),
                ));
            }
            None => {
                let s: Arc<dyn Served> = Arc::new(JsServer::new(
                    &shared.listener,
                    pipe,
                    req.server_id,
                    shared.config.lookup_timeout,
                )?);
                servers.insert(req.server_id, s.clone());
                (s, true)
            }
        }
    };
    let names = server.rpc().names().len();
    if names >= shared.config.max_names_per_server {
        return Err(crate::wsprd::shared::limit_reached(
            &shared.stats.limits.names,
            format!(
                "server {} has {names} names (--max-names-per-server)",
                req.server_id
            ),
        ));
    }
    if let Err(e) = server.rpc().add_name(&req.name) {
        if created {
            lock(&pipe.servers).remove(&req.server_id);
            server.stop();
        }
        return Err(e);
    }
    log::info!(
        "pipe {}: server {} serves {} at {}",
        pipe.id,
        req.server_id,
        req.name,
        server.rpc().endpoint()
    );
    Ok(json!(server.rpc().endpoint().to_string()))
}

fn stop_server(pipe: &Arc<Pipe>, data: protocol::Data) -> Result<Value> {
    let server_id: u64 = protocol::data(data, "stopServer")?;
    let server = lock(&pipe.servers)
        .remove(&server_id)
        .ok_or_else(|| Error::no_exist(format!("no server {server_id} on this pipe")))?;
    server.stop();
    forget_signatures(pipe, &server.rpc().endpoint().to_string());
    Ok(json!(true))
}

/// Unmounts one of a server's names; the server goes on (under its other
/// names, and at its endpoint).
fn remove_name(pipe: &Arc<Pipe>, data: protocol::Data) -> Result<Value> {
    let req: protocol::RemoveNameRequest = protocol::data(data, "removeName")?;
    let server = lock(&pipe.servers)
        .get(&req.server_id)
        .cloned()
        .ok_or_else(|| Error::no_exist(format!("no server {} on this pipe", req.server_id)))?;
    server.rpc().remove_name(&req.name)?;
    log::info!(
        "pipe {}: server {} no longer serves {}",
        pipe.id,
        req.server_id,
        req.name
    );
    Ok(Value::Null)
}

/// The signature of a name, cached by who asks (the pipe's principal: a
/// server may answer callers differently, or refuse some) and the server
/// object the name resolves to (its endpoint carries the server's routing
/// id, so a server that is replaced is a new key), and dropped when a
/// server of this daemon stops. The worker resolves the name and places
/// the call; the answer comes back on the connection's reader (a server
/// that is slow to answer holds no worker).
fn signature(pipe: &Arc<Pipe>, id: u64, data: protocol::Data) {
    let placed = (|| {
        let req: protocol::SignatureRequest = protocol::data(data, "signature")?;
        let target = pipe
            .client
            .resolve(&req.name)?
            .into_iter()
            .next()
            .ok_or_else(|| Error::no_exist(format!("{} resolves to no server", req.name)))?;
        let key = (pipe.principal().names().join(","), target);
        {
            let cache = lock(&pipe.shared.signatures);
            if let Some((sig, until)) = cache.get(&key)
                && *until > Instant::now()
            {
                return Ok(Some(sig.clone()));
            }
        }
        // By name, not by the rooted target: the server must prove what the
        // name space recorded for it.
        let name = req.name.clone();
        let sink: Arc<dyn CallSink> = Arc::new(SignatureSink {
            pipe: Arc::downgrade(pipe),
            id,
            name: req.name,
            key: Mutex::new(Some(key)),
        });
        let call = SinkCall::new(
            name,
            "Signature".into(),
            vec![],
            CallOptions::timeout(Duration::from_secs(10)),
            sink,
        );
        match pipe.client.start_call_with_sink(call.on_thread()) {
            Started::Now(placed) => placed.map(|_| None),
            // (Never, on a thread that may block.)
            Started::Thread(_) => Err(Error::internal("the signature request could not start")),
        }
    })();
    match placed {
        Ok(None) => {}
        Ok(Some(sig)) => pipe.finish_request(id, Ok(sig)),
        Err(e) => pipe.finish_request(id, Err(e)),
    }
}

/// Takes a `Signature` call's answer: renamed to lowerCamelCase, cached,
/// and sent to JavaScript.
struct SignatureSink {
    pipe: Weak<Pipe>,
    id: u64,
    name: String,
    /// The cache key, taken by the answer.
    key: Mutex<Option<(String, String)>>,
}

impl CallSink for SignatureSink {
    fn event(&self, event: CallEvent) {
        let CallEvent::Done(result) = event else {
            return;
        };
        let (Some(pipe), Some(key)) = (self.pipe.upgrade(), lock(&self.key).take()) else {
            return;
        };
        let sig = result.and_then(|results| {
            let sig: crate::rpc::Signature = results
                .into_iter()
                .next()
                .and_then(|v| serde_json::from_value(v).ok())
                .ok_or_else(|| Error::internal(format!("{}: malformed signature", self.name)))?;
            serde_json::to_value(protocol::rename_methods(&sig, naming::lower_first))
                .map_err(|e| Error::internal(e.to_string()))
        });
        if let Ok(sig) = &sig {
            let mut cache = lock(&pipe.shared.signatures);
            if cache.len() >= MAX_SIGNATURES {
                cache.clear();
            }
            cache.insert(key, (sig.clone(), Instant::now() + SIGNATURE_TTL));
        }
        pipe.finish_request(self.id, sig);
    }
}

/// Drops the cached signatures of objects of the server at `endpoint`.
pub(crate) fn forget_signatures(pipe: &Pipe, endpoint: &str) {
    let prefix = format!("/{endpoint}");
    let below = format!("{prefix}/");
    lock(&pipe.shared.signatures)
        .retain(|(_, target), _| target != &prefix && !target.starts_with(&below));
}

fn namespace(pipe: &Arc<Pipe>, id: u64, data: protocol::Data) {
    let req: NamespaceRequest = match protocol::data(data, "namespace") {
        Ok(r) => r,
        Err(e) => return pipe.finish_request(id, Err(e)),
    };
    let client = &pipe.client;
    let result = match req {
        NamespaceRequest::Glob { pattern } => client.glob(&pattern).map(|entries| {
            for e in entries {
                let _ = pipe.send(id, OutType::Stream, &e);
            }
            json!([])
        }),
        NamespaceRequest::Mount {
            name,
            server,
            ttl,
            server_blessings,
        } => {
            let ttl = ttl.filter(|t| *t > 0.0).unwrap_or(60.0).min(86_400.0);
            client
                .mount_with(
                    &name,
                    &server,
                    Duration::from_secs_f64(ttl),
                    &server_blessings,
                )
                .map(|_| Value::Null)
        }
        NamespaceRequest::Unmount { name, server } => {
            client.unmount(&name, &server).map(|_| Value::Null)
        }
        NamespaceRequest::Resolve { name } => client.resolve(&name).map(|v| json!(v)),
        other => permissions_request(client, other),
    };
    pipe.finish_request(id, result);
}

/// The name space requests of the permissions extension (docs/security.md),
/// made as the pipe's own principal.
fn permissions_request(client: &crate::rpc::Client, req: NamespaceRequest) -> Result<Value> {
    match req {
        NamespaceRequest::GetPermissions { name } => client
            .get_permissions(&name)
            .map(|(permissions, version)| json!({"permissions": permissions, "version": version})),
        NamespaceRequest::SetPermissions {
            name,
            permissions,
            version,
        } => client
            .set_permissions(&name, &permissions, &version)
            .map(|_| Value::Null),
        NamespaceRequest::Delete {
            name,
            delete_subtree,
        } => client.delete(&name, delete_subtree).map(|_| Value::Null),
        _ => Err(Error::internal("not a permissions request")),
    }
}
