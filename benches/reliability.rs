//! `make bench`, reliability part: what each attacker of
//! `docs/reliability.md` costs a well-behaved party, against a `wsprd
//! serve` process, as ratios against a baseline taken in the same run
//! just before each attacker starts:
//! - a well-behaved pipe's call p99 (JavaScript calling the demo), and a
//!   native caller's p99 calling a well-behaved JavaScript server (lookup
//!   uncached), with each attacker running against without: a silent
//!   server with 1,000 waiting lookups; 1,000 signature requests into it,
//!   kept outstanding; 5,000 idle connections on each port (HTTP, the
//!   JavaScript servers' RPC listener, the mount table), reopened as the
//!   daemon closes them; the memory attacker (goal: at most 2);
//! - the memory attacker: the daemon's RSS growth against the pipe's
//!   budget (goal: at most 2);
//! - SIGTERM with 160 busy pipes and the CPU busy: close frames with 1001
//!   out of 160, ten runs (goal: 160 every time).
//!
//! Run it on a quiet machine: every ratio is a p99.

mod util;

use std::io::{BufRead, BufReader, Read};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tungstenite::{Message, WebSocket};
use util::*;
use wspr::rpc::{
    CallOptions, Client, Dispatcher, Invocation, Invoker, Lookup, Namespace, Pending, Server,
    ServerCall, Signature, Step,
};

type Ws = WebSocket<TcpStream>;

/// The memory attacker's pipe budget (`--max-pipe-buffer-bytes`).
const BUDGET: u64 = 16 << 20;

fn ws_connect(addr: SocketAddr) -> Ws {
    let s = TcpStream::connect(addr).unwrap();
    s.set_nodelay(true).unwrap();
    let (ws, _) = tungstenite::client(format!("ws://{addr}/ws"), s).unwrap();
    ws
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

fn serve(ws: &mut Ws, name: &str) -> String {
    send_json(
        ws,
        &json!({"id": 1, "type": 1, "data": {"name": name, "serverId": 1}}),
    );
    let m = read_json(ws);
    assert_eq!(m["type"], 0, "serve: {m}");
    m["message"].as_str().unwrap().to_string()
}

/// Credentials the daemon and the bench's native callers share.
fn credentials() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench/credentials")
}

struct Daemon {
    child: Child,
    addr: SocketAddr,
    root: String,
}

