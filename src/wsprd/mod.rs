//! The daemon: websocket pipes through which JavaScript calls RPC servers
//! by name and serves servers whose objects live in JavaScript.
//!
//! - `http`: the HTTP listener (Origin check, upgrade, `/health`);
//!   `metrics`: `/metrics`.
//! - `ws`: the websocket layer (tungstenite), `protocol`: the messages.
//! - `pipe`: a pipe's thread and flow table; `controller`: JavaScript's
//!   requests.
//! - `dispatcher`, `invoker`: the server side whose objects live in
//!   JavaScript.
//!
//! Embedding: [`Daemon::builder`] sets the daemon up ([`DaemonBuilder`];
//! or [`Daemon::spawn`] with a whole [`Config`]) and starts everything,
//! returning a handle. [`Daemon::client`] calls by name as the daemon
//! does, [`Daemon::serve`] serves this program's objects on the daemon's
//! RPC listener beside JavaScript's, and [`Daemon::shutdown`] (or
//! dropping it) closes every pipe (1001) and joins every thread.
//!
//! ```
//! use std::sync::Arc;
//! use serde_json::json;
//! use wspr::rpc::{CallOptions, Service};
//! use wspr::wsprd::Daemon;
//!
//! let daemon = Daemon::builder().listen("127.0.0.1:0").spawn()?;
//! assert_eq!(daemon.namespace_roots().len(), 1, "the embedded mount table");
//! let clock = Service::new().method("Now", || Ok(42));
//! let _server = daemon.serve("clock", Arc::new(clock))?;
//! let now = daemon.client().call("clock", "Now", vec![], CallOptions::default())?;
//! assert_eq!(now, vec![json!(42)]);
//! daemon.shutdown();
//! # Ok::<(), wspr::Error>(())
//! ```

mod builder;
mod controller;
mod dispatcher;
mod http;
// (Public to the tests and fuzz targets only.)
#[cfg(feature = "testing")]
#[doc(hidden)]
pub mod identity;
#[cfg(not(feature = "testing"))]
mod identity;
mod invoker;
mod metrics;
mod pipe;
#[cfg(feature = "testing")]
#[doc(hidden)]
pub mod protocol;
#[cfg(not(feature = "testing"))]
mod protocol;
mod tls;
mod token;
mod ws;

use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::error::{Error, Result};
use crate::mounttable::{MountTable, MountTableConfig};
use crate::pool::lock;
use crate::pool::{Pool, PoolConfig};
use crate::rpc::{AllowAll, Client, Listener, Namespace, Server, ServerConfig};
use crate::security::{Delegation, Principal};

pub use builder::DaemonBuilder;

/// TLS for the HTTP listener: a certificate chain and its private key, as
/// PEM files. They are read when the daemon starts and again on
/// [`Daemon::reload_tls`] (`wsprd serve`: SIGHUP).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct TlsConfig {
    /// The certificate chain, the daemon's own certificate first.
    pub cert: std::path::PathBuf,
    /// Its private key (PKCS#8, or SEC1 or PKCS#1).
    pub key: std::path::PathBuf,
}

impl TlsConfig {
    /// The certificate chain in `cert` and its key in `key`.
    pub fn new(cert: impl Into<std::path::PathBuf>, key: impl Into<std::path::PathBuf>) -> Self {
        TlsConfig {
            cert: cert.into(),
            key: key.into(),
        }
    }
}

/// An issuer of tokens (JWTs) whose users pipes may be: its tokens carry
/// `iss` equal to `name`, and are signed by the key in `key_file`.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct TokenIssuer {
    /// Its name: the tokens' `iss`, and the part of its users' blessing
    /// names before the `:` (1 to 64 ASCII letters, digits, `.`, `_`, `-`).
    pub name: String,
    /// Its public key, PEM (`BEGIN PUBLIC KEY`): Ed25519 (EdDSA), ECDSA
    /// P-256 or P-384 (ES256, ES384), or RSA (RS256 to PS512).
    pub key_file: std::path::PathBuf,
}

