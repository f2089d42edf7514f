//! A fixed number of calls through a `wsprd` process, for counting what
//! the daemon spends per call with a tool that wraps it (instructions
//! under `valgrind --tool=callgrind`, system calls under `strace -c -f`,
//! context switches under `perf stat -e context-switches`). Counts that
//! the machine's other load does not disturb, unlike times.
//!
//! ```text
//! WSPR_DAEMON=target/release/wsprd \
//! WSPR_DAEMON_WRAP="valgrind --tool=callgrind --callgrind-out-file=/tmp/cg.%p" \
//!   cargo run --release --example daemon_calls -- SCENARIO N
//! ```
//!
//! SCENARIO is one of `js-native` (JavaScript calls the daemon's demo
//! object), `native-js-cached`, `native-js-uncached` (a native caller calls
//! a JavaScript-served object), `js-js` (JavaScript calls JavaScript) or
//! `none` (the daemon starts, the servers connect, no call: the fixed cost).
//! The per-call cost is the difference between two runs with different N,
//! divided by the difference of N (bench/percall.sh does that). The
//! daemon stops with SIGTERM so that the wrapping tool writes its counts.
//! The "JavaScript" peers are small Rust websocket clients, as in
//! benches/wsprd.rs.
use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};

use serde_json::{Value, json};
use tungstenite::{Message, WebSocket};
use wspr::rpc::{CallOptions, Client, Namespace};

type Ws = WebSocket<TcpStream>;

fn ws_connect(addr: SocketAddr) -> Ws {
    let s = TcpStream::connect(addr).expect("connect");
    s.set_nodelay(true).expect("nodelay");
    tungstenite::client(format!("ws://{addr}/ws"), s)
        .expect("websocket")
        .0
}

fn read_json(ws: &mut Ws) -> Value {
    loop {
        match ws.read().expect("read") {
            Message::Text(t) => return serde_json::from_str(t.as_str()).expect("json"),
            Message::Close(_) => panic!("closed"),
            _ => {}
        }
    }
}

fn send_json(ws: &mut Ws, v: &Value) {
    ws.send(Message::text(v.to_string())).expect("send");
}

/// Serves `name` from a thread that answers lookups and requests at once.
fn js_server(addr: SocketAddr, name: &str, cacheable: bool) -> std::thread::JoinHandle<()> {
    let mut ws = ws_connect(addr);
    send_json(
        &mut ws,
        &json!({"id": 1, "type": 1, "data": {"name": name, "serverId": 1}}),
    );
    let m = read_json(&mut ws);
    assert_eq!(m["type"], 0, "serve: {m}");
    std::thread::Builder::new()
        .name("js-server".into())
        .spawn(move || {
            let sig =
                json!({"add": {"inArgs": ["a", "b"], "numOutArgs": 2, "isStreaming": false}});
            while let Ok(Message::Text(t)) = ws.read() {
                let m: Value = serde_json::from_str(t.as_str()).expect("json");
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
        })
        .expect("thread")
}

fn js_call(ws: &mut Ws, id: u64, name: &str) {
    send_json(
        ws,
        &json!({"id": id, "type": 0, "data": {"name": name, "method": "add", "inArgs": [2, 3], "numOutArgs": 2}}),
    );
    let m = read_json(ws);
    assert_eq!(
        (m["id"].as_u64(), m["type"].as_u64()),
        (Some(id), Some(0)),
        "{m}"
    );
}

/// The process named `wsprd` at or below `pid`.
fn daemon_pid(pid: u32) -> Option<u32> {
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
    if comm.trim() == "wsprd" {
        return Some(pid);
    }
    let children =
        std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap_or_default();
    children
        .split_whitespace()
        .filter_map(|c| c.parse().ok())
        .find_map(daemon_pid)
}

fn main() {
    let mut args = std::env::args().skip(1);
    let scenario = args.next().expect("SCENARIO N");
    let n: u64 = args
        .next()
        .and_then(|s| s.parse().ok())
        .expect("SCENARIO N");
    let daemon = std::env::var("WSPR_DAEMON").unwrap_or_else(|_| "target/release/wsprd".into());
    let wrap = std::env::var("WSPR_DAEMON_WRAP").unwrap_or_default();
    let credentials =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench/credentials");
    let mut argv: Vec<String> = wrap.split_whitespace().map(String::from).collect();
    argv.push(daemon);
    let mut child = Command::new(&argv[0])
        .args(&argv[1..])
        .env("WSPR_CREDENTIALS", &credentials)
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
        .stdout(Stdio::piped())
        .spawn()
        .expect("start the daemon");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let first = lines.next().expect("a first line").expect("a line");
    let addr: SocketAddr = first
        .rsplit("://")
        .next()
        .and_then(|a| a.parse().ok())
        .expect("an address");
    let root = lines
        .next()
        .expect("a second line")
        .expect("a line")
        .rsplit(' ')
        .next()
        .expect("a root")
        .to_string();
    let servers = [
        js_server(addr, "bench/uncached", false),
        js_server(addr, "bench/cached", true),
    ];
    let principal =
        wspr::security::Principal::load_or_create(&credentials, "bench").expect("credentials");
    let client = Client::with_principal(
        Namespace::new(vec![root]),
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
            .expect("call");
        assert_eq!(r, vec![json!(5)]);
    };
    let mut js = ws_connect(addr);
    // One call of each kind first, whatever N, so that both runs of a
    // pair set up the same connections and caches.
    js_call(&mut js, 1, "demo/adder");
    js_call(&mut js, 3, "bench/cached");
    native("bench/cached");
    native("bench/uncached");
    let mut id = 5;
    for _ in 0..n {
        match scenario.as_str() {
            "js-native" => js_call(&mut js, id, "demo/adder"),
            "js-js" => js_call(&mut js, id, "bench/cached"),
            "native-js-cached" => native("bench/cached"),
            "native-js-uncached" => native("bench/uncached"),
            "none" => {}
            other => panic!("unknown scenario {other}"),
        }
        id += 2;
    }
    drop(js);
    // SIGTERM to the daemon (the child, or the child's descendant named
    // wsprd under strace or perf): it shuts down, the wrapping tool reports.
    let target = daemon_pid(child.id()).unwrap_or(child.id());
    let _ = Command::new("kill")
        .args(["-TERM", &target.to_string()])
        .status();
    let _ = child.wait();
    drop(client);
    for s in servers {
        let _ = s.join();
    }
}
