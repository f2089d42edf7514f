//! JavaScript calling native servers and native callers calling
//! JavaScript servers, message by message (the seed's cases).

mod common;

use std::time::Duration;

use serde_json::{Value, json};
use wspr::error::ids;
use wspr::rpc::{CallOptions, Client};

use common::js::*;

#[test]
fn javascript_calls_a_native_server() {
    let d = daemon(|c| c.serve_demo = true);
    let mut js = Js::connect(d.http_addr());

    let id = js.call("demo/adder", "add", json!([2, 3]), false);
    assert_eq!(
        js.recv(),
        Msg {
            id,
            kind: FINAL,
            message: json!([5])
        }
    );

    let id = js.call("demo/adder", "divide", json!([1, 0]), false);
    let m = js.recv();
    assert_eq!((m.id, m.kind), (id, ERROR));
    assert_eq!(m.message["id"], ids::BAD_ARG);
    assert!(
        m.message["msg"]
            .as_str()
            .unwrap()
            .contains("division by zero")
    );

    let id = js.call("demo/adder", "streamingAdd", json!([]), true);
    for n in 1..=4 {
        js.send(id, 3, json!(n));
    }
    js.send(id, 4, Value::Null);
    let mut got = vec![];
    for _ in 0..6 {
        got.push(js.recv());
    }
    let expect: Vec<Msg> = [1, 3, 6, 10]
        .iter()
        .map(|n| Msg {
            id,
            kind: STREAM,
            message: json!(n),
        })
        .chain([
            Msg {
                id,
                kind: STREAM_CLOSE,
                message: Value::Null,
            },
            Msg {
                id,
                kind: FINAL,
                message: json!([10]),
            },
        ])
        .collect();
    assert_eq!(got, expect);
    // Nothing follows the Final.
    assert_eq!(js.try_recv(Duration::from_millis(200)), None);
}

#[test]
fn signature_of_a_native_server_is_lower_camel_case() {
    let d = daemon(|c| c.serve_demo = true);
    let mut js = Js::connect(d.http_addr());
    let id = js.id();
    js.send(id, 5, json!({"name": "demo/adder"}));
    let m = js.recv();
    assert_eq!((m.id, m.kind), (id, FINAL));
    assert_eq!(m.message["add"]["inArgs"], json!(["a", "b"]));
    assert_eq!(m.message["streamingAdd"]["isStreaming"], json!(true));
    assert_eq!(m.message["add"]["numOutArgs"], json!(2));
}

#[test]
fn serve_returns_an_endpoint_and_stop_removes_the_server() {
    let d = daemon(|_| {});
    let client = native_client(&d);
    let mut js = Js::connect(d.http_addr());
    let ep = js.serve("adder", 0);
    assert!(
        ep.starts_with("@w1@127.0.0.1:") && ep.ends_with("@s@@"),
        "{ep}"
    );
    assert_eq!(client.resolve("adder").unwrap(), vec![format!("/{ep}")]);
    // The same name again on the same server: Exists.
    let id = js.id();
    js.send(id, 1, json!({"name": "adder", "serverId": 0}));
    let m = js.recv();
    assert_eq!(
        (m.id, m.kind, m.message["id"].clone()),
        (id, ERROR, json!(ids::EXISTS))
    );
    // A second name for the same server.
    assert_eq!(js.serve("adder2", 0), ep);

    let id = js.id();
    js.send(id, 6, json!(0));
    assert_eq!(
        js.recv(),
        Msg {
            id,
            kind: FINAL,
            message: json!(true)
        }
    );
    let names: Vec<_> = client
        .glob("...")
        .unwrap()
        .into_iter()
        .map(|e| e.name)
        .collect();
    assert!(names.is_empty(), "{names:?}");
    let err = client
        .call(
            &format!("/{ep}"),
            "Add",
            vec![json!(1), json!(2)],
            CallOptions::default(),
        )
        .unwrap_err();
    assert_eq!(err.id(), ids::NO_EXIST, "{err}");
    // Stopping it again: NoExist.
    let id = js.id();
    js.send(id, 6, json!(0));
    assert_eq!(js.recv().message["id"], ids::NO_EXIST);
}

