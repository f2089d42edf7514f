//! The invoker of a JavaScript object: checks the call against the
//! signature the lookup gave, sends ServerRequest `{serverId, handle,
//! method, args, context}` on a new even flow, relays stream items both
//! ways, and returns JavaScript's serverResponse. If the caller cancels or
//! its deadline passes, JavaScript gets Cancel on the flow and whatever it
//! answers later is ignored.

use std::sync::Arc;
use std::time::Instant;

use crossbeam_channel::{Receiver, select};
use serde_json::{Value, json};

use crate::error::{Error, Result};
use crate::naming;
use crate::rpc::{Invoker, Now, Reply, ServerCall, ServerEvent, Signature};
use crate::wsprd::dispatcher::{Found, ServerState, context};
use crate::wsprd::pipe::{Flow, JsItem, MAX_BUFFERED_ITEMS, Pipe};
use crate::wsprd::protocol::{self, OutType};

/// Invokes methods of one JavaScript object.
pub(crate) struct JsInvoker {
    pub state: Arc<ServerState>,
    pub found: Arc<Found>,
}

enum Step {
    Continue,
    Done(Result<Vec<Value>>),
}

impl JsInvoker {
    fn forward_js_item(&self, call: &ServerCall, item: JsItem) -> Step {
        match item {
            JsItem::Item(v) => match call.send(&v) {
                Ok(()) => Step::Continue,
                Err(e) => Step::Done(Err(e)),
            },
            JsItem::Close => match call.close_send() {
                Ok(()) => Step::Continue,
                Err(e) => Step::Done(Err(e)),
            },
        }
    }

