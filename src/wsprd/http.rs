//! The HTTP listener: `GET /ws` upgrades to a websocket pipe after the
//! Origin check, `GET /health` answers JSON, `GET /` is the demo page and
//! `GET /wspr.js` the JavaScript library (both built into the binary),
//! everything else is 404.
//!
//! One accept thread (`wsprd-http`), and one thread per connection
//! (`wsprd-pipe-<n>`) that reads the request (bounded in size and time)
//! and, once upgraded, runs the pipe.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::pool::ThreadSet;
use crate::wsprd::{Shared, pipe};

/// The demo page, served at `/`.
const DEMO_PAGE: &str = include_str!("../../js/demo.html");
/// The JavaScript library, served at `/wspr.js`.
const WSPR_JS: &str = include_str!("../../js/wspr.js");

/// Largest request head accepted.
const MAX_HEAD: usize = 16 * 1024;
/// Time a client has to send its request head.
const HEAD_TIMEOUT: Duration = Duration::from_secs(10);

pub(crate) struct Http {
    local: SocketAddr,
    closing: Arc<AtomicBool>,
    accept: Option<JoinHandle<()>>,
    conns: ThreadSet,
}

impl Http {
    pub(crate) fn start(shared: Arc<Shared>) -> Result<Http> {
        let addr = shared
            .config
            .listen
            .to_socket_addrs()
            .map_err(|e| Error::bad_arg(format!("listen address {}: {e}", shared.config.listen)))?
            .next()
            .ok_or_else(|| Error::bad_arg("listen address resolves to nothing"))?;
        let tcp = TcpListener::bind(addr)
            .map_err(|e| Error::internal(format!("cannot listen on {addr}: {e}")))?;
        let local = tcp
            .local_addr()
            .map_err(|e| Error::internal(e.to_string()))?;
        let closing = Arc::new(AtomicBool::new(false));
        let conns = ThreadSet::default();
        let (c, k) = (closing.clone(), conns.clone());
        let accept = std::thread::Builder::new()
            .name("wsprd-http".into())
            .stack_size(128 * 1024)
            .spawn(move || accept_loop(tcp, shared, c, k))
            .map_err(|e| Error::internal(format!("cannot start a thread: {e}")))?;
        Ok(Http {
            local,
            closing,
            accept: Some(accept),
            conns,
        })
    }

    pub(crate) fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Stops the accept thread and joins it.
    pub(crate) fn stop_accepting(&self) {
        self.closing.store(true, Ordering::SeqCst);
        let wake = if self.local.ip().is_unspecified() {
            SocketAddr::new(std::net::Ipv4Addr::LOCALHOST.into(), self.local.port())
        } else {
            self.local
        };
        let _ = TcpStream::connect_timeout(&wake, Duration::from_secs(1));
    }

    /// Joins the accept thread and every connection thread.
    pub(crate) fn join(mut self) {
        if let Some(h) = self.accept.take() {
            let _ = h.join();
        }
        self.conns.join_all();
    }
}

static NEXT_PIPE: AtomicU64 = AtomicU64::new(1);

fn accept_loop(tcp: TcpListener, shared: Arc<Shared>, closing: Arc<AtomicBool>, conns: ThreadSet) {
    loop {
        let accepted = tcp.accept();
        if closing.load(Ordering::SeqCst) {
            return;
        }
        let (mut stream, peer) = match accepted {
            Ok(s) => s,
            Err(e) => {
                log::warn!("accepting HTTP connections: {e}");
                std::thread::sleep(Duration::from_millis(50));
                continue;
            }
        };
        let open = conns.len();
        if open >= shared.config.max_pipes {
            shared.stats.limits.pipes.fetch_add(1, Ordering::Relaxed);
            log::warn!(
                "refusing {peer}: {open} connections open, limit {}",
                shared.config.max_pipes
            );
            let _ = stream.set_write_timeout(Some(Duration::from_millis(100)));
            let _ = respond_now(&mut stream, 503, "text/plain", b"too many connections\n");
            continue;
        }
        let id = NEXT_PIPE.fetch_add(1, Ordering::Relaxed);
        let s = shared.clone();
        if let Err(e) = conns.spawn(id, format!("wsprd-pipe-{id}"), move || {
            serve_http(s, id, stream, peer)
        }) {
            log::error!("cannot start a connection thread: {e}");
        }
    }
}

