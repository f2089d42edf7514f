//! Identities, blessings and authorization, end to end.

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use serde_json::{Value, json};
use wspr::error::ids;
use wspr::rpc::{CallOptions, Client, Namespace, Server};
use wspr::security::{Caveat, CaveatContext, Principal};
use wspr::wsprd::identity::{self, BlessRequest};

use common::js::*;
use common::*;

/// The blessing cases of the Go change, as a truth table: the daemon
/// blesses an identity as "foo" with caveats, and the blessing is checked
/// for Foo and Bar called by alice and by bob.
#[test]
fn blessing_caveats_truth_table() {
    let root = Principal::new_self_blessed("root").unwrap();
    let test = Principal::new_blessed_by(&root, "test", vec![]).unwrap();
    let alice = Principal::new_blessed_by(&test, "alice", vec![])
        .unwrap()
        .names();
    let bob = Principal::new_blessed_by(&test, "bob", vec![])
        .unwrap()
        .names();
    assert_eq!(alice, vec!["root/test/alice"]);
    let bless = |caveats: Value| {
        let req: BlessRequest = serde_json::from_value(json!({
            "handle": 1, "durationMs": 10_000, "name": "foo", "caveats": caveats
        }))
        .unwrap();
        let id = identity::create("someone").unwrap();
        let blessed = identity::bless(&root, &id, &req).unwrap();
        assert_eq!(blessed.names(), vec!["root/foo"]);
        blessed.blessings()[0].clone()
    };
    let table = |b: &wspr::security::Blessing| -> [bool; 4] {
        b.verify().unwrap();
        let ok = |method: &str, peer: &[String]| {
            b.holds(&CaveatContext {
                method,
                peer_names: peer,
                now: SystemTime::now(),
            })
        };
        [
            ok("Foo", &alice),
            ok("Bar", &alice),
            ok("Foo", &bob),
            ok("Bar", &bob),
        ]
    };
    //                                     Foo/alice Bar/alice Foo/bob Bar/bob
    assert_eq!(table(&bless(json!([]))), [true, true, true, true]);
    assert_eq!(
        table(&bless(json!([{"_type": "MethodCaveat", "data": ["Foo"]}]))),
        [true, false, true, false]
    );
    assert_eq!(
        table(&bless(
            json!([{"_type": "PeerBlessingsCaveat", "data": ["root/test/alice"]}])
        )),
        [true, true, false, false]
    );
    assert_eq!(
        table(&bless(json!([
            {"_type": "PeerBlessingsCaveat", "data": ["root/test/alice"]},
            {"_type": "MethodCaveat", "data": ["Bar"]}
        ]))),
        [false, true, false, false]
    );
}

#[test]
fn identity_messages_over_the_websocket() {
    let d = daemon(|_| {});
    let mut js = Js::connect(d.http_addr());
    let id = js.id();
    js.send(id, 10, json!("carol"));
    let m = js.recv();
    assert_eq!((m.id, m.kind), (id, FINAL));
    assert_eq!(m.message["names"], json!(["carol"]));
    let carol = m.message["handle"].as_u64().unwrap();

    let id = js.id();
    js.send(
        id,
        8,
        json!({"handle": carol, "name": "guest", "durationMs": 60_000,
        "caveats": [{"_type": "MethodCaveat", "data": ["Add"]}]}),
    );
    let m = js.recv();
    assert_eq!((m.id, m.kind), (id, FINAL), "{m:?}");
    // Under the pipe's own name: this one has no Origin.
    let daemon_name = d.principal().names()[0].clone();
    assert_eq!(
        m.message["names"],
        json!([format!("{daemon_name}/local/guest")])
    );
    assert_ne!(m.message["handle"], json!(carol));

    // An unknown handle: NoExist. Bad caveats: BadArg.
    let id = js.id();
    js.send(
        id,
        8,
        json!({"handle": 999, "name": "x", "durationMs": 1000}),
    );
    assert_eq!(js.recv().message["id"], ids::NO_EXIST);
    for caveats in [
        json!([{"_type": "TimeCaveat", "data": ["1"]}]),
        json!([{"_type": "MethodCaveat", "data": []}]),
    ] {
        let id = js.id();
        js.send(
            id,
            8,
            json!({"handle": carol, "name": "x", "durationMs": 1000, "caveats": caveats}),
        );
        let m = js.recv();
        assert_eq!(
            (m.id, m.message["id"].clone()),
            (id, json!(ids::BAD_ARG)),
            "{m:?}"
        );
    }
    // Unlinked, the handle is gone (and unlink has no reply).
    let id = js.id();
    js.send(id, 9, json!(carol));
    let id = js.id();
    js.send(
        id,
        8,
        json!({"handle": carol, "name": "x", "durationMs": 1000}),
    );
    let m = js.recv();
    assert_eq!((m.id, m.message["id"].clone()), (id, json!(ids::NO_EXIST)));
}

