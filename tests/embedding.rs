//! A daemon embedded in a program, as the crate documentation shows it:
//! built with `Daemon::builder()` on sockets bound already, serving native
//! objects beside JavaScript's, its own client calling both, clients of
//! the same credentials admitted and strangers refused.

mod common;

use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use wspr::error::{ErrorKind, ids};
use wspr::rpc::{AllowAll, CallOptions, Client, Service, Stream};
use wspr::security::Principal;
use wspr::wsprd::Daemon;

use common::js::*;

fn opts() -> CallOptions {
    CallOptions::timeout(Duration::from_secs(10))
}

fn calculator() -> Service {
    Service::new()
        .method("Add", |a: i64, b: i64| Ok(a + b))
        .method_with_call("Whoami", |call: &wspr::rpc::ServerCall| {
            Ok(call.remote_names().to_vec())
        })
        .streaming("Sum", |s: &mut Stream<i64, i64>| {
            let mut total = 0;
            while let Some(n) = s.recv()? {
                total += n;
                s.send(&total)?;
            }
            Ok(total)
        })
}

/// A fresh directory under the tests' temporary directory (absent).
fn fresh_dir(name: &str) -> PathBuf {
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let d = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("embedding-{name}-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

/// A client of another principal that knows the daemon (it trusts the
/// daemon's root, so it takes the daemon's servers for who they are) but
/// is not blessed by it.
fn stranger(daemon: &Daemon) -> Client {
    let mut p = Principal::new_self_blessed("mallory").unwrap();
    p.trust_root_of(&daemon.principal().blessings()[0]).unwrap();
    Client::builder()
        .namespace_roots(daemon.namespace_roots())
        .principal(Arc::new(p))
        .build()
        .unwrap()
}

fn bind() -> (TcpListener, std::net::SocketAddr) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let a = l.local_addr().unwrap();
    (l, a)
}

/// The daemon takes its three sockets as given; a native object served on
/// its RPC listener answers the daemon's own client and JavaScript alike.
#[test]
fn a_native_object_on_the_daemon_answers_javascript_and_natively() {
    let (http, http_addr) = bind();
    let (rpc, rpc_addr) = bind();
    let (mt, mt_addr) = bind();
    let daemon = Daemon::builder()
        .http_listener(http)
        .rpc_listener(rpc)
        .mount_table_listener(mt)
        .spawn()
        .unwrap();
    assert_eq!(daemon.http_addr(), http_addr);
    assert_eq!(daemon.rpc_addr(), rpc_addr);
    let roots = daemon.namespace_roots();
    assert_eq!(roots.len(), 1);
    assert!(roots[0].contains(&mt_addr.to_string()), "{roots:?}");

    let server = daemon.serve("calc", Arc::new(calculator())).unwrap();
    assert_eq!(server.endpoint().address(), rpc_addr.to_string());
    assert_eq!(server.names(), vec!["calc"]);

    // The daemon's own client, by name.
    let client = daemon.client();
    assert_eq!(
        client
            .call("calc", "Add", vec![json!(2), json!(3)], opts())
            .unwrap(),
        vec![json!(5)]
    );

    // JavaScript: a call, the signature, a stream, and who it is.
    let mut js = Js::connect(http_addr);
    let id = js.call("calc", "add", json!([2, 3]), false);
    assert_eq!(
        js.recv(),
        Msg {
            id,
            kind: FINAL,
            message: json!([5])
        }
    );
    let id = js.id();
    js.send(id, 5, json!({"name": "calc"}));
    let sig = js.recv();
    assert_eq!((sig.id, sig.kind), (id, FINAL), "{sig:?}");
    assert_eq!(
        sig.message["add"],
        json!({"inArgs": ["arg1", "arg2"], "numOutArgs": 2, "isStreaming": false})
    );
    assert_eq!(sig.message["sum"]["isStreaming"], json!(true));

    let id = js.call("calc", "sum", json!([]), true);
    for n in 1..=3 {
        js.send(id, 3, json!(n));
    }
    js.send(id, 4, Value::Null);
    let got: Vec<Msg> = (0..5).map(|_| js.recv()).collect();
    let kinds: Vec<(u64, Value)> = got.iter().map(|m| (m.kind, m.message.clone())).collect();
    assert_eq!(
        kinds,
        vec![
            (STREAM, json!(1)),
            (STREAM, json!(3)),
            (STREAM, json!(6)),
            (STREAM_CLOSE, Value::Null),
            (FINAL, json!([6])),
        ]
    );

    // A page's principal extends the daemon's (`wsprd/<origin>`): the
    // daemon's default rule admits it.
    let id = js.call("calc", "whoami", json!([]), false);
    let who = js.recv();
    assert_eq!((who.id, who.kind), (id, FINAL), "{who:?}");
    let daemon_name = daemon.principal().names()[0].clone();
    let names = who.message[0].as_array().expect("names").clone();
    assert!(!names.is_empty());
    for n in names {
        assert!(
            n.as_str().unwrap().starts_with(&format!("{daemon_name}/")),
            "{n}"
        );
    }
}

/// Strangers are refused by the daemon's default rule while the daemon's
/// own client and its pages are served; `open_access` and an object's own
/// policy admit them.
#[test]
fn strangers_are_refused_unless_the_object_or_the_daemon_says_otherwise() {
    let daemon = Daemon::builder().listen("127.0.0.1:0").spawn().unwrap();
    let _calc = daemon.serve("calc", Arc::new(calculator())).unwrap();
    let _public = daemon
        .serve("public", Arc::new(calculator().authorizer(AllowAll)))
        .unwrap();
    let mallory = stranger(&daemon);
    let mut js = Js::connect(daemon.http_addr());
    let add = |c: &Client, name: &str| c.call(name, "Add", vec![json!(1), json!(2)], opts());
    for _ in 0..3 {
        let e = add(&mallory, "calc").unwrap_err();
        assert!(e.is(ids::NO_ACCESS), "{e}");
        // Refused by the server's policy (the caller did reach it).
        assert!(e.msg().contains("this server"), "{e}");
        assert_eq!(add(&daemon.client(), "calc").unwrap(), vec![json!(3)]);
        let id = js.call("calc", "add", json!([1, 2]), false);
        assert_eq!(js.recv().message, json!([3]), "call {id}");
        assert_eq!(add(&mallory, "public").unwrap(), vec![json!(3)]);
    }
    daemon.shutdown();

    let open = Daemon::builder()
        .listen("127.0.0.1:0")
        .open_access()
        .spawn()
        .unwrap();
    let _calc = open.serve("calc", Arc::new(calculator())).unwrap();
    let mallory = stranger(&open);
    assert_eq!(add(&mallory, "calc").unwrap(), vec![json!(3)]);
}

/// `Daemon::client()` and a client of the daemon's credentials reach a
/// JavaScript server; a stranger is refused, and JavaScript never hears
/// its request.
#[test]
fn clients_with_the_daemons_credentials_reach_javascript_servers() {
    let creds = fresh_dir("creds");
    let daemon = Daemon::builder()
        .listen("127.0.0.1:0")
        .credentials(&creds)
        .spawn()
        .unwrap();
    let mut js = Js::connect(daemon.http_addr());
    js.serve("adder", 7);

    // As a tool of the same user would be: the same credentials directory.
    let tool = Client::builder()
        .namespace_roots(daemon.namespace_roots())
        .credentials(&creds)
        .build()
        .unwrap();
    assert_eq!(
        tool.principal().public_key(),
        daemon.principal().public_key()
    );
    let mallory = stranger(&daemon);

    // JavaScript answers each lookup, and each request that reaches it.
    let answer = |js: &mut Js| {
        let lookup = js.answer_next_lookup(1);
        let req = js.recv();
        assert_eq!(req.kind, SERVER_REQUEST, "after lookup {lookup:?}: {req:?}");
        js.send(req.id, 2, json!({"results": [5], "err": null}));
    };
    for client in [daemon.client(), tool] {
        let caller = std::thread::spawn(move || {
            client.call("adder", "Add", vec![json!(2), json!(3)], opts())
        });
        answer(&mut js);
        assert_eq!(caller.join().unwrap().unwrap(), vec![json!(5)]);
    }

    let caller =
        std::thread::spawn(move || mallory.call("adder", "Add", vec![json!(2), json!(3)], opts()));
    js.answer_next_lookup(1);
    let e = caller.join().unwrap().unwrap_err();
    assert!(e.is(ids::NO_ACCESS), "{e}");
    // Refused by the server's policy (the caller did reach it).
    assert!(e.msg().contains("this server"), "{e}");
    // The next message JavaScript gets is the next call's lookup: the
    // refused call sent it no request.
    let client = daemon.client();
    let caller =
        std::thread::spawn(move || client.call("adder", "Add", vec![json!(2), json!(3)], opts()));
    answer(&mut js);
    assert_eq!(caller.join().unwrap().unwrap(), vec![json!(5)]);
    drop(daemon);
    let _ = std::fs::remove_dir_all(&creds);
}

/// The daemon's shutdown stops the native servers on its listener, and a
/// server dropped after the daemon ends quietly.
#[test]
fn shutdown_stops_native_servers_and_joins_their_threads() {
    let (rpc, rpc_addr) = bind();
    let daemon = Daemon::builder()
        .listen("127.0.0.1:0")
        .rpc_listener(rpc)
        .spawn()
        .unwrap();
    let server = daemon.serve("", Arc::new(calculator())).unwrap();
    assert!(server.names().is_empty());
    let name = server.name();
    let outsider = Client::builder()
        .namespace_roots(Vec::<String>::new())
        .principal(daemon.principal().clone())
        .build()
        .unwrap();
    assert_eq!(
        outsider
            .call(&name, "Add", vec![json!(1), json!(1)], opts())
            .unwrap(),
        vec![json!(2)]
    );
    daemon.shutdown();
    // The listener's socket is closed with its accept thread.
    let e = std::net::TcpStream::connect(rpc_addr).expect_err("the RPC port still accepts");
    assert_eq!(e.kind(), std::io::ErrorKind::ConnectionRefused);
    let e = outsider
        .call(&name, "Add", vec![json!(1), json!(1)], opts())
        .unwrap_err();
    assert!(
        matches!(e.kind(), ErrorKind::NoExist | ErrorKind::Aborted),
        "{e}"
    );
    drop(server);
}

/// A wrong setting starts nothing: no credentials are created, the
/// sockets handed over are closed.
#[test]
fn a_wrong_setting_starts_nothing() {
    let creds = fresh_dir("unused");
    let (http, http_addr) = bind();
    let e = match Daemon::builder()
        .http_listener(http)
        .credentials(&creds)
        .workers(0)
        .spawn()
    {
        Ok(_) => panic!("a daemon with no workers"),
        Err(e) => e,
    };
    assert_eq!(e.kind(), ErrorKind::BadArg, "{e}");
    assert!(
        !creds.exists(),
        "credentials created for a daemon that did not start"
    );
    // The socket was closed with the builder: its port can be bound again.
    TcpListener::bind(http_addr).expect("the HTTP socket was closed");

    let e = match Daemon::builder()
        .listen("127.0.0.1:0")
        .namespace_roots(["demo/adder"])
        .spawn()
    {
        Ok(_) => panic!("a root that names no mount table"),
        Err(e) => e,
    };
    assert_eq!(e.kind(), ErrorKind::BadArg, "{e}");
}

/// Given the address of a mount table, the daemon runs none of its own
/// and mounts there; a client of that root finds its objects.
#[test]
fn a_daemon_uses_the_mount_table_it_is_given() {
    let (mt, mt_client) = common::mount_table();
    let addr = mt.endpoint().address().to_string();
    let daemon = Daemon::builder()
        .listen("127.0.0.1:0")
        .principal(common::test_principal())
        .namespace_roots([addr.as_str()])
        .spawn()
        .unwrap();
    assert_eq!(daemon.namespace_roots(), vec![format!("/{addr}")]);
    let _calc = daemon
        .serve("embedded/calc", Arc::new(calculator()))
        .unwrap();
    assert_eq!(
        mt_client
            .call("embedded/calc", "Add", vec![json!(1), json!(2)], opts())
            .unwrap(),
        vec![json!(3)]
    );
}