impl TokenIssuer {
    /// The issuer `name` with its public key in `key_file`.
    pub fn new(name: impl Into<String>, key_file: impl Into<std::path::PathBuf>) -> Self {
        TokenIssuer {
            name: name.into(),
            key_file: key_file.into(),
        }
    }
}

/// Settings of the daemon. Every field has a documented default; see
/// [`Config::validate`].
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Config {
    /// HTTP listen address. Default `127.0.0.1:8124`.
    pub listen: String,
    /// Host that JavaScript-served servers listen on. Default `127.0.0.1`.
    pub rpc_listen: String,
    /// Name space roots; empty: run an embedded mount table. Default empty.
    pub namespace_roots: Vec<String>,
    /// Where the embedded mount table listens. Default `127.0.0.1:0`
    /// (`wsprd serve`: `127.0.0.1:8125`, with `mounttable_fallback`).
    pub mounttable_listen: String,
    /// When `mounttable_listen` is in use, the embedded mount table
    /// listens on a free port of the same host instead, and says so in a
    /// warning. Default false (an address in use is an error).
    pub mounttable_fallback: bool,
    /// Where the embedded mount table keeps its permissions between runs.
    /// Default none: in memory only (the command line picks a directory
    /// per address; see `docs/security.md`).
    pub mounttable_state_dir: Option<std::path::PathBuf>,
    /// Origins allowed besides localhost (`*`: all). Default none.
    pub allowed_origins: Vec<String>,
    /// How long a lookup or authorization waits for JavaScript. Default 10 s.
    pub lookup_timeout: Duration,
    /// Largest websocket message accepted. Default 1 MiB.
    pub max_message_bytes: usize,
    /// Threads that handle JavaScript's requests. Default 16.
    pub workers: usize,
    /// Most workers one pipe's requests may hold at once; its other
    /// requests wait their turn behind its own (up to 256), never behind
    /// other pipes'. Default 4.
    pub max_workers_per_pipe: usize,
    /// Most streaming requests the servers of one pipe may have in flight
    /// at once (each holds one of the RPC server's call threads while it
    /// relays the two streams). Default 32.
    pub max_streams_per_pipe: usize,
    /// Bytes of stream items one pipe's JavaScript may have the daemon
    /// hold over all its flows (items ahead of a call still starting, of a
    /// server that takes no more, of a caller that does not read). Default
    /// 16 MiB.
    pub max_pipe_buffer_bytes: usize,
    /// Let any caller call JavaScript servers that have no authorizer of
    /// their own. Default false: only callers whose blessings equal,
    /// extend or are extended by the server's (see
    /// [`Delegation`]).
    pub open_access: bool,
    /// Also serve the demo object as `demo/adder`. Default false.
    pub serve_demo: bool,
    /// A pipe silent this long is pinged; silent twice, it is closed.
    /// Default 30 s.
    pub keepalive: Duration,
    /// A write to a peer blocked this long fails. Default 10 s.
    pub write_timeout: Duration,
    /// Bytes queued to one pipe before it counts as stuck. Default 16 MiB.
    pub max_queued_bytes: usize,
    /// Most pipes at once; more are answered 503. Default 1024.
    pub max_pipes: usize,
    /// Most connections still setting up at once, on each listener (HTTP
    /// connections that have not sent their request, RPC connections not
    /// through their hello and handshake), counted apart from pipes and
    /// established connections: past it, the oldest of the peer address
    /// holding the most is closed to make room. Default 256.
    pub max_setup_connections: usize,
    /// Most connections still setting up from one peer address, on each
    /// listener: past it, that address's oldest is closed. Default 64.
    pub max_setup_per_address: usize,
    /// Longest a connection may take to send its HTTP request, or to get
    /// through its RPC hello and handshake. Default 5 s.
    pub setup_timeout: Duration,
    /// Most flows in flight on one pipe: JavaScript's calls and requests,
    /// and the lookups and requests the daemon has sent it. Default 1024.
    pub max_flows_per_pipe: usize,
    /// Most servers one pipe may serve. Default 64.
    pub max_servers_per_pipe: usize,
    /// Most names one server may be mounted under. Default 32.
    pub max_names_per_server: usize,
    /// Bytes of stream items JavaScript may send on one flow ahead of the
    /// reader (a call still starting, a server that does not take them, a
    /// caller that does not read). Default 1 MiB.
    pub max_stream_buffer_bytes: usize,
    /// TTL of the names servers mount. Default 60 s.
    pub mount_ttl: Duration,
    /// Idle worker and call threads retire after this. Default 10 s.
    pub idle_thread_timeout: Duration,
    /// Who the daemon is. Default: a new principal self-blessed `wsprd`
    /// (the command line loads `--credentials`).
    pub principal: Option<Arc<Principal>>,
    /// Serve `https://` and `wss://` with this certificate. Default none:
    /// plain `http://` and `ws://`.
    pub tls: Option<TlsConfig>,
    /// Listen on an address other than loopback without TLS (pages and
    /// their users' tokens then cross the network in the clear; a warning
    /// is logged). Default false: such a `listen` is refused unless `tls`
    /// is set.
    pub insecure_listen: bool,
    /// Issuers whose tokens make a pipe its user's. Default none.
    pub token_issuers: Vec<TokenIssuer>,
    /// What a token's `aud` must hold one of (needed with issuers): the
    /// audience the issuers name this daemon by, such as its URL. Default
    /// none.
    pub token_audiences: Vec<String>,
    /// Every pipe must present a token first (within `setup_timeout`), or
    /// it is closed (1008). Default false: a pipe without a token is
    /// `<daemon>/<origin>`, as with no issuers.
    pub require_token: bool,
    /// How far a token's `nbf` may be ahead of this clock (clocks that
    /// differ). `exp` is kept to the millisecond: the pipe's blessing ends
    /// there. Default 30 s; at most 5 minutes.
    pub token_leeway: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: "127.0.0.1:8124".into(),
            rpc_listen: "127.0.0.1".into(),
            namespace_roots: vec![],
            mounttable_listen: "127.0.0.1:0".into(),
            mounttable_fallback: false,
            mounttable_state_dir: None,
            allowed_origins: vec![],
            lookup_timeout: Duration::from_secs(10),
            max_message_bytes: 1 << 20,
            workers: 16,
            max_workers_per_pipe: 4,
            max_streams_per_pipe: 32,
            max_pipe_buffer_bytes: 16 << 20,
            open_access: false,
            serve_demo: false,
            keepalive: pipe::DEFAULT_KEEPALIVE,
            write_timeout: Duration::from_secs(10),
            max_queued_bytes: 16 << 20,
            max_pipes: 1024,
            max_setup_connections: crate::admission::DEFAULT_MAX,
            max_setup_per_address: crate::admission::DEFAULT_PER_ADDRESS,
            setup_timeout: Duration::from_secs(5),
            max_flows_per_pipe: 1024,
            max_servers_per_pipe: 64,
            max_names_per_server: 32,
            max_stream_buffer_bytes: 1 << 20,
            mount_ttl: Duration::from_secs(60),
            idle_thread_timeout: Duration::from_secs(10),
            principal: None,
            tls: None,
            insecure_listen: false,
            token_issuers: vec![],
            token_audiences: vec![],
            require_token: false,
            token_leeway: Duration::from_secs(30),
        }
    }
}

