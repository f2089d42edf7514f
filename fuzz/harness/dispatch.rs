//! Websocket message decoding and dispatch, end to end: one daemon per
//! process (with the demo object), one pipe to it. Each input goes to the
//! daemon as one text frame; then a known-good call (the demo adder's
//! `add(1, 2)`) must still be answered on that pipe. A panic anywhere in
//! the daemon, a pipe the daemon closes for no good reason, a wrong answer
//! or no answer within [`ANSWER_WITHIN`] is a finding (this panics).
//!
//! Shared, through `#[path]`, by the `dispatch` fuzz target and by
//! `tests/fuzz_regressions.rs`, so that the regression test replays inputs
//! exactly as the fuzzer sent them.
//!
//! The daemon keeps state between inputs (servers, calls, identities,
//! mount table entries), so an input can act on what earlier ones left:
//! the pipe is replaced every [`INPUTS_PER_PIPE`] inputs, which bounds that
//! state and exercises the pipe's clean-up.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tungstenite::{Message, WebSocket};

/// The largest frame the harness's daemon accepts (the smallest the daemon
/// allows), so that inputs reach the oversized-frame path (close 1009).
pub const MAX_MESSAGE_BYTES: usize = 1024;
/// How long the daemon has to answer the known-good call.
pub const ANSWER_WITHIN: Duration = Duration::from_secs(10);
/// Inputs sent on one pipe before it is closed and replaced.
pub const INPUTS_PER_PIPE: usize = 500;
/// First flow id of the known-good calls: odd, and far above the ids
/// inputs are likely to use.
const FIRST_PROBE_ID: u64 = (1 << 52) + 1;

struct Harness {
    // Never dropped: the daemon lives as long as the process.
    daemon: wspr::wsprd::Daemon,
    ws: Option<WebSocket<Retrying>>,
    /// The demo adder's rooted name. The known-good call uses it rather
    /// than `demo/adder`, because inputs may legitimately unmount or
    /// remount that name (the mount table is open).
    adder: String,
    next_id: u64,
    inputs: usize,
}

/// The harness's socket, whose reads and writes are retried when a signal
/// interrupts them: LeakSanitizer's checks stop every thread with ptrace,
/// and a read with a timeout then fails with `Interrupted`.
struct Retrying(TcpStream);

fn retry<T>(mut f: impl FnMut() -> io::Result<T>) -> io::Result<T> {
    loop {
        match f() {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            r => return r,
        }
    }
}

impl Read for Retrying {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        retry(|| self.0.read(buf))
    }
}

impl Write for Retrying {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        retry(|| self.0.write(buf))
    }
    fn flush(&mut self) -> io::Result<()> {
        retry(|| self.0.flush())
    }
}

/// What reading the known-good call's answer found.
enum Answer {
    Ok,
    /// The pipe closed: the close code, if a close frame came, and what
    /// the websocket said.
    Closed(Option<u16>, String),
}

/// Sends `data` to the daemon as one text frame, then checks that the
/// daemon still answers a known-good call. Panics on a finding.
pub fn run(data: &[u8]) {
    let mut h = harness().lock().unwrap_or_else(|p| p.into_inner());
    h.one(data);
}

fn harness() -> &'static Mutex<Harness> {
    static H: OnceLock<Mutex<Harness>> = OnceLock::new();
    H.get_or_init(|| Mutex::new(Harness::start()))
}

impl Harness {
    fn start() -> Harness {
        let mut c = wspr::wsprd::Config::default();
        c.listen = "127.0.0.1:0".into();
        c.serve_demo = true;
        c.max_message_bytes = MAX_MESSAGE_BYTES;
        let daemon = wspr::wsprd::Daemon::spawn(c).expect("the daemon starts");
        let mut h = Harness {
            daemon,
            ws: None,
            adder: String::new(),
            next_id: FIRST_PROBE_ID,
            inputs: 0,
        };
        let id = h.id();
        let resolve =
            json!({"id": id, "type": 13, "data": {"method": "resolve", "name": "demo/adder"}});
        h.pipe()
            .send(Message::text(resolve.to_string()))
            .expect("send resolve");
        let m = h
            .answer(id)
            .unwrap_or_else(|e| panic!("resolving demo/adder: {e:?}"));
        assert_eq!(m["type"], 0, "resolve demo/adder: {m}");
        h.adder = m["message"][0]
            .as_str()
            .expect("a rooted name for demo/adder")
            .to_string();
        h
    }

