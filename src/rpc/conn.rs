//! What client and server connections share: the connection setup (hello
//! and the session handshake), the frame reader and the outgoing outbox.
//! (What they keep per flow is the flow core's, `crate::flow`.)
//!
//! The session step is the seam where authentication and encryption slot
//! in: after the hello, [`client_session`] and [`server_session`] turn a
//! TCP stream into a byte reader, a byte sink and the peer's identity. The
//! plain session passes bytes through unchanged; the frame layer above does
//! not know which session it runs over.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::outbox::{Outbox, PushError, Sink};
use crate::rpc::wire::{self, Frame, HelloStatus, WireError};
use crate::security::session::Deadline;
use crate::security::{Principal, RemoteIdentity};
use crate::sync::lock;

static NEXT_CONN: AtomicU64 = AtomicU64::new(1);

/// A process-unique connection number, for logs.
pub(crate) fn next_conn_id() -> u64 {
    NEXT_CONN.fetch_add(1, Ordering::Relaxed)
}

/// The byte streams of an established session.
pub(crate) use crate::security::session::Established as Session;

impl Sink for Box<dyn Sink> {
    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        (**self).write_all(buf)
    }
    fn shutdown(&mut self) {
        (**self).shutdown()
    }
}

fn io_err(what: &str, addr: &str, e: io::Error) -> Error {
    match e.kind() {
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => {
            Error::timeout(format!("{what} {addr}: timed out"))
        }
        _ => Error::no_exist(format!("{what} {addr}: {e}")),
    }
    .with_source(e)
}

/// An I/O error once connected, during setup: the server is there but
/// dropped the connection (it may be busy, or refusing this client), which
/// is `Aborted`, not `NoExist`.
fn setup_err(what: &str, addr: &str, e: io::Error) -> Error {
    match e.kind() {
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => io_err(what, addr, e),
        _ => Error::aborted(format!(
            "{what} {addr}: the server dropped the connection during setup: {e}"
        ))
        .with_source(e),
    }
}

/// Connects to `address`, says hello asking for server `routing_id`, and
/// sets up the session as `principal`. Everything happens before
/// `deadline`.
pub(crate) fn client_session(
    address: &str,
    routing_id: u64,
    deadline: Instant,
    write_timeout: Duration,
    principal: &Principal,
) -> Result<(TcpStream, Session)> {
    use std::net::ToSocketAddrs;
    let left = || {
        deadline
            .checked_duration_since(Instant::now())
            .filter(|d| !d.is_zero())
            .ok_or_else(|| Error::timeout(format!("connecting to {address}: deadline passed")))
    };
    let addrs: Vec<_> = address
        .to_socket_addrs()
        .map_err(|e| Error::no_exist(format!("address {address}: {e}")).with_source(e))?
        .collect();
    let mut last = Error::no_exist(format!("address {address} resolves to nothing"));
    let mut stream = None;
    for a in addrs {
        match TcpStream::connect_timeout(&a, left()?) {
            Ok(s) => {
                stream = Some(s);
                break;
            }
            Err(e) => last = io_err("connecting to", address, e),
        }
    }
    let mut stream = stream.ok_or(last)?;
    let _ = stream.set_nodelay(true);
    keep_alive(&stream);
    stream
        .set_write_timeout(Some(write_timeout))
        .map_err(|e| io_err("configuring", address, e))?;
    stream
        .set_read_timeout(Some(left()?))
        .map_err(|e| io_err("configuring", address, e))?;
    let hello = wire::encode_hello(wire::VERSION, wire::SessionKind::Noise as u8, routing_id);
    stream
        .write_all(&hello)
        .map_err(|e| setup_err("saying hello to", address, e))?;
    let mut reply = [0u8; wire::HELLO_LEN];
    stream
        .read_exact(&mut reply)
        .map_err(|e| setup_err("waiting for the hello of", address, e))?;
    let (version, status, _) =
        wire::decode_hello(&reply).map_err(|e| Error::bad_protocol(format!("{address}: {e}")))?;
    match status {
        s if s == HelloStatus::Ok as u8 => {}
        s if s == HelloStatus::BadVersion as u8 => {
            return Err(Error::bad_protocol(format!(
                "{address} speaks protocol version {version}, this client {}",
                wire::VERSION
            )));
        }
        s if s == HelloStatus::NoSuchServer as u8 => {
            return Err(Error::no_exist(format!(
                "no server with routing id {routing_id:016x} at {address}"
            )));
        }
        s => {
            return Err(Error::bad_protocol(format!(
                "{address} refused the session (status {s})"
            )));
        }
    }
    let prologue = crate::security::session::prologue(&hello, &reply);
    let session = crate::security::session::client(&mut stream, deadline, principal, &prologue)
        .map_err(|e| e.context(format!("connecting to {address}")))?;
    stream
        .set_read_timeout(None)
        .map_err(|e| io_err("configuring", address, e))?;
    Ok((stream, session))
}

