//! Objects served from closures (`rpc::Service`), called over sockets:
//! typed arguments, derived signatures, streaming, errors, and who may
//! call (the server's default policy, or the object's own).

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use wspr::error::{Error, ErrorKind, ids};
use wspr::rpc::{
    AllowAll, CallOptions, Client, ClientConfig, Dispatcher, Invocation, Invoker, Lookup,
    Namespace, Pending, Server, ServerCall, Service, Signature, Step, Stream,
};
use wspr::security::{AclAuthorizer, Principal};

#[derive(Serialize, Deserialize)]
struct Point {
    x: i64,
    y: i64,
}

fn calculator() -> Service {
    Service::new()
        .method("Add", |a: i64, b: i64| Ok(a + b))
        .method("mirror", |p: Point| Ok(Point { x: p.y, y: p.x }))
        .method("Nothing", || Ok(()))
        .method("Refuse", |why: String| -> wspr::Result<()> {
            Err(Error::new("bank.InsufficientFunds", why))
        })
        .method_with_call("Whoami", |call: &ServerCall| {
            Ok(call.remote_names().to_vec())
        })
        .streaming("Sum", |s: &mut Stream<i64, i64>, start: i64| {
            let mut total = start;
            while let Some(n) = s.recv()? {
                total += n;
                s.send(&total)?;
            }
            Ok(total)
        })
}

/// A client over TCP (not the in-process shortcut), as `principal`.
fn tcp_client(principal: Arc<Principal>) -> Client {
    let mut config = ClientConfig::default();
    config.in_process = false;
    Client::builder()
        .namespace_roots(Vec::<String>::new())
        .principal(principal)
        .config(config)
        .build()
        .unwrap()
}

fn owner() -> Arc<Principal> {
    Arc::new(Principal::new_self_blessed("owner").unwrap())
}

/// Another principal, named `name`, that knows `of` (trusts its root, so
/// it takes `of`'s servers for who they are) but is not blessed by it.
fn stranger(name: &str, of: &Principal) -> Arc<Principal> {
    let mut p = Principal::new_self_blessed(name).unwrap();
    p.trust_root_of(&of.blessings()[0]).unwrap();
    Arc::new(p)
}

fn opts() -> CallOptions {
    CallOptions::timeout(Duration::from_secs(10))
}

#[test]
fn typed_arguments_and_results_cross_the_wire() {
    let client = tcp_client(owner());
    let server = Server::listen("127.0.0.1:0", Arc::new(calculator()), client.clone()).unwrap();
    let name = server.name();
    let call = |method: &str, args: Vec<Value>| client.call(&name, method, args, opts());

    assert_eq!(
        call("Add", vec![json!(2), json!(3)]).unwrap(),
        vec![json!(5)]
    );
    // Registered as `mirror`, served as `Mirror`.
    assert_eq!(
        call("Mirror", vec![json!({"x": 1, "y": 2})]).unwrap(),
        vec![json!({"x": 2, "y": 1})]
    );
    // `()`: no results.
    assert_eq!(call("Nothing", vec![]).unwrap(), Vec::<Value>::new());

    // The signature, derived from the closures.
    let sig = call("Signature", vec![]).unwrap();
    let sig: Signature = serde_json::from_value(sig[0].clone()).unwrap();
    assert_eq!(sig["Add"].in_args, vec!["arg1", "arg2"]);
    assert_eq!(sig["Add"].num_out_args, 2);
    assert_eq!(sig["Nothing"].num_out_args, 1);
    assert!(sig["Sum"].is_streaming && !sig["Add"].is_streaming);
    assert_eq!(sig["Sum"].in_args, vec!["arg1"]);
    assert_eq!(sig.len(), 6);
}

#[test]
fn bad_calls_are_refused_before_the_closure_runs() {
    let client = tcp_client(owner());
    let server = Server::listen("127.0.0.1:0", Arc::new(calculator()), client.clone()).unwrap();
    let name = server.name();
    let call = |method: &str, args: Vec<Value>| client.call(&name, method, args, opts());

    let e = call("Add", vec![json!(1)]).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::BadArg);
    assert_eq!(e.msg(), "Add takes 2 arguments, got 1");

    let e = call("Add", vec![json!(1), json!("two")]).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::BadArg);
    assert!(e.msg().starts_with("argument 2 of Add is not i64: "), "{e}");

    let e = call("Mirror", vec![json!({"x": 1})]).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::BadArg, "{e}");
    assert!(e.msg().contains("missing field `y`"), "{e}");

    let e = call("Frob", vec![]).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NoExist);
    assert!(e.msg().contains("no method Frob"), "{e}");

    // The object is the server's own name; nothing lives below it.
    let e = client
        .call(
            &format!("{name}/below"),
            "Add",
            vec![json!(1), json!(2)],
            opts(),
        )
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NoExist, "{e}");

    // An application's own error keeps its id across the wire.
    let e = call("Refuse", vec![json!("balance 3, asked 5")]).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Application);
    assert_eq!(e.id(), "bank.InsufficientFunds");
    assert_eq!(e.msg(), "balance 3, asked 5");

    // The server goes on answering.
    assert_eq!(
        call("Add", vec![json!(2), json!(2)]).unwrap(),
        vec![json!(4)]
    );
}

