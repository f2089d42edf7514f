//! Faults around JavaScript servers and calls: silence, stop, pipe close,
//! late replies, cancels and deadlines.

mod common;

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use wspr::error::ids;
use wspr::rpc::{CallOptions, Client};

use common::js::*;

type Caller = std::thread::JoinHandle<(Result<Vec<Value>, wspr::Error>, Duration)>;

/// A native call on another thread; its result and how long it took.
fn call(client: &Client, name: &str, method: &str, args: Vec<Value>) -> Caller {
    let (client, name, method) = (client.clone(), name.to_string(), method.to_string());
    std::thread::spawn(move || {
        let t = Instant::now();
        let r = client.call(
            &name,
            &method,
            args,
            CallOptions::timeout(Duration::from_secs(60)),
        );
        (r, t.elapsed())
    })
}

#[test]
fn javascript_that_never_answers_a_lookup_gives_timeout() {
    let d = daemon(|c| c.lookup_timeout = Duration::from_millis(300));
    let client = native_client(&d);
    let mut js = Js::connect(d.http_addr());
    js.serve("silent", 0);
    let caller = call(&client, "silent", "Add", vec![json!(1), json!(2)]);
    let l = js.recv();
    assert_eq!(l.kind, LOOKUP);
    let (r, _) = caller.join().unwrap();
    let err = r.unwrap_err();
    assert_eq!(err.id(), ids::TIMEOUT, "{err}");
    // A late reply is ignored, and the pipe goes on serving.
    js.answer_lookup(l.id, 1, adder_signature(), false);
    assert_eq!(js.try_recv(Duration::from_millis(200)), None);
    let caller = call(&client, "silent", "Add", vec![json!(1), json!(2)]);
    let l2 = js.recv();
    assert_eq!(l2.kind, LOOKUP);
    assert_ne!(l2.id, l.id);
    js.answer_lookup(l2.id, 1, adder_signature(), false);
    let r = js.recv();
    js.send(r.id, 2, json!({"results": [3]}));
    assert_eq!(caller.join().unwrap().0.unwrap(), vec![json!(3)]);
}

/// Serves "waiting" and starts two calls: one left waiting in its lookup,
/// one left waiting in its server request.
fn two_waiting(js: &mut Js, client: &Client) -> (Caller, Caller, u64) {
    js.serve("waiting", 5);
    let in_lookup = call(client, "waiting", "Add", vec![json!(1), json!(2)]);
    let l = js.recv();
    assert_eq!(l.kind, LOOKUP);
    let in_request = call(client, "waiting", "Divide", vec![json!(1), json!(2)]);
    let l2 = js.recv();
    assert_eq!(l2.kind, LOOKUP);
    js.answer_lookup(l2.id, 1, adder_signature(), false);
    let r = js.recv();
    assert_eq!(r.kind, SERVER_REQUEST);
    (in_lookup, in_request, r.id)
}

fn assert_aborted_at_once(c: Caller) {
    let (r, took) = c.join().unwrap();
    let err = r.unwrap_err();
    assert_eq!(err.id(), ids::ABORTED, "{err}");
    // The lookup timeout is 60 s: the caller did not wait for it.
    assert!(took < Duration::from_secs(30), "took {took:?}");
}

#[test]
fn stop_server_aborts_waiting_lookups_and_requests() {
    let d = daemon(|c| c.lookup_timeout = Duration::from_secs(60));
    let client = native_client(&d);
    let mut js = Js::connect(d.http_addr());
    let (a, b, req) = two_waiting(&mut js, &client);
    let id = js.id();
    js.send(id, 6, json!(5));
    // JavaScript hears that the waiting request is cancelled, then stop's Final.
    let mut got = vec![];
    while got.iter().all(|m: &Msg| m.id != id) {
        got.push(js.recv());
    }
    assert!(
        got.contains(&Msg {
            id,
            kind: FINAL,
            message: json!(true)
        }),
        "{got:?}"
    );
    assert!(
        got.iter().any(|m| m.id == req && m.kind == CANCEL),
        "{got:?}"
    );
    assert_aborted_at_once(a);
    assert_aborted_at_once(b);
    // A reply to the dead request is ignored; the pipe still works.
    js.send(req, 2, json!({"results": [0]}));
    let id = js.id();
    js.send(id, 13, json!({"method": "glob", "pattern": "..."}));
    assert_eq!(
        js.recv(),
        Msg {
            id,
            kind: FINAL,
            message: json!([])
        }
    );
    assert_eq!(d.health()["flows"], 0);
}

