//! A user's identity from a token: each kind of bad token is refused (and
//! its pipe closed) while a user's pipe goes on being served; a user's
//! pages reach each other and not another user's; ACLs name users; a
//! token renewed before it expires keeps the pipe, one that expires ends
//! it; `--require-token`. Real daemons and sockets.

mod common;

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use wspr::error::ids;
use wspr::rpc::{
    Dispatcher, Invocation, Invoker, Lookup, Pending, Server, ServerCall, Signature, Step,
};
use wspr::security::AclAuthorizer;

use common::js::*;
use common::tokens::*;
use common::*;

const TOKEN: u64 = 20;

/// A daemon trusting `issuers` (audience [`AUDIENCE`]), serving the demo.
fn token_daemon(
    issuers: &[&TestIssuer],
    f: impl FnOnce(&mut wspr::wsprd::Config),
) -> wspr::wsprd::Daemon {
    daemon(|c| {
        c.serve_demo = true;
        c.token_issuers = issuers.iter().map(|i| i.config()).collect();
        c.token_audiences = vec![AUDIENCE.to_string()];
        f(c);
    })
}

/// Sends `token` on a new flow; the answer.
fn present(js: &mut Js, token: &str) -> Msg {
    let id = js.id();
    js.send(id, TOKEN, json!({ "token": token }));
    let m = js.recv();
    assert_eq!(m.id, id, "{m:?}");
    m
}

/// A pipe of the user of `token`; its blessing names.
fn user_pipe(d: &wspr::wsprd::Daemon, token: &str) -> (Js, Vec<String>) {
    user_pipe_at(d.http_addr(), token)
}

/// [`user_pipe`] on the daemon at `addr`.
fn user_pipe_at(addr: std::net::SocketAddr, token: &str) -> (Js, Vec<String>) {
    let mut js = Js::connect(addr);
    let m = present(&mut js, token);
    assert_eq!(m.kind, FINAL, "token refused: {m:?}");
    let names = m.message["names"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n.as_str().unwrap().to_string())
        .collect();
    (js, names)
}

/// The daemon's own blessing name.
fn daemon_name(d: &wspr::wsprd::Daemon) -> String {
    d.principal().names()[0].clone()
}

fn add(js: &mut Js) -> Msg {
    let id = js.call("demo/adder", "add", json!([2, 3]), false);
    let m = js.recv();
    assert_eq!(m.id, id);
    m
}

fn assert_sum(m: &Msg) {
    assert_eq!((m.kind, &m.message), (FINAL, &json!([5])), "{m:?}");
}

