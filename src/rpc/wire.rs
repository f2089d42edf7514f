//! The RPC wire format: the connection preamble and the frames that follow
//! it. This module is pure encoding and decoding; the connection
//! (`rpc::conn`) does the I/O. The layout is documented in `docs/wire.md`.
//!
//! Every frame is `length: u32 BE` followed by `length` bytes of body:
//! `kind: u8`, `flow: u64 BE`, then the kind's fields. Strings are
//! `len: u16 BE` + UTF-8; blobs are `len: u32 BE` + bytes; JSON values are
//! blobs holding JSON text.

use std::fmt;

use serde_json::Value;

use crate::error::Error;

/// The protocol version this build speaks.
pub const VERSION: u16 = 1;
/// The first bytes on every connection, in both directions.
pub const MAGIC: &[u8; 4] = b"WSPR";
/// Size of the hello and hello-reply messages.
pub const HELLO_LEN: usize = 15;
/// The default limit on a frame's body, in bytes.
pub const DEFAULT_MAX_FRAME: usize = 4 << 20;

/// How the session after the hello is protected. (Kind 0, frames in the
/// clear, is not offered; kind 1, the session before the hellos were bound
/// to it and the server proved first, is retired.)
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum SessionKind {
    /// A Noise handshake bound to both hellos and signed blessings
    /// authenticate both ends, the server first; every byte after is
    /// encrypted (see `security::session`).
    Noise = 2,
}

/// The client's first message. (Its layout, for the reader: the frames
/// are encoded and decoded by [`encode_hello`] and [`decode_hello`].)
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(not(feature = "testing"), allow(dead_code))]
pub struct Hello {
    /// The client's protocol version.
    pub version: u16,
    /// The session protection the client asks for.
    pub session: u8,
    /// The server the client wants (0: whichever listens here).
    pub routing_id: u64,
}

/// The server's answer to a [`Hello`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum HelloStatus {
    /// Go on with the session.
    Ok = 0,
    /// The server does not speak the client's version.
    BadVersion = 1,
    /// No server with that routing id listens here.
    NoSuchServer = 2,
    /// The server does not offer the asked session protection.
    BadSession = 3,
}

/// Encodes a hello (client) or hello reply (server): magic, version, a
/// status or session byte, a routing id.
pub fn encode_hello(version: u16, byte: u8, routing_id: u64) -> [u8; HELLO_LEN] {
    let mut out = [0u8; HELLO_LEN];
    out[..4].copy_from_slice(MAGIC);
    out[4..6].copy_from_slice(&version.to_be_bytes());
    out[6] = byte;
    out[7..].copy_from_slice(&routing_id.to_be_bytes());
    out
}

/// Decodes a hello or hello reply into (version, byte, routing id).
pub fn decode_hello(buf: &[u8; HELLO_LEN]) -> Result<(u16, u8, u64), WireError> {
    if &buf[..4] != MAGIC {
        return Err(WireError::BadMagic);
    }
    let version = u16::from_be_bytes([buf[4], buf[5]]);
    let mut rid = [0u8; 8];
    rid.copy_from_slice(&buf[7..]);
    Ok((version, buf[6], u64::from_be_bytes(rid)))
}

/// Why bytes could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WireError {
    /// The connection did not start with `WSPR`.
    BadMagic,
    /// The peer speaks another protocol version.
    VersionMismatch {
        /// Our version.
        ours: u16,
        /// The peer's version.
        theirs: u16,
    },
    /// A frame's length prefix is over the limit.
    FrameTooLarge {
        /// The announced size.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// A frame ended before its fields did.
    Truncated {
        /// What was being read.
        field: &'static str,
    },
    /// A frame has bytes after its last field.
    TrailingBytes {
        /// How many.
        count: usize,
    },
    /// An unknown frame kind.
    UnknownKind(u8),
    /// A field is not what its kind allows.
    BadField {
        /// Which field.
        field: &'static str,
        /// What was wrong.
        why: String,
    },
}

