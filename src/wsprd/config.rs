//! The daemon's settings ([`Config`]), their defaults and their checks.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::error::{Error, Result};
use crate::security::Principal;
use crate::wsprd::tls::{self, TlsConfig};
use crate::wsprd::token::{self, TokenIssuer};

/// How long a pipe may go without a frame before it is pinged.
pub(crate) const DEFAULT_KEEPALIVE: Duration = Duration::from_secs(30);

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
    /// [`Delegation`](crate::security::Delegation)).
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
            keepalive: DEFAULT_KEEPALIVE,
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
        token::Issuers::load(
            &self.token_issuers,
            &self.token_audiences,
            self.token_leeway,
        )?;
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
pub(crate) fn socket_addr(setting: &str, addr: &str) -> Result<SocketAddr> {
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