#[test]
fn each_bad_token_is_refused_and_its_pipe_closed_while_a_user_is_served() {
    let acme = TestIssuer::ed25519("acme");
    let ec = TestIssuer::p256("ec-issuer");
    let stranger = TestIssuer::ed25519("stranger");
    let d = token_daemon(&[&acme, &ec], |_| {});
    let me = daemon_name(&d);

    let (mut alice, names) = user_pipe(&d, &acme.token("alice", 600));
    assert_eq!(names, vec![format!("{me}/local/acme:alice")]);
    assert_sum(&add(&mut alice));
    // ES256 works as well as EdDSA.
    let (mut carol, names) = user_pipe(&d, &ec.token("carol@example.com", 600));
    assert_eq!(
        names,
        vec![format!("{me}/local/ec-issuer:carol@example.com")]
    );
    assert_sum(&add(&mut carol));

    let now = now_secs();
    let mut expired = acme.claims("mallory", 0);
    expired["exp"] = json!(now - 3600);
    let mut early = acme.claims("mallory", 600);
    early["nbf"] = json!(now + 3600);
    let mut wrong_aud = acme.claims("mallory", 600);
    wrong_aud["aud"] = json!("https://elsewhere.example");
    let mut no_aud = acme.claims("mallory", 600);
    no_aud.as_object_mut().unwrap().remove("aud");
    let mut no_exp = acme.claims("mallory", 600);
    no_exp.as_object_mut().unwrap().remove("exp");
    // Tampered: alice's token with another subject, her signature kept.
    let good = acme.token("alice", 600);
    let parts: Vec<&str> = good.split('.').collect();
    let tampered = format!(
        "{}.{}.{}",
        parts[0],
        b64url(acme.claims("mallory", 600).to_string().as_bytes()),
        parts[2]
    );
    // alg none.
    let none = unsigned(
        &json!({"alg": "none", "typ": "JWT"}),
        &acme.claims("mallory", 600),
    );
    // HS256 keyed with the issuer's public key (the classic confusion).
    let hs256 = jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &acme.claims("mallory", 600),
        &EncodingKey::from_secret(acme.public_pem.as_bytes()).unwrap(),
    )
    .unwrap();
    // Signed by a key the daemon does not know, under a known name, and
    // under an unknown one.
    let mut as_acme = stranger.claims("mallory", 600);
    as_acme["iss"] = json!("acme");
    let cases: Vec<(&str, String, &str)> = vec![
        ("expired", acme.sign(&expired), "expired"),
        ("not yet valid", acme.sign(&early), "not valid yet"),
        ("another audience", acme.sign(&wrong_aud), "audience"),
        ("no audience", acme.sign(&no_aud), "aud"),
        ("no expiry", acme.sign(&no_exp), "exp"),
        ("tampered", tampered, "signature"),
        ("alg none", none, "none"),
        ("HS256 with the public key", hs256, "HS256"),
        (
            "another key under a known issuer's name",
            stranger.sign(&as_acme),
            "signature",
        ),
        (
            "an unknown issuer",
            stranger.token("mallory", 600),
            "not one this daemon trusts",
        ),
        ("not a JWT", "garbage".to_string(), "not a JWT"),
    ];
    for (what, token, says) in cases {
        let mut bad = Js::connect(d.http_addr());
        let m = present(&mut bad, &token);
        assert_eq!(m.kind, ERROR, "{what}: {m:?}");
        assert_eq!(m.message["id"], ids::NO_ACCESS, "{what}: {m:?}");
        let msg = m.message["msg"].as_str().unwrap();
        assert!(msg.contains(says), "{what}: {msg}");
        assert_eq!(bad.close_code(), Some(1008), "{what}");
        // The user goes on.
        assert_sum(&add(&mut alice));
    }
}

/// Answers `js`'s next lookup with the adder and its next request with
/// `a + b`; the request's context.
fn answer_add(js: &mut Js) -> Value {
    js.answer_next_lookup(1);
    let r = js.recv();
    assert_eq!(r.kind, SERVER_REQUEST, "{r:?}");
    let args = r.message["args"].as_array().unwrap();
    let sum = args[0].as_i64().unwrap() + args[1].as_i64().unwrap();
    js.send(r.id, 2, json!({"results": [sum], "err": null}));
    r.message["context"].clone()
}

#[test]
fn a_users_pages_reach_each_other_and_not_another_users() {
    let acme = TestIssuer::ed25519("acme");
    let d = token_daemon(&[&acme], |_| {});
    let me = daemon_name(&d);
    let (mut server, _) = user_pipe(&d, &acme.token("alice", 600));
    server.serve("alice/adder", 1);
    let (mut alice2, _) = user_pipe(&d, &acme.token("alice", 600));
    let (mut bob, _) = user_pipe(&d, &acme.token("bob", 600));

    let id = alice2.call("alice/adder", "add", json!([20, 22]), false);
    let ctx = answer_add(&mut server);
    assert_eq!(
        ctx["remoteId"]["names"],
        json!([format!("{me}/local/acme:alice")])
    );
    let m = alice2.recv();
    assert_eq!((m.id, m.kind, &m.message), (id, FINAL, &json!([42])));

    // Bob is refused by the default rule, after the lookup (which names
    // the object and its authorizer): his request never reaches alice.
    let id = bob.call("alice/adder", "add", json!([1, 1]), false);
    server.answer_next_lookup(1);
    let m = bob.recv();
    assert_eq!((m.id, m.kind), (id, ERROR), "{m:?}");
    assert_eq!(m.message["id"], ids::NO_ACCESS, "{m:?}");
    assert!(server.try_recv(Duration::from_millis(300)).is_none());

    // And bob cannot take alice's name either.
    let id = bob.id();
    bob.send(id, 1, json!({"name": "alice/adder", "serverId": 7}));
    let m = bob.recv();
    assert_eq!((m.id, m.kind), (id, ERROR), "{m:?}");
    assert_eq!(m.message["id"], ids::NO_ACCESS, "{m:?}");

    // Alice's server still answers her.
    let id = alice2.call("alice/adder", "add", json!([1, 2]), false);
    answer_add(&mut server);
    let m = alice2.recv();
    assert_eq!((m.id, m.kind, &m.message), (id, FINAL, &json!([3])));
}

