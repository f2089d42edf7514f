//! The RPC server: a [`Listener`] accepts connections on one address and
//! hosts any number of [`Server`]s, told apart by routing id; each server
//! answers calls through its [`Dispatcher`].
//!
//! Threads: the listener's accept thread (`wspr-accept-<port>`), one
//! thread per connection that reads its frames (`wspr-conn-<n>`), and a
//! shared pool that runs the calls (`wspr-call-<n>`), growing on demand and
//! shrinking when idle. Stopping a server unmounts its names, lets calls
//! in flight end (for up to the drain time), aborts the rest with
//! `Aborted`, closes its connections and joins their threads.

use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use serde::Serialize;
use serde_json::Value;

use crate::clock::Clock;
use crate::error::{Error, Result};
use crate::flow::{Cancelled, Flows, Sending, Stream};
use crate::naming::Endpoint;
use crate::pool::{Pool, PoolConfig};
use crate::rpc::client::Client;
use crate::rpc::conn::{self, FrameReader, Granter, ItemToken, ReadError, Writer};
use crate::rpc::publisher::{Mount, Publisher};
use crate::rpc::wire::{self, Frame};
use crate::security::{Authorizer, CallInfo, Principal, RemoteIdentity};
use crate::signature::Signature;
use crate::sync::{ThreadSet, lock};
use crate::timer::{Timer, TimerId};

/// What a dispatcher found for a call.
#[derive(Clone)]
pub struct Lookup {
    /// Runs the call.
    pub invoker: Arc<dyn Invoker>,
    /// Decides whether the caller may make it; `None`: the server's
    /// default policy.
    pub authorizer: Option<Arc<dyn Authorizer>>,
}

/// How one stage of a call went: what [`Dispatcher::lookup`] and
/// [`Invoker::invoke`] answer. Each is called first where the call is (on
/// the connection's reader thread, which must not block), and again on
/// one of the server's call threads if it asks for one.
pub enum Step<H> {
    /// Answered on this thread, through the handle.
    Done,
    /// The handle was kept: the call goes on later through it, with no
    /// thread waiting for it. The server keeps the caller's deadline
    /// meanwhile (then the caller gets `Timeout`, and the handle's cancel
    /// hook runs, as when the caller cancels or the server stops).
    Later,
    /// It needs a thread that may block: the handle is given back, and
    /// the server calls again from one of its call threads (where the
    /// handle's `on_thread` says so).
    Thread(H),
}

/// Finds the object that serves a call: `call.suffix()` and
/// `call.method()` to an invoker and an authorizer.
pub trait Dispatcher: Send + Sync + 'static {
    /// Looks up the object for `call`: answer with [`Pending::found`] (or
    /// [`Pending::fail`]) and return [`Step::Done`]; keep `call` to answer
    /// later ([`Step::Later`]); or, to do what may block (honouring the
    /// call's deadline and [`ServerCall::done`]), hand it back with
    /// [`Step::Thread`] (see [`Pending::blocking`]).
    fn lookup(&self, call: Pending) -> Step<Pending>;
}

/// Runs calls on one object.
pub trait Invoker: Send + Sync + 'static {
    /// Runs the call ([`Invocation::method`], UpperCamelCase, with its
    /// arguments): answer with [`Invocation::reply`] and return
    /// [`Step::Done`]; keep its [`Reply`] to answer later
    /// ([`Step::Later`]); or, for work that may block (a streaming method,
    /// say), hand it back with [`Step::Thread`] (see
    /// [`Invocation::blocking`]).
    fn invoke(&self, call: Invocation) -> Step<Invocation>;

    /// The object's signature, for the predefined `Signature` method. Must
    /// not block.
    fn signature(&self, call: &ServerCall) -> Result<Signature>;
}

/// Answers one call. Dropping it unanswered answers `Aborted`, so a call
/// whose reply is lost (its holder went away) still ends.
pub struct Reply {
    conn: Arc<ServerConn>,
    flow: u64,
    sent: bool,
    _inflight: Option<Sender<()>>,
}

impl Reply {
    /// Sends the call's results or error.
    pub fn send(mut self, result: Result<Vec<Value>>) {
        self.sent = true;
        self.conn.respond(self.flow, &result);
    }

    /// Runs `f` if the call is cancelled, times out or is aborted before it
    /// is answered (at once if that already happened). `f` runs on the
    /// thread that noticed, and must not block.
    pub fn on_cancel(&self, f: impl FnOnce() + Send + 'static) {
        self.conn.on_cancel(self.flow, f);
    }
}

impl Drop for Reply {
    fn drop(&mut self) {
        if !self.sent {
            self.conn.respond(
                self.flow,
                &Err(Error::aborted("the call was dropped unanswered")),
            );
        }
    }
}

/// A call at its lookup ([`Dispatcher::lookup`]). Its holder goes on
/// with [`Pending::found`], on whichever thread has the answer (work that
/// may block then goes to the call pool), or ends it with
/// [`Pending::fail`]; dropping it answers the caller `Aborted`. While it
/// is kept ([`Step::Later`]), no thread waits for it.
pub struct Pending {
    listener: Listener,
    call: ServerCall,
    args: Vec<Value>,
    reply: Reply,
    on_thread: bool,
}

impl Pending {
    /// The call.
    pub fn call(&self) -> &ServerCall {
        &self.call
    }

    /// Whether this is one of the server's call threads, where the lookup
    /// may block.
    pub fn on_thread(&self) -> bool {
        self.on_thread
    }

    /// Runs `f` if the call is cancelled, passes its deadline or is
    /// aborted first (at once if that already happened); see
    /// [`Reply::on_cancel`].
    pub fn on_cancel(&self, f: impl FnOnce() + Send + 'static) {
        self.reply.on_cancel(f);
    }

    /// Goes on with what the lookup found: the authorization, then the
    /// invocation.
    pub fn found(self, found: Result<Lookup>) {
        let Pending {
            listener,
            call,
            args,
            reply,
            on_thread,
        } = self;
        run_found(&listener, found, call, args, reply, on_thread);
    }

    /// Looks up with `f`, which may block: here if this is a call thread,
    /// else on one ([`Step::Thread`]).
    pub fn blocking(self, f: impl FnOnce(&ServerCall) -> Result<Lookup>) -> Step<Pending> {
        if !self.on_thread {
            return Step::Thread(self);
        }
        let found = f(&self.call);
        self.found(found);
        Step::Done
    }

    /// Ends the call with `err`.
    pub fn fail(self, err: Error) {
        self.reply.send(Err(err));
    }
}

/// A call at its invocation ([`Invoker::invoke`]), authorized: the call,
/// its arguments and its [`Reply`].
pub struct Invocation {
    call: ServerCall,
    args: Vec<Value>,
    reply: Reply,
    on_thread: bool,
}

impl Invocation {
    /// The method, UpperCamelCase.
    pub fn method(&self) -> &str {
        &self.call.method
    }

    /// The arguments.
    pub fn args(&self) -> &[Value] {
        &self.args
    }

    /// The call.
    pub fn call(&self) -> &ServerCall {
        &self.call
    }

    /// The call, to hold things or to stream.
    pub fn call_mut(&mut self) -> &mut ServerCall {
        &mut self.call
    }

    /// Whether this is one of the server's call threads, where the
    /// invocation may block.
    pub fn on_thread(&self) -> bool {
        self.on_thread
    }

    /// Answers the call with `result`.
    pub fn reply(self, result: Result<Vec<Value>>) {
        self.reply.send(result);
    }

    /// Runs `f` (which must not block) here, and answers with what it
    /// returns.
    pub fn now(
        self,
        f: impl FnOnce(&mut ServerCall, Vec<Value>) -> Result<Vec<Value>>,
    ) -> Step<Invocation> {
        let Invocation {
            mut call,
            args,
            reply,
            ..
        } = self;
        reply.send(f(&mut call, args));
        Step::Done
    }