impl Config {
    /// Checks that the settings make sense.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: &str| Err(Error::bad_arg(m.to_string()));
        if self.workers == 0 || self.max_workers_per_pipe == 0 {
            return bad("workers and max_workers_per_pipe must be at least 1");
        }
        if self.max_streams_per_pipe == 0 {
            return bad("max_streams_per_pipe must be at least 1");
        }
        if self.max_pipe_buffer_bytes < self.max_stream_buffer_bytes {
            return bad("max_pipe_buffer_bytes must be at least max_stream_buffer_bytes");
        }
        if self.max_message_bytes < 1024 {
            return bad("max_message_bytes must be at least 1024");
        }
        if self.max_setup_connections == 0 || self.max_setup_per_address == 0 {
            return bad("max_setup_connections and max_setup_per_address must be positive");
        }
        if self.lookup_timeout.is_zero()
            || self.write_timeout.is_zero()
            || self.setup_timeout.is_zero()
        {
            return bad("timeouts must be positive");
        }
        if self.keepalive < Duration::from_millis(100) {
            return bad("keepalive must be at least 100 ms");
        }
        if self.max_flows_per_pipe == 0
            || self.max_servers_per_pipe == 0
            || self.max_names_per_server == 0
            || self.max_stream_buffer_bytes < 1024
        {
            return bad("the per-pipe limits must be positive (stream buffer at least 1024 bytes)");
        }
        if self.max_pipes == 0 || self.max_queued_bytes < self.max_message_bytes {
            return bad(
                "max_pipes must be positive and max_queued_bytes at least max_message_bytes",
            );
        }
        if self.mount_ttl < Duration::from_secs(1) {
            return bad("mount_ttl must be at least 1 s");
        }
        let listen = socket_addr("the HTTP address (listen)", &self.listen)?;
        if !listen.ip().is_loopback() && self.tls.is_none() && !self.insecure_listen {
            return Err(Error::bad_arg(format!(
                "listening on {} ({}) without TLS would let anyone on the network read and change what pages send, tokens included: give a certificate (--tls-cert, --tls-key), or --insecure-listen if that is meant",
                self.listen,
                listen.ip()
            )));
        }
        let names: Vec<&str> = self.token_issuers.iter().map(|i| i.name.as_str()).collect();
        token::check_issuers(&names)?;
        if self.require_token && self.token_issuers.is_empty() {
            return bad("require_token needs at least one token issuer (--token-issuer)");
        }
        if !self.token_issuers.is_empty() && self.token_audiences.is_empty() {
            return bad(
                "token issuers need the audience their tokens name this daemon by (--token-audience, such as its https URL)",
            );
        }
        if self.token_issuers.is_empty() && !self.token_audiences.is_empty() {
            return bad("a token audience without a token issuer (--token-issuer)");
        }
        if self.token_audiences.iter().any(|a| a.is_empty()) {
            return bad("a token audience must not be empty");
        }
        if self.token_leeway > Duration::from_secs(300) {
            return bad("token_leeway must be at most 5 minutes");
        }
        // The files: readable, and what they should be.
        if let Some(files) = &self.tls {
            tls::Tls::new(files)?;
        }
        token::Issuers::load(self)?;
        socket_addr(
            "the host of JavaScript's servers (rpc_listen)",
            &format!("{}:0", self.rpc_listen),
        )
        .map_err(|_| {
            Error::bad_arg(format!(
                "the host of JavaScript's servers (rpc_listen) {:?} is not a host to listen on; give one such as 127.0.0.1",
                self.rpc_listen
            ))
        })?;
        if self.namespace_roots.is_empty() {
            socket_addr(
                "the mount table's address (mounttable_listen)",
                &self.mounttable_listen,
            )?;
        }
        for r in &self.namespace_roots {
            if !r.starts_with('/') {
                return Err(Error::bad_arg(format!(
                    "namespace root {r:?} must be a rooted name such as /127.0.0.1:8125"
                )));
            }
            crate::naming::Name::parse(r)?;
        }
        Ok(())
    }
}