impl fmt::Display for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WireError::BadMagic => write!(f, "the peer does not speak the wspr protocol"),
            WireError::VersionMismatch { ours, theirs } => {
                write!(
                    f,
                    "protocol version {theirs} is not supported (this side speaks {ours})"
                )
            }
            WireError::FrameTooLarge { size, max } => {
                write!(f, "frame of {size} bytes is over the limit of {max}")
            }
            WireError::Truncated { field } => write!(f, "frame ended inside {field}"),
            WireError::TrailingBytes { count } => {
                write!(f, "{count} bytes after the frame's last field")
            }
            WireError::UnknownKind(k) => write!(f, "unknown frame kind {k}"),
            WireError::BadField { field, why } => write!(f, "bad {field}: {why}"),
        }
    }
}

impl std::error::Error for WireError {}

/// Frame kinds.
mod kind {
    pub const REQUEST: u8 = 1;
    pub const RESPONSE: u8 = 2;
    pub const ITEM: u8 = 3;
    pub const CLOSE_SEND: u8 = 4;
    pub const CANCEL: u8 = 5;
    pub const CREDIT: u8 = 6;
}

/// A decoded frame.
#[derive(Debug, Clone, PartialEq)]
pub enum Frame {
    /// Starts a call on a new flow.
    Request(Request),
    /// Ends a call: results or an error.
    Response {
        /// The call's flow.
        flow: u64,
        /// The results, or the error.
        result: Result<Vec<Value>, Error>,
    },
    /// One stream item, in either direction.
    Item {
        /// The call's flow.
        flow: u64,
        /// The item.
        value: Value,
        /// Its encoded size, which is what flow-control credit counts.
        size: u32,
    },
    /// The sender will send no more items on this flow.
    CloseSend {
        /// The call's flow.
        flow: u64,
    },
    /// The client gives up on the call.
    Cancel {
        /// The call's flow.
        flow: u64,
    },
    /// The receiver has consumed `bytes` of items: the sender may send that
    /// much more.
    Credit {
        /// The call's flow.
        flow: u64,
        /// Bytes of item payload consumed.
        bytes: u32,
    },
}

impl Frame {
    /// The flow a frame belongs to.
    #[cfg(any(test, feature = "testing"))]
    pub fn flow(&self) -> u64 {
        match self {
            Frame::Request(r) => r.flow,
            Frame::Response { flow, .. }
            | Frame::Item { flow, .. }
            | Frame::CloseSend { flow }
            | Frame::Cancel { flow }
            | Frame::Credit { flow, .. } => *flow,
        }
    }
}

/// A call's first frame.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    /// The flow id the client chose.
    pub flow: u64,
    /// Milliseconds left of the caller's deadline (0: none).
    pub timeout_ms: u32,
    /// The method, UpperCamelCase.
    pub method: String,
    /// The part of the name the server resolves.
    pub suffix: String,
    /// The name the caller used.
    pub name: String,
    /// The arguments.
    pub args: Vec<Value>,
}

fn begin(out: &mut Vec<u8>, kind: u8, flow: u64) -> usize {
    let start = out.len();
    out.extend_from_slice(&[0, 0, 0, 0, kind]);
    out.extend_from_slice(&flow.to_be_bytes());
    start
}

fn finish(out: &mut [u8], start: usize) {
    let len = (out.len() - start - 4) as u32;
    out[start..start + 4].copy_from_slice(&len.to_be_bytes());
}

/// The stream credit window of every flow, in bytes: what a sender may
/// send before credit comes back. Part of the protocol, not a setting:
/// two ends with different windows would disagree about what is allowed.
pub const STREAM_WINDOW: u32 = 256 * 1024;

/// Longest string field (a method, a suffix, an error id), in bytes.
pub const MAX_STR: usize = u16::MAX as usize;

/// A string field. Callers refuse what is longer than [`MAX_STR`] where it
/// matters (a method); an error id is cut, at a character's boundary.
fn put_str(out: &mut Vec<u8>, s: &str) {
    let bytes = &s.as_bytes()[..s.floor_char_boundary(MAX_STR)];
    out.extend_from_slice(&(bytes.len() as u16).to_be_bytes());
    out.extend_from_slice(bytes);
}

