//! The daemon: [`Daemon`], started from a [`Config`] or set up step by
//! step with a [`DaemonBuilder`]; it runs the embedded mount table (unless
//! given roots), the RPC listener of JavaScript's servers, the workers,
//! the timer and the HTTP listener.

use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;

use crate::error::{Error, Result};
use crate::mounttable::{MountTable, MountTableConfig};
use crate::pool::{Pool, PoolConfig};
use crate::rpc::{AllowAll, Client, ClientConfig, Listener, Namespace, Server, ServerConfig};
use crate::security::{Delegation, Principal};
use crate::sync::lock;
use crate::wsprd::config::{Config, socket_addr};
use crate::wsprd::shared::{Shared, Stats};
use crate::wsprd::tls::TlsConfig;
use crate::wsprd::token::TokenIssuer;
use crate::wsprd::{http, metrics, tls, token};

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
        // One timer for the daemon: its pipes' calls, its listeners' calls
        // answered later, its lookups waiting for JavaScript.
        let timer = crate::timer::Timer::new("wsprd-timer");
        let client = Client::with_principal(
            namespace.clone(),
            principal.clone(),
            ClientConfig {
                timer: Some(timer.clone()),
                ..Default::default()
            },
        );
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
            timer: Some(timer.clone()),
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
            timer,
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
                "pipes without a token are {}/<origin>/anonymous, one principal shared by every tokenless page of that origin: give --require-token on a server for pages on the internet",
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

    /// Reads the token issuers' public keys again (`wsprd serve`:
    /// SIGHUP), for an issuer that rotated its key: tokens presented from
    /// now on are checked against the new keys. All or nothing: if one
    /// key file cannot be used, the keys in use stay, and the error says
    /// which (it is logged too). A pipe that already proved a token keeps
    /// its user until the token's `exp`. `BadArg` without token issuers.
    pub fn reload_token_keys(&self) -> Result<()> {
        let Some(tokens) = &self.shared.tokens else {
            return Err(Error::bad_arg("the daemon trusts no token issuer"));
        };
        match tokens.reload() {
            Ok(()) => {
                log::info!("token issuers' keys reloaded");
                Ok(())
            }
            Err(e) => {
                log::error!(
                    "token issuers' keys not reloaded, the ones in use stay: {}",
                    e.msg()
                );
                Err(e)
            }
        }
    }

    /// Whether the daemon trusts token issuers (`--token-issuer`).
    pub fn uses_tokens(&self) -> bool {
        self.shared.tokens.is_some()
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
        if let Some(d) = self.demo.take() {
            d.stop();
        }
        self.shared.listener.close();
        if let Some(mt) = self.mount_table.take() {
            mt.stop();
        }
        // Last: the listeners and the mount table's server used it.
        self.shared.timer.shutdown();
        log::info!("wsprd stopped");
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Sets up a [`Daemon`] (from [`Daemon::builder`]) and starts it with
/// [`spawn`](DaemonBuilder::spawn). What it is not told is as
/// [`Config::default`] says: HTTP on `127.0.0.1:8124`, an embedded mount
/// table on a free port of `127.0.0.1`, a new principal of its own
/// (self-blessed `wsprd`), the [`Delegation`](crate::security::Delegation)
/// rule for JavaScript's servers.
///
/// Every setting of [`Config`] has a method here, or is reached through
/// [`DaemonBuilder::config`]; sockets bound already are handed over with
/// [`http_listener`](DaemonBuilder::http_listener),
/// [`rpc_listener`](DaemonBuilder::rpc_listener) and
/// [`mount_table_listener`](DaemonBuilder::mount_table_listener).
///
/// ```
/// use std::net::TcpListener;
/// use wspr::wsprd::Daemon;
///
/// // A socket bound first (by a test, or handed over by a service manager).
/// let http = TcpListener::bind("127.0.0.1:0")?;
/// let addr = http.local_addr()?;
/// let daemon = Daemon::builder()
///     .http_listener(http)
///     .allow_origin("https://app.example")
///     .demo()
///     .spawn()?;
/// assert_eq!(daemon.http_addr(), addr);
/// daemon.shutdown();
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Default)]
#[must_use = "a builder does nothing until spawned"]
pub struct DaemonBuilder {
    config: Config,
    sockets: Sockets,
    credentials: Option<PathBuf>,
    /// Roots as given to [`DaemonBuilder::namespace_roots`] (rooted on
    /// spawn).
    roots: Option<Vec<String>>,
}

