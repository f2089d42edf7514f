//! The websocket layer of a pipe, on tungstenite: the read side is a
//! `WebSocketContext` owned by the pipe thread; the write side is an
//! [`Outbox`] that any thread pushes whole frames to, formatted here.
//! Control frames that tungstenite answers while reading (pong, close)
//! go through the same outbox, so frames never interleave.

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::Arc;

use tungstenite::protocol::frame::coding::{CloseCode, Data, OpCode};
use tungstenite::protocol::frame::{CloseFrame, Frame};
use tungstenite::protocol::{Role, WebSocketConfig, WebSocketContext};
use tungstenite::{Error as WsError, Message};

use crate::outbox::{Outbox, PushError, Sink};

/// The socket's write half, as the outbox's sink.
pub(crate) struct WsSink(pub TcpStream);

impl Sink for WsSink {
    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        self.0.write_all(buf)
    }
    fn shutdown(&mut self) {
        let _ = self.0.shutdown(Shutdown::Write);
    }
}

/// The outgoing side of a websocket.
pub(crate) struct WsOut {
    outbox: Arc<Outbox<WsSink>>,
    stream: TcpStream,
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
        Ok(WsOut {
            outbox: Outbox::new(WsSink(stream.try_clone()?), max_queued),
            stream,
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

    /// Sends a close frame with `code` after what is queued; the write
    /// side shuts once it is out, and the read side shuts now (which ends
    /// the pipe's reader).
    pub(crate) fn close(&self, code: u16, reason: &str) {
        let f = Frame::close(Some(CloseFrame {
            code: CloseCode::from(code),
            reason: reason.chars().take(100).collect::<String>().into(),
        }));
        let mut out = Vec::new();
        let _ = f.format(&mut out);
        // Reading stops first: the pipe takes no more requests while what
        // is queued (then the close frame) is written.
        let _ = self.stream.shutdown(Shutdown::Read);
        self.outbox.close(Some(&out), reason);
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
    /// Anything else: I/O error, protocol violation.
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
            Err(e) => Err(ReadFail::Broken(e.to_string())),
        }
    }
}