    /// Runs `f`, which may block, and answers with what it returns: here
    /// if this is a call thread, else on one ([`Step::Thread`]).
    pub fn blocking(
        self,
        f: impl FnOnce(&mut ServerCall, Vec<Value>) -> Result<Vec<Value>>,
    ) -> Step<Invocation> {
        if !self.on_thread {
            return Step::Thread(self);
        }
        self.now(f)
    }

    /// The call, its arguments and its reply, to answer later
    /// ([`Step::Later`]).
    pub fn into_parts(self) -> (ServerCall, Vec<Value>, Reply) {
        (self.call, self.args, self.reply)
    }
}

/// Settings of a [`Listener`] and its servers.
#[derive(Clone)]
#[non_exhaustive]
pub struct ServerConfig {
    /// Threads that run calls, and calls that may wait for one.
    pub pool: PoolConfig,
    /// Most established connections at once (set up: hello and session
    /// done). Default 4096.
    pub max_connections: usize,
    /// Most connections still setting up at once, counted apart from
    /// established ones: past it, the oldest of the peer address holding
    /// the most is closed to make room. Default 256.
    pub max_setup_connections: usize,
    /// Most connections still setting up from one peer address: past it,
    /// that address's oldest is closed. Default 64.
    pub max_setup_per_address: usize,
    /// Longest a new connection may take to set up (hello and session),
    /// however its client paces its bytes. Default 5 s.
    pub handshake_timeout: Duration,
    /// A write blocked this long fails its connection. Default 10 s.
    pub write_timeout: Duration,
    /// Largest frame accepted or sent. Default 4 MiB.
    pub max_frame: usize,
    /// Bytes queued for writing per connection. Default 16 MiB.
    pub max_queued: usize,
    /// How long names stay mounted without a refresh. Default 60 s;
    /// refreshed at half of it.
    pub mount_ttl: Duration,
    /// How long [`Server::stop`] lets calls in flight finish. Default 5 s.
    pub drain_timeout: Duration,
    /// The policy for calls whose lookup gives no authorizer. Default:
    /// [`Delegation`](crate::security::Delegation), the daemon's rule: a
    /// caller is admitted when one of the names it proved and one of the
    /// server's blessing names are equal or one extends the other (so a
    /// program reaches the servers of its own principal, and of the
    /// principals it blessed or that blessed it). [`AllowAll`](crate::security::AllowAll) admits
    /// anyone; an object may carry its own policy in its [`Lookup`].
    pub default_authorizer: Arc<dyn Authorizer>,
    /// The clock of the listener's timer (deadlines of calls answered
    /// later) and of its names' refreshes. Default: the system's.
    pub clock: Clock,
    /// The timer that holds deadlines of calls answered later (a daemon
    /// gives its listeners its own). Default none: the listener has its
    /// own, on `clock`.
    pub(crate) timer: Option<Timer>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            pool: PoolConfig::default(),
            max_connections: 4096,
            max_setup_connections: crate::admission::DEFAULT_MAX,
            max_setup_per_address: crate::admission::DEFAULT_PER_ADDRESS,
            handshake_timeout: Duration::from_secs(5),
            write_timeout: Duration::from_secs(10),
            max_frame: wire::DEFAULT_MAX_FRAME,
            max_queued: 16 << 20,
            mount_ttl: Duration::from_secs(60),
            drain_timeout: Duration::from_secs(5),
            default_authorizer: Arc::new(crate::security::Delegation),
            clock: Clock::system(),
            timer: None,
        }
    }
}

impl ServerConfig {
    /// Checks that the settings make sense.
    pub fn validate(&self) -> Result<()> {
        if self.pool.max_threads == 0
            || self.max_connections == 0
            || self.max_setup_connections == 0
            || self.max_setup_per_address == 0
        {
            return Err(Error::bad_arg(
                "pool threads and connection limits must be positive",
            ));
        }
        if self.mount_ttl < Duration::from_secs(1) {
            return Err(Error::bad_arg("mount_ttl must be at least 1 s"));
        }
        if self.max_frame < 1024 {
            return Err(Error::bad_arg("max_frame must be at least 1 KiB"));
        }
        Ok(())
    }
}

/// What happens on a call's flow, for an invoker that watches it with
/// `select!` (see [`ServerCall::events`]).
#[derive(Debug)]
pub enum ServerEvent {
    /// The caller sent a stream item; dropping the token grants credit.
    Item(Value, ItemToken),
    /// The caller closed its stream.
    StreamClosed,
    /// The caller cancelled, or the server is stopping.
    Cancelled,
}

/// What a server keeps per call (the rest is the flow core's: its
/// cancel, its deadline).
struct ServerFlow {
    events: Sender<ServerEvent>,
    stream: Stream,
    /// The call's view of the cancel (read without the lock).
    cancelled: Arc<AtomicBool>,
    /// Never sent on; dropped when the call is cancelled or aborted, which
    /// wakes everything selecting on [`ServerCall::done`].
    done: Option<Sender<()>>,
    /// Set by a call answered later ([`Reply::on_cancel`]).
    on_cancel: Option<Box<dyn FnOnce() + Send>>,
    /// When the first of the caller's blessings that admitted the call
    /// expires, and its name: the call ends with `NoAccess` then.
    relied: Option<(SystemTime, String)>,
}

impl ServerFlow {
    /// The call is cancelled or ends: whoever serves it is told (its
    /// events, [`ServerCall::done`], senders waiting for credit), and its
    /// cancel hook is handed back to run once the lock is released.
    fn cancel(&mut self) -> Option<Box<dyn FnOnce() + Send>> {
        self.cancelled.store(true, Ordering::SeqCst);
        let _ = self.events.send(ServerEvent::Cancelled);
        self.done.take();
        // A sender waiting for credit wakes and sees the cancel.
        self.stream.cancel();
        self.on_cancel.take()
    }
}

/// A call being served: who called, what for, and its streams.
pub struct ServerCall {
    conn: Arc<ServerConn>,
    flow: u64,
    method: String,
    suffix: String,
    name: String,
    deadline: Option<Instant>,
    events: Receiver<ServerEvent>,
    cancelled: Arc<AtomicBool>,
    done: Receiver<()>,
    stream_closed: bool,
    /// The caller's proven blessings (indices) and their names, worked out
    /// on first use.
    proven: std::sync::OnceLock<(Vec<usize>, Vec<String>)>,
    /// Whatever [`ServerCall::hold`] was given.
    held: Vec<Box<dyn Send>>,
}

impl ServerCall {
    /// Keeps `thing` until the call is dropped (its invocation has
    /// ended, or the call was refused before it ran): a slot the call
    /// holds is given back then, however the call ends.
    pub fn hold(&mut self, thing: Box<dyn Send>) {
        self.held.push(thing);
    }

    /// The method, UpperCamelCase.
    pub fn method(&self) -> &str {
        &self.method
    }
    /// What is left of the name after the server.
    pub fn suffix(&self) -> &str {
        &self.suffix
    }
    /// The name the caller used.
    pub fn name(&self) -> &str {
        &self.name
    }
    /// The caller's deadline, if it gave one.
    pub fn deadline(&self) -> Option<Instant> {
        self.deadline
    }
    /// Who is calling: the key and the blessings the session proved.
    pub fn remote(&self) -> &RemoteIdentity {
        &self.conn.remote
    }

    /// The caller's blessing names that count for this call: chains that
    /// verify, under a root this server trusts, with every caveat met (this
    /// method, this server as the peer, the first time it is asked). Worked
    /// out once per call: the authorizer and the invoker both need them.
    pub fn remote_names(&self) -> &[String] {
        &self.proven().1
    }

