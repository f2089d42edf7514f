//! A pipe's thread (`wsprd-pipe-<n>`): it reads the websocket's frames
//! and hands each message on. Replies that complete something already
//! waiting (lookup, authorization and server responses, stream items,
//! cancels) are routed at once through the pipe's flow table; new
//! requests (calls, serve, signature, ...) go to the controller, on the
//! daemon's worker pool when they may block. When the websocket closes,
//! it ends everything the pipe holds.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use serde_json::Value;

use crate::budget::Budget;
use crate::error::{Error, ids};
use crate::rpc::{Client, ClientConfig};
use crate::security::Principal;
use crate::sync::lock;
use crate::wsprd::controller;
use crate::wsprd::identity;
use crate::wsprd::pipe::{Flow, Pipe};
use crate::wsprd::protocol::{self, InType, Incoming};
use crate::wsprd::shared::Shared;
use crate::wsprd::tls::Transport;
use crate::wsprd::token::PipeToken;
use crate::wsprd::user::{self, Gate};
use crate::wsprd::ws::{ReadFail, WsEvent, WsIo, WsOut, WsReader};

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
        // (The daemon's timer ends the pipe's calls at their deadlines.)
        timer: Some(shared.timer.clone()),
        ..Default::default()
    };
    let extension = identity::origin_extension(origin.as_deref());
    let principals = Principal::new_blessed_by(&shared.principal, &extension, vec![])
        .map(Arc::new)
        .and_then(|base| {
            let first = identity::tokenless(&base, shared.tokens.is_some())?;
            Ok((base, first))
        });
    let (base, principal) = match principals {
        Ok(p) => p,
        Err(e) => {
            log::error!("pipe {id} from {peer}: cannot bless its principal: {e}");
            out.close(1011, "cannot make an identity");
            return;
        }
    };
    let client = Client::with_principal(shared.namespace.clone(), principal, client_config);
    let pipe = Arc::new(Pipe::new(
        id,
        out.clone(),
        shared.clone(),
        client,
        PipeToken::new(base),
        budget,
    ));
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
    user::start(&pipe);
    let mut reader = WsReader::new(
        WsIo::new(conn, out.clone()),
        leftover,
        config.max_message_bytes,
    );
    let mut idle = 0;
    let batching = crate::outbox::Batching::start();
    let why = loop {
        if out.is_closed() {
            break "the daemon closed it".to_string();
        }
        match reader.read() {
            Ok(WsEvent::Text(t)) => {
                idle = 0;
                on_text(&pipe, &t);
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
                let _ = out.ping();
            }
            Ok(WsEvent::Closed) => {
                out.finish("closed by the peer");
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
                if out.is_closed() {
                    break "closed by the daemon".to_string();
                }
                out.finish(&e);
                break e;
            }
        }
    };
    drop(batching);
    // The close frame (or the peer's close reply) goes out before the
    // pipe's servers are stopped and its names unmounted.
    out.flush_closing();
    let flows = clean_up(&pipe);
    lock(&shared.pipes).remove(&id);
    log::info!("pipe {id} closed: {why}; {flows} flows ended");
}

fn on_text(pipe: &Arc<Pipe>, text: &str) {
    let m = match protocol::parse_envelope(text) {
        Ok(m) => m,
        Err((id, e)) => return pipe.send_error(id, &e),
    };
    if let Gate::Done = user::gate(pipe, &m) {
        return;
    }
    if m.kind.is_request() {
        return on_request(pipe, m);
    }
    match m.kind {
        InType::StreamValue => pipe.route_item(m.id, protocol::raw_item(m.data), text.len()),
        InType::StreamClose => pipe.route_close(m.id),
        InType::Cancel => pipe.route_cancel(m.id),
        InType::LookupResponse | InType::AuthResponse | InType::ServerResponse => on_reply(pipe, m),
        _ => pipe.send_error(m.id, &Error::bad_protocol("unexpected message type")),
    }
}

