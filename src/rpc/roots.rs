//! The name space roots the command line's tools use (and
//! [`ClientBuilder`](crate::rpc::ClientBuilder), unless told otherwise):
//! [`NAMESPACE_ROOT_ENV`], else [`DEFAULT_ROOT`].

use crate::error::{Error, Result};
use crate::naming::Name;

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