    /// The caller's blessings whose names [`remote_names`](Self::remote_names)
    /// gives, in the same order.
    pub fn remote_blessings(&self) -> impl Iterator<Item = &crate::security::Blessing> {
        let all = self.conn.remote.blessings();
        self.proven().0.iter().map(move |&i| &all[i])
    }

    fn proven(&self) -> &(Vec<usize>, Vec<String>) {
        self.proven.get_or_init(|| {
            let proven = self.conn.principal.proven(&self.conn.remote, &self.method);
            let all = self.conn.remote.blessings();
            let names = proven.iter().map(|&i| all[i].name()).collect();
            (proven, names)
        })
    }

    /// Who this server is.
    pub fn local(&self) -> &Arc<Principal> {
        &self.conn.principal
    }
    /// Whether the caller cancelled or the server is stopping.
    pub fn is_cancelled(&self) -> bool {
        self.cancelled.load(Ordering::SeqCst)
    }

    /// Disconnects (so a `select!` on it fires) when the caller cancels or
    /// the server aborts the call. Unlike [`ServerCall::events`] it never
    /// yields stream items, so waiting on it loses nothing.
    pub fn done(&self) -> &Receiver<()> {
        &self.done
    }

    /// The raw events of the flow, for `select!` alongside other channels.
    /// (Taking items here leaves the stream accounting to the invoker;
    /// [`ServerCall::recv`] is the simple way.)
    pub fn events(&self) -> &Receiver<ServerEvent> {
        &self.events
    }

    /// The caller's next stream item; `None` once it closed its stream.
    /// `Aborted` if the call is cancelled, `Timeout` at the deadline.
    pub fn recv(&mut self) -> Result<Option<Value>> {
        if self.stream_closed {
            return Ok(None);
        }
        let ev = match self.deadline {
            Some(d) => self.events.recv_deadline(d),
            None => self
                .events
                .recv()
                .map_err(|_| RecvTimeoutError::Disconnected),
        };
        match ev {
            Ok(ServerEvent::Item(v, _token)) => Ok(Some(v)),
            Ok(ServerEvent::StreamClosed) => {
                self.stream_closed = true;
                Ok(None)
            }
            Ok(ServerEvent::Cancelled) | Err(RecvTimeoutError::Disconnected) => {
                Err(Error::aborted("the call was cancelled"))
            }
            Err(RecvTimeoutError::Timeout) => Err(Error::timeout("the call's deadline passed")),
        }
    }

    /// Sends a stream item to the caller, waiting for credit until the
    /// deadline.
    pub fn send<T: Serialize + ?Sized>(&self, item: &T) -> Result<()> {
        let (buf, size) = self.encode_item(item)?;
        loop {
            let Some(rx) = self.send_encoded(&buf, size)? else {
                return Ok(());
            };
            let woke = match self.deadline {
                Some(d) => rx.recv_deadline(d),
                None => rx.recv().map_err(|_| RecvTimeoutError::Disconnected),
            };
            if let Err(RecvTimeoutError::Timeout) = woke {
                return Err(Error::timeout(
                    "waiting to send a stream item: deadline passed",
                ));
            }
        }
    }

    /// Sends a stream item if there is credit for it now: `Ok(None)` sent;
    /// `Ok(Some(rx))` not sent, and `rx` fires (or disconnects) when credit
    /// comes or the call ends, for use in a `select!`. (An item may be any
    /// JSON: a `Value`, or JSON text kept as a `RawValue`.)
    pub fn try_send<T: Serialize + ?Sized>(&self, item: &T) -> Result<Option<Receiver<()>>> {
        let (buf, size) = self.encode_item(item)?;
        self.send_encoded(&buf, size)
    }

    fn encode_item<T: Serialize + ?Sized>(&self, item: &T) -> Result<(Vec<u8>, u32)> {
        let mut buf = Vec::with_capacity(64);
        let size = wire::encode_item(&mut buf, self.flow, item, self.conn.config.max_frame)?;
        Ok((buf, size))
    }

    fn send_encoded(&self, buf: &[u8], size: u32) -> Result<Option<Receiver<()>>> {
        if self.is_cancelled() {
            return Err(Error::aborted("the call was cancelled"));
        }
        let mut flows = self.conn.flows();
        let Some(f) = flows.get_mut(self.flow) else {
            return Err(Error::aborted("the call has ended"));
        };
        match f.stream.send(size) {
            Ok(Sending::Now) => {
                drop(flows);
                self.conn.writer.send(buf, None).map(|_| None)
            }
            Ok(Sending::Wait(rx)) => Ok(Some(rx)),
            // (The server's stream is never marked closed.)
            Err(_) => Err(Error::aborted("the call has ended")),
        }
    }

    /// Closes the server's stream: the caller sees it end after every item
    /// sent before.
    pub fn close_send(&self) -> Result<()> {
        self.conn
            .writer
            .send_with(|b| wire::encode_close_send(b, self.flow))
    }
}

impl CallInfo for ServerCall {
    fn method(&self) -> &str {
        &self.method
    }
    fn suffix(&self) -> &str {
        &self.suffix
    }
    fn remote(&self) -> &RemoteIdentity {
        &self.conn.remote
    }
    fn remote_names(&self) -> &[String] {
        ServerCall::remote_names(self)
    }
    fn local(&self) -> &Principal {
        &self.conn.principal
    }
}

pub(crate) struct ServerConn {
    id: u64,
    peer: String,
    writer: Writer,
    flows: Mutex<Flows<ServerFlow>>,
    remote: RemoteIdentity,
    principal: Arc<Principal>,
    config: ServerConfig,
    /// The sweeps scheduled for the instants the caller's blessings expire
    /// (at most one per instant, so at most one per blessing presented),
    /// cancelled when the connection closes.
    sweeps: Mutex<Vec<(SystemTime, Option<TimerId>)>>,
}

