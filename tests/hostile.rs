//! A hostile peer costs only itself: each attacker of docs/reliability.md
//! over real sockets, with a well-behaved party that must keep being
//! served meanwhile. (How fast it is served is the bench's to measure; a
//! test only asserts that it is, and what the attacker gets.)

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use wspr::error::ids;
use wspr::rpc::{
    CallOptions, Client, ClientConfig, Dispatcher, Invocation, Invoker, Lookup, Namespace, Pending,
    Server, ServerCall, Signature, Step,
};

use common::js::*;
use common::*;

fn health(d: &wspr::wsprd::Daemon) -> Value {
    d.health()
}

/// A well-behaved pipe's call to the demo is answered.
fn served(js: &mut Js) {
    let id = js.call("demo/adder", "add", json!([20, 22]), false);
    assert_eq!(
        js.recv(),
        Msg {
            id,
            kind: FINAL,
            message: json!([42])
        },
        "the well-behaved pipe is served"
    );
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

#[test]
fn a_silent_server_holds_no_thread_for_its_waiting_lookups() {
    let (daemon, addr, root) = serve(&["--lookup-timeout-ms", "60000"]);
    let pid = daemon.child.id();
    let client = family_client(&root, ClientConfig::default());
    let mut silent = Js::connect(addr);
    silent.serve("silent", 1);
    let mut good = Js::connect(addr);
    good.serve("good", 2);
    let threads_before = threads_of(pid);

    // 300 calls into the server that never answers its lookups.
    let calls: Vec<_> = (0..300)
        .map(|_| {
            client
                .start_call(
                    "silent",
                    "Add",
                    vec![json!(1), json!(2)],
                    CallOptions::default(),
                )
                .unwrap()
        })
        .collect();
    for _ in 0..300 {
        assert_eq!(silent.recv().kind, LOOKUP);
    }
    let threads = threads_of(pid);
    assert!(
        threads < threads_before + 20,
        "the waiting lookups hold no thread: {threads_before} threads before, {threads} with 300 waiting"
    );

    // A third party calls the well-behaved JavaScript server, and another
    // pipe calls the demo and asks a signature: all are served.
    let c2 = client.clone();
    let caller = std::thread::spawn(move || {
        c2.call(
            "good",
            "Add",
            vec![json!(2), json!(3)],
            CallOptions::default(),
        )
    });
    good.answer_next_lookup(1);
    let r = good.recv();
    assert_eq!(r.kind, SERVER_REQUEST);
    good.send(r.id, 2, json!({"results": [5]}));
    assert_eq!(caller.join().unwrap().unwrap(), vec![json!(5)]);
    let mut other = Js::connect(addr);
    served(&mut other);
    let id = other.id();
    other.send(id, 5, json!({"name": "demo/adder"}));
    let m = other.recv();
    assert_eq!((m.id, m.kind), (id, FINAL), "{m:?}");

    // The silent server's callers end when it goes.
    drop(silent);
    for c in calls {
        assert_eq!(c.finish().unwrap_err().id(), ids::ABORTED);
    }
}

fn threads_of(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .count()
}

#[test]
fn signature_requests_into_a_silent_server_cost_only_their_pipe() {
    let d = daemon(|c| {
        c.serve_demo = true;
        c.workers = 4;
        c.lookup_timeout = Duration::from_secs(60);
    });
    let mut attacker = Js::connect(d.http_addr());
    attacker.serve("silent", 1);
    // 64 signature requests into its own server, which never answers: the
    // worker pool (4) is 16 times over, yet no worker waits for them.
    for _ in 0..64 {
        let id = attacker.id();
        attacker.send(id, 5, json!({"name": "silent"}));
    }
    for _ in 0..64 {
        assert_eq!(attacker.recv().kind, LOOKUP);
    }
    // Another pipe's signature request and call are answered at once
    // (with every worker held, they would wait 10 s per round of four).
    let mut good = Js::connect(d.http_addr());
    let id = good.id();
    good.send(id, 5, json!({"name": "demo/adder"}));
    let m = good.recv();
    assert_eq!((m.id, m.kind), (id, FINAL), "{m:?}");
    assert_eq!(m.message["add"]["inArgs"], json!(["a", "b"]));
    served(&mut good);
}

#[test]
fn a_pipe_past_its_share_of_workers_is_told_so_and_no_one_else_waits() {
    // A server that accepts connections and never says hello: a call to
    // it holds a worker until the connection's setup times out.
    let tarpit = TcpListener::bind("127.0.0.1:0").unwrap();
    let name = format!("/{}/x", tarpit.local_addr().unwrap());
    let d = daemon(|c| {
        c.serve_demo = true;
        c.workers = 4;
        c.max_workers_per_pipe = 2;
    });
    let mut attacker = Js::connect(d.http_addr());
    let n = 2 + wspr_waiting() + 10;
    let ids: Vec<u64> = (0..n)
        .map(|_| attacker.call(&name, "add", json!([1, 2]), false))
        .collect();
    // Past its share (2 running, 256 waiting), its own calls are refused.
    let mut refused = 0;
    while refused < 10 {
        let m = attacker.recv();
        assert!(ids.contains(&m.id), "{m:?}");
        assert_eq!(
            (m.kind, m.message["id"].clone()),
            (ERROR, json!(ids::ABORTED))
        );
        let msg = m.message["msg"].as_str().unwrap();
        assert!(msg.contains("--max-workers-per-pipe"), "{msg}");
        refused += 1;
    }
    assert!(
        health(&d)["limitsReached"]["workersPerPipe"]
            .as_u64()
            .unwrap()
            >= 10
    );
    // Another pipe's calls need a worker too (its first call connects):
    // one of the two the attacker cannot take serves it.
    let mut good = Js::connect(d.http_addr());
    served(&mut good);
    let id = good.id();
    good.send(id, 13, json!({"method": "glob", "pattern": "..."}));
    loop {
        let m = good.recv();
        if m.id == id && m.kind != STREAM {
            assert_eq!(m.kind, FINAL, "{m:?}");
            break;
        }
    }
}

/// What the daemon lets one pipe's requests wait for its workers.
fn wspr_waiting() -> usize {
    256
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
        call.blocking(|call, _args| {
            let _method = call.method().to_string();
            let _method = _method.as_str();
            let _ = call.done().recv_timeout(Duration::from_secs(60));
            Err(wspr::Error::aborted("cancelled"))
        })
    }
    fn signature(&self, _call: &ServerCall) -> wspr::Result<Signature> {
        Ok(Signature::new())
    }
}

