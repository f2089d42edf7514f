//! The HTTP listener: `GET /ws` upgrades to a websocket pipe after the
//! Origin check, `GET /health` answers JSON, `GET /metrics` the same
//! figures and the calls' for Prometheus, `GET /` is the demo page and
//! `GET /wspr.js` and `/wspr.d.ts` the JavaScript library and its types
//! (built into the binary, and public: any origin may load them),
//! `/docs/javascript.md` and `/docs/protocol.md` the guide and the
//! protocol. HEAD is answered for each of those but `/ws`; everything
//! else is 404. A request whose Host is not this daemon's
//! ([`host_allowed`]) gets 403 whatever its path.
//!
//! One accept thread (`wsprd-http`), and one thread per connection
//! (`wsprd-pipe-<n>`) that reads the request (bounded in size and time)
//! and, once upgraded, runs the pipe. Connections that have not yet sent
//! their request have a cap of their own (see `crate::admission`); pipes
//! are counted once upgraded.

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::admission::{Admission, Ticket};
use crate::error::{Error, Result};
use crate::sync::ThreadSet;
use crate::wsprd::router;
use crate::wsprd::shared::Shared;
use crate::wsprd::tls::{Setup, Stream};

/// The demo page, served at `/`.
const DEMO_PAGE: &str = include_str!("../../js/demo.html");
/// The JavaScript library, served at `/wspr.js`.
const WSPR_JS: &str = include_str!("../../js/wspr.js");
/// Its TypeScript declarations, served at `/wspr.d.ts`.
const WSPR_D_TS: &str = include_str!("../../js/wspr.d.ts");
/// The JavaScript guide and the protocol, linked from the demo page.
const DOC_JAVASCRIPT: &str = include_str!("../../docs/javascript.md");
const DOC_PROTOCOL: &str = include_str!("../../docs/protocol.md");
/// Lets a page of any origin load the library (public code; the
/// websocket's Origin policy is a different matter, and unchanged).
const CORS_ANY: &str = "Access-Control-Allow-Origin: *\r\n";

/// Largest request head accepted.
const MAX_HEAD: usize = 16 * 1024;

pub(crate) struct Http {
    local: SocketAddr,
    closing: Arc<AtomicBool>,
    accept: Option<JoinHandle<()>>,
    conns: ThreadSet,
}

/// Binds the HTTP address (before anything else of the daemon starts).
pub(crate) fn bind(listen: &str) -> Result<TcpListener> {
    let addr = listen
        .to_socket_addrs()
        .map_err(|e| Error::bad_arg(format!("listen address {listen}: {e}")))?
        .next()
        .ok_or_else(|| Error::bad_arg("listen address resolves to nothing"))?;
    TcpListener::bind(addr).map_err(|e| Error::listen_failed(addr, e))
}