impl ServerConn {
    fn flows(&self) -> MutexGuard<'_, Flows<ServerFlow>> {
        lock(&self.flows)
    }

    /// Runs `f` if the call on `flow` is cancelled, times out or is
    /// aborted before it is answered (at once if that already happened).
    fn on_cancel(&self, flow: u64, f: impl FnOnce() + Send + 'static) {
        let mut flows = self.flows();
        match flows.get_mut(flow) {
            Some(fl) if !fl.is_cancelled() => fl.on_cancel = Some(Box::new(f)),
            _ => {
                drop(flows);
                f();
            }
        }
    }

    /// Sends the call's response unless it was already answered (aborted).
    fn respond(&self, flow: u64, result: &Result<Vec<Value>>) {
        let Some(f) = self.flows().remove(flow) else {
            return;
        };
        if f.is_cancelled() {
            // The caller has gone; an answer would be ignored.
            return;
        }
        let mut buf = Vec::with_capacity(64);
        wire::encode_response(&mut buf, flow, result);
        if buf.len() - 4 > self.config.max_frame {
            let too_big = Error::internal(format!(
                "response of {} bytes is over the frame limit of {}",
                buf.len() - 4,
                self.config.max_frame
            ));
            buf.clear();
            wire::encode_response(&mut buf, flow, &Err(too_big));
        }
        if let Err(e) = self.writer.send(&buf, None) {
            log::debug!("connection {}: response on flow {flow} lost: {e}", self.id);
        }
    }

    /// Ends the call on `flow` (numbered `serial`) if it is still
    /// unanswered at its deadline: its cancel hook runs and the caller gets
    /// `Timeout`.
    fn expire(&self, flow: u64, serial: u64) {
        let Some(f) = self.flows().expire(flow, serial, Instant::now()) else {
            return;
        };
        self.ended(
            flow,
            f.into_value(),
            Error::timeout("the call's deadline passed"),
        );
    }

    /// Ends a call still unanswered with `err`: the invoker sees a cancel,
    /// its cancel hook runs, the caller gets `err`.
    fn end_call(&self, flow: u64, err: Error) {
        let Some(f) = self.flows().remove(flow) else {
            return;
        };
        self.ended(flow, f.into_value(), err);
    }

    /// A call has ended (it is out of the table) with `err`.
    fn ended(&self, flow: u64, mut f: ServerFlow, err: Error) {
        if let Some(hook) = f.cancel() {
            hook();
        }
        let _ = self
            .writer
            .send_with(|b| wire::encode_response(b, flow, &Err(err)));
    }

    /// The call `flow` was admitted on the caller's blessings, the first of
    /// which, `name`, expires at `until`: it ends with `NoAccess` then,
    /// however long it streams. False if it has ended (now, if `until` has
    /// passed).
    fn rely_on(
        self: &Arc<Self>,
        listener: &Listener,
        flow: u64,
        until: SystemTime,
        name: String,
    ) -> bool {
        if until <= SystemTime::now() {
            self.end_call(flow, blessing_expired(&name));
            return false;
        }
        match self.flows().get_mut(flow) {
            Some(f) => f.relied = Some((until, name)),
            None => return false,
        }
        self.schedule_sweep(listener, until);
        true
    }

    /// Has [`sweep`](Self::sweep) run at `at`, unless it already will.
    fn schedule_sweep(self: &Arc<Self>, listener: &Listener, at: SystemTime) {
        {
            let mut sweeps = lock(&self.sweeps);
            if sweeps.iter().any(|(t, _)| *t == at) {
                return;
            }
            sweeps.push((at, None));
        }
        let weak = Arc::downgrade(self);
        let l = Arc::downgrade(&listener.inner);
        let when = Instant::now() + at.duration_since(SystemTime::now()).unwrap_or_default();
        let id = listener.at_cancellable(when, move || {
            if let (Some(c), Some(inner)) = (weak.upgrade(), l.upgrade()) {
                c.sweep(&Listener { inner }, at);
            }
        });
        if let Some(s) = lock(&self.sweeps).iter_mut().find(|(t, _)| *t == at) {
            s.1 = id;
        }
    }

    /// Ends the calls whose blessing has expired (the sweep for `at`).
    fn sweep(self: &Arc<Self>, listener: &Listener, at: SystemTime) {
        lock(&self.sweeps).retain(|(t, _)| *t != at);
        let now = SystemTime::now();
        let (due, early): (Vec<_>, Vec<_>) = {
            let flows = self.flows();
            let due = flows
                .iter()
                .filter_map(|(id, f)| match &f.relied {
                    Some((t, name)) if *t <= now => Some((id, name.clone())),
                    _ => None,
                })
                .collect();
            // (The timer's clock may run ahead of the wall clock.)
            let early = flows
                .iter()
                .filter_map(|(_, f)| f.relied.as_ref().map(|(t, _)| *t))
                .filter(|t| *t > now && *t <= at)
                .collect();
            (due, early)
        };
        for (flow, name) in due {
            log::debug!(
                "connection {}: call on flow {flow} ended: the caller's blessing {name} expired",
                self.id
            );
            self.end_call(flow, blessing_expired(&name));
        }
        if let Some(t) = early.into_iter().min() {
            self.schedule_sweep(listener, t);
        }
    }

    /// Cancels the sweeps (the connection has closed).
    fn cancel_sweeps(&self, timer: &Timer) {
        let sweeps = std::mem::take(&mut *lock(&self.sweeps));
        for id in sweeps.into_iter().filter_map(|(_, id)| id) {
            timer.cancel(id);
        }
    }

    /// Aborts every call in flight: invokers see `Cancelled`, callers get
    /// `Aborted`.
    fn abort_all(&self, why: &str) {
        let flows = self.flows().drain();
        let mut buf = Vec::new();
        for (flow, f) in flows {
            if let Some(hook) = f.into_value().cancel() {
                hook();
            }
            wire::encode_response(&mut buf, flow, &Err(Error::aborted(why)));
        }
        if !buf.is_empty() {
            let _ = self.writer.send(&buf, None);
        }
    }
}

fn blessing_expired(name: &str) -> Error {
    Error::no_access(format!(
        "the caller's blessing {name} expired during the call"
    ))
}

impl Granter for ServerConn {
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

struct ServerEntry {
    routing_id: u64,
    endpoint: Endpoint,
    principal: Arc<Principal>,
    dispatcher: Arc<dyn Dispatcher>,
    stopping: AtomicBool,
    /// Every call in flight holds a clone; stop drops this one and waits
    /// for the channel to disconnect.
    inflight: Mutex<Option<Sender<()>>>,
    inflight_done: Receiver<()>,
    conns: Mutex<HashMap<u64, Arc<ServerConn>>>,
    names: Mutex<Vec<String>>,
    /// Mounts the names, as the server's principal (none: the listener's
    /// client, whose principal the server's is).
    mounter: Option<Client>,
    /// The same, as the publisher mounts through it.
    mount: Option<Arc<dyn Mount>>,
}

impl ServerEntry {
    /// Who the server is for a new connection: its mounting client's
    /// principal of now (a pipe's, renewed when its user's token is), or
    /// the one it was served as.
    fn principal(&self) -> Arc<Principal> {
        self.mounter
            .as_ref()
            .map_or_else(|| self.principal.clone(), Client::principal)
    }
}

struct ListenerInner {
    local: SocketAddr,
    /// The address put in endpoints.
    address: String,
    config: ServerConfig,
    pool: Pool,
    publisher: Publisher,
    /// Mounts the names of servers that have no client of their own.
    client: Client,
    principal: Arc<Principal>,
    servers: RwLock<HashMap<u64, Arc<ServerEntry>>>,
    conn_threads: ThreadSet,
    /// Connections still setting up.
    setup: crate::admission::Admission,
    /// Connections set up and open (over TCP).
    established: std::sync::atomic::AtomicUsize,
    accept: Mutex<Option<JoinHandle<()>>>,
    closing: AtomicBool,
    next_rid: AtomicU64,
    /// Deadlines of calls answered later (its thread runs only while
    /// something is scheduled).
    timer: Timer,
    /// Whether the timer is the listener's own (else whoever gave it
    /// shuts it down).
    owns_timer: bool,
}

impl ListenerInner {
    /// The running server with routing id `rid` (0: the only one, if there
    /// is exactly one).
    fn find_server(&self, rid: u64) -> Option<Arc<ServerEntry>> {
        let servers = self.servers.read().unwrap_or_else(|p| p.into_inner());
        if rid == 0 && servers.len() == 1 {
            servers.values().next().cloned()
        } else {
            servers.get(&rid).cloned()
        }
        .filter(|s| !s.stopping.load(Ordering::SeqCst))
    }
}

impl conn::LocalListener for ListenerInner {
    fn is_open(&self) -> bool {
        !self.closing.load(Ordering::SeqCst)
    }

