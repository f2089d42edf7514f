//! The daemon: websocket pipes through which JavaScript calls RPC servers
//! by name and serves servers whose objects live in JavaScript.
//!
//! - `config`: the settings; `shared`: what every pipe shares.
//! - `http`: the HTTP listener (Origin check, upgrade, `/health`);
//!   `metrics`: `/metrics`.
//! - `ws`: the websocket layer (tungstenite), `protocol`: the messages.
//! - `router`: a pipe's thread, which reads its messages and hands them
//!   on; `pipe`: the pipe's handle (send, open, route and end a flow),
//!   which everything else uses; `controller`: JavaScript's requests.
//! - `js_server`: the server side whose objects live in JavaScript (its
//!   dispatcher and invoker).
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

mod config;
mod controller;
mod daemon;
mod http;
// (Public to the tests and fuzz targets only.)
#[cfg(feature = "testing")]
#[doc(hidden)]
pub mod identity;
#[cfg(not(feature = "testing"))]
mod identity;
mod js_server;
mod metrics;
mod pipe;
#[cfg(feature = "testing")]
#[doc(hidden)]
pub mod protocol;
#[cfg(not(feature = "testing"))]
mod protocol;
mod router;
mod shared;
mod tls;
mod token;
mod user;
mod ws;

pub use config::Config;
pub use daemon::{Daemon, DaemonBuilder};
pub use tls::TlsConfig;
pub use token::TokenIssuer;