impl Http {
    pub(crate) fn start(shared: Arc<Shared>, tcp: TcpListener) -> Result<Http> {
        let local = tcp
            .local_addr()
            .map_err(|e| Error::internal(e.to_string()).with_source(e))?;
        let closing = Arc::new(AtomicBool::new(false));
        let conns = ThreadSet::default();
        let setup = shared.http_setup.clone();
        let (c, k) = (closing.clone(), conns.clone());
        let accept = crate::sync::spawn("wsprd-http".into(), 128 * 1024, move || {
            accept_loop(tcp, shared, c, k, setup)
        })
        .map_err(Error::thread_failed)?;
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

fn accept_loop(
    tcp: TcpListener,
    shared: Arc<Shared>,
    closing: Arc<AtomicBool>,
    conns: ThreadSet,
    setup: Admission,
) {
    loop {
        let accepted = tcp.accept();
        if closing.load(Ordering::SeqCst) {
            return;
        }
        let (stream, peer) = match accepted {
            Ok(s) => s,
            Err(e) => {
                log::warn!("accepting HTTP connections: {e}");
                std::thread::sleep(Duration::from_millis(50));
                continue;
            }
        };
        // Pipes are counted once upgraded; until its request is in, a
        // connection has a place among those setting up.
        let ticket = setup.admit(&stream, peer.ip());
        let id = NEXT_PIPE.fetch_add(1, Ordering::Relaxed);
        let s = shared.clone();
        if let Err(e) = conns.spawn(id, format!("wsprd-pipe-{id}"), move || {
            serve_http(s, id, stream, peer, ticket)
        }) {
            log::error!("cannot start a connection thread: {e}");
        }
    }
}

/// Answers and closes gently (see below); for connection threads.
fn respond(
    stream: &mut Stream,
    status: u16,
    content_type: &str,
    body: &[u8],
) -> std::io::Result<()> {
    respond_with(stream, status, content_type, "", body, true)
}

/// Answers with `extra` header lines (each ending in CRLF), the body only
/// if `with_body` (HEAD: without), and closes gently (see below).
fn respond_with(
    stream: &mut Stream,
    status: u16,
    content_type: &str,
    extra: &str,
    body: &[u8],
    with_body: bool,
) -> std::io::Result<()> {
    write_response(stream, status, content_type, extra, body, with_body)?;
    // Close gently: tell the client we are done, and read what it is still
    // sending for a moment, so that the close does not reset the
    // connection and destroy the answer before it is read.
    stream.shutdown_write();
    stream.drain(Duration::from_millis(500));
    Ok(())
}

fn write_response(
    stream: &mut Stream,
    status: u16,
    content_type: &str,
    extra: &str,
    body: &[u8],
    with_body: bool,
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
        "HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nCache-Control: no-store\r\n{extra}Connection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes())?;
    if with_body {
        stream.write_all(body)?;
    }
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

fn read_head(
    stream: &mut Stream,
    deadline: Instant,
    ticket: &Ticket,
) -> std::result::Result<Head, HeadError> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 2048];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(HeadError::Io);
        }
        stream
            .tcp()
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
        if buf.is_empty() {
            ticket.spoke();
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

/// The host named by a Host header (`host[:port]`, an IPv6 address in
/// brackets), lowercase, without a trailing dot.
fn host_of(host: &str) -> String {
    let h = host.trim().to_ascii_lowercase();
    let name = match h.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or("").to_string(),
        None => h.split(':').next().unwrap_or("").to_string(),
    };
    name.trim_end_matches('.').to_string()
}

/// Whether a request's Host names this daemon, against DNS rebinding (a
/// page of another site whose name was made to resolve to this host sends
/// that name): a loopback name (`localhost`, `*.localhost`) or address,
/// the listen address (any address of this host when it listens on all of
/// them), or the host of an allowed origin (`*` allows every Host, as it
/// allows every page). Ports are not compared.
pub(crate) fn host_allowed(
    host: Option<&str>,
    listen: SocketAddr,
    configured: &str,
    allowed: &[String],
) -> bool {
    let Some(name) = host.map(host_of).filter(|n| !n.is_empty()) else {
        return false;
    };
    if name == "localhost" || name.ends_with(".localhost") {
        return true;
    }
    if let Ok(ip) = name.parse::<IpAddr>()
        && (ip.is_loopback() || ip == listen.ip() || listen.ip().is_unspecified())
    {
        return true;
    }
    if host_of(configured) == name {
        return true;
    }
    allowed.iter().any(|a| {
        let a = a.trim().trim_end_matches('/');
        let rest = a.split_once("://").map(|(_, rest)| rest).unwrap_or(a);
        a == "*" || host_of(rest) == name
    })
}

fn serve_http(shared: Arc<Shared>, id: u64, tcp: TcpStream, peer: SocketAddr, ticket: Ticket) {
    let _ = tcp.set_nodelay(true);
    let _ = tcp.set_write_timeout(Some(shared.config.write_timeout));
    // The handshake and the request, within the setup time; with TLS, on
    // a thread of its own (see `tls::apart`).
    let deadline = Instant::now() + shared.config.setup_timeout;
    let setup = |tcp: TcpStream| -> Option<(Stream, Head)> {
        let mut stream = match &shared.tls {
            None => Stream::Plain(tcp),
            Some(tls) => match tls.handshake(tcp, deadline, &ticket) {
                Setup::Done(s) => s,
                Setup::PlainHttp(mut s) => {
                    log::info!("plain HTTP from {peer} to the TLS port; told to use https");
                    let _ = respond(
                        &mut s,
                        400,
                        "text/plain",
                        b"this port speaks TLS: use https:// (or wss:// for the websocket)\n",
                    );
                    return None;
                }
                Setup::Failed(why) => {
                    log::info!("TLS connection from {peer} failed: {why}");
                    return None;
                }
            },
        };
        match read_head(&mut stream, deadline, &ticket) {
            Ok(h) => Some((stream, h)),
            Err(HeadError::Io) => None,
            Err(HeadError::TooLarge) => {
                let _ = respond(&mut stream, 431, "text/plain", b"request head too large\n");
                None
            }
            Err(HeadError::Malformed(e)) => {
                log::info!("bad HTTP request from {peer}: {e}");
                let _ = respond(&mut stream, 400, "text/plain", b"malformed request\n");
                None
            }
        }
    };
    let set_up = match shared.tls {
        None => setup(tcp),
        Some(_) => crate::wsprd::tls::apart(format!("wsprd-tls-{id}"), tcp, setup).flatten(),
    };
    let Some((mut stream, head)) = set_up else {
        return;
    };
    let local = stream
        .tcp()
        .local_addr()
        .unwrap_or_else(|_| ([0, 0, 0, 0], 0).into());
    let host = head.header("Host");
    // With TLS, the name the client asked for in its handshake: a browser
    // sends a request only once the certificate is valid for that name
    // (a page of another site whose name was made to resolve here asks
    // for that name, and gets a certificate not valid for it).
    let asked = stream.server_name().is_some_and(|sni| {
        host.is_some_and(|h| host_of(h) == sni.trim_end_matches('.').to_ascii_lowercase())
    });
    if !asked
        && !host_allowed(
            host,
            local,
            &shared.config.listen,
            &shared.config.allowed_origins,
        )
    {
        log::warn!(
            "refused a request from {peer} for {}: Host {:?} is not this daemon's (DNS rebinding?)",
            head.path,
            host.unwrap_or("")
        );
        let _ = respond(
            &mut stream,
            403,
            "text/plain",
            b"Host not allowed: use localhost, the listen address, or a host of --allowed-origins\n",
        );
        return;
    }
    let path = head.path.split('?').next().unwrap_or("");
    if path == "/ws" && head.method == "GET" {
        return upgrade(shared, id, stream, peer, head, ticket);
    }
    let path = path.to_string();
    answer(&shared, &mut stream, &head.method, &path);
}

/// What `GET` answers at a path other than `/ws`.
struct Resource {
    content_type: &'static str,
    body: std::borrow::Cow<'static, [u8]>,
    /// Public code: any origin may load it.
    public: bool,
}

fn resource(shared: &Shared, path: &str) -> Option<Resource> {
    let fixed = |content_type, body: &'static str, public| Resource {
        content_type,
        body: body.as_bytes().into(),
        public,
    };
    Some(match path {
        "/" => fixed("text/html; charset=utf-8", DEMO_PAGE, false),
        "/wspr.js" => fixed("text/javascript", WSPR_JS, true),
        "/wspr.d.ts" => fixed("application/typescript; charset=utf-8", WSPR_D_TS, true),
        // (As text: a browser shows it rather than saving it.)
        "/docs/javascript.md" => fixed("text/plain; charset=utf-8", DOC_JAVASCRIPT, false),
        "/docs/protocol.md" => fixed("text/plain; charset=utf-8", DOC_PROTOCOL, false),
        "/health" => Resource {
            content_type: "application/json",
            body: shared.health().to_string().into_bytes().into(),
            public: false,
        },
        "/metrics" => Resource {
            content_type: crate::wsprd::metrics::CONTENT_TYPE,
            body: crate::wsprd::metrics::render(&shared.health(), &shared.calls)
                .into_bytes()
                .into(),
            public: false,
        },
        _ => return None,
    })
}