/// A native object answering `Whoami` with the caller's proven names,
/// behind an ACL.
struct Acl(AclAuthorizer);

impl Dispatcher for Acl {
    fn lookup(&self, call: Pending) -> Step<Pending> {
        call.blocking(|_call| {
            Ok(Lookup {
                invoker: Arc::new(Whoami),
                authorizer: Some(Arc::new(self.0.clone())),
            })
        })
    }
}

struct Whoami;

impl Invoker for Whoami {
    fn invoke(&self, call: Invocation) -> Step<Invocation> {
        call.blocking(|call, _| Ok(vec![json!(call.remote_names())]))
    }
    fn signature(&self, _call: &ServerCall) -> wspr::Result<Signature> {
        Ok(Signature::new())
    }
}

#[test]
fn an_acl_names_a_user_or_a_pattern_of_users() {
    let acme = TestIssuer::ed25519("acme");
    let d = token_daemon(&[&acme], |_| {});
    let me = daemon_name(&d);
    let client = test_client(d.namespace_roots());
    let alice_only = AclAuthorizer::new()
        .allow(&format!("{me}/local/acme:alice"), &["*"])
        .unwrap();
    let acme_users = AclAuthorizer::new()
        .allow(&format!("{me}/local/...",), &["*"])
        .unwrap();
    let mut servers = vec![];
    for (name, acl) in [("acl/alice", alice_only), ("acl/users", acme_users)] {
        let s = Server::listen("127.0.0.1:0", Arc::new(Acl(acl)), client.clone()).unwrap();
        s.add_name(name).unwrap();
        servers.push(s);
    }
    let (mut alice, _) = user_pipe(&d, &acme.token("alice", 600));
    let (mut bob, _) = user_pipe(&d, &acme.token("bob", 600));
    let whoami = |js: &mut Js, name: &str| {
        let id = js.call(name, "whoami", json!([]), false);
        let m = js.recv();
        assert_eq!(m.id, id);
        m
    };
    let m = whoami(&mut alice, "acl/alice");
    assert_eq!(
        (m.kind, &m.message),
        (FINAL, &json!([[format!("{me}/local/acme:alice")]])),
        "{m:?}"
    );
    let m = whoami(&mut bob, "acl/alice");
    assert_eq!(
        (m.kind, &m.message["id"]),
        (ERROR, &json!(ids::NO_ACCESS)),
        "{m:?}"
    );
    let m = whoami(&mut bob, "acl/users");
    assert_eq!(
        (m.kind, &m.message),
        (FINAL, &json!([[format!("{me}/local/acme:bob")]])),
        "{m:?}"
    );
    for s in servers {
        s.stop();
    }
}

fn millis_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

