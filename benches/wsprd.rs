//! `make bench`, daemon part. Runs `wsprd serve` as a separate process and
//! measures, in one run:
//! - a loopback websocket echo round trip (the floor);
//! - the same echo through a relay that copies bytes with a thread per
//!   direction (the relay floor: the chain of wake-ups of a call through
//!   the daemon, caller, relay, callee, relay, caller, with no work at the
//!   relay and no JavaScript);
//! - JavaScript calling a native object;
//! - a native caller calling a JavaScript-served object, lookup uncached
//!   and cacheable;
//! - JavaScript calling JavaScript through the daemon;
//!
//! each sequential and with 64 in flight; then the daemon's RSS idle and
//! with 1,000 idle pipes, and its CPU time per call. "JavaScript" is a
//! small Rust websocket client that answers lookups and requests at once.
//!
//! Then TLS: JavaScript calling a native object over `wss://` (a second
//! daemon, with a certificate made here) interleaved with the same call
//! over `ws://`, and the memory of 1,000 idle TLS pipes against as many
//! plain ones.

mod util;

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tungstenite::{Message, WebSocket};
use util::*;
use wspr::rpc::{CallOptions, Client, Namespace};

/// A connection to a daemon, plain or TLS.
enum Stream {
    Plain(TcpStream),
    Tls(Box<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>),
}

impl std::io::Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Stream::Plain(s) => s.read(buf),
            Stream::Tls(s) => s.read(buf),
        }
    }
}

impl std::io::Write for Stream {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Stream::Plain(s) => s.write(buf),
            Stream::Tls(s) => s.write(buf),
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Stream::Plain(s) => s.flush(),
            Stream::Tls(s) => s.flush(),
        }
    }
}

type Ws = WebSocket<Stream>;

fn ws_connect(addr: SocketAddr, path: &str) -> Ws {
    let s = TcpStream::connect(addr).unwrap();
    s.set_nodelay(true).unwrap();
    let (ws, _) = tungstenite::client(format!("ws://{addr}{path}"), Stream::Plain(s)).unwrap();
    ws
}

/// A pipe over TLS to the daemon at `addr` (its certificate is for
/// localhost), or a plain one when there is no `tls`.
fn connect_to(addr: SocketAddr, tls: Option<&std::sync::Arc<rustls::ClientConfig>>) -> Ws {
    let Some(config) = tls else {
        return ws_connect(addr, "/ws");
    };
    let s = TcpStream::connect(addr).unwrap();
    s.set_nodelay(true).unwrap();
    let conn =
        rustls::ClientConnection::new(config.clone(), "localhost".try_into().unwrap()).unwrap();
    let stream = Stream::Tls(Box::new(rustls::StreamOwned::new(conn, s)));
    let (ws, _) =
        tungstenite::client(format!("wss://localhost:{}/ws", addr.port()), stream).unwrap();
    ws
}

/// A certificate for localhost, written to `dir`, and a client that
/// trusts it.
fn bench_cert(dir: &std::path::Path) -> std::sync::Arc<rustls::ClientConfig> {
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("cert.pem"), ck.cert.pem()).unwrap();
    std::fs::write(dir.join("key.pem"), ck.signing_key.serialize_pem()).unwrap();
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ck.cert.der().clone()).unwrap();
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    std::sync::Arc::new(
        rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth(),
    )
}

fn read_json(ws: &mut Ws) -> Value {
    loop {
        match ws.read().unwrap() {
            Message::Text(t) => return serde_json::from_str(t.as_str()).unwrap(),
            Message::Close(_) => panic!("closed"),
            _ => {}
        }
    }
}

fn send_json(ws: &mut Ws, v: &Value) {
    ws.send(Message::text(v.to_string())).unwrap();
}

