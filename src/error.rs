//! Errors that cross the wire: an error id from the contract's table (or an
//! application's own id) and a human-readable message, with the
//! [`ErrorKind`] the id stands for and, for an error that came from below
//! (an I/O error, a JSON decoder's), that error as its
//! [`source`](std::error::Error::source).
//!
//! An application error raised by a JavaScript server reaches a native
//! caller with its id unchanged: its kind is [`ErrorKind::Application`] and
//! [`Error::id`] gives the id.
//!
//! ```
//! use wspr::error::{Error, ErrorKind, ids};
//! let e = Error::no_exist("no such method Frob");
//! assert_eq!(e.kind(), ErrorKind::NoExist);
//! assert!(e.is(ids::NO_EXIST));
//! assert_eq!(e.to_string(), "NoExist: no such method Frob");
//!
//! // An application's own id is kept.
//! let app = Error::new("bank.InsufficientFunds", "balance 3, asked 5");
//! assert_eq!(app.kind(), ErrorKind::Application);
//! assert_eq!(app.id(), "bank.InsufficientFunds");
//!
//! // An I/O error keeps its cause.
//! let io = std::io::Error::new(std::io::ErrorKind::NotFound, "gone");
//! let e = Error::from(io).context("reading the state");
//! assert_eq!(e.kind(), ErrorKind::NoExist);
//! let cause = std::error::Error::source(&e).unwrap();
//! assert!(cause.downcast_ref::<std::io::Error>().is_some());
//! ```

use std::fmt;
use std::sync::Arc;

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

/// What an error is, by its id: one kind per id of the contract's table
/// ([`ids`]), and [`Application`](ErrorKind::Application) for any other id
/// (an application's own, kept by [`Error::id`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// [`ids::ABORTED`]: the flow was cancelled, the server stopped, or its
    /// pipe closed.
    Aborted,
    /// [`ids::BAD_ARG`]: bad arguments, wrong number of arguments,
    /// malformed payload.
    BadArg,
    /// [`ids::BAD_PROTOCOL`]: a frame or message that breaks the protocol.
    BadProtocol,
    /// [`ids::EXISTS`]: a name or id already in use.
    Exists,
    /// [`ids::INTERNAL`]: a fault inside the daemon or a reply that cannot
    /// be decoded.
    Internal,
    /// [`ids::NO_ACCESS`]: refused by an authorizer or the origin policy.
    NoAccess,
    /// [`ids::NO_EXIST`]: no such name, server, object or method.
    NoExist,
    /// [`ids::TIMEOUT`]: a deadline passed.
    Timeout,
    /// [`ids::UNKNOWN`]: anything else, or an error without an id.
    Unknown,
    /// An id of an application's own, not one of the contract's.
    Application,
}

/// The contract's ids and their kinds.
const KINDS: [(ErrorKind, &str); 9] = [
    (ErrorKind::Aborted, ids::ABORTED),
    (ErrorKind::BadArg, ids::BAD_ARG),
    (ErrorKind::BadProtocol, ids::BAD_PROTOCOL),
    (ErrorKind::Exists, ids::EXISTS),
    (ErrorKind::Internal, ids::INTERNAL),
    (ErrorKind::NoAccess, ids::NO_ACCESS),
    (ErrorKind::NoExist, ids::NO_EXIST),
    (ErrorKind::Timeout, ids::TIMEOUT),
    (ErrorKind::Unknown, ids::UNKNOWN),
];

impl ErrorKind {
    /// The kind of the error id `id` ([`Application`](ErrorKind::Application)
    /// for one that is not the contract's).
    pub fn of_id(id: &str) -> ErrorKind {
        KINDS
            .iter()
            .find(|(_, i)| *i == id)
            .map(|(k, _)| *k)
            .unwrap_or(ErrorKind::Application)
    }