#[test]
fn a_token_renewed_before_it_expires_keeps_the_pipe_and_one_that_expires_ends_it() {
    let acme = TestIssuer::ed25519("acme");
    let d = token_daemon(&[&acme], |_| {});
    let me = daemon_name(&d);
    // Two pipes of alice's whose tokens expire in 3 s: one renews.
    let (mut renewing, _) = user_pipe(&d, &acme.token("alice", 3));
    let (mut lapsing, _) = user_pipe(&d, &acme.token("alice", 3));
    let first_exp = (now_secs() + 3) * 1000;
    renewing.serve("alice/kept", 1);
    // A native caller of the renewing pipe's server, connected now.
    let native = native_client(&d);
    let call_kept = |native: &wspr::rpc::Client, renewing: &mut Js| {
        let c = native
            .start_call(
                "alice/kept",
                "add",
                vec![json!(1), json!(2)],
                Default::default(),
            )
            .unwrap();
        let ctx = answer_add(renewing);
        assert_eq!(ctx["remoteId"]["names"], json!([me.clone()]));
        c.finish()
    };
    assert_eq!(call_kept(&native, &mut renewing).unwrap(), vec![json!(3)]);

    // A renewal for another user is refused; the pipe keeps its user.
    let m = present(&mut renewing, &acme.token("bob", 600));
    assert_eq!(
        (m.kind, &m.message["id"]),
        (ERROR, &json!(ids::NO_ACCESS)),
        "{m:?}"
    );
    assert!(
        m.message["msg"]
            .as_str()
            .unwrap()
            .contains("the pipe's user"),
        "{m:?}"
    );
    // A renewal for alice is taken.
    let m = present(&mut renewing, &acme.token("alice", 600));
    assert_eq!(m.kind, FINAL, "{m:?}");
    assert_eq!(
        m.message["names"],
        json!([format!("{me}/local/acme:alice")])
    );
    assert!(m.message["expiresAt"].as_u64().unwrap() > first_exp + 500_000);

    // The lapsing pipe has a call in flight when its token expires (a
    // lookup of its own server that it never answers).
    lapsing.serve("alice/silent", 2);
    let stuck = lapsing.call("alice/silent", "add", json!([1, 1]), false);
    let lookup = lapsing.recv();
    assert_eq!(lookup.kind, LOOKUP);

    // Past the first expiry.
    wait_until(Duration::from_secs(10), "the first tokens' expiry", || {
        millis_now() > first_exp + 300
    });
    // The lapsing pipe: its call fails with NoAccess, then it closes 1008.
    let m = loop {
        let m = lapsing.recv();
        if m.id == stuck {
            break m;
        }
    };
    assert_eq!(
        (m.kind, &m.message["id"]),
        (ERROR, &json!(ids::NO_ACCESS)),
        "{m:?}"
    );
    // (The token's expiry, or its blessing's, whichever the daemon saw
    // first: the call stood on the blessing of its own server.)
    assert!(
        m.message["msg"].as_str().unwrap().contains("expired"),
        "{m:?}"
    );
    assert_eq!(lapsing.close_code(), Some(1008));

    // The renewed pipe goes on: its calls, and its server for the native
    // caller (whose connection ended with the old blessing; a new one
    // proves the renewed).
    assert_sum(&add(&mut renewing));
    assert_eq!(call_kept(&native, &mut renewing).unwrap(), vec![json!(3)]);
    let (mut alice2, _) = user_pipe(&d, &acme.token("alice", 600));
    let id = alice2.call("alice/kept", "add", json!([4, 5]), false);
    answer_add(&mut renewing);
    let m = alice2.recv();
    assert_eq!((m.id, m.kind, &m.message), (id, FINAL, &json!([9])));
}

#[test]
fn with_require_token_a_pipe_without_one_is_closed() {
    let acme = TestIssuer::ed25519("acme");
    let mut config = wspr::wsprd::Config::default();
    config.setup_timeout = Duration::from_millis(500);
    let d = wspr::wsprd::Daemon::builder()
        .config(config)
        .listen("127.0.0.1:0")
        .principal(test_principal())
        .demo()
        .token_issuer("acme", &acme.key_file)
        .token_audience(AUDIENCE)
        .require_token()
        .spawn()
        .unwrap();
    let (mut alice, _) = user_pipe(&d, &acme.token("alice", 600));
    // A call first: NoAccess, and the pipe closes.
    let mut anon = Js::connect(d.http_addr());
    let m = add(&mut anon);
    assert_eq!(
        (m.kind, &m.message["id"]),
        (ERROR, &json!(ids::NO_ACCESS)),
        "{m:?}"
    );
    assert_eq!(anon.close_code(), Some(1008));
    // Nothing at all: closed at the setup time.
    let mut silent = Js::connect(d.http_addr());
    assert_eq!(silent.close_code(), Some(1008));
    // The user's pipe goes on, and renews.
    assert_sum(&add(&mut alice));
    let m = present(&mut alice, &acme.token("alice", 600));
    assert_eq!(m.kind, FINAL, "a renewal: {m:?}");
    assert_sum(&add(&mut alice));
}