#[test]
fn closing_the_pipe_aborts_waiting_lookups_and_requests() {
    let d = daemon(|c| c.lookup_timeout = Duration::from_secs(60));
    let client = native_client(&d);
    let mut js = Js::connect(d.http_addr());
    let (a, b, _) = two_waiting(&mut js, &client);
    drop(js);
    assert_aborted_at_once(a);
    assert_aborted_at_once(b);
    common::wait_until(Duration::from_secs(10), "the pipe to go", || {
        d.health()["pipes"] == 0
    });
    // Its names are gone.
    assert!(client.glob("...").unwrap().is_empty());
}

#[test]
fn a_native_cancel_reaches_javascript() {
    let d = daemon(|_| {});
    let client = native_client(&d);
    let mut js = Js::connect(d.http_addr());
    js.serve("slow", 0);
    let c = client
        .start_call("slow", "StreamingAdd", vec![], CallOptions::default())
        .unwrap();
    js.answer_next_lookup(1);
    let r = js.recv();
    assert_eq!(r.kind, SERVER_REQUEST);
    c.cancel();
    assert_eq!(
        js.recv(),
        Msg {
            id: r.id,
            kind: CANCEL,
            message: Value::Null
        }
    );
    assert_eq!(c.finish().unwrap_err().id(), ids::ABORTED);
    // JavaScript's late answer is ignored.
    js.send(r.id, 2, json!({"results": [1]}));
    assert_eq!(js.try_recv(Duration::from_millis(200)), None);
}

#[test]
fn a_callers_deadline_cancels_the_javascript_request() {
    let d = daemon(|_| {});
    let client = native_client(&d);
    let mut js = Js::connect(d.http_addr());
    js.serve("slow", 0);
    let (c2, name) = (client.clone(), "slow".to_string());
    let caller = std::thread::spawn(move || {
        c2.call(
            &name,
            "Add",
            vec![json!(1), json!(2)],
            CallOptions::timeout(Duration::from_millis(500)),
        )
    });
    js.answer_next_lookup(1);
    let r = js.recv();
    let left = r.message["context"]["timeout"].as_u64().unwrap();
    assert!(left <= 500, "{left}");
    assert_eq!(
        js.recv(),
        Msg {
            id: r.id,
            kind: CANCEL,
            message: Value::Null
        }
    );
    assert_eq!(caller.join().unwrap().unwrap_err().id(), ids::TIMEOUT);
}

#[test]
fn javascript_cancels_and_times_out_its_own_calls() {
    let d = daemon(|_| {});
    let mut server = Js::connect(d.http_addr());
    server.serve("slow", 0);
    let mut js = Js::connect(d.http_addr());

    // Cancel.
    let id = js.call("slow", "add", json!([1, 2]), false);
    server.answer_next_lookup(1);
    let r = server.recv();
    js.send(id, 17, Value::Null);
    let m = js.recv();
    assert_eq!(
        (m.id, m.kind, m.message["id"].clone()),
        (id, ERROR, json!(ids::ABORTED))
    );
    let mut saw_cancel = false;
    while let Some(m) = server.try_recv(Duration::from_secs(5)) {
        if m == (Msg {
            id: r.id,
            kind: CANCEL,
            message: Value::Null,
        }) {
            saw_cancel = true;
            break;
        }
    }
    assert!(saw_cancel, "the server's JavaScript heard the cancel");

    // Timeout.
    let id = js.id();
    js.send(
        id,
        0,
        json!({"name": "slow", "method": "add", "inArgs": [1, 2], "timeout": 300}),
    );
    server.answer_next_lookup(1);
    let m = js.recv();
    assert_eq!(
        (m.id, m.kind, m.message["id"].clone()),
        (id, ERROR, json!(ids::TIMEOUT))
    );
    // Nothing follows the Error.
    assert_eq!(js.try_recv(Duration::from_millis(300)), None);
}

#[test]
fn a_call_to_a_name_nobody_serves_is_no_exist() {
    let d = daemon(|_| {});
    let mut js = Js::connect(d.http_addr());
    let id = js.call("nobody/here", "add", json!([1]), false);
    let m = js.recv();
    assert_eq!(
        (m.id, m.kind, m.message["id"].clone()),
        (id, ERROR, json!(ids::NO_EXIST))
    );
}