    fn attach(
        self: Arc<Self>,
        routing_id: u64,
        client: Arc<std::sync::OnceLock<Weak<dyn conn::FrameHandler>>>,
        caller: &dyn Fn(&RemoteIdentity) -> RemoteIdentity,
    ) -> Result<(Arc<dyn conn::FrameHandler>, RemoteIdentity)> {
        let entry = self.find_server(routing_id).ok_or_else(|| {
            Error::no_exist(format!(
                "no server with routing id {routing_id:016x} at {}",
                self.address
            ))
        })?;
        let principal = entry.principal();
        let server = RemoteIdentity::new(principal.public_key(), principal.blessings().to_vec());
        let caller = caller(&server);
        let id = conn::next_conn_id();
        let server_conn = Arc::new(ServerConn {
            id,
            peer: "this process".to_string(),
            writer: Writer::new(
                Box::new(conn::LocalSink {
                    peer: client,
                    max_frame: self.config.max_frame,
                }),
                None,
                self.config.max_queued,
            ),
            flows: Mutex::new(Flows::new(usize::MAX, 0, 0)),
            remote: caller,
            principal,
            config: self.config.clone(),
            sweeps: Mutex::new(Vec::new()),
        });
        lock(&entry.conns).insert(id, server_conn.clone());
        let end: Arc<dyn conn::FrameHandler> = Arc::new(LocalServerEnd {
            listener: Arc::downgrade(&self),
            entry,
            conn: server_conn,
        });
        Ok((end, server))
    }
}

/// The server end of an in-process link.
struct LocalServerEnd {
    listener: Weak<ListenerInner>,
    entry: Arc<ServerEntry>,
    conn: Arc<ServerConn>,
}

impl conn::FrameHandler for LocalServerEnd {
    fn frame(self: Arc<Self>, frame: Frame) -> std::result::Result<(), String> {
        let inner = self.listener.upgrade().ok_or("the server has stopped")?;
        on_frame(&Listener { inner }, &self.entry, &self.conn, frame)
    }

    fn closed(self: Arc<Self>, why: &str) {
        self.conn.abort_all(&format!("connection closed: {why}"));
        self.conn.writer.close(why);
        if let Some(inner) = self.listener.upgrade() {
            self.conn.cancel_sweeps(&inner.timer);
        }
        lock(&self.entry.conns).remove(&self.conn.id);
    }
}

/// Accepts connections on one address for any number of servers. Cloning
/// shares it.
///
/// Servers on one listener share its port and its call threads; each has
/// an endpoint of its own (the address and a routing id).
///
/// ```
/// use std::sync::Arc;
/// use serde_json::json;
/// use wspr::rpc::{CallOptions, Client, Listener, Namespace, ServerConfig, Service};
///
/// let client = Client::new(Namespace::new(vec![]))?;
/// let listener = Listener::bind("127.0.0.1:0", ServerConfig::default(), client.clone())?;
/// let en = listener.serve(Arc::new(Service::new().method("Hello", || Ok("hello"))))?;
/// let fr = listener.serve(Arc::new(Service::new().method("Hello", || Ok("bonjour"))))?;
/// assert_eq!(en.endpoint().address(), fr.endpoint().address());
/// let hello = |name: &str| client.call(name, "Hello", vec![], CallOptions::default());
/// assert_eq!(hello(&fr.name())?, vec![json!("bonjour")]);
/// assert_eq!(hello(&en.name())?, vec![json!("hello")]);
/// // Stopping one server leaves the other; closing the listener stops all.
/// fr.stop();
/// assert_eq!(hello(&en.name())?, vec![json!("hello")]);
/// listener.close();
/// # Ok::<(), wspr::Error>(())
/// ```
#[derive(Clone)]
pub struct Listener {
    inner: Arc<ListenerInner>,
}

impl Listener {
    /// Listens on `addr` (`host:port`; port 0 picks one). `client` mounts
    /// the servers' names, and its principal is who the servers are.
    pub fn bind(addr: &str, config: ServerConfig, client: Client) -> Result<Listener> {
        config.validate()?;
        let sock = addr
            .to_socket_addrs()
            .map_err(|e| Error::bad_arg(format!("listen address {addr}: {e}")))?
            .next()
            .ok_or_else(|| Error::bad_arg(format!("listen address {addr} resolves to nothing")))?;
        let tcp = TcpListener::bind(sock).map_err(|e| Error::listen_failed(addr, e))?;
        Listener::from_tcp(tcp, config, client)
    }

    /// Accepts on `tcp`, a socket bound already (one handed over by a
    /// service manager, or bound by the caller to learn its port first);
    /// like [`Listener::bind`] otherwise. The socket is made blocking.
    pub fn from_tcp(tcp: TcpListener, config: ServerConfig, client: Client) -> Result<Listener> {
        config.validate()?;
        tcp.set_nonblocking(false)
            .map_err(|e| Error::internal(format!("listener socket: {e}")).with_source(e))?;
        let local = tcp
            .local_addr()
            .map_err(|e| Error::internal(e.to_string()).with_source(e))?;
        let host = if local.ip().is_unspecified() {
            "127.0.0.1".to_string()
        } else {
            local.ip().to_string()
        };
        let address = if local.is_ipv6() {
            format!("[{host}]:{}", local.port())
        } else {
            format!("{host}:{}", local.port())
        };
        let setup = crate::admission::Admission::new(
            "RPC",
            config.max_setup_connections,
            config.max_setup_per_address,
        );
        // Routing ids start at a random odd number: one listener's ids say
        // nothing of another's.
        let first_rid = getrandom::u64()
            .map_err(|e| Error::internal(format!("no randomness for routing ids: {e}")))?;
        let owns_timer = config.timer.is_none();
        let timer = config
            .timer
            .clone()
            .unwrap_or_else(|| Timer::with_clock("wspr-server-timer", config.clock.clone()));
        let inner = Arc::new(ListenerInner {
            local,
            address,
            pool: Pool::new("wspr-call", config.pool.clone()),
            principal: client.principal(),
            publisher: Publisher::new(Arc::new(client.clone()), config.clock.clone()),
            client,
            config,
            servers: RwLock::new(HashMap::new()),
            conn_threads: ThreadSet::default(),
            setup,
            established: std::sync::atomic::AtomicUsize::new(0),
            accept: Mutex::new(None),
            closing: AtomicBool::new(false),
            next_rid: AtomicU64::new(first_rid | 1),
            owns_timer,
            timer,
        });
        let weak = Arc::downgrade(&inner);
        let h = crate::sync::spawn(
            format!("wspr-accept-{}", local.port()),
            128 * 1024,
            move || accept_loop(tcp, weak),
        )
        .map_err(Error::thread_failed)?;
        *lock(&inner.accept) = Some(h);
        let local: Weak<dyn conn::LocalListener> = Arc::downgrade(&inner) as Weak<ListenerInner>;
        conn::register_local(&inner.address, local);
        log::info!("listening for RPCs on {}", inner.address);
        Ok(Listener { inner })
    }

    /// The bound socket address.
    pub fn local_addr(&self) -> SocketAddr {
        self.inner.local
    }

    /// Adds a server answering through `dispatcher`, authenticating as the
    /// listener's client does.
    pub fn serve(&self, dispatcher: Arc<dyn Dispatcher>) -> Result<Server> {
        self.serve_as(dispatcher, self.inner.principal.clone())
    }

    /// Adds a mount table answering through `dispatcher` (its endpoint
    /// says it is one, so that names resolve through it), authenticating
    /// as the listener's client does.
    pub fn serve_mount_table(&self, dispatcher: Arc<dyn Dispatcher>) -> Result<Server> {
        self.serve_entry(dispatcher, true, self.inner.principal.clone(), None)
    }

    /// Like [`Listener::serve`], authenticating as `principal`, and
    /// mounting its names as `principal` too (through a client of its own,
    /// in the listener's client's name space).
    pub fn serve_as(
        &self,
        dispatcher: Arc<dyn Dispatcher>,
        principal: Arc<Principal>,
    ) -> Result<Server> {
        let listener_client = &self.inner.client;
        let mounter = (!Arc::ptr_eq(&principal, &self.inner.principal)).then(|| {
            Client::with_principal(
                listener_client.namespace().clone(),
                principal.clone(),
                listener_client.config().clone(),
            )
        });
        self.serve_entry(dispatcher, false, principal, mounter)
    }

    /// Like [`Listener::serve`], authenticating as `client`'s principal
    /// and mounting its names through `client`.
    pub fn serve_with_client(
        &self,
        dispatcher: Arc<dyn Dispatcher>,
        client: &Client,
    ) -> Result<Server> {
        self.serve_entry(dispatcher, false, client.principal(), Some(client.clone()))
    }

