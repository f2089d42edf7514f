//! The websocket layer of a pipe, on tungstenite: the read side is a
//! `WebSocketContext` owned by the pipe thread; the write side is an
//! [`Outbox`] that any thread pushes whole frames to, formatted here.
//! Control frames that tungstenite answers while reading (pong, close)
//! go through the same outbox, so frames never interleave.
//!
//! With TLS, one rustls state serves both directions: the reader reads
//! the socket without a lock and decrypts under the state's lock; a
//! writer encrypts under it into a buffer and writes that without it. The
//! outbox lets one writer at a time through, so records leave in the
//! order they were made; records TLS makes while reading (alerts, key
//! updates) are written by the next writer, woken for them.

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use tungstenite::error::ProtocolError;
use tungstenite::protocol::frame::coding::{CloseCode, Data, OpCode};
use tungstenite::protocol::frame::{CloseFrame, Frame};
use tungstenite::protocol::{Role, WebSocketConfig, WebSocketContext};
use tungstenite::{Error as WsError, Message};

use rustls::ServerConnection;

use crate::outbox::{Outbox, PushError, Sink};
use crate::sync::lock;
use crate::wsprd::tls::Transport;

/// How long what is queued (then the close frame) may take to go out once
/// a pipe is being closed.
pub(crate) const CLOSE_FLUSH: Duration = Duration::from_secs(5);

/// Most plaintext encrypted in one go before it is written out.
const TLS_CHUNK: usize = 64 * 1024;

/// The socket's write half, as the outbox's sink; with TLS, the frames
/// are encrypted (under the TLS state's lock) into a buffer that is then
/// written without the lock.
pub(crate) struct WsSink {
    stream: TcpStream,
    tls: Option<Arc<Mutex<ServerConnection>>>,
    /// Records made, waiting to be written.
    records: Vec<u8>,
    /// Set when the websocket is being closed: writing ends by then.
    close_by: Arc<OnceLock<Instant>>,
}

impl WsSink {
    /// Writes `buf` to the socket, by the close deadline once there is one.
    fn write_raw(&mut self, mut buf: &[u8]) -> io::Result<()> {
        let Some(by) = self.close_by.get() else {
            return self.stream.write_all(buf);
        };
        while !buf.is_empty() {
            let left = by.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "the close did not go out in time",
                ));
            }
            self.stream.set_write_timeout(Some(left))?;
            match self.stream.write(buf) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => buf = &buf[n..],
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Encrypts `plain` (none: only what the TLS state has of its own to
    /// send, such as alerts or key updates) and writes the records out.
    fn write_tls(&mut self, tls: &Mutex<ServerConnection>, plain: &[u8]) -> io::Result<()> {
        let mut chunks = plain.chunks(TLS_CHUNK);
        loop {
            let chunk = chunks.next();
            {
                let mut conn = lock(tls);
                if let Some(c) = chunk {
                    conn.writer().write_all(c)?;
                }
                while conn.wants_write() {
                    conn.write_tls(&mut self.records)?;
                }
            }
            let records = std::mem::take(&mut self.records);
            let res = self.write_raw(&records);
            self.records = records;
            self.records.clear();
            if self.records.capacity() > 32 * 1024 {
                self.records = Vec::new();
            }
            res?;
            if chunk.is_none() || chunks.len() == 0 {
                return Ok(());
            }
        }
    }
}

impl Sink for WsSink {
    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        match self.tls.clone() {
            None => self.write_raw(buf),
            Some(tls) => self.write_tls(&tls, buf),
        }
    }
    fn shutdown(&mut self) {
        if let Some(tls) = self.tls.clone() {
            // close_notify follows the close frame, by the same deadline.
            lock(&tls).send_close_notify();
            let _ = self.write_tls(&tls, &[]);
        }
        let _ = self.stream.shutdown(Shutdown::Write);
    }
}

/// The outgoing side of a websocket.
pub(crate) struct WsOut {
    outbox: Arc<Outbox<WsSink>>,
    stream: TcpStream,
    close_by: Arc<OnceLock<Instant>>,
}

fn text_frame(payload: Vec<u8>) -> Vec<u8> {
    let f = Frame::message(payload, OpCode::Data(Data::Text), true);
    let mut out = Vec::with_capacity(f.len());
    // Formatting into a Vec cannot fail.
    let _ = f.format(&mut out);
    out
}