/// Answers and closes gently (see below); for connection threads.
fn respond(
    stream: &mut TcpStream,
    status: u16,
    content_type: &str,
    body: &[u8],
) -> std::io::Result<()> {
    respond_now(stream, status, content_type, body)?;
    // Close gently: tell the client we are done, and read what it is still
    // sending for a moment, so that the close does not reset the
    // connection and destroy the answer before it is read.
    let _ = stream.shutdown(std::net::Shutdown::Write);
    let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
    let mut sink = [0u8; 4096];
    let mut drained = 0;
    while drained < 256 * 1024 {
        match stream.read(&mut sink) {
            Ok(0) | Err(_) => break,
            Ok(n) => drained += n,
        }
    }
    Ok(())
}

/// Answers without waiting for anything (for the accept thread).
fn respond_now(
    stream: &mut TcpStream,
    status: u16,
    content_type: &str,
    body: &[u8],
) -> std::io::Result<()> {
    let reason = match status {
        200 => "OK",
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        431 => "Request Header Fields Too Large",
        503 => "Service Unavailable",
        _ => "Error",
    };
    let head = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes())?;
    stream.write_all(body)?;
    stream.flush()
}

/// A parsed request head.
struct Head {
    method: String,
    path: String,
    headers: Vec<(String, String)>,
    leftover: Vec<u8>,
}

impl Head {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

enum HeadError {
    Io,
    TooLarge,
    Malformed(String),
}

fn read_head(stream: &mut TcpStream) -> std::result::Result<Head, HeadError> {
    let deadline = Instant::now() + HEAD_TIMEOUT;
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 2048];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(HeadError::Io);
        }
        stream
            .set_read_timeout(Some(left))
            .map_err(|_| HeadError::Io)?;
        let n = match stream.read(&mut chunk) {
            // A signal or a stop interrupted a read that has a timeout.
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            r => r.map_err(|_| HeadError::Io)?,
        };
        if n == 0 {
            return Err(HeadError::Io);
        }
        buf.extend_from_slice(&chunk[..n]);
        let mut headers = [httparse::EMPTY_HEADER; 48];
        let mut req = httparse::Request::new(&mut headers);
        match req.parse(&buf) {
            Ok(httparse::Status::Complete(len)) => {
                return Ok(Head {
                    method: req.method.unwrap_or("").to_string(),
                    path: req.path.unwrap_or("").to_string(),
                    headers: req
                        .headers
                        .iter()
                        .map(|h| {
                            (
                                h.name.to_string(),
                                String::from_utf8_lossy(h.value).into_owned(),
                            )
                        })
                        .collect(),
                    leftover: buf[len..].to_vec(),
                });
            }
            Ok(httparse::Status::Partial) if buf.len() < MAX_HEAD => continue,
            Ok(httparse::Status::Partial) => return Err(HeadError::TooLarge),
            Err(httparse::Error::TooManyHeaders) => return Err(HeadError::TooLarge),
            Err(e) => return Err(HeadError::Malformed(e.to_string())),
        }
    }
}

/// Whether a websocket from `origin` is accepted (contract section 2).
pub(crate) fn origin_allowed(origin: Option<&str>, allowed: &[String]) -> bool {
    let Some(origin) = origin.map(|o| o.trim().trim_end_matches('/').to_ascii_lowercase()) else {
        return true;
    };
    let host = origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"))
        .map(|rest| {
            // host[:port]; an IPv6 host is in brackets.
            if rest.starts_with('[') {
                rest.split(']')
                    .next()
                    .map(|h| format!("{h}]"))
                    .unwrap_or_default()
            } else {
                rest.split(':').next().unwrap_or("").to_string()
            }
        });
    if let Some(h) = &host
        && matches!(h.as_str(), "localhost" | "127.0.0.1" | "[::1]")
    {
        return true;
    }
    allowed.iter().any(|a| {
        let a = a.trim().trim_end_matches('/').to_ascii_lowercase();
        a == "*" || a == origin || (!a.contains("://") && host.as_deref() == Some(a.as_str()))
    })
}

