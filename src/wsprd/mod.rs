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
mod config;
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
mod shared;
mod tls;
mod token;
mod ws;

use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use serde_json::Value;

use crate::error::{Error, Result};
use crate::mounttable::{MountTable, MountTableConfig};
use crate::pool::{Pool, PoolConfig};
use crate::rpc::{AllowAll, Client, Listener, Namespace, Server, ServerConfig};
use crate::security::{Delegation, Principal};
use crate::sync::lock;
use crate::wsprd::config::socket_addr;
use crate::wsprd::shared::{Shared, Stats};

pub use builder::DaemonBuilder;
pub use config::Config;
pub use tls::TlsConfig;
pub use token::TokenIssuer;

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
        let tokens = token::Issuers::load(
            &config.token_issuers,
            &config.token_audiences,
            config.token_leeway,
        )?;
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