/// The socket address `addr` names, or a `BadArg` naming the setting.
fn socket_addr(setting: &str, addr: &str) -> Result<SocketAddr> {
    use std::net::ToSocketAddrs;
    addr.to_socket_addrs()
        .map_err(|e| {
            Error::bad_arg(format!(
                "{setting} {addr:?} is not an address to listen on ({e}); give HOST:PORT such as 127.0.0.1:8124"
            ))
        })?
        .next()
        .ok_or_else(|| Error::bad_arg(format!("{setting} {addr:?} resolves to no address")))
}

/// The embedded mount table on `tcp` if given, else on
/// `config.mounttable_listen`, or on a free port of the same host if that
/// is in use and `mounttable_fallback` is set.
fn embedded_mount_table(
    config: &Config,
    client: &Client,
    server: &ServerConfig,
    tcp: Option<TcpListener>,
) -> Result<Server> {
    let listen = |addr: &str, table: MountTable| {
        Server::listen_mount_table(addr, Arc::new(table), client.clone(), server.clone())
    };
    let table = match &config.mounttable_state_dir {
        Some(dir) => MountTable::with_state(MountTableConfig::default(), dir)?,
        None => MountTable::new(MountTableConfig::default()),
    };
    if let Some(tcp) = tcp {
        let listener = Listener::from_tcp(tcp, server.clone(), client.clone())?;
        return Server::on_own(listener, |l| l.serve_mount_table(Arc::new(table)));
    }
    match listen(&config.mounttable_listen, table) {
        Err(e) if config.mounttable_fallback && e.is(crate::error::ids::EXISTS) => {
            let mut free = socket_addr("mounttable_listen", &config.mounttable_listen)?;
            free.set_port(0);
            // The state belongs to the table at the address asked for (the
            // one running there, most likely): a table elsewhere is a new
            // one, and keeps its permissions in memory.
            let mt = listen(
                &free.to_string(),
                MountTable::new(MountTableConfig::default()),
            )?;
            log::warn!(
                "the mount table {}; it listens on {} instead (its permissions in memory only), so tools need --namespace-root {}",
                e.msg(),
                mt.listener().local_addr(),
                mt.name()
            );
            Ok(mt)
        }
        r => r,
    }
}

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
    pub pipes: Mutex<HashMap<u64, Arc<pipe::Pipe>>>,
    /// Set (with `pipes` locked) when the daemon stops: a pipe that
    /// registers after that closes itself.
    pub closing: AtomicBool,
    /// Lookup timeouts (of calls that no thread waits on).
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
    fn pipe_list(&self) -> Vec<Arc<pipe::Pipe>> {
        lock(&self.pipes).values().cloned().collect()
    }

    fn health(&self) -> Value {
        let pipes = self.pipe_list();
        let flows: usize = pipes.iter().map(|p| p.flow_count()).sum();
        let servers: usize = pipes.iter().map(|p| lock(&p.servers).len()).sum();
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

/// A running daemon. Dropping it shuts it down.
///
/// [`Daemon::builder`] sets it up and starts it; [`Daemon::client`] calls
/// by name as the daemon does, and [`Daemon::serve`] serves objects of
/// this program beside JavaScript's.
pub struct Daemon {
    shared: Arc<Shared>,
    http: Option<http::Http>,
    mount_table: Option<Server>,
    demo: Option<Server>,
    /// The daemon's own client (its principal, its name space): mounts
    /// the names of the servers on its listeners.
    client: Client,
}

/// Sockets bound already, handed to the daemon (see [`DaemonBuilder`]).
#[derive(Default)]
pub(crate) struct Sockets {
    pub http: Option<TcpListener>,
    pub rpc: Option<TcpListener>,
    pub mount_table: Option<TcpListener>,
}

impl Daemon {
    /// A daemon to set up: see [`DaemonBuilder`].
    pub fn builder() -> DaemonBuilder {
        DaemonBuilder::default()
    }

    /// Starts the daemon with `config` (as
    /// `Daemon::builder().config(config).spawn()`): the embedded mount
    /// table (unless roots are given), the RPC listener for JavaScript
    /// servers, the worker pool and the HTTP listener.
    pub fn spawn(config: Config) -> Result<Daemon> {
        Daemon::builder().config(config).spawn()
    }

    pub(crate) fn start(config: Config, sockets: Sockets) -> Result<Daemon> {
        config.validate()?;
        // The files next, and the HTTP address: a daemon that cannot have
        // them starts nothing else.
        let tls = config.tls.as_ref().map(tls::Tls::new).transpose()?;
        let tokens = token::Issuers::load(&config)?;
        let http_listener = match sockets.http {
            Some(l) => {
                l.set_nonblocking(false).map_err(|e| {
                    Error::internal(format!("the HTTP listener's socket: {e}")).with_source(e)
                })?;
                l
            }
            None => http::bind(&config.listen)?,
        };
        let principal = match &config.principal {
            Some(p) => p.clone(),
            None => Arc::new(Principal::new_self_blessed("wsprd")?),
        };
        let namespace = Namespace::new(config.namespace_roots.clone());
        let client =
            Client::with_principal(namespace.clone(), principal.clone(), Default::default());
        let default_authorizer: Arc<dyn crate::rpc::Authorizer> = if config.open_access {
            Arc::new(AllowAll)
        } else {
            Arc::new(Delegation)
        };
        let server_config = ServerConfig {
            mount_ttl: config.mount_ttl,
            write_timeout: config.write_timeout,
            handshake_timeout: config.setup_timeout,
            max_setup_connections: config.max_setup_connections,
            max_setup_per_address: config.max_setup_per_address,
            pool: PoolConfig {
                idle_timeout: config.idle_thread_timeout,
                ..PoolConfig::default()
            },
            default_authorizer,
            ..Default::default()
        };
        let mount_table = if config.namespace_roots.is_empty() {
            let mt = embedded_mount_table(&config, &client, &server_config, sockets.mount_table)?;
            namespace.set_roots(vec![mt.name()]);
            Some(mt)
        } else {
            None
        };
        let listener = match sockets.rpc {
            Some(tcp) => Listener::from_tcp(tcp, server_config, client.clone())?,
            None => Listener::bind(
                &format!("{}:0", config.rpc_listen),
                server_config,
                client.clone(),
            )?,
        };
        let demo = if config.serve_demo {
            let s = listener.serve(Arc::new(crate::demo::Demo))?;
            s.add_name("demo/adder")?;
            Some(s)
        } else {
            None
        };
        let pool = PoolConfig {
            max_threads: config.workers,
            max_queued: 4096,
            idle_timeout: config.idle_thread_timeout,
            ..PoolConfig::default()
        };
        let rpc_listeners = std::iter::once(listener.clone())
            .chain(mount_table.as_ref().map(|m| m.listener().clone()))
            .collect();
        let shared = Arc::new(Shared {
            tls,
            tokens,
            principal,
            workers: Pool::new("wsprd-worker", pool),
            namespace,
            listener,
            signatures: Mutex::new(HashMap::new()),
            pipes: Mutex::new(HashMap::new()),
            closing: AtomicBool::new(false),
            timer: crate::timer::Timer::new("wsprd-timer"),
            open_pipes: std::sync::atomic::AtomicUsize::new(0),
            http_setup: crate::admission::Admission::new(
                "HTTP",
                config.max_setup_connections,
                config.max_setup_per_address,
            ),
            rpc_listeners,
            stats: Stats::default(),
            calls: metrics::CallMetrics::default(),
            config,
        });
        let http = http::Http::start(shared.clone(), http_listener)?;
        let scheme = if shared.tls.is_some() {
            "https"
        } else {
            "http"
        };
        log::info!(
            "wsprd listening on {scheme}://{} (websocket at /ws), name space root {}, principal {}",
            http.local_addr(),
            shared.namespace.roots().join(", "),
            shared.principal.names().join(", ")
        );
        let local = http.local_addr();
        if shared.tls.is_none() && !local.ip().is_loopback() {
            log::warn!(
                "listening on {local} without TLS (--insecure-listen): pages on other hosts, and their tokens, cross the network in the clear"
            );
        }
        if shared.tokens.is_some() && !shared.config.require_token {
            log::warn!(
                "pipes without a token are {}/<origin>, which the default rule lets reach every user's pages of that origin: give --require-token on a server for pages on the internet",
                shared
                    .principal
                    .names()
                    .first()
                    .map_or("<daemon>", |s| s.as_str())
            );
        }
        Ok(Daemon {
            shared,
            http: Some(http),
            mount_table,
            demo,
            client,
        })
    }

    /// A client that is who the daemon is and resolves names in its name
    /// space (a clone of the daemon's own: it shares its connections). It
    /// reaches the servers of the daemon's pages, whose default policy
    /// admits the daemon's principal, and the objects of
    /// [`Daemon::serve`].
    pub fn client(&self) -> Client {
        self.client.clone()
    }

    /// Serves `dispatcher` (a [`Service`](crate::rpc::Service), or any
    /// [`Dispatcher`](crate::rpc::Dispatcher)) on the daemon's RPC
    /// listener, the one JavaScript's servers share, and mounts it under
    /// `name` (none if empty) in the daemon's name space. It is who the
    /// daemon is, and admits callers by the daemon's default policy (the
    /// [`Delegation`] rule: the daemon's pages and its own principal; with
    /// `open_access`, anyone) unless its lookup gives an authorizer of its
    /// own. Dropping the server (or [`Server::stop`]) stops it; the
    /// daemon's shutdown stops it too.
    pub fn serve(&self, name: &str, dispatcher: Arc<dyn crate::rpc::Dispatcher>) -> Result<Server> {
        if self.http.is_none() {
            return Err(Error::aborted("the daemon has stopped"));
        }
        let server = self.shared.listener.serve(dispatcher)?;
        if !name.is_empty() {
            server.add_name(name)?;
        }
        Ok(server)
    }

    /// Where the daemon's RPC listener (JavaScript's servers, and
    /// [`Daemon::serve`]'s) is bound.
    pub fn rpc_addr(&self) -> SocketAddr {
        self.shared.listener.local_addr()
    }

    /// Whether the HTTP listener speaks TLS (`https://`, `wss://`).
    pub fn uses_tls(&self) -> bool {
        self.shared.tls.is_some()
    }

    /// Reads the TLS certificate and key again (`wsprd serve`: SIGHUP):
    /// connections from now on get the new certificate. If they cannot be
    /// used, the certificate in use stays, and the error says why (it is
    /// logged too). `BadArg` without TLS.
    pub fn reload_tls(&self) -> Result<()> {
        let Some(tls) = &self.shared.tls else {
            return Err(Error::bad_arg(
                "the daemon has no TLS certificate to reload",
            ));
        };
        match tls.reload() {
            Ok(()) => {
                log::info!("TLS certificate reloaded");
                Ok(())
            }
            Err(e) => {
                log::error!(
                    "TLS certificate not reloaded, the one in use stays: {}",
                    e.msg()
                );
                Err(e)
            }
        }
    }

    /// Where the HTTP listener is bound.
    pub fn http_addr(&self) -> SocketAddr {
        self.http
            .as_ref()
            .map(|h| h.local_addr())
            .unwrap_or_else(|| ([0, 0, 0, 0], 0).into())
    }

    /// Who the daemon is: it blesses every pipe's principal.
    pub fn principal(&self) -> &Arc<Principal> {
        &self.shared.principal
    }

    /// The name space roots the daemon uses.
    pub fn namespace_roots(&self) -> Vec<String> {
        self.shared.namespace.roots()
    }

    /// What `GET /health` answers.
    pub fn health(&self) -> Value {
        self.shared.health()
    }

    /// Closes every pipe (close code 1001), unmounts their servers, and
    /// joins every thread the daemon started.
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        let Some(http) = self.http.take() else { return };
        http.stop_accepting();
        let pipes = {
            let pipes = lock(&self.shared.pipes);
            self.shared.closing.store(true, Ordering::SeqCst);
            pipes.values().cloned().collect::<Vec<_>>()
        };
        for p in &pipes {
            p.close(1001, "the daemon is shutting down");
        }
        drop(pipes);
        http.join();
        self.shared.workers.shutdown();
        self.shared.timer.shutdown();
        if let Some(d) = self.demo.take() {
            d.stop();
        }
        self.shared.listener.close();
        if let Some(mt) = self.mount_table.take() {
            mt.stop();
        }
        log::info!("wsprd stopped");
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.stop();
    }
}
