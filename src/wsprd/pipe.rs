//! A pipe: one websocket connection and everything JavaScript does
//! through it.
//!
//! The pipe thread (`wsprd-pipe-<n>`) reads frames. Replies that complete
//! something already waiting (lookup, authorization and server responses,
//! stream items, cancels) are routed at once through the flow table; new
//! requests (calls, serve, signature, ...) go to the daemon's worker pool
//! (`controller`). Anything sends to JavaScript through the pipe's outbox,
//! in order, without a lock held while writing.
//!
//! The flow table maps a flow id to what waits on it: JavaScript's calls
//! and requests (odd ids) and the daemon's lookups, authorizations and
//! server requests (even ids, each a crossbeam channel the waiting thread
//! blocks on). Closing the pipe empties the table: every waiting channel
//! disconnects, so every waiter ends at once with `Aborted`.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use crossbeam_channel::Sender;
use serde::Serialize;
use serde_json::Value;
use serde_json::value::RawValue;

use crate::budget::{Budget, Charge};
use crate::error::{Error, ids};
use crate::outbox::PushError;
use crate::pool::Job;
use crate::rpc::{CallHandle, Client, ClientConfig, OfferError, Reply};
use crate::security::Principal;
use crate::sync::lock;
use crate::wsprd::controller;
use crate::wsprd::dispatcher::{self, JsServer, Waiting};
use crate::wsprd::identity::{self, Identities};
use crate::wsprd::protocol::{self, InType, Incoming, OutType};
use crate::wsprd::shared::{OpenPipe, Shared, limit_reached};
use crate::wsprd::tls::Transport;
use crate::wsprd::token::{Gate, PipeToken};
use crate::wsprd::ws::{ReadFail, WsEvent, WsIo, WsOut, WsReader};

/// Items JavaScript may send on one flow before the daemon has somewhere
/// to put them (a call still starting, a caller not yet reading).
pub(crate) const MAX_BUFFERED_ITEMS: usize = 1024;

/// A pipe's requests that may wait for one of its workers (past them, the
/// pipe is told the daemon is overloaded for it).
pub(crate) const MAX_WAITING_JOBS: usize = 256;

/// A pipe's requests that block, on the daemon's workers: at most its
/// share run at once, the rest wait in the pipe's own queue.
#[derive(Default)]
struct Work {
    running: usize,
    waiting: VecDeque<Job>,
}

/// One of a pipe's streaming requests in flight (each holds a call
/// thread); dropping it gives the place back.
pub(crate) struct StreamSlot(Arc<Pipe>);

impl Drop for StreamSlot {
    fn drop(&mut self) {
        self.0.streams.fetch_sub(1, Ordering::SeqCst);
    }
}

/// What JavaScript sends on a server request's flow: an item as the JSON
/// text JavaScript wrote (never decoded: what is held is what came), its
/// size on the wire, and what it holds of the pipe's budget.
pub(crate) enum JsItem {
    Item {
        item: Box<RawValue>,
        size: usize,
        _charge: Charge,
    },
    Close,
}

/// Where a JavaScript call stands.
pub(crate) enum CallState {
    /// The worker is resolving the name and connecting; items wait.
    Starting,
    /// The worker is sending the items that waited; new ones wait too.
    Draining(CallHandle),
    /// Items go straight to the call.
    Direct(CallHandle),
}

/// What JavaScript streams to a call still starting: items as their JSON
/// text, each with what it holds of the pipe's budget.
pub(crate) enum Buffered {
    Item(Box<RawValue>, Charge),
    Close,
}

/// A call of JavaScript's.
pub(crate) struct CallFlow {
    /// This call among the pipe's calls (JavaScript may reuse a flow id
    /// once a call has ended; this tells the calls apart).
    pub serial: u64,
    pub state: CallState,
    pub buffered: VecDeque<Buffered>,
    /// Bytes of the items in `buffered`.
    pub buffered_bytes: usize,
    pub cancelled: bool,
    /// Why the call is to end as soon as it has started.
    pub failure: Option<Error>,
}

