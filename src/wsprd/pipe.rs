//! A pipe as everything but its own thread sees it: one websocket
//! connection's handle. Whoever has something for JavaScript sends it here
//! (in order, through the pipe's outbox, with no lock held while
//! writing), and flows are opened, routed and ended here; what waits on a
//! flow is kept in the pipe's flow table (the flow core's, `crate::flow`).
//! The pipe's thread (`router`) reads the websocket and hands each message
//! to this handle or to the controller.
//!
//! The flow table maps a flow id to what waits on it: JavaScript's calls
//! and requests (odd ids, picked by JavaScript) and the daemon's lookups,
//! authorizations and server requests (even ids, from 2). Closing the pipe
//! empties the table and closes it: every waiter ends at once with
//! `Aborted`, and nothing opens any more.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use crossbeam_channel::Sender;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use serde_json::value::RawValue;

use crate::budget::{Budget, Charge};
use crate::error::Error;
use crate::flow::{Flows, Full, Gate, Limit, Queued, Refused, Route, Start, Unfilled};
use crate::outbox::PushError;
use crate::pool::Job;
use crate::rpc::{CallHandle, Client, OfferError, Reply, Server};
use crate::security::Principal;
use crate::sync::lock;
use crate::wsprd::identity::Identities;
use crate::wsprd::protocol::{self, InType, OutType};
use crate::wsprd::shared::{OpenPipe, Shared, limit_reached};
use crate::wsprd::token::PipeToken;
use crate::wsprd::ws::WsOut;

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

/// A call of JavaScript's: what JavaScript streams to it waits at its gate
/// until the call is placed (the items as their JSON text, each holding
/// its share of the pipe's budget), then goes straight to it.
#[derive(Default)]
pub(crate) struct CallFlow {
    gate: Gate<CallHandle, Box<RawValue>>,
    /// Why the call is to end as soon as it has started.
    failure: Option<Error>,
}

impl CallFlow {
    /// The call's handle, once it has started.
    pub(crate) fn handle(&self) -> Option<&CallHandle> {
        self.gate.handle()
    }
}

/// A call parked in the flow table until JavaScript answers (a lookup, an
/// authorization): nothing else waits for it.
pub(crate) trait Parked: Send {
    /// JavaScript's reply arrived on flow `id` (its `data`, still to be
    /// decoded: see [`Pipe::reply_data`]).
    fn answered(self: Box<Self>, pipe: &Arc<Pipe>, id: u64, data: protocol::Data);
    /// The wait ends without an answer: the caller gets `err`.
    fn fail(self: Box<Self>, pipe: &Pipe, err: Error);
    /// Frees what the wait holds besides the call (its caller has had its
    /// answer).
    fn release(self: Box<Self>, pipe: &Pipe);
}

/// What waits on a flow.
pub(crate) enum Flow {
    /// A request of JavaScript's in a worker (serve, signature, ...).
    Request,
    /// A call of JavaScript's.
    Call(CallFlow),
    /// A call waiting for JavaScript's reply of type `answer`
    /// (lookupResponse, authResponse); no thread waits.
    Parked {
        answer: InType,
        wait: Box<dyn Parked>,
    },
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

impl Flow {
    /// Whether this flow waits for JavaScript's reply of type `kind`.
    fn answers(&self, kind: InType) -> bool {
        match self {
            Flow::Parked { answer, .. } => *answer == kind,
            Flow::ServerRequest { .. } | Flow::Deferred { .. } => kind == InType::ServerResponse,
            _ => false,
        }
    }
}

/// A server that a pipe's JavaScript serves, as the pipe keeps it.
pub(crate) trait Served: Send + Sync {
    /// The RPC server.
    fn rpc(&self) -> &Server;
    /// Ends every wait on JavaScript at once, unmounts the names, aborts
    /// calls in flight and closes the server's connections.
    fn stop(&self);
}

/// Why [`Pipe::fill_and_send`] sent nothing.
pub(crate) enum Unsent {
    /// The flow was withdrawn while it was set up (its caller went).
    Cancelled,
    /// The pipe has closed.
    Closed,
    /// The message could not be queued.
    Failed(Error),
}

/// What a started call of JavaScript's does next ([`Pipe::call_started`]).
pub(crate) enum Next {
    /// Send these (what JavaScript streamed while it started), in order,
    /// then report again.
    Send(CallHandle, VecDeque<Queued<Box<RawValue>>>),
    /// Nothing waits: JavaScript's items go straight to the call.
    Open,
    /// The call is to end: cancelled by JavaScript (`None`) or past a
    /// limit (`Some`); or it has ended, its id perhaps another's by now.
    End(CallHandle, Option<Error>),
}

/// One websocket connection. See the module documentation.
pub(crate) struct Pipe {
    pub id: u64,
    out: Arc<WsOut>,
    pub shared: Arc<Shared>,
    flows: Mutex<Flows<Flow>>,
    pub servers: Mutex<HashMap<u64, Arc<dyn Served>>>,
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
    /// A pipe writing to `out`, whose client uses `budget` for the items
    /// it queues for credit.
    pub(crate) fn new(
        id: u64,
        out: Arc<WsOut>,
        shared: Arc<Shared>,
        client: Client,
        token: PipeToken,
        budget: Budget,
    ) -> Pipe {
        let max = shared.config.max_flows_per_pipe;
        Pipe {
            id,
            out,
            shared,
            // The daemon's own flows are even, from 2.
            flows: Mutex::new(Flows::new(max, 2, 2)),
            servers: Mutex::new(HashMap::new()),
            client,
            token,
            identities: Identities::default(),
            closed: AtomicBool::new(false),
            work: Mutex::new(Work::default()),
            streams: AtomicUsize::new(0),
            budget,
        }
    }

