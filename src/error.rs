//! Errors that cross the wire: an error id from the contract's table (or an
//! application's own id) and a human-readable message.
//!
//! The ids are kept as strings so that an application error raised by a
//! JavaScript server reaches a native caller with its id unchanged.

use std::fmt;

/// The error ids of the contract (section 4).
pub mod ids {
    /// The flow was cancelled, the server stopped, or its pipe closed.
    pub const ABORTED: &str = "veyron2/verror.Aborted";
    /// Bad arguments, wrong number of arguments, malformed payload.
    pub const BAD_ARG: &str = "veyron2/verror.BadArg";
    /// A frame that is not a JSON object, or an unknown type.
    pub const BAD_PROTOCOL: &str = "veyron2/verror.BadProtocol";
    /// A name or id already in use.
    pub const EXISTS: &str = "veyron2/verror.Exists";
    /// A fault inside the daemon or a reply that cannot be decoded.
    pub const INTERNAL: &str = "veyron2/verror.Internal";
    /// Refused by an authorizer or the origin policy.
    pub const NO_ACCESS: &str = "veyron2/verror.NoAccess";
    /// No such name, server, object or method.
    pub const NO_EXIST: &str = "veyron2/verror.NoExist";
    /// A deadline passed.
    pub const TIMEOUT: &str = "veyron2/verror.Timeout";
    /// Anything else.
    pub const UNKNOWN: &str = "veyron2/verror.Unknown";
}

/// An error with an id and a message, as carried by the RPC wire and the
/// websocket protocol (`{"id": ..., "msg": ...}`).
#[derive(Clone, PartialEq, Eq)]
pub struct Error {
    id: String,
    msg: String,
}

/// A `Result` whose error is [`Error`].
pub type Result<T> = std::result::Result<T, Error>;

macro_rules! constructors {
    ($($(#[$doc:meta])* $name:ident => $id:ident,)*) => {
        $(
            $(#[$doc])*
            pub fn $name(msg: impl Into<String>) -> Error {
                Error::new(ids::$id, msg)
            }
        )*
    };
}

impl Error {
    /// An error with any id (application errors keep their own ids).
    pub fn new(id: impl Into<String>, msg: impl Into<String>) -> Error {
        let mut id = id.into();
        if id.is_empty() {
            id = ids::UNKNOWN.to_string();
        }
        Error {
            id,
            msg: msg.into(),
        }
    }

    constructors! {
        /// An [`ids::ABORTED`] error.
        aborted => ABORTED,
        /// An [`ids::BAD_ARG`] error.
        bad_arg => BAD_ARG,
        /// An [`ids::BAD_PROTOCOL`] error.
        bad_protocol => BAD_PROTOCOL,
        /// An [`ids::EXISTS`] error.
        exists => EXISTS,
        /// An [`ids::INTERNAL`] error.
        internal => INTERNAL,
        /// An [`ids::NO_ACCESS`] error.
        no_access => NO_ACCESS,
        /// An [`ids::NO_EXIST`] error.
        no_exist => NO_EXIST,
        /// An [`ids::TIMEOUT`] error.
        timeout => TIMEOUT,
        /// An [`ids::UNKNOWN`] error.
        unknown => UNKNOWN,
    }

    /// The error id, such as `veyron2/verror.NoExist`.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The human-readable message.
    pub fn msg(&self) -> &str {
        &self.msg
    }

    /// Whether this error has the given id.
    pub fn is(&self, id: &str) -> bool {
        self.id == id
    }

    /// A listener that cannot bind `addr`: `Exists` when the address is
    /// in use (the caller may pick another), `Internal` otherwise.
    pub(crate) fn listen_failed(addr: impl fmt::Display, e: std::io::Error) -> Error {
        let msg = format!("cannot listen on {addr}: {e}");
        if e.kind() == std::io::ErrorKind::AddrInUse {
            Error::exists(msg)
        } else {
            Error::internal(msg)
        }
    }

    /// The same error with `context: ` in front of its message.
    pub fn context(self, context: impl fmt::Display) -> Error {
        Error {
            id: self.id,
            msg: format!("{context}: {}", self.msg),
        }
    }

    /// The JSON form `{"id": ..., "msg": ...}` of the contract.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({ "id": self.id, "msg": self.msg })
    }

    /// Reads an error value: `{"id", "msg"}`, also accepting `message` for
    /// `msg` and `iD` for `id` (contract section 4). A string is taken as the
    /// message of an `Unknown` error. Anything else is `None`.
    pub fn from_json(value: &serde_json::Value) -> Option<Error> {
        match value {
            serde_json::Value::Object(map) => {
                let id = map
                    .get("id")
                    .or_else(|| map.get("iD"))
                    .and_then(|v| v.as_str())
                    .unwrap_or(ids::UNKNOWN);
                let msg = map
                    .get("msg")
                    .or_else(|| map.get("message"))
                    .and_then(|v| v.as_str())
                    .unwrap_or("");
                Some(Error::new(id, msg))
            }
            serde_json::Value::String(s) => Some(Error::unknown(s.clone())),
            _ => None,
        }
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.id, self.msg)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let short = self.id.rsplit('.').next().unwrap_or(&self.id);
        write!(f, "{short}: {}", self.msg)
    }
}

impl std::error::Error for Error {}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn json_round_trip_and_aliases() {
        let e = Error::bad_arg("two arguments expected");
        assert_eq!(Error::from_json(&e.to_json()), Some(e));
        let alias = Error::from_json(&json!({"iD": "app.Err", "message": "boom"})).unwrap();
        assert_eq!(alias.id(), "app.Err");
        assert_eq!(alias.msg(), "boom");
        assert_eq!(Error::from_json(&json!(3)), None);
        assert!(Error::from_json(&json!({})).unwrap().is(ids::UNKNOWN));
    }

    #[test]
    fn display_is_short() {
        assert_eq!(Error::timeout("late").to_string(), "Timeout: late");
    }
}
