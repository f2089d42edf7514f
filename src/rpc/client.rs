//! The RPC client: blocking and streaming calls by name, with deadlines,
//! cancel, connection reuse and name resolution.
//!
//! One connection is kept per server (address and routing id) and shared
//! by every call to it; each connection has one reader thread, named
//! `wspr-client-<n>`, which routes frames to their calls. Calls deliver
//! their events to a [`CallSink`]: the blocking [`Call`] uses a channel,
//! the daemon uses a sink that writes straight to a websocket.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, RwLock, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use serde_json::Value;

use crate::error::{Error, Result};
use crate::flow::{Flows, Full, Limit, Refusal, Sending, Stream};
use crate::naming::{Endpoint, Name};
use crate::rpc::conn::{
    self, FrameHandler, FrameReader, Granter, ItemToken, LocalSink, ReadError, Writer,
};
use crate::rpc::namespace::{GlobEntry, Namespace, Resolved, Tables};
use crate::rpc::publisher::Mount;
use crate::rpc::roots::{DEFAULT_ROOT, env_roots, root_name};
use crate::rpc::server_auth::{Expect, Verdicts};
use crate::rpc::wire::{self, Frame};
use crate::security::access::Permissions;
use crate::security::{BlessingPattern, Principal, RemoteIdentity};
use crate::sync::lock;
use crate::timer::{Timer, TimerId};

/// Settings of a [`Client`].
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct ClientConfig {
    /// Longest wait for a connection to be set up. Default 5 s.
    pub connect_timeout: Duration,
    /// A write blocked this long fails its connection (the peer is not
    /// reading). Default 10 s.
    pub write_timeout: Duration,
    /// Largest frame accepted or sent, in bytes. Default 4 MiB.
    pub max_frame: usize,
    /// Bytes of stream items a non-blocking sender may queue on one flow
    /// while it waits for credit. Default 1 MiB.
    pub max_pending: usize,
    /// Bytes queued for writing on one connection before sends fail.
    /// Default 16 MiB.
    pub max_queued: usize,
    /// Reach servers of this same process without a socket (frames are
    /// handed over directly; identities are the two principals). Default
    /// true.
    pub in_process: bool,
    /// Bytes of stream items waiting for credit over all the client's
    /// calls (the daemon gives a pipe's client the pipe's budget). Default
    /// none.
    pub(crate) pending_budget: Option<crate::budget::Budget>,
    /// The timer that ends calls at their deadlines (the daemon gives its
    /// pipes' clients its own). Default none: the client starts its own
    /// when it first needs one.
    pub(crate) timer: Option<Timer>,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            connect_timeout: Duration::from_secs(5),
            write_timeout: Duration::from_secs(10),
            max_frame: wire::DEFAULT_MAX_FRAME,
            max_pending: 1 << 20,
            max_queued: 16 << 20,
            in_process: true,
            pending_budget: None,
            timer: None,
        }
    }
}

impl ClientConfig {
    /// Checks that the settings make sense.
    pub fn validate(&self) -> Result<()> {
        if self.connect_timeout.is_zero() || self.write_timeout.is_zero() {
            return Err(Error::bad_arg("timeouts must be positive"));
        }
        if self.max_frame < 1024 {
            return Err(Error::bad_arg("max_frame must be at least 1 KiB"));
        }
        Ok(())
    }
}

/// Per-call options.
#[derive(Clone, Debug, Default)]
pub struct CallOptions {
    /// When the caller gives up; also sent to the server.
    pub deadline: Option<Instant>,
    /// Who the server must be: it must prove a blessing name matching one
    /// of these patterns, besides one the name space recorded for it,
    /// before anything is sent to it (else the call fails with
    /// `NoAccess`). Empty: only what the name space recorded.
    pub server_blessings: Vec<BlessingPattern>,
}

impl CallOptions {
    /// Options with a deadline `timeout` from now.
    pub fn timeout(timeout: Duration) -> CallOptions {
        CallOptions {
            deadline: Some(Instant::now() + timeout),
            ..CallOptions::default()
        }
    }

    /// These options, pinning the server's blessings to `patterns` (see
    /// [`CallOptions::server_blessings`]).
    pub fn with_server_blessings(mut self, patterns: Vec<BlessingPattern>) -> CallOptions {
        self.server_blessings = patterns;
        self
    }
}

/// Something that happens to a call, in order.
#[derive(Debug)]
pub enum CallEvent {
    /// The server sent a stream item. Dropping the token grants the server
    /// credit for more.
    Item(Value, ItemToken),
    /// The server closed its stream.
    StreamClosed,
    /// The call ended: the results, or why not. Nothing follows.
    Done(Result<Vec<Value>>),
}

/// Receives a call's events, on the connection's reader thread (or the
/// timer's, for a deadline). Implementations must not block.
pub trait CallSink: Send + Sync + 'static {
    /// One event.
    fn event(&self, event: CallEvent);
}

impl CallSink for Sender<CallEvent> {
    fn event(&self, event: CallEvent) {
        let _ = self.send(event);
    }
}

/// What a client keeps per call (the rest is the flow core's).
struct ClientFlow {
    sink: Arc<dyn CallSink>,
    stream: Stream,
    timer: Option<TimerId>,
}

pub(crate) struct ClientConn {
    id: u64,
    address: String,
    writer: Writer,
    flows: Mutex<Flows<ClientFlow>>,
    dead: AtomicBool,
    remote: RemoteIdentity,
    /// Whether the server may be sent requests, per expectation.
    verdicts: Verdicts,
    /// When the connection stops being good, and why: the first of the
    /// server's blessings this client recognizes expires, or the first of
    /// those this client presented to it (the server would refuse its
    /// calls then; a new session presents the client's blessings of then).
    server_expiry: Option<(SystemTime, String)>,
    /// The timer that ends the connection then.
    expiry_timer: Mutex<Option<TimerId>>,
    reader: Mutex<Option<JoinHandle<()>>>,
    config: ClientConfig,
    client: Weak<ClientInner>,
    /// The server end of an in-process link: only held, to keep it alive
    /// as long as this end (the link's sinks hold weak references).
    _local: Option<Arc<dyn FrameHandler>>,
}

