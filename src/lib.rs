//! # wspr
//!
//! wspr lets JavaScript programs take part in an RPC network as equals:
//! they call any server by name and serve objects of their own, through a
//! daemon (`wsprd`) they reach over a websocket. This crate is the daemon,
//! the RPC runtime it stands on, and the mount table that names servers.
//! Sync Rust programs embed all of it; there is no async runtime.
//!
//! ## A name space, a server and a call
//!
//! A mount table is a server like any other. Start one, serve the demo
//! object under a name in it, and call the object by that name:
//!
//! ```
//! use std::sync::Arc;
//! use serde_json::json;
//! use wspr::mounttable::{MountTable, MountTableConfig};
//! use wspr::rpc::{CallOptions, Client, Namespace, Server, ServerConfig};
//!
//! // A client with no roots yet: the mount table doesn't exist.
//! let client = Client::new(Namespace::new(vec![]));
//! let mt = Server::listen_with(
//!     "127.0.0.1:0",
//!     Arc::new(MountTable::new(MountTableConfig::default())),
//!     client.clone(),
//!     ServerConfig::default(),
//!     true, // its endpoint says "mount table"
//! )?;
//! client.namespace().set_roots(vec![mt.name()]);
//!
//! let demo = Server::listen("127.0.0.1:0", Arc::new(wspr::demo::Demo), client.clone())?;
//! demo.add_name("demo/adder")?;
//!
//! let sum = client.call("demo/adder", "Add", vec![json!(2), json!(3)], CallOptions::default())?;
//! assert_eq!(sum, vec![json!(5)]);
//!
//! let err = client
//!     .call("demo/adder", "Divide", vec![json!(1), json!(0)], CallOptions::default())
//!     .unwrap_err();
//! assert!(err.is(wspr::error::ids::BAD_ARG));
//! # Ok::<(), wspr::Error>(())
//! ```
//!
//! ## Streaming
//!
//! A call's two streams are driven by the caller: send items, close the
//! send side, receive what the server streams, then finish.
//!
//! ```
//! # use std::sync::Arc;
//! # use serde_json::json;
//! # use wspr::rpc::{CallOptions, Client, Namespace, Server};
//! # let client = Client::new(Namespace::new(vec![]));
//! # let demo = Server::listen("127.0.0.1:0", Arc::new(wspr::demo::Demo), client.clone())?;
//! // A rooted name reaches a server directly, without a mount table.
//! let mut call = client.start_call(&demo.name(), "StreamingAdd", vec![], CallOptions::default())?;
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
//! ## Where things are
//!
//! - [`naming`]: names and endpoints; [`glob`]: patterns.
//! - [`rpc`]: the wire format, client, server and name space.
//! - [`mounttable`]: the mount table.
//! - [`demo`]: the demo object.
//! - [`error`]: errors with the contract's ids.
//! - `pool`, `timer` (internal): the worker pool and the timer thread.

#![deny(missing_docs)]

mod admission;
mod budget;
pub mod demo;
pub mod error;
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
pub(crate) mod timer;
#[cfg(feature = "daemon")]
pub mod wsprd;

pub use error::{Error, ErrorKind, Result};
