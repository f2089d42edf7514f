//! Bad input on a pipe: each gets the contract's answer and the pipe goes
//! on serving; only an oversized frame closes the pipe, and only that one.

mod common;

use std::time::Duration;

use serde_json::{Value, json};
use tungstenite::Message;
use wspr::error::ids;

use common::js::*;

/// The pipe still answers a call.
fn still_serving(js: &mut Js) {
    let id = js.call("demo/adder", "add", json!([2, 3]), false);
    assert_eq!(
        js.recv(),
        Msg {
            id,
            kind: FINAL,
            message: json!([5])
        }
    );
}

fn expect_error(js: &mut Js, id: u64, error_id: &str) -> String {
    let m = js.recv();
    assert_eq!((m.id, m.kind), (id, ERROR), "{m:?}");
    assert_eq!(m.message["id"], error_id, "{m:?}");
    m.message["msg"].as_str().unwrap_or("").to_string()
}

#[test]
fn frames_that_are_not_messages() {
    let d = daemon(|c| c.serve_demo = true);
    let mut js = Js::connect(d.http_addr());
    js.send_raw("this is not json");
    expect_error(&mut js, 0, ids::BAD_PROTOCOL);
    still_serving(&mut js);
    js.send_raw("[1, 2, 3]");
    expect_error(&mut js, 0, ids::BAD_PROTOCOL);
    js.ws.send(Message::binary(vec![1u8, 2, 3])).unwrap();
    expect_error(&mut js, 0, ids::BAD_PROTOCOL);
    js.send_raw(r#"{"type": 0, "data": {}}"#);
    expect_error(&mut js, 0, ids::BAD_PROTOCOL);
    js.send_raw(r#"{"id": 41, "type": 99, "data": {}}"#);
    expect_error(&mut js, 41, ids::BAD_PROTOCOL);
    js.send_raw(r#"{"id": 43, "type": "call"}"#);
    expect_error(&mut js, 43, ids::BAD_PROTOCOL);
    still_serving(&mut js);
}

#[test]
fn bad_flow_ids() {
    let d = daemon(|c| c.serve_demo = true);
    let mut js = Js::connect(d.http_addr());
    // An even id on a request.
    js.send(
        4,
        0,
        json!({"name": "demo/adder", "method": "add", "inArgs": [1, 2]}),
    );
    let msg = expect_error(&mut js, 4, ids::BAD_ARG);
    assert!(msg.contains("even"), "{msg}");
    // A reused id: a streaming call keeps id 7 in use.
    js.send(
        7,
        0,
        json!({"name": "demo/adder", "method": "streamingAdd", "inArgs": [], "isStreaming": true}),
    );
    js.send(7, 3, json!(1));
    assert_eq!(
        js.recv(),
        Msg {
            id: 7,
            kind: STREAM,
            message: json!(1)
        }
    );
    js.send(
        7,
        0,
        json!({"name": "demo/adder", "method": "add", "inArgs": [1, 2]}),
    );
    let msg = expect_error(&mut js, 7, ids::BAD_ARG);
    assert!(msg.contains("in use"), "{msg}");
    // The first call on id 7 is unharmed.
    js.send(7, 3, json!(2));
    assert_eq!(
        js.recv(),
        Msg {
            id: 7,
            kind: STREAM,
            message: json!(3)
        }
    );
    js.send(7, 4, Value::Null);
    assert_eq!(js.recv().kind, STREAM_CLOSE);
    assert_eq!(
        js.recv(),
        Msg {
            id: 7,
            kind: FINAL,
            message: json!([3])
        }
    );
    // Finished, the id may be used again.
    js.send(
        7,
        0,
        json!({"name": "demo/adder", "method": "add", "inArgs": [1, 2]}),
    );
    assert_eq!(
        js.recv(),
        Msg {
            id: 7,
            kind: FINAL,
            message: json!([3])
        }
    );
}

#[test]
fn missing_and_mistyped_fields() {
    let d = daemon(|c| c.serve_demo = true);
    let mut js = Js::connect(d.http_addr());
    let cases = [
        (0, json!({"method": "add", "inArgs": [1, 2]}), "name"),
        (0, json!({"name": "demo/adder", "method": 5}), "method"),
        (
            0,
            json!({"name": "demo/adder", "method": "add", "inArgs": "1,2"}),
            "inArgs",
        ),
        (
            0,
            json!({"name": "demo/adder", "method": "add", "timeout": "soon"}),
            "timeout",
        ),
        (1, json!({"name": 3, "serverId": 1}), "name"),
        (1, json!({"name": "x"}), "serverId"),
        (1, json!({"name": "x", "serverId": -1}), "serverId"),
        (5, json!({}), "name"),
        (6, json!("zero"), "stopServer"),
        (13, json!({"method": "glob"}), "pattern"),
        (13, json!({"method": "sing"}), "sing"),
        (0, Value::Null, "call"),
    ];
    for (kind, data, mentions) in cases {
        let id = js.id();
        js.send(id, kind, data.clone());
        let msg = expect_error(&mut js, id, ids::BAD_ARG);
        assert!(msg.contains(mentions), "type {kind} {data}: {msg}");
    }
    still_serving(&mut js);
}

#[test]
fn replies_on_unknown_flows_are_ignored() {
    let d = daemon(|c| c.serve_demo = true);
    let mut js = Js::connect(d.http_addr());
    js.send(100, 2, json!({"results": [1]}));
    js.send(101, 3, json!(1));
    js.send(102, 4, Value::Null);
    js.send(104, 11, json!({"handle": 1}));
    js.send(106, 12, json!({"err": null}));
    js.send(109, 17, Value::Null);
    assert_eq!(js.try_recv(Duration::from_millis(300)), None, "no answers");
    still_serving(&mut js);
}

#[test]
fn a_malformed_lookup_reply_is_internal_for_the_caller() {
    let d = daemon(|_| {});
    let client = native_client(&d);
    let mut js = Js::connect(d.http_addr());
    js.serve("adder", 0);
    let c2 = client.clone();
    let caller = std::thread::spawn(move || {
        c2.call("adder", "Add", vec![json!(1), json!(2)], Default::default())
    });
    let l = js.recv();
    js.send(l.id, 11, json!({"handle": "one", "signature": 7}));
    expect_error(&mut js, l.id, ids::BAD_ARG);
    let err = caller.join().unwrap().unwrap_err();
    assert_eq!(err.id(), ids::INTERNAL, "{err}");
}

#[test]
fn an_oversized_frame_closes_only_that_pipe() {
    let d = daemon(|c| {
        c.serve_demo = true;
        c.max_message_bytes = 4096;
    });
    let mut other = Js::connect(d.http_addr());
    let mut js = Js::connect(d.http_addr());
    let big = format!(
        r#"{{"id": 1, "type": 0, "data": {{"name": "{}", "method": "add"}}}}"#,
        "x".repeat(8192)
    );
    js.send_raw(&big);
    // The daemon closes the pipe with 1009.
    assert_eq!(js.close_code(), Some(1009));
    still_serving(&mut other);
}