/// Serves "guarded" from a JavaScript pipe; a native call on another
/// thread as `principal`.
fn call_as(
    d: &wspr::wsprd::Daemon,
    principal: Principal,
    method: &str,
) -> std::thread::JoinHandle<wspr::Result<Vec<Value>>> {
    let client = Client::with_principal(
        Namespace::new(d.namespace_roots()),
        Arc::new(principal),
        Default::default(),
    );
    let method = method.to_string();
    std::thread::spawn(move || {
        client.call(
            "guarded",
            &method,
            vec![json!(1), json!(2)],
            CallOptions::timeout(Duration::from_secs(20)),
        )
    })
}

/// Answers one call (lookup and request) the way a JavaScript adder would;
/// the ServerRequest seen.
fn answer_one(js: &mut Js) -> Msg {
    let l = js.recv();
    assert_eq!(l.kind, LOOKUP, "{l:?}");
    js.answer_lookup(l.id, 1, adder_signature(), false);
    let r = js.recv();
    assert_eq!(r.kind, SERVER_REQUEST, "{r:?}");
    js.send(r.id, 2, json!({"results": [3]}));
    r
}

/// A stranger that knows the daemon (trusts its root, so it accepts the
/// daemon's mount table and servers) but that the daemon does not know.
fn stranger_knowing(d: &wspr::wsprd::Daemon) -> Principal {
    let mut p = Principal::new_self_blessed("stranger").unwrap();
    p.trust_root_of(&d.principal().blessings()[0]).unwrap();
    p
}

/// A principal blessed as `<daemon>/local/<ext>`: an extension of the
/// name of pages with no Origin (`<daemon>/local`), as those pages
/// themselves could bless it.
fn pages_delegate(d: &wspr::wsprd::Daemon, ext: &str, caveats: Vec<Caveat>) -> Principal {
    let local = Principal::new_blessed_by(d.principal(), "local", vec![]).unwrap();
    Principal::new_blessed_by(&local, ext, caveats).unwrap()
}

#[test]
fn callers_of_another_family_are_refused_by_default() {
    let d = daemon(|_| {});
    let mut js = Js::connect(d.http_addr());
    js.serve("guarded", 0);
    let caller = call_as(&d, stranger_knowing(&d), "Add");
    js.answer_next_lookup(1);
    let err = caller.join().unwrap().unwrap_err();
    assert_eq!(err.id(), ids::NO_ACCESS, "{err}");
    assert!(err.msg().contains("stranger"), "{err}");
    assert_eq!(
        js.try_recv(Duration::from_millis(200)),
        None,
        "no ServerRequest"
    );

    // A delegate of the page (its name extends the page's).
    let friend = pages_delegate(&d, "friend", vec![]);
    let caller = call_as(&d, friend, "Add");
    let r = answer_one(&mut js);
    assert_eq!(caller.join().unwrap().unwrap(), vec![json!(3)]);
    let name = format!("{}/local/friend", d.principal().names()[0]);
    assert_eq!(r.message["context"]["remoteId"]["names"], json!([name]));
}

#[test]
fn open_access_admits_any_family_without_proven_names() {
    let d = daemon(|c| c.open_access = true);
    let mut js = Js::connect(d.http_addr());
    js.serve("guarded", 0);
    let caller = call_as(&d, stranger_knowing(&d), "Add");
    let r = answer_one(&mut js);
    assert_eq!(caller.join().unwrap().unwrap(), vec![json!(3)]);
    // Its name is claimed, not proven under a root the daemon trusts.
    assert_eq!(r.message["context"]["remoteId"]["names"], json!([]));
}

#[test]
fn an_expired_blessing_is_refused() {
    let d = daemon(|_| {});
    let mut js = Js::connect(d.http_addr());
    js.serve("guarded", 0);
    let late = pages_delegate(&d, "late", vec![Caveat::Expiry(1)]);
    let caller = call_as(&d, late, "Add");
    js.answer_next_lookup(1);
    assert_eq!(caller.join().unwrap().unwrap_err().id(), ids::NO_ACCESS);
}

#[test]
fn a_method_caveat_is_enforced() {
    let d = daemon(|_| {});
    let mut js = Js::connect(d.http_addr());
    js.serve("guarded", 0);
    let p = || pages_delegate(&d, "adder-only", vec![Caveat::Method(vec!["Add".into()])]);
    let caller = call_as(&d, p(), "Add");
    answer_one(&mut js);
    assert_eq!(caller.join().unwrap().unwrap(), vec![json!(3)]);
    let caller = call_as(&d, p(), "Divide");
    js.answer_next_lookup(1);
    assert_eq!(caller.join().unwrap().unwrap_err().id(), ids::NO_ACCESS);
}