impl ClientConn {
    fn flows(&self) -> MutexGuard<'_, Flows<ClientFlow>> {
        lock(&self.flows)
    }

    /// A new flow (the client picks its ids); its id and serial.
    fn open_flow(&self, sink: Arc<dyn CallSink>, deadline: Option<Instant>) -> Result<(u64, u64)> {
        let flow = ClientFlow {
            sink,
            stream: Stream::new(wire::STREAM_WINDOW),
            timer: None,
        };
        let mut flows = self.flows();
        // (The table has no limit: a client's calls are its own.)
        let (id, serial) = flows
            .open_next(flow)
            .map_err(|_| Error::internal("no flow left on the connection"))?;
        if deadline.is_some()
            && let Some(s) = flows.get_mut(id)
        {
            s.set_deadline(deadline);
        }
        Ok((id, serial))
    }

    /// Ends a flow locally with `result` (if it has not ended), telling the
    /// server with a Cancel when the result is an error.
    fn end_flow(&self, flow: u64, result: Result<Vec<Value>>) {
        let Some(f) = self.flows().remove(flow) else {
            return;
        };
        self.ended(flow, f.into_value(), result);
    }

    /// A flow has ended (it is out of the table) with `result`.
    fn ended(&self, flow: u64, f: ClientFlow, result: Result<Vec<Value>>) {
        self.cancel_timer(f.timer);
        if result.is_err() {
            let _ = self.writer.send_with(|b| wire::encode_cancel(b, flow));
        }
        f.sink.event(CallEvent::Done(result));
    }

    /// Ends the call on `flow` (numbered `serial`) with `Timeout` if its
    /// deadline has passed.
    fn expire(&self, flow: u64, serial: u64, what: &str) {
        let Some(f) = self.flows().expire(flow, serial, Instant::now()) else {
            return;
        };
        let err = Error::timeout(format!("{what}: deadline passed"));
        self.ended(flow, f.into_value(), Err(err));
    }

    fn cancel_timer(&self, timer: Option<TimerId>) {
        if let (Some(t), Some(c)) = (timer, self.client.upgrade())
            && let Some(timer) = c.timer_if_started()
        {
            timer.cancel(t);
        }
    }

    /// Whether a call may go on this connection: its reader has not seen
    /// it end, and it is not [closed while idle](Self::closed_while_idle).
    /// Called with no lock held (it may look at the socket).
    fn is_live(&self) -> bool {
        !self.dead.load(Ordering::SeqCst)
            && !self.server_expired(SystemTime::now())
            && !self.closed_while_idle()
    }

    fn server_expired(&self, now: SystemTime) -> bool {
        self.server_expiry.as_ref().is_some_and(|(t, _)| *t <= now)
    }

    /// Ends the connection when the server's blessing expires, or the one
    /// this client presented: calls in flight end with `NoAccess` (what
    /// they were sent on no longer holds), and the next call sets up a new
    /// session, where both prove themselves again.
    fn watch_server_expiry(self: &Arc<Self>, client: &Client) {
        let Some((at, _)) = &self.server_expiry else {
            return;
        };
        let when = Instant::now() + at.duration_since(SystemTime::now()).unwrap_or_default();
        let weak = Arc::downgrade(self);
        let id = client.timer().schedule(when, move || {
            if let Some(c) = weak.upgrade() {
                c.server_blessing_expired();
            }
        });
        *lock(&self.expiry_timer) = Some(id);
    }

    fn server_blessing_expired(&self) {
        let Some((_, why)) = &self.server_expiry else {
            return;
        };
        let err = Error::no_access(why.clone());
        log::debug!("connection {} to {}: {}", self.id, self.address, err.msg());
        self.fail_all(&err);
        // (On the timer thread: nothing is flushed to a peer that may not
        // read.)
        self.writer.abort("the server's blessing expired");
    }

    /// Cancels the expiry timer (the connection has closed).
    fn stop_watching(&self) {
        let t = lock(&self.expiry_timer).take();
        self.cancel_timer(t);
    }

    /// Whether this connection, with no call in flight, has been closed by
    /// its server where the reader has not yet noticed (the server died or
    /// restarted a moment ago). A call sent on it would fail with
    /// `Aborted` though the server never saw it; its caller connects
    /// afresh instead. A connection with calls in flight is not looked at
    /// (the reader's own reading tells those calls).
    fn closed_while_idle(&self) -> bool {
        // (The flows lock is released before the socket is looked at.)
        let idle = self.flows().is_empty();
        idle && self.writer.peer_closed()
    }

    fn fail_all(&self, err: &Error) {
        self.dead.store(true, Ordering::SeqCst);
        let flows = self.flows().drain();
        for (_, f) in flows {
            self.cancel_timer(f.timer);
            f.sink.event(CallEvent::Done(Err(err.clone())));
        }
    }

    fn read_loop(self: Arc<Self>, mut reader: FrameReader) {
        let batching = crate::outbox::Batching::start();
        let why = loop {
            let frame = match reader.next() {
                Ok(f) => f,
                Err(ReadError::Eof) => break format!("{} closed the connection", self.address),
                Err(e) => {
                    if !self.writer.is_closed() {
                        log::warn!("connection {} to {}: {e}", self.id, self.address);
                    }
                    break format!("connection to {} lost: {e}", self.address);
                }
            };
            if let Err(e) = self.on_frame(frame) {
                log::error!(
                    "connection {} to {}: {e}; closing it",
                    self.id,
                    self.address
                );
                break format!("protocol error from {}: {e}", self.address);
            }
        };
        drop(batching);
        self.writer.close(&why);
        self.fail_all(&Error::aborted(why));
        self.stop_watching();
        log::debug!("connection {} to {} closed", self.id, self.address);
    }

    fn on_frame(self: &Arc<Self>, frame: Frame) -> std::result::Result<(), String> {
        match frame {
            Frame::Response { flow, result } => {
                let f = self.flows().remove(flow);
                match f {
                    Some(f) => {
                        self.cancel_timer(f.timer);
                        f.sink.event(CallEvent::Done(result));
                    }
                    None => log::debug!("response for finished flow {flow} ignored"),
                }
            }
            Frame::Item { flow, value, size } => {
                let mut flows = self.flows();
                let Some(f) = flows.get_mut(flow) else {
                    return Ok(());
                };
                if !f.stream.receive(size) {
                    return Err(format!("flow {flow}: stream item past the credit window"));
                }
                let sink = f.sink.clone();
                drop(flows);
                let me: Arc<dyn Granter> = self.clone();
                let token = ItemToken::new(Arc::downgrade(&me), flow, size);
                sink.event(CallEvent::Item(value, token));
            }
            Frame::CloseSend { flow } => {
                let sink = self.flows().get(flow).map(|f| f.sink.clone());
                if let Some(s) = sink {
                    s.event(CallEvent::StreamClosed);
                }
            }
            Frame::Credit { flow, bytes } => {
                let mut out = Vec::new();
                let mut flows = self.flows();
                if let Some(f) = flows.get_mut(flow) {
                    f.stream
                        .grant(bytes, &mut out, |o| wire::encode_close_send(o, flow));
                }
                drop(flows);
                if !out.is_empty() {
                    let _ = self.writer.send(&out, None);
                }
            }
            Frame::Request(r) => return Err(format!("unexpected request on flow {}", r.flow)),
            Frame::Cancel { flow } => return Err(format!("unexpected cancel on flow {flow}")),
        }
        Ok(())
    }
}

