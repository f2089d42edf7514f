//! The session and trust model, attacked: a hello rewritten on its way, a
//! root minting a name it was not trusted for, blessings shown to a server
//! they were not meant for, and blessings that expire while a call
//! streams. Each attacker runs beside a well-behaved party that must keep
//! being served.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::{Value, json};
use wspr::error::ids;
use wspr::rpc::{
    AllowAll, Authorizer, CallOptions, Client, Dispatcher, Invocation, Invoker, Listener, Lookup,
    Namespace, Pending, ServerCall, ServerConfig, Signature, Step,
};
use wspr::security::{AclAuthorizer, BlessingPattern, Caveat, Principal};
use wspr::{Error, Result};

use common::*;

/// A server object that says who it is and who called (`Who`), and echoes
/// a stream (`Echo`); it counts the calls it ran and those running.
struct Named {
    name: &'static str,
    acl: Option<AclAuthorizer>,
    calls: Arc<AtomicUsize>,
    running: Arc<AtomicUsize>,
}

impl Named {
    fn new(name: &'static str, acl: Option<AclAuthorizer>) -> Named {
        Named {
            name,
            acl,
            calls: Arc::new(AtomicUsize::new(0)),
            running: Arc::new(AtomicUsize::new(0)),
        }
    }
}

impl Dispatcher for Named {
    fn lookup(&self, call: Pending) -> Step<Pending> {
        call.blocking(|_call| {
            let authorizer: Arc<dyn Authorizer> = match &self.acl {
                Some(acl) => Arc::new(acl.clone()),
                None => Arc::new(AllowAll),
            };
            Ok(Lookup {
                invoker: Arc::new(NamedInvoker {
                    name: self.name,
                    calls: self.calls.clone(),
                    running: self.running.clone(),
                }),
                authorizer: Some(authorizer),
            })
        })
    }
}

struct NamedInvoker {
    name: &'static str,
    calls: Arc<AtomicUsize>,
    running: Arc<AtomicUsize>,
}

impl Invoker for NamedInvoker {
    fn invoke(&self, call: Invocation) -> Step<Invocation> {
        call.blocking(|call, _args| {
            let method = call.method().to_string();
            let method = method.as_str();
            self.calls.fetch_add(1, Ordering::SeqCst);
            self.running.fetch_add(1, Ordering::SeqCst);
            let result = match method {
                "Who" => Ok(vec![json!(self.name), json!(call.remote().claimed_names())]),
                "Echo" => (|| {
                    let mut n = 0;
                    while let Some(v) = call.recv()? {
                        call.send(&v)?;
                        n += 1;
                    }
                    Ok(vec![json!(n)])
                })(),
                m => Err(Error::no_exist(format!("no method {m}"))),
            };
            self.running.fetch_sub(1, Ordering::SeqCst);
            result
        })
    }

    fn signature(&self, _call: &ServerCall) -> Result<Signature> {
        Ok(Signature::new())
    }
}

/// A listener on port 0 whose servers mount nowhere.
fn listener() -> Listener {
    Listener::bind(
        "127.0.0.1:0",
        ServerConfig::default(),
        Client::new(Namespace::new(vec![])).unwrap(),
    )
    .unwrap()
}

fn client_as(p: Principal) -> Client {
    Client::with_principal(Namespace::new(vec![]), Arc::new(p), Default::default())
}

fn opts() -> CallOptions {
    CallOptions::timeout(Duration::from_secs(30))
}

fn who(client: &Client, name: &str) -> Result<Vec<Value>> {
    client.call(name, "Who", vec![], opts())
}