#[test]
fn a_javascript_authorizer_decides() {
    let d = daemon(|_| {});
    let mut js = Js::connect(d.http_addr());
    js.serve("guarded", 0);
    let client = native_client(&d);
    let names = json!(d.principal().names());
    for allow in [false, true] {
        let c2 = client.clone();
        let caller = std::thread::spawn(move || {
            c2.call(
                "guarded",
                "Add",
                vec![json!(1), json!(2)],
                CallOptions::default(),
            )
        });
        let l = js.recv();
        js.send(
            l.id,
            11,
            json!({"handle": 4, "hasAuthorizer": true, "signature": adder_signature()}),
        );
        let a = js.recv();
        assert_eq!(a.kind, AUTH_REQUEST, "{a:?}");
        assert_eq!(a.message["serverId"], 0);
        assert_eq!(a.message["handle"], 4);
        assert_eq!(a.message["context"]["method"], "add");
        assert_eq!(
            a.message["context"]["remoteId"]["names"], names,
            "the caller's proven names"
        );
        if allow {
            js.send(a.id, 12, json!({"err": null}));
            let r = js.recv();
            assert_eq!(r.kind, SERVER_REQUEST);
            js.send(r.id, 2, json!({"results": [3]}));
            assert_eq!(caller.join().unwrap().unwrap(), vec![json!(3)]);
        } else {
            js.send(a.id, 12, json!({"err": {"msg": "not today"}}));
            let err = caller.join().unwrap().unwrap_err();
            assert_eq!((err.id(), err.msg()), (ids::NO_ACCESS, "not today"));
        }
    }
}

#[test]
fn the_callers_identity_handle_lives_as_long_as_its_request() {
    let d = daemon(|_| {});
    let mut js = Js::connect(d.http_addr());
    js.serve("guarded", 0);
    let client = native_client(&d);
    let caller = std::thread::spawn(move || {
        client.call(
            "guarded",
            "Add",
            vec![json!(1), json!(2)],
            CallOptions::default(),
        )
    });
    js.answer_next_lookup(1);
    let r = js.recv();
    let handle = r.message["context"]["remoteId"]["handle"].as_u64().unwrap();
    // While the request is open, JavaScript can bless the caller.
    let id = js.id();
    js.send(
        id,
        8,
        json!({"handle": handle, "name": "seen", "durationMs": 1000}),
    );
    let mut got = js.recv();
    while got.id != id {
        got = js.recv();
    }
    assert_eq!(got.kind, FINAL, "{got:?}");
    js.send(r.id, 2, json!({"results": [3]}));
    caller.join().unwrap().unwrap();
    // Afterwards the handle is gone.
    let id = js.id();
    js.send(
        id,
        8,
        json!({"handle": handle, "name": "late", "durationMs": 1000}),
    );
    let mut got = js.recv();
    while got.id != id {
        got = js.recv();
    }
    assert_eq!(got.message["id"], ids::NO_EXIST);
}

/// Forwards one connection to `to`, keeping every byte that passes.
fn tapped_proxy(to: String) -> (String, Arc<Mutex<Vec<u8>>>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap().to_string();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s2 = seen.clone();
    std::thread::spawn(move || {
        let (a, _) = l.accept().unwrap();
        let b = TcpStream::connect(to).unwrap();
        let pump = |mut from: TcpStream, mut to: TcpStream, seen: Arc<Mutex<Vec<u8>>>| {
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while let Ok(n) = from.read(&mut buf) {
                    if n == 0 || to.write_all(&buf[..n]).is_err() {
                        break;
                    }
                    seen.lock().unwrap().extend_from_slice(&buf[..n]);
                }
                let _ = to.shutdown(std::net::Shutdown::Both);
            })
        };
        pump(a.try_clone().unwrap(), b.try_clone().unwrap(), s2.clone());
        pump(b, a, s2);
    });
    (addr, seen)
}

