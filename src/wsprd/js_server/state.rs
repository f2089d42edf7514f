//! What a JavaScript server's dispatcher and invokers share: the server's
//! state, what a lookup found, and the context JavaScript sees for a call.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use serde::Serialize;

use crate::error::{Error, Result};
use crate::rpc::{ServerCall, Signature};
use crate::security::Blessing;
use crate::sync::lock;
use crate::wsprd::identity::Identity;
use crate::wsprd::pipe::Pipe;

/// What a lookup found: a JavaScript object and how to call it.
pub(crate) struct Found {
    pub handle: i64,
    /// lowerCamelCase method names, as JavaScript gave them.
    pub signature: Signature,
    pub has_authorizer: bool,
}

/// The state a server's dispatcher and invokers share.
pub(crate) struct ServerState {
    pub id: u64,
    pub pipe: Weak<Pipe>,
    /// Never sent on: dropped when the server stops, which wakes every
    /// thread relaying a streaming request of this server.
    stop_tx: Mutex<Option<Sender<()>>>,
    pub stop_rx: Receiver<()>,
    /// Set when the server stops.
    stopped: AtomicBool,
    /// Cacheable lookup replies, by suffix and lowerCamelCase method.
    pub cache: Mutex<HashMap<(String, String), Arc<Found>>>,
    pub lookup_timeout: Duration,
}

impl ServerState {
    /// The state of JavaScript's server `id` on `pipe`.
    pub(crate) fn new(id: u64, pipe: &Arc<Pipe>, lookup_timeout: Duration) -> ServerState {
        let (stop_tx, stop_rx) = crossbeam_channel::bounded(0);
        ServerState {
            id,
            pipe: Arc::downgrade(pipe),
            stop_tx: Mutex::new(Some(stop_tx)),
            stop_rx,
            stopped: AtomicBool::new(false),
            cache: Mutex::new(HashMap::new()),
            lookup_timeout,
        }
    }

    /// Whether the server has stopped.
    pub(crate) fn is_stopped(&self) -> bool {
        self.stopped.load(Ordering::SeqCst)
    }

    /// Ends every wait on JavaScript for this server, at once.
    pub(crate) fn stop(&self) {
        self.stopped.store(true, Ordering::SeqCst);
        lock(&self.stop_tx).take();
    }

    /// The pipe, unless it has closed or the server has stopped.
    pub(crate) fn live_pipe(&self) -> Result<Arc<Pipe>> {
        if self.is_stopped() {
            return Err(Error::aborted("the server has stopped"));
        }
        self.open_pipe()
    }

    /// The pipe, unless it has closed.
    pub(crate) fn open_pipe(&self) -> Result<Arc<Pipe>> {
        self.pipe
            .upgrade()
            .filter(|p| !p.is_closed())
            .ok_or_else(|| Error::aborted("the server's pipe has closed"))
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