/// Forwards one connection to `to`, changing the routing id of the
/// client's hello from `from_rid` to `to_rid`, and that of the server's
/// reply back, so that neither end sees a change in what it reads.
fn rewriting_proxy(to: SocketAddr, from_rid: u64, to_rid: u64) -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        let Ok((mut a, _)) = l.accept() else { return };
        let Ok(mut b) = TcpStream::connect(to) else {
            return;
        };
        let mut hello = [0u8; 15];
        if a.read_exact(&mut hello).is_err() {
            return;
        }
        assert_eq!(hello[7..15], from_rid.to_be_bytes());
        hello[7..15].copy_from_slice(&to_rid.to_be_bytes());
        let mut reply = [0u8; 15];
        if b.write_all(&hello).is_err() || b.read_exact(&mut reply).is_err() {
            return;
        }
        reply[7..15].copy_from_slice(&from_rid.to_be_bytes());
        if a.write_all(&reply).is_err() {
            return;
        }
        let pump = |mut from: TcpStream, mut to: TcpStream| {
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while let Ok(n) = from.read(&mut buf) {
                    if n == 0 || to.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
                let _ = to.shutdown(std::net::Shutdown::Both);
            })
        };
        pump(a.try_clone().unwrap(), b.try_clone().unwrap());
        pump(b, a);
    });
    addr
}

/// Two servers of one principal on one listener; an attacker on the path
/// rewrites the routing id of a call for A into B's. Both hellos are the
/// handshake's prologue, so the session fails and B runs nothing.
#[test]
fn a_hello_rewritten_on_its_way_fails_the_handshake() {
    let server_p = Arc::new(Principal::new_self_blessed("servers").unwrap());
    let l = listener();
    let a = l.serve_as(Arc::new(Named::new("A", None)), server_p.clone());
    let a = a.unwrap();
    let b_obj = Named::new("B", None);
    let b_calls = b_obj.calls.clone();
    let b = l.serve_as(Arc::new(b_obj), server_p.clone()).unwrap();
    let mut me = Principal::new_self_blessed("caller").unwrap();
    me.trust_root_of(&server_p.blessings()[0]).unwrap();
    let client = client_as(me);
    // Well-behaved: each name reaches its server.
    assert_eq!(who(&client, &a.name()).unwrap()[0], json!("A"));
    assert_eq!(who(&client, &b.name()).unwrap()[0], json!("B"));
    let b_before = b_calls.load(Ordering::SeqCst);

    let (a_rid, b_rid) = (a.endpoint().routing_id(), b.endpoint().routing_id());
    let proxy = rewriting_proxy(l.local_addr(), a_rid, b_rid);
    let via = format!("/@w1@{proxy}@{a_rid:016x}@s@@");
    let err = who(&client, &via).unwrap_err();
    assert_eq!(err.id(), ids::NO_ACCESS, "{err}");
    assert!(err.msg().contains("hellos differ"), "{err}");
    assert_eq!(b_calls.load(Ordering::SeqCst), b_before, "B ran no call");
    // A and B are served meanwhile.
    assert_eq!(who(&client, &a.name()).unwrap()[0], json!("A"));
    assert_eq!(who(&client, &b.name()).unwrap()[0], json!("B"));
}

/// Bob, trusted by Alice because he blessed her, makes a root of his own
/// key named alice and mints alice/admin. Alice's ACL admits alice/...:
/// her own alice/phone gets in, Bob's alice/admin does not (her trust in
/// Bob's root covers bob/... only).
#[test]
fn a_root_cannot_mint_a_name_it_is_not_trusted_for() {
    let bob = Principal::new_self_blessed("bob").unwrap();
    let alice_root = Principal::new_self_blessed("alice").unwrap();
    let alice = alice_root
        .with_blessing(
            bob.bless(&alice_root.public_key(), "alice", vec![])
                .unwrap(),
        )
        .unwrap();
    let server_names = alice.blessings()[0].clone();
    let acl = AclAuthorizer::new().allow("alice/...", &["*"]).unwrap();
    let l = listener();
    let s = l
        .serve_as(Arc::new(Named::new("vault", Some(acl))), Arc::new(alice))
        .unwrap();

    // Bob's forged root and the name minted under it.
    let forged = bob.with_blessing(bob.bless_self("alice").unwrap()).unwrap();
    let mut admin = Principal::new_blessed_by(&forged, "admin", vec![]).unwrap();
    assert_eq!(admin.names(), vec!["alice/admin"]);
    admin.trust_root_of(&server_names).unwrap();
    // Alice's own phone.
    let mut phone = Principal::new_blessed_by(&alice_root, "phone", vec![]).unwrap();
    phone.trust_root_of(&server_names).unwrap();
    let (admin, phone) = (client_as(admin), client_as(phone));

    assert_eq!(who(&phone, &s.name()).unwrap()[0], json!("vault"));
    let err = who(&admin, &s.name()).unwrap_err();
    assert_eq!(err.id(), ids::NO_ACCESS, "{err}");
    assert_eq!(who(&phone, &s.name()).unwrap()[0], json!("vault"));
}