#[test]
fn bytes_on_the_wire_do_not_contain_the_arguments() {
    let (_mt, client) = mount_table();
    let demo = Server::listen("127.0.0.1:0", Arc::new(wspr::demo::Demo), client.clone()).unwrap();
    let (proxy, seen) = tapped_proxy(demo.endpoint().address().to_string());
    let name = format!("/@w1@{proxy}@{:016x}@s@@", demo.endpoint().routing_id());
    let secret = "secret-argument-7f3a9c";
    let err = client
        .call(
            &name,
            "Add",
            vec![json!(secret), json!(1)],
            CallOptions::default(),
        )
        .unwrap_err();
    // The call went through the proxy: the server answered about it.
    assert_eq!(err.id(), ids::BAD_ARG);
    assert!(err.msg().contains(secret), "{err}");
    let sum = client
        .call(
            &name,
            "Add",
            vec![json!(123_456_789), json!(1)],
            CallOptions::default(),
        )
        .unwrap();
    assert_eq!(sum, vec![json!(123_456_790)]);
    let bytes = seen.lock().unwrap().clone();
    assert!(
        bytes.len() > 200,
        "the proxy saw the call ({} bytes)",
        bytes.len()
    );
    let has = |needle: &[u8]| bytes.windows(needle.len()).any(|w| w == needle);
    assert!(
        !has(secret.as_bytes()),
        "the argument crossed the wire in the clear"
    );
    assert!(
        !has(b"123456789"),
        "the argument crossed the wire in the clear"
    );
    assert!(!has(b"Add"), "the method crossed the wire in the clear");
}

#[test]
fn two_programs_set_up_to_trust_each_other_with_wsprd_principal() {
    let base = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("trust-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&base);
    let (a, b) = (base.join("alice"), base.join("bob"));
    let run = |args: &[&str]| {
        let out = wsprd().args(args).output().unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).to_string(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    let (code, out, err) = run(&[
        "principal",
        "create",
        "--credentials",
        a.to_str().unwrap(),
        "alice",
    ]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("alice"), "{out}");
    assert_eq!(
        run(&[
            "principal",
            "create",
            "--credentials",
            b.to_str().unwrap(),
            "bob"
        ])
        .0,
        Some(0)
    );
    assert_eq!(
        run(&[
            "principal",
            "create",
            "--credentials",
            b.to_str().unwrap(),
            "bob"
        ])
        .0,
        Some(1),
        "no overwrite"
    );

    // Alice runs the daemon; a JavaScript server serves "guarded".
    let mut c = wsprd();
    c.args([
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--mounttable-listen",
        "127.0.0.1:0",
        "--credentials",
        a.to_str().unwrap(),
    ]);
    let p = Proc::spawn(c);
    let addr: std::net::SocketAddr = p.line().rsplit("http://").next().unwrap().parse().unwrap();
    let root = p.line().rsplit(' ').next().unwrap().to_string();
    let mut js = Js::connect(addr);
    js.serve("guarded", 0);

    let call_as_bob = || {
        let b = b.clone();
        let root = root.clone();
        std::thread::spawn(move || {
            let mut c = wsprd();
            c.args([
                "call",
                "--credentials",
                b.to_str().unwrap(),
                "--namespace-root",
                &root,
                "guarded",
                "add",
                "1",
                "2",
            ]);
            let out = c.output().unwrap();
            (
                out.status.code(),
                String::from_utf8_lossy(&out.stdout).to_string(),
                String::from_utf8_lossy(&out.stderr).to_string(),
            )
        })
    };
    // Bob is of another family: refused. (He does not trust Alice's root,
    // so his client does not even take her mount table for hers.)
    let bob = call_as_bob();
    let (code, _, err) = bob.join().unwrap();
    assert_eq!(code, Some(1));
    assert!(err.contains("NoAccess"), "{err}");
    assert_eq!(
        js.try_recv(Duration::from_millis(200)),
        None,
        "nothing reached the page"
    );

    // Alice blesses Bob: now he is of her family.
    let (code, out, err) = run(&[
        "principal",
        "bless",
        "--credentials",
        a.to_str().unwrap(),
        "--to",
        b.to_str().unwrap(),
        "bob",
    ]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("alice/bob"), "{out}");
    let (_, shown, _) = run(&["principal", "show", "--credentials", b.to_str().unwrap()]);
    assert!(shown.contains("blessing alice/bob"), "{shown}");
    // The page serves with an authorizer of its own (Bob's name is not an
    // extension of the page's, so the default would refuse him): it sees
    // the name Bob proves.
    let bob = call_as_bob();
    let l = js.recv();
    assert_eq!(l.kind, LOOKUP, "{l:?}");
    js.send(
        l.id,
        11,
        json!({"handle": 1, "hasAuthorizer": true, "signature": adder_signature()}),
    );
    let a = js.recv();
    assert_eq!(a.kind, AUTH_REQUEST, "{a:?}");
    assert_eq!(
        a.message["context"]["remoteId"]["names"],
        json!(["alice/bob"])
    );
    js.send(a.id, 12, json!({"err": null}));
    let r = js.recv();
    assert_eq!(r.kind, SERVER_REQUEST, "{r:?}");
    js.send(r.id, 2, json!({"results": [3]}));
    assert_eq!(
        r.message["context"]["remoteId"]["names"],
        json!(["alice/bob"])
    );
    let (code, out, err) = bob.join().unwrap();
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(out.trim(), "[3]");
    let _ = std::fs::remove_dir_all(&base);
}