    /// The contract's id for this kind; `None` for
    /// [`Application`](ErrorKind::Application), whose errors carry their own.
    pub fn id(self) -> Option<&'static str> {
        KINDS.iter().find(|(k, _)| *k == self).map(|(_, i)| *i)
    }

    /// The kind an I/O error stands for: a timeout is `Timeout`, a missing
    /// file or a refused connection `NoExist`, a permission `NoAccess`,
    /// something already there (an address in use) `Exists`, bad input
    /// `BadArg`, a connection cut `Aborted`; the rest `Internal`.
    pub fn of_io(kind: std::io::ErrorKind) -> ErrorKind {
        use std::io::ErrorKind as Io;
        match kind {
            Io::TimedOut | Io::WouldBlock => ErrorKind::Timeout,
            Io::NotFound | Io::ConnectionRefused | Io::AddrNotAvailable => ErrorKind::NoExist,
            Io::PermissionDenied => ErrorKind::NoAccess,
            Io::AlreadyExists | Io::AddrInUse => ErrorKind::Exists,
            Io::InvalidInput | Io::InvalidData => ErrorKind::BadArg,
            Io::ConnectionReset
            | Io::ConnectionAborted
            | Io::BrokenPipe
            | Io::UnexpectedEof
            | Io::Interrupted => ErrorKind::Aborted,
            _ => ErrorKind::Internal,
        }
    }
}

/// An error with an id and a message, as carried by the RPC wire and the
/// websocket protocol (`{"id": ..., "msg": ...}`), its [`ErrorKind`], and
/// the error it came from, if any (the [`source`](std::error::Error::source);
/// it stays in this process: the wire carries the id and the message).
///
/// Two errors are equal when their ids and messages are; the source is not
/// compared.
#[derive(Clone)]
pub struct Error {
    kind: ErrorKind,
    /// The id of an [`ErrorKind::Application`] error (the contract's ids
    /// are not stored: the kind tells them).
    app_id: Option<Box<str>>,
    msg: String,
    source: Option<Arc<dyn std::error::Error + Send + Sync + 'static>>,
}

/// A `Result` whose error is [`Error`].
pub type Result<T> = std::result::Result<T, Error>;