/// The server proves first; the client then presents only the blessings
/// whose peer caveats allow that server. A blessing for the bank is not
/// shown to a shop.
#[test]
fn a_client_shows_a_server_only_the_blessings_meant_for_it() {
    let bank_root = Principal::new_self_blessed("bank").unwrap();
    let mut alice = Principal::new_self_blessed("alice").unwrap();
    alice.trust_root_of(&bank_root.blessings()[0]).unwrap();
    let only_bank = Caveat::PeerBlessings(vec![BlessingPattern::new("bank/...").unwrap()]);
    alice
        .add_blessing(
            bank_root
                .bless(&alice.public_key(), "customer", vec![only_bank])
                .unwrap(),
        )
        .unwrap();
    let shop_p = Principal::new_self_blessed("shop").unwrap();
    alice.trust_root_of(&shop_p.blessings()[0]).unwrap();
    let l = listener();
    let bank = l
        .serve_as(
            Arc::new(Named::new("bank", None)),
            Arc::new(Principal::new_blessed_by(&bank_root, "teller", vec![]).unwrap()),
        )
        .unwrap();
    let shop = l
        .serve_as(Arc::new(Named::new("shop", None)), Arc::new(shop_p))
        .unwrap();
    let client = client_as(alice);
    assert_eq!(
        who(&client, &shop.name()).unwrap()[1],
        json!(["alice"]),
        "the shop sees only what is meant for any server"
    );
    assert_eq!(
        who(&client, &bank.name()).unwrap()[1],
        json!(["bank/customer", "alice"])
    );
}

/// Streams `Echo` once: sends `n`, reads it back.
fn echo_once(call: &mut wspr::rpc::Call, n: i64) {
    call.send(json!(n)).unwrap();
    assert_eq!(call.recv().unwrap(), Some(json!(n)));
}

/// A caller's blessing expires while its call streams: the call ends with
/// NoAccess (expiry was checked once, when the call began). Another
/// caller, whose blessing holds, streams on.
#[test]
fn a_stream_ends_when_the_callers_blessing_expires() {
    let server_p = Principal::new_self_blessed("server").unwrap();
    let short = Principal::new_blessed_by(
        &server_p,
        "short",
        vec![Caveat::expiry_in(Duration::from_secs(3))],
    )
    .unwrap();
    let long = Principal::new_blessed_by(&server_p, "long", vec![]).unwrap();
    let acl = AclAuthorizer::new().allow("server/...", &["*"]).unwrap();
    let obj = Named::new("echo", Some(acl));
    let running = obj.running.clone();
    let l = listener();
    let s = l.serve_as(Arc::new(obj), Arc::new(server_p)).unwrap();
    let (short, long) = (client_as(short), client_as(long));
    let mut a = short.start_call(&s.name(), "Echo", vec![], opts()).unwrap();
    let mut b = long.start_call(&s.name(), "Echo", vec![], opts()).unwrap();
    echo_once(&mut a, 1);
    echo_once(&mut b, 1);
    // Nothing more is sent on `a`; it ends by itself when the blessing does.
    let err = a.recv().unwrap_err();
    assert_eq!(err.id(), ids::NO_ACCESS, "{err}");
    assert!(err.msg().contains("server/short"), "{err}");
    assert!(err.msg().contains("expired"), "{err}");
    // The server's side of it was cancelled; `b` goes on.
    wait_until(
        Duration::from_secs(10),
        "the expired call's invoker",
        || running.load(Ordering::SeqCst) == 1,
    );
    echo_once(&mut b, 2);
    b.close_send().unwrap();
    assert_eq!(b.finish().unwrap(), vec![json!(2)]);
    // A new call with the expired blessing proves no name: refused.
    let err = who(&short, &s.name()).unwrap_err();
    assert_eq!(err.id(), ids::NO_ACCESS, "{err}");
}

