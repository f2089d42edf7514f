//! The soak: mixed traffic against a `wsprd serve` process for a bounded
//! time (`WSPR_SOAK_SECS`, default 15; `make soak` runs 600), with peers
//! that misbehave and the attackers of docs/reliability.md, while a
//! well-behaved pipe's calls are timed. Afterwards every call must have
//! had exactly one answer, and the daemon's threads, flows, descriptors
//! and memory must be back to where they were.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tungstenite::Message;
use wspr::error::ids;
use wspr::rpc::{CallOptions, Client, Namespace};
use wspr::security::Principal;

use common::js::*;
use common::*;

#[derive(Default)]
struct Counts {
    js_calls: AtomicU64,
    js_streams: AtomicU64,
    native_calls: AtomicU64,
    /// Native calls answered with the right sum, to the demo and to
    /// JavaScript's servers.
    native_ok_demo: AtomicU64,
    native_ok_js: AtomicU64,
    native_errors: AtomicU64,
    served: AtomicU64,
    pipes: AtomicU64,
    misbehaved: AtomicU64,
    violations: AtomicU64,
    /// Attackers' requests answered (each exactly once), and the flows
    /// the memory attacker had ended for its pipe's budget.
    attacks: AtomicU64,
    over_budget: AtomicU64,
}

fn proc_stat(pid: u32) -> (usize, usize, u64) {
    let threads = std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .count();
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count();
    let rss = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap();
    (threads, fds, rss)
}