/// Answers a request that is not a websocket upgrade: GET and HEAD of
/// the resources above.
fn answer(shared: &Shared, stream: &mut Stream, method: &str, path: &str) {
    let resource = resource(shared, path);
    let (get, head) = (method == "GET", method == "HEAD");
    let _ = match resource {
        Some(r) if get || head => {
            let extra = if r.public { CORS_ANY } else { "" };
            respond_with(stream, 200, r.content_type, extra, &r.body, get)
        }
        Some(_) => respond_with(
            stream,
            405,
            "text/plain",
            "Allow: GET, HEAD\r\n",
            b"only GET and HEAD are served\n",
            true,
        ),
        None if path == "/ws" => respond_with(
            stream,
            405,
            "text/plain",
            "Allow: GET\r\n",
            b"GET /ws upgrades to a websocket; nothing else is served there\n",
            !head,
        ),
        None => respond_with(stream, 404, "text/plain", "", b"not found\n", !head),
    };
}

fn upgrade(
    shared: Arc<Shared>,
    id: u64,
    mut stream: Stream,
    peer: SocketAddr,
    head: Head,
    ticket: Ticket,
) {
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
    let Some(place) = PipePlace::take(&shared) else {
        shared.stats.limits.pipes.fetch_add(1, Ordering::Relaxed);
        log::warn!(
            "refusing a pipe from {peer}: {} pipes open, limit {} (--max-pipes)",
            shared.open_pipes.load(Ordering::SeqCst),
            shared.config.max_pipes
        );
        let _ = respond(&mut stream, 503, "text/plain", b"too many pipes\n");
        return;
    };
    if tungstenite::handshake::server::write_response(&mut stream, &response).is_err()
        || stream.flush().is_err()
    {
        return;
    }
    drop(ticket);
    router::run(
        shared.clone(),
        id,
        stream.into_transport(),
        peer,
        origin,
        head.leftover,
    );
    drop(place);
}