/// The server's blessing expires while a call streams: the client ends
/// the call with NoAccess rather than go on talking to a server whose name
/// no longer holds.
#[test]
fn a_stream_ends_when_the_servers_blessing_expires() {
    let root = Principal::new_self_blessed("root").unwrap();
    let fading = Principal::new_blessed_by(
        &root,
        "fading",
        vec![Caveat::expiry_in(Duration::from_secs(3))],
    )
    .unwrap();
    // (Also holding a blessing that expired long ago: one that proves
    // nothing does not end its connections.)
    let mut lasting = Principal::new_blessed_by(&root, "lasting", vec![]).unwrap();
    let old = root
        .bless(&lasting.public_key(), "old", vec![Caveat::Expiry(1)])
        .unwrap();
    lasting.add_blessing(old).unwrap();
    let l = listener();
    let fading = l
        .serve_as(Arc::new(Named::new("fading", None)), Arc::new(fading))
        .unwrap();
    let lasting = l
        .serve_as(Arc::new(Named::new("lasting", None)), Arc::new(lasting))
        .unwrap();
    let client = client_as(Principal::new_blessed_by(&root, "client", vec![]).unwrap());
    let mut a = client
        .start_call(&fading.name(), "Echo", vec![], opts())
        .unwrap();
    let mut b = client
        .start_call(&lasting.name(), "Echo", vec![], opts())
        .unwrap();
    echo_once(&mut a, 1);
    echo_once(&mut b, 1);
    let err = a.recv().unwrap_err();
    assert_eq!(err.id(), ids::NO_ACCESS, "{err}");
    assert!(err.msg().contains("root/fading"), "{err}");
    echo_once(&mut b, 2);
    b.close_send().unwrap();
    assert_eq!(b.finish().unwrap(), vec![json!(2)]);
}

/// blessIdentity names under the requesting pipe's own name
/// (`<daemon>/<origin>/<name>`): a page cannot take a name under another
/// origin, or the daemon's `local`. The blessing expires (a day when the
/// request gives no duration).
#[test]
fn bless_identity_names_under_the_pipes_own_name_and_expires() {
    use common::js::*;
    let d = daemon(|_| {});
    let daemon_name = d.principal().names()[0].clone();
    for origin in ["http://localhost:3000", "http://localhost:4000"] {
        let mut js = Js::connect_with(d.http_addr(), Some(origin)).unwrap();
        let id = js.id();
        js.send(id, 10, json!("carol"));
        let carol = js.recv().message["handle"].clone();
        let ext = wspr::wsprd::identity::origin_extension(Some(origin));
        for name in ["guest", "local"] {
            let id = js.id();
            js.send(id, 8, json!({"handle": carol, "name": name}));
            let m = js.recv();
            assert_eq!((m.id, m.kind), (id, FINAL), "{m:?}");
            assert_eq!(
                m.message["names"],
                json!([format!("{daemon_name}/{ext}/{name}")])
            );
        }
    }
    // The default duration, and a given one.
    let pipe = Principal::new_blessed_by(d.principal(), "http:localhost:3000", vec![]).unwrap();
    let id = wspr::wsprd::identity::create("carol").unwrap();
    let expiry = |req: Value| {
        let req = serde_json::from_value(req).unwrap();
        let b = wspr::wsprd::identity::bless(&pipe, &id, &req).unwrap();
        let left = b.blessings()[0]
            .expiry()
            .expect("an expiry")
            .duration_since(std::time::SystemTime::now())
            .unwrap();
        left.as_secs()
    };
    let day = 24 * 3600;
    let left = expiry(json!({"handle": 1, "name": "a"}));
    assert!(left > day - 60 && left <= day, "{left}");
    let left = expiry(json!({"handle": 1, "name": "a", "durationMs": 0}));
    assert!(left > day - 60 && left <= day, "{left}");
    let left = expiry(json!({"handle": 1, "name": "a", "durationMs": 120_000}));
    assert!(left > 60 && left <= 120, "{left}");
}