    fn id(&mut self) -> u64 {
        let id = self.next_id;
        self.next_id += 2;
        id
    }

    /// The open pipe, opening one if there is none.
    fn pipe(&mut self) -> &mut WebSocket<Retrying> {
        if self.ws.is_none() {
            let addr = self.daemon.http_addr();
            let stream = TcpStream::connect(addr).expect("connect to the daemon");
            stream.set_nodelay(true).expect("nodelay");
            stream
                .set_read_timeout(Some(ANSWER_WITHIN))
                .expect("read timeout");
            let (ws, _) = tungstenite::client(format!("ws://{addr}/ws"), Retrying(stream))
                .expect("websocket upgrade");
            self.ws = Some(ws);
        }
        self.ws.as_mut().expect("a pipe")
    }

    fn one(&mut self, data: &[u8]) {
        if self.inputs > 0
            && self.inputs.is_multiple_of(INPUTS_PER_PIPE)
            && let Some(mut ws) = self.ws.take()
        {
            let _ = ws.close(None);
            let _ = ws.flush();
        }
        self.inputs += 1;
        let text = String::from_utf8_lossy(data).into_owned();
        let too_big = text.len() > MAX_MESSAGE_BYTES;
        let sent = self.pipe().send(Message::text(text.clone()));
        let answer = match sent {
            Ok(()) => self.probe(),
            // The daemon may close the pipe while the frame is still
            // being written: only an oversized frame may make it do that.
            Err(e) => Answer::Closed(None, format!("sending the input: {e}")),
        };
        match answer {
            Answer::Ok => {}
            Answer::Closed(code, why) => {
                // Closing is the right answer to an oversized frame (with
                // 1009, when the close frame arrives before the reset).
                assert!(
                    too_big && matches!(code, None | Some(1009)),
                    "the daemon closed the pipe (code {code:?}, {why}) after {text:?}"
                );
                self.ws = None;
                // A new pipe must work.
                assert!(
                    matches!(self.probe(), Answer::Ok),
                    "a new pipe after a close does not answer"
                );
            }
        }
    }

    /// Calls the demo adder on the pipe and checks the answer.
    fn probe(&mut self) -> Answer {
        // An input may have taken the probe's id for a flow of its own;
        // then the next id is tried.
        for _ in 0..3 {
            let id = self.id();
            let call = json!({"id": id, "type": 0, "data": {
                "name": self.adder, "method": "add", "inArgs": [1, 2], "numOutArgs": 2,
            }});
            if let Err(e) = self.pipe().send(Message::text(call.to_string())) {
                return Answer::Closed(None, format!("sending the call: {e}"));
            }
            let m = match self.answer(id) {
                Ok(m) => m,
                Err((code, why)) => return Answer::Closed(code, why),
            };
            match m["type"].as_u64() {
                Some(0) => {
                    assert_eq!(m["message"], json!([3]), "add(1, 2) answered {m}");
                    return Answer::Ok;
                }
                Some(2)
                    if m["message"]["msg"]
                        .as_str()
                        .is_some_and(|s| s.contains("in use")) => {}
                _ => panic!("the known-good call failed: {m}"),
            }
        }
        panic!("three known-good calls in a row found their ids in use")
    }

    /// Reads until the answer (Final or Error) on flow `id`, skipping what
    /// belongs to other flows; the pipe's close code if it closes first.
    fn answer(&mut self, id: u64) -> Result<Value, (Option<u16>, String)> {
        let deadline = Instant::now() + ANSWER_WITHIN;
        let ws = self.pipe();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero(),
                "the daemon did not answer flow {id} within {ANSWER_WITHIN:?}"
            );
            ws.get_ref()
                .0
                .set_read_timeout(Some(left))
                .expect("read timeout");
            match ws.read() {
                Ok(Message::Text(t)) => {
                    let m: Value = serde_json::from_str(t.as_str())
                        .unwrap_or_else(|e| panic!("the daemon sent {t:?}, not JSON: {e}"));
                    if m["id"].as_u64() == Some(id) && matches!(m["type"].as_u64(), Some(0 | 2)) {
                        return Ok(m);
                    }
                }
                Ok(Message::Close(f)) => {
                    return Err((f.map(|f| u16::from(f.code)), "a close frame".into()));
                }
                Ok(_) => {}
                Err(tungstenite::Error::Io(e))
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(e) => return Err((None, format!("reading: {e}"))),
            }
        }
    }
}