#[test]
fn streaming_items_are_typed_both_ways() {
    let client = tcp_client(owner());
    let server = Server::listen("127.0.0.1:0", Arc::new(calculator()), client.clone()).unwrap();

    let mut call = client
        .start_call(&server.name(), "Sum", vec![json!(100)], opts())
        .unwrap();
    for n in 1..=3 {
        call.send(json!(n)).unwrap();
    }
    call.close_send().unwrap();
    let mut got = vec![];
    while let Some(v) = call.recv().unwrap() {
        got.push(v);
    }
    assert_eq!(got, vec![json!(101), json!(103), json!(106)]);
    assert_eq!(call.finish().unwrap(), vec![json!(106)]);

    // An item that is not an i64 ends the call with BadArg.
    let mut call = client
        .start_call(&server.name(), "Sum", vec![json!(0)], opts())
        .unwrap();
    call.send(json!(1)).unwrap();
    call.send(json!("x")).unwrap();
    let e = loop {
        match call.recv() {
            Ok(Some(_)) => continue,
            Ok(None) => break call.finish().unwrap_err(),
            Err(e) => break e,
        }
    };
    assert_eq!(e.kind(), ErrorKind::BadArg, "{e}");
    assert!(e.msg().contains("a stream item of Sum is not i64"), "{e}");
}

/// A method that blocks holds a call thread, not the connection: the
/// other calls on it are answered meanwhile.
#[test]
fn a_blocking_method_does_not_hold_up_the_connection() {
    let (release_tx, release_rx) = crossbeam_channel::bounded::<()>(0);
    let (entered_tx, entered_rx) = crossbeam_channel::bounded::<()>(1);
    let service = calculator().method("Wait", move || {
        let _ = entered_tx.send(());
        release_rx
            .recv_timeout(Duration::from_secs(30))
            .map_err(|_| Error::timeout("never released"))
    });
    let client = tcp_client(owner());
    let server = Server::listen("127.0.0.1:0", Arc::new(service), client.clone()).unwrap();
    let name = server.name();
    let waiting = {
        let (client, name) = (client.clone(), name.clone());
        std::thread::spawn(move || client.call(&name, "Wait", vec![], opts()))
    };
    entered_rx
        .recv_timeout(Duration::from_secs(10))
        .expect("Wait started");
    assert_eq!(
        client
            .call(&name, "Add", vec![json!(1), json!(1)], opts())
            .unwrap(),
        vec![json!(2)]
    );
    assert_eq!(client.connections(), 1, "one connection carried both");
    release_tx.send(()).unwrap();
    assert_eq!(waiting.join().unwrap().unwrap(), Vec::<Value>::new());
}

