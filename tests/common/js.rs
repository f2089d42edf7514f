//! A websocket client that plays JavaScript against a daemon.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tungstenite::{Message, WebSocket};

pub const FINAL: u64 = 0;
pub const STREAM: u64 = 1;
pub const ERROR: u64 = 2;
pub const SERVER_REQUEST: u64 = 3;
pub const STREAM_CLOSE: u64 = 4;
pub const LOOKUP: u64 = 5;
pub const AUTH_REQUEST: u64 = 6;
pub const CANCEL: u64 = 7;

/// One message from the daemon.
#[derive(Debug, Clone, PartialEq)]
pub struct Msg {
    pub id: u64,
    pub kind: u64,
    pub message: Value,
}

/// A connection to the daemon: plain, or TLS (`wss://`).
pub enum Conn {
    Plain(TcpStream),
    Tls(Box<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>),
}

impl Conn {
    pub fn tcp(&self) -> &TcpStream {
        match self {
            Conn::Plain(s) => s,
            Conn::Tls(s) => &s.sock,
        }
    }

    pub fn set_read_timeout(&self, d: Option<Duration>) -> std::io::Result<()> {
        self.tcp().set_read_timeout(d)
    }
}

impl Read for Conn {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Conn::Plain(s) => s.read(buf),
            Conn::Tls(s) => s.read(buf),
        }
    }
}

impl Write for Conn {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Conn::Plain(s) => s.write(buf),
            Conn::Tls(s) => s.write(buf),
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Conn::Plain(s) => s.flush(),
            Conn::Tls(s) => s.flush(),
        }
    }
}

pub struct Js {
    pub ws: WebSocket<Conn>,
    next: u64,
}

/// A daemon started in this process with `f` applied to its config. It is
/// the tests' principal (as the `wsprd` processes the tests run are), so
/// that those tools take it for who it is.
pub fn daemon(f: impl FnOnce(&mut wspr::wsprd::Config)) -> wspr::wsprd::Daemon {
    let mut c = wspr::wsprd::Config::default();
    c.listen = "127.0.0.1:0".into();
    c.principal = Some(super::test_principal());
    f(&mut c);
    wspr::wsprd::Daemon::spawn(c).expect("daemon")
}

impl Js {
    pub fn connect(addr: SocketAddr) -> Js {
        Self::connect_with(addr, None).expect("websocket")
    }

    pub fn connect_with(addr: SocketAddr, origin: Option<&str>) -> Result<Js, tungstenite::Error> {
        let stream = TcpStream::connect(addr).unwrap();
        stream.set_nodelay(true).unwrap();
        Self::handshake(Conn::Plain(stream), &format!("ws://{addr}/ws"), origin)
    }

    /// A pipe over TLS to `addr`, asking for the name `host` (SNI, and the
    /// URL's host), trusting what `config` trusts.
    pub fn connect_tls(
        addr: SocketAddr,
        host: &str,
        config: &Arc<rustls::ClientConfig>,
        origin: Option<&str>,
    ) -> Result<Js, tungstenite::Error> {
        let stream = TcpStream::connect(addr).unwrap();
        stream.set_nodelay(true).unwrap();
        let name = rustls::pki_types::ServerName::try_from(host.to_string()).unwrap();
        let conn = rustls::ClientConnection::new(config.clone(), name).unwrap();
        let tls = rustls::StreamOwned::new(conn, stream);
        Self::handshake(
            Conn::Tls(Box::new(tls)),
            &format!("wss://{host}:{}/ws", addr.port()),
            origin,
        )
    }

    fn handshake(conn: Conn, url: &str, origin: Option<&str>) -> Result<Js, tungstenite::Error> {
        let mut req = tungstenite::client::IntoClientRequest::into_client_request(url).unwrap();
        if let Some(o) = origin {
            req.headers_mut().insert("Origin", o.parse().unwrap());
        }
        let (ws, _) = tungstenite::client(req, conn).map_err(|e| match e {
            tungstenite::HandshakeError::Failure(e) => e,
            tungstenite::HandshakeError::Interrupted(_) => unreachable!(),
        })?;
        Ok(Js { ws, next: 1 })
    }