fn put_blob(out: &mut Vec<u8>, b: &[u8]) {
    out.extend_from_slice(&(b.len() as u32).to_be_bytes());
    out.extend_from_slice(b);
}

fn put_json<T: serde::Serialize + ?Sized>(out: &mut Vec<u8>, v: &T) {
    let at = out.len();
    out.extend_from_slice(&[0, 0, 0, 0]);
    // Serializing a serde_json::Value into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, v);
    let len = (out.len() - at - 4) as u32;
    out[at..at + 4].copy_from_slice(&len.to_be_bytes());
}

/// Appends a Request frame.
#[cfg(any(test, feature = "testing"))]
pub fn encode_request(out: &mut Vec<u8>, r: &Request) {
    encode_request_parts(
        out,
        r.flow,
        r.timeout_ms,
        &r.method,
        &r.suffix,
        &r.name,
        &r.args,
    );
}

/// Appends a Request frame from borrowed parts (no copy of the arguments).
pub fn encode_request_parts(
    out: &mut Vec<u8>,
    flow: u64,
    timeout_ms: u32,
    method: &str,
    suffix: &str,
    name: &str,
    args: &[Value],
) {
    let s = begin(out, kind::REQUEST, flow);
    out.extend_from_slice(&timeout_ms.to_be_bytes());
    put_str(out, method);
    put_str(out, suffix);
    put_str(out, name);
    put_json(out, args);
    finish(out, s);
}

/// Appends a Response frame.
pub fn encode_response(out: &mut Vec<u8>, flow: u64, result: &Result<Vec<Value>, Error>) {
    let s = begin(out, kind::RESPONSE, flow);
    match result {
        Ok(values) => {
            out.push(0);
            put_json(out, values);
        }
        Err(e) => {
            out.push(1);
            put_str(out, e.id());
            put_blob(out, e.msg().as_bytes());
        }
    }
    finish(out, s);
}

/// Appends an Item frame holding already-encoded JSON; returns the item's
/// size as credit counts it.
#[cfg(any(test, feature = "testing"))]
pub fn encode_item_json(out: &mut Vec<u8>, flow: u64, json: &[u8]) -> u32 {
    let s = begin(out, kind::ITEM, flow);
    put_blob(out, json);
    finish(out, s);
    json.len() as u32
}

/// An Item frame's body before its JSON: kind, flow, the JSON's length.
const ITEM_HEAD: usize = 1 + 8 + 4;

/// Appends an Item frame holding `item`, written in place; returns the
/// item's size (its JSON's bytes), or `BadArg` if the frame would be over
/// `max_frame` (then nothing is appended).
pub fn encode_item<T: serde::Serialize + ?Sized>(
    out: &mut Vec<u8>,
    flow: u64,
    item: &T,
    max_frame: usize,
) -> Result<u32, crate::error::Error> {
    let s = begin(out, kind::ITEM, flow);
    put_json(out, item);
    finish(out, s);
    let body = out.len() - s - 4;
    if body > max_frame {
        out.truncate(s);
        return Err(crate::error::Error::bad_arg(format!(
            "stream item of {} bytes is over the frame limit of {max_frame}",
            body - ITEM_HEAD
        )));
    }
    Ok((body - ITEM_HEAD) as u32)
}

/// Appends a CloseSend frame.
pub fn encode_close_send(out: &mut Vec<u8>, flow: u64) {
    let s = begin(out, kind::CLOSE_SEND, flow);
    finish(out, s);
}

/// Appends a Cancel frame.
pub fn encode_cancel(out: &mut Vec<u8>, flow: u64) {
    let s = begin(out, kind::CANCEL, flow);
    finish(out, s);
}

/// Appends a Credit frame.
pub fn encode_credit(out: &mut Vec<u8>, flow: u64, bytes: u32) {
    let s = begin(out, kind::CREDIT, flow);
    out.extend_from_slice(&bytes.to_be_bytes());
    finish(out, s);
}

/// Reads a frame length prefix, checking it against `max`.
pub fn frame_len(prefix: [u8; 4], max: usize) -> Result<usize, WireError> {
    let size = u32::from_be_bytes(prefix) as usize;
    if size > max {
        return Err(WireError::FrameTooLarge { size, max });
    }
    if size < 9 {
        return Err(WireError::Truncated {
            field: "frame header",
        });
    }
    Ok(size)
}

