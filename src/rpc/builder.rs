//! [`ClientBuilder`]: a client with the name space and the credentials
//! the command line's tools use, unless told otherwise.

use std::path::PathBuf;
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::naming::Name;
use crate::rpc::{Client, ClientConfig, Namespace};
use crate::security::Principal;

/// The name space root the tools use when given none: the mount table
/// that `wsprd serve` runs.
pub const DEFAULT_ROOT: &str = "/127.0.0.1:8125";

/// The environment variable that gives the name space roots
/// (comma-separated), as for the command line's tools.
pub const NAMESPACE_ROOT_ENV: &str = "WSPR_NAMESPACE_ROOT";

/// `root` as the rooted name of a mount table: `127.0.0.1:8125` is taken
/// as `/127.0.0.1:8125`; anything that names no server is `BadArg`.
///
/// ```
/// assert_eq!(wspr::rpc::root_name("127.0.0.1:8125")?, "/127.0.0.1:8125");
/// assert!(wspr::rpc::root_name("demo").is_err());
/// # Ok::<(), wspr::Error>(())
/// ```
pub fn root_name(root: &str) -> Result<String> {
    rooted(root, "")
}

fn rooted(root: &str, whence: &str) -> Result<String> {
    let r = if root.starts_with('/') {
        root.to_string()
    } else {
        format!("/{root}")
    };
    match Name::parse(&r) {
        Ok(n) if n.endpoint().is_some() => Ok(r),
        Ok(_) | Err(_) => Err(Error::bad_arg(format!(
            "namespace root {root:?}{whence} is not the address of a mount table; give one such as {DEFAULT_ROOT}"
        ))),
    }
}

/// The roots [`NAMESPACE_ROOT_ENV`] gives, rooted (see [`root_name`]);
/// `None` when it is unset or blank.
pub fn env_roots() -> Result<Option<Vec<String>>> {
    match std::env::var(NAMESPACE_ROOT_ENV) {
        Ok(v) if !v.trim().is_empty() => v
            .split(',')
            .map(|s| rooted(s.trim(), &format!(" (from {NAMESPACE_ROOT_ENV})")))
            .collect::<Result<Vec<_>>>()
            .map(Some),
        _ => Ok(None),
    }
}

/// Where a client's name space comes from.
enum Roots {
    /// [`env_roots`], else [`DEFAULT_ROOT`].
    Env,
    Given(Vec<String>),
    Namespace(Arc<Namespace>),
}

/// Who a client is.
enum Identity {
    /// The user's credentials directory ([`Principal::default_dir`]).
    User,
    Dir(PathBuf),
    Principal(Arc<Principal>),
    Anonymous,
}

/// Builds a [`Client`] (from [`Client::builder`]). What it is not told is
/// as the command line's tools do:
///
/// - the name space roots of [`NAMESPACE_ROOT_ENV`], else
///   [`DEFAULT_ROOT`];
/// - the user's principal, in [`Principal::default_dir`]
///   (`WSPR_CREDENTIALS`, else `$XDG_CONFIG_HOME/wspr/credentials`, else
///   `~/.config/wspr/credentials`), created there on first use, self-blessed
///   with [`Principal::default_name`];
/// - [`ClientConfig::default`].
///
/// With the same credentials as `wsprd serve`, the client is who the
/// daemon is: servers of the daemon's pages admit it under their default
/// policy (see `docs/security.md`).
///
/// ```
/// # let dir = std::env::temp_dir().join(format!("wspr-doc-builder-{}", std::process::id()));
/// use wspr::rpc::Client;
/// let client = Client::builder()
///     .namespace_roots(["127.0.0.1:8125"])
///     .credentials(&dir) // created with a new principal if empty
///     .build()?;
/// assert_eq!(client.namespace().roots(), vec!["/127.0.0.1:8125"]);
/// // Loaded again, the same principal.
/// let again = Client::builder().credentials(&dir).build()?;
/// assert_eq!(again.principal().public_key(), client.principal().public_key());
/// # std::fs::remove_dir_all(&dir).unwrap();
/// # Ok::<(), wspr::Error>(())
/// ```
#[must_use = "a builder does nothing until built"]
pub struct ClientBuilder {
    roots: Roots,
    identity: Identity,
    config: ClientConfig,
}

impl Default for ClientBuilder {
    fn default() -> Self {
        ClientBuilder {
            roots: Roots::Env,
            identity: Identity::User,
            config: ClientConfig::default(),
        }
    }
}

impl ClientBuilder {
    /// Resolves names from these roots: rooted names of mount tables, or
    /// their addresses (`127.0.0.1:8125`). None: only rooted names (such
    /// as a server's own, `/127.0.0.1:43127`) can be called.
    pub fn namespace_roots<I, S>(mut self, roots: I) -> ClientBuilder
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.roots = Roots::Given(roots.into_iter().map(Into::into).collect());
        self
    }

    /// Resolves names through `namespace` (shared with other clients: its
    /// roots and its cache).
    pub fn namespace(mut self, namespace: Arc<Namespace>) -> ClientBuilder {
        self.roots = Roots::Namespace(namespace);
        self
    }

    /// Authenticates as the principal in the credentials directory `dir`
    /// (as `--credentials`), created there if the directory has none.
    pub fn credentials(mut self, dir: impl Into<PathBuf>) -> ClientBuilder {
        self.identity = Identity::Dir(dir.into());
        self
    }

    /// Authenticates as `principal`.
    pub fn principal(mut self, principal: Arc<Principal>) -> ClientBuilder {
        self.identity = Identity::Principal(principal);
        self
    }

    /// Authenticates as a new principal of its own, self-blessed
    /// `anonymous` and trusted by nobody else (as [`Client::new`]); no
    /// file is read or written.
    pub fn anonymous(mut self) -> ClientBuilder {
        self.identity = Identity::Anonymous;
        self
    }

    /// These settings.
    pub fn config(mut self, config: ClientConfig) -> ClientBuilder {
        self.config = config;
        self
    }

    /// The client: `BadArg` for a root or a setting that is not one, or
    /// the error loading (or creating) the credentials (see
    /// [`Principal::load_or_create`]).
    pub fn build(self) -> Result<Client> {
        self.config.validate()?;
        let namespace = match self.roots {
            Roots::Namespace(ns) => ns,
            Roots::Given(roots) => {
                Namespace::new(roots.iter().map(|r| root_name(r)).collect::<Result<_>>()?)
            }
            Roots::Env => {
                Namespace::new(env_roots()?.unwrap_or_else(|| vec![DEFAULT_ROOT.to_string()]))
            }
        };
        let load = |dir: PathBuf| -> Result<Arc<Principal>> {
            Principal::load_or_create(&dir, &Principal::default_name()).map(Arc::new)
        };
        let principal = match self.identity {
            Identity::Principal(p) => p,
            Identity::Dir(dir) => load(dir)?,
            Identity::User => load(Principal::default_dir())?,
            Identity::Anonymous => Arc::new(Principal::new_self_blessed("anonymous")?),
        };
        Ok(Client::with_principal(namespace, principal, self.config))
    }
}
