//! The websocket layer of a pipe, on tungstenite: the read side is a
//! `WebSocketContext` owned by the pipe thread; the write side is an
//! [`Outbox`] that any thread pushes whole frames to, formatted here.
//! Control frames that tungstenite answers while reading (pong, close)
//! go through the same outbox, so frames never interleave.

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use tungstenite::error::ProtocolError;
use tungstenite::protocol::frame::coding::{CloseCode, Data, OpCode};
use tungstenite::protocol::frame::{CloseFrame, Frame};
use tungstenite::protocol::{Role, WebSocketConfig, WebSocketContext};
use tungstenite::{Error as WsError, Message};

use crate::outbox::{Outbox, PushError, Sink};

/// How long what is queued (then the close frame) may take to go out once
/// a pipe is being closed.
pub(crate) const CLOSE_FLUSH: Duration = Duration::from_secs(5);

/// The socket's write half, as the outbox's sink.
pub(crate) struct WsSink {
    stream: TcpStream,
    /// Set when the websocket is being closed: writing ends by then.
    close_by: Arc<OnceLock<Instant>>,
}

impl Sink for WsSink {
    fn write_all(&mut self, mut buf: &[u8]) -> io::Result<()> {
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
    fn shutdown(&mut self) {
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
    pub(crate) fn new(stream: TcpStream, max_queued: usize) -> io::Result<WsOut> {
        let close_by = Arc::new(OnceLock::new());
        let sink = WsSink {
            stream: stream.try_clone()?,
            close_by: close_by.clone(),
        };
        Ok(WsOut {
            outbox: Outbox::new(sink, max_queued),
            stream,
            close_by,
        })
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

/// The stream tungstenite reads from: the socket for reading, the outbox
/// for the control frames it writes.
pub(crate) struct WsIo {
    pub tcp: TcpStream,
    pub out: Arc<WsOut>,
}

impl Read for WsIo {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        // About to block: write what the pipe thread has batched.
        crate::outbox::flush_deferred();
        // The socket has a read timeout (the keepalive), and the kernel
        // does not restart such a read after a signal or a stop (SIGSTOP,
        // a debugger): it fails with EINTR. Read again.
        loop {
            match self.tcp.read(buf) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                r => return r,
            }
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
