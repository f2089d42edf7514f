//! The invoker of a JavaScript object: checks the call against the
//! signature the lookup gave, sends ServerRequest `{serverId, handle,
//! method, args, context}` on a new even flow, relays stream items both
//! ways, and returns JavaScript's serverResponse. If the caller cancels or
//! its deadline passes, JavaScript gets Cancel on the flow and whatever it
//! answers later is ignored.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use crossbeam_channel::{Receiver, select};
use serde::Serialize;
use serde_json::Value;

use crate::error::{Error, Result};
use crate::naming;
use crate::rpc::{Invocation, Invoker, ServerCall, ServerEvent, Signature, Step};
use crate::wsprd::js_server::state::{Context, Found, ServerState, context};
use crate::wsprd::pipe::{Flow, JsItem, MAX_BUFFERED_ITEMS, Pipe, Unsent};
use crate::wsprd::protocol::{self, OutType};

/// ServerRequest's message, borrowed from the call and written straight to
/// JSON (fields in alphabetical order, as a JSON object of them would have).
#[derive(Serialize)]
struct ServerRequest<'a> {
    args: &'a [Value],
    context: Context<'a>,
    handle: i64,
    method: &'a str,
    #[serde(rename = "serverId")]
    server_id: u64,
}

/// Invokes methods of one JavaScript object.
pub(crate) struct JsInvoker {
    pub state: Arc<ServerState>,
    pub found: Arc<Found>,
}

/// JavaScript's side of a streaming request, waiting to go to the caller
/// as credit allows.
struct Outgoing {
    queue: VecDeque<JsItem>,
    /// Fires when credit comes, while the head of `queue` waits for it.
    credit: Option<Receiver<()>>,
}

impl Outgoing {
    /// Sends what credit allows; the item sizes sent are taken off
    /// `buffered` (the pipe's count for the flow's stream limit).
    fn pump(&mut self, call: &ServerCall, buffered: &AtomicUsize) -> Result<()> {
        self.credit = None;
        while let Some(item) = self.queue.front() {
            match item {
                JsItem::Item { item, size, .. } => match call.try_send(&**item)? {
                    None => {
                        buffered.fetch_sub(*size, Ordering::Relaxed);
                        self.queue.pop_front();
                    }
                    Some(rx) => {
                        self.credit = Some(rx);
                        return Ok(());
                    }
                },
                JsItem::Close => {
                    call.close_send()?;
                    self.queue.pop_front();
                }
            }
        }
        Ok(())
    }
}