/// TCP keepalive on an RPC connection. Its reader waits with no timeout
/// (a connection may rightly be idle for hours); keepalive is what finds
/// a peer whose host vanished without a FIN or a reset: 30 s idle, then
/// probes 10 s apart, gone after 3 unanswered. The reader then ends, and
/// every call on the connection with `Aborted`.
fn keep_alive(s: &TcpStream) {
    use rustix::net::sockopt;
    let _ = sockopt::set_socket_keepalive(s, true);
    let _ = sockopt::set_tcp_keepidle(s, Duration::from_secs(30));
    let _ = sockopt::set_tcp_keepintvl(s, Duration::from_secs(10));
    let _ = sockopt::set_tcp_keepcnt(s, 3);
}

/// Grants flow-control credit for a received item when dropped.
pub struct ItemToken {
    granter: Weak<dyn Granter>,
    flow: u64,
    size: u32,
}

impl std::fmt::Debug for ItemToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ItemToken(flow {}, {} bytes)", self.flow, self.size)
    }
}

impl ItemToken {
    pub(crate) fn new(granter: Weak<dyn Granter>, flow: u64, size: u32) -> ItemToken {
        ItemToken {
            granter,
            flow,
            size,
        }
    }
}

impl Drop for ItemToken {
    fn drop(&mut self) {
        if let Some(g) = self.granter.upgrade() {
            g.consumed(self.flow, self.size);
        }
    }
}

/// A connection that grants credit for consumed items.
pub(crate) trait Granter: Send + Sync {
    fn consumed(&self, flow: u64, size: u32);
}

/// Why a server refused a connection during setup (logged, then closed).
#[derive(Debug)]
pub(crate) enum SetupError {
    Io(io::Error),
    Wire(WireError),
    NoSuchServer(u64),
    BadSession(u8),
    Refused(Error),
}

impl std::fmt::Display for SetupError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SetupError::Io(e) => write!(f, "{e}"),
            SetupError::Wire(e) => write!(f, "{e}"),
            SetupError::NoSuchServer(rid) => write!(f, "no server with routing id {rid:016x}"),
            SetupError::BadSession(k) => write!(f, "session kind {k} is not offered"),
            SetupError::Refused(e) => write!(f, "{}", e.msg()),
        }
    }
}

/// Reads the client's hello, finds the server it asks for with `find`
/// (which also says who the server is), answers, and sets up the session,
/// all within `timeout` however the client paces its bytes.
pub(crate) fn server_session<T>(
    stream: &mut TcpStream,
    timeout: Duration,
    write_timeout: Duration,
    find: impl FnOnce(u64) -> Option<(T, Arc<Principal>)>,
) -> std::result::Result<(T, Arc<Principal>, Session), SetupError> {
    let deadline = Instant::now() + timeout;
    let _ = stream.set_nodelay(true);
    keep_alive(stream);
    stream
        .set_write_timeout(Some(write_timeout))
        .map_err(SetupError::Io)?;
    let mut hello = [0u8; wire::HELLO_LEN];
    Deadline::new(stream, deadline)
        .read_exact(&mut hello)
        .map_err(SetupError::Io)?;
    let (version, session, rid) = wire::decode_hello(&hello).map_err(SetupError::Wire)?;
    let reply = |status: HelloStatus| wire::encode_hello(wire::VERSION, status as u8, rid);
    let answer = |status: HelloStatus, s: &mut TcpStream| {
        let _ = s.write_all(&reply(status));
    };
    if version != wire::VERSION {
        answer(HelloStatus::BadVersion, stream);
        return Err(SetupError::Wire(WireError::VersionMismatch {
            ours: wire::VERSION,
            theirs: version,
        }));
    }
    if session != wire::SessionKind::Noise as u8 {
        answer(HelloStatus::BadSession, stream);
        return Err(SetupError::BadSession(session));
    }
    let Some((found, principal)) = find(rid) else {
        answer(HelloStatus::NoSuchServer, stream);
        return Err(SetupError::NoSuchServer(rid));
    };
    answer(HelloStatus::Ok, stream);
    let prologue = crate::security::session::prologue(&hello, &reply(HelloStatus::Ok));
    let session = crate::security::session::server(stream, deadline, &principal, &prologue)
        .map_err(SetupError::Refused)?;
    stream.set_read_timeout(None).map_err(SetupError::Io)?;
    Ok((found, principal, session))
}

/// Reads frames from a session's byte stream.
pub(crate) struct FrameReader {
    reader: Box<dyn Read + Send>,
    max: usize,
    buf: Vec<u8>,
}

/// Why reading a frame stopped.
#[derive(Debug)]
pub(crate) enum ReadError {
    /// The peer closed the connection between frames.
    Eof,
    Io(io::Error),
    Wire(WireError),
}