    fn serve_entry(
        &self,
        dispatcher: Arc<dyn Dispatcher>,
        mount_table: bool,
        principal: Arc<Principal>,
        mounter: Option<Client>,
    ) -> Result<Server> {
        if self.inner.closing.load(Ordering::SeqCst) {
            return Err(Error::aborted("the listener is closed"));
        }
        let rid = self.inner.next_rid.fetch_add(2, Ordering::Relaxed);
        let endpoint = Endpoint::new(self.inner.address.clone(), rid, mount_table);
        let (tx, rx) = crossbeam_channel::bounded(0);
        let entry = Arc::new(ServerEntry {
            routing_id: rid,
            endpoint,
            principal,
            dispatcher,
            stopping: AtomicBool::new(false),
            inflight: Mutex::new(Some(tx)),
            inflight_done: rx,
            conns: Mutex::new(HashMap::new()),
            names: Mutex::new(Vec::new()),
            mount: mounter.clone().map(|c| Arc::new(c) as Arc<dyn Mount>),
            mounter,
        });
        self.inner
            .servers
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(rid, entry.clone());
        Ok(Server {
            entry,
            listener: self.clone(),
            owns_listener: false,
            stopped: AtomicBool::new(false),
        })
    }

    /// Stops accepting, closes every connection and joins every thread.
    /// Servers still on it are aborted.
    pub fn close(&self) {
        if self.inner.closing.swap(true, Ordering::SeqCst) {
            return;
        }
        conn::unregister_local(&self.inner.address, Arc::as_ptr(&self.inner) as *const ());
        // Wake the accept thread.
        let _ = TcpStream::connect_timeout(
            &SocketAddr::new(
                if self.inner.local.ip().is_unspecified() {
                    std::net::Ipv4Addr::LOCALHOST.into()
                } else {
                    self.inner.local.ip()
                },
                self.inner.local.port(),
            ),
            Duration::from_secs(1),
        );
        let h = lock(&self.inner.accept).take();
        if let Some(h) = h {
            let _ = h.join();
        }
        let servers: Vec<_> = self
            .inner
            .servers
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .drain()
            .map(|(_, s)| s)
            .collect();
        for s in servers {
            s.stopping.store(true, Ordering::SeqCst);
            // Taken out first: closing writes, runs cancel hooks and, for
            // an in-process link, comes back to this map.
            let conns: Vec<_> = lock(&s.conns).drain().map(|(_, c)| c).collect();
            for c in conns {
                c.abort_all("the server is closing");
                c.writer.close("the server is closing");
            }
        }
        self.inner.conn_threads.join_all();
        self.inner.pool.shutdown();
        self.inner.publisher.shutdown();
        if self.inner.owns_timer {
            self.inner.timer.shutdown();
        }
        log::info!("stopped listening on {}", self.inner.address);
    }

    /// Runs `f` at `at` on the listener's timer thread. Nothing runs once
    /// the listener is closed.
    fn at(&self, at: Instant, f: impl FnOnce() + Send + 'static) {
        self.at_cancellable(at, f);
    }

    /// Like [`at`](Self::at); the id to cancel it with.
    fn at_cancellable(&self, at: Instant, f: impl FnOnce() + Send + 'static) -> Option<TimerId> {
        (!self.inner.closing.load(Ordering::SeqCst)).then(|| self.inner.timer.schedule(at, f))
    }

    /// Open connections (set up or still setting up).
    pub fn connections(&self) -> usize {
        self.inner.conn_threads.len()
    }

    /// Connections still setting up (hello and session), and how many
    /// were closed so far to make room for newer ones (see
    /// [`ServerConfig::max_setup_connections`]).
    pub fn setup_connections(&self) -> (usize, u64) {
        (self.inner.setup.len(), self.inner.setup.evicted())
    }
}

fn accept_loop(tcp: TcpListener, weak: Weak<ListenerInner>) {
    loop {
        let accepted = tcp.accept();
        let Some(inner) = weak.upgrade() else { return };
        let listener = Listener { inner };
        if listener.inner.closing.load(Ordering::SeqCst) {
            return;
        }
        let (stream, peer) = match accepted {
            Ok(s) => s,
            Err(e) => {
                log::warn!("accepting on {}: {e}", listener.inner.address);
                // Out of descriptors and the like: give the system a moment.
                std::thread::sleep(Duration::from_millis(50));
                continue;
            }
        };
        // Established connections are counted once set up: connections
        // still setting up have a cap of their own, and never lock out a
        // client that sets up promptly.
        let ticket = listener.inner.setup.admit(&stream, peer.ip());
        let id = conn::next_conn_id();
        let l = listener.clone();
        if let Err(e) =
            listener
                .inner
                .conn_threads
                .spawn(id, format!("wspr-conn-{id}"), move || {
                    serve_conn(&l, id, stream, peer, ticket)
                })
        {
            log::error!("cannot start a connection thread: {e}");
        }
    }
}

fn serve_conn(
    listener: &Listener,
    id: u64,
    mut stream: TcpStream,
    peer: SocketAddr,
    ticket: crate::admission::Ticket,
) {
    let inner = &listener.inner;
    let setup = conn::server_session(
        &mut stream,
        inner.config.handshake_timeout,
        inner.config.write_timeout,
        |rid| {
            // It has said its hello.
            ticket.spoke();
            inner.find_server(rid).map(|s| {
                let p = s.principal();
                (s, p)
            })
        },
    );
    drop(ticket);
    let (entry, principal, session) = match setup {
        Ok(x) => x,
        Err(e) => {
            log::warn!("connection {id} from {peer} refused: {e}");
            let _ = stream.shutdown(std::net::Shutdown::Both);
            return;
        }
    };
    let Some(_established) = Established::count(inner) else {
        log::warn!(
            "connection {id} from {peer} refused: {} connections open, limit {}",
            inner.established.load(Ordering::SeqCst),
            inner.config.max_connections
        );
        let _ = stream.shutdown(std::net::Shutdown::Both);
        return;
    };
    let conn = Arc::new(ServerConn {
        id,
        peer: peer.to_string(),
        writer: Writer::new(session.sink, Some(stream), inner.config.max_queued),
        flows: Mutex::new(Flows::new(usize::MAX, 0, 0)),
        remote: session.remote,
        principal,
        config: inner.config.clone(),
        sweeps: Mutex::new(Vec::new()),
    });
    lock(&entry.conns).insert(id, conn.clone());
    // Stop may have run between the lookup and the insert.
    if entry.stopping.load(Ordering::SeqCst) {
        conn.writer.close("the server is stopping");
    }
    log::debug!(
        "connection {id} from {peer} to server {:016x}",
        entry.routing_id
    );
    let mut reader = FrameReader::new(session.reader, inner.config.max_frame);
    let batching = crate::outbox::Batching::start();
    let why = loop {
        match reader.next() {
            Ok(frame) => {
                if let Err(e) = on_frame(listener, &entry, &conn, frame) {
                    log::error!("connection {id} from {}: {e}; closing it", conn.peer);
                    break e;
                }
            }
            Err(ReadError::Eof) => break "closed by the peer".to_string(),
            Err(e) => {
                if !conn.writer.is_closed() {
                    log::warn!("connection {id} from {}: {e}; closing it", conn.peer);
                }
                break e.to_string();
            }
        }
    };
    drop(batching);
    conn.abort_all(&format!("connection closed: {why}"));
    conn.writer.close(&why);
    conn.cancel_sweeps(&inner.timer);
    lock(&entry.conns).remove(&id);
    log::debug!("connection {id} from {peer} closed: {why}");
}

/// An established connection, counted while it is open.
struct Established<'a>(&'a ListenerInner);