/// A stranger (another principal) is refused by the default policy while
/// the owner's own programs are served; an object's own authorizer
/// decides for it.
#[test]
fn the_default_policy_admits_the_owner_and_refuses_strangers() {
    let me = owner();
    let client = tcp_client(me.clone());
    let server = Server::listen("127.0.0.1:0", Arc::new(calculator()), client.clone()).unwrap();
    let mallory = tcp_client(stranger("mallory", &me));
    // Another program of the same principal (as with the same credentials).
    let sibling = tcp_client(me.clone());
    // A principal the owner blessed extends the owner's name.
    let delegate = tcp_client(Arc::new(
        Principal::new_blessed_by(&me, "phone", vec![]).unwrap(),
    ));

    let add = |c: &Client| c.call(&server.name(), "Add", vec![json!(1), json!(2)], opts());
    for _ in 0..3 {
        let e = add(&mallory).unwrap_err();
        assert!(e.is(ids::NO_ACCESS), "{e}");
        // Refused by the server's policy (the caller did reach it).
        assert!(e.msg().contains("this server"), "{e}");
        assert_eq!(add(&sibling).unwrap(), vec![json!(3)]);
        assert_eq!(add(&delegate).unwrap(), vec![json!(3)]);
    }
    let who = delegate
        .call(&server.name(), "Whoami", vec![], opts())
        .unwrap();
    assert_eq!(who, vec![json!(["owner/phone"])]);

    // An object of its own policy: public, or an ACL.
    let public = Server::listen(
        "127.0.0.1:0",
        Arc::new(calculator().authorizer(AllowAll)),
        client.clone(),
    )
    .unwrap();
    assert_eq!(
        mallory
            .call(&public.name(), "Add", vec![json!(1), json!(1)], opts())
            .unwrap(),
        vec![json!(2)]
    );
    let acl = AclAuthorizer::new().allow("owner/phone", &["Add"]).unwrap();
    let guarded = Server::listen(
        "127.0.0.1:0",
        Arc::new(calculator().authorizer(acl)),
        client.clone(),
    )
    .unwrap();
    let call = |c: &Client, m: &str| c.call(&guarded.name(), m, vec![json!(1), json!(1)], opts());
    assert_eq!(call(&delegate, "Add").unwrap(), vec![json!(2)]);
    assert!(call(&delegate, "Mirror").unwrap_err().is(ids::NO_ACCESS));
    assert!(call(&sibling, "Add").unwrap_err().is(ids::NO_ACCESS));
    assert!(call(&mallory, "Add").unwrap_err().is(ids::NO_ACCESS));
}

/// Any dispatcher without an authorizer of its own gets the server's
/// default policy, which is the daemon's rule unless set otherwise.
#[test]
fn a_hand_written_object_gets_the_same_default() {
    struct Echo;
    impl Dispatcher for Echo {
        fn lookup(&self, call: Pending) -> Step<Pending> {
            call.blocking(|_| {
                Ok(Lookup {
                    invoker: Arc::new(Echo),
                    authorizer: None,
                })
            })
        }
    }
    impl Invoker for Echo {
        fn invoke(&self, call: Invocation) -> Step<Invocation> {
            call.blocking(|_, args| Ok(args))
        }
        fn signature(&self, _: &ServerCall) -> wspr::Result<Signature> {
            Ok(Signature::new())
        }
    }
    let me = owner();
    let server = Server::listen("127.0.0.1:0", Arc::new(Echo), tcp_client(me.clone())).unwrap();
    let eve = tcp_client(stranger("eve", &me));
    let e = eve
        .call(&server.name(), "Echo", vec![json!(1)], opts())
        .unwrap_err();
    assert!(e.is(ids::NO_ACCESS), "{e}");
    // Refused by the server's policy (the caller did reach it).
    assert!(e.msg().contains("this server"), "{e}");
    assert_eq!(
        tcp_client(me)
            .call(&server.name(), "Echo", vec![json!(1)], opts())
            .unwrap(),
        vec![json!(1)]
    );
    // (An anonymous client of its own is a stranger too.)
    let anonymous = Client::new(Namespace::new(vec![])).unwrap();
    assert!(
        anonymous
            .call(&server.name(), "Echo", vec![], opts())
            .unwrap_err()
            .is(ids::NO_ACCESS)
    );
}

/// An I/O error reaches the caller with its cause.
#[test]
fn a_connection_refused_keeps_its_io_error() {
    // A port that was free a moment ago: nothing listens there.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let client = tcp_client(owner());
    let e = client
        .call(&format!("/127.0.0.1:{port}"), "Add", vec![], opts())
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NoExist, "{e}");
    let source = std::error::Error::source(&e).expect("the I/O error as the source");
    let io = source
        .downcast_ref::<std::io::Error>()
        .expect("a std::io::Error");
    assert_eq!(io.kind(), std::io::ErrorKind::ConnectionRefused);
}

/// A closure that panics fails its own call, and the server goes on.
#[test]
fn a_panicking_method_fails_its_call_only() {
    let service = calculator().method("Boom", |n: u32| -> wspr::Result<u32> {
        panic!("on purpose, with {n}")
    });
    let client = tcp_client(owner());
    let server = Server::listen("127.0.0.1:0", Arc::new(service), client.clone()).unwrap();
    for _ in 0..3 {
        let e = client
            .call(&server.name(), "Boom", vec![json!(1)], opts())
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Internal, "{e}");
        assert_eq!(e.msg(), "Boom panicked");
        assert_eq!(
            client
                .call(&server.name(), "Add", vec![json!(1), json!(2)], opts())
                .unwrap(),
            vec![json!(3)]
        );
    }
}