impl Daemon {
    fn start(extra: &[&str]) -> Daemon {
        let mut child = Command::new(env!("CARGO_BIN_EXE_wsprd"))
            .env("WSPR_CREDENTIALS", credentials())
            .args([
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--demo",
                "--log-level",
                &std::env::var("WSPR_BENCH_LOG").unwrap_or_else(|_| "error".into()),
            ])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let first = lines.next().unwrap().unwrap();
        let addr = first.rsplit("http://").next().unwrap().parse().unwrap();
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

    fn client(&self) -> Client {
        let p = wspr::security::Principal::load_or_create(&credentials(), "bench").unwrap();
        Client::with_principal(
            Namespace::new(vec![self.root.clone()]),
            Arc::new(p),
            Default::default(),
        )
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The address of a rooted name's server (`/@w1@<address>@...`).
fn address_of(name: &str) -> SocketAddr {
    name.trim_start_matches('/')
        .split('@')
        .nth(2)
        .unwrap()
        .parse()
        .unwrap()
}

/// A "JavaScript" server that answers every lookup (not cacheable) and
/// request at once, on its own thread, until its pipe closes.
fn good_server(addr: SocketAddr, name: &str) {
    let mut ws = ws_connect(addr);
    serve(&mut ws, name);
    std::thread::spawn(move || {
        let sig = json!({"add": {"inArgs": ["a", "b"], "numOutArgs": 2, "isStreaming": false}});
        while let Ok(m) = ws.read() {
            let Message::Text(t) = m else { continue };
            let m: Value = serde_json::from_str(t.as_str()).unwrap();
            let id = &m["id"];
            let reply = match m["type"].as_u64() {
                Some(5) => {
                    json!({"id": id, "type": 11, "data": {"handle": 1, "signature": sig, "cacheable": false}})
                }
                Some(3) => json!({"id": id, "type": 2, "data": {"results": [5], "err": null}}),
                _ => continue,
            };
            if ws.send(Message::text(reply.to_string())).is_err() {
                break;
            }
        }
    });
}

/// The well-behaved parties whose latency is measured.
struct Good {
    pipe: Ws,
    next: u64,
    client: Client,
}

impl Good {
    fn new(d: &Daemon) -> Good {
        good_server(d.addr, "bench/good");
        Good {
            pipe: ws_connect(d.addr),
            next: 1,
            client: d.client(),
        }
    }

    fn js_call(&mut self) {
        let id = self.next;
        self.next += 2;
        send_json(
            &mut self.pipe,
            &json!({"id": id, "type": 0, "data": {"name": "demo/adder", "method": "add", "inArgs": [2, 3], "numOutArgs": 2}}),
        );
        let m = read_json(&mut self.pipe);
        assert_eq!((m["id"].as_u64(), m["type"].as_u64()), (Some(id), Some(0)));
    }

    fn native_call(&mut self) {
        let r = self
            .client
            .call(
                "bench/good",
                "Add",
                vec![json!(2), json!(3)],
                CallOptions::default(),
            )
            .unwrap();
        assert_eq!(r, vec![json!(5)]);
    }

    /// p99s of `n` calls each way, interleaved.
    fn measure(&mut self, label: &str, n: usize) -> (Row, Row) {
        let (mut js, mut native) = (Vec::with_capacity(n), Vec::with_capacity(n));
        let start = Instant::now();
        for _ in 0..n {
            let t = Instant::now();
            self.js_call();
            js.push(t.elapsed());
            let t = Instant::now();
            self.native_call();
            native.push(t.elapsed());
        }
        let wall = start.elapsed() / 2;
        (
            Row::from_samples(&format!("JS -> demo, {label}"), js, wall),
            Row::from_samples(&format!("native -> JS server, {label}"), native, wall),
        )
    }
}

/// Something running against the daemon until dropped.
trait Attacker {
    fn name(&self) -> &'static str;
}

/// A silent JavaScript server with 1,000 calls waiting on its lookups.
struct SilentLookups {
    _pipe: Ws,
    _calls: Vec<wspr::rpc::Call>,
}

impl SilentLookups {
    fn start(d: &Daemon) -> SilentLookups {
        let mut pipe = ws_connect(d.addr);
        serve(&mut pipe, "bench/silent");
        let client = d.client();
        let calls = (0..1000)
            .map(|_| {
                client
                    .start_call("bench/silent", "Add", vec![], CallOptions::default())
                    .unwrap()
            })
            .collect();
        for _ in 0..1000 {
            assert_eq!(read_json(&mut pipe)["type"], 5);
        }
        SilentLookups {
            _pipe: pipe,
            _calls: calls,
        }
    }
}

impl Attacker for SilentLookups {
    fn name(&self) -> &'static str {
        "1,000 lookups waiting on a silent server"
    }
}

/// 1,000 signature requests into a silent server, kept outstanding (each
/// answered one is asked again).
struct SignatureFlood {
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl SignatureFlood {
    fn start(d: &Daemon) -> SignatureFlood {
        let stop = Arc::new(AtomicBool::new(false));
        let mut silent = ws_connect(d.addr);
        serve(&mut silent, "bench/silent-sig");
        let (tx, rx) = crossbeam_channel::bounded(1);
        let s = stop.clone();
        let silent_t = std::thread::spawn(move || {
            let mut seen = 0;
            silent
                .get_ref()
                .set_read_timeout(Some(Duration::from_millis(200)))
                .unwrap();
            while !s.load(Ordering::Relaxed) {
                if let Ok(Message::Text(_)) = silent.read() {
                    seen += 1;
                    if seen == 1000 {
                        let _ = tx.send(());
                    }
                }
            }
        });
        let mut asker = ws_connect(d.addr);
        let s = stop.clone();
        let asker_t = std::thread::spawn(move || {
            let mut next = 1u64;
            let mut ask = |asker: &mut Ws| {
                send_json(
                    asker,
                    &json!({"id": next, "type": 5, "data": {"name": "bench/silent-sig"}}),
                );
                next += 2;
            };
            for _ in 0..1000 {
                ask(&mut asker);
            }
            asker
                .get_ref()
                .set_read_timeout(Some(Duration::from_millis(200)))
                .unwrap();
            while !s.load(Ordering::Relaxed) {
                if let Ok(Message::Text(_)) = asker.read() {
                    ask(&mut asker);
                }
            }
        });
        rx.recv_timeout(Duration::from_secs(60))
            .expect("1,000 lookups caused by signature requests");
        SignatureFlood {
            stop,
            threads: vec![silent_t, asker_t],
        }
    }
}

impl Attacker for SignatureFlood {
    fn name(&self) -> &'static str {
        "1,000 signature requests into a silent server"
    }
}

impl Drop for SignatureFlood {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// The soft limit on open files.
fn max_files() -> usize {
    std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|l| {
            l.lines()
                .find(|l| l.starts_with("Max open files"))
                .and_then(|l| l.split_whitespace().nth(3))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(1024)
}

/// 5,000 connections on each port that never send a byte, reopened every
/// second as the daemon closes them (a thread per port).
struct IdleConnections {
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl IdleConnections {
    fn start(targets: Vec<SocketAddr>) -> IdleConnections {
        let per_port = 5000.min(max_files().saturating_sub(1000) / targets.len());
        if per_port < 5000 {
            println!(
                "(open-file limit {}: {per_port} idle connections per port; raise it with ulimit -n 20000 for 5,000)",
                max_files()
            );
        }
        let stop = Arc::new(AtomicBool::new(false));
        let (tx, rx) = crossbeam_channel::bounded(targets.len());
        let threads = targets
            .into_iter()
            .map(|t| {
                let (s, tx) = (stop.clone(), tx.clone());
                std::thread::spawn(move || {
                    let mut open: Vec<TcpStream> = vec![];
                    let mut first = true;
                    while !s.load(Ordering::Relaxed) {
                        open.retain(|c| {
                            let _ = c.set_nonblocking(true);
                            matches!((&*c).read(&mut [0u8; 1]),
                                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
                        });
                        while open.len() < per_port && !s.load(Ordering::Relaxed) {
                            match TcpStream::connect(t) {
                                Ok(c) => open.push(c),
                                Err(_) => break,
                            }
                        }
                        if first {
                            let _ = tx.send(());
                            first = false;
                        }
                        // The attacker's pace: a round a second.
                        let round = Instant::now() + Duration::from_secs(1);
                        while Instant::now() < round && !s.load(Ordering::Relaxed) {
                            std::thread::sleep(Duration::from_millis(50));
                        }
                    }
                })
            })
            .collect::<Vec<_>>();
        for _ in 0..threads.len() {
            rx.recv_timeout(Duration::from_secs(300))
                .expect("the first round of idle connections");
        }
        IdleConnections { stop, threads }
    }
}

impl Attacker for IdleConnections {
    fn name(&self) -> &'static str {
        "5,000 idle connections on each port"
    }
}

impl Drop for IdleConnections {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// A server whose `Sink` method takes no stream items until cancelled.
struct Stubborn;

impl Dispatcher for Stubborn {
    fn lookup(&self, call: Pending) -> Step<Pending> {
        call.blocking(|_call| {
            Ok(Lookup {
                invoker: Arc::new(Stubborn),
                authorizer: Some(Arc::new(wspr::rpc::AllowAll)),
            })
        })
    }
}

impl Invoker for Stubborn {
    fn invoke(&self, call: Invocation) -> Step<Invocation> {
        call.blocking(|call, _| {
            let _ = call.done().recv_timeout(Duration::from_secs(600));
            Err(wspr::Error::aborted("cancelled"))
        })
    }
    fn signature(&self, _call: &ServerCall) -> wspr::Result<Signature> {
        Ok(Signature::new())
    }
}

/// One pipe streaming 0.95 MiB items of `[0,0,...]` (16 times their text
/// as a tree of JSON values), two on each flow, ahead of a call that never
/// starts, a server that takes no more, and a caller that does not read:
/// 48 flows at once, then three more every half second; the daemon's peak
/// RSS meanwhile.
struct MemoryAttacker {
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
    peak: Arc<AtomicU64>,
    _stubborn: Server,
    _tarpit: TcpListener,
}

impl MemoryAttacker {
    fn start(d: &Daemon) -> MemoryAttacker {
        let client = d.client();
        let stubborn = Server::listen("127.0.0.1:0", Arc::new(Stubborn), client.clone()).unwrap();
        stubborn.add_name("bench/stubborn").unwrap();
        let tarpit = TcpListener::bind("127.0.0.1:0").unwrap();
        let starting = format!("/{}/x", tarpit.local_addr().unwrap());
        let stop = Arc::new(AtomicBool::new(false));
        let peak = Arc::new(AtomicU64::new(0));
        let (pid, addr) = (d.pid(), d.addr);
        let (s, p) = (stop.clone(), peak.clone());
        let sampler = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                p.fetch_max(rss_kib(pid), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(5));
            }
        });
        let (tx, rx) = crossbeam_channel::bounded(1);
        let s = stop.clone();
        let attacker = std::thread::spawn(move || {
            let item = format!("[{}]", vec!["0"; 498_000].join(","));
            let mut ws = ws_connect(addr);
            let endpoint = serve(&mut ws, "bench/mem");
            ws.get_ref()
                .set_read_timeout(Some(Duration::from_millis(10)))
                .unwrap();
            let stream = |ws: &mut Ws, id: u64| {
                for _ in 0..2 {
                    let m = format!(r#"{{"id":{id},"type":3,"data":{item}}}"#);
                    if ws.send(Message::text(m)).is_err() {
                        return;
                    }
                }
            };
            let mut next = 3u64;
            let mut callers = std::collections::VecDeque::new();
            let mut round = 0;
            while !s.load(Ordering::Relaxed) {
                for name in [starting.as_str(), "bench/stubborn"] {
                    send_json(
                        &mut ws,
                        &json!({"id": next, "type": 0, "data": {"name": name, "method": "sink", "inArgs": [], "numOutArgs": 2, "isStreaming": true}}),
                    );
                    stream(&mut ws, next);
                    next += 2;
                }
                if let Ok(c) = client.start_call(
                    &format!("/{endpoint}/{round}"),
                    "StreamingAdd",
                    vec![],
                    CallOptions::default(),
                ) {
                    callers.push_back(c);
                }
                if callers.len() > 16 {
                    callers.pop_front();
                }
                // Answers lookups, streams into each request; the rest
                // (its flows' errors) is read and dropped.
                while let Ok(m) = ws.read() {
                    let Message::Text(t) = m else { continue };
                    let m: Value = serde_json::from_str(t.as_str()).unwrap();
                    match m["type"].as_u64() {
                        Some(5) => send_json(
                            &mut ws,
                            &json!({"id": m["id"], "type": 11, "data": {"handle": 1, "signature": {"streamingAdd": {"inArgs": [], "numOutArgs": 2, "isStreaming": true}}}}),
                        ),
                        Some(3) => stream(&mut ws, m["id"].as_u64().unwrap()),
                        _ => {}
                    }
                }
                round += 1;
                if round == 16 {
                    let _ = tx.send(());
                }
                if round >= 16 {
                    let pace = Instant::now() + Duration::from_millis(500);
                    while Instant::now() < pace && !s.load(Ordering::Relaxed) {
                        std::thread::sleep(Duration::from_millis(20));
                    }
                }
            }
        });
        rx.recv_timeout(Duration::from_secs(120))
            .expect("the memory attacker's first 48 flows");
        MemoryAttacker {
            stop,
            threads: vec![attacker, sampler],
            peak,
            _stubborn: stubborn,
            _tarpit: tarpit,
        }
    }
}

impl Attacker for MemoryAttacker {
    fn name(&self) -> &'static str {
        "the memory attacker (48 flows of 0.95 MiB items)"
    }
}

impl Drop for MemoryAttacker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// Calls the demo on one pipe until the daemon closes it; its close code.
/// `ready` counts the pipes that have had an answer, `calls` the answers.
fn busy_pipe(addr: SocketAddr, ready: &AtomicU64, calls: &AtomicU64) -> Option<u16> {
    let mut ws = ws_connect(addr);
    let mut first = true;
    ws.get_ref()
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut id = 1u64;
    loop {
        let call = json!({"id": id, "type": 0, "data": {"name": "demo/adder", "method": "add", "inArgs": [1, 2], "numOutArgs": 2}});
        id += 2;
        if ws.send(Message::text(call.to_string())).is_err() {
            break;
        }
        match ws.read() {
            Ok(Message::Text(_)) => {
                if std::mem::take(&mut first) {
                    ready.fetch_add(1, Ordering::Relaxed);
                }
                calls.fetch_add(1, Ordering::Relaxed);
            }
            Ok(Message::Close(f)) => return f.map(|f| u16::from(f.code)),
            Ok(_) => {}
            Err(_) => return None,
        }
    }
    loop {
        match ws.read() {
            Ok(Message::Close(f)) => return f.map(|f| u16::from(f.code)),
            Ok(_) => {}
            Err(_) => return None,
        }
    }
}

/// Starts a daemon, keeps 160 pipes busy and every core spinning, sends
/// SIGTERM; the pipes closed with 1001.
fn sigterm_run() -> usize {
    let mut d = Daemon::start(&[]);
    let (ready, calls) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let addr = d.addr;
    let pipes: Vec<_> = (0..160)
        .map(|_| {
            let (ready, calls) = (ready.clone(), calls.clone());
            std::thread::spawn(move || busy_pipe(addr, &ready, &calls))
        })
        .collect();
    let spin = Arc::new(AtomicBool::new(true));
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    let burners: Vec<_> = (0..cores)
        .map(|_| {
            let spin = spin.clone();
            std::thread::spawn(move || {
                let mut x = 0u64;
                while spin.load(Ordering::Relaxed) {
                    x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
                }
                x
            })
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(60);
    // Every pipe open and answered, and busy.
    while ready.load(Ordering::Relaxed) < 160 || calls.load(Ordering::Relaxed) < 20 * 160 {
        assert!(Instant::now() < deadline, "the pipes never got busy");
        std::thread::sleep(Duration::from_millis(10));
    }
    let _ = Command::new("kill")
        .args(["-TERM", &d.pid().to_string()])
        .status();
    let codes: Vec<Option<u16>> = pipes.into_iter().map(|p| p.join().unwrap()).collect();
    spin.store(false, Ordering::Relaxed);
    for b in burners {
        let _ = b.join();
    }
    let _ = d.child.wait();
    codes.iter().filter(|c| **c == Some(1001)).count()
}

fn main() {
    let n = iters(3000);
    // (The well-behaved pipe idles while an attacker sets up: no pings.)
    let d = Daemon::start(&[
        "--keepalive-ms",
        "600000",
        "--lookup-timeout-ms",
        "600000",
        "--max-pipe-buffer-bytes",
        &BUDGET.to_string(),
    ]);
    let mut good = Good::new(&d);
    for _ in 0..300 {
        good.js_call();
        good.native_call();
    }
    let demo = good.client.resolve("demo/adder").unwrap()[0].clone();
    let ports = vec![d.addr, address_of(&demo), address_of(&d.root)];

    let mut rows = vec![];
    let mut ratios = vec![];
    type Start<'a> = Box<dyn Fn() -> Box<dyn Attacker> + 'a>;
    let attackers: Vec<Start> = vec![
        Box::new(|| Box::new(SilentLookups::start(&d))),
        Box::new(|| Box::new(SignatureFlood::start(&d))),
        Box::new(|| Box::new(IdleConnections::start(ports.clone()))),
    ];
    for start in attackers {
        let (base_js, base_native) = good.measure("alone", n);
        let a = start();
        eprintln!("measuring with {}", a.name());
        let (js, native) = good.measure(a.name(), n);
        ratios.push((
            a.name(),
            js.p99_us / base_js.p99_us,
            native.p99_us / base_native.p99_us,
        ));
        drop(a);
        rows.extend([base_js, base_native, js, native]);
    }
    let memory_growth = {
        let (base_js, base_native) = good.measure("alone", n);
        let before = rss_kib(d.pid());
        let a = MemoryAttacker::start(&d);
        eprintln!("measuring with {}", a.name());
        let (js, native) = good.measure(a.name(), n);
        let grew = a.peak.load(Ordering::Relaxed).saturating_sub(before);
        ratios.push((
            a.name(),
            js.p99_us / base_js.p99_us,
            native.p99_us / base_native.p99_us,
        ));
        drop(a);
        rows.extend([base_js, base_native, js, native]);
        grew as f64 * 1024.0 / BUDGET as f64
    };
    print_table(
        "reliability: a well-behaved pipe and a native caller, alone and with each attacker",
        &rows,
        "JS -> demo, alone",
    );
    println!("\np99 with the attacker / p99 alone (goal <= 2):");
    for (name, js, native) in &ratios {
        println!("  {name:<50} JS -> demo {js:>6.2}   native -> JS server {native:>6.2}");
    }
    println!(
        "memory attacker: daemon RSS growth / pipe budget ({} MiB) = {memory_growth:.2} (goal <= 2)",
        BUDGET >> 20
    );
    drop(good);
    drop(d);

    let runs: Vec<usize> = (0..10).map(|_| sigterm_run()).collect();
    println!(
        "SIGTERM with 160 busy pipes and every core busy: pipes closed with 1001 in ten runs: {runs:?} (goal 160 each)"
    );
    let mut extra = vec![
        ("memory_growth_over_budget", format!("{memory_growth:.3}")),
        (
            "sigterm_1001_of_160",
            format!(
                "[{}]",
                runs.iter()
                    .map(|r| r.to_string())
                    .collect::<Vec<_>>()
                    .join(",")
            ),
        ),
    ];
    let ratio_json = ratios
        .iter()
        .map(|(n, j, v)| {
            format!("{{\"attacker\":{n:?},\"js_p99_ratio\":{j:.3},\"native_p99_ratio\":{v:.3}}}")
        })
        .collect::<Vec<_>>()
        .join(",");
    extra.push(("p99_ratios", format!("[{ratio_json}]")));
    write_json("reliability.json", &rows, &extra);
}