/// `wsprd serve` as a process; its HTTP address and name space root.
fn serve(extra: &[&str]) -> (Proc, SocketAddr, String) {
    let mut c = wsprd();
    c.args([
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--demo",
        "--log-level",
        "error",
    ]);
    c.args(extra);
    let p = Proc::spawn(c);
    let addr = p.line().rsplit("http://").next().unwrap().parse().unwrap();
    let root = p.line().rsplit(' ').next().unwrap().to_string();
    (p, addr, root)
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap()
}

/// A client of the test processes' principal family.
fn family_client(root: &str, config: ClientConfig) -> Client {
    let p = wspr::security::Principal::load_or_create(&test_credentials(), "test").unwrap();
    Client::with_principal(Namespace::new(vec![root.to_string()]), Arc::new(p), config)
}

#[test]
fn whatever_one_pipe_streams_the_daemon_holds_its_budget() {
    const BUDGET_MIB: u64 = 4;
    let (daemon, addr, root) = serve(&["--max-pipe-buffer-bytes", &(BUDGET_MIB << 20).to_string()]);
    let pid = daemon.child.id();
    let client = family_client(&root, ClientConfig::default());
    let stubborn = Server::listen("127.0.0.1:0", Arc::new(Stubborn), client.clone()).unwrap();
    stubborn.add_name("stubborn").unwrap();
    // A server that never says hello: calls to it stay starting.
    let tarpit = TcpListener::bind("127.0.0.1:0").unwrap();
    let starting = format!("/{}/x", tarpit.local_addr().unwrap());
    let mut good = Js::connect(addr);
    served(&mut good);
    let baseline = rss_kib(pid);

    // Items that cost 16 times their text as a tree of JSON values: 128
    // KiB of `[0,0,...]` each, 0.9 MiB on each flow (within the flow's
    // limit), 12 flows of three kinds: 11 MiB sent, with a budget of 4.
    let item = format!("[{}]", vec!["0"; 65_000].join(","));
    let mut attacker = Js::connect(addr);
    let endpoint = attacker.serve("attacker/streams", 1);
    let stream = |attacker: &mut Js, id: u64| {
        for _ in 0..7 {
            attacker.send_raw(&format!(r#"{{"id":{id},"type":3,"data":{item}}}"#));
        }
    };
    let mut peak = baseline;
    let mut callers = vec![];
    // What the attacker hears besides what it waits for.
    let mut heard = vec![];
    let next = |attacker: &mut Js, kind: u64, heard: &mut Vec<Msg>| loop {
        let m = attacker.recv();
        if m.kind == kind {
            return m;
        }
        heard.push(m);
    };
    for _ in 0..4 {
        // Ahead of a call still starting; of a server that takes no more;
        // of a caller that does not read.
        let id = attacker.call(&starting, "sink", json!([]), true);
        stream(&mut attacker, id);
        let id = attacker.call("stubborn", "sink", json!([]), true);
        stream(&mut attacker, id);
        callers.push(
            client
                .start_call(
                    &format!("/{endpoint}/o"),
                    "StreamingAdd",
                    vec![],
                    CallOptions::default(),
                )
                .unwrap(),
        );
        let l = next(&mut attacker, LOOKUP, &mut heard);
        attacker.answer_lookup(l.id, 1, adder_signature(), false);
        let r = next(&mut attacker, SERVER_REQUEST, &mut heard);
        stream(&mut attacker, r.id);
        peak = peak.max(rss_kib(pid));
        served(&mut good);
    }
    // Past the budget, its own flows end, and say why.
    let mut over_budget = 0;
    while let Some(m) = attacker.try_recv(Duration::from_secs(1)) {
        peak = peak.max(rss_kib(pid));
        heard.push(m);
    }
    for m in heard {
        let why = m.message["msg"].as_str().unwrap_or("");
        if m.kind == ERROR && why.contains("--max-pipe-buffer-bytes") {
            assert_eq!(m.message["id"], ids::ABORTED);
            over_budget += 1;
        }
        if m.kind == CANCEL {
            // A streaming request whose caller got the error.
            over_budget += 1;
        }
    }
    assert!(over_budget > 0, "the attacker's flows past its budget end");
    served(&mut good);
    let grew = peak.saturating_sub(baseline);
    assert!(
        grew <= 2 * (BUDGET_MIB << 10) + (4 << 10),
        "daemon RSS grew by {grew} KiB (from {baseline}), budget {BUDGET_MIB} MiB"
    );
    drop(callers);
}

/// Opens `n` TCP connections to `addr` that send nothing.
fn idle(addr: SocketAddr, n: usize) -> Vec<TcpStream> {
    (0..n).map(|_| TcpStream::connect(addr).unwrap()).collect()
}

#[test]
fn connections_that_never_set_up_do_not_lock_out_anyone() {
    let d = daemon(|c| {
        c.serve_demo = true;
        c.max_setup_connections = 64;
        c.max_setup_per_address = 32;
    });
    // Someone established before the attack.
    let mut before = Js::connect(d.http_addr());
    served(&mut before);
    let mt = address_of(&d.namespace_roots()[0]);
    let demo_ep = native_client(&d).resolve("demo/adder").unwrap()[0].clone();
    let rpc = address_of(&demo_ep);
    // Idle connections to the HTTP port, the mount table and the RPC
    // listener of the servers: three times the cap on each.
    let _idle: Vec<_> = [d.http_addr(), mt, rpc]
        .into_iter()
        .flat_map(|a| idle(a, 192))
        .collect();
    // A new pipe, and a new native client over TCP (resolving through the
    // mount table, calling the demo): both get through.
    let mut new = Js::connect(d.http_addr());
    served(&mut new);
    served(&mut before);
    let mut config = ClientConfig::default();
    config.in_process = false;
    let client = Client::with_principal(
        Namespace::new(d.namespace_roots()),
        d.principal().clone(),
        config,
    );
    assert_eq!(
        client
            .call(
                "demo/adder",
                "Add",
                vec![json!(1), json!(2)],
                CallOptions::default()
            )
            .unwrap(),
        vec![json!(3)]
    );
    let h = health(&d);
    assert!(
        h["settingUp"]["http"].as_u64().unwrap() <= 64
            && h["settingUp"]["rpc"].as_u64().unwrap() <= 128,
        "{h}"
    );
    assert!(
        h["limitsReached"]["setupConnections"].as_u64().unwrap() >= 3 * 128,
        "{h}"
    );
}

#[test]
fn a_server_that_drops_a_client_during_setup_is_aborted_not_no_exist() {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let dropper = std::thread::spawn(move || {
        // Takes the hello, then drops the connection.
        let (mut s, _) = l.accept().unwrap();
        let _ = s.read(&mut [0u8; 64]);
    });
    let client = Client::new(Namespace::new(vec![])).unwrap();
    let err = client
        .call(
            &format!("/{addr}/x"),
            "Add",
            vec![],
            CallOptions::timeout(Duration::from_secs(10)),
        )
        .unwrap_err();
    assert_eq!(err.id(), ids::ABORTED, "{err}");
    assert!(err.msg().contains("during setup"), "{err}");
    dropper.join().unwrap();
}

/// `GET path` with `host` as the Host header; the status.
fn status(addr: SocketAddr, path: &str, host: &str) -> u16 {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let _ = write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
    );
    // The status line, however it comes in pieces.
    let mut line = vec![];
    let mut byte = [0u8; 1];
    while !line.ends_with(b"\r\n") {
        match s.read(&mut byte) {
            Ok(1) => line.push(byte[0]),
            _ => break,
        }
    }
    String::from_utf8_lossy(&line)
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

#[test]
fn a_host_that_is_not_this_daemon_is_refused_on_every_path() {
    let d = daemon(|c| c.allowed_origins = vec!["https://app.example".into()]);
    let a = d.http_addr();
    for path in ["/health", "/", "/wspr.js", "/ws", "/nothing"] {
        assert_eq!(status(a, path, "evil.example"), 403, "{path}");
        assert_eq!(status(a, path, "evil.example:8124"), 403, "{path}");
        assert_eq!(status(a, path, "localhost.evil.example"), 403, "{path}");
    }
    assert_eq!(status(a, "/health", "localhost:8124"), 200);
    assert_eq!(status(a, "/health", &a.to_string()), 200);
    assert_eq!(status(a, "/health", "app.example"), 200);
    assert_eq!(status(a, "/ws", "localhost"), 101);
    // A pipe as a browser opens it is unaffected.
    let mut js = Js::connect(a);
    let id = js.id();
    js.send(id, 13, json!({"method": "glob", "pattern": "..."}));
    assert_eq!(js.recv().id, id);
}

#[test]
fn streaming_requests_past_a_pipes_share_of_threads_are_refused() {
    let d = daemon(|c| c.max_streams_per_pipe = 2);
    let client = native_client(&d);
    let mut hog = Js::connect(d.http_addr());
    hog.serve("hog", 1);
    let stream = |name: &str| {
        client
            .start_call(name, "StreamingAdd", vec![], CallOptions::default())
            .unwrap()
    };
    // Two streaming requests it never answers hold a thread each.
    let held: Vec<_> = (0..2)
        .map(|_| {
            let c = stream("hog");
            let l = hog.recv();
            assert_eq!(l.kind, LOOKUP);
            hog.answer_lookup(l.id, 1, adder_signature(), false);
            assert_eq!(hog.recv().kind, SERVER_REQUEST);
            c
        })
        .collect();
    // The third is refused, and says why.
    let third = stream("hog");
    hog.answer_next_lookup(1);
    let err = third.finish().unwrap_err();
    assert_eq!(err.id(), ids::ABORTED, "{err}");
    assert!(err.msg().contains("--max-streams-per-pipe"), "{err}");
    assert_eq!(health(&d)["limitsReached"]["streamsPerPipe"], 1);
    // Another pipe's server streams as ever.
    let mut fine = Js::connect(d.http_addr());
    fine.serve("fine", 1);
    let mut c = stream("fine");
    fine.answer_next_lookup(1);
    let r = fine.recv();
    assert_eq!(r.kind, SERVER_REQUEST);
    fine.send(r.id, 3, json!(7));
    assert_eq!(c.recv().unwrap(), Some(json!(7)));
    fine.send(r.id, 2, json!({"results": [7]}));
    assert_eq!(c.finish().unwrap(), vec![json!(7)]);
    drop(held);
}
