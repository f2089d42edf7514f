//! [`DaemonBuilder`]: a daemon set up step by step, and started.

use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::error::Result;
use crate::security::Principal;
use crate::wsprd::{Config, Daemon, Sockets, TlsConfig, TokenIssuer};

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