impl WsOut {
    pub(crate) fn new(conn: &Transport, max_queued: usize) -> io::Result<WsOut> {
        let close_by = Arc::new(OnceLock::new());
        let sink = WsSink {
            stream: conn.tcp.try_clone()?,
            tls: conn.tls.clone(),
            records: Vec::new(),
            close_by: close_by.clone(),
        };
        Ok(WsOut {
            outbox: Outbox::new(sink, max_queued),
            stream: conn.tcp.try_clone()?,
            close_by,
        })
    }

    /// Has the TLS state's own records (alerts, key updates) written, in
    /// order with the frames.
    fn nudge(&self) {
        let _ = self.outbox.nudge();
    }

    /// Sends one text message; `token` is dropped once it is written.
    pub(crate) fn text(
        &self,
        json: Vec<u8>,
        token: Option<Box<dyn Send>>,
    ) -> Result<(), PushError> {
        self.outbox.push(&text_frame(json), token)
    }

    /// Queues one text message without writing it (see [`Outbox::push_later`]).
    pub(crate) fn text_later(
        &self,
        json: Vec<u8>,
        token: Option<Box<dyn Send>>,
    ) -> Result<(), PushError> {
        self.outbox.push_later(&text_frame(json), token)
    }

    /// Writes what is queued.
    pub(crate) fn kick(&self) -> Result<(), PushError> {
        self.outbox.kick()
    }

    /// Sends a ping.
    pub(crate) fn ping(&self) -> Result<(), PushError> {
        let mut out = Vec::new();
        let _ = Frame::ping(Vec::new()).format(&mut out);
        self.outbox.push(&out, None)
    }

    /// Closes the websocket with `code`, in this order: the outbox is
    /// marked closed with the close frame last in its queue (nothing can
    /// be queued after it), then the read side shuts, which ends the pipe's
    /// reader; the pipe thread then writes the queue out
    /// ([`WsOut::flush_closing`]) within [`CLOSE_FLUSH`], and the write side
    /// shuts. Whoever is writing when this is called may write it out
    /// instead; either way the frame goes.
    pub(crate) fn close(&self, code: u16, reason: &str) {
        // A close frame's reason is at most 123 bytes.
        let mut cut = reason.len().min(120);
        while !reason.is_char_boundary(cut) {
            cut -= 1;
        }
        let f = Frame::close(Some(CloseFrame {
            code: CloseCode::from(code),
            reason: reason[..cut].to_string().into(),
        }));
        let mut out = Vec::new();
        let _ = f.format(&mut out);
        if self.outbox.close_later(Some(&out), reason) {
            let _ = self.close_by.set(Instant::now() + CLOSE_FLUSH);
        }
        let _ = self.stream.shutdown(Shutdown::Read);
    }

    /// Writes out what is queued and shuts the write side, once the
    /// websocket is closed (on the pipe thread, after it stopped reading).
    pub(crate) fn flush_closing(&self) {
        let _ = self.close_by.set(Instant::now() + CLOSE_FLUSH);
        self.outbox.flush_now();
    }

    /// Ends the websocket at once, without what is queued (the peer is not
    /// reading it).
    pub(crate) fn abort(&self, why: &str) {
        let _ = self.stream.shutdown(Shutdown::Both);
        self.outbox.abort(why);
    }

    /// Ends the websocket after what is queued (the peer already said
    /// goodbye).
    pub(crate) fn finish(&self, why: &str) {
        self.outbox.close(None, why);
        let _ = self.stream.shutdown(Shutdown::Read);
    }

    /// Whether the websocket can no longer be written.
    pub(crate) fn is_closed(&self) -> bool {
        self.outbox.is_closed()
    }

    /// Raw bytes from tungstenite (pongs, close replies).
    fn raw(&self, bytes: &[u8]) -> io::Result<()> {
        self.outbox
            .push(bytes, None)
            .map_err(|e| io::Error::new(io::ErrorKind::BrokenPipe, e.to_string()))
    }
}