/// The websocket echo server (the floor), run in a process of its own
/// like the daemon: this bench re-executed with `WSPR_BENCH_ECHO=1`. It
/// prints its address and echoes text messages until stdin closes.
fn echo_server_main() {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    println!("{}", l.local_addr().unwrap());
    std::thread::spawn(|| {
        let mut sink = String::new();
        let _ = std::io::stdin().read_line(&mut sink);
        std::process::exit(0);
    });
    for s in l.incoming().flatten() {
        std::thread::spawn(move || {
            s.set_nodelay(true).unwrap();
            let mut ws = tungstenite::accept(s).unwrap();
            while let Ok(m) = ws.read() {
                if m.is_text() && ws.send(m).is_err() {
                    break;
                }
            }
        });
    }
}

/// Starts the echo process; its address.
fn echo_server() -> (Child, SocketAddr) {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .env("WSPR_BENCH_ECHO", "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let line = BufReader::new(child.stdout.take().unwrap())
        .lines()
        .next()
        .unwrap()
        .unwrap();
    (child, line.parse().unwrap())
}

/// The relay floor, in a process of its own: this bench re-executed with
/// `WSPR_BENCH_RELAY=UPSTREAM`. It prints its address, and joins each
/// connection it accepts to a new connection to UPSTREAM, copying bytes
/// each way on a thread of its own (as bench/peers/relay.rs), until stdin
/// closes.
fn relay_server_main(upstream: String) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    println!("{}", l.local_addr().unwrap());
    std::thread::spawn(|| {
        let mut sink = String::new();
        let _ = std::io::stdin().read_line(&mut sink);
        std::process::exit(0);
    });
    let copy = |mut from: TcpStream, mut to: TcpStream| {
        use std::io::{Read, Write};
        let mut buf = vec![0u8; 64 * 1024];
        while let Ok(n) = from.read(&mut buf) {
            if n == 0 || to.write_all(&buf[..n]).is_err() {
                break;
            }
        }
        let _ = to.shutdown(std::net::Shutdown::Write);
    };
    for down in l.incoming().flatten() {
        let up = TcpStream::connect(&upstream).unwrap();
        down.set_nodelay(true).unwrap();
        up.set_nodelay(true).unwrap();
        let (down2, up2) = (down.try_clone().unwrap(), up.try_clone().unwrap());
        std::thread::spawn(move || copy(down, up));
        std::thread::spawn(move || copy(up2, down2));
    }
}

/// Starts the relay process in front of `upstream`; its address.
fn relay_server(upstream: SocketAddr) -> (Child, SocketAddr) {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .env("WSPR_BENCH_RELAY", upstream.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let line = BufReader::new(child.stdout.take().unwrap())
        .lines()
        .next()
        .unwrap()
        .unwrap();
    (child, line.parse().unwrap())
}

struct Daemon {
    child: Child,
    addr: SocketAddr,
    root: String,
}

/// Credentials the daemon and the bench's native callers share (one
/// principal family, so that the daemon's default policy admits them).
fn credentials() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench/credentials")
}

impl Daemon {
    fn start() -> Daemon {
        Daemon::start_with(&[])
    }