/// What waits on a flow.
pub(crate) enum Flow {
    /// A request of JavaScript's in a worker (serve, signature, ...).
    Request,
    /// A call of JavaScript's.
    Call(CallFlow),
    /// A call waiting for JavaScript's lookupResponse (no thread waits).
    Lookup(Box<Waiting>),
    /// A call waiting for JavaScript's authResponse (no thread waits).
    Auth(Box<Waiting>),
    /// A server request of a streaming method: JavaScript's stream items,
    /// and its response, for the call thread relaying them.
    ServerRequest {
        items: Sender<JsItem>,
        done: Sender<Result<Vec<Value>, Error>>,
        /// Bytes of the items in `items`, taken off as they are forwarded.
        buffered: Arc<AtomicUsize>,
    },
    /// A server request of a non-streaming method: no thread waits; the
    /// response goes straight to the caller. Dropping it (pipe closed)
    /// answers the caller `Aborted`.
    Deferred {
        reply: Reply,
        /// The caller's identity handle, freed with the flow.
        identity: u64,
    },
}

/// One websocket connection. See the module documentation.
pub(crate) struct Pipe {
    pub id: u64,
    out: Arc<WsOut>,
    pub shared: Arc<Shared>,
    flows: Mutex<HashMap<u64, Flow>>,
    next_flow: AtomicU64,
    /// Numbers JavaScript's calls (`CallFlow::serial`).
    calls: AtomicU64,
    pub servers: Mutex<HashMap<u64, Arc<JsServer>>>,
    /// Its calls and servers authenticate as this client's principal:
    /// blessed by the daemon under the pipe's Origin, and under its user's
    /// name when it presented a token ([`Pipe::principal`]).
    pub client: Client,
    /// Its user's token, if it presented one.
    pub token: PipeToken,
    pub identities: Identities,
    closed: AtomicBool,
    /// Its requests on the daemon's workers.
    work: Mutex<Work>,
    /// Its servers' streaming requests in flight.
    streams: AtomicUsize,
    /// What its JavaScript's stream items may hold, over all its flows
    /// (`--max-pipe-buffer-bytes`).
    budget: Budget,
}