    /// The next odd flow id.
    pub fn id(&mut self) -> u64 {
        let id = self.next;
        self.next += 2;
        id
    }

    pub fn send_raw(&mut self, text: &str) {
        self.ws.send(Message::text(text)).unwrap();
    }

    pub fn send(&mut self, id: u64, kind: u64, data: Value) {
        let mut m = json!({"id": id, "type": kind});
        if !data.is_null() {
            m["data"] = data;
        }
        self.send_raw(&m.to_string());
    }

    /// The next message, within `limit`; None if none came.
    pub fn try_recv(&mut self, limit: Duration) -> Option<Msg> {
        let deadline = Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            self.ws.get_ref().set_read_timeout(Some(left)).unwrap();
            match self.ws.read() {
                Ok(Message::Text(t)) => {
                    let v: Value = serde_json::from_str(t.as_str()).expect("daemon sent JSON");
                    return Some(Msg {
                        id: v["id"].as_u64().expect("id"),
                        kind: v["type"].as_u64().expect("type"),
                        message: v["message"].clone(),
                    });
                }
                Ok(Message::Close(_)) => return None,
                Ok(_) => continue,
                Err(tungstenite::Error::Io(e))
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    return None;
                }
                Err(_) => return None,
            }
        }
    }

    /// The close code the daemon ends the pipe with (reading past any
    /// other message), within 10 s; None if it closes without one.
    pub fn close_code(&mut self) -> Option<u16> {
        self.ws
            .get_ref()
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        while let Ok(m) = self.ws.read() {
            if let Message::Close(Some(f)) = m {
                return Some(u16::from(f.code));
            }
        }
        None
    }

    /// The next message (within 10 s, or the test fails).
    pub fn recv(&mut self) -> Msg {
        self.try_recv(Duration::from_secs(10))
            .expect("a message from the daemon")
    }

    /// Starts a call; returns its id.
    pub fn call(&mut self, name: &str, method: &str, args: Value, streaming: bool) -> u64 {
        let id = self.id();
        self.send(
            id,
            0,
            json!({"name": name, "method": method, "inArgs": args, "numOutArgs": 2, "isStreaming": streaming}),
        );
        id
    }

    /// Serves `server_id` under `name`; returns the endpoint.
    pub fn serve(&mut self, name: &str, server_id: u64) -> String {
        let id = self.id();
        self.send(id, 1, json!({"name": name, "serverId": server_id}));
        let m = self.recv();
        assert_eq!((m.id, m.kind), (id, FINAL), "serve failed: {m:?}");
        m.message.as_str().expect("endpoint").to_string()
    }

    /// Answers a lookup with a handle and signature.
    pub fn answer_lookup(&mut self, id: u64, handle: i64, signature: Value, cacheable: bool) {
        self.send(
            id,
            11,
            json!({"handle": handle, "hasAuthorizer": false, "signature": signature, "cacheable": cacheable}),
        );
    }

    /// Takes the next message, a lookup, and answers it with object
    /// `handle` and the adder's signature (not cacheable); the lookup.
    pub fn answer_next_lookup(&mut self, handle: i64) -> Msg {
        let l = self.recv();
        assert_eq!(l.kind, LOOKUP, "expected a lookup: {l:?}");
        self.answer_lookup(l.id, handle, adder_signature(), false);
        l
    }
}

/// The signature of the adder that the tests serve from "JavaScript".
pub fn adder_signature() -> Value {
    json!({
        "add": {"inArgs": ["a", "b"], "numOutArgs": 2, "isStreaming": false},
        "divide": {"inArgs": ["a", "b"], "numOutArgs": 2, "isStreaming": false},
        "streamingAdd": {"inArgs": [], "numOutArgs": 2, "isStreaming": true},
        "echoStream": {"inArgs": [], "numOutArgs": 2, "isStreaming": true},
    })
}

/// A native client of the daemon's principal family (its own principal).
pub fn native_client(d: &wspr::wsprd::Daemon) -> wspr::rpc::Client {
    wspr::rpc::Client::with_principal(
        wspr::rpc::Namespace::new(d.namespace_roots()),
        d.principal().clone(),
        Default::default(),
    )
}
