//! The RPC runtime: a native client and server that talk over TCP with
//! many calls multiplexed on one connection, streaming both ways,
//! deadlines, cancel and errors with ids; and the name space that finds
//! servers through mount tables.
//!
//! - `wire`: the frame format (pure encoding and decoding; see
//!   `docs/wire.md`).
//! - `conn`: connection setup and what client and server connections share.
//! - [`Client`]: calls by name; [`ClientBuilder`]: a client with the
//!   user's credentials and name space, as the command line's.
//! - [`Listener`], [`Server`], [`Dispatcher`], [`Invoker`]: serving;
//!   [`Service`]: an object served from closures with typed arguments.
//! - [`Namespace`]: roots and resolution; mount, unmount and glob are
//!   methods of [`Client`].

mod client;
pub(crate) mod conn;
mod namespace;
mod publisher;
mod roots;
pub(crate) mod server;
mod server_auth;
mod service;
// (The frame format is public to the tests and fuzz targets only.)
#[cfg(feature = "testing")]
#[doc(hidden)]
pub mod wire;
#[cfg(not(feature = "testing"))]
pub(crate) mod wire;

pub use crate::pool::PoolConfig;
pub use crate::security::{AllowAll, Authorizer, RemoteIdentity};
pub use crate::signature::{MethodSignature, Signature};
pub use client::{
    Call, CallEvent, CallHandle, CallOptions, CallSink, Canceller, Client, ClientBuilder,
    ClientConfig, OfferError, SinkCall, Started,
};
pub use conn::ItemToken;
#[cfg(feature = "testing")]
#[doc(hidden)]
pub use conn::RawSession;
pub use namespace::{GlobEntry, MAX_DEPTH, MountedServer, Namespace, Resolved};
pub use roots::{DEFAULT_ROOT, NAMESPACE_ROOT_ENV, env_roots, root_name};
pub use server::{
    Dispatcher, Invocation, Invoker, Listener, Lookup, Pending, Reply, Server, ServerCall,
    ServerConfig, ServerEvent, Step,
};
pub use service::{CallHandler, Handler, Service, Stream, StreamHandler};