impl Pipe {
    pub(crate) fn flows(&self) -> MutexGuard<'_, HashMap<u64, Flow>> {
        lock(&self.flows)
    }

    /// Who the pipe is now: `<daemon>/<origin>`, or its user
    /// `<daemon>/<origin>/<issuer>:<subject>`.
    pub(crate) fn principal(&self) -> Arc<Principal> {
        self.client.principal()
    }

    /// Answers each request and call of JavaScript's in flight with `err`,
    /// queued for the pipe thread to write (with the close that follows).
    pub(crate) fn fail_requests(&self, err: &Error) {
        let ids: Vec<u64> = self
            .flows()
            .iter()
            .filter(|(_, f)| matches!(f, Flow::Call(_) | Flow::Request))
            .map(|(id, _)| *id)
            .collect();
        for id in ids {
            let _ = self.send_later(id, OutType::Error, &err.to_json(), None);
        }
    }

    /// Opens a flow of the daemon's (an even id), unless the pipe holds
    /// its limit of flows.
    pub(crate) fn open_flow(&self, flow: Flow) -> Result<u64, Error> {
        let id = self.new_flow_id();
        self.insert_flow(id, flow).map_err(|b| b.0)?;
        Ok(id)
    }

    /// A new id for a flow of the daemon's, to open with
    /// [`Pipe::insert_flow`].
    pub(crate) fn new_flow_id(&self) -> u64 {
        self.next_flow.fetch_add(2, Ordering::Relaxed)
    }

    /// Opens a flow under an id from [`Pipe::new_flow_id`], unless the
    /// pipe holds its limit of flows (the flow is handed back then).
    pub(crate) fn insert_flow(&self, id: u64, flow: Flow) -> Result<(), Box<(Error, Flow)>> {
        let mut flows = self.flows();
        if flows.len() >= self.shared.config.max_flows_per_pipe {
            drop(flows);
            return Err(Box::new((self.flow_limit(), flow)));
        }
        flows.insert(id, flow);
        Ok(())
    }

    fn flow_limit(&self) -> Error {
        limit_reached(
            &self.shared.stats.limits.flows,
            format!(
                "{} flows in flight on pipe {} (--max-flows-per-pipe)",
                self.shared.config.max_flows_per_pipe, self.id
            ),
        )
    }

    /// Forgets a flow.
    pub(crate) fn remove_flow(&self, id: u64) -> Option<Flow> {
        self.flows().remove(&id)
    }

    /// Takes out the call waiting on flow `id` for a lookup or an
    /// authorization, if that is what the flow is.
    pub(crate) fn take_waiting(&self, id: u64) -> Option<Box<Waiting>> {
        let mut flows = self.flows();
        if !matches!(flows.get(&id), Some(Flow::Lookup(_) | Flow::Auth(_))) {
            return None;
        }
        match flows.remove(&id) {
            Some(Flow::Lookup(w) | Flow::Auth(w)) => Some(w),
            _ => None,
        }
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }

    /// Sends a message to JavaScript.
    pub(crate) fn send(
        &self,
        id: u64,
        kind: OutType,
        message: &impl Serialize,
    ) -> Result<(), Error> {
        self.send_with(id, kind, message, None)
    }

    /// Sends a message; `token` is dropped once it is written.
    pub(crate) fn send_with(
        &self,
        id: u64,
        kind: OutType,
        message: &impl Serialize,
        token: Option<Box<dyn Send>>,
    ) -> Result<(), Error> {
        let res = self.out.text(protocol::envelope(id, kind, message), token);
        self.pushed(res)
    }

    /// Queues a message without writing it; see [`Pipe::kick`].
    pub(crate) fn send_later(
        &self,
        id: u64,
        kind: OutType,
        message: &impl Serialize,
        token: Option<Box<dyn Send>>,
    ) -> Result<(), Error> {
        let res = self
            .out
            .text_later(protocol::envelope(id, kind, message), token);
        self.pushed(res)
    }

    /// Writes messages queued with [`Pipe::send_later`].
    pub(crate) fn kick(&self) {
        let res = self.out.kick();
        let _ = self.pushed(res);
    }

    fn pushed(&self, res: Result<(), PushError>) -> Result<(), Error> {
        match res {
            Ok(()) => Ok(()),
            Err(PushError::Full { queued, max }) => {
                self.shared
                    .stats
                    .limits
                    .stuck
                    .fetch_add(1, Ordering::Relaxed);
                log::warn!(
                    "pipe {}: JavaScript is not reading ({queued} bytes queued, limit {max}); closing the pipe",
                    self.id
                );
                self.out.abort("not reading");
                Err(Error::aborted("the pipe is not reading"))
            }
            Err(PushError::Closed(_)) => Err(Error::aborted("the pipe is closed")),
        }
    }

    /// Answers flow `id` with an error, and logs it.
    pub(crate) fn send_error(&self, id: u64, err: &Error) {
        self.shared.stats.errors.fetch_add(1, Ordering::Relaxed);
        log::info!("pipe {}: flow {id}: {err}", self.id);
        let _ = self.send(id, OutType::Error, &err.to_json());
    }

    /// Ends a request of JavaScript's with `result`.
    pub(crate) fn finish_request(&self, id: u64, result: Result<Value, Error>) {
        self.remove_flow(id);
        match result {
            Ok(v) => {
                let _ = self.send(id, OutType::Final, &v);
            }
            Err(e) => self.send_error(id, &e),
        }
    }

    fn on_text(self: &Arc<Self>, text: &str) {
        let m = match protocol::parse_envelope(text) {
            Ok(m) => m,
            Err((id, e)) => return self.send_error(id, &e),
        };
        if let Gate::Done = PipeToken::gate(self, &m) {
            return;
        }
        if m.kind.is_request() {
            return self.on_request(m);
        }
        match m.kind {
            InType::StreamValue => self.on_item(m.id, protocol::raw_item(m.data), text.len()),
            InType::StreamClose => self.on_stream_close(m.id),
            InType::Cancel => self.on_cancel(m.id),
            InType::LookupResponse | InType::AuthResponse | InType::ServerResponse => {
                self.on_reply(m)
            }
            _ => self.send_error(m.id, &Error::bad_protocol("unexpected message type")),
        }
    }

    fn on_request(self: &Arc<Self>, m: Incoming) {
        let id = m.id;
        if id.is_multiple_of(2) {
            return self.send_error(
                id,
                &Error::bad_arg(format!(
                    "flow id {id} is even; JavaScript's flows use odd ids"
                )),
            );
        }
        let serial = self.calls.fetch_add(1, Ordering::Relaxed);
        {
            let mut flows = self.flows();
            if flows.contains_key(&id) {
                drop(flows);
                return self.send_error(id, &Error::bad_arg(format!("flow id {id} is in use")));
            }
            if flows.len() >= self.shared.config.max_flows_per_pipe {
                drop(flows);
                return self.send_error(id, &self.flow_limit());
            }
            if m.kind == InType::UnlinkIdentity {
                // No reply, nothing to wait for.
                drop(flows);
                match protocol::data::<u64>(m.data, "unlinkIdentity") {
                    Ok(handle) => self.identities.remove(handle),
                    Err(e) => self.send_error(id, &e),
                }
                return;
            }
            let flow = match m.kind {
                InType::Call => Flow::Call(CallFlow {
                    serial,
                    state: CallState::Starting,
                    buffered: VecDeque::new(),
                    buffered_bytes: 0,
                    cancelled: false,
                    failure: None,
                }),
                _ => Flow::Request,
            };
            flows.insert(id, flow);
        }
        let pipe = self.clone();
        let job: Box<dyn FnOnce() + Send> = if m.kind == InType::Call {
            let prepared = match controller::prepare_call(self, id, serial, m.data) {
                Ok(p) => p,
                Err(e) => return self.finish_request(id, Err(e)),
            };
            match controller::call_now(self, id, prepared) {
                None => return,
                Some(p) => Box::new(move || controller::call_blocking(&pipe, id, p)),
            }
        } else {
            Box::new(move || controller::handle(&pipe, m))
        };
        if let Err(e) = self.run_job(job) {
            self.remove_flow(id);
            self.send_error(id, &e);
        }
    }

    /// Runs `job` on one of the daemon's workers, within the pipe's share
    /// (`--max-workers-per-pipe`): past it, the job waits behind the
    /// pipe's own, never holding up other pipes'. Refused when the pipe
    /// already has [`MAX_WAITING_JOBS`] waiting, or every worker is busy
    /// and the daemon's queue is full.
    pub(crate) fn run_job(self: &Arc<Self>, job: Job) -> Result<(), Error> {
        let share = self.shared.config.max_workers_per_pipe;
        {
            let mut work = lock(&self.work);
            if work.running >= share {
                if work.waiting.len() >= MAX_WAITING_JOBS {
                    let waiting = work.waiting.len();
                    drop(work);
                    return Err(limit_reached(
                        &self.shared.stats.limits.workers,
                        format!(
                            "the daemon is overloaded for pipe {}: {share} of its requests are running and {waiting} waiting (--max-workers-per-pipe)",
                            self.id
                        ),
                    ));
                }
                work.waiting.push_back(job);
                return Ok(());
            }
            work.running += 1;
        }
        let pipe = self.clone();
        if self
            .shared
            .workers
            .execute(Box::new(move || pipe.work_on(job)))
            .is_err()
        {
            lock(&self.work).running -= 1;
            return Err(Error::internal(
                "the daemon is overloaded: every worker is busy",
            ));
        }
        Ok(())
    }

    /// Runs `job`, then the pipe's jobs that wait for its share, on this
    /// worker.
    fn work_on(self: Arc<Self>, first: Job) {
        let mut job = first;
        loop {
            if std::panic::catch_unwind(std::panic::AssertUnwindSafe(job)).is_err() {
                log::error!("pipe {}: a request panicked; its worker goes on", self.id);
            }
            let mut work = lock(&self.work);
            match work.waiting.pop_front() {
                Some(next) => job = next,
                None => {
                    work.running -= 1;
                    return;
                }
            }
        }
    }

    /// A place for one more streaming request of the pipe's servers,
    /// unless they hold `--max-streams-per-pipe` already.
    pub(crate) fn stream_slot(self: &Arc<Self>) -> Result<StreamSlot, Error> {
        let max = self.shared.config.max_streams_per_pipe;
        match self
            .streams
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                (n < max).then_some(n + 1)
            }) {
            Ok(_) => Ok(StreamSlot(self.clone())),
            Err(_) => Err(limit_reached(
                &self.shared.stats.limits.streams,
                format!(
                    "the servers of pipe {} have {max} streaming requests in flight, each holding a thread (--max-streams-per-pipe)",
                    self.id
                ),
            )),
        }
    }

    /// The error for JavaScript's items over the pipe's budget.
    fn over_budget(&self) -> Error {
        limit_reached(
            &self.shared.stats.limits.pipe_buffer,
            format!(
                "JavaScript streamed more than {} bytes ahead of their readers over the flows of pipe {} (--max-pipe-buffer-bytes)",
                self.budget.limit(),
                self.id
            ),
        )
    }

    /// What a call's refused item means, counted under its limit.
    pub(crate) fn offer_error(&self, e: OfferError) -> Error {
        match e {
            // Only a full queue is the stream-buffer limit.
            OfferError::Full(e) => limit_reached(
                &self.shared.stats.limits.stream_buffer,
                format!("{} (--max-stream-buffer-bytes)", e.msg()),
            ),
            OfferError::OverBudget(_) => self.over_budget(),
            OfferError::Failed(e) => e,
        }
    }

    /// Holds an item of `bytes` (its JSON text) against the pipe's budget.
    fn charge(&self, bytes: usize) -> Option<Charge> {
        // (Its box and its place in a queue cost a little besides.)
        self.budget.charge(bytes + 32)
    }

    /// A stream item of JavaScript's, as the JSON text it wrote; `size` is
    /// what it took on the wire, counted against the flow's stream buffer.
    /// What waits is held as that text, and counted against the pipe's
    /// budget as well.
    fn on_item(&self, id: u64, item: Box<RawValue>, size: usize) {
        let limit = self.shared.config.max_stream_buffer_bytes;
        let over = |what: &str| {
            limit_reached(
                &self.shared.stats.limits.stream_buffer,
                format!(
                    "JavaScript streamed more than {limit} bytes ahead of {what} (--max-stream-buffer-bytes)"
                ),
            )
        };
        let mut flows = self.flows();
        match flows.get_mut(&id) {
            Some(Flow::Call(c)) => match &c.state {
                CallState::Direct(h) => {
                    let h = h.clone();
                    drop(flows);
                    if let Err(e) = h.offer(&*item) {
                        h.end(self.offer_error(e));
                    }
                }
                _ => {
                    let charge = if c.buffered.len() >= MAX_BUFFERED_ITEMS
                        || c.buffered_bytes + size > limit
                    {
                        Err(over("the call's start"))
                    } else {
                        self.charge(item.get().len())
                            .ok_or_else(|| self.over_budget())
                    };
                    match charge {
                        Ok(charge) => {
                            c.buffered_bytes += size;
                            c.buffered.push_back(Buffered::Item(item, charge));
                        }
                        Err(e) => {
                            log::warn!("pipe {}: flow {id}: {e}", self.id);
                            // The call ends with this error once it has
                            // started.
                            c.cancelled = true;
                            c.failure.get_or_insert(e);
                            c.buffered.clear();
                            c.buffered_bytes = 0;
                        }
                    }
                }
            },
            Some(Flow::ServerRequest {
                items,
                done,
                buffered,
            }) => {
                let charge = if buffered.load(Ordering::Relaxed) + size > limit {
                    Err(over("the caller"))
                } else {
                    self.charge(item.get().len())
                        .ok_or_else(|| self.over_budget())
                };
                match charge {
                    Ok(charge) => {
                        let item = JsItem::Item {
                            item,
                            size,
                            _charge: charge,
                        };
                        if items.try_send(item).is_ok() {
                            buffered.fetch_add(size, Ordering::Relaxed);
                        } else {
                            let _ = done.try_send(Err(over("the caller")));
                        }
                    }
                    Err(e) => {
                        let _ = done.try_send(Err(e));
                    }
                }
            }
            _ => {
                drop(flows);
                log::debug!("pipe {}: stream item on unknown flow {id} ignored", self.id);
            }
        }
    }

    fn on_stream_close(&self, id: u64) {
        let mut flows = self.flows();
        match flows.get_mut(&id) {
            Some(Flow::Call(c)) => match &c.state {
                CallState::Direct(h) => {
                    let h = h.clone();
                    drop(flows);
                    let _ = h.close_send();
                }
                // (A close repeated adds nothing: JavaScript cannot grow
                // the buffer with closes.)
                _ if matches!(c.buffered.back(), Some(Buffered::Close)) => {}
                _ => c.buffered.push_back(Buffered::Close),
            },
            Some(Flow::ServerRequest { items, .. }) => {
                let _ = items.try_send(JsItem::Close);
            }
            _ => log::debug!(
                "pipe {}: stream close on unknown flow {id} ignored",
                self.id
            ),
        }
    }

    fn on_cancel(&self, id: u64) {
        let mut flows = self.flows();
        match flows.get_mut(&id) {
            Some(Flow::Call(c)) => match &c.state {
                CallState::Direct(h) | CallState::Draining(h) => {
                    let h = h.clone();
                    drop(flows);
                    h.cancel();
                }
                CallState::Starting => c.cancelled = true,
            },
            _ => log::debug!("pipe {}: cancel on unknown flow {id} ignored", self.id),
        }
    }

    fn on_reply(&self, m: Incoming) {
        let id = m.id;
        let mut flows = self.flows();
        let matches = matches!(
            (m.kind, flows.get(&id)),
            (InType::LookupResponse, Some(Flow::Lookup(_)))
                | (InType::AuthResponse, Some(Flow::Auth(_)))
                | (InType::ServerResponse, Some(Flow::ServerRequest { .. }))
                | (InType::ServerResponse, Some(Flow::Deferred { .. }))
        );
        if !matches {
            drop(flows);
            log::info!(
                "pipe {}: {:?} on flow {id}, which is not waiting for one; ignored",
                self.id,
                m.kind
            );
            return;
        }
        let flow = flows.remove(&id);
        drop(flows);
        let bad = |e: &Error| {
            self.send_error(id, e);
            Error::internal(format!("JavaScript's reply cannot be decoded: {}", e.msg()))
        };
        match flow {
            Some(Flow::Lookup(w)) => {
                let reply = protocol::data::<protocol::LookupResponse>(m.data, "lookupResponse")
                    .map_err(|e| bad(&e));
                dispatcher::lookup_answered(self, w, reply);
            }
            Some(Flow::Auth(w)) => {
                let reply = protocol::data::<protocol::AuthResponse>(m.data, "authResponse")
                    .map_err(|e| bad(&e));
                dispatcher::auth_answered(self, w, reply);
            }
            Some(Flow::ServerRequest { done, .. }) => {
                let _ = done.try_send(server_response(m.data).map_err(|e| bad(&e)).and_then(|r| r));
            }
            Some(Flow::Deferred { reply, identity }) => {
                reply.send(server_response(m.data).map_err(|e| bad(&e)).and_then(|r| r));
                self.identities.remove(identity);
            }
            _ => {}
        }
    }

    /// Closes the websocket with `code` (the pipe thread then cleans up).
    pub(crate) fn close(&self, code: u16, reason: &str) {
        self.out.close(code, reason);
    }

    /// Ends everything the pipe holds: calls are cancelled, waiters see
    /// their channels disconnect, servers are stopped.
    fn clean_up(&self) -> usize {
        self.closed.store(true, Ordering::SeqCst);
        self.token.stop(&self.shared.timer);
        let flows: Vec<(u64, Flow)> = self.flows().drain().collect();
        let n = flows.len();
        for (_, f) in flows {
            match f {
                Flow::Call(CallFlow {
                    state: CallState::Direct(h) | CallState::Draining(h),
                    ..
                }) => h.cancel(),
                Flow::Lookup(w) | Flow::Auth(w) => {
                    w.fail(self, Error::aborted("the server's pipe has closed"))
                }
                _ => {}
            }
        }
        // Requests still waiting for a worker will not run.
        let waiting = std::mem::take(&mut lock(&self.work).waiting);
        drop(waiting);
        let servers: Vec<_> = lock(&self.servers).drain().map(|(_, s)| s).collect();
        for s in servers {
            s.stop();
            controller::forget_signatures(self, &s.endpoint());
        }
        self.client.close();
        n
    }
}