impl DaemonBuilder {
    /// Every setting from `config`, replacing the settings made before
    /// (so it comes first); the sockets handed over and the credentials
    /// directory stay.
    pub fn config(mut self, config: Config) -> DaemonBuilder {
        self.config = config;
        self.roots = None;
        self
    }

    /// Serves HTTP and the websocket on `addr` (`host:port`; port 0 picks
    /// one, which [`Daemon::http_addr`] tells). Default `127.0.0.1:8124`.
    pub fn listen(mut self, addr: impl Into<String>) -> DaemonBuilder {
        self.config.listen = addr.into();
        self
    }

    /// Serves HTTP and the websocket on `listener`, bound already (instead
    /// of [`listen`](DaemonBuilder::listen)'s address).
    pub fn http_listener(mut self, listener: TcpListener) -> DaemonBuilder {
        self.sockets.http = Some(listener);
        self
    }

    /// The host the RPC listener binds (on a free port): JavaScript's
    /// servers, and the objects of [`Daemon::serve`]. Default `127.0.0.1`.
    pub fn rpc_listen(mut self, host: impl Into<String>) -> DaemonBuilder {
        self.config.rpc_listen = host.into();
        self
    }

    /// The RPC listener on `listener`, bound already (instead of
    /// [`rpc_listen`](DaemonBuilder::rpc_listen)'s host). Its address is
    /// in the endpoints of the servers on it: other hosts reach them there.
    pub fn rpc_listener(mut self, listener: TcpListener) -> DaemonBuilder {
        self.sockets.rpc = Some(listener);
        self
    }