/// What a native caller saw: the items streamed to it, and the result.
type Caller = std::thread::JoinHandle<(Vec<Value>, Result<Vec<Value>, wspr::Error>)>;

/// A native call to the JavaScript adder, run on another thread.
fn native_call(
    client: &Client,
    name: &str,
    method: &str,
    args: Vec<Value>,
    stream: Vec<Value>,
) -> Caller {
    let (client, name, method) = (client.clone(), name.to_string(), method.to_string());
    std::thread::spawn(move || {
        let mut call = match client.start_call(
            &name,
            &method,
            args,
            CallOptions::timeout(Duration::from_secs(20)),
        ) {
            Ok(c) => c,
            Err(e) => return (vec![], Err(e)),
        };
        for v in stream {
            call.send(v).unwrap();
        }
        call.close_send().unwrap();
        let mut items = vec![];
        loop {
            match call.recv() {
                Ok(Some(v)) => items.push(v),
                Ok(None) => break,
                Err(e) => return (items, Err(e)),
            }
        }
        (items, call.finish())
    })
}

struct Case {
    method: &'static str,
    args: Vec<Value>,
    client_stream: Vec<Value>,
    server_stream: Vec<Value>,
    results: Vec<Value>,
}

fn run_case(case: Case) {
    let d = daemon(|_| {});
    let client = native_client(&d);
    let mut js = Js::connect(d.http_addr());
    let ep = js.serve("adder", 7);
    let caller = native_call(
        &client,
        "adder",
        case.method,
        case.args.clone(),
        case.client_stream.clone(),
    );

    let lookup = js.recv();
    assert_eq!(lookup.kind, LOOKUP);
    assert!(
        lookup.id.is_multiple_of(2) && lookup.id >= 2,
        "daemon flows are even: {lookup:?}"
    );
    assert_eq!(
        lookup.message,
        json!({"serverId": 7, "suffix": "", "method": wspr::naming::lower_first(case.method)})
    );
    js.answer_lookup(lookup.id, 3, adder_signature(), false);

    let req = js.recv();
    assert_eq!(req.kind, SERVER_REQUEST);
    assert!(req.id.is_multiple_of(2) && req.id != lookup.id);
    assert_eq!(req.message["serverId"], 7);
    assert_eq!(req.message["handle"], 3);
    assert_eq!(
        req.message["method"],
        wspr::naming::lower_first(case.method)
    );
    assert_eq!(req.message["args"], json!(case.args));
    let ctx = &req.message["context"];
    assert_eq!(ctx["name"], "adder");
    assert_eq!(ctx["suffix"], "");
    assert!(ctx["remoteId"]["names"].is_array());
    let left = ctx["timeout"].as_u64().expect("the caller's deadline");
    assert!(left > 10_000 && left <= 20_000, "{left}");

    // The caller's stream arrives as Stream items, then StreamClose.
    for v in &case.client_stream {
        assert_eq!(
            js.recv(),
            Msg {
                id: req.id,
                kind: STREAM,
                message: v.clone()
            }
        );
    }
    // Only a streaming method's request carries the caller's stream.
    if case.method != "Add" {
        assert_eq!(
            js.recv(),
            Msg {
                id: req.id,
                kind: STREAM_CLOSE,
                message: Value::Null
            }
        );
    }

    for v in &case.server_stream {
        js.send(req.id, 3, v.clone());
    }
    js.send(req.id, 2, json!({"results": case.results, "err": null}));
    let (items, result) = caller.join().unwrap();
    assert_eq!(items, case.server_stream);
    assert_eq!(result.unwrap(), case.results);
    assert_eq!(
        js.try_recv(Duration::from_millis(200)),
        None,
        "nothing more to JavaScript"
    );
    let _ = ep;
}

