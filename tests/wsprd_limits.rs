//! Each limit: reaching it gives a clear error, the rest goes on, and
//! `/health` counts it.

mod common;

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use wspr::error::ids;
use wspr::rpc::{
    CallOptions, Dispatcher, Invocation, Invoker, Lookup, Pending, Server, ServerCall, Signature,
    Step,
};

use common::js::*;

fn limits(d: &wspr::wsprd::Daemon) -> Value {
    d.health()["limitsReached"].clone()
}

fn expect_limit(js: &mut Js, id: u64) -> String {
    let m = js.recv();
    assert_eq!((m.id, m.kind), (id, ERROR), "{m:?}");
    assert_eq!(m.message["id"], ids::ABORTED, "{m:?}");
    let msg = m.message["msg"].as_str().unwrap().to_string();
    assert!(msg.starts_with("limit reached"), "{msg}");
    msg
}

#[test]
fn flows_per_pipe() {
    let d = daemon(|c| {
        c.serve_demo = true;
        c.max_flows_per_pipe = 3;
    });
    let mut js = Js::connect(d.http_addr());
    let open: Vec<u64> = (0..3)
        .map(|_| {
            let id = js.call("demo/adder", "streamingAdd", json!([]), true);
            js.send(id, 3, json!(1));
            assert_eq!(
                js.recv(),
                Msg {
                    id,
                    kind: STREAM,
                    message: json!(1)
                }
            );
            id
        })
        .collect();
    let id = js.call("demo/adder", "add", json!([1, 2]), false);
    let msg = expect_limit(&mut js, id);
    assert!(msg.contains("--max-flows-per-pipe"), "{msg}");
    assert_eq!(limits(&d)["flowsPerPipe"], 1);
    // One ends; a new call goes through.
    js.send(open[0], 4, Value::Null);
    assert_eq!(js.recv().kind, STREAM_CLOSE);
    assert_eq!(js.recv().kind, FINAL);
    let id = js.call("demo/adder", "add", json!([1, 2]), false);
    assert_eq!(
        js.recv(),
        Msg {
            id,
            kind: FINAL,
            message: json!([3])
        }
    );
}

#[test]
fn servers_per_pipe_and_names_per_server() {
    let d = daemon(|c| {
        c.max_servers_per_pipe = 2;
        c.max_names_per_server = 2;
    });
    let mut js = Js::connect(d.http_addr());
    js.serve("a", 1);
    js.serve("b", 2);
    let id = js.id();
    js.send(id, 1, json!({"name": "c", "serverId": 3}));
    assert!(expect_limit(&mut js, id).contains("--max-servers-per-pipe"));
    js.serve("a2", 1);
    let id = js.id();
    js.send(id, 1, json!({"name": "a3", "serverId": 1}));
    assert!(expect_limit(&mut js, id).contains("--max-names-per-server"));
    let l = limits(&d);
    assert_eq!(
        (l["serversPerPipe"].clone(), l["namesPerServer"].clone()),
        (json!(1), json!(1))
    );
    // Stopping one makes room.
    let id = js.id();
    js.send(id, 6, json!(2));
    assert_eq!(js.recv().message, json!(true));
    js.serve("c", 3);
}

#[test]
fn javascript_streaming_ahead_of_a_caller_that_does_not_read() {
    let d = daemon(|c| c.max_stream_buffer_bytes = 4096);
    let client = native_client(&d);
    let mut js = Js::connect(d.http_addr());
    js.serve("firehose", 0);
    // The caller starts a streaming call and never reads.
    let call = client
        .start_call("firehose", "StreamingAdd", vec![], CallOptions::default())
        .unwrap();
    js.answer_next_lookup(1);
    let r = js.recv();
    assert_eq!(r.kind, SERVER_REQUEST);
    // 1 KiB items: the credit window (256 KiB) fills, then the daemon's
    // buffer for this flow (4 KiB), then the flow ends.
    let item = "x".repeat(1024);
    for _ in 0..400 {
        js.send(r.id, 3, json!(item));
    }
    let mut saw_cancel = false;
    while let Some(m) = js.try_recv(Duration::from_secs(10)) {
        if m.id == r.id && m.kind == CANCEL {
            saw_cancel = true;
            break;
        }
    }
    assert!(saw_cancel, "JavaScript is told to stop");
    let err = call.finish().unwrap_err();
    assert_eq!(err.id(), ids::ABORTED);
    assert!(err.msg().contains("--max-stream-buffer-bytes"), "{err}");
    assert!(limits(&d)["streamBuffer"].as_u64().unwrap() >= 1);
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
            let _ = call.done().recv_timeout(Duration::from_secs(30));
            Err(wspr::Error::aborted("cancelled"))
        })
    }
    fn signature(&self, _call: &ServerCall) -> wspr::Result<Signature> {
        Ok(Signature::new())
    }
}

#[test]
fn javascript_streaming_to_a_server_that_does_not_read() {
    let d = daemon(|c| c.max_stream_buffer_bytes = 8192);
    let stubborn = Server::listen("127.0.0.1:0", Arc::new(Stubborn), native_client(&d)).unwrap();
    let mut js = Js::connect(d.http_addr());
    let id = js.call(&stubborn.name(), "sink", json!([]), true);
    let item = "y".repeat(1024);
    for _ in 0..400 {
        js.send(id, 3, json!(item));
    }
    let mut end = None;
    while let Some(m) = js.try_recv(Duration::from_secs(10)) {
        if m.id == id && m.kind == ERROR {
            end = Some(m);
            break;
        }
    }
    let m = end.expect("the call ends with an error");
    assert_eq!(m.message["id"], ids::ABORTED, "{m:?}");
    // Whether the call had started or not when the buffer filled.
    assert!(
        m.message["msg"]
            .as_str()
            .unwrap()
            .contains("--max-stream-buffer-bytes"),
        "{m:?}"
    );
    assert!(limits(&d)["streamBuffer"].as_u64().unwrap() >= 1);
    // The pipe goes on.
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
}

#[test]
fn pipes() {
    let d = daemon(|c| c.max_pipes = 2);
    let _a = Js::connect(d.http_addr());
    let _b = Js::connect(d.http_addr());
    common::wait_until(Duration::from_secs(5), "two pipes", || {
        d.health()["pipes"] == 2
    });
    match Js::connect_with(d.http_addr(), None) {
        Err(tungstenite::Error::Http(r)) => assert_eq!(r.status().as_u16(), 503),
        Err(e) => {
            // The daemon may close before the client reads the answer.
            assert!(
                matches!(
                    e,
                    tungstenite::Error::Io(_) | tungstenite::Error::Protocol(_)
                ),
                "{e}"
            )
        }
        Ok(_) => panic!("a third pipe was accepted"),
    }
    assert_eq!(limits(&d)["pipes"], 1);
}

#[test]
fn message_size() {
    let d = daemon(|c| c.max_message_bytes = 2048);
    let mut js = Js::connect(d.http_addr());
    js.send_raw(&format!(
        r#"{{"id": 1, "type": 5, "data": {{"name": "{}"}}}}"#,
        "n".repeat(4096)
    ));
    // The daemon closes the pipe with 1009 (message too big).
    assert_eq!(js.close_code(), Some(1009));
    common::wait_until(Duration::from_secs(5), "the counter", || {
        limits(&d)["messageBytes"] == 1
    });
}