/// The stream tungstenite reads from: the socket (through TLS when the
/// pipe has it) for reading, the outbox for the control frames it writes.
pub(crate) struct WsIo {
    tcp: TcpStream,
    tls: Option<Arc<Mutex<ServerConnection>>>,
    out: Arc<WsOut>,
    /// With TLS: what the socket brings is read into this, held while the
    /// pipe is busy (so that reading is one blocking read, as without
    /// TLS) and given back once it has been silent for [`HOLD`] (an idle
    /// pipe holds none, and waits in `poll`).
    raw: Vec<u8>,
    /// `raw[start..end]`: read from the socket, not yet taken by TLS.
    start: usize,
    end: usize,
    /// Whether `raw` is held (the socket's read timeout is then the hold).
    busy: bool,
    /// The pipe's keepalive (the socket's read timeout as the pipe set it).
    keepalive: Option<Duration>,
    /// The socket's read timeout has been changed to the hold.
    hold_set: bool,
}

/// Bytes read from a TLS socket at once.
const TLS_READ: usize = 16 * 1024 + 512;

/// How long a TLS pipe's reader keeps its buffer with nothing to read.
const HOLD: Duration = Duration::from_secs(1);

impl WsIo {
    pub(crate) fn new(conn: Transport, out: Arc<WsOut>) -> WsIo {
        let keepalive = conn.tcp.read_timeout().ok().flatten();
        WsIo {
            tcp: conn.tcp,
            tls: conn.tls,
            out,
            raw: Vec::new(),
            start: 0,
            end: 0,
            busy: false,
            keepalive,
            hold_set: false,
        }
    }