fn serve_http(shared: Arc<Shared>, id: u64, mut stream: TcpStream, peer: SocketAddr) {
    let _ = stream.set_nodelay(true);
    let _ = stream.set_write_timeout(Some(shared.config.write_timeout));
    let head = match read_head(&mut stream) {
        Ok(h) => h,
        Err(HeadError::Io) => return,
        Err(HeadError::TooLarge) => {
            let _ = respond(&mut stream, 431, "text/plain", b"request head too large\n");
            return;
        }
        Err(HeadError::Malformed(e)) => {
            log::info!("bad HTTP request from {peer}: {e}");
            let _ = respond(&mut stream, 400, "text/plain", b"malformed request\n");
            return;
        }
    };
    if head.method != "GET" {
        let _ = respond(&mut stream, 405, "text/plain", b"only GET is served\n");
        return;
    }
    let path = head.path.split('?').next().unwrap_or("");
    match path {
        "/ws" => upgrade(shared, id, stream, peer, head),
        "/health" => {
            let body = shared.health().to_string();
            let _ = respond(&mut stream, 200, "application/json", body.as_bytes());
        }
        "/" => {
            let _ = respond(
                &mut stream,
                200,
                "text/html; charset=utf-8",
                DEMO_PAGE.as_bytes(),
            );
        }
        "/wspr.js" => {
            let _ = respond(&mut stream, 200, "text/javascript", WSPR_JS.as_bytes());
        }
        _ => {
            let _ = respond(&mut stream, 404, "text/plain", b"not found\n");
        }
    }
}

fn upgrade(shared: Arc<Shared>, id: u64, mut stream: TcpStream, peer: SocketAddr, head: Head) {
    let origin = head.header("Origin").map(str::to_string);
    if !origin_allowed(origin.as_deref(), &shared.config.allowed_origins) {
        log::warn!(
            "refused a websocket from {peer}: origin {} is not allowed",
            origin.as_deref().unwrap_or("")
        );
        let _ = respond(
            &mut stream,
            403,
            "text/plain",
            b"origin not allowed; see --allowed-origins\n",
        );
        return;
    }
    let mut req = tungstenite::http::Request::builder()
        .method("GET")
        .uri(head.path.as_str())
        .version(tungstenite::http::Version::HTTP_11);
    for (k, v) in &head.headers {
        req = req.header(k.as_str(), v.as_str());
    }
    let response = req.body(()).map_err(|e| e.to_string()).and_then(|r| {
        tungstenite::handshake::server::create_response(&r).map_err(|e| e.to_string())
    });
    let response = match response {
        Ok(r) => r,
        Err(e) => {
            log::info!("bad websocket upgrade from {peer}: {e}");
            let _ = respond(&mut stream, 400, "text/plain", format!("{e}\n").as_bytes());
            return;
        }
    };
    if tungstenite::handshake::server::write_response(&mut stream, &response).is_err()
        || stream.flush().is_err()
    {
        return;
    }
    pipe::run(shared, id, stream, peer, origin, head.leftover);
}

#[cfg(test)]
mod tests {
    use super::origin_allowed;

    #[test]
    fn origins() {
        let none: Vec<String> = vec![];
        assert!(origin_allowed(None, &none));
        assert!(origin_allowed(Some("http://localhost:3000"), &none));
        assert!(origin_allowed(Some("https://127.0.0.1"), &none));
        assert!(origin_allowed(Some("http://[::1]:8080"), &none));
        assert!(!origin_allowed(Some("https://evil.example"), &none));
        assert!(!origin_allowed(
            Some("http://localhost.evil.example"),
            &none
        ));
        assert!(!origin_allowed(Some("null"), &none));
        let some = vec![
            "https://app.example".to_string(),
            "other.example".to_string(),
        ];
        assert!(origin_allowed(Some("https://app.example"), &some));
        assert!(origin_allowed(Some("http://other.example:81"), &some));
        assert!(!origin_allowed(Some("http://app.example"), &some));
        assert!(origin_allowed(Some("https://anything"), &["*".to_string()]));
    }
}