    fn start_with(extra: &[&str]) -> Daemon {
        let mut child = Command::new(env!("CARGO_BIN_EXE_wsprd"))
            .env("WSPR_CREDENTIALS", credentials())
            .args([
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--mounttable-listen",
                "127.0.0.1:0",
                "--demo",
                "--log-level",
                "warn",
            ])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let first = lines.next().unwrap().unwrap();
        let addr = first.rsplit("://").next().unwrap().parse().unwrap();
        let root = lines
            .next()
            .unwrap()
            .unwrap()
            .rsplit(' ')
            .next()
            .unwrap()
            .to_string();
        Daemon { child, addr, root }
    }
    fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A "JavaScript" server: serves `name`, answers every lookup (cacheable
/// or not) and every request at once, on its own thread.
fn js_server(addr: SocketAddr, name: &str, cacheable: bool) {
    let mut ws = ws_connect(addr, "/ws");
    send_json(
        &mut ws,
        &json!({"id": 1, "type": 1, "data": {"name": name, "serverId": 1}}),
    );
    let m = read_json(&mut ws);
    assert_eq!(m["type"], 0, "serve: {m}");
    std::thread::spawn(move || {
        let sig = json!({"add": {"inArgs": ["a", "b"], "numOutArgs": 2, "isStreaming": false}});
        while let Ok(Message::Text(t)) = ws.read() {
            let m: Value = serde_json::from_str(t.as_str()).unwrap();
            let id = &m["id"];
            match m["type"].as_u64() {
                Some(5) => send_json(
                    &mut ws,
                    &json!({"id": id, "type": 11, "data": {"handle": 1, "signature": sig, "cacheable": cacheable}}),
                ),
                Some(3) => {
                    let a = &m["message"]["args"];
                    let sum = a[0].as_i64().unwrap_or(0) + a[1].as_i64().unwrap_or(0);
                    send_json(
                        &mut ws,
                        &json!({"id": id, "type": 2, "data": {"results": [sum], "err": null}}),
                    );
                }
                _ => {}
            }
        }
    });
}

/// A "JavaScript" caller over one pipe with up to `depth` calls in flight.
struct JsCaller {
    ws: Ws,
    next: u64,
}

impl JsCaller {
    fn new(addr: SocketAddr) -> JsCaller {
        JsCaller {
            ws: ws_connect(addr, "/ws"),
            next: 1,
        }
    }
    fn over_tls(addr: SocketAddr, tls: &std::sync::Arc<rustls::ClientConfig>) -> JsCaller {
        JsCaller {
            ws: connect_to(addr, Some(tls)),
            next: 1,
        }
    }
    fn start(&mut self, name: &str) -> u64 {
        let id = self.next;
        self.next += 2;
        send_json(
            &mut self.ws,
            &json!({"id": id, "type": 0, "data": {"name": name, "method": "add", "inArgs": [2, 3], "numOutArgs": 2}}),
        );
        id
    }
    fn one(&mut self, name: &str) {
        let id = self.start(name);
        let m = read_json(&mut self.ws);
        assert_eq!(
            (m["id"].as_u64(), m["type"].as_u64()),
            (Some(id), Some(0)),
            "{m}"
        );
    }
    /// `n` calls with `depth` in flight on this one pipe.
    fn pipelined(&mut self, label: &str, name: &str, depth: usize, n: usize) -> Row {
        let mut started: HashMap<u64, Instant> = HashMap::new();
        let mut samples = Vec::with_capacity(n);
        let begin = Instant::now();
        let mut sent = 0;
        while sent < depth.min(n) {
            let id = self.start(name);
            started.insert(id, Instant::now());
            sent += 1;
        }
        while samples.len() < n {
            let m = read_json(&mut self.ws);
            let id = m["id"].as_u64().unwrap();
            assert_eq!(m["type"], 0, "{m}");
            samples.push(started.remove(&id).unwrap().elapsed());
            if sent < n {
                let id = self.start(name);
                started.insert(id, Instant::now());
                sent += 1;
            }
        }
        Row::from_samples(label, samples, begin.elapsed())
    }
}

fn main() {
    if std::env::var_os("WSPR_BENCH_ECHO").is_some() {
        return echo_server_main();
    }
    if let Ok(upstream) = std::env::var("WSPR_BENCH_RELAY") {
        return relay_server_main(upstream);
    }
    let n = iters(20_000);
    let d = Daemon::start();
    let rss_idle = rss_kib(d.pid());
    js_server(d.addr, "bench/uncached", false);
    js_server(d.addr, "bench/cached", true);
    let principal = wspr::security::Principal::load_or_create(&credentials(), "bench").unwrap();
    let client = Client::with_principal(
        Namespace::new(vec![d.root.clone()]),
        std::sync::Arc::new(principal),
        Default::default(),
    );
    let native = |name: &str| {
        let r = client
            .call(
                name,
                "Add",
                vec![json!(2), json!(3)],
                CallOptions::default(),
            )
            .unwrap();
        assert_eq!(r, vec![json!(5)]);
    };

    let (mut echo_child, echo_addr) = echo_server();
    let mut echo = ws_connect(echo_addr, "/");
    let payload = json!({"id": 1, "type": 0, "data": {"name": "demo/adder", "method": "add", "inArgs": [2, 3], "numOutArgs": 2}}).to_string();
    let mut echo_once = || {
        echo.send(Message::text(payload.clone())).unwrap();
        let _ = echo.read().unwrap();
    };
    let (mut relay_child, relay_addr) = relay_server(echo_addr);
    let mut relayed = ws_connect(relay_addr, "/");
    let mut relay_once = || {
        relayed.send(Message::text(payload.clone())).unwrap();
        let _ = relayed.read().unwrap();
    };
    let mut js_native = JsCaller::new(d.addr);
    let mut js_js = JsCaller::new(d.addr);
    let cpu0 = cpu_secs(d.pid());
    let mut seq_native = || js_native.one("demo/adder");
    let mut seq_cached = || native("bench/cached");
    let mut seq_uncached = || native("bench/uncached");
    let mut seq_js_js = || js_js.one("bench/cached");
    let mut rows = interleaved(
        10,
        n,
        &mut [
            ("websocket echo (floor)", &mut echo_once),
            ("echo through a byte relay (relay floor)", &mut relay_once),
            ("JS -> native, sequential", &mut seq_native),
            ("native -> JS cacheable, sequential", &mut seq_cached),
            ("native -> JS uncached, sequential", &mut seq_uncached),
            ("JS -> JS (cacheable), sequential", &mut seq_js_js),
        ],
    );
    let cpu1 = cpu_secs(d.pid());
    // Calls through the daemon in that run: 4 scenarios (the two floors
    // are not the daemon's).
    let daemon_calls = (rows.len() - 2) as f64 * (n + 200) as f64;
    let cpu_per_call_us = (cpu1 - cpu0) / daemon_calls * 1e6;

    let mut js_native = JsCaller::new(d.addr);
    rows.push(js_native.pipelined("JS -> native, 64 in flight", "demo/adder", 64, n));
    rows.push(concurrent(
        "native -> JS cacheable, 64 in flight",
        64,
        n,
        || native("bench/cached"),
    ));
    rows.push(concurrent(
        "native -> JS uncached, 64 in flight",
        64,
        n,
        || native("bench/uncached"),
    ));
    let mut js_js = JsCaller::new(d.addr);
    rows.push(js_js.pipelined("JS -> JS (cacheable), 64 in flight", "bench/cached", 64, n));
    print_table(
        "wsprd (the daemon and the echo server each in a process of their own; loopback)",
        &rows,
        "websocket echo (floor)",
    );

    // Memory: idle, then with 1,000 idle pipes.
    let idle = idle_pipes(&d, None, 1000);
    let rss_1000 = rss_kib(d.pid());
    let floor = rows[0].p50_us;
    let find = |name: &str| rows.iter().find(|r| r.name == name).unwrap();
    println!(
        "native -> JS cacheable p50 / floor = {:.2} (target <= 2); uncached = {:.2} (target <= 3)",
        find("native -> JS cacheable, sequential").p50_us / floor,
        find("native -> JS uncached, sequential").p50_us / floor
    );
    let relay = find("echo through a byte relay (relay floor)");
    let js_js = find("JS -> JS (cacheable), sequential");
    println!(
        "JS -> JS sequential against the relay floor: p50 {:.2}×, p99 {:.2}×, p99.9 {:.2}× (no JavaScript here: the tail beside relaying alone is the daemon's)",
        js_js.p50_us / relay.p50_us,
        js_js.p99_us / relay.p99_us,
        js_js.p999_us / relay.p999_us
    );
    println!("daemon CPU per call: {cpu_per_call_us:.1} µs (target <= 30)");
    println!(
        "daemon RSS: {:.1} MiB idle (target <= 8), {:.1} MiB with 1,000 idle pipes (target <= 64)",
        rss_idle as f64 / 1024.0,
        rss_1000 as f64 / 1024.0
    );
    write_json(
        "wsprd.json",
        &rows,
        &[
            ("daemon_cpu_us_per_call", format!("{cpu_per_call_us:.2}")),
            ("rss_idle_kib", rss_idle.to_string()),
            ("rss_1000_pipes_kib", rss_1000.to_string()),
        ],
    );
    drop(idle);
    let _ = echo_child.kill();
    let _ = echo_child.wait();
    let _ = relay_child.kill();
    let _ = relay_child.wait();

    // TLS: two fresh daemons, one with a certificate; the same call over
    // wss:// and over ws://, interleaved, then idle pipes of each.
    drop(d);
    let dp = Daemon::start();
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench/tls");
    let tls = bench_cert(&dir);
    let cert = dir.join("cert.pem");
    let key = dir.join("key.pem");
    let dt = Daemon::start_with(&[
        "--tls-cert",
        cert.to_str().unwrap(),
        "--tls-key",
        key.to_str().unwrap(),
    ]);
    let mut plain = JsCaller::new(dp.addr);
    let mut secure = JsCaller::over_tls(dt.addr, &tls);
    let mut seq_plain = || plain.one("demo/adder");
    let mut seq_secure = || secure.one("demo/adder");
    let tls_rows = interleaved(
        10,
        n,
        &mut [
            ("JS -> native over ws://, sequential", &mut seq_plain),
            ("JS -> native over wss://, sequential", &mut seq_secure),
        ],
    );
    print_table(
        "wss:// against ws:// (two daemons, each in a process of its own)",
        &tls_rows,
        "JS -> native over ws://, sequential",
    );
    let plain_before = rss_kib(dp.pid());
    let plain_idle = idle_pipes(&dp, None, 1000);
    let plain_per_pipe = (rss_kib(dp.pid()).saturating_sub(plain_before)) as f64 / 1000.0;
    let tls_before = rss_kib(dt.pid());
    let tls_idle = idle_pipes(&dt, Some(&tls), 1000);
    let tls_per_pipe = (rss_kib(dt.pid()).saturating_sub(tls_before)) as f64 / 1000.0;
    let ratio = tls_rows[1].p50_us / tls_rows[0].p50_us;
    println!("JS -> native p50 over wss:// / over ws:// = {ratio:.2} (target <= 1.15)");
    println!(
        "idle pipe: {tls_per_pipe:.1} KiB with TLS, {plain_per_pipe:.1} KiB without: {:.2} (target <= 1.5)",
        tls_per_pipe / plain_per_pipe
    );
    write_json(
        "wsprd_tls.json",
        &tls_rows,
        &[
            ("wss_over_ws_p50", format!("{ratio:.3}")),
            ("idle_pipe_kib_tls", format!("{tls_per_pipe:.1}")),
            ("idle_pipe_kib_plain", format!("{plain_per_pipe:.1}")),
        ],
    );
    drop(tls_idle);
    drop(plain_idle);
}

/// `count` idle pipes to `d` (over TLS with `tls`), once the daemon counts
/// them.
fn idle_pipes(
    d: &Daemon,
    tls: Option<&std::sync::Arc<rustls::ClientConfig>>,
    count: u64,
) -> Vec<Ws> {
    let pipes = || -> u64 {
        let mut s = TcpStream::connect(d.addr).unwrap();
        use std::io::{Read, Write};
        let body = match tls {
            None => {
                write!(s, "GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").unwrap();
                let mut out = String::new();
                s.read_to_string(&mut out).unwrap();
                out
            }
            Some(config) => {
                let conn =
                    rustls::ClientConnection::new(config.clone(), "localhost".try_into().unwrap())
                        .unwrap();
                let mut t = rustls::StreamOwned::new(conn, s);
                write!(t, "GET /health HTTP/1.1\r\nHost: localhost\r\n\r\n").unwrap();
                let mut out = Vec::new();
                let _ = t.read_to_end(&mut out);
                String::from_utf8_lossy(&out).into_owned()
            }
        };
        let body = body.split("\r\n\r\n").nth(1).expect("a /health body");
        let h: Value = serde_json::from_str(body).expect("/health is JSON");
        h["pipes"].as_u64().expect("/health counts pipes")
    };
    let before = pipes();
    let mut idle = Vec::with_capacity(count as usize);
    for _ in 0..count {
        idle.push(connect_to(d.addr, tls));
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while pipes() < before + count {
        assert!(
            Instant::now() < deadline,
            "the daemon never counted {count} more pipes"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    idle
}