impl FrameHandler for ClientConn {
    fn frame(self: Arc<Self>, frame: Frame) -> std::result::Result<(), String> {
        self.on_frame(frame)
    }

    fn closed(self: Arc<Self>, why: &str) {
        self.dead.store(true, Ordering::SeqCst);
        self.stop_watching();
        self.writer.close(why);
        self.fail_all(&Error::aborted(format!(
            "connection to {} lost: {why}",
            self.address
        )));
    }
}

impl Granter for ClientConn {
    fn consumed(&self, flow: u64, size: u32) {
        let grant = self
            .flows()
            .get_mut(flow)
            .and_then(|f| f.stream.consume(size));
        if let Some(bytes) = grant {
            let _ = self
                .writer
                .send_with(|b| wire::encode_credit(b, flow, bytes));
        }
    }
}

pub(crate) struct ClientInner {
    config: ClientConfig,
    namespace: Arc<Namespace>,
    /// Who the client is now (new connections present it).
    principal: RwLock<Arc<Principal>>,
    conns: Mutex<HashMap<(String, u64), Arc<ClientConn>>>,
    /// The client's own timer, if it has none from its settings (started
    /// when first needed).
    own_timer: OnceLock<Timer>,
}

impl Drop for ClientInner {
    fn drop(&mut self) {
        self.close_all("client dropped");
    }
}

impl ClientInner {
    /// The timer that ends calls at their deadlines: the one from the
    /// settings, or the client's own (started now if need be).
    fn timer(&self) -> &Timer {
        match &self.config.timer {
            Some(t) => t,
            None => self
                .own_timer
                .get_or_init(|| Timer::new("wspr-client-timer")),
        }
    }

    /// The timer, unless the client's own was never started.
    fn timer_if_started(&self) -> Option<&Timer> {
        self.config.timer.as_ref().or(self.own_timer.get())
    }

    /// Closes every connection, then joins their readers.
    fn close_all(&self, why: &str) {
        let conns: Vec<_> = lock(&self.conns).drain().map(|(_, c)| c).collect();
        for c in &conns {
            c.writer.close(why);
        }
        for c in conns {
            join_reader(&c);
        }
    }
}

/// When a connection between `principal` and `server` stops being good,
/// and why: the first of the server's blessings the client recognizes
/// expires, or the first of the blessings the client presented to it
/// (the chains were verified by the session; one already expired proves
/// nothing and is not waited for).
fn server_expiry(
    principal: &Principal,
    server: &RemoteIdentity,
    address: &str,
) -> Option<(SystemTime, String)> {
    let now = SystemTime::now();
    let theirs = server
        .blessings()
        .iter()
        .filter(|b| principal.recognizes(b))
        .filter_map(|b| b.expiry().map(|t| (t, b.name())))
        .filter(|(t, _)| *t > now)
        .min()
        .map(|(t, name)| {
            (
                t,
                format!("the blessing {name} of the server at {address} expired during the call"),
            )
        });
    let shown = principal.blessings_for(&principal.proven_names(server, ""));
    let mine = shown
        .iter()
        .filter_map(|b| b.expiry().map(|t| (t, b.name())))
        .filter(|(t, _)| *t > now)
        .min()
        .map(|(t, name)| {
            (
                t,
                format!(
                    "this caller's blessing {name}, presented to the server at {address}, expired during the call"
                ),
            )
        });
    match (theirs, mine) {
        (Some(a), Some(b)) => Some(if b.0 < a.0 { b } else { a }),
        (a, b) => a.or(b),
    }
}

fn join_reader(c: &ClientConn) {
    let h = lock(&c.reader).take();
    crate::sync::join(h);
}

fn stream_closed() -> Error {
    Error::bad_arg("the stream was closed; nothing more can be sent")
}

/// A call to start whose events go to a sink
/// ([`Client::start_call_with_sink`]).
pub struct SinkCall {
    name: String,
    method: String,
    args: Vec<Value>,
    opts: CallOptions,
    sink: Arc<dyn CallSink>,
    may_block: bool,
}

impl SinkCall {
    /// `method` on `name` with `args`, its events to `sink`, started from
    /// a thread that must not block.
    pub fn new(
        name: String,
        method: String,
        args: Vec<Value>,
        opts: CallOptions,
        sink: Arc<dyn CallSink>,
    ) -> SinkCall {
        SinkCall {
            name,
            method,
            args,
            opts,
            sink,
            may_block: false,
        }
    }

    /// The same call, started from a thread that may block (to resolve
    /// the name and connect).
    pub fn on_thread(mut self) -> SinkCall {
        self.may_block = true;
        self
    }

    /// The name called.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The method called, as given.
    pub fn method(&self) -> &str {
        &self.method
    }
}

/// What [`Client::start_call_with_sink`] did.
pub enum Started {
    /// The call is placed (its events go to its sink from now on), or it
    /// could not be.
    Now(Result<CallHandle>),
    /// Placing it would have to wait: it is handed back, nothing sent, to
    /// be started again from a thread that may block
    /// ([`SinkCall::on_thread`]).
    Thread(SinkCall),
}

/// Why [`CallHandle::offer`] did not take an item.
#[derive(Debug)]
pub enum OfferError {
    /// The server is not taking items, and `ClientConfig::max_pending`
    /// bytes already wait for credit.
    Full(Error),
    /// Items waiting for credit over all the client's calls hold its
    /// whole budget.
    OverBudget(Error),
    /// The call has ended, its stream is closed, or the item cannot go.
    Failed(Error),
}

impl From<OfferError> for Error {
    fn from(e: OfferError) -> Error {
        match e {
            OfferError::Full(e) | OfferError::OverBudget(e) | OfferError::Failed(e) => e,
        }
    }
}

/// Where a client's name space comes from.
enum Roots {
    /// [`env_roots`], else [`DEFAULT_ROOT`].
    Env,
    Given(Vec<String>),
    Namespace(Arc<Namespace>),
}

/// Who a client is.
enum Identity {
    /// The user's credentials directory ([`Principal::default_dir`]).
    User,
    Dir(PathBuf),
    Principal(Arc<Principal>),
    Anonymous,
}