struct Cursor<'a> {
    buf: &'a [u8],
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize, field: &'static str) -> Result<&'a [u8], WireError> {
        if self.buf.len() < n {
            return Err(WireError::Truncated { field });
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Ok(head)
    }
    fn u8(&mut self, field: &'static str) -> Result<u8, WireError> {
        Ok(self.take(1, field)?[0])
    }
    fn u32(&mut self, field: &'static str) -> Result<u32, WireError> {
        let b = self.take(4, field)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn u64(&mut self, field: &'static str) -> Result<u64, WireError> {
        let mut a = [0u8; 8];
        a.copy_from_slice(self.take(8, field)?);
        Ok(u64::from_be_bytes(a))
    }
    fn str(&mut self, field: &'static str) -> Result<String, WireError> {
        let b = self.take(2, field)?;
        let n = u16::from_be_bytes([b[0], b[1]]) as usize;
        let bytes = self.take(n, field)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| WireError::BadField {
            field,
            why: "not UTF-8".into(),
        })
    }
    fn blob(&mut self, field: &'static str) -> Result<&'a [u8], WireError> {
        let n = self.u32(field)? as usize;
        self.take(n, field)
    }
    fn json(&mut self, field: &'static str) -> Result<(Value, u32), WireError> {
        let b = self.blob(field)?;
        let v = serde_json::from_slice(b).map_err(|e| WireError::BadField {
            field,
            why: e.to_string(),
        })?;
        Ok((v, b.len() as u32))
    }
    fn end(self) -> Result<(), WireError> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(WireError::TrailingBytes {
                count: self.buf.len(),
            })
        }
    }
}