impl std::fmt::Display for ReadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReadError::Eof => write!(f, "connection closed by the peer"),
            ReadError::Io(e) => write!(f, "{e}"),
            ReadError::Wire(e) => write!(f, "{e}"),
        }
    }
}

impl FrameReader {
    pub(crate) fn new(reader: Box<dyn Read + Send>, max: usize) -> FrameReader {
        FrameReader {
            reader,
            max,
            buf: Vec::new(),
        }
    }

    /// The next frame.
    pub(crate) fn next(&mut self) -> std::result::Result<Frame, ReadError> {
        let mut prefix = [0u8; 4];
        // Tell a clean end between frames from a cut inside one.
        loop {
            match self.reader.read(&mut prefix[..1]) {
                Ok(0) => return Err(ReadError::Eof),
                Ok(_) => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(ReadError::Io(e)),
            }
        }
        self.reader
            .read_exact(&mut prefix[1..])
            .map_err(ReadError::Io)?;
        let len = wire::frame_len(prefix, self.max).map_err(ReadError::Wire)?;
        // Memory grows with the bytes that arrive, not with the length a
        // peer announces (up to the frame limit on every connection).
        self.buf.clear();
        let got = (&mut self.reader)
            .take(len as u64)
            .read_to_end(&mut self.buf)
            .map_err(ReadError::Io)?;
        if got < len {
            return Err(ReadError::Io(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the connection ended inside a frame",
            )));
        }
        let frame = wire::decode(&self.buf).map_err(ReadError::Wire);
        if self.buf.capacity() > 64 * 1024 {
            self.buf = Vec::new();
        }
        frame
    }
}

/// The outgoing side of a connection.
pub(crate) struct Writer {
    outbox: Arc<Outbox<Box<dyn Sink>>>,
    /// Used to wake the reader when the connection is closed (none for an
    /// in-process link).
    stream: Option<TcpStream>,
}

impl Writer {
    pub(crate) fn new(sink: Box<dyn Sink>, stream: Option<TcpStream>, max_queued: usize) -> Writer {
        Writer {
            outbox: Outbox::new(sink, max_queued),
            stream,
        }
    }

    /// Sends encoded frames; `token` is dropped once they are written.
    pub(crate) fn send(&self, bytes: &[u8], token: Option<Box<dyn Send>>) -> Result<()> {
        self.outbox.push(bytes, token).map_err(|e| match e {
            PushError::Closed(why) => Error::aborted(format!("connection closed: {why}")),
            // The peer stopped reading. Dropping this frame (a response, a
            // credit, a cancel) and going on would leave the two ends
            // disagreeing; the connection ends instead, and every call on
            // it with Aborted.
            PushError::Full { .. } => {
                let why = e.to_string();
                log::warn!("{why}: closing the connection");
                self.abort(&why);
                Error::aborted(why)
            }
        })
    }

    /// Encodes with `f` and sends.
    pub(crate) fn send_with(&self, f: impl FnOnce(&mut Vec<u8>)) -> Result<()> {
        let mut buf = Vec::with_capacity(64);
        f(&mut buf);
        self.send(&buf, None)
    }

    /// Whether the peer has closed the connection (or reset it) where its
    /// reader has not yet seen it: a look at the socket that takes nothing
    /// from it and does not wait. False for in-process links.
    pub(crate) fn peer_closed(&self) -> bool {
        use rustix::net::{RecvFlags, recv};
        let Some(s) = &self.stream else {
            return false;
        };
        let mut byte = [0u8; 1];
        match recv(s, &mut byte, RecvFlags::PEEK | RecvFlags::DONTWAIT) {
            // The end of the stream: our peer closed.
            Ok((0, _)) => true,
            // Bytes waiting for the reader.
            Ok(_) => false,
            // Nothing yet: open.
            Err(e) if e == rustix::io::Errno::AGAIN || e == rustix::io::Errno::INTR => false,
            // Reset, or any other failure of the socket.
            Err(_) => true,
        }
    }

    /// Ends the connection without writing what is queued.
    pub(crate) fn abort(&self, why: &str) {
        if let Some(s) = &self.stream {
            let _ = s.shutdown(Shutdown::Both);
        }
        self.outbox.abort(why);
    }

    /// Closes the connection: flushes what is queued, then shuts the socket
    /// down, which ends the reader.
    pub(crate) fn close(&self, why: &str) {
        self.outbox.close(None, why);
        if let Some(s) = &self.stream {
            let _ = s.shutdown(Shutdown::Both);
        }
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.outbox.is_closed()
    }
}