macro_rules! constructors {
    ($($(#[$doc:meta])* $name:ident => $kind:ident,)*) => {
        $(
            $(#[$doc])*
            pub fn $name(msg: impl Into<String>) -> Error {
                Error::of_kind(ErrorKind::$kind, msg)
            }
        )*
    };
}

impl Error {
    /// An error with any id (application errors keep their own ids; an
    /// empty id is [`ids::UNKNOWN`]).
    pub fn new(id: impl Into<String>, msg: impl Into<String>) -> Error {
        let id = id.into();
        let kind = if id.is_empty() {
            ErrorKind::Unknown
        } else {
            ErrorKind::of_id(&id)
        };
        Error {
            kind,
            app_id: (kind == ErrorKind::Application).then(|| id.into_boxed_str()),
            msg: msg.into(),
            source: None,
        }
    }

    /// An error of `kind` (for [`ErrorKind::Application`], whose id this
    /// does not say, the id is [`ids::UNKNOWN`]: use [`Error::new`]).
    pub fn of_kind(kind: ErrorKind, msg: impl Into<String>) -> Error {
        let kind = match kind {
            ErrorKind::Application => ErrorKind::Unknown,
            k => k,
        };
        Error {
            kind,
            app_id: None,
            msg: msg.into(),
            source: None,
        }
    }

    constructors! {
        /// An [`ids::ABORTED`] error.
        aborted => Aborted,
        /// An [`ids::BAD_ARG`] error.
        bad_arg => BadArg,
        /// An [`ids::BAD_PROTOCOL`] error.
        bad_protocol => BadProtocol,
        /// An [`ids::EXISTS`] error.
        exists => Exists,
        /// An [`ids::INTERNAL`] error.
        internal => Internal,
        /// An [`ids::NO_ACCESS`] error.
        no_access => NoAccess,
        /// An [`ids::NO_EXIST`] error.
        no_exist => NoExist,
        /// An [`ids::TIMEOUT`] error.
        timeout => Timeout,
        /// An [`ids::UNKNOWN`] error.
        unknown => Unknown,
    }

    /// The same error, caused by `source` (what
    /// [`source`](std::error::Error::source) gives back).
    pub fn with_source(mut self, source: impl std::error::Error + Send + Sync + 'static) -> Error {
        self.source = Some(Arc::new(source));
        self
    }

    /// What the error is.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The error id, such as `veyron2/verror.NoExist`, or an application's
    /// own.
    pub fn id(&self) -> &str {
        match &self.app_id {
            Some(id) => id,
            // (Every kind but Application has an id.)
            None => self.kind.id().unwrap_or(ids::UNKNOWN),
        }
    }

    /// The human-readable message.
    pub fn msg(&self) -> &str {
        &self.msg
    }

    /// Whether this error has the given id.
    pub fn is(&self, id: &str) -> bool {
        self.id() == id
    }

    /// A listener that cannot bind `addr`: `Exists` when the address is
    /// in use (the caller may pick another), `Internal` otherwise; the I/O
    /// error is its source.
    pub(crate) fn listen_failed(addr: impl fmt::Display, e: std::io::Error) -> Error {
        let msg = format!("cannot listen on {addr}: {e}");
        if e.kind() == std::io::ErrorKind::AddrInUse {
            Error::exists(msg)
        } else {
            Error::internal(msg)
        }
        .with_source(e)
    }

    /// A thread that could not be started.
    pub(crate) fn thread_failed(e: std::io::Error) -> Error {
        Error::internal(format!("cannot start a thread: {e}")).with_source(e)
    }

    /// The same error with `context: ` in front of its message (its kind,
    /// id and source unchanged).
    pub fn context(mut self, context: impl fmt::Display) -> Error {
        self.msg = format!("{context}: {}", self.msg);
        self
    }

    /// The JSON form `{"id": ..., "msg": ...}` of the contract.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({ "id": self.id(), "msg": self.msg })
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

impl PartialEq for Error {
    fn eq(&self, other: &Error) -> bool {
        self.kind == other.kind && self.app_id == other.app_id && self.msg == other.msg
    }
}

impl Eq for Error {}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.id(), self.msg)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let id = self.id();
        let short = id.rsplit('.').next().unwrap_or(id);
        write!(f, "{short}: {}", self.msg)
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

/// An I/O error as an [`Error`] of the kind it stands for (see
/// [`ErrorKind::of_io`]), its message the I/O error's, the I/O error its
/// source.
impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Error {
        Error::of_kind(ErrorKind::of_io(e.kind()), e.to_string()).with_source(e)
    }
}

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
    fn kinds_follow_ids() {
        for (kind, id) in KINDS {
            let e = Error::new(id, "m");
            assert_eq!(e.kind(), kind);
            assert_eq!(e.id(), id);
            assert_eq!(kind.id(), Some(id));
            assert_eq!(Error::of_kind(kind, "m"), e);
        }
        let app = Error::new("app.Err", "m");
        assert_eq!(app.kind(), ErrorKind::Application);
        assert_eq!(app.id(), "app.Err");
        assert!(app.is("app.Err"));
        assert_eq!(app.to_json(), json!({"id": "app.Err", "msg": "m"}));
        assert_eq!(Error::new("", "m").id(), ids::UNKNOWN);
        assert_eq!(
            Error::of_kind(ErrorKind::Application, "m").id(),
            ids::UNKNOWN
        );
        assert_eq!(ErrorKind::Application.id(), None);
    }

    #[test]
    fn an_io_error_is_kept_as_the_source() {
        use std::error::Error as _;
        let io = std::io::Error::new(std::io::ErrorKind::TimedOut, "slow disk");
        let e = Error::from(io).context("saving");
        assert_eq!(e.kind(), ErrorKind::Timeout);
        assert_eq!(e.msg(), "saving: slow disk");
        let source = e.source().expect("a source");
        let io = source
            .downcast_ref::<std::io::Error>()
            .expect("the I/O error");
        assert_eq!(io.kind(), std::io::ErrorKind::TimedOut);
        // The source crosses no wire and is not compared.
        assert_eq!(e, Error::timeout("saving: slow disk"));
        assert!(Error::from_json(&e.to_json()).unwrap().source().is_none());
        let e = Error::listen_failed(
            "127.0.0.1:1",
            std::io::Error::from(std::io::ErrorKind::AddrInUse),
        );
        assert_eq!(e.kind(), ErrorKind::Exists);
        assert!(e.source().is_some());
    }

    #[test]
    fn display_is_short() {
        assert_eq!(Error::timeout("late").to_string(), "Timeout: late");
    }
}