    /// Resolves names through these mount tables (rooted names, such as
    /// `/127.0.0.1:8125`, or their addresses, `127.0.0.1:8125`; see
    /// [`root_name`](crate::rpc::root_name)) instead of running one of its
    /// own.
    pub fn namespace_roots<I, S>(mut self, roots: I) -> DaemonBuilder
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.roots = Some(roots.into_iter().map(Into::into).collect());
        self
    }

    /// Runs the embedded mount table on `addr`. Default `127.0.0.1:0`.
    pub fn mount_table_listen(mut self, addr: impl Into<String>) -> DaemonBuilder {
        self.config.mounttable_listen = addr.into();
        self
    }

    /// Runs the embedded mount table on `listener`, bound already.
    pub fn mount_table_listener(mut self, listener: TcpListener) -> DaemonBuilder {
        self.sockets.mount_table = Some(listener);
        self
    }

    /// Keeps the embedded mount table's permissions (who owns which name)
    /// in `dir` between runs. Default: in memory only.
    pub fn mount_table_state_dir(mut self, dir: impl Into<PathBuf>) -> DaemonBuilder {
        self.config.mounttable_state_dir = Some(dir.into());
        self
    }

    /// Admits pages of `origin` (such as `https://app.example`; `*`: every
    /// origin) besides localhost's.
    pub fn allow_origin(mut self, origin: impl Into<String>) -> DaemonBuilder {
        self.config.allowed_origins.push(origin.into());
        self
    }

    /// Is `principal`: it blesses every page's principal, and is who
    /// [`Daemon::client`] and [`Daemon::serve`]'s servers are.
    pub fn principal(mut self, principal: Arc<Principal>) -> DaemonBuilder {
        self.config.principal = Some(principal);
        self.credentials = None;
        self
    }

    /// Is the principal in the credentials directory `dir`, created there
    /// on [`spawn`](DaemonBuilder::spawn) if the directory has none (as
    /// `wsprd serve --credentials`). The user's own is
    /// [`Principal::default_dir`]: with it, the user's tools (and
    /// [`Client::from_env`](crate::rpc::Client::from_env)) are who the
    /// daemon is.
    pub fn credentials(mut self, dir: impl Into<PathBuf>) -> DaemonBuilder {
        self.credentials = Some(dir.into());
        self
    }

    /// Lets any caller call the servers (of JavaScript, and of
    /// [`Daemon::serve`]) that have no authorizer of their own. Default:
    /// only callers whose blessings equal, extend or are extended by the
    /// server's.
    pub fn open_access(mut self) -> DaemonBuilder {
        self.config.open_access = true;
        self
    }

    /// Also serves the demo object as `demo/adder`.
    pub fn demo(mut self) -> DaemonBuilder {
        self.config.serve_demo = true;
        self
    }

    /// How long a lookup or an authorization waits for JavaScript. Default
    /// 10 s.
    pub fn lookup_timeout(mut self, timeout: Duration) -> DaemonBuilder {
        self.config.lookup_timeout = timeout;
        self
    }

    /// Most pipes at once. Default 1024.
    pub fn max_pipes(mut self, n: usize) -> DaemonBuilder {
        self.config.max_pipes = n;
        self
    }

    /// Threads that handle JavaScript's requests. Default 16.
    pub fn workers(mut self, n: usize) -> DaemonBuilder {
        self.config.workers = n;
        self
    }

    /// TTL of the names servers mount. Default 60 s.
    pub fn mount_ttl(mut self, ttl: Duration) -> DaemonBuilder {
        self.config.mount_ttl = ttl;
        self
    }

    /// Serves `https://` and `wss://` with the certificate chain in `cert`
    /// and its key in `key` (PEM; [`Daemon::reload_tls`] reads them
    /// again). Default: plain `http://` and `ws://`.
    pub fn tls(mut self, cert: impl Into<PathBuf>, key: impl Into<PathBuf>) -> DaemonBuilder {
        self.config.tls = Some(TlsConfig::new(cert, key));
        self
    }

    /// Trusts the tokens of issuer `name` (their `iss`), signed by the
    /// public key in `key_file` (PEM): a page presenting one is its user,
    /// `<daemon>/<origin>/<name>:<subject>`. Needs
    /// [`token_audience`](DaemonBuilder::token_audience).
    pub fn token_issuer(
        mut self,
        name: impl Into<String>,
        key_file: impl Into<PathBuf>,
    ) -> DaemonBuilder {
        self.config
            .token_issuers
            .push(TokenIssuer::new(name, key_file));
        self
    }

    /// An audience a token must name (`aud`), such as the daemon's URL.
    pub fn token_audience(mut self, audience: impl Into<String>) -> DaemonBuilder {
        self.config.token_audiences.push(audience.into());
        self
    }

    /// Closes every pipe that does not present a token first.
    pub fn require_token(mut self) -> DaemonBuilder {
        self.config.require_token = true;
        self
    }

    /// Checks the settings ([`Config::validate`]), loads (or creates) the
    /// credentials, and starts the daemon: the embedded mount table
    /// (unless roots were given), the RPC listener, the worker pool and
    /// the HTTP listener. Nothing is bound or started if a setting is
    /// wrong.
    pub fn spawn(self) -> Result<Daemon> {
        let DaemonBuilder {
            mut config,
            sockets,
            credentials,
            roots,
        } = self;
        if let Some(roots) = roots {
            config.namespace_roots = roots
                .iter()
                .map(|r| crate::rpc::root_name(r))
                .collect::<Result<_>>()?;
        }
        config.validate()?;
        if let Some(dir) = credentials {
            config.principal = Some(Arc::new(Principal::load_or_create(
                &dir,
                &Principal::default_name(),
            )?));
        }
        Daemon::start(config, sockets)
    }
}