/// On a daemon that trusts token issuers, a pipe without a token is
/// `<daemon>/<origin>/anonymous`, not `<daemon>/<origin>` (the blesser of
/// every user of the origin, which the default rule would let reach every
/// user's objects): such pages reach each other, and no user's.
#[test]
fn a_pipe_without_a_token_is_apart_from_every_user() {
    let acme = TestIssuer::ed25519("acme");
    let d = token_daemon(&[&acme], |_| {});
    let me = daemon_name(&d);
    let (mut alice, _) = user_pipe(&d, &acme.token("alice", 600));
    alice.serve("alice/adder", 1);
    let mut anon = Js::connect(d.http_addr());
    anon.serve("anon/adder", 2);
    let mut anon2 = Js::connect(d.http_addr());

    // A page without a token is refused by alice's object; her server
    // hears the lookup (which names the object) and nothing more.
    let id = anon2.call("alice/adder", "add", json!([1, 1]), false);
    alice.answer_next_lookup(1);
    let m = anon2.recv();
    assert_eq!((m.id, m.kind), (id, ERROR), "{m:?}");
    assert_eq!(m.message["id"], ids::NO_ACCESS, "{m:?}");
    assert!(alice.try_recv(Duration::from_millis(300)).is_none());

    // Alice is refused by the tokenless page's object likewise.
    let id = alice.call("anon/adder", "add", json!([1, 1]), false);
    anon.answer_next_lookup(1);
    let m = alice.recv();
    assert_eq!((m.id, m.kind), (id, ERROR), "{m:?}");
    assert_eq!(m.message["id"], ids::NO_ACCESS, "{m:?}");

    // Two pages without a token reach each other, named as such.
    let id = anon2.call("anon/adder", "add", json!([20, 22]), false);
    let ctx = answer_add(&mut anon);
    assert_eq!(
        ctx["remoteId"]["names"],
        json!([format!("{me}/local/anonymous")])
    );
    let m = anon2.recv();
    assert_eq!((m.id, m.kind, &m.message), (id, FINAL, &json!([42])));

    // And alice is still served by her own object meanwhile.
    let (mut alice2, _) = user_pipe(&d, &acme.token("alice", 600));
    let id = alice2.call("alice/adder", "add", json!([1, 2]), false);
    answer_add(&mut alice);
    let m = alice2.recv();
    assert_eq!((m.id, m.kind, &m.message), (id, FINAL, &json!([3])));
}

#[test]
fn without_require_token_a_pipe_without_one_is_its_origin_and_a_late_token_is_not_taken() {
    let acme = TestIssuer::ed25519("acme");
    let d = token_daemon(&[&acme], |_| {});
    let mut anon = Js::connect(d.http_addr());
    assert_sum(&add(&mut anon));
    let m = present(&mut anon, &acme.token("alice", 600));
    assert_eq!(
        (m.kind, &m.message["id"]),
        (ERROR, &json!(ids::BAD_ARG)),
        "{m:?}"
    );
    assert_sum(&add(&mut anon));
    // A daemon with no issuers refuses a token, and closes the pipe.
    let plain = daemon(|c| c.serve_demo = true);
    let mut js = Js::connect(plain.http_addr());
    let m = present(&mut js, &acme.token("alice", 600));
    assert_eq!(
        (m.kind, &m.message["id"]),
        (ERROR, &json!(ids::NO_ACCESS)),
        "{m:?}"
    );
    assert_eq!(js.close_code(), Some(1008));
}