/// Decodes one frame body (without its length prefix).
pub fn decode(body: &[u8]) -> Result<Frame, WireError> {
    let mut c = Cursor { buf: body };
    let k = c.u8("frame kind")?;
    let flow = c.u64("flow id")?;
    let frame = match k {
        kind::REQUEST => {
            let timeout_ms = c.u32("timeout")?;
            let method = c.str("method")?;
            let suffix = c.str("suffix")?;
            let name = c.str("name")?;
            let (args, _) = c.json("arguments")?;
            let Value::Array(args) = args else {
                return Err(WireError::BadField {
                    field: "arguments",
                    why: "not an array".into(),
                });
            };
            Frame::Request(Request {
                flow,
                timeout_ms,
                method,
                suffix,
                name,
                args,
            })
        }
        kind::RESPONSE => {
            let result = match c.u8("status")? {
                0 => match c.json("results")?.0 {
                    Value::Array(v) => Ok(v),
                    _ => {
                        return Err(WireError::BadField {
                            field: "results",
                            why: "not an array".into(),
                        });
                    }
                },
                1 => {
                    let id = c.str("error id")?;
                    let msg = String::from_utf8_lossy(c.blob("error message")?).into_owned();
                    Err(Error::new(id, msg))
                }
                s => {
                    return Err(WireError::BadField {
                        field: "status",
                        why: format!("unknown status {s}"),
                    });
                }
            };
            Frame::Response { flow, result }
        }
        kind::ITEM => {
            let (value, size) = c.json("item")?;
            Frame::Item { flow, value, size }
        }
        kind::CLOSE_SEND => Frame::CloseSend { flow },
        kind::CANCEL => Frame::Cancel { flow },
        kind::CREDIT => Frame::Credit {
            flow,
            bytes: c.u32("credit")?,
        },
        other => return Err(WireError::UnknownKind(other)),
    };
    c.end()?;
    Ok(frame)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn round(out: &[u8]) -> Frame {
        let len = frame_len(out[..4].try_into().unwrap(), DEFAULT_MAX_FRAME).unwrap();
        assert_eq!(len, out.len() - 4);
        decode(&out[4..]).unwrap()
    }

    #[test]
    fn every_frame_round_trips() {
        let req = Request {
            flow: 9,
            timeout_ms: 1500,
            method: "Add".into(),
            suffix: "a/b".into(),
            name: "demo/adder/a/b".into(),
            args: vec![json!(2), json!({"x": [1, "é"]})],
        };
        let mut out = Vec::new();
        encode_request(&mut out, &req);
        assert_eq!(round(&out), Frame::Request(req));

        for result in [Ok(vec![json!(5)]), Err(Error::bad_arg("divide by zero"))] {
            let mut out = Vec::new();
            encode_response(&mut out, 3, &result);
            assert_eq!(round(&out), Frame::Response { flow: 3, result });
        }
        let mut out = Vec::new();
        let size = encode_item_json(&mut out, 4, b"[1,2]");
        assert_eq!(size, 5);
        assert_eq!(
            round(&out),
            Frame::Item {
                flow: 4,
                value: json!([1, 2]),
                size: 5
            }
        );
        let mut out = Vec::new();
        encode_close_send(&mut out, 5);
        encode_cancel(&mut out, 6);
        encode_credit(&mut out, 7, 1024);
        let (a, rest) = out.split_at(13);
        let (b, c) = rest.split_at(13);
        assert_eq!(round(a), Frame::CloseSend { flow: 5 });
        assert_eq!(round(b), Frame::Cancel { flow: 6 });
        assert_eq!(
            round(c),
            Frame::Credit {
                flow: 7,
                bytes: 1024
            }
        );
    }

    #[test]
    fn an_item_is_written_in_place_and_refused_over_the_frame_limit() {
        let mut out = Vec::new();
        let size = encode_item(&mut out, 4, &json!([1, 2]), DEFAULT_MAX_FRAME).unwrap();
        assert_eq!(size, 5);
        let mut same = Vec::new();
        encode_item_json(&mut same, 4, b"[1,2]");
        assert_eq!(out, same);
        let big = json!("x".repeat(2000));
        let e = encode_item(&mut out, 5, &big, 1024).unwrap_err();
        assert!(e.msg().contains("over the frame limit of 1024"), "{e}");
        assert_eq!(out, same, "nothing appended");
    }

    #[test]
    fn an_overlong_error_id_is_cut_at_a_character() {
        // JavaScript may give any error id; one longer than a string
        // field is cut, and what goes still decodes.
        let id = "é".repeat(MAX_STR);
        let mut out = Vec::new();
        encode_response(&mut out, 3, &Err(Error::new(&id, "x")));
        let Frame::Response { result: Err(e), .. } = round(&out) else {
            panic!("not an error response");
        };
        assert!(e.id().len() <= MAX_STR && id.starts_with(e.id()));
    }

    #[test]
    fn bad_frames_are_errors_not_panics() {
        assert!(matches!(
            frame_len([0, 0x50, 0, 0], DEFAULT_MAX_FRAME),
            Err(WireError::FrameTooLarge { .. })
        ));
        assert!(decode(&[]).is_err());
        assert_eq!(
            decode(&[99, 0, 0, 0, 0, 0, 0, 0, 1]),
            Err(WireError::UnknownKind(99))
        );
        let mut out = Vec::new();
        encode_cancel(&mut out, 1);
        out.push(0);
        assert_eq!(
            decode(&out[4..]),
            Err(WireError::TrailingBytes { count: 1 })
        );
        let mut out = Vec::new();
        encode_item_json(&mut out, 1, b"{nope");
        assert!(matches!(decode(&out[4..]), Err(WireError::BadField { .. })));
        // Every truncation of a valid request is an error.
        let mut out = Vec::new();
        encode_request(
            &mut out,
            &Request {
                flow: 1,
                timeout_ms: 0,
                method: "M".into(),
                suffix: "s".into(),
                name: "n".into(),
                args: vec![json!(1)],
            },
        );
        for cut in 0..out.len() - 4 {
            assert!(decode(&out[4..4 + cut]).is_err());
        }
    }

    #[test]
    fn hello_round_trips() {
        let h = encode_hello(VERSION, 1, 42);
        assert_eq!(decode_hello(&h), Ok((VERSION, 1, 42)));
        let mut bad = h;
        bad[0] = b'X';
        assert_eq!(decode_hello(&bad), Err(WireError::BadMagic));
    }
}