#[test]
fn a_native_client_calls_a_javascript_server() {
    run_case(Case {
        method: "Add",
        args: vec![json!(2), json!(3)],
        client_stream: vec![],
        server_stream: vec![],
        results: vec![json!(5)],
    });
}

#[test]
fn javascript_server_with_streaming_input() {
    run_case(Case {
        method: "StreamingAdd",
        args: vec![],
        client_stream: vec![json!(1), json!(2), json!(3)],
        server_stream: vec![],
        results: vec![json!(6)],
    });
}

#[test]
fn javascript_server_with_streaming_output() {
    run_case(Case {
        method: "StreamingAdd",
        args: vec![],
        client_stream: vec![],
        server_stream: vec![json!(1), json!(3), json!(6)],
        results: vec![json!(6)],
    });
}

#[test]
fn javascript_server_streaming_both_ways() {
    run_case(Case {
        method: "EchoStream",
        args: vec![],
        client_stream: vec![json!("a"), json!({"b": [1]})],
        server_stream: vec![json!("x"), json!(null), json!([2])],
        results: vec![json!("done")],
    });
}

/// Serves "adder" as server 0 and starts a native call of `method`.
fn setup(method: &str, args: Vec<Value>) -> (wspr::wsprd::Daemon, Js, Caller) {
    let d = daemon(|_| {});
    let client = native_client(&d);
    let mut js = Js::connect(d.http_addr());
    js.serve("adder", 0);
    let caller = native_call(&client, "adder/x", method, args, vec![]);
    (d, js, caller)
}

#[test]
fn an_application_error_keeps_its_id_and_text() {
    let (_d, mut js, caller) = setup("Divide", vec![json!(1), json!(0)]);
    let l = js.recv();
    assert_eq!(l.message["suffix"], "x");
    js.answer_lookup(l.id, 1, adder_signature(), false);
    let r = js.recv();
    js.send(
        r.id,
        2,
        json!({"results": [], "err": {"id": "app.DivideByZero", "msg": "cannot divide by zero"}}),
    );
    let err = caller.join().unwrap().1.unwrap_err();
    assert_eq!(err.id(), "app.DivideByZero");
    assert_eq!(err.msg(), "cannot divide by zero");
}

#[test]
fn a_lookup_error_reaches_the_caller() {
    let (_d, mut js, caller) = setup("Add", vec![json!(1), json!(2)]);
    let l = js.recv();
    js.send(
        l.id,
        11,
        json!({"err": {"id": "veyron2/verror.Exists", "msg": "bad stuff"}}),
    );
    let err = caller.join().unwrap().1.unwrap_err();
    assert_eq!((err.id(), err.msg()), (ids::EXISTS, "bad stuff"));
    assert_eq!(
        js.try_recv(Duration::from_millis(200)),
        None,
        "no ServerRequest"
    );
}

#[test]
fn a_negative_handle_is_no_exist() {
    let (_d, mut js, caller) = setup("Add", vec![json!(1), json!(2)]);
    let l = js.recv();
    js.answer_lookup(l.id, -1, Value::Null, false);
    let err = caller.join().unwrap().1.unwrap_err();
    assert_eq!(err.id(), ids::NO_EXIST);
    assert_eq!(
        js.try_recv(Duration::from_millis(200)),
        None,
        "no ServerRequest"
    );
}

#[test]
fn a_method_missing_from_the_signature_is_no_exist() {
    let (_d, mut js, caller) = setup("Multiply", vec![json!(1), json!(2)]);
    js.answer_next_lookup(1);
    let err = caller.join().unwrap().1.unwrap_err();
    assert_eq!(err.id(), ids::NO_EXIST, "{err}");
    assert_eq!(
        js.try_recv(Duration::from_millis(200)),
        None,
        "no ServerRequest"
    );
}