#[test]
fn token_settings_are_checked() {
    let acme = TestIssuer::ed25519("acme");
    let bad = |f: &dyn Fn(&mut wspr::wsprd::Config)| {
        let mut c = wspr::wsprd::Config::default();
        c.listen = "127.0.0.1:0".into();
        f(&mut c);
        let e = wspr::wsprd::Daemon::spawn(c).err().expect("refused");
        assert_eq!(e.id(), ids::BAD_ARG, "{e}");
        e.msg().to_string()
    };
    assert!(bad(&|c| c.token_issuers = vec![acme.config()]).contains("--token-audience"));
    assert!(bad(&|c| c.require_token = true).contains("token issuer"));
    let msg = bad(&|c| {
        c.token_issuers = vec![wspr::wsprd::TokenIssuer::new("a:b", &acme.key_file)];
        c.token_audiences = vec![AUDIENCE.into()];
    });
    assert!(msg.contains("a:b"), "{msg}");
    let missing = acme.key_file.with_file_name("missing.pem");
    let msg = bad(&|c| {
        c.token_issuers = vec![wspr::wsprd::TokenIssuer::new("acme", &missing)];
        c.token_audiences = vec![AUDIENCE.into()];
    });
    assert!(msg.contains("missing.pem"), "{msg}");
    let not_a_key = acme.key_file.with_file_name("not-a-key.pem");
    std::fs::write(&not_a_key, "hello").unwrap();
    let msg = bad(&|c| {
        c.token_issuers = vec![wspr::wsprd::TokenIssuer::new("acme", &not_a_key)];
        c.token_audiences = vec![AUDIENCE.into()];
    });
    assert!(msg.contains("no public key"), "{msg}");
}

/// An issuer rotates its key: after SIGHUP, `wsprd serve` checks tokens
/// against the key now in the file (the old key's tokens are refused, the
/// new key's taken), a user's open pipe goes on, and a key file that
/// cannot be used keeps the keys in use (the log says why).
#[test]
fn sighup_reads_the_issuers_keys_again_and_a_bad_file_keeps_the_old() {
    let old = TestIssuer::ed25519("acme");
    let new = TestIssuer::ed25519("acme");
    let mut c = wsprd();
    c.args([
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--mounttable-listen",
        "127.0.0.1:0",
        "--demo",
        "--log-level",
        "info",
        "--token-audience",
        AUDIENCE,
        "--token-issuer",
    ]);
    c.arg(format!("acme={}", old.key_file.display()));
    let p = Proc::spawn(c);
    let line = p.line();
    let addr: std::net::SocketAddr = line
        .rsplit("http://")
        .next()
        .unwrap()
        .parse()
        .unwrap_or_else(|e| panic!("{line}: {e}"));
    let _root = p.line();
    let (mut alice, _) = user_pipe_at(addr, &old.token("alice", 600));
    assert_sum(&add(&mut alice));

    // The new key in the old key's file, then SIGHUP.
    std::fs::write(&old.key_file, &new.public_pem).unwrap();
    p.signal("-HUP");
    wait_until(Duration::from_secs(10), "the new key", || {
        present(&mut Js::connect(addr), &new.token("bob", 600)).kind == FINAL
    });
    let mut js = Js::connect(addr);
    let m = present(&mut js, &old.token("mallory", 600));
    assert_eq!(
        (m.kind, &m.message["id"]),
        (ERROR, &json!(ids::NO_ACCESS)),
        "the old key's token: {m:?}"
    );
    assert_sum(&add(&mut alice));

    // A file that holds no key: the keys in use stay.
    std::fs::write(&old.key_file, "not a key").unwrap();
    p.signal("-HUP");
    wait_until(
        Duration::from_secs(10),
        "the log of the refused reload",
        || p.stderr.lock().unwrap().contains("keys not reloaded"),
    );
    let (mut bob, _) = user_pipe_at(addr, &new.token("bob", 600));
    assert_sum(&add(&mut bob));
    assert_sum(&add(&mut alice));
}