    fn flows(&self) -> MutexGuard<'_, Flows<Flow>> {
        lock(&self.flows)
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
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
            .filter(|(_, f)| matches!(&***f, Flow::Call(_) | Flow::Request))
            .map(|(id, _)| id)
            .collect();
        for id in ids {
            let _ = self.send_later(id, OutType::Error, &err.to_json(), None);
        }
    }

    /// Whether a flow is open (or reserved) under `id`.
    pub(crate) fn has_flow(&self, id: u64) -> bool {
        self.flows().contains(id)
    }

    // --- Sending to JavaScript.

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

    /// Closes the websocket with `code` (the pipe thread then cleans up).
    pub(crate) fn close(&self, code: u16, reason: &str) {
        self.out.close(code, reason);
    }

    /// Decodes JavaScript's reply on flow `id` as a `what`: if it cannot
    /// be, JavaScript gets `BadArg` on the flow, and the error for whoever
    /// waited is `Internal`.
    pub(crate) fn reply_data<T: DeserializeOwned>(
        &self,
        id: u64,
        data: protocol::Data,
        what: &str,
    ) -> Result<T, Error> {
        protocol::data::<T>(data, what).map_err(|e| {
            self.send_error(id, &e);
            Error::internal(format!("JavaScript's reply cannot be decoded: {}", e.msg()))
        })
    }

    // --- Opening and ending flows.