#[test]
fn a_wrong_argument_count_is_bad_arg() {
    let (_d, mut js, caller) = setup("Add", vec![json!(1)]);
    js.answer_next_lookup(1);
    let err = caller.join().unwrap().1.unwrap_err();
    assert_eq!(err.id(), ids::BAD_ARG, "{err}");
    assert_eq!(
        js.try_recv(Duration::from_millis(200)),
        None,
        "no ServerRequest"
    );
}

#[test]
fn a_cacheable_lookup_is_asked_once() {
    let d = daemon(|_| {});
    let client = native_client(&d);
    let mut js = Js::connect(d.http_addr());
    js.serve("adder", 0);
    for i in 0..3 {
        let caller = native_call(&client, "adder", "Add", vec![json!(i), json!(1)], vec![]);
        if i == 0 {
            let l = js.recv();
            assert_eq!(l.kind, LOOKUP);
            js.answer_lookup(l.id, 1, adder_signature(), true);
        }
        let r = js.recv();
        assert_eq!(r.kind, SERVER_REQUEST, "call {i}: {r:?}");
        js.send(r.id, 2, json!({"results": [i + 1]}));
        assert_eq!(caller.join().unwrap().1.unwrap(), vec![json!(i + 1)]);
    }
    // Another method is looked up anew.
    let caller = native_call(&client, "adder", "Divide", vec![json!(4), json!(2)], vec![]);
    assert_eq!(js.recv().kind, LOOKUP);
    drop(caller);
}

#[test]
fn the_signature_method_is_answered_from_the_lookup() {
    let (_d, mut js, caller) = setup("Signature", vec![]);
    let l = js.recv();
    assert_eq!(l.message["method"], "signature");
    js.answer_lookup(l.id, 1, adder_signature(), false);
    let sig = caller.join().unwrap().1.unwrap();
    assert_eq!(sig[0]["Add"]["inArgs"], json!(["a", "b"]));
    assert_eq!(
        js.try_recv(Duration::from_millis(200)),
        None,
        "no ServerRequest"
    );
}

#[test]
fn javascript_calls_javascript_through_two_pipes() {
    let d = daemon(|_| {});
    let mut server = Js::connect(d.http_addr());
    server.serve("js/adder", 1);
    let mut caller = Js::connect(d.http_addr());
    let id = caller.call("js/adder", "add", json!([20, 22]), false);

    let l = server.recv();
    assert_eq!(
        l.message,
        json!({"serverId": 1, "suffix": "", "method": "add"})
    );
    server.answer_lookup(l.id, 9, adder_signature(), false);
    let r = server.recv();
    assert_eq!(r.message["args"], json!([20, 22]));
    assert_eq!(r.message["context"]["name"], "js/adder");
    server.send(r.id, 2, json!({"results": [42], "err": null}));
    assert_eq!(
        caller.recv(),
        Msg {
            id,
            kind: FINAL,
            message: json!([42])
        }
    );

    // Streaming both ways between the two pipes.
    let id = caller.call("js/adder", "streamingAdd", json!([]), true);
    caller.send(id, 3, json!(5));
    server.answer_next_lookup(9);
    let r = server.recv();
    assert_eq!(
        server.recv(),
        Msg {
            id: r.id,
            kind: STREAM,
            message: json!(5)
        }
    );
    server.send(r.id, 3, json!(5));
    assert_eq!(
        caller.recv(),
        Msg {
            id,
            kind: STREAM,
            message: json!(5)
        }
    );
    caller.send(id, 4, Value::Null);
    assert_eq!(
        server.recv(),
        Msg {
            id: r.id,
            kind: STREAM_CLOSE,
            message: Value::Null
        }
    );
    server.send(r.id, 2, json!({"results": [5]}));
    // A streaming call's stream closes before its Final.
    assert_eq!(
        caller.recv(),
        Msg {
            id,
            kind: STREAM_CLOSE,
            message: Value::Null
        }
    );
    assert_eq!(
        caller.recv(),
        Msg {
            id,
            kind: FINAL,
            message: json!([5])
        }
    );
}