impl<'a> Established<'a> {
    /// Counts one more, unless the listener holds its limit.
    fn count(inner: &'a ListenerInner) -> Option<Established<'a>> {
        let max = inner.config.max_connections;
        inner
            .established
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                (n < max).then_some(n + 1)
            })
            .ok()
            .map(|_| Established(inner))
    }
}

impl Drop for Established<'_> {
    fn drop(&mut self) {
        self.0.established.fetch_sub(1, Ordering::SeqCst);
    }
}

fn on_frame(
    listener: &Listener,
    entry: &Arc<ServerEntry>,
    conn: &Arc<ServerConn>,
    frame: Frame,
) -> std::result::Result<(), String> {
    match frame {
        Frame::Request(r) => {
            let flow = r.flow;
            let inflight = lock(&entry.inflight).clone();
            let Some(inflight) = inflight.filter(|_| !entry.stopping.load(Ordering::SeqCst)) else {
                let _ = conn.writer.send_with(|b| {
                    wire::encode_response(b, flow, &Err(Error::aborted("the server is stopping")))
                });
                return Ok(());
            };
            let (tx, rx) = crossbeam_channel::unbounded();
            let (done_tx, done_rx) = crossbeam_channel::bounded(0);
            let cancelled = Arc::new(AtomicBool::new(false));
            let deadline = (r.timeout_ms > 0)
                .then(|| Instant::now() + Duration::from_millis(r.timeout_ms as u64));
            {
                let mut flows = conn.flows();
                let opened = flows.open(
                    flow,
                    ServerFlow {
                        events: tx,
                        stream: Stream::new(wire::STREAM_WINDOW),
                        cancelled: cancelled.clone(),
                        done: Some(done_tx),
                        on_cancel: None,
                        relied: None,
                    },
                );
                if opened.is_err() {
                    return Err(format!("flow {flow} reused while in use"));
                }
                if deadline.is_some()
                    && let Some(f) = flows.get_mut(flow)
                {
                    f.set_deadline(deadline);
                }
            }
            let call = ServerCall {
                conn: conn.clone(),
                flow,
                method: r.method,
                suffix: r.suffix,
                name: r.name,
                deadline,
                events: rx,
                cancelled,
                done: done_rx,
                stream_closed: false,
                proven: std::sync::OnceLock::new(),
                held: Vec::new(),
            };
            let reply = Reply {
                conn: conn.clone(),
                flow,
                sent: false,
                _inflight: Some(inflight),
            };
            if deadline.is_some_and(|d| d <= Instant::now()) {
                reply.send(Err(Error::timeout(
                    "the call's deadline passed before it started",
                )));
            } else {
                let pending = Pending {
                    listener: listener.clone(),
                    call,
                    args: r.args,
                    reply,
                    on_thread: false,
                };
                look_up(listener, &entry.dispatcher, conn, flow, deadline, pending);
            }
        }
        Frame::Item { flow, value, size } => {
            let mut flows = conn.flows();
            let Some(f) = flows.get_mut(flow) else {
                return Ok(());
            };
            if !f.stream.receive(size) {
                return Err(format!("flow {flow}: stream item past the credit window"));
            }
            let events = f.events.clone();
            drop(flows);
            let me: Arc<dyn Granter> = conn.clone();
            let _ = events.send(ServerEvent::Item(
                value,
                ItemToken::new(Arc::downgrade(&me), flow, size),
            ));
        }
        Frame::CloseSend { flow } => {
            if let Some(f) = conn.flows().get(flow) {
                let _ = f.events.send(ServerEvent::StreamClosed);
            }
        }
        Frame::Cancel { flow } => {
            let hook = match conn.flows().cancel(flow) {
                Cancelled::Open(f) => f.cancel(),
                _ => None,
            };
            if let Some(hook) = hook {
                hook();
            }
        }
        Frame::Credit { flow, bytes } => {
            if let Some(f) = conn.flows().get_mut(flow) {
                // (Nothing waits queued on a server's flow: its senders
                // wait for credit themselves.)
                f.stream.grant(bytes, &mut Vec::new(), |_| {});
            }
        }
        Frame::Response { flow, .. } => return Err(format!("unexpected response on flow {flow}")),
    }
    Ok(())
}

/// Looks up the object of a call (see [`Dispatcher::lookup`]): on a call
/// thread if the dispatcher asks for one; the deadline held by the
/// server if it answers later.
fn look_up(
    listener: &Listener,
    dispatcher: &Arc<dyn Dispatcher>,
    conn: &Arc<ServerConn>,
    flow: u64,
    deadline: Option<Instant>,
    pending: Pending,
) {
    match dispatcher.lookup(pending) {
        Step::Done => {}
        // Answered later: no thread waits, the server keeps the deadline.
        Step::Later => arm_deadline(listener, conn, flow, deadline),
        Step::Thread(p) if p.on_thread => p.fail(Error::internal(
            "the dispatcher asked for a thread on a call thread",
        )),
        Step::Thread(p) => {
            let (l, d, c) = (listener.clone(), dispatcher.clone(), conn.clone());
            run_blocking(
                listener,
                p,
                |p| p.reply,
                move |mut p| {
                    p.on_thread = true;
                    look_up(&l, &d, &c, flow, deadline, p)
                },
            );
        }
    }
}

/// Runs `job` with `stage` (a call at one of its stages) on the call pool;
/// if the pool and its queue are full, the caller is told so at once
/// (through the reply `reply` takes out of the stage).
fn run_blocking<S: Send + 'static>(
    listener: &Listener,
    stage: S,
    reply: fn(S) -> Reply,
    job: impl FnOnce(S) + Send + 'static,
) {
    // The job takes the stage from this slot; if the pool refuses the
    // job, the stage is still here to answer with.
    let slot = Arc::new(Mutex::new(Some(stage)));
    let taken = slot.clone();
    let run = move || {
        let stage = lock(&taken).take();
        if let Some(stage) = stage {
            job(stage);
        }
    };
    if listener.inner.pool.execute(Box::new(run)).is_err() {
        let max = listener.inner.config.pool.max_threads;
        log::warn!("refusing a call: all {max} call threads are busy and the queue is full");
        let stage = lock(&slot).take();
        if let Some(stage) = stage {
            reply(stage).send(Err(Error::aborted(format!(
                "the server is overloaded: all {max} call threads are busy"
            ))));
        }
    }
}

/// Goes on with a call whose lookup is done: authorize, then answer
/// `Signature` or invoke (see [`run_authorized`]; `on_thread` says whether
/// this is a call thread).
fn run_found(
    listener: &Listener,
    found: Result<Lookup>,
    call: ServerCall,
    args: Vec<Value>,
    reply: Reply,
    on_thread: bool,
) {
    let lookup = match found {
        Ok(l) => l,
        Err(e) => return reply.send(Err(e)),
    };
    let authorizer = lookup
        .authorizer
        .as_ref()
        .unwrap_or(&listener.inner.config.default_authorizer);
    if let Err(e) = authorizer.authorize(&call) {
        return reply.send(Err(e));
    }
    run_authorized(listener, lookup, call, args, reply, on_thread);
}

/// Goes on with an authorized call: answer `Signature`, or invoke (see
/// [`Invoker::invoke`]; `on_thread` says whether this is a call thread).
fn run_authorized(
    listener: &Listener,
    lookup: Lookup,
    call: ServerCall,
    args: Vec<Value>,
    reply: Reply,
    on_thread: bool,
) {
    // The call stands on the caller's proven blessings while they hold.
    // (Their names are worked out only if some blessing can expire.)
    let expiring = call
        .remote()
        .blessings()
        .iter()
        .any(|b| b.expiry().is_some());
    let relied = expiring
        .then(|| {
            call.remote_blessings()
                .filter_map(|b| b.expiry().map(|t| (t, b.name())))
                .min()
        })
        .flatten();
    if let Some((until, name)) = relied
        && !call.conn.rely_on(listener, call.flow, until, name)
    {
        return;
    }
    if call.method == "Signature" && args.is_empty() {
        let sig = lookup
            .invoker
            .signature(&call)
            .and_then(|s| serde_json::to_value(s).map_err(|e| Error::internal(e.to_string())));
        return reply.send(sig.map(|s| vec![s]));
    }
    let (conn, flow, deadline) = (call.conn.clone(), call.flow, call.deadline);
    let invocation = Invocation {
        call,
        args,
        reply,
        on_thread,
    };
    invoke(listener, lookup.invoker, &conn, flow, deadline, invocation);
}

