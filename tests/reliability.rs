//! Faults and back-pressure, with the daemon, the mount table and native
//! servers as separate processes where it matters.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use wspr::error::ids;
use wspr::rpc::{
    CallOptions, Client, Dispatcher, Invocation, Invoker, Lookup, Namespace, Pending, Server,
    ServerCall, Signature, Step,
};
use wspr::security::Principal;

use common::js::*;
use common::*;

/// `wsprd serve` as a process; its HTTP address and name space root.
fn serve(extra: &[&str]) -> (Proc, SocketAddr, String) {
    let mut c = wsprd();
    c.args([
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--mounttable-listen",
        "127.0.0.1:0",
        "--log-level",
        "warn",
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
fn family_client(root: &str) -> Client {
    let p = Principal::load_or_create(&test_credentials(), "test").unwrap();
    Client::with_principal(
        Namespace::new(vec![root.to_string()]),
        Arc::new(p),
        Default::default(),
    )
}

/// `Count(n)` streams `{"n": i, "pad": ...}` for i in 0..n, then returns n;
/// `sent` counts the items handed to the connection.
struct Firehose {
    sent: Arc<AtomicU64>,
}

impl Dispatcher for Firehose {
    fn lookup(&self, call: Pending) -> Step<Pending> {
        call.blocking(|_call| {
            Ok(Lookup {
                invoker: Arc::new(Firehose {
                    sent: self.sent.clone(),
                }),
                authorizer: Some(Arc::new(wspr::rpc::AllowAll)),
            })
        })
    }
}

impl Invoker for Firehose {
    fn invoke(&self, call: Invocation) -> Step<Invocation> {
        call.blocking(|call, args| {
            let _method = call.method().to_string();
            let _method = _method.as_str();
            let n = args.first().and_then(Value::as_u64).unwrap_or(0);
            let pad = "p".repeat(100);
            for i in 0..n {
                call.send(&json!({"n": i, "pad": pad}))?;
                self.sent.fetch_add(1, Ordering::SeqCst);
            }
            Ok(vec![json!(n)])
        })
    }
    fn signature(&self, _call: &ServerCall) -> wspr::Result<Signature> {
        Ok(Signature::new())
    }
}

#[test]
fn a_slow_reader_holds_the_daemon_to_a_fixed_memory_bound() {
    let (daemon, addr, root) = serve(&[]);
    let pid = daemon.child.id();
    let sent = Arc::new(AtomicU64::new(0));
    let client = family_client(&root);
    let firehose = Server::listen(
        "127.0.0.1:0",
        Arc::new(Firehose { sent: sent.clone() }),
        client,
    )
    .unwrap();
    firehose.add_name("firehose").unwrap();

    let mut js = Js::connect(addr);
    const N: u64 = 100_000;
    let id = js.call("firehose", "count", json!([N]), true);
    let mut next = 0u64;
    let take = |m: Msg, next: &mut u64| {
        assert_eq!((m.id, m.kind), (id, STREAM), "{m:?}");
        assert_eq!(
            m.message["n"],
            json!(*next),
            "items arrive complete and in order"
        );
        *next += 1;
    };
    for _ in 0..100 {
        let m = js.recv();
        take(m, &mut next);
    }
    let baseline = rss_kib(pid);
    // Stop reading. The producer must come to a halt (it waits for credit)
    // long before it has sent everything.
    let mut last = (sent.load(Ordering::SeqCst), Instant::now());
    let mut peak = baseline;
    wait_until(Duration::from_secs(30), "the producer to stall", || {
        peak = peak.max(rss_kib(pid));
        let now = sent.load(Ordering::SeqCst);
        if now != last.0 {
            last = (now, Instant::now());
        }
        last.1.elapsed() > Duration::from_millis(1500)
    });
    let stalled_at = sent.load(Ordering::SeqCst);
    assert!(
        stalled_at < N,
        "the producer waited: {stalled_at} of {N} sent"
    );
    assert!(
        peak < baseline + 32 * 1024,
        "daemon RSS grew from {baseline} KiB to {peak} KiB while its reader stalled"
    );
    // Read again: everything arrives, in order.
    while next < N {
        let m = js.recv();
        take(m, &mut next);
    }
    assert_eq!(
        js.recv(),
        Msg {
            id,
            kind: STREAM_CLOSE,
            message: Value::Null
        }
    );
    assert_eq!(
        js.recv(),
        Msg {
            id,
            kind: FINAL,
            message: json!([N])
        }
    );
}

#[test]
fn servers_mount_again_when_the_mount_table_comes_back() {
    let mut mt = wsprd();
    mt.args(["mounttable", "--listen", "127.0.0.1:0"]);
    let mut mt = Proc::spawn(mt);
    let mt_name = mt.line();
    let port = mt_name
        .split('@')
        .nth(2)
        .unwrap()
        .rsplit(':')
        .next()
        .unwrap()
        .to_string();
    // A bare address as the root: whichever mount table listens there.
    let root = format!("/127.0.0.1:{port}");
    let mut demo = wsprd();
    demo.args([
        "demo",
        "--namespace-root",
        &root,
        "--name",
        "native/adder",
        "--mount-ttl-secs",
        "2",
    ]);
    let demo = Proc::spawn(demo);
    demo.line();
    let (_daemon, addr, _) = serve(&["--namespace-root", &root, "--mount-ttl-secs", "2"]);
    let mut js = Js::connect(addr);
    js.serve("js/adder", 1);
    // (Of the processes' principal: it trusts the mount table.)
    let client = test_client(vec![root.clone()]);
    let names = || -> Vec<String> {
        client
            .glob("...")
            .map(|v| v.into_iter().map(|e| e.name).collect())
            .unwrap_or_default()
    };
    assert_eq!(names(), vec!["js", "js/adder", "native", "native/adder"]);

    mt.signal("-KILL");
    mt.wait();
    let mut again = wsprd();
    again.args(["mounttable", "--listen", &format!("127.0.0.1:{port}")]);
    let _mt2 = Proc::spawn(again);
    wait_until(Duration::from_secs(20), "the names to come back", || {
        names() == vec!["js", "js/adder", "native", "native/adder"]
    });
    // And they work.
    let id = js.call("native/adder", "add", json!([2, 3]), false);
    assert_eq!(
        js.recv(),
        Msg {
            id,
            kind: FINAL,
            message: json!([5])
        }
    );
}

#[test]
fn a_native_server_killed_mid_stream_ends_the_call() {
    let (_daemon, addr, root) = serve(&[]);
    let mut c = wsprd();
    c.args(["demo", "--namespace-root", &root, "--name", "doomed"]);
    let mut demo = Proc::spawn(c);
    demo.line();
    let mut js = Js::connect(addr);
    let id = js.call("doomed", "streamingAdd", json!([]), true);
    js.send(id, 3, json!(5));
    assert_eq!(
        js.recv(),
        Msg {
            id,
            kind: STREAM,
            message: json!(5)
        }
    );
    demo.signal("-KILL");
    demo.wait();
    let m = js.recv();
    assert_eq!(
        (m.id, m.kind, m.message["id"].clone()),
        (id, ERROR, json!(ids::ABORTED)),
        "{m:?}"
    );
    // The pipe goes on.
    let id = js.id();
    js.send(id, 13, json!({"method": "resolve", "name": "doomed"}));
    assert_eq!(js.recv().id, id);
}

#[test]
fn a_javascript_pipe_dropped_mid_stream_ends_the_call() {
    let (_daemon, addr, root) = serve(&[]);
    let mut js = Js::connect(addr);
    js.serve("fragile", 1);
    let client = family_client(&root);
    let mut call = client
        .start_call("fragile", "StreamingAdd", vec![], CallOptions::default())
        .unwrap();
    call.send(json!(1)).unwrap();
    js.answer_next_lookup(1);
    let r = js.recv();
    assert_eq!(
        js.recv(),
        Msg {
            id: r.id,
            kind: STREAM,
            message: json!(1)
        }
    );
    js.send(r.id, 3, json!(1));
    assert_eq!(call.recv().unwrap(), Some(json!(1)));
    drop(js);
    let err = call.recv().unwrap_err();
    assert_eq!(err.id(), ids::ABORTED, "{err}");
}

#[test]
fn sigterm_closes_pipes_unmounts_tells_callers_and_exits() {
    let mut mt = wsprd();
    mt.args(["mounttable", "--listen", "127.0.0.1:0"]);
    let mt = Proc::spawn(mt);
    let root = mt.line();
    let (mut daemon, addr, _) = serve(&["--namespace-root", &root]);
    let mut js = Js::connect(addr);
    js.serve("leaving", 1);
    let client = family_client(&root);
    assert_eq!(client.glob("...").unwrap().len(), 1);
    let c2 = client.clone();
    let caller = std::thread::spawn(move || {
        c2.call(
            "leaving",
            "Add",
            vec![json!(1), json!(2)],
            CallOptions::default(),
        )
    });
    js.answer_next_lookup(1);
    assert_eq!(js.recv().kind, SERVER_REQUEST);
    // The request is left waiting; the daemon is told to stop.
    daemon.signal("-TERM");
    let started = Instant::now();
    assert_eq!(daemon.wait(), Some(0));
    let took = started.elapsed();
    assert!(took < Duration::from_secs(15), "shutdown took {took:?}");
    let err = caller.join().unwrap().unwrap_err();
    assert_eq!(err.id(), ids::ABORTED, "{err}");
    assert!(client.glob("...").unwrap().is_empty(), "names unmounted");
    assert_eq!(js.close_code(), Some(1001));
}
