//! What every pipe of a daemon shares: its settings, its workers, its
//! timer, its listener, the open pipes, and the counts it reports.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use serde_json::{Value, json};

use crate::error::Error;
use crate::pool::Pool;
use crate::rpc::{Listener, Namespace};
use crate::security::Principal;
use crate::sync::lock;
use crate::wsprd::config::Config;
use crate::wsprd::metrics;
use crate::wsprd::{tls, token};

#[derive(Default)]
pub(crate) struct Stats {
    pub pipes_opened: AtomicU64,
    pub errors: AtomicU64,
    pub limits: Limits,
}

/// How often each limit was reached.
#[derive(Default)]
pub(crate) struct Limits {
    pub pipes: AtomicU64,
    pub flows: AtomicU64,
    pub servers: AtomicU64,
    pub names: AtomicU64,
    pub stream_buffer: AtomicU64,
    pub pipe_buffer: AtomicU64,
    pub workers: AtomicU64,
    pub streams: AtomicU64,
    pub message: AtomicU64,
    pub stuck: AtomicU64,
}

impl Limits {
    fn json(&self) -> Value {
        let n = |a: &AtomicU64| a.load(Ordering::Relaxed);
        json!({
            "pipes": n(&self.pipes),
            "flowsPerPipe": n(&self.flows),
            "serversPerPipe": n(&self.servers),
            "namesPerServer": n(&self.names),
            "streamBuffer": n(&self.stream_buffer),
            "pipeBuffer": n(&self.pipe_buffer),
            "workersPerPipe": n(&self.workers),
            "streamsPerPipe": n(&self.streams),
            "messageBytes": n(&self.message),
            "stuckPipes": n(&self.stuck),
        })
    }
}

/// The error a request gets when a limit is reached; `counter` counts it.
pub(crate) fn limit_reached(counter: &AtomicU64, what: String) -> Error {
    counter.fetch_add(1, Ordering::Relaxed);
    Error::aborted(format!("limit reached: {what}"))
}

/// An open pipe, as the daemon sees it from outside (to count what it
/// holds, and to close it when the daemon stops).
pub(crate) trait OpenPipe: Send + Sync {
    /// Closes the websocket with `code`; the pipe's thread then cleans up.
    fn close(&self, code: u16, reason: &str);
    /// Flows in flight.
    fn flows(&self) -> usize;
    /// Servers its JavaScript serves.
    fn servers(&self) -> usize;
}

/// What every pipe shares.
pub(crate) struct Shared {
    pub config: Config,
    /// TLS of the HTTP listener, if it has it.
    pub tls: Option<tls::Tls>,
    /// The token issuers trusted, if any.
    pub tokens: Option<token::Issuers>,
    pub principal: Arc<Principal>,
    pub namespace: Arc<Namespace>,
    pub workers: Pool,
    /// Hosts the servers JavaScript serves.
    pub listener: Listener,
    /// Signatures by (the asking pipe's principal, the server object).
    pub signatures: Mutex<HashMap<(String, String), (Value, Instant)>>,
    pub pipes: Mutex<HashMap<u64, Arc<dyn OpenPipe>>>,
    /// Set (with `pipes` locked) when the daemon stops: a pipe that
    /// registers after that closes itself.
    pub closing: AtomicBool,
    /// The daemon's one timer: its pipes' call deadlines, its listeners'
    /// deadlines of calls answered later, the lookup timeouts.
    pub timer: crate::timer::Timer,
    /// Pipes running (`--max-pipes`).
    pub open_pipes: std::sync::atomic::AtomicUsize,
    /// HTTP connections that have not yet sent their request.
    pub http_setup: crate::admission::Admission,
    /// The RPC listeners (the JavaScript servers', the embedded mount
    /// table's), for their connections still setting up.
    pub rpc_listeners: Vec<Listener>,
    pub stats: Stats,
    /// JavaScript's calls that have ended, for `/metrics`.
    pub calls: metrics::CallMetrics,
}

impl Shared {
    /// The open pipes, taken out of their lock.
    pub(crate) fn pipe_list(&self) -> Vec<Arc<dyn OpenPipe>> {
        lock(&self.pipes).values().cloned().collect()
    }

    /// What `GET /health` answers.
    pub(crate) fn health(&self) -> Value {
        let pipes = self.pipe_list();
        let flows: usize = pipes.iter().map(|p| p.flows()).sum();
        let servers: usize = pipes.iter().map(|p| p.servers()).sum();
        let (rpc_setup, rpc_evicted) = self
            .rpc_listeners
            .iter()
            .map(|l| l.setup_connections())
            .fold((0, 0), |(n, e), (n2, e2)| (n + n2, e + e2));
        let mut limits = self.stats.limits.json();
        limits["setupConnections"] = json!(self.http_setup.evicted() + rpc_evicted);
        json!({
            "namespaceRoots": self.namespace.roots(),
            "pipes": pipes.len(),
            "servers": servers,
            "flows": flows,
            "threads": thread_count(),
            "workers": self.workers.threads(),
            "pipesOpened": self.stats.pipes_opened.load(Ordering::Relaxed),
            "errors": self.stats.errors.load(Ordering::Relaxed),
            "settingUp": {"http": self.http_setup.len(), "rpc": rpc_setup},
            "limitsReached": limits,
        })
    }
}

/// Threads in this process (Linux; 0 elsewhere).
fn thread_count() -> usize {
    std::fs::read_dir("/proc/self/task")
        .map(|d| d.count())
        .unwrap_or(0)
}