/// One end of an in-process link: takes the frames the other end sends.
pub(crate) trait FrameHandler: Send + Sync {
    /// One frame; an error is a protocol violation and ends the link.
    fn frame(self: Arc<Self>, frame: Frame) -> std::result::Result<(), String>;
    /// The other end closed the link.
    fn closed(self: Arc<Self>, why: &str);
}

/// A listener of this process, which its clients reach without a socket
/// (see [`LocalSink`]); they find it by the address in its endpoints.
pub(crate) trait LocalListener: Send + Sync {
    /// Whether it still takes connections.
    fn is_open(&self) -> bool;

    /// Links a client of this process to the server `routing_id`: the
    /// client end is `client` (set once built), the caller is who `caller`
    /// says it is to this server (as over a socket, the server is known
    /// first). The server end, which the client must keep, and who the
    /// server is.
    fn attach(
        self: Arc<Self>,
        routing_id: u64,
        client: Arc<OnceLock<Weak<dyn FrameHandler>>>,
        caller: &dyn Fn(&RemoteIdentity) -> RemoteIdentity,
    ) -> Result<(Arc<dyn FrameHandler>, RemoteIdentity)>;
}

/// The listeners of this process, by the address in their endpoints.
fn local_listeners() -> &'static Mutex<HashMap<String, Weak<dyn LocalListener>>> {
    static LOCAL: OnceLock<Mutex<HashMap<String, Weak<dyn LocalListener>>>> = OnceLock::new();
    LOCAL.get_or_init(|| Mutex::new(HashMap::new()))
}

/// Makes `listener` reachable in this process at `address`.
pub(crate) fn register_local(address: &str, listener: Weak<dyn LocalListener>) {
    lock(local_listeners()).insert(address.to_string(), listener);
}

/// Makes `listener` unreachable in this process (unless another listener
/// took its address since).
pub(crate) fn unregister_local(address: &str, listener: *const ()) {
    let mut local = lock(local_listeners());
    if local
        .get(address)
        .is_some_and(|w| w.as_ptr() as *const () == listener)
    {
        local.remove(address);
    }
}

/// The open listener of this process at `address`, if there is one.
pub(crate) fn local_listener(address: &str) -> Option<Arc<dyn LocalListener>> {
    let l = lock(local_listeners()).get(address)?.upgrade()?;
    l.is_open().then_some(l)
}

/// The write side of an in-process link: frames go straight to the other
/// end's handler, on the writing thread (which holds no lock then: the
/// outbox releases it while writing). No socket, no cipher, no reader
/// thread: both ends are this process.
pub(crate) struct LocalSink {
    pub peer: Arc<OnceLock<Weak<dyn FrameHandler>>>,
    pub max_frame: usize,
}

impl Sink for LocalSink {
    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        let gone = || io::Error::new(io::ErrorKind::BrokenPipe, "the other end is gone");
        let peer = self.peer.get().and_then(|w| w.upgrade()).ok_or_else(gone)?;
        let mut at = 0;
        while at < buf.len() {
            let prefix: [u8; 4] = buf
                .get(at..at + 4)
                .and_then(|p| p.try_into().ok())
                .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "cut frame"))?;
            let len = wire::frame_len(prefix, self.max_frame)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
            let body = buf
                .get(at + 4..at + 4 + len)
                .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "cut frame"))?;
            at += 4 + len;
            let frame = wire::decode(body)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
            peer.clone().frame(frame).map_err(io::Error::other)?;
        }
        Ok(())
    }

    fn shutdown(&mut self) {
        if let Some(peer) = self.peer.get().and_then(|w| w.upgrade()) {
            peer.closed("the other end closed the link");
        }
    }
}

/// A client session that sends whatever bytes it is given inside the
/// encrypted stream: for testing how a server takes malformed frames from
/// a peer that did authenticate.
#[cfg(feature = "testing")]
pub struct RawSession {
    stream: TcpStream,
    session: Session,
}

#[cfg(feature = "testing")]
impl RawSession {
    /// Connects to the server `routing_id` at `address` as `principal`.
    pub fn connect(address: &str, routing_id: u64, principal: &Principal) -> Result<RawSession> {
        let (stream, session) = client_session(
            address,
            routing_id,
            std::time::Instant::now() + Duration::from_secs(10),
            Duration::from_secs(10),
            principal,
        )?;
        Ok(RawSession { stream, session })
    }

    /// Sends `bytes` as they are (encrypted, but not framed).
    pub fn send(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.session.sink.write_all(bytes)
    }

    /// Reads until the server closes the connection or `timeout` passes;
    /// whether it closed.
    pub fn closed_by_peer(&mut self, timeout: Duration) -> bool {
        let _ = self.stream.set_read_timeout(Some(timeout));
        let mut buf = [0u8; 4096];
        loop {
            match self.session.reader.read(&mut buf) {
                Ok(0) => return true,
                Ok(_) => continue,
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    return false;
                }
                Err(_) => return true,
            }
        }
    }
}