    /// Reads the socket; a signal or a stop (SIGSTOP, a debugger) fails a
    /// read that has a timeout with EINTR, and it is read again.
    fn read_socket(tcp: &mut TcpStream, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            match tcp.read(buf) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                r => return r,
            }
        }
    }

    /// Plaintext from TLS: what it has decrypted, else what the socket
    /// brings (read without the lock), fed to it under the lock. What TLS
    /// has to send meanwhile goes out through the outbox, in order.
    fn read_tls(&mut self, tls: &Mutex<ServerConnection>, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            let mut conn = lock(tls);
            match conn.reader().read(buf) {
                // (0: the peer's close_notify.)
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
            if self.start < self.end {
                let mut pending = &self.raw[self.start..self.end];
                let before = pending.len();
                let fed = conn.read_tls(&mut pending);
                self.start += before - pending.len();
                let processed = fed.and_then(|_| {
                    conn.process_new_packets()
                        .map(drop)
                        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
                });
                let wants_write = conn.wants_write();
                drop(conn);
                if wants_write {
                    self.out.nudge();
                }
                processed?;
                continue;
            }
            drop(conn);
            // About to block: write what is deferred.
            crate::outbox::flush_deferred();
            let n = self.read_raw()?;
            if n == 0 {
                // The socket's end: TLS tells a close_notify (0) from a
                // cut (UnexpectedEof).
                let mut conn = lock(tls);
                let _ = conn.read_tls(&mut io::empty());
                let _ = conn.process_new_packets();
                return conn.reader().read(buf);
            }
        }
    }

    /// Reads what the socket brings into `raw` (0: its end): one blocking
    /// read while busy; once silent for [`HOLD`], the buffer goes and
    /// `poll` waits. `TimedOut` after the keepalive of silence.
    fn read_raw(&mut self) -> io::Result<usize> {
        let silent_since = Instant::now();
        loop {
            if !self.busy {
                self.wait_readable(silent_since)?;
                if !self.hold_set {
                    let hold = self.keepalive.map_or(HOLD, |k| k.min(HOLD));
                    self.tcp.set_read_timeout(Some(hold))?;
                    self.hold_set = true;
                }
                self.busy = true;
            }
            if self.raw.len() < TLS_READ {
                self.raw = vec![0; TLS_READ];
            }
            match Self::read_socket(&mut self.tcp, &mut self.raw) {
                Ok(n) => {
                    (self.start, self.end) = (0, n);
                    return Ok(n);
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    // Silent for the hold: an idle pipe holds no buffer.
                    self.raw = Vec::new();
                    (self.start, self.end) = (0, 0);
                    self.busy = false;
                    if self.keepalive.is_some_and(|k| silent_since.elapsed() >= k) {
                        return Err(io::ErrorKind::TimedOut.into());
                    }
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Waits until the socket has something to read (or its end), for at
    /// most the keepalive since `since`: `TimedOut` then.
    fn wait_readable(&self, since: Instant) -> io::Result<()> {
        use rustix::event::{PollFd, PollFlags, Timespec, poll};
        let deadline = self.keepalive.map(|k| since + k);
        loop {
            let timeout = match deadline {
                None => None,
                Some(d) => {
                    let left = d.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return Err(io::ErrorKind::TimedOut.into());
                    }
                    Some(Timespec {
                        tv_sec: i64::try_from(left.as_secs()).unwrap_or(i64::MAX),
                        tv_nsec: i64::from(left.subsec_nanos()),
                    })
                }
            };
            let mut fds = [PollFd::new(&self.tcp, PollFlags::IN)];
            match poll(&mut fds, timeout.as_ref()) {
                Ok(0) => {}
                Ok(_) => return Ok(()),
                Err(rustix::io::Errno::INTR) => {}
                Err(e) => return Err(e.into()),
            }
        }
    }
}

impl Read for WsIo {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self.tls.clone() {
            None => {
                // About to block: write what the pipe thread has batched.
                crate::outbox::flush_deferred();
                Self::read_socket(&mut self.tcp, buf)
            }
            Some(tls) => self.read_tls(&tls, buf),
        }
    }
}

impl Write for WsIo {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.out.raw(buf)?;
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The read side of a server websocket.
pub(crate) struct WsReader {
    ctx: WebSocketContext,
    io: WsIo,
}

/// What reading produced.
pub(crate) enum WsEvent {
    /// A text message (tungstenite's buffer, not a copy).
    Text(tungstenite::Utf8Bytes),
    Binary,
    /// A read timeout passed with nothing read.
    Idle,
    /// Ping or pong: the peer is alive.
    Alive,
    /// The peer closed the websocket.
    Closed,
}

/// Why reading stopped for good.
pub(crate) enum ReadFail {
    /// A message over the size limit.
    TooBig(String),
    /// The peer broke the websocket protocol: the close code to answer
    /// with (1002, or 1007 for text that is not UTF-8), and what it did.
    Violation(u16, String),
    /// Anything else: the connection failed or ended without a close.
    Broken(String),
}

impl WsReader {
    pub(crate) fn new(io: WsIo, leftover: Vec<u8>, max_message: usize) -> WsReader {
        let mut config = WebSocketConfig::default();
        config.read_buffer_size = 4096;
        config.write_buffer_size = 0;
        config.max_message_size = Some(max_message);
        config.max_frame_size = Some(max_message);
        WsReader {
            ctx: WebSocketContext::from_partially_read(leftover, Role::Server, Some(config)),
            io,
        }
    }

    pub(crate) fn read(&mut self) -> Result<WsEvent, ReadFail> {
        match self.ctx.read(&mut self.io) {
            Ok(Message::Text(t)) => Ok(WsEvent::Text(t)),
            Ok(Message::Binary(_)) => Ok(WsEvent::Binary),
            Ok(Message::Ping(_)) | Ok(Message::Pong(_)) | Ok(Message::Frame(_)) => {
                Ok(WsEvent::Alive)
            }
            Ok(Message::Close(_)) => {
                // Send tungstenite's close reply now.
                let _ = self.ctx.flush(&mut self.io);
                Ok(WsEvent::Closed)
            }
            Err(WsError::ConnectionClosed) => Ok(WsEvent::Closed),
            Err(WsError::Io(e))
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                Ok(WsEvent::Idle)
            }
            Err(WsError::Capacity(e)) => Err(ReadFail::TooBig(e.to_string())),
            // The connection ended without a close frame: nobody to tell.
            Err(e @ WsError::Protocol(ProtocolError::ResetWithoutClosingHandshake)) => {
                Err(ReadFail::Broken(e.to_string()))
            }
            Err(WsError::Protocol(e)) => Err(ReadFail::Violation(1002, e.to_string())),
            Err(WsError::Utf8(e)) => Err(ReadFail::Violation(
                1007,
                format!("text that is not UTF-8: {e}"),
            )),
            Err(e) => Err(ReadFail::Broken(e.to_string())),
        }
    }
}