#[test]
fn signatures_follow_the_server_that_serves_the_name() {
    let d = daemon(|_| {});
    let mut server = Js::connect(d.http_addr());
    let mut asker = Js::connect(d.http_addr());
    let sig = |name: &str| json!({name: {"inArgs": [], "numOutArgs": 2, "isStreaming": false}});
    // Asks for the signature of "x"; `answer` answers the lookup it causes.
    let ask = |asker: &mut Js, server: &mut Js, answer: Option<Value>| -> Msg {
        let id = asker.id();
        asker.send(id, 5, json!({"name": "x"}));
        if let Some(s) = answer {
            let l = server.recv();
            assert_eq!(l.message["method"], "signature");
            server.answer_lookup(l.id, 1, s, false);
        }
        asker.recv()
    };
    server.serve("x", 1);
    assert_eq!(
        ask(&mut asker, &mut server, Some(sig("first"))).message,
        sig("first")
    );
    // Cached: JavaScript is not asked again.
    assert_eq!(ask(&mut asker, &mut server, None).message, sig("first"));
    let id = server.id();
    server.send(id, 6, json!(1));
    assert_eq!(server.recv().message, json!(true));
    let m = ask(&mut asker, &mut server, None);
    assert_eq!(
        (m.kind, m.message["id"].clone()),
        (ERROR, json!(ids::NO_EXIST)),
        "{m:?}"
    );
    server.serve("x", 2);
    assert_eq!(
        ask(&mut asker, &mut server, Some(sig("second"))).message,
        sig("second")
    );
}

#[test]
fn remove_name_unmounts_one_name_and_the_server_goes_on() {
    let d = daemon(|_| {});
    let client = native_client(&d);
    let mut js = Js::connect(d.http_addr());
    let ep = js.serve("first", 0);
    assert_eq!(js.serve("second", 0), ep);
    let names = |client: &Client| -> Vec<String> {
        client
            .glob("...")
            .unwrap()
            .into_iter()
            .filter(|e| !e.servers.is_empty())
            .map(|e| e.name)
            .collect()
    };
    assert_eq!(names(&client), vec!["first", "second"]);

    // removeName (19): Final null, and the name is gone from the name space.
    let id = js.id();
    js.send(id, 19, json!({"serverId": 0, "name": "first"}));
    assert_eq!(
        js.recv(),
        Msg {
            id,
            kind: FINAL,
            message: Value::Null
        }
    );
    assert_eq!(names(&client), vec!["second"]);

    // The server still answers under its other name.
    let caller = std::thread::spawn(move || {
        client.call(
            "second",
            "Add",
            vec![json!(1), json!(2)],
            CallOptions::timeout(Duration::from_secs(10)),
        )
    });
    js.answer_next_lookup(1);
    let req = js.recv();
    assert_eq!(req.kind, SERVER_REQUEST, "{req:?}");
    js.send(req.id, 2, json!({"results": [3], "err": null}));
    assert_eq!(caller.join().unwrap().unwrap(), vec![json!(3)]);

    // A name it does not have, a server the pipe does not have, bad data.
    for (data, want) in [
        (json!({"serverId": 0, "name": "first"}), ids::NO_EXIST),
        (json!({"serverId": 7, "name": "second"}), ids::NO_EXIST),
        (json!({"serverId": 0}), ids::BAD_ARG),
    ] {
        let id = js.id();
        js.send(id, 19, data.clone());
        let m = js.recv();
        assert_eq!((m.id, m.kind), (id, ERROR), "{data}: {m:?}");
        assert_eq!(m.message["id"], want, "{data}: {m:?}");
    }
    // The name can be served again.
    assert_eq!(js.serve("first", 0), ep);
}