    fn refused<T>(&self, r: Refused<T>) -> (Error, T) {
        match r {
            Refused::Full(v) => (self.flow_limit(), v),
            Refused::InUse(v) => (Error::bad_arg("the flow id is in use"), v),
            Refused::Closed(v) => (Error::aborted("the pipe has closed"), v),
        }
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

    /// Opens JavaScript's flow `id` for a request of `kind`; its serial
    /// (the call's among calls that use the id in turn).
    pub(crate) fn open_request(&self, id: u64, kind: InType) -> Result<u64, Error> {
        let flow = match kind {
            InType::Call => Flow::Call(CallFlow::default()),
            _ => Flow::Request,
        };
        match self.flows().open(id, flow) {
            Ok(serial) => Ok(serial),
            Err(Refused::InUse(_)) => Err(Error::bad_arg(format!("flow id {id} is in use"))),
            Err(r) => Err(self.refused(r).0),
        }
    }

    /// Opens a flow of the daemon's (an even id), unless the pipe holds
    /// its limit of flows.
    pub(crate) fn open_flow(&self, flow: Flow) -> Result<u64, Error> {
        match self.flows().open_next(flow) {
            Ok((id, _)) => Ok(id),
            Err(r) => Err(self.refused(r).0),
        }
    }

    /// Hands out an id for a flow of the daemon's set up in steps (hooks
    /// that name it come first), unless the pipe holds its limit of flows;
    /// [`Pipe::fill`] puts the flow in place.
    pub(crate) fn reserve(&self) -> Result<u64, Error> {
        self.flows().reserve().map_err(|r| self.refused(r).0)
    }

    /// Puts the flow of a reserved id in place and sends `message` of
    /// `kind` to JavaScript on it, as one step: whoever withdraws the flow
    /// (and tells JavaScript so) does it before (then the flow is handed
    /// back, and nothing is sent) or after the message is queued. Handed
    /// back, with why, if it was withdrawn meanwhile (the caller went), the
    /// pipe has closed, or the message could not be queued.
    pub(crate) fn fill_and_send(
        &self,
        id: u64,
        flow: Flow,
        kind: OutType,
        message: &impl Serialize,
    ) -> Result<(), Box<(Unsent, Flow)>> {
        let text = protocol::envelope(id, kind, message);
        let mut flows = self.flows();
        if let Err(unfilled) = flows.fill(id, flow) {
            let why = match unfilled {
                Unfilled::Cancelled(f) => (Unsent::Cancelled, f),
                Unfilled::Gone(f) => (Unsent::Closed, f),
            };
            return Err(Box::new(why));
        }
        // (Queued under the lock, written after it.)
        let queued = self.out.text_later(text, None);
        let taken = queued.is_err().then(|| flows.remove(id)).flatten();
        drop(flows);
        match (self.pushed(queued), taken) {
            (Ok(()), _) => {
                self.kick();
                Ok(())
            }
            (Err(e), Some(flow)) => Err(Box::new((Unsent::Failed(e), flow.into_value()))),
            // (Not in the table any more: whoever took it ends it.)
            (Err(_), None) => Ok(()),
        }
    }

    /// Withdraws flow `id` (its caller went): what waited on it, if it was
    /// in place (a reserved id is marked, for its fill to say so).
    pub(crate) fn withdraw(&self, id: u64) -> Option<Flow> {
        self.flows().withdraw(id).map(|s| s.into_value())
    }

    /// Forgets a flow.
    pub(crate) fn remove_flow(&self, id: u64) -> Option<Flow> {
        self.flows().remove(id).map(|s| s.into_value())
    }

    /// Forgets JavaScript's call on flow `id` if it is still the one
    /// numbered `serial` (the id may be another call's by now).
    pub(crate) fn end_call(&self, id: u64, serial: u64) {
        self.flows().remove_serial(id, serial);
    }

    /// Takes out the call parked on flow `id`, if that is what waits there.
    pub(crate) fn take_parked(&self, id: u64) -> Option<Box<dyn Parked>> {
        let flow = self
            .flows()
            .remove_if(id, |f| matches!(f, Flow::Parked { .. }))?;
        match flow.into_value() {
            Flow::Parked { wait, .. } => Some(wait),
            _ => None,
        }
    }

    /// Takes out what waits on flow `id` for JavaScript's reply of type
    /// `kind`, if that is what waits there.
    pub(crate) fn take_reply(&self, id: u64, kind: InType) -> Option<Flow> {
        self.flows()
            .remove_if(id, |f| f.answers(kind))
            .map(|s| s.into_value())
    }

    /// Closes the flow table: what waited on it, for the pipe's thread to
    /// end; nothing opens any more.
    pub(crate) fn close_flows(&self) -> Vec<Flow> {
        self.closed.store(true, Ordering::SeqCst);
        let flows = self.flows().close();
        flows.into_iter().map(|(_, s)| s.into_value()).collect()
    }

    // --- JavaScript's calls.

    /// JavaScript's call on flow `id` (numbered `serial`) has started
    /// through `handle`, or its starter has sent what it was last given:
    /// what to do next. Only the starter sends until the call is open, so
    /// JavaScript's items keep their order.
    pub(crate) fn call_started(&self, id: u64, serial: u64, handle: CallHandle) -> Next {
        let mut flows = self.flows();
        let Some(slot) = flows.get_serial(id, serial) else {
            // The pipe closed, or the call already ended (and its id may
            // be another call's by now).
            return Next::End(handle, None);
        };
        let cancelled = slot.is_cancelled();
        let Flow::Call(c) = &mut **slot else {
            return Next::End(handle, None);
        };
        if cancelled {
            return Next::End(handle, c.failure.take());
        }
        match c.gate.start(handle) {
            Start::Open => Next::Open,
            Start::Send(handle, batch) => Next::Send(handle, batch),
        }
    }

    /// Why JavaScript's call on flow `id` (numbered `serial`) could not
    /// start, if a limit it reached while starting says more.
    pub(crate) fn call_failure(&self, id: u64, serial: u64) -> Option<Error> {
        match self.flows().get_serial(id, serial).map(|s| &mut **s) {
            Some(Flow::Call(c)) => c.failure.take(),
            _ => None,
        }
    }

    /// A stream item of JavaScript's, as the JSON text it wrote; `size` is
    /// what it took on the wire, counted against the flow's stream buffer.
    /// What waits is held as that text, and counted against the pipe's
    /// budget as well.
    pub(crate) fn route_item(&self, id: u64, item: Box<RawValue>, size: usize) {
        let limit = self.shared.config.max_stream_buffer_bytes;
        let over = |what: &str| {
            limit_reached(
                &self.shared.stats.limits.stream_buffer,
                format!(
                    "JavaScript streamed more than {limit} bytes ahead of {what} (--max-stream-buffer-bytes)"
                ),
            )
        };
        // (Its box and its place in a queue cost a little besides.)
        let charge = item.get().len() + 32;
        let mut flows = self.flows();
        let Some(slot) = flows.get_mut(id) else {
            drop(flows);
            return log::debug!("pipe {}: stream item on unknown flow {id} ignored", self.id);
        };
        match &mut **slot {
            Flow::Call(c) => {
                let gate = Limit {
                    bytes: limit,
                    items: MAX_BUFFERED_ITEMS,
                    budget: Some(&self.budget),
                };
                let failed = match c.gate.item(item, size, charge, &gate) {
                    Ok(Route::Through(h, item)) => {
                        let h = h.clone();
                        drop(flows);
                        if let Err(e) = h.offer(&*item) {
                            h.end(self.offer_error(e));
                        }
                        return;
                    }
                    Ok(Route::Waits) => return,
                    Err(Full::Queue { .. }) => over("the call's start"),
                    Err(Full::Budget { .. }) => self.over_budget(),
                };
                log::warn!("pipe {}: flow {id}: {failed}", self.id);
                // The call ends with this error once it has started.
                c.failure.get_or_insert(failed);
                c.gate.clear();
                slot.set_cancelled();
            }
            Flow::ServerRequest {
                items,
                done,
                buffered,
            } => {
                let charged = if buffered.load(Ordering::Relaxed) + size > limit {
                    Err(over("the caller"))
                } else {
                    self.budget.charge(charge).ok_or_else(|| self.over_budget())
                };
                match charged {
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

    /// JavaScript closed its stream on flow `id`.
    pub(crate) fn route_close(&self, id: u64) {
        let mut flows = self.flows();
        match flows.get_mut(id).map(|s| &mut **s) {
            Some(Flow::Call(c)) => {
                // (A close repeated while it waits adds nothing: JavaScript
                // cannot grow the buffer with closes.)
                if let Route::Through(h, ()) = c.gate.close() {
                    let h = h.clone();
                    drop(flows);
                    let _ = h.close_send();
                }
            }
            Some(Flow::ServerRequest { items, .. }) => {
                let _ = items.try_send(JsItem::Close);
            }
            _ => log::debug!(
                "pipe {}: stream close on unknown flow {id} ignored",
                self.id
            ),
        }
    }

    /// JavaScript cancelled its call on flow `id`.
    pub(crate) fn route_cancel(&self, id: u64) {
        let mut flows = self.flows();
        let Some(slot) = flows.get_mut(id) else {
            drop(flows);
            return log::debug!("pipe {}: cancel on unknown flow {id} ignored", self.id);
        };
        match &**slot {
            Flow::Call(c) => match c.gate.handle().cloned() {
                Some(h) => {
                    drop(flows);
                    h.cancel();
                }
                // Still starting: it ends once it has started.
                None => slot.set_cancelled(),
            },
            _ => log::debug!("pipe {}: cancel on unknown flow {id} ignored", self.id),
        }
    }

    // --- Limits.

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

    /// Drops the requests still waiting for one of the pipe's workers
    /// (the pipe has closed: they will not run).
    pub(crate) fn drop_waiting_jobs(&self) {
        let waiting = std::mem::take(&mut lock(&self.work).waiting);
        drop(waiting);
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