/// A request of JavaScript's opens its flow: a call starts where it can
/// (see `controller::start_call`), anything else goes to a worker.
fn on_request(pipe: &Arc<Pipe>, m: Incoming) {
    let id = m.id;
    if id.is_multiple_of(2) {
        return pipe.send_error(
            id,
            &Error::bad_arg(format!(
                "flow id {id} is even; JavaScript's flows use odd ids"
            )),
        );
    }
    let serial = match pipe.open_request(id, m.kind) {
        Ok(s) => s,
        Err(e) => return pipe.send_error(id, &e),
    };
    match m.kind {
        InType::UnlinkIdentity => {
            // No reply, nothing to wait for.
            pipe.remove_flow(id);
            match protocol::data::<u64>(m.data, "unlinkIdentity") {
                Ok(handle) => pipe.identities.remove(handle),
                Err(e) => pipe.send_error(id, &e),
            }
        }
        InType::Call => match controller::prepare_call(pipe, id, serial, m.data) {
            Ok(p) => controller::start_call(pipe, id, p),
            Err(e) => pipe.finish_request(id, Err(e)),
        },
        _ => {
            let p = pipe.clone();
            if let Err(e) = pipe.run_job(Box::new(move || controller::handle(&p, m))) {
                pipe.remove_flow(id);
                pipe.send_error(id, &e);
            }
        }
    }
}

/// JavaScript's reply (types 2, 11, 12) to what waits on its flow; a
/// reply nothing waits for is logged and dropped.
fn on_reply(pipe: &Arc<Pipe>, m: Incoming) {
    let id = m.id;
    let Some(flow) = pipe.take_reply(id, m.kind) else {
        return log::info!(
            "pipe {}: {:?} on flow {id}, which is not waiting for one; ignored",
            pipe.id,
            m.kind
        );
    };
    match flow {
        Flow::Parked { wait, .. } => wait.answered(pipe, id, m.data),
        Flow::ServerRequest { done, .. } => {
            let _ = done.try_send(server_response(pipe, id, m.data));
        }
        Flow::Deferred { reply, identity } => {
            reply.send(server_response(pipe, id, m.data));
            pipe.identities.remove(identity);
        }
        Flow::Request | Flow::Call(_) => {}
    }
}

/// JavaScript's serverResponse: its results or error (an `Internal` error
/// if it cannot be decoded).
fn server_response(pipe: &Pipe, id: u64, data: protocol::Data) -> Result<Vec<Value>, Error> {
    let r = pipe.reply_data::<protocol::ServerResponse>(id, data, "serverResponse")?;
    match protocol::js_error(&r.err, ids::UNKNOWN) {
        Some(e) => Err(e),
        None => Ok(r.results),
    }
}

/// Ends everything the pipe holds: calls are cancelled, waiters end with
/// `Aborted`, servers are stopped, the client is closed. The number of
/// flows that were in flight.
fn clean_up(pipe: &Pipe) -> usize {
    pipe.token.stop(&pipe.shared.timer);
    let flows = pipe.close_flows();
    let n = flows.len();
    for f in flows {
        match f {
            Flow::Call(c) => {
                if let Some(h) = c.handle() {
                    h.cancel();
                }
            }
            Flow::Parked { wait, .. } => {
                wait.fail(pipe, Error::aborted("the server's pipe has closed"))
            }
            // (Dropped: their waiters see the channels disconnect, their
            // callers get `Aborted`.)
            _ => {}
        }
    }
    // Requests still waiting for a worker will not run.
    pipe.drop_waiting_jobs();
    let servers: Vec<_> = lock(&pipe.servers).drain().map(|(_, s)| s).collect();
    for s in servers {
        s.stop();
        controller::forget_signatures(pipe, &s.rpc().endpoint().to_string());
    }
    pipe.client.close();
    n
}