/// Builds a [`Client`] (from [`Client::builder`]). What it is not told is
/// as the command line's tools do:
///
/// - the name space roots of [`NAMESPACE_ROOT_ENV`](crate::rpc::NAMESPACE_ROOT_ENV), else
///   [`DEFAULT_ROOT`];
/// - the user's principal, in [`Principal::default_dir`]
///   (`WSPR_CREDENTIALS`, else `$XDG_CONFIG_HOME/wspr/credentials`, else
///   `~/.config/wspr/credentials`), created there on first use, self-blessed
///   with [`Principal::default_name`];
/// - [`ClientConfig::default`].
///
/// With the same credentials as `wsprd serve`, the client is who the
/// daemon is: servers of the daemon's pages admit it under their default
/// policy (see `docs/security.md`).
///
/// ```
/// # let dir = std::env::temp_dir().join(format!("wspr-doc-builder-{}", std::process::id()));
/// use wspr::rpc::Client;
/// let client = Client::builder()
///     .namespace_roots(["127.0.0.1:8125"])
///     .credentials(&dir) // created with a new principal if empty
///     .build()?;
/// assert_eq!(client.namespace().roots(), vec!["/127.0.0.1:8125"]);
/// // Loaded again, the same principal.
/// let again = Client::builder().credentials(&dir).build()?;
/// assert_eq!(again.principal().public_key(), client.principal().public_key());
/// # std::fs::remove_dir_all(&dir).unwrap();
/// # Ok::<(), wspr::Error>(())
/// ```
#[must_use = "a builder does nothing until built"]
pub struct ClientBuilder {
    roots: Roots,
    identity: Identity,
    config: ClientConfig,
}

impl Default for ClientBuilder {
    fn default() -> Self {
        ClientBuilder {
            roots: Roots::Env,
            identity: Identity::User,
            config: ClientConfig::default(),
        }
    }
}

impl ClientBuilder {
    /// Resolves names from these roots: rooted names of mount tables, or
    /// their addresses (`127.0.0.1:8125`). None: only rooted names (such
    /// as a server's own, `/127.0.0.1:43127`) can be called.
    pub fn namespace_roots<I, S>(mut self, roots: I) -> ClientBuilder
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.roots = Roots::Given(roots.into_iter().map(Into::into).collect());
        self
    }

    /// Resolves names through `namespace` (shared with other clients: its
    /// roots and its cache).
    pub fn namespace(mut self, namespace: Arc<Namespace>) -> ClientBuilder {
        self.roots = Roots::Namespace(namespace);
        self
    }

    /// Authenticates as the principal in the credentials directory `dir`
    /// (as `--credentials`), created there if the directory has none.
    pub fn credentials(mut self, dir: impl Into<PathBuf>) -> ClientBuilder {
        self.identity = Identity::Dir(dir.into());
        self
    }

    /// Authenticates as `principal`.
    pub fn principal(mut self, principal: Arc<Principal>) -> ClientBuilder {
        self.identity = Identity::Principal(principal);
        self
    }

    /// Authenticates as a new principal of its own, self-blessed
    /// `anonymous` and trusted by nobody else (as [`Client::new`]); no
    /// file is read or written.
    pub fn anonymous(mut self) -> ClientBuilder {
        self.identity = Identity::Anonymous;
        self
    }

    /// These settings.
    pub fn config(mut self, config: ClientConfig) -> ClientBuilder {
        self.config = config;
        self
    }

    /// The client: `BadArg` for a root or a setting that is not one, or
    /// the error loading (or creating) the credentials (see
    /// [`Principal::load_or_create`]).
    pub fn build(self) -> Result<Client> {
        self.config.validate()?;
        let namespace = match self.roots {
            Roots::Namespace(ns) => ns,
            Roots::Given(roots) => {
                Namespace::new(roots.iter().map(|r| root_name(r)).collect::<Result<_>>()?)
            }
            Roots::Env => {
                Namespace::new(env_roots()?.unwrap_or_else(|| vec![DEFAULT_ROOT.to_string()]))
            }
        };
        let load = |dir: PathBuf| -> Result<Arc<Principal>> {
            Principal::load_or_create(&dir, &Principal::default_name()).map(Arc::new)
        };
        let principal = match self.identity {
            Identity::Principal(p) => p,
            Identity::Dir(dir) => load(dir)?,
            Identity::User => load(Principal::default_dir())?,
            Identity::Anonymous => Arc::new(Principal::new_self_blessed("anonymous")?),
        };
        Ok(Client::with_principal(namespace, principal, self.config))
    }
}

/// An RPC client. Cloning shares connections; dropping the last clone
/// closes them and joins their threads (calls in flight end with
/// `Aborted`).
///
/// [`Client::from_env`] is the client the command line makes: the name
/// space root and the credentials of the user (see [`ClientBuilder`]).
///
/// ```no_run
/// use wspr::rpc::Client;
/// let client = Client::from_env()?;
/// let sum = client.call("demo/adder", "Add", vec![2.into(), 3.into()], Default::default())?;
/// # Ok::<(), wspr::Error>(())
/// ```
#[derive(Clone)]
pub struct Client {
    inner: Arc<ClientInner>,
}

impl Client {
    /// A client set up step by step: its name space, its credentials, its
    /// settings. What it does not say is as the command line's tools do
    /// (see [`ClientBuilder`]).
    pub fn builder() -> ClientBuilder {
        ClientBuilder::default()
    }

    /// The client the command line's tools make: the name space roots of
    /// `WSPR_NAMESPACE_ROOT` (else the mount table of `wsprd serve`,
    /// [`DEFAULT_ROOT`](crate::rpc::DEFAULT_ROOT)), and the user's
    /// principal, from `WSPR_CREDENTIALS` (else
    /// `~/.config/wspr/credentials`; see
    /// [`Principal::default_dir`]), created there on first use. So it
    /// reaches what the user's `wsprd serve` serves, the objects of its
    /// pages included.
    pub fn from_env() -> Result<Client> {
        Client::builder().build()
    }

    /// A client resolving names through `namespace`, with default settings
    /// and a new principal of its own (self-blessed `anonymous`, trusted by
    /// nobody else: servers with the default policy refuse it, except its
    /// own). Fails only if the system has no randomness for its key.
    pub fn new(namespace: Arc<Namespace>) -> Result<Client> {
        Client::with_config(namespace, ClientConfig::default())
    }

