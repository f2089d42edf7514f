//! # wspr
//!
//! wspr lets JavaScript programs take part in an RPC network as equals:
//! they call any server by name and serve objects of their own, through a
//! daemon (`wsprd`) they reach over a websocket. This crate is the daemon,
//! the RPC runtime it stands on, and the mount table that names servers.
//! Sync Rust programs embed all of it; there is no async runtime.
//!
//! This page is a tutorial: each example runs (as a test) as it is.
//!
//! ## A name space, a server and a call
//!
//! Names resolve through *mount tables*, servers like any other. Start
//! one, serve an object made of closures ([`rpc::Service`]: arguments and
//! results are decoded and encoded with serde, and the object's signature
//! comes from the closures) under a name in it, and call the object by
//! that name:
//!
//! ```
//! use std::sync::Arc;
//! use serde_json::json;
//! use wspr::mounttable::{MountTable, MountTableConfig};
//! use wspr::rpc::{CallOptions, Client, Namespace, Server, ServerConfig, Service};
//!
//! // A client, with no name space roots yet (the mount table does not
//! // exist), and a principal of its own (see "Who may call" below).
//! let client = Client::new(Namespace::new(vec![]))?;
//! let table = Arc::new(MountTable::new(MountTableConfig::default()));
//! let mt = Server::listen_mount_table("127.0.0.1:0", table, client.clone(), ServerConfig::default())?;
//! client.namespace().set_roots(vec![mt.name()]);
//!
//! let calc = Service::new()
//!     .method("Add", |a: i64, b: i64| Ok(a + b))
//!     .method("Divide", |a: f64, b: f64| {
//!         if b == 0.0 {
//!             return Err(wspr::Error::bad_arg("division by zero"));
//!         }
//!         Ok(a / b)
//!     });
//! let server = Server::listen("127.0.0.1:0", Arc::new(calc), client.clone())?;
//! server.add_name("tutorial/calc")?;
//!
//! let sum = client.call("tutorial/calc", "Add", vec![json!(2), json!(3)], CallOptions::default())?;
//! assert_eq!(sum, vec![json!(5)]);
//!
//! // Errors carry a kind (and the contract's id) across the wire.
//! let err = client
//!     .call("tutorial/calc", "Divide", vec![json!(1), json!(0)], CallOptions::default())
//!     .unwrap_err();
//! assert_eq!(err.kind(), wspr::ErrorKind::BadArg);
//! assert_eq!(err.msg(), "division by zero");
//! // An argument of the wrong type never reaches the closure.
//! let err = client
//!     .call("tutorial/calc", "Add", vec![json!("two"), json!(3)], CallOptions::default())
//!     .unwrap_err();
//! assert_eq!(err.kind(), wspr::ErrorKind::BadArg);
//! # Ok::<(), wspr::Error>(())
//! ```
//!
//! A server is reached by its own rooted name too (`server.name()`,
//! `/@w1@127.0.0.1:43127@<routing id>@s@@`), without any mount table.
//! An object with more to say than closures allow (its own lookup by
//! name suffix, calls answered later, its own policy per object)
//! implements [`rpc::Dispatcher`] and [`rpc::Invoker`]; [`demo`] is one.
//!
//! ## Streaming
//!
//! A call streams both ways. The server's closure takes the call's two
//! streams, typed; the caller sends items, closes its side, receives what
//! the server streams, then finishes:
//!
//! ```
//! # use std::sync::Arc;
//! # use serde_json::json;
//! use wspr::rpc::{CallOptions, Client, Namespace, Server, Service, Stream};
//!
//! let sum = Service::new().streaming("Sum", |s: &mut Stream<i64, i64>| {
//!     let mut total = 0;
//!     while let Some(n) = s.recv()? {
//!         total += n;
//!         s.send(&total)?;
//!     }
//!     Ok(total)
//! });
//! # let client = Client::new(Namespace::new(vec![]))?;
//! let server = Server::listen("127.0.0.1:0", Arc::new(sum), client.clone())?;
//! let mut call = client.start_call(&server.name(), "Sum", vec![], CallOptions::default())?;
//! for n in 1..=4 {
//!     call.send(json!(n))?;
//! }
//! call.close_send()?;
//! let mut totals = vec![];
//! while let Some(t) = call.recv()? {
//!     totals.push(t);
//! }
//! assert_eq!(totals, vec![json!(1), json!(3), json!(6), json!(10)]);
//! assert_eq!(call.finish()?, vec![json!(10)]);
//! # Ok::<(), wspr::Error>(())
//! ```
//!
//! ## An embedded daemon
//!
//! [`wsprd::Daemon`] is what `wsprd serve` runs: web pages connect to it
//! over a websocket, call servers by name and serve objects of their own.
//! A program embeds it with [`wsprd::Daemon::builder`], serves its own
//! objects beside the pages' on the daemon's listener, and calls by name
//! as the daemon does:
//!
//! ```
//! use std::sync::Arc;
//! use serde_json::json;
//! use wspr::rpc::{CallOptions, Service};
//! use wspr::wsprd::Daemon;
//!
//! // A socket bound first (or handed over by a service manager).
//! let http = std::net::TcpListener::bind("127.0.0.1:0")?;
//! let daemon = Daemon::builder()
//!     .http_listener(http) // pages connect to ws://<this address>/ws
//!     .allow_origin("https://app.example")
//!     .spawn()?;
//! // Its own mount table, unless given roots of others.
//! assert_eq!(daemon.namespace_roots().len(), 1);
//!
//! // Pages call `clock.now()`; the daemon's own client calls it too.
//! let clock = Service::new().method("Now", || Ok(1_700_000_000_u64));
//! let _clock = daemon.serve("clock", Arc::new(clock))?;
//! let now = daemon.client().call("clock", "Now", vec![], CallOptions::default())?;
//! assert_eq!(now, vec![json!(1_700_000_000_u64)]);
//!
//! // Every pipe closed (1001), every thread joined. (Dropping it does too.)
//! daemon.shutdown();
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! `examples/embedded_daemon.rs` is a whole program of this kind;
//! `docs/daemon.md` says how the daemon is built.
//!
//! ## Who may call: credentials and authorization
//!
//! Every program is a [`security::Principal`]: a key pair and the
//! *blessings* that name it. Connections are authenticated and encrypted
//! both ways, and a server decides per call from the names the caller
//! proved. The default policy of every server (a daemon's, and any
//! [`rpc::ServerConfig::default`]) is the [`security::Delegation`] rule:
//! a caller is admitted when one of its names and one of the server's are
//! equal or one extends the other. So a user's programs reach each other
//! (one principal), a daemon's pages (`<daemon>/<origin>`) reach the
//! daemon's objects and the daemon reaches theirs, and anyone else is
//! refused unless an object says otherwise.
//!
//! A user's principal lives in a credentials directory
//! ([`security::Principal::default_dir`]: `WSPR_CREDENTIALS`, else
//! `~/.config/wspr/credentials`), as `wsprd` keeps it.
//! [`rpc::Client::from_env`] (or [`rpc::Client::builder`]) loads it, so a
//! program is who the user's tools and `wsprd serve` are:
//!
//! ```
//! use std::sync::Arc;
//! use serde_json::json;
//! use wspr::rpc::{AllowAll, CallOptions, Client, Server, Service};
//! use wspr::security::Principal;
//! # let dir = std::env::temp_dir().join(format!("wspr-doc-lib-{}", std::process::id()));
//!
//! // Two programs of one user: the same credentials directory (created
//! // with a new principal when empty).
//! let first = Client::builder().namespace_roots(Vec::<String>::new()).credentials(&dir).build()?;
//! let second = Client::builder().namespace_roots(Vec::<String>::new()).credentials(&dir).build()?;
//! let calc = Service::new().method("Add", |a: i64, b: i64| Ok(a + b));
//! let server = Server::listen("127.0.0.1:0", Arc::new(calc.clone()), first.clone())?;
//! let add = |c: &Client, name: &str| c.call(name, "Add", vec![json!(1), json!(2)], CallOptions::default());
//! assert_eq!(add(&second, &server.name())?, vec![json!(3)]);
//!
//! // Another principal (one that knows the user's, and so takes the
//! // server for who it is) is refused by the default policy...
//! let mut other = Principal::new_self_blessed("mallory")?;
//! other.trust_root_of(&first.principal().blessings()[0])?;
//! let stranger = Client::builder().namespace_roots(Vec::<String>::new()).principal(Arc::new(other)).build()?;
//! let err = add(&stranger, &server.name()).unwrap_err();
//! assert_eq!(err.kind(), wspr::ErrorKind::NoAccess);
//!
//! // ... unless the object has a policy of its own (AllowAll, or an
//! // AclAuthorizer of blessing patterns and methods).
//! let public = Server::listen("127.0.0.1:0", Arc::new(calc.authorizer(AllowAll)), first.clone())?;
//! assert_eq!(add(&stranger, &public.name())?, vec![json!(3)]);
//! # drop((server, public));
//! # std::fs::remove_dir_all(&dir).unwrap();
//! # Ok::<(), wspr::Error>(())
//! ```
//!
//! `docs/security.md` tells the whole model: blessings and caveats, which
//! roots are trusted for which names, who owns a name in a mount table.
//!
//! ## Errors
//!
//! [`Error`] carries what crosses the wire (an id and a message) and its
//! [`ErrorKind`] (an application's own id is kept, of kind
//! [`ErrorKind::Application`]); an error that came from the system keeps
//! it as its [`source`](std::error::Error::source) (a refused connection's
//! [`std::io::Error`], for one). See [`error`].
//!
//! ## Cargo features
//!
//! - `daemon` (default): [`wsprd`] and the `wsprd` command. Without it
//!   (`default-features = false`) the crate is the RPC runtime, the mount
//!   table and the security layer, and builds none of the daemon's
//!   dependencies (tungstenite, httparse, prometheus-client, argh,
//!   simplelog, signal-hook).
//! - `testing`: internals for this crate's tests, benches and fuzz
//!   targets. Not an API.
//!
//! ## Where things are
//!
//! - [`rpc`]: client, server, name space, [`rpc::Service`].
//! - [`wsprd`]: the daemon and [`wsprd::Daemon::builder`].
//! - [`security`]: principals, blessings, authorizers.
//! - [`mounttable`]: the mount table.
//! - [`naming`]: names and endpoints; [`glob`]: patterns.
//! - [`demo`]: the demo object (a hand-written dispatcher).
//! - [`error`]: errors with the contract's ids.
//! - [`clock`]: the clock that timers and TTLs go by (a manual one for
//!   tests).
//! - `pool`, `timer`, the RPC wire format (internal): the worker pool,
//!   the timer thread, the frames (`docs/wire.md`).

#![deny(missing_docs)]

mod admission;
mod budget;
pub mod clock;
pub mod demo;
pub mod error;
mod flow;
#[cfg(feature = "testing")]
#[doc(hidden)]
pub mod fuzzing;
pub mod glob;
pub mod mounttable;
pub mod naming;
mod outbox;
pub(crate) mod pool;
pub mod rpc;
pub mod security;
pub(crate) mod signature;
mod sync;
pub(crate) mod timer;
#[cfg(feature = "daemon")]
pub mod wsprd;

pub use error::{Error, ErrorKind, Result};
