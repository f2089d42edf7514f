//! Servers whose objects live in a pipe's JavaScript: the dispatcher asks
//! JavaScript which object serves a call (and, if the object has one, its
//! authorizer whether the call may go ahead), and the invoker hands the
//! call to JavaScript and relays its answer. Nothing holds a thread while
//! JavaScript thinks, except a streaming request (see `invoker`).

mod dispatcher;
mod invoker;
mod state;

use std::sync::Arc;
use std::time::Duration;

use crate::error::Result;
use crate::rpc::{Listener, Server};
use crate::wsprd::pipe::{Pipe, Served};

use dispatcher::JsDispatcher;
use state::ServerState;

/// A server whose objects live in a pipe's JavaScript.
pub(crate) struct JsServer {
    state: Arc<ServerState>,
    rpc: Server,
}

impl JsServer {
    /// Adds a server to `listener` for JavaScript's `server_id`.
    pub(crate) fn new(
        listener: &Listener,
        pipe: &Arc<Pipe>,
        server_id: u64,
        lookup_timeout: Duration,
    ) -> Result<JsServer> {
        let state = Arc::new(ServerState::new(server_id, pipe, lookup_timeout));
        // Served and mounted as the pipe's own principal: the name is the
        // page's, and callers check the server proves the page's names.
        let rpc =
            listener.serve_with_client(Arc::new(JsDispatcher(state.clone())), &pipe.client)?;
        Ok(JsServer { state, rpc })
    }
}

impl Served for JsServer {
    fn rpc(&self) -> &Server {
        &self.rpc
    }

    /// Ends every wait on JavaScript at once, unmounts the names, aborts
    /// calls in flight and closes the server's connections.
    fn stop(&self) {
        self.state.stop();
        self.rpc.abort();
        log::info!("server {} ({}) stopped", self.state.id, self.rpc.endpoint());
    }
}