fn run(args: &[&str]) -> (Option<i32>, String, String) {
    let out = wsprd().args(args).output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

fn fresh_dir(name: &str) -> std::path::PathBuf {
    let d = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("sessions-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

/// `principal trust --from` trusts that principal's own root for its own
/// names; the root of a blessing it holds from a third party comes only
/// with --blessers.
#[test]
fn principal_trust_takes_the_principals_own_root_for_its_names() {
    let base = fresh_dir("trust");
    let (a, b, c) = (base.join("alice"), base.join("bob"), base.join("carol"));
    let s = |p: &std::path::Path| p.to_str().unwrap().to_string();
    for (dir, name) in [(&a, "alice"), (&b, "bob"), (&c, "carol")] {
        assert_eq!(
            run(&["principal", "create", "--credentials", &s(dir), name]).0,
            Some(0)
        );
    }
    // Carol blesses Bob: Bob holds carol/bob.
    let (code, _, err) = run(&[
        "principal",
        "bless",
        "--credentials",
        &s(&c),
        "--to",
        &s(&b),
        "bob",
    ]);
    assert_eq!(code, Some(0), "{err}");
    let (_, shown, _) = run(&["principal", "show", "--credentials", &s(&b)]);
    assert!(shown.contains(" for carol/..."), "{shown}");

    let (code, out, err) = run(&[
        "principal",
        "trust",
        "--credentials",
        &s(&a),
        "--from",
        &s(&b),
    ]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("for bob/..."), "{out}");
    let (_, shown, _) = run(&["principal", "show", "--credentials", &s(&a)]);
    assert!(shown.contains(" for alice/..."), "{shown}");
    assert!(shown.contains(" for bob/..."), "{shown}");
    assert!(
        !shown.contains("carol"),
        "no third-party root unasked: {shown}"
    );

    let (code, out, err) = run(&[
        "principal",
        "trust",
        "--credentials",
        &s(&a),
        "--from",
        &s(&b),
        "--blessers",
    ]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("for carol/..."), "{out}");
    let (code, out, err) = run(&[
        "principal",
        "trust",
        "--credentials",
        &s(&a),
        "--from",
        &s(&c),
        "--pattern",
        "carol/phone/$",
    ]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("for carol/phone/$"), "{out}");
    let (code, _, err) = run(&[
        "principal",
        "trust",
        "--credentials",
        &s(&a),
        "--from",
        &s(&c),
        "--pattern",
        "carol/\u{202e}x",
    ]);
    assert_eq!(code, Some(1));
    assert!(err.contains("BadArg") && err.contains("U+202E"), "{err}");
    let _ = std::fs::remove_dir_all(&base);
}

/// Credentials others could change are refused, naming the path and the
/// fix; a corrupt file is BadArg naming the file.
#[test]
fn unsafe_or_corrupt_credentials_are_refused_clearly() {
    use std::os::unix::fs::PermissionsExt;
    let dir = fresh_dir("unsafe");
    let d = dir.to_str().unwrap();
    assert_eq!(
        run(&["principal", "create", "--credentials", d, "x"]).0,
        Some(0)
    );
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
    let (code, _, err) = run(&["principal", "show", "--credentials", d]);
    assert_eq!(code, Some(1));
    assert!(err.contains("NoAccess"), "{err}");
    assert!(err.contains(&format!("chmod 700 {d}")), "{err}");
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
    let file = dir.join(wspr::security::CREDENTIALS_FILE);
    // Readable by others: used, with a warning that says what to do.
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let (code, _, err) = run(&["principal", "show", "--credentials", d]);
    assert_eq!(code, Some(0), "{err}");
    assert!(err.contains("readable by others"), "{err}");
    assert!(
        err.contains(&format!("chmod 600 {}", file.display())),
        "{err}"
    );
    // Writable by others: refused.
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o666)).unwrap();
    let (code, _, err) = run(&["principal", "show", "--credentials", d]);
    assert_eq!(code, Some(1));
    assert!(
        err.contains("NoAccess") && err.contains("chmod 600"),
        "{err}"
    );
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
    std::fs::write(&file, b"\x00\xffnot json").unwrap();
    let (code, _, err) = run(&["principal", "show", "--credentials", d]);
    assert_eq!(code, Some(1));
    assert!(err.contains("BadArg"), "{err}");
    assert!(err.contains(&file.display().to_string()), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}