/// Invokes an authorized call (see [`Invoker::invoke`]): on a call thread
/// if the invoker asks for one; the deadline held by the server if it
/// answers later.
fn invoke(
    listener: &Listener,
    invoker: Arc<dyn Invoker>,
    conn: &Arc<ServerConn>,
    flow: u64,
    deadline: Option<Instant>,
    invocation: Invocation,
) {
    match invoker.invoke(invocation) {
        Step::Done => {}
        // Answered later: hold the caller's deadline for it.
        Step::Later => arm_deadline(listener, conn, flow, deadline),
        Step::Thread(i) if i.on_thread => i.reply(Err(Error::internal(
            "the invoker asked for a thread on a call thread",
        ))),
        Step::Thread(i) => {
            let (l, c) = (listener.clone(), conn.clone());
            run_blocking(
                listener,
                i,
                |i| i.reply,
                move |mut i| {
                    i.on_thread = true;
                    invoke(&l, invoker, &c, flow, deadline, i)
                },
            );
        }
    }
}

/// Ends the call on `flow` at its deadline if it is still unanswered then,
/// for a call that no thread waits on (once per call: the later stages of
/// a call answered later find it kept).
fn arm_deadline(listener: &Listener, conn: &Arc<ServerConn>, flow: u64, deadline: Option<Instant>) {
    if deadline.is_none() {
        return;
    }
    // (None: answered already, or kept already.)
    let Some((d, serial)) = conn
        .flows()
        .get_mut(flow)
        .and_then(|f| Some((f.arm()?, f.serial())))
    else {
        return;
    };
    let weak = Arc::downgrade(conn);
    listener.at(d, move || {
        if let Some(c) = weak.upgrade() {
            c.expire(flow, serial);
        }
    });
}

/// A server hosted by a [`Listener`]. Dropping it stops it.
pub struct Server {
    entry: Arc<ServerEntry>,
    listener: Listener,
    owns_listener: bool,
    stopped: AtomicBool,
}

impl Server {
    /// A server on its own listener at `addr` (`host:port`; port 0 picks
    /// one), with default settings. `client` mounts its names, and its
    /// principal is who the server is.
    pub fn listen(addr: &str, dispatcher: Arc<dyn Dispatcher>, client: Client) -> Result<Server> {
        Server::listen_with(addr, dispatcher, client, ServerConfig::default())
    }

    /// A server on its own listener at `addr`.
    pub fn listen_with(
        addr: &str,
        dispatcher: Arc<dyn Dispatcher>,
        client: Client,
        config: ServerConfig,
    ) -> Result<Server> {
        Server::on_own(Listener::bind(addr, config, client)?, |l| {
            l.serve(dispatcher)
        })
    }

    /// A mount table on its own listener at `addr` (see
    /// [`Listener::serve_mount_table`]).
    pub fn listen_mount_table(
        addr: &str,
        dispatcher: Arc<dyn Dispatcher>,
        client: Client,
        config: ServerConfig,
    ) -> Result<Server> {
        Server::on_own(Listener::bind(addr, config, client)?, |l| {
            l.serve_mount_table(dispatcher)
        })
    }

    /// A server on its own listener on `tcp`, a socket bound already (see
    /// [`Listener::from_tcp`]).
    pub fn from_tcp(
        tcp: TcpListener,
        dispatcher: Arc<dyn Dispatcher>,
        client: Client,
        config: ServerConfig,
    ) -> Result<Server> {
        Server::on_own(Listener::from_tcp(tcp, config, client)?, |l| {
            l.serve(dispatcher)
        })
    }

    /// The server `serve` adds to `listener`, which it owns (and closes
    /// when it stops); the listener is closed if there is none.
    pub(crate) fn on_own(
        listener: Listener,
        serve: impl FnOnce(&Listener) -> Result<Server>,
    ) -> Result<Server> {
        match serve(&listener) {
            Ok(mut server) => {
                server.owns_listener = true;
                Ok(server)
            }
            Err(e) => {
                listener.close();
                Err(e)
            }
        }
    }

    /// The server's endpoint.
    pub fn endpoint(&self) -> &Endpoint {
        &self.entry.endpoint
    }

    /// The rooted name of the server itself (`/<endpoint>`).
    pub fn name(&self) -> String {
        format!("/{}", self.entry.endpoint)
    }

    /// The listener this server is on.
    pub fn listener(&self) -> &Listener {
        &self.listener
    }

    /// Mounts the server under `name` and keeps the mount refreshed until
    /// the server stops. A name already served by this server is `Exists`.
    pub fn add_name(&self, name: &str) -> Result<()> {
        {
            let mut names = lock(&self.entry.names);
            if names.iter().any(|n| n == name) {
                return Err(Error::exists(format!(
                    "{name} is already served by this server"
                )));
            }
            names.push(name.to_string());
        }
        let ttl = self.listener.inner.config.mount_ttl;
        let res = self.listener.inner.publisher.add(
            self.entry.routing_id,
            name,
            &self.name(),
            ttl,
            self.entry.mount.as_ref(),
        );
        if res.is_err() {
            lock(&self.entry.names).retain(|n| n != name);
        }
        res
    }

    /// Unmounts the server from `name` and stops refreshing that mount;
    /// the server goes on. A name the server does not have is `NoExist`.
    pub fn remove_name(&self, name: &str) -> Result<()> {
        {
            let mut names = lock(&self.entry.names);
            let before = names.len();
            names.retain(|n| n != name);
            if names.len() == before {
                return Err(Error::no_exist(format!(
                    "{name} is not a name of this server"
                )));
            }
        }
        self.listener
            .inner
            .publisher
            .remove_name(self.entry.routing_id, name)
    }

    /// The names the server is mounted under.
    pub fn names(&self) -> Vec<String> {
        lock(&self.entry.names).clone()
    }

    /// Unmounts, lets calls in flight end for up to the drain time, aborts
    /// the rest, closes the server's connections and joins their threads.
    pub fn stop(&self) {
        self.shut(self.listener.inner.config.drain_timeout);
    }

    /// Like [`Server::stop`], but aborts calls in flight at once.
    pub fn abort(&self) {
        self.shut(Duration::ZERO);
    }

    fn shut(&self, drain: Duration) {
        if self.stopped.swap(true, Ordering::SeqCst) {
            return;
        }
        let inner = &self.listener.inner;
        let rid = self.entry.routing_id;
        self.entry.stopping.store(true, Ordering::SeqCst);
        inner
            .servers
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&rid);
        inner.publisher.remove(rid);
        lock(&self.entry.names).clear();
        // Let calls in flight end.
        lock(&self.entry.inflight).take();
        if !drain.is_zero() {
            let _ = self
                .entry
                .inflight_done
                .recv_deadline(Instant::now() + drain);
        }
        let conns: Vec<_> = lock(&self.entry.conns).drain().collect();
        for (_, c) in &conns {
            c.abort_all("the server has stopped");
            c.writer.close("the server has stopped");
        }
        if self.owns_listener {
            self.listener.close();
        } else {
            inner.conn_threads.join(conns.iter().map(|(id, _)| *id));
        }
        log::info!("server {} stopped", self.entry.endpoint);
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}