/// A pipe's place among `--max-pipes`, held while it runs.
struct PipePlace(Arc<Shared>);

impl PipePlace {
    fn take(shared: &Arc<Shared>) -> Option<PipePlace> {
        let max = shared.config.max_pipes;
        shared
            .open_pipes
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                (n < max).then_some(n + 1)
            })
            .ok()
            .map(|_| PipePlace(shared.clone()))
    }
}

impl Drop for PipePlace {
    fn drop(&mut self) {
        self.0.open_pipes.fetch_sub(1, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::{host_allowed, origin_allowed};

    #[test]
    fn hosts() {
        let local: std::net::SocketAddr = "127.0.0.1:8124".parse().unwrap();
        let none: Vec<String> = vec![];
        let ok = |h: &str| host_allowed(Some(h), local, "127.0.0.1:8124", &none);
        assert!(ok("localhost:8124") && ok("LOCALHOST") && ok("localhost."));
        assert!(ok("app.localhost") && ok("127.0.0.1") && ok("127.0.0.2:1") && ok("[::1]:8124"));
        assert!(!ok("evil.example") && !ok("localhost.evil.example") && !ok("10.0.0.1"));
        assert!(!ok("") && !host_allowed(None, local, "127.0.0.1:8124", &none));
        // The listen address, as configured and as bound.
        let lan: std::net::SocketAddr = "192.168.1.5:8124".parse().unwrap();
        assert!(host_allowed(
            Some("192.168.1.5"),
            lan,
            "192.168.1.5:8124",
            &none
        ));
        assert!(host_allowed(Some("myhost:8124"), lan, "myhost:8124", &none));
        let any: std::net::SocketAddr = "0.0.0.0:8124".parse().unwrap();
        assert!(host_allowed(Some("10.0.0.1"), any, "0.0.0.0:8124", &none));
        assert!(!host_allowed(
            Some("evil.example"),
            any,
            "0.0.0.0:8124",
            &none
        ));
        // Allowed origins' hosts.
        let some = vec![
            "https://app.example:8443".to_string(),
            "other.example".to_string(),
        ];
        let ok = |h: &str| host_allowed(Some(h), local, "127.0.0.1:8124", &some);
        assert!(ok("app.example") && ok("other.example:80") && !ok("evil.example"));
        assert!(host_allowed(
            Some("evil.example"),
            local,
            "",
            &["*".to_string()]
        ));
    }

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