impl JsInvoker {
    /// Relays a streaming request until JavaScript answers: the caller's
    /// items to JavaScript, JavaScript's items to the caller (paced by the
    /// caller's credit, never blocking outside the `select!`), and the
    /// caller's cancel, the server's stop and the deadline to JavaScript.
    fn relay(
        &self,
        pipe: &Arc<Pipe>,
        id: u64,
        call: &mut ServerCall,
        items: &Receiver<JsItem>,
        done: &Receiver<Result<Vec<Value>>>,
        buffered: &AtomicUsize,
    ) -> Result<Vec<Value>> {
        let events = call.events().clone();
        let caller_gone = call.done().clone();
        let deadline = call.deadline();
        let never = crossbeam_channel::never();
        // Fires at the caller's deadline (never, without one).
        let expired = deadline.map_or_else(crossbeam_channel::never, crossbeam_channel::at);
        let mut out = Outgoing {
            queue: VecDeque::new(),
            credit: None,
        };
        let mut answer: Option<Vec<Value>> = None;
        let mut caller_open = true;
        let cancel = |why: Error| {
            let _ = pipe.send(id, OutType::Cancel, &Value::Null);
            Err(why)
        };
        loop {
            if let Err(e) = out.pump(call, buffered) {
                return cancel(e);
            }
            // JavaScript has answered and everything it streamed is sent.
            if out.queue.is_empty()
                && let Some(results) = answer.take()
            {
                return Ok(results);
            }
            let credit = out.credit.clone().unwrap_or_else(|| never.clone());
            select! {
                recv(credit) -> _ => {}
                recv(items) -> m => match m {
                    Ok(item) => out.queue.push_back(item),
                    // The flow left the table: JavaScript's response is on
                    // its way, or the pipe closed (then `done` disconnects).
                    Err(_) => match done.recv() {
                        Ok(Ok(results)) => answer = Some(results),
                        Ok(Err(e)) => return Err(e),
                        Err(_) => return Err(Error::aborted("the server's pipe has closed")),
                    },
                },
                recv(done) -> r => match r {
                    // Items JavaScript sent before its response go first.
                    Ok(Ok(results)) => {
                        out.queue.extend(items.try_iter());
                        answer = Some(results);
                    }
                    Ok(Err(e)) => return cancel(e),
                    Err(_) => return Err(Error::aborted("the server's pipe has closed")),
                },
                recv(events) -> ev => match ev {
                    Ok(ServerEvent::Item(v, token)) if caller_open => {
                        // The credit goes back to the caller once the item
                        // is written to the websocket.
                        pipe.send_with(id, OutType::Stream, &v, Some(Box::new(token)))?;
                    }
                    Ok(ServerEvent::Item(..)) => {}
                    Ok(ServerEvent::StreamClosed) => {
                        caller_open = false;
                        pipe.send(id, OutType::StreamClose, &Value::Null)?;
                    }
                    Ok(ServerEvent::Cancelled) | Err(_) => {
                        return cancel(Error::aborted("the caller cancelled"));
                    }
                },
                recv(caller_gone) -> _ => return cancel(Error::aborted("the caller cancelled")),
                recv(self.state.stop_rx) -> _ => return cancel(Error::aborted("the server has stopped")),
                recv(expired) -> _ => return cancel(Error::timeout("the call's deadline passed")),
            }
        }
    }
}

impl JsInvoker {
    /// Checks the call against the signature; the method's lowerCamelCase
    /// name and whether it streams.
    fn check(&self, method: &str, args: &[Value]) -> Result<(String, bool)> {
        let name = naming::lower_first(method);
        let Some(sig) = self.found.signature.get(&name) else {
            return Err(Error::no_exist(format!(
                "the JavaScript object has no method {name}"
            )));
        };
        if args.len() != sig.in_args.len() {
            return Err(Error::bad_arg(format!(
                "{name} takes {} arguments, got {}",
                sig.in_args.len(),
                args.len()
            )));
        }
        Ok((name, sig.is_streaming))
    }

    /// Sends the ServerRequest of a non-streaming method and leaves the
    /// reply in the pipe's flow table: JavaScript's response answers the
    /// caller from the pipe thread, with no thread waiting meanwhile.
    fn defer(&self, name: String, invocation: Invocation) -> Step<Invocation> {
        let (call, args, reply) = invocation.into_parts();
        let Some(pipe) = self.state.pipe.upgrade().filter(|p| !p.is_closed()) else {
            reply.send(Err(Error::aborted("the server's pipe has closed")));
            return Step::Done;
        };
        if call.is_cancelled() {
            reply.send(Err(Error::aborted("the caller cancelled")));
            return Step::Done;
        }
        let (ctx, identity) = match context(&pipe, &call, &name) {
            Ok(c) => c,
            Err(e) => {
                reply.send(Err(e));
                return Step::Done;
            }
        };
        let id = match pipe.reserve() {
            Ok(id) => id,
            Err(e) => {
                pipe.identities.remove(identity);
                reply.send(Err(e));
                return Step::Done;
            }
        };
        let weak = Arc::downgrade(&pipe);
        // Caller gone, deadline passed, or server stopped: JavaScript hears
        // Cancel and the flow is forgotten (a cancel before the flow is in
        // place is kept for the fill below).
        // The hook may run on the listener's timer thread, which every
        // deadline shares: it queues the Cancel and leaves the writing (which
        // may wait on a slow browser) to a worker.
        reply.on_cancel(move || {
            if let Some(p) = weak.upgrade()
                && p.withdraw(id).is_some()
            {
                p.identities.remove(identity);
                if p.send_later(id, OutType::Cancel, &Value::Null, None)
                    .is_ok()
                {
                    let kicker = p.clone();
                    if p.run_job(Box::new(move || kicker.kick())).is_err() {
                        // (Written with the pipe's next message.)
                        log::debug!("pipe {}: a cancel waits to be written", p.id);
                    }
                }
            }
        });
        let request = ServerRequest {
            args: &args,
            context: ctx,
            handle: self.found.handle,
            method: &name,
            server_id: self.state.id,
        };
        let flow = Flow::Deferred { reply, identity };
        if let Err(refused) = pipe.fill_and_send(id, flow, OutType::ServerRequest, &request) {
            let (unsent, flow) = *refused;
            let e = match unsent {
                Unsent::Cancelled => Error::aborted("the caller cancelled"),
                Unsent::Closed => Error::aborted("the server's pipe has closed"),
                Unsent::Failed(e) => e,
            };
            pipe.identities.remove(identity);
            if let Flow::Deferred { reply, .. } = flow {
                reply.send(Err(e));
            }
            return Step::Done;
        }
        Step::Later
    }
}