    /// Like [`Client::new`], with the given settings.
    pub fn with_config(namespace: Arc<Namespace>, config: ClientConfig) -> Result<Client> {
        let principal = Principal::new_self_blessed("anonymous")?;
        Ok(Client::with_principal(
            namespace,
            Arc::new(principal),
            config,
        ))
    }

    /// A client that authenticates as `principal`.
    pub fn with_principal(
        namespace: Arc<Namespace>,
        principal: Arc<Principal>,
        config: ClientConfig,
    ) -> Client {
        Client {
            inner: Arc::new(ClientInner {
                config,
                namespace,
                principal: RwLock::new(principal),
                conns: Mutex::new(HashMap::new()),
                own_timer: OnceLock::new(),
            }),
        }
    }

    /// The name space this client resolves names in.
    pub fn namespace(&self) -> &Arc<Namespace> {
        &self.inner.namespace
    }

    /// Who the client authenticates as.
    pub fn principal(&self) -> Arc<Principal> {
        self.inner
            .principal
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Authenticates as `principal` from now on: connections set up from
    /// now present its blessings (and servers that mount through this
    /// client prove them). Connections already set up go on with what they
    /// presented until it expires; then they close, and calls set up new
    /// ones. For a principal whose blessing is renewed (the same key, a
    /// later expiry): a pipe whose user's token was refreshed.
    pub fn set_principal(&self, principal: Arc<Principal>) {
        *self
            .inner
            .principal
            .write()
            .unwrap_or_else(|p| p.into_inner()) = principal;
    }

    /// The client's settings.
    pub fn config(&self) -> &ClientConfig {
        &self.inner.config
    }

    /// Calls `method` on `name` and waits for its results.
    pub fn call(
        &self,
        name: &str,
        method: &str,
        args: Vec<Value>,
        opts: CallOptions,
    ) -> Result<Vec<Value>> {
        self.start_call(name, method, args, opts)?.finish()
    }

    /// Starts a call whose streams the caller drives through [`Call`].
    pub fn start_call(
        &self,
        name: &str,
        method: &str,
        args: Vec<Value>,
        opts: CallOptions,
    ) -> Result<Call> {
        let (tx, rx) = crossbeam_channel::unbounded();
        let deadline = opts.deadline;
        let handle = self.start(name, method, &args, &opts, Arc::new(tx), false)?;
        Ok(Call {
            handle,
            rx,
            deadline,
            result: None,
            stream_closed: false,
        })
    }

    /// Starts a call whose events go to its sink. The deadline is enforced
    /// by a timer: at the deadline the sink receives `Done(Err(Timeout))`
    /// and the server is told to cancel.
    ///
    /// Started from a thread that must not block ([`SinkCall::new`]), the
    /// call is placed only if that needs no waiting: the name's resolution
    /// is cached (or the name is rooted) and a connection to the server is
    /// open. Otherwise it is handed back ([`Started::Thread`]), nothing
    /// sent, to be started again from a thread that may block
    /// ([`SinkCall::on_thread`]), which resolves the name and connects.
    pub fn start_call_with_sink(&self, call: SinkCall) -> Started {
        if call.method.is_empty() {
            return Started::Now(Err(Error::bad_arg("empty method name")));
        }
        if call.may_block {
            return Started::Now(self.start(
                &call.name,
                &call.method,
                &call.args,
                &call.opts,
                call.sink,
                true,
            ));
        }
        let Some(targets) = self.inner.namespace.cached_targets(&call.name) else {
            return Started::Thread(call);
        };
        let method = crate::naming::upper_first(&call.method);
        for target in targets.iter() {
            let Ok(parsed) = Name::parse(&target.name) else {
                continue;
            };
            let Some(ep) = parsed.endpoint() else {
                continue;
            };
            let key = (ep.address().to_string(), ep.routing_id());
            // (One that is not live is left to the slow path to replace.)
            if let Some(conn) = self.cached_conn(&key).filter(|c| c.is_live()) {
                let expect = Expect {
                    recorded: &target.blessings,
                    pinned: &call.opts.server_blessings,
                };
                // A server that is not who it should be: the slow path
                // resolves afresh and says why.
                if conn
                    .verdicts
                    .check(&self.principal(), &conn.remote, &conn.address, expect)
                    .is_err()
                {
                    continue;
                }
                return Started::Now(self.request(
                    &conn,
                    &call.name,
                    parsed.suffix(),
                    &method,
                    &call.args,
                    call.opts.deadline,
                    call.sink,
                    true,
                    // (Judged just above.)
                    None,
                ));
            }
        }
        Started::Thread(call)
    }

    /// Calls `method` on the object `suffix` of the server at `endpoint`,
    /// without resolving any name, if the server is who `expect` says.
    pub(crate) fn call_endpoint(
        &self,
        endpoint: &Endpoint,
        suffix: &str,
        method: &str,
        args: Vec<Value>,
        deadline: Option<Instant>,
        expect: Expect,
    ) -> Result<Call> {
        let (tx, rx) = crossbeam_channel::unbounded();
        let conn = self.conn(endpoint, deadline)?;
        let name = endpoint.name(suffix);
        let handle = self.request(
            &conn,
            &name,
            suffix,
            method,
            &args,
            deadline,
            Arc::new(tx),
            false,
            Some(expect),
        )?;
        Ok(Call {
            handle,
            rx,
            deadline,
            result: None,
            stream_closed: false,
        })
    }

    fn start(
        &self,
        name: &str,
        method: &str,
        args: &[Value],
        opts: &CallOptions,
        sink: Arc<dyn CallSink>,
        timed: bool,
    ) -> Result<CallHandle> {
        if method.is_empty() {
            return Err(Error::bad_arg("empty method name"));
        }
        let deadline = opts.deadline;
        let method = crate::naming::upper_first(method);
        let mut fresh = false;
        loop {
            let (targets, cached) = self
                .inner
                .namespace
                .resolve_cached(self, name, deadline, fresh)?;
            let mut last = Error::no_exist(format!("{name} resolves to no server"));
            for target in targets.iter() {
                let parsed = match Name::parse(&target.name) {
                    Ok(n) => n,
                    Err(e) => {
                        last = e;
                        continue;
                    }
                };
                let Some(ep) = parsed.endpoint() else {
                    continue;
                };
                let conn = match self.conn(ep, deadline) {
                    Ok(c) => c,
                    Err(e) => {
                        log::debug!("{name}: server {ep} unreachable: {e}");
                        last = e;
                        continue;
                    }
                };
                match self.request(
                    &conn,
                    name,
                    parsed.suffix(),
                    &method,
                    args,
                    deadline,
                    sink.clone(),
                    timed,
                    Some(Expect {
                        recorded: &target.blessings,
                        pinned: &opts.server_blessings,
                    }),
                ) {
                    Ok(h) => return Ok(h),
                    Err(e) => last = e,
                }
            }
            if cached && !fresh {
                // The cached servers are gone; ask the mount tables again.
                self.inner.namespace.forget(name);
                fresh = true;
                continue;
            }
            return Err(last);
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn request(
        &self,
        conn: &Arc<ClientConn>,
        name: &str,
        suffix: &str,
        method: &str,
        args: &[Value],
        deadline: Option<Instant>,
        sink: Arc<dyn CallSink>,
        timed: bool,
        expect: Option<Expect>,
    ) -> Result<CallHandle> {
        // Who the server is, before anything is sent to it (unless the
        // caller just judged it).
        if let Some(expect) = expect {
            conn.verdicts
                .check(&self.principal(), &conn.remote, &conn.address, expect)?;
        }
        let timeout_ms = match deadline {
            None => 0,
            Some(d) => {
                let left = d.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Err(Error::timeout(format!("{name}.{method}: deadline passed")));
                }
                left.as_millis().clamp(1, u32::MAX as u128) as u32
            }
        };
        if method.len() > wire::MAX_STR {
            return Err(Error::bad_arg(format!(
                "a method name of {} bytes (limit {})",
                method.len(),
                wire::MAX_STR
            )));
        }
        let (flow, serial) = conn.open_flow(sink, deadline)?;
        let mut buf = Vec::with_capacity(128);
        wire::encode_request_parts(&mut buf, flow, timeout_ms, method, suffix, name, args);
        if buf.len() - 4 > self.inner.config.max_frame {
            conn.flows().remove(flow);
            return Err(Error::bad_arg(format!(
                "{name}.{method}: request of {} bytes is over the frame limit of {}",
                buf.len() - 4,
                self.inner.config.max_frame
            )));
        }
        if let Err(e) = conn.writer.send(&buf, None) {
            conn.flows().remove(flow);
            return Err(e);
        }
        if let (true, Some(d)) = (timed, deadline) {
            let weak = Arc::downgrade(conn);
            let what = format!("{name}.{method}");
            let id = self.timer().schedule(d, move || {
                if let Some(c) = weak.upgrade() {
                    c.expire(flow, serial, &what);
                }
            });
            if let Some(f) = conn.flows().get_mut(flow) {
                f.timer = Some(id);
            } else {
                self.timer().cancel(id);
            }
        }
        Ok(CallHandle {
            conn: conn.clone(),
            flow,
            deadline,
        })
    }

    fn timer(&self) -> &Timer {
        self.inner.timer()
    }

    /// The connection kept for `key`, live or not.
    fn cached_conn(&self, key: &(String, u64)) -> Option<Arc<ClientConn>> {
        lock(&self.inner.conns).get(key).cloned()
    }

    /// The connection to `ep`, set up if needed. The lock is never held
    /// while connecting.
    fn conn(&self, ep: &Endpoint, deadline: Option<Instant>) -> Result<Arc<ClientConn>> {
        let key = (ep.address().to_string(), ep.routing_id());
        if let Some(c) = self.cached_conn(&key) {
            if c.is_live() {
                return Ok(c);
            }
            {
                let mut conns = lock(&self.inner.conns);
                if conns.get(&key).is_some_and(|x| Arc::ptr_eq(x, &c)) {
                    conns.remove(&key);
                }
            }
            // (Its reader ends on the close it has yet to read, or on this.)
            c.writer.close("closed by the server");
            join_reader(&c);
        }
        if self.inner.config.in_process
            && let Some(listener) = conn::local_listener(ep.address())
        {
            return self.local_conn(listener, ep, key);
        }
        let connect_deadline = {
            let cap = Instant::now() + self.inner.config.connect_timeout;
            deadline.map_or(cap, |d| d.min(cap))
        };
        let principal = self.principal();
        let (stream, session) = conn::client_session(
            ep.address(),
            ep.routing_id(),
            connect_deadline,
            self.inner.config.write_timeout,
            &principal,
        )?;
        let id = conn::next_conn_id();
        let c = Arc::new(ClientConn {
            id,
            address: ep.address().to_string(),
            writer: Writer::new(session.sink, Some(stream), self.inner.config.max_queued),
            flows: Mutex::new(Flows::new(usize::MAX, 1, 1)),
            dead: AtomicBool::new(false),
            server_expiry: server_expiry(&principal, &session.remote, ep.address()),
            expiry_timer: Mutex::new(None),
            remote: session.remote,
            verdicts: Verdicts::default(),
            reader: Mutex::new(None),
            config: self.inner.config.clone(),
            client: Arc::downgrade(&self.inner),
            _local: None,
        });
        let reader = FrameReader::new(session.reader, self.inner.config.max_frame);
        let rc = c.clone();
        let h = crate::sync::spawn(format!("wspr-client-{id}"), 256 * 1024, move || {
            rc.read_loop(reader)
        })
        .map_err(Error::thread_failed)?;
        *lock(&c.reader) = Some(h);
        log::debug!("connection {id} to {ep} open");
        Ok(self.register(key, c))
    }

    /// Keeps `c` as the connection for `key`, unless another thread
    /// connected meanwhile: then theirs is used and `c` closed.
    fn register(&self, key: (String, u64), c: Arc<ClientConn>) -> Arc<ClientConn> {
        let mut conns = lock(&self.inner.conns);
        match conns.get(&key) {
            Some(existing) if !existing.dead.load(Ordering::SeqCst) => {
                let existing = existing.clone();
                drop(conns);
                c.writer.close("duplicate connection");
                join_reader(&c);
                existing
            }
            _ => {
                conns.insert(key, c.clone());
                drop(conns);
                c.watch_server_expiry(self);
                c
            }
        }
    }

    /// A link to a server of this process (see [`ClientConfig::in_process`]).
    fn local_conn(
        &self,
        listener: Arc<dyn conn::LocalListener>,
        ep: &Endpoint,
        key: (String, u64),
    ) -> Result<Arc<ClientConn>> {
        let slot: Arc<OnceLock<Weak<dyn FrameHandler>>> = Arc::new(OnceLock::new());
        let p = &self.principal();
        let me = |server: &RemoteIdentity| {
            let shown = p.blessings_for(&p.proven_names(server, ""));
            RemoteIdentity::new(p.public_key(), shown)
        };
        let (server_end, server) = listener.attach(ep.routing_id(), slot.clone(), &me)?;
        let to_server: Arc<OnceLock<Weak<dyn FrameHandler>>> = Arc::new(OnceLock::new());
        let _ = to_server.set(Arc::downgrade(&server_end));
        let id = conn::next_conn_id();
        let c = Arc::new(ClientConn {
            id,
            address: ep.address().to_string(),
            writer: Writer::new(
                Box::new(LocalSink {
                    peer: to_server,
                    max_frame: self.inner.config.max_frame,
                }),
                None,
                self.inner.config.max_queued,
            ),
            flows: Mutex::new(Flows::new(usize::MAX, 1, 1)),
            dead: AtomicBool::new(false),
            server_expiry: server_expiry(p, &server, ep.address()),
            expiry_timer: Mutex::new(None),
            remote: server,
            verdicts: Verdicts::default(),
            reader: Mutex::new(None),
            config: self.inner.config.clone(),
            client: Arc::downgrade(&self.inner),
            _local: Some(server_end),
        });
        let weak: Weak<dyn FrameHandler> = Arc::downgrade(&c) as Weak<ClientConn>;
        let _ = slot.set(weak);
        log::debug!("connection {id} to {ep} open, in this process");
        Ok(self.register(key, c))
    }

    /// The rooted names `name` resolves to (asking only mount tables).
    pub fn resolve(&self, name: &str) -> Result<Vec<String>> {
        self.namespace().resolve(self, name)
    }

    /// The servers `name` resolves to, with the blessing names the name
    /// space recorded for each.
    pub fn resolve_servers(&self, name: &str) -> Result<Vec<Resolved>> {
        self.namespace().resolve_servers(self, name)
    }

    /// The rooted names of the mount table entry where `name` is, or would
    /// be, mounted.
    pub fn resolve_to_mount_table(&self, name: &str) -> Result<Vec<String>> {
        self.namespace().resolve_to_mount_table(self, name)
    }

    /// Mounts `server` (a rooted name or endpoint) under `name` for `ttl`;
    /// the mount table records the blessing names this client proves as
    /// the server's.
    pub fn mount(&self, name: &str, server: &str, ttl: Duration) -> Result<()> {
        self.namespace().mount(self, name, server, ttl)
    }

    /// Like [`Client::mount`], recording `blessings` (names or patterns
    /// the server proves) for the server; none: this client's own names.
    pub fn mount_with(
        &self,
        name: &str,
        server: &str,
        ttl: Duration,
        blessings: &[String],
    ) -> Result<()> {
        self.namespace()
            .mount_with(self, name, server, ttl, blessings)
    }

    /// Unmounts `server` from `name` (every server when `server` is empty).
    pub fn unmount(&self, name: &str, server: &str) -> Result<()> {
        self.namespace().unmount(self, name, server)
    }

    /// The permissions in force at `name` (`""`: the root of the first
    /// mount table) and their version.
    pub fn get_permissions(&self, name: &str) -> Result<(Permissions, String)> {
        self.namespace().get_permissions(self, name)
    }

    /// Sets the permissions of `name` (made, as this client's, if it does
    /// not exist): the tags given replace the name's own, the others are
    /// its parent's. `version` is what [`Client::get_permissions`] gave
    /// (`""`: whatever it is now).
    pub fn set_permissions(&self, name: &str, perms: &Permissions, version: &str) -> Result<()> {
        self.namespace().set_permissions(self, name, perms, version)
    }

    /// Deletes `name` from its mount table, with every name below it if
    /// `subtree` (else there must be none).
    pub fn delete(&self, name: &str, subtree: bool) -> Result<()> {
        self.namespace().delete(self, name, subtree)
    }

    /// Every name matching `pattern`, walking into mount tables mounted in
    /// mount tables. Sorted by name.
    pub fn glob(&self, pattern: &str) -> Result<Vec<GlobEntry>> {
        self.namespace().glob(self, pattern)
    }

    /// Closes every connection now; calls in flight end with `Aborted`.
    pub fn close(&self) {
        self.inner.close_all("client closed");
    }

    /// Number of open connections (for tests and health reports).
    pub fn connections(&self) -> usize {
        lock(&self.inner.conns).len()
    }
}

impl Mount for Client {
    fn mount(&self, name: &str, server: &str, ttl: Duration) -> Result<()> {
        Client::mount(self, name, server, ttl)
    }

    fn unmount(&self, name: &str, server: &str) -> Result<()> {
        Client::unmount(self, name, server)
    }
}

impl Tables for Client {
    fn call_table(
        &self,
        endpoint: &Endpoint,
        suffix: &str,
        method: &str,
        args: Vec<Value>,
        deadline: Instant,
        expect: Expect,
        item: Option<&mut dyn FnMut(Value) -> Result<()>>,
    ) -> Result<Vec<Value>> {
        let mut call =
            self.call_endpoint(endpoint, suffix, method, args, Some(deadline), expect)?;
        if let Some(item) = item {
            // (An error returns with the call, which cancels it.)
            while let Some(v) = call.recv()? {
                item(v)?;
            }
        }
        call.finish()
    }
}

/// The sending side of a call in flight. Clones drive the same call, so
/// one thread can send while another receives.
#[derive(Clone)]
pub struct CallHandle {
    conn: Arc<ClientConn>,
    flow: u64,
    deadline: Option<Instant>,
}

impl CallHandle {
    fn encode_item<T: serde::Serialize + ?Sized>(&self, item: &T) -> Result<(Vec<u8>, u32)> {
        let mut buf = Vec::with_capacity(64);
        let size = wire::encode_item(&mut buf, self.flow, item, self.conn.config.max_frame)?;
        Ok((buf, size))
    }

    /// Sends a stream item, waiting for flow-control credit until the
    /// call's deadline.
    pub fn send<T: serde::Serialize + ?Sized>(&self, item: &T) -> Result<()> {
        let (buf, size) = self.encode_item(item)?;
        loop {
            let rx = {
                let mut flows = self.conn.flows();
                let Some(f) = flows.get_mut(self.flow) else {
                    return Err(Error::aborted("the call has ended"));
                };
                match f.stream.send(size) {
                    Err(_) => return Err(stream_closed()),
                    Ok(Sending::Now) => {
                        drop(flows);
                        return self.conn.writer.send(&buf, None);
                    }
                    Ok(Sending::Wait(rx)) => rx,
                }
            };
            let woke = match self.deadline {
                Some(d) => rx.recv_deadline(d),
                None => rx.recv().map_err(|_| RecvTimeoutError::Disconnected),
            };
            match woke {
                Ok(()) => continue,
                Err(RecvTimeoutError::Timeout) => {
                    return Err(Error::timeout(
                        "waiting to send a stream item: deadline passed",
                    ));
                }
                Err(RecvTimeoutError::Disconnected) => {
                    if self.conn.flows().get(self.flow).is_none() {
                        return Err(Error::aborted("the call has ended"));
                    }
                }
            }
        }
    }

    /// Sends a stream item without blocking: without credit it waits in a
    /// per-call queue (bounded by `ClientConfig::max_pending`, and by the
    /// client's budget over all its calls if it has one). An item may be
    /// any JSON: a `Value`, or JSON text kept as a `RawValue`.
    pub fn offer<T: serde::Serialize + ?Sized>(
        &self,
        item: &T,
    ) -> std::result::Result<(), OfferError> {
        let (buf, size) = self.encode_item(item).map_err(OfferError::Failed)?;
        let config = &self.conn.config;
        let limit = Limit {
            bytes: config.max_pending,
            items: usize::MAX,
            budget: config.pending_budget.as_ref(),
        };
        let mut flows = self.conn.flows();
        let Some(f) = flows.get_mut(self.flow) else {
            return Err(OfferError::Failed(Error::aborted("the call has ended")));
        };
        match f.stream.offer(buf, size, &limit) {
            Ok(None) => Ok(()),
            Ok(Some(buf)) => {
                drop(flows);
                self.conn
                    .writer
                    .send(&buf, None)
                    .map_err(OfferError::Failed)
            }
            Err(Refusal::Closed) => Err(OfferError::Failed(stream_closed())),
            Err(Refusal::Full(Full::Queue { waiting, limit, .. })) => {
                Err(OfferError::Full(Error::aborted(format!(
                    "the server is not taking stream items: {waiting} bytes wait, limit {limit}"
                ))))
            }
            Err(Refusal::Full(Full::Budget { used, limit })) => {
                Err(OfferError::OverBudget(Error::aborted(format!(
                    "servers are not taking stream items: {used} bytes wait over all calls, limit {limit}"
                ))))
            }
        }
    }

    /// Ends the caller's stream: the server sees the stream close after
    /// every item sent before. Closing the stream of a call that has
    /// already ended does nothing.
    pub fn close_send(&self) -> Result<()> {
        let now = match self.conn.flows().get_mut(self.flow) {
            Some(f) => f.stream.close(),
            None => false,
        };
        if !now {
            return Ok(());
        }
        self.conn
            .writer
            .send_with(|b| wire::encode_close_send(b, self.flow))
    }

    /// Cancels the call: the server is told, and the call ends with
    /// `Aborted` unless it had already ended.
    pub fn cancel(&self) {
        self.end(Error::aborted("the call was cancelled"));
    }

    /// Ends the call with `err` (if it has not ended) and tells the server.
    pub fn end(&self, err: Error) {
        self.conn.end_flow(self.flow, Err(err));
    }

    /// Whether the call is still in flight.
    pub fn is_open(&self) -> bool {
        self.conn.flows().get(self.flow).is_some()
    }

    /// The identity the server proved.
    pub fn remote(&self) -> &RemoteIdentity {
        &self.conn.remote
    }
}

/// A call in flight, driven by the calling thread: send items, close the
/// send side, receive items, finish. Dropping an unfinished call cancels
/// it.
pub struct Call {
    handle: CallHandle,
    rx: Receiver<CallEvent>,
    deadline: Option<Instant>,
    result: Option<Result<Vec<Value>>>,
    stream_closed: bool,
}

impl Call {
    /// Sends a stream item (waits for flow-control credit).
    pub fn send(&self, item: Value) -> Result<()> {
        self.handle.send(&item)
    }

    /// Closes the caller's stream.
    pub fn close_send(&self) -> Result<()> {
        self.handle.close_send()
    }

    fn next_event(&mut self) -> CallEvent {
        let got = match self.deadline {
            Some(d) => self.rx.recv_deadline(d),
            None => self.rx.recv().map_err(|_| RecvTimeoutError::Disconnected),
        };
        match got {
            Ok(ev) => ev,
            Err(RecvTimeoutError::Timeout) => {
                self.handle
                    .end(Error::timeout("the call's deadline passed"));
                // `end` delivered Done unless the call had just ended; in
                // both cases the event is queued now.
                self.rx
                    .try_recv()
                    .unwrap_or(CallEvent::Done(Err(Error::timeout(
                        "the call's deadline passed",
                    ))))
            }
            Err(RecvTimeoutError::Disconnected) => {
                CallEvent::Done(Err(Error::internal("the call's events were lost")))
            }
        }
    }

    /// The next item the server streams; `None` once the server has closed
    /// its stream or the call has ended.
    pub fn recv(&mut self) -> Result<Option<Value>> {
        if self.stream_closed || self.result.is_some() {
            return Ok(None);
        }
        match self.next_event() {
            CallEvent::Item(v, _token) => Ok(Some(v)),
            CallEvent::StreamClosed => {
                self.stream_closed = true;
                Ok(None)
            }
            CallEvent::Done(r) => {
                let err = r.as_ref().err().cloned();
                self.result = Some(r);
                match err {
                    Some(e) => Err(e),
                    None => Ok(None),
                }
            }
        }
    }

    /// Closes the caller's stream (if still open), then waits for the
    /// call's results, dropping any items not yet received.
    pub fn finish(mut self) -> Result<Vec<Value>> {
        if self.result.is_none() {
            let _ = self.handle.close_send();
        }
        loop {
            if let Some(r) = self.result.take() {
                return r;
            }
            if let CallEvent::Done(r) = self.next_event() {
                return r;
            }
        }
    }

    /// Cancels the call.
    pub fn cancel(&self) {
        self.handle.cancel();
    }

    /// A handle that sends on this call from another thread.
    pub fn handle(&self) -> CallHandle {
        self.handle.clone()
    }

    /// A handle that can cancel this call from another thread.
    pub fn canceller(&self) -> Canceller {
        Canceller {
            conn: self.handle.conn.clone(),
            flow: self.handle.flow,
        }
    }

    /// The identity the server proved.
    pub fn remote(&self) -> &RemoteIdentity {
        self.handle.remote()
    }
}

impl Drop for Call {
    fn drop(&mut self) {
        if self.result.is_none() && self.handle.is_open() {
            self.handle.cancel();
        }
    }
}

/// Cancels a call from any thread.
#[derive(Clone)]
pub struct Canceller {
    conn: Arc<ClientConn>,
    flow: u64,
}

impl Canceller {
    /// Cancels the call (no effect once it has ended).
    pub fn cancel(&self) {
        self.conn
            .end_flow(self.flow, Err(Error::aborted("the call was cancelled")));
    }
}