impl OpenPipe for Pipe {
    fn close(&self, code: u16, reason: &str) {
        Pipe::close(self, code, reason);
    }

    fn flows(&self) -> usize {
        Pipe::flows(self).len()
    }

    fn servers(&self) -> usize {
        lock(&self.servers).len()
    }
}

/// Decodes a serverResponse: JavaScript's results or error (outer error:
/// the data cannot be decoded).
fn server_response(data: protocol::Data) -> Result<Result<Vec<Value>, Error>, Error> {
    let r = protocol::data::<protocol::ServerResponse>(data, "serverResponse")?;
    Ok(match protocol::js_error(&r.err, ids::UNKNOWN) {
        Some(e) => Err(e),
        None => Ok(r.results),
    })
}

/// Runs a pipe on the calling thread until it closes.
pub(crate) fn run(
    shared: Arc<Shared>,
    id: u64,
    conn: Transport,
    peer: SocketAddr,
    origin: Option<String>,
    leftover: Vec<u8>,
) {
    let config = &shared.config;
    let setup = WsOut::new(&conn, config.max_queued_bytes).and_then(|out| {
        conn.tcp.set_read_timeout(Some(config.keepalive))?;
        conn.tcp.set_write_timeout(Some(config.write_timeout))?;
        Ok(out)
    });
    let out = match setup {
        Ok(o) => Arc::new(o),
        Err(e) => {
            log::warn!("pipe {id} from {peer}: {e}");
            return;
        }
    };
    let budget = Budget::new(config.max_pipe_buffer_bytes);
    let client_config = ClientConfig {
        write_timeout: config.write_timeout,
        max_pending: config.max_stream_buffer_bytes,
        pending_budget: Some(budget.clone()),
        ..Default::default()
    };
    let extension = identity::origin_extension(origin.as_deref());
    let principal = match Principal::new_blessed_by(&shared.principal, &extension, vec![]) {
        Ok(p) => Arc::new(p),
        Err(e) => {
            log::error!("pipe {id} from {peer}: cannot bless its principal: {e}");
            out.close(1011, "cannot make an identity");
            return;
        }
    };
    let pipe = Arc::new(Pipe {
        id,
        out: out.clone(),
        shared: shared.clone(),
        flows: Mutex::new(HashMap::new()),
        next_flow: AtomicU64::new(2),
        calls: AtomicU64::new(0),
        servers: Mutex::new(HashMap::new()),
        client: Client::with_principal(shared.namespace.clone(), principal.clone(), client_config),
        token: PipeToken::new(principal),
        identities: Identities::default(),
        closed: AtomicBool::new(false),
        work: Mutex::new(Work::default()),
        streams: AtomicUsize::new(0),
        budget,
    });
    let closing = {
        let mut pipes = lock(&shared.pipes);
        pipes.insert(id, pipe.clone());
        shared.closing.load(Ordering::SeqCst)
    };
    if closing {
        // The daemon stopped while this connection was upgrading.
        pipe.close(1001, "the daemon is shutting down");
    }
    shared.stats.pipes_opened.fetch_add(1, Ordering::Relaxed);
    log::info!(
        "pipe {id} opened from {peer} (origin {}) as {}",
        origin.as_deref().unwrap_or("none"),
        pipe.principal().names().join(", ")
    );
    PipeToken::start(&pipe);
    let mut reader = WsReader::new(WsIo::new(conn, out), leftover, config.max_message_bytes);
    let mut idle = 0;
    let batching = crate::outbox::Batching::start();
    let why = loop {
        if pipe.out.is_closed() {
            break "the daemon closed it".to_string();
        }
        match reader.read() {
            Ok(WsEvent::Text(t)) => {
                idle = 0;
                pipe.on_text(&t);
            }
            Ok(WsEvent::Binary) => {
                idle = 0;
                pipe.send_error(
                    0,
                    &Error::bad_protocol("binary frames carry no messages; send text"),
                );
            }
            Ok(WsEvent::Alive) => idle = 0,
            Ok(WsEvent::Idle) => {
                idle += 1;
                if idle > 1 {
                    pipe.close(1001, "no answer to pings");
                    break "the peer stopped answering pings".to_string();
                }
                let _ = pipe.out.ping();
            }
            Ok(WsEvent::Closed) => {
                pipe.out.finish("closed by the peer");
                break "closed by JavaScript".to_string();
            }
            Err(ReadFail::TooBig(e)) => {
                shared.stats.limits.message.fetch_add(1, Ordering::Relaxed);
                pipe.close(1009, "message too big");
                break format!("message too big ({e})");
            }
            Err(ReadFail::Violation(code, e)) => {
                shared.stats.errors.fetch_add(1, Ordering::Relaxed);
                pipe.close(code, &format!("protocol error: {e}"));
                break format!("websocket protocol error ({e}), closed with {code}");
            }
            Err(ReadFail::Broken(e)) => {
                if pipe.out.is_closed() {
                    break "closed by the daemon".to_string();
                }
                pipe.out.finish(&e);
                break e;
            }
        }
    };
    drop(batching);
    // The close frame (or the peer's close reply) goes out before the
    // pipe's servers are stopped and its names unmounted.
    pipe.out.flush_closing();
    let flows = pipe.clean_up();
    lock(&shared.pipes).remove(&id);
    log::info!("pipe {id} closed: {why}; {flows} flows ended");
}