impl JsInvoker {
    /// Sends the ServerRequest of a streaming method (`name`, as
    /// JavaScript knows it) and relays it until JavaScript answers, on a
    /// call thread.
    fn request(&self, name: &str, args: Vec<Value>, call: &mut ServerCall) -> Result<Vec<Value>> {
        let pipe = self
            .state
            .pipe
            .upgrade()
            .filter(|p| !p.is_closed())
            .ok_or_else(|| Error::aborted("the server's pipe has closed"))?;
        let (ctx, identity) = context(&pipe, call, name)?;
        let (items_tx, items) = crossbeam_channel::bounded(MAX_BUFFERED_ITEMS);
        let (done_tx, done) = crossbeam_channel::bounded(1);
        let buffered = Arc::new(AtomicUsize::new(0));
        let id = match pipe.open_flow(Flow::ServerRequest {
            items: items_tx,
            done: done_tx,
            buffered: buffered.clone(),
        }) {
            Ok(id) => id,
            Err(e) => {
                pipe.identities.remove(identity);
                return Err(e);
            }
        };
        let request = ServerRequest {
            args: &args,
            context: ctx,
            handle: self.found.handle,
            method: name,
            server_id: self.state.id,
        };
        let result = match pipe.send(id, OutType::ServerRequest, &request) {
            Ok(()) => self.relay(&pipe, id, call, &items, &done, &buffered),
            Err(e) => Err(e),
        };
        pipe.remove_flow(id);
        pipe.identities.remove(identity);
        result
    }
}

impl Invoker for JsInvoker {
    /// A non-streaming request is answered later, from JavaScript's
    /// serverResponse (see [`JsInvoker::defer`]); a streaming one relays
    /// both streams on a call thread (see [`JsInvoker::relay`]).
    fn invoke(&self, mut call: Invocation) -> Step<Invocation> {
        let name = match self.check(call.method(), call.args()) {
            Err(e) => {
                call.reply(Err(e));
                return Step::Done;
            }
            Ok((name, false)) => return self.defer(name, call),
            Ok((name, true)) => name,
        };
        if call.on_thread() {
            return call.blocking(|call, args| self.request(&name, args, call));
        }
        // A streaming request holds a call thread: within the pipe's share
        // of them.
        match self.state.pipe.upgrade().map(|p| p.stream_slot()) {
            Some(Ok(slot)) => {
                call.call_mut().hold(Box::new(slot));
                Step::Thread(call)
            }
            Some(Err(e)) => {
                call.reply(Err(e));
                Step::Done
            }
            None => {
                call.reply(Err(Error::aborted("the server's pipe has closed")));
                Step::Done
            }
        }
    }

    fn signature(&self, _call: &ServerCall) -> Result<Signature> {
        Ok(protocol::rename_methods(
            &self.found.signature,
            naming::upper_first,
        ))
    }
}