    fn relay(
        &self,
        pipe: &Arc<Pipe>,
        id: u64,
        call: &mut ServerCall,
        items: &Receiver<JsItem>,
        done: &Receiver<Result<Vec<Value>>>,
    ) -> Result<Vec<Value>> {
        let events = call.events().clone();
        let caller_gone = call.done().clone();
        let deadline = call.deadline();
        let mut caller_open = true;
        loop {
            let timeout = deadline.map(|d| d.saturating_duration_since(Instant::now()));
            let step = select! {
                recv(items) -> m => match m {
                    Ok(item) => self.forward_js_item(call, item),
                    // The flow left the table: JavaScript's response is on
                    // its way, or the pipe closed (then `done` disconnects).
                    Err(_) => Step::Done(
                        done.recv()
                            .unwrap_or_else(|_| Err(Error::aborted("the server's pipe has closed"))),
                    ),
                },
                recv(done) -> r => {
                    // Items JavaScript sent before its response go first.
                    while let Ok(item) = items.try_recv() {
                        if let Step::Done(e) = self.forward_js_item(call, item) {
                            return e;
                        }
                    }
                    Step::Done(r.unwrap_or_else(|_| Err(Error::aborted("the server's pipe has closed"))))
                },
                recv(events) -> ev => match ev {
                    Ok(ServerEvent::Item(v, token)) if caller_open => {
                        // The credit goes back to the caller once the item
                        // is written to the websocket.
                        match pipe.send_with(id, OutType::Stream, &v, Some(Box::new(token))) {
                            Ok(()) => Step::Continue,
                            Err(e) => Step::Done(Err(e)),
                        }
                    }
                    Ok(ServerEvent::Item(..)) => Step::Continue,
                    Ok(ServerEvent::StreamClosed) => {
                        caller_open = false;
                        match pipe.send(id, OutType::StreamClose, &Value::Null) {
                            Ok(()) => Step::Continue,
                            Err(e) => Step::Done(Err(e)),
                        }
                    }
                    Ok(ServerEvent::Cancelled) | Err(_) => {
                        let _ = pipe.send(id, OutType::Cancel, &Value::Null);
                        Step::Done(Err(Error::aborted("the caller cancelled")))
                    }
                },
                recv(caller_gone) -> _ => {
                    let _ = pipe.send(id, OutType::Cancel, &Value::Null);
                    Step::Done(Err(Error::aborted("the caller cancelled")))
                },
                recv(self.state.stop_rx) -> _ => {
                    let _ = pipe.send(id, OutType::Cancel, &Value::Null);
                    Step::Done(Err(Error::aborted("the server has stopped")))
                },
                default(timeout.unwrap_or(std::time::Duration::from_secs(86_400))) => {
                    if deadline.is_some_and(|d| d <= Instant::now()) {
                        let _ = pipe.send(id, OutType::Cancel, &Value::Null);
                        Step::Done(Err(Error::timeout("the call's deadline passed")))
                    } else {
                        Step::Continue
                    }
                },
            };
            if let Step::Done(r) = step {
                return r;
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
    fn defer(&self, name: String, args: Vec<Value>, call: ServerCall, reply: Reply) {
        let Some(pipe) = self.state.pipe.upgrade().filter(|p| !p.is_closed()) else {
            return reply.send(Err(Error::aborted("the server's pipe has closed")));
        };
        if call.is_cancelled() {
            return reply.send(Err(Error::aborted("the caller cancelled")));
        }
        let (ctx, identity) = match context(&pipe, &call) {
            Ok(c) => c,
            Err(e) => return reply.send(Err(e)),
        };
        let id = pipe.new_flow_id();
        let weak = Arc::downgrade(&pipe);
        // Caller gone, deadline passed, or server stopped: JavaScript hears
        // Cancel and the flow is forgotten.
        reply.on_cancel(move || {
            if let Some(p) = weak.upgrade()
                && p.remove_flow(id).is_some()
            {
                p.identities.remove(identity);
                let _ = p.send(id, OutType::Cancel, &Value::Null);
            }
        });
        pipe.insert_flow(id, Flow::Deferred { reply, identity });
        let request = json!({
            "serverId": self.state.id,
            "handle": self.found.handle,
            "method": name,
            "args": args,
            "context": ctx,
        });
        if let Err(e) = pipe.send(id, OutType::ServerRequest, &request)
            && let Some(Flow::Deferred { reply, identity }) = pipe.remove_flow(id)
        {
            pipe.identities.remove(identity);
            reply.send(Err(e));
        }
    }
}

impl Invoker for JsInvoker {
    fn invoke_now(&self, method: &str, args: Vec<Value>, call: ServerCall, reply: Reply) -> Now {
        match self.check(method, &args) {
            Err(e) => reply.send(Err(e)),
            Ok((_, true)) => return Now::Blocking(call, args, reply),
            Ok((name, false)) => self.defer(name, args, call, reply),
        }
        Now::Handled
    }

    fn invoke(&self, method: &str, args: Vec<Value>, call: &mut ServerCall) -> Result<Vec<Value>> {
        let (name, _) = self.check(method, &args)?;
        let pipe = self
            .state
            .pipe
            .upgrade()
            .filter(|p| !p.is_closed())
            .ok_or_else(|| Error::aborted("the server's pipe has closed"))?;
        let (ctx, identity) = context(&pipe, call)?;
        let (items_tx, items) = crossbeam_channel::bounded(MAX_BUFFERED_ITEMS);
        let (done_tx, done) = crossbeam_channel::bounded(1);
        let id = pipe.open_flow(Flow::ServerRequest {
            items: items_tx,
            done: done_tx,
        });
        let request = json!({
            "serverId": self.state.id,
            "handle": self.found.handle,
            "method": name,
            "args": args,
            "context": ctx,
        });
        let result = match pipe.send(id, OutType::ServerRequest, &request) {
            Ok(()) => self.relay(&pipe, id, call, &items, &done),
            Err(e) => Err(e),
        };
        pipe.remove_flow(id);
        pipe.identities.remove(identity);
        result
    }

    fn signature(&self, _call: &ServerCall) -> Result<Signature> {
        Ok(protocol::rename_methods(
            &self.found.signature,
            naming::upper_first,
        ))
    }
}