fn health(addr: SocketAddr) -> Value {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(s, "GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    serde_json::from_str(out.split("\r\n\r\n").nth(1).unwrap()).unwrap()
}

/// Sequential calls on one pipe; each call's messages must end in exactly
/// one Final or Error, with nothing after it.
fn js_caller(addr: SocketAddr, until: Instant, c: &Counts, seed: u64) {
    let mut round = seed;
    while Instant::now() < until {
        c.pipes.fetch_add(1, Ordering::Relaxed);
        let mut js = Js::connect(addr);
        for _ in 0..(5 + round % 20) {
            round = round
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            if round.is_multiple_of(3) {
                let id = js.call("demo/adder", "streamingAdd", json!([]), true);
                for n in 1..=3 {
                    js.send(id, 3, json!(n));
                }
                js.send(id, 4, Value::Null);
                let got: Vec<Msg> = (0..5).map(|_| js.recv()).collect();
                let kinds: Vec<u64> = got.iter().map(|m| m.kind).collect();
                if got.iter().any(|m| m.id != id)
                    || kinds != vec![STREAM, STREAM, STREAM, STREAM_CLOSE, FINAL]
                {
                    c.violations.fetch_add(1, Ordering::Relaxed);
                    eprintln!("bad stream: {got:?}");
                }
                c.js_streams.fetch_add(1, Ordering::Relaxed);
            } else {
                let id = js.call("demo/adder", "add", json!([round % 100, 1]), false);
                let m = js.recv();
                if m != (Msg {
                    id,
                    kind: FINAL,
                    message: json!([round % 100 + 1]),
                }) {
                    c.violations.fetch_add(1, Ordering::Relaxed);
                    eprintln!("bad answer: {m:?}");
                }
                c.js_calls.fetch_add(1, Ordering::Relaxed);
            }
        }
        // Nothing is left over for this pipe.
        if let Some(m) = js.try_recv(Duration::from_millis(20)) {
            c.violations.fetch_add(1, Ordering::Relaxed);
            eprintln!("message after every answer: {m:?}");
        }
        if round.is_multiple_of(4) {
            // Leave in the middle of a call.
            js.call("demo/adder", "streamingAdd", json!([]), true);
        }
        drop(js);
    }
}

/// Serves `name` for a while, answering every lookup and request, then
/// stops (or just drops the pipe); again until the end.
fn js_server(addr: SocketAddr, name: String, until: Instant, c: &Counts, stop: &AtomicBool) {
    let mut round = 0u64;
    while Instant::now() < until && !stop.load(Ordering::Relaxed) {
        round += 1;
        c.pipes.fetch_add(1, Ordering::Relaxed);
        let mut js = Js::connect(addr);
        js.serve(&name, 1);
        c.served.fetch_add(1, Ordering::Relaxed);
        let this_round = Instant::now() + Duration::from_millis(700);
        while Instant::now() < this_round.min(until) {
            let Some(m) = js.try_recv(Duration::from_millis(50)) else {
                continue;
            };
            match m.kind {
                LOOKUP => js.answer_lookup(m.id, 1, adder_signature(), round.is_multiple_of(2)),
                SERVER_REQUEST => {
                    let a = &m.message["args"];
                    let sum = a[0].as_i64().unwrap_or(0) + a[1].as_i64().unwrap_or(0);
                    js.send(m.id, 2, json!({"results": [sum]}));
                }
                _ => {}
            }
        }
        if round.is_multiple_of(2) {
            let id = js.id();
            js.send(id, 6, json!(1));
            // Answers for requests still in flight may come first.
            while let Some(m) = js.try_recv(Duration::from_secs(5)) {
                if m.id == id {
                    break;
                }
            }
        }
    }
}

/// Calls the JavaScript servers and the demo; each call returns exactly
/// once (the client guarantees it); a Timeout would mean a lost answer.
fn native_caller(client: &Client, names: &[String], until: Instant, c: &Counts, seed: u64) {
    let mut i = seed;
    while Instant::now() < until {
        i += 1;
        let name = &names[(i as usize) % names.len()];
        let r = client.call(
            name,
            "Add",
            vec![json!(i % 50), json!(2)],
            CallOptions::timeout(Duration::from_secs(10)),
        );
        c.native_calls.fetch_add(1, Ordering::Relaxed);
        match r {
            Ok(v) if v == vec![json!(i % 50 + 2)] => {
                let ok = if name == "demo/adder" {
                    &c.native_ok_demo
                } else {
                    &c.native_ok_js
                };
                ok.fetch_add(1, Ordering::Relaxed);
            }
            Ok(v) => {
                c.violations.fetch_add(1, Ordering::Relaxed);
                eprintln!("wrong result from {name}: {v:?}");
            }
            // The demo never goes away: any error from it is a fault.
            Err(e) if name == "demo/adder" => {
                c.violations.fetch_add(1, Ordering::Relaxed);
                eprintln!("{name}: {e}");
            }
            // The silent server times out by design; servers come and go.
            Err(e) if e.is(ids::TIMEOUT) && name != "soak/silent" => {
                c.violations.fetch_add(1, Ordering::Relaxed);
                eprintln!("{name}: {e}");
            }
            Err(_) => {
                c.native_errors.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// Sends what the daemon must refuse, and checks the pipe goes on.
fn misbehaving(addr: SocketAddr, until: Instant, c: &Counts) {
    let mut n = 0u64;
    while Instant::now() < until {
        n += 1;
        c.pipes.fetch_add(1, Ordering::Relaxed);
        let mut js = Js::connect(addr);
        js.send_raw("{not json");
        js.ws.send(Message::binary(vec![0u8; 10])).unwrap();
        js.send(2, 0, json!({"name": "x", "method": "y"}));
        js.send(77, 2, json!({"results": []}));
        js.send(79, 11, json!({"handle": 1}));
        js.send(9, 0, json!({"method": 3}));
        let mut errors = 0;
        while let Some(m) = js.try_recv(Duration::from_millis(500)) {
            if m.kind == ERROR {
                errors += 1;
            }
            if errors == 4 {
                break;
            }
        }
        if errors != 4 {
            c.violations.fetch_add(1, Ordering::Relaxed);
            eprintln!("misbehaving pipe got {errors} errors, not 4");
        }
        let id = js.call("demo/adder", "add", json!([1, 1]), false);
        if js.recv()
            != (Msg {
                id,
                kind: FINAL,
                message: json!([2]),
            })
        {
            c.violations.fetch_add(1, Ordering::Relaxed);
        }
        if n.is_multiple_of(5) {
            // An oversized frame: only this pipe closes.
            let _ = js.ws.send(Message::text("x".repeat(1100 * 1024)));
            while js.try_recv(Duration::from_millis(200)).is_some() {}
        }
        c.misbehaved.fetch_add(1, Ordering::Relaxed);
    }
}

/// Keeps 200 calls waiting on the server that never answers its lookups;
/// each ends once (the lookup timeout), and another takes its place.
fn lookup_flood(client: &Client, until: Instant, c: &Counts) {
    while Instant::now() < until {
        let calls: Vec<_> = (0..200)
            .filter_map(|_| {
                client
                    .start_call("soak/silent", "Add", vec![], CallOptions::default())
                    .ok()
            })
            .collect();
        for call in calls {
            match call.finish() {
                Err(e) if e.is(ids::TIMEOUT) || e.is(ids::ABORTED) => {
                    c.attacks.fetch_add(1, Ordering::Relaxed);
                }
                r => {
                    c.violations.fetch_add(1, Ordering::Relaxed);
                    eprintln!("a call to the silent server: {r:?}");
                }
            }
        }
    }
}

/// One pipe asks the signature of the silent server 64 times at once,
/// again and again: each request gets exactly one answer (its Timeout).
fn signature_flood(addr: SocketAddr, until: Instant, c: &Counts) {
    let mut js = Js::connect(addr);
    while Instant::now() < until {
        let ids: Vec<u64> = (0..64)
            .map(|_| {
                let id = js.id();
                js.send(id, 5, json!({"name": "soak/silent"}));
                id
            })
            .collect();
        let mut answered = 0;
        while answered < ids.len() {
            let Some(m) = js.try_recv(Duration::from_secs(20)) else {
                break;
            };
            if ids.contains(&m.id) && (m.kind == ERROR || m.kind == FINAL) {
                answered += 1;
            }
        }
        if answered != ids.len() {
            c.violations.fetch_add(1, Ordering::Relaxed);
            eprintln!("signature flood: {answered} of {} answered", ids.len());
        }
        c.attacks.fetch_add(answered as u64, Ordering::Relaxed);
    }
}

/// Keeps up to 300 connections open to each of `targets` that never send
/// a byte (the daemon closes them to make room, or at their deadline;
/// closed ones are replaced).
fn idle_flood(targets: &[SocketAddr], until: Instant) {
    let mut open: Vec<std::net::TcpStream> = vec![];
    while Instant::now() < until {
        open.retain(|s| {
            let mut b = [0u8; 1];
            s.set_nonblocking(true).is_ok()
                && matches!(
                    std::io::Read::read(&mut &*s, &mut b),
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock
                )
        });
        for t in targets {
            while open
                .iter()
                .filter(|s| s.peer_addr().ok() == Some(*t))
                .count()
                < 300
            {
                match std::net::TcpStream::connect(t) {
                    Ok(s) => open.push(s),
                    Err(_) => break,
                }
            }
        }
        // (Pacing the attacker, not waiting for the daemon.)
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Streams big items (32 KiB of `[0,0,...]`, 16 times their size as a
/// tree of JSON values) ahead of calls that never start, on new pipes
/// again and again: each flow ends with exactly one error, some of them
/// for the pipe's budget (1 MiB).
fn memory_flood(addr: SocketAddr, starting: &str, until: Instant, c: &Counts) {
    let item = format!("[{}]", vec!["0"; 16_000].join(","));
    while Instant::now() < until {
        let mut js = Js::connect(addr);
        let ids: Vec<u64> = (0..6)
            .map(|_| {
                let id = js.call(starting, "sink", json!([]), true);
                for _ in 0..7 {
                    js.send_raw(&format!(r#"{{"id":{id},"type":3,"data":{item}}}"#));
                }
                id
            })
            .collect();
        let mut ended = 0;
        while ended < ids.len() {
            let Some(m) = js.try_recv(Duration::from_secs(20)) else {
                break;
            };
            if ids.contains(&m.id) && m.kind == ERROR {
                ended += 1;
                if m.message["msg"]
                    .as_str()
                    .is_some_and(|w| w.contains("--max-pipe-buffer-bytes"))
                {
                    c.over_budget.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        if ended != ids.len() {
            c.violations.fetch_add(1, Ordering::Relaxed);
            eprintln!("memory flood: {ended} of {} flows ended", ids.len());
        }
        c.attacks.fetch_add(ended as u64, Ordering::Relaxed);
    }
}

/// Pipes that break the websocket protocol: each is closed with 1002.
fn violators(addr: SocketAddr, until: Instant, c: &Counts) {
    while Instant::now() < until {
        let mut js = Js::connect(addr);
        // RSV1 set on a masked text frame.
        let _ = std::io::Write::write_all(
            js.ws.get_mut(),
            &[0xC1, 0x82, 1, 2, 3, 4, b'{' ^ 1, b'}' ^ 2],
        );
        match js.close_code() {
            Some(1002) => {
                c.attacks.fetch_add(1, Ordering::Relaxed);
            }
            other => {
                c.violations.fetch_add(1, Ordering::Relaxed);
                eprintln!("a protocol violation was closed with {other:?}");
            }
        }
    }
}

/// Sequential calls on one well-behaved pipe until `until` (or `n` calls);
/// how long each took. Every one must be answered.
fn well_behaved(addr: SocketAddr, until: Instant, n: usize, c: &Counts) -> Vec<Duration> {
    let mut js = Js::connect(addr);
    let mut took = vec![];
    while Instant::now() < until && took.len() < n {
        let t = Instant::now();
        let id = js.call("demo/adder", "add", json!([2, 3]), false);
        match js.try_recv(Duration::from_secs(30)) {
            Some(m) if m.id == id && m.message == json!([5]) => took.push(t.elapsed()),
            m => {
                c.violations.fetch_add(1, Ordering::Relaxed);
                eprintln!("the well-behaved pipe got {m:?}");
                return took;
            }
        }
    }
    took
}

fn percentile(samples: &mut [Duration], q: f64) -> Duration {
    samples.sort_unstable();
    samples
        .get(((samples.len().max(1) - 1) as f64 * q).round() as usize)
        .copied()
        .unwrap_or_default()
}

#[test]
fn soak() {
    let secs: u64 = std::env::var("WSPR_SOAK_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(15);
    let mut cmd = wsprd();
    cmd.args([
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--mounttable-listen",
        "127.0.0.1:0",
        "--demo",
        "--log-level",
        "warn",
        "--lookup-timeout-ms",
        "300",
        // (Small budgets: what the allocator keeps for reuse of the big
        // items the memory attacker makes the daemon read stays within
        // the RSS check's margin; tests/hostile.rs and the bench take
        // bigger ones.)
        "--max-stream-buffer-bytes",
        "262144",
        "--max-pipe-buffer-bytes",
        "1048576",
    ]);
    let daemon = Proc::spawn(cmd);
    let addr: SocketAddr = daemon
        .line()
        .rsplit("http://")
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let root = daemon.line().rsplit(' ').next().unwrap().to_string();
    let pid = daemon.child.id();
    let principal = Arc::new(Principal::load_or_create(&test_credentials(), "test").unwrap());
    let client = Client::with_principal(
        Namespace::new(vec![root.clone()]),
        principal,
        Default::default(),
    );

    // Warm up, then let idle threads retire, and take the baseline. The
    // warm-up includes a round of the memory attacker and of idle
    // connections: what the allocator keeps for reuse of the big items
    // they make the daemon read, and of the stacks of the threads they
    // make it start (glibc caches up to 40 MiB of those), is then in the
    // baseline (it is not a leak; growth after would be).
    js_caller(addr, Instant::now(), &Counts::default(), 1);
    // (A server that accepts and never says hello: calls to it stay
    // starting, and the memory attacker streams ahead of them.)
    let tarpit = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let starting = format!("/{}/x", tarpit.local_addr().unwrap());
    memory_flood(
        addr,
        &starting,
        Instant::now() + Duration::from_millis(1),
        &Counts::default(),
    );
    let demo = client.resolve("demo/adder").unwrap()[0].clone();
    let rpc_ports: Vec<SocketAddr> = [root.as_str(), demo.as_str()]
        .iter()
        .map(|n| {
            n.trim_start_matches('/')
                .split('@')
                .nth(2)
                .unwrap()
                .parse()
                .unwrap()
        })
        .collect();
    let mut idle_targets = rpc_ports.clone();
    idle_targets.push(addr);
    idle_flood(&idle_targets, Instant::now() + Duration::from_secs(2));
    let settled = |what: &str| {
        wait_until(Duration::from_secs(40), what, || {
            let h = health(addr);
            h["pipes"] == 0
                && h["flows"] == 0
                && h["servers"] == 0
                && h["workers"] == 0
                && h["settingUp"]["http"].as_u64() <= Some(1)
                && h["settingUp"]["rpc"] == 0
        });
    };
    settled("the warm-up to settle");
    let (threads0, fds0, rss0) = proc_stat(pid);
    // The well-behaved pipe's latency before any attacker.
    let mut calm = well_behaved(
        addr,
        Instant::now() + Duration::from_secs(60),
        500,
        &Counts::default(),
    );

    let c = Counts::default();
    let stop = AtomicBool::new(false);
    let until = Instant::now() + Duration::from_secs(secs);
    let names: Vec<String> = (0..3).map(|i| format!("soak/js/{i}")).collect();
    let mut targets = names.clone();
    targets.push("demo/adder".into());
    targets.push("soak/silent".into());
    let mut attacked = vec![];
    std::thread::scope(|s| {
        for i in 0..3 {
            let c = &c;
            s.spawn(move || js_caller(addr, until, c, i));
        }
        for name in &names {
            let (c, stop) = (&c, &stop);
            s.spawn(move || js_server(addr, name.clone(), until, c, stop));
        }
        // A server that never answers its lookups.
        s.spawn(|| {
            let mut js = Js::connect(addr);
            // (The signature flood, started alongside, may look the name
            // up before the serve's own answer arrives: its lookups are
            // passed over here, as they are below.)
            let id = js.id();
            js.send(id, 1, json!({"name": "soak/silent", "serverId": 1}));
            loop {
                let m = js.recv();
                if m.id == id {
                    assert_eq!(m.kind, FINAL, "serve failed: {m:?}");
                    break;
                }
            }
            while Instant::now() < until {
                let _ = js.try_recv(Duration::from_millis(100));
            }
        });
        for i in 0..2 {
            let (client, targets, c) = (&client, &targets, &c);
            s.spawn(move || native_caller(client, targets, until, c, i * 1000));
        }
        s.spawn(|| misbehaving(addr, until, &c));
        // The attackers of docs/reliability.md.
        s.spawn(|| lookup_flood(&client, until, &c));
        s.spawn(|| signature_flood(addr, until, &c));
        let idle_targets = idle_targets.clone();
        s.spawn(move || idle_flood(&idle_targets, until));
        s.spawn(|| memory_flood(addr, &starting, until, &c));
        s.spawn(|| violators(addr, until, &c));
        attacked = s
            .spawn(|| well_behaved(addr, until, usize::MAX, &c))
            .join()
            .unwrap();
    });
    stop.store(true, Ordering::Relaxed);
    drop(client);

    settled("every pipe, flow and server to end");
    let mut after = proc_stat(pid);
    wait_until(
        Duration::from_secs(40),
        "threads and descriptors back to the baseline",
        || {
            after = proc_stat(pid);
            after.0 <= threads0 && after.1 <= fds0
        },
    );
    let h = health(addr);
    let n = |a: &AtomicU64| a.load(Ordering::Relaxed);
    println!(
        "soak {secs} s: {} JS calls, {} JS streams, {} native calls ({} errors while servers came and went), {} serves, {} pipes, {} misbehaving pipes, {} violations",
        n(&c.js_calls),
        n(&c.js_streams),
        n(&c.native_calls),
        n(&c.native_errors),
        n(&c.served),
        n(&c.pipes),
        n(&c.misbehaved),
        n(&c.violations)
    );
    println!(
        "daemon before/after: threads {threads0}/{}, fds {fds0}/{}, RSS {rss0}/{} KiB; health {h}",
        after.0, after.1, after.2
    );
    let (calm50, calm99) = (percentile(&mut calm, 0.5), percentile(&mut calm, 0.99));
    let (att50, att99) = (
        percentile(&mut attacked, 0.5),
        percentile(&mut attacked, 0.99),
    );
    println!(
        "the well-behaved pipe: {} calls alone, p50 {calm50:?} p99 {calm99:?}; {} calls among the attackers ({} attacks answered, {} flows ended for their budget), p50 {att50:?} p99 {att99:?} (p99 ratio {:.2}; the bench measures it on a quiet machine)",
        calm.len(),
        attacked.len(),
        n(&c.attacks),
        n(&c.over_budget),
        att99.as_secs_f64() / calm99.as_secs_f64().max(1e-6)
    );
    assert_eq!(
        n(&c.violations),
        0,
        "every call answered exactly once, every bad input refused"
    );
    assert!(n(&c.js_calls) > 0 && n(&c.served) > 0);
    // The attackers ran, and the well-behaved pipe was served throughout.
    assert!(n(&c.attacks) > 0 && n(&c.over_budget) > 0);
    assert!(!attacked.is_empty(), "the well-behaved pipe was served");
    // Native callers reached both the demo and JavaScript's servers.
    assert!(
        n(&c.native_ok_demo) > 0 && n(&c.native_ok_js) > 0,
        "native calls answered: {} by the demo, {} by JavaScript",
        n(&c.native_ok_demo),
        n(&c.native_ok_js)
    );
    // Memory the allocator keeps for reuse is not a leak; growth is.
    assert!(
        after.2 <= rss0 * 2 + 8 * 1024,
        "RSS {rss0} KiB before, {} KiB after",
        after.2
    );
}
