//! Fuzz inputs replayed through the entry points of the fuzz targets
//! (`fuzz/`, `docs/fuzzing.md`), on stable and without cargo-fuzz:
//!
//! - every checked-in seed, `fuzz/seeds/<target>/*`; seeds not named
//!   `bad-*` must also still be valid input (a frame that decodes, a
//!   blessing that verifies, ...), so that the seeds follow the formats;
//! - every input a fuzzer crashed on, `tests/fuzz_regressions/<target>/*`,
//!   each also named by a test of its own below.
//!
//! The seeds are written by `write_seeds` (ignored; see `docs/fuzzing.md`).

mod common;
#[path = "../fuzz/harness/dispatch.rs"]
mod dispatch;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::js::{FINAL, Js};

use serde_json::{Value, json};
use wspr::rpc::wire;
use wspr::security::Blessing;
use wspr::wsprd::protocol;

/// A fuzz target's entry point.
type Entry = fn(&[u8]);

/// Every fuzz target and the entry point it runs.
const TARGETS: &[(&str, Entry)] = &[
    ("rpc_frame", wspr::fuzzing::rpc_frame),
    ("names", wspr::fuzzing::names),
    ("js_message", wspr::fuzzing::js_message),
    ("lookup_reply", wspr::fuzzing::lookup_reply),
    ("blessing", wspr::fuzzing::blessing),
    ("handshake", wspr::fuzzing::handshake),
    ("dispatch", dispatch::run),
];

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn seeds_dir(target: &str) -> PathBuf {
    repo().join("fuzz/seeds").join(target)
}

fn regressions_dir(target: &str) -> PathBuf {
    repo().join("tests/fuzz_regressions").join(target)
}

/// The files in `dir` (none if it does not exist), by name.
fn inputs(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return vec![];
    };
    let mut out: Vec<(String, Vec<u8>)> = rd
        .map(|e| e.expect("a directory entry").path())
        .filter(|p| p.is_file())
        .map(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read(&p).expect("an input"))
        })
        .collect();
    out.sort();
    out
}

fn entry(target: &str) -> Entry {
    TARGETS
        .iter()
        .find(|(t, _)| *t == target)
        .unwrap_or_else(|| panic!("no fuzz target {target}"))
        .1
}

/// Runs every file in `dir` through `target`'s entry point; how many.
fn replay(target: &str, dir: &Path) -> usize {
    let run = entry(target);
    let files = inputs(dir);
    for (name, data) in &files {
        eprintln!("{target}: {}", dir.join(name).display());
        run(data);
    }
    files.len()
}

/// Names of the subdirectories of `dir`.
fn subdirs(dir: &Path) -> Vec<String> {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return vec![];
    };
    rd.map(|e| e.expect("a directory entry").path())
        .filter(|p| p.is_dir())
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect()
}

#[test]
fn the_targets_here_are_the_fuzz_crates() {
    let toml = std::fs::read_to_string(repo().join("fuzz/Cargo.toml")).expect("fuzz/Cargo.toml");
    let mut bins: Vec<&str> = toml
        .split("[[bin]]")
        .skip(1)
        .filter_map(|b| b.lines().find_map(|l| l.strip_prefix("name = ")))
        .map(|n| n.trim_matches('"'))
        .collect();
    let mut ours: Vec<&str> = TARGETS.iter().map(|(t, _)| *t).collect();
    bins.sort();
    ours.sort();
    assert_eq!(bins, ours);
    for d in subdirs(&repo().join("fuzz/seeds")) {
        assert!(ours.contains(&d.as_str()), "fuzz/seeds/{d}: no such target");
    }
    for d in subdirs(&repo().join("tests/fuzz_regressions")) {
        assert!(
            ours.contains(&d.as_str()),
            "tests/fuzz_regressions/{d}: no such target"
        );
    }
}

/// Whether a seed that is not `bad-*` is what its target decodes.
fn check_valid(target: &str, name: &str, data: &[u8]) {
    if name.starts_with("bad-") {
        return;
    }
    let what = format!("fuzz/seeds/{target}/{name}");
    match target {
        "rpc_frame" => {
            if name.starts_with("hello-") {
                let h: &[u8; wire::HELLO_LEN] = data.try_into().expect(&what);
                wire::decode_hello(h).expect(&what);
            } else if name.starts_with("frame-") {
                let len = wire::frame_len(data[..4].try_into().unwrap(), wire::DEFAULT_MAX_FRAME)
                    .expect(&what);
                assert_eq!(len, data.len() - 4, "{what}");
                wire::decode(&data[4..]).expect(&what);
            } else {
                wire::decode(data).expect(&what);
            }
        }
        "names" => {
            let s = std::str::from_utf8(data).expect(&what);
            if name.starts_with("glob-") {
                let (p, n) = s.split_at(s.len() / 2);
                let p = wspr::glob::Pattern::parse(p).expect(&what);
                assert!(p.matches(n), "{what}: {n:?} does not match");
            } else if name.starts_with("endpoint-") {
                wspr::naming::Endpoint::parse(s).expect(&what);
            } else {
                wspr::naming::Name::parse(s).expect(&what);
            }
        }
        "js_message" | "dispatch" => {
            let m = protocol::parse_envelope(std::str::from_utf8(data).expect(&what))
                .unwrap_or_else(|(_, e)| panic!("{what}: {e}"));
            let d = m.data;
            let ok = match m.kind {
                protocol::InType::Call => protocol::data::<protocol::CallRequest>(d, "").is_ok(),
                protocol::InType::Serve => protocol::data::<protocol::ServeRequest>(d, "").is_ok(),
                protocol::InType::ServerResponse => {
                    protocol::data::<protocol::ServerResponse>(d, "").is_ok()
                }
                protocol::InType::Signature => {
                    protocol::data::<protocol::SignatureRequest>(d, "").is_ok()
                }
                protocol::InType::LookupResponse => {
                    protocol::data::<protocol::LookupResponse>(d, "").is_ok()
                }
                protocol::InType::AuthResponse => {
                    protocol::data::<protocol::AuthResponse>(d, "").is_ok()
                }
                protocol::InType::Namespace => {
                    protocol::data::<protocol::NamespaceRequest>(d, "").is_ok()
                }
                protocol::InType::BlessIdentity => {
                    protocol::data::<wspr::wsprd::identity::BlessRequest>(d, "").is_ok()
                }
                protocol::InType::StopServer | protocol::InType::UnlinkIdentity => {
                    protocol::data::<u64>(d, "").is_ok()
                }
                protocol::InType::CreateIdentity => protocol::data::<String>(d, "").is_ok(),
                _ => true,
            };
            assert!(ok, "{what}: its data does not decode");
        }
        "lookup_reply" => {
            let v: Value = serde_json::from_slice(data).expect(&what);
            protocol::data::<protocol::LookupResponse>(protocol::raw(&v), "").expect(&what);
        }
        "blessing" => {
            if name.starts_with("blessing-") {
                let (b, used) = Blessing::decode(data).expect(&what);
                assert_eq!(used, data.len(), "{what}");
                b.verify().expect(&what);
            } else {
                // A proof: a key, blessings, then a 64-byte signature.
                let mut at = 33;
                for _ in 0..data[32] {
                    let (b, used) = Blessing::decode(&data[at..]).expect(&what);
                    b.verify().expect(&what);
                    at += used;
                }
                assert_eq!(data.len() - at, 64, "{what}");
            }
        }
        _ => {}
    }
}

#[test]
fn every_seed_replays() {
    for (target, _) in TARGETS {
        if *target == "dispatch" {
            continue;
        }
        let dir = seeds_dir(target);
        for (name, data) in inputs(&dir) {
            check_valid(target, &name, &data);
        }
        let n = replay(target, &dir);
        assert!(n >= 3, "{target} has {n} seeds");
    }
}

/// The dispatch seeds, one after another on one pipe of a live daemon,
/// which answers a call after each.
#[test]
fn every_dispatch_seed_replays() {
    let dir = seeds_dir("dispatch");
    for (name, data) in inputs(&dir) {
        check_valid("dispatch", &name, &data);
    }
    let n = replay("dispatch", &dir);
    assert!(n >= 10, "dispatch has {n} seeds");
}

/// Every saved crash input, through its target.
#[test]
fn every_crash_input_replays() {
    for (target, _) in TARGETS {
        replay(target, &regressions_dir(target));
    }
}

/// `names` split its input in the middle with `str::split_at`, which
/// panics inside a character: the byte 0x8a (invalid UTF-8, read as the
/// three bytes of U+FFFD) did it.
#[test]
fn names_split_inside_a_character() {
    let path = regressions_dir("names").join("crash-split-inside-a-character");
    wspr::fuzzing::names(&std::fs::read(path).expect("the crash input"));
    wspr::fuzzing::names("aé/*".as_bytes());
}

/// A pipe's socket has a read timeout (the keepalive), and the kernel does
/// not restart such a read after a stop or a signal: it fails with EINTR,
/// and the daemon closed the pipe ("Interrupted system call"). The
/// dispatch target found it (LeakSanitizer stops every thread to look for
/// leaks); a user sees it as every page losing its pipe when `wsprd serve`
/// is suspended and resumed (Ctrl-Z, `fg`) or a debugger attaches.
#[test]
fn pipes_survive_their_daemon_being_stopped_and_continued() {
    let mut c = common::wsprd();
    c.args([
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--mounttable-listen",
        "127.0.0.1:0",
        "--demo",
    ]);
    let p = common::Proc::spawn(c);
    let line = p.line();
    let addr = line
        .strip_prefix("wsprd listening on http://")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .parse()
        .expect("an address");
    let mut js = Js::connect(addr);
    let add = |js: &mut Js| {
        let id = js.call("demo/adder", "add", json!([1, 2]), false);
        let m = js.recv();
        assert_eq!((m.id, m.kind, &m.message), (id, FINAL, &json!([3])));
    };
    add(&mut js);
    let stopped = || {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", p.child.id()));
        let stat = stat.expect("the daemon's /proc stat");
        stat.rsplit_once(") ")
            .is_some_and(|(_, rest)| rest.starts_with('T'))
    };
    p.signal("-STOP");
    common::wait_until(Duration::from_secs(10), "the daemon to stop", stopped);
    p.signal("-CONT");
    common::wait_until(Duration::from_secs(10), "the daemon to go on", || {
        !stopped()
    });
    add(&mut js);
}

// ---------------------------------------------------------------------
// Seeds. `cargo test --test fuzz_regressions -- --ignored write_seeds`
// rewrites fuzz/seeds/. Keys are fixed, so the output is the same every
// time, but for the handshake's first messages (snow draws the Noise
// ephemeral key at random).

mod seeds {
    use super::*;
    use ed25519_dalek::{Signer, SigningKey};

    pub struct Out {
        dir: PathBuf,
    }

    impl Out {
        pub fn new(target: &str) -> Out {
            let dir = seeds_dir(target);
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).expect("seeds dir");
            Out { dir }
        }
        pub fn put(&self, name: &str, data: impl AsRef<[u8]>) {
            std::fs::write(self.dir.join(name), data).expect("write seed");
        }
    }

    /// A caveat as `blessing.rs` encodes it.
    pub enum Cav<'a> {
        Expiry(u64),
        Method(&'a [&'a str]),
        Peer(&'a [&'a str]),
    }

    fn put_str(out: &mut Vec<u8>, s: &str) {
        out.extend_from_slice(&(s.len() as u16).to_be_bytes());
        out.extend_from_slice(s.as_bytes());
    }

    fn body(ext: &str, key: &[u8; 32], caveats: &[Cav<'_>]) -> Vec<u8> {
        let mut b = Vec::new();
        put_str(&mut b, ext);
        b.extend_from_slice(key);
        b.push(caveats.len() as u8);
        for c in caveats {
            let (kind, list) = match c {
                Cav::Expiry(ms) => {
                    b.push(1);
                    b.extend_from_slice(&ms.to_be_bytes());
                    continue;
                }
                Cav::Method(l) => (2, l),
                Cav::Peer(l) => (3, l),
            };
            b.push(kind);
            b.push(list.len() as u8);
            for s in list.iter() {
                put_str(&mut b, s);
            }
        }
        b
    }

    pub fn key(n: u8) -> SigningKey {
        SigningKey::from_bytes(&[n; 32])
    }

    /// A chain: `links[0]` is the self-blessed root, each next link is
    /// blessed by the key of the one before. The binary form.
    pub fn chain(links: &[(&SigningKey, &str, &[Cav<'_>])]) -> Vec<u8> {
        let mut out = vec![links.len() as u8];
        let mut previous: Option<[u8; 64]> = None;
        let mut signer = links[0].0;
        for (k, ext, cavs) in links {
            let b = body(ext, &k.verifying_key().to_bytes(), cavs);
            let mut m = b"wspr certificate v1".to_vec();
            match previous {
                Some(s) => {
                    m.push(1);
                    m.extend_from_slice(&s);
                }
                None => m.push(0),
            }
            m.extend_from_slice(&b);
            let sig = signer.sign(&m).to_bytes();
            out.extend_from_slice(&b);
            out.extend_from_slice(&sig);
            previous = Some(sig);
            signer = k;
        }
        out
    }

    /// A proof of `key` by the blessings given, for the role and hash
    /// that `wspr::fuzzing::blessing` checks (`client`, 32 zero bytes).
    pub fn proof(key: &SigningKey, blessings: &[&[u8]]) -> Vec<u8> {
        let mut out = key.verifying_key().to_bytes().to_vec();
        out.push(blessings.len() as u8);
        for b in blessings {
            out.extend_from_slice(b);
        }
        let mut m = b"wspr session v2 client\0".to_vec();
        m.extend_from_slice(&[0u8; 32]);
        out.extend_from_slice(&key.sign(&m).to_bytes());
        out
    }

    /// JavaScript's messages: one pipe's worth, in an order that makes
    /// sense (serve, then call what was served, ...). Only loopback
    /// addresses: the dispatch regression test sends these to a daemon.
    pub const MESSAGES: &[(&str, &str)] = &[
        (
            "call-add",
            r#"{"data":{"inArgs":[2,3],"isStreaming":false,"method":"add","name":"demo/adder","numOutArgs":2,"timeout":5000},"id":1,"type":0}"#,
        ),
        (
            "call-divide-by-zero",
            r#"{"data":{"inArgs":[1,0],"method":"divide","name":"demo/adder","numOutArgs":2},"id":3,"type":0}"#,
        ),
        (
            "call-streaming",
            r#"{"data":{"inArgs":[],"isStreaming":true,"method":"streamingAdd","name":"demo/adder","numOutArgs":2},"id":5,"type":0}"#,
        ),
        ("stream-value", r#"{"data":7,"id":5,"type":3}"#),
        ("stream-close", r#"{"id":5,"type":4}"#),
        (
            "call-streaming-again",
            r#"{"data":{"inArgs":[],"isStreaming":true,"method":"streamingAdd","name":"demo/adder"},"id":7,"type":0}"#,
        ),
        ("cancel", r#"{"id":7,"type":17}"#),
        (
            "signature",
            r#"{"data":{"name":"demo/adder"},"id":9,"type":5}"#,
        ),
        (
            "serve",
            r#"{"data":{"name":"fuzz/server","serverId":1},"id":11,"type":1}"#,
        ),
        (
            "call-served",
            r#"{"data":{"inArgs":[1,2],"method":"add","name":"fuzz/server/obj","numOutArgs":2,"timeout":2000},"id":13,"type":0}"#,
        ),
        (
            "lookup-response",
            r#"{"data":{"cacheable":false,"err":null,"handle":1,"hasAuthorizer":true,"signature":{"add":{"inArgs":["a","b"],"isStreaming":false,"numOutArgs":2},"streamingAdd":{"inArgs":[],"isStreaming":true,"numOutArgs":2}}},"id":2,"type":11}"#,
        ),
        ("auth-response", r#"{"data":{"err":null},"id":4,"type":12}"#),
        (
            "server-response",
            r#"{"data":{"err":null,"results":[3]},"id":6,"type":2}"#,
        ),
        (
            "server-response-error",
            r#"{"data":{"err":{"iD":"app.Oops","message":"no"},"results":[]},"id":8,"type":2}"#,
        ),
        (
            "auth-response-refused",
            r#"{"data":{"err":{"id":"app.Denied","msg":"not you"}},"id":10,"type":12}"#,
        ),
        (
            "lookup-response-error",
            r#"{"data":{"err":"nothing here"},"id":12,"type":11}"#,
        ),
        ("stop-server", r#"{"data":1,"id":15,"type":6}"#),
        ("create-identity", r#"{"data":"alice","id":17,"type":10}"#),
        (
            "bless-identity",
            r#"{"data":{"caveats":[{"_type":"MethodCaveat","data":["add"]},{"_type":"PeerBlessingsCaveat","data":["wsprd/..."]}],"durationMs":60000,"handle":1,"name":"friend"},"id":19,"type":8}"#,
        ),
        ("unlink-identity", r#"{"data":1,"id":21,"type":9}"#),
        (
            "namespace-glob",
            r#"{"data":{"method":"glob","pattern":"..."},"id":23,"type":13}"#,
        ),
        (
            "namespace-mount",
            r#"{"data":{"method":"mount","name":"fuzz/elsewhere","server":"/127.0.0.1:1","ttl":5},"id":25,"type":13}"#,
        ),
        (
            "namespace-resolve",
            r#"{"data":{"method":"resolve","name":"fuzz/elsewhere/x"},"id":27,"type":13}"#,
        ),
        (
            "namespace-unmount",
            r#"{"data":{"method":"unmount","name":"fuzz/elsewhere","server":""},"id":29,"type":13}"#,
        ),
        (
            "call-rooted",
            r#"{"data":{"inArgs":[],"method":"get","name":"/@w1@127.0.0.1:1@0000000000000001@s@@/x","timeout":1000},"id":31,"type":0}"#,
        ),
        ("bad-not-json", r#"this is not json"#),
        ("bad-array", r#"[1, 2, 3]"#),
        ("bad-no-id", r#"{"type": 0, "data": {}}"#),
        (
            "bad-even-id",
            r#"{"data":{"inArgs":[1,2],"method":"add","name":"demo/adder"},"id":4,"type":0}"#,
        ),
        ("bad-unknown-type", r#"{"data":{},"id":33,"type":99}"#),
        (
            "bad-call-data",
            r#"{"data":{"method":["add"],"name":1},"id":35,"type":0}"#,
        ),
        (
            "bad-negative-timeout",
            r#"{"data":{"inArgs":[1,2],"method":"add","name":"demo/adder","timeout":-1},"id":37,"type":0}"#,
        ),
    ];

    /// Over the harness daemon's 1024-byte limit: the pipe closes (1009).
    pub fn oversized() -> String {
        let name = "x".repeat(1100);
        format!(r#"{{"id":39,"type":0,"data":{{"name":"{name}","method":"add","inArgs":[]}}}}"#)
    }
}

#[test]
#[ignore = "rewrites fuzz/seeds/; run by hand when a format changes"]
fn write_seeds() {
    use seeds::*;
    use wspr::Error;

    // RPC frames: bodies of every kind, whole frames, hellos.
    let out = Out::new("rpc_frame");
    let mut frames: Vec<(&str, Vec<u8>)> = vec![];
    let mut f = vec![];
    wire::encode_request(
        &mut f,
        &wire::Request {
            flow: 1,
            timeout_ms: 1500,
            method: "Add".into(),
            suffix: "a/b".into(),
            name: "demo/adder/a/b".into(),
            args: vec![json!(2), json!({"x": [1, "é", null, true, 2.5]})],
        },
    );
    frames.push(("request", f));
    for (n, r) in [
        ("response-ok", Ok(vec![json!(5), json!("five")])),
        ("response-error", Err(Error::bad_arg("divide by zero"))),
    ] {
        let mut f = vec![];
        wire::encode_response(&mut f, 3, &r);
        frames.push((n, f));
    }
    let mut f = vec![];
    wire::encode_item_json(&mut f, 4, br#"{"total":12}"#);
    frames.push(("item", f));
    let mut f = vec![];
    wire::encode_close_send(&mut f, 5);
    frames.push(("close-send", f));
    let mut f = vec![];
    wire::encode_cancel(&mut f, 6);
    frames.push(("cancel", f));
    let mut f = vec![];
    wire::encode_credit(&mut f, 7, 65536);
    frames.push(("credit", f));
    for (n, f) in &frames {
        out.put(&format!("body-{n}"), &f[4..]);
    }
    out.put("frame-request", &frames[0].1);
    out.put("frame-item", &frames[3].1);
    out.put(
        "hello-client",
        wire::encode_hello(wire::VERSION, wire::SessionKind::Noise as u8, 42),
    );
    out.put("hello-reply", wire::encode_hello(wire::VERSION, 0, 0));

    // Names, endpoints, and glob pattern + name pairs (the entry point
    // splits its input in the middle: pattern, then name).
    let out = Out::new("names");
    for (n, s) in [
        ("endpoint-full", "@w1@127.0.0.1:8125@000000000000002a@m@@"),
        ("endpoint-bare", "127.0.0.1:8125"),
        ("endpoint-v6", "[::1]:80"),
        ("rooted", "/@w1@127.0.0.1:8125@000000000000002a@s@@/a/b"),
        ("rooted-bare", "/127.0.0.1:8125/demo/adder"),
        ("terminal", "/127.0.0.1:8125//x"),
        ("relative", "demo/adder//x/"),
        ("glob-star", "demo/*demo/x"),
        ("glob-rest", ".../za/b/z"),
        ("glob-mid", "a/.../?a/b/c/d"),
        ("glob-wild", "*/x*yab/xzy"),
    ] {
        out.put(n, s);
    }

    // JavaScript's messages, for both the decoder and the live daemon.
    for target in ["js_message", "dispatch"] {
        let out = Out::new(target);
        for (n, s) in MESSAGES {
            out.put(&format!("{n}.json"), s);
        }
        out.put("bad-oversized.json", oversized());
    }

    // Lookup replies.
    let out = Out::new("lookup_reply");
    for (n, v) in [
        (
            "found",
            json!({"handle": 1, "hasAuthorizer": false, "cacheable": true, "err": null, "signature": {
                "add": {"inArgs": ["a", "b"], "numOutArgs": 2, "isStreaming": false},
                "streamingAdd": {"inArgs": [], "numOutArgs": 2, "isStreaming": true},
            }}),
        ),
        ("no-object", json!({"handle": -1})),
        (
            "error",
            json!({"err": {"id": "app.NotHere", "msg": "no such object"}}),
        ),
        (
            "error-other-spelling",
            json!({"err": {"iD": "app.X", "message": "y"}}),
        ),
        ("error-string", json!({"err": "just a string"})),
        (
            "authorizer",
            json!({"handle": 3, "hasAuthorizer": true, "signature": {"": {"inArgs": [], "numOutArgs": 1}}}),
        ),
    ] {
        out.put(&format!("{n}.json"), v.to_string());
    }

    // Blessings and proofs, with fixed keys.
    let out = Out::new("blessing");
    let (root, phone, app) = (key(1), key(2), key(3));
    let alice = chain(&[(&root, "alice", &[])]);
    let long = chain(&[
        (&root, "alice", &[]),
        (
            &phone,
            "phone",
            &[
                Cav::Method(&["Add", "streamingAdd"]),
                Cav::Expiry(4_102_444_800_000),
            ],
        ),
        (&app, "app", &[Cav::Peer(&["wsprd/...", "bob", "..."])]),
    ]);
    let app_self = chain(&[(&app, "app", &[])]);
    out.put("blessing-root", &alice);
    out.put("blessing-chain", &long);
    out.put("proof-one", proof(&root, &[&alice]));
    out.put("proof-two", proof(&app, &[&long, &app_self]));
    // The library reads them back as written.
    let (decoded, _) = Blessing::decode(&long).unwrap();
    let mut again = vec![];
    decoded.encode(&mut again);
    assert_eq!(
        again, long,
        "the seeds encode blessings as the library does"
    );
    assert_eq!(decoded.name(), "alice/phone/app");

    // The handshake: a client's first Noise message, then a record the
    // server cannot open (the session keys depend on its random key).
    let out = Out::new("handshake");
    let mut hs = snow::Builder::new("Noise_NN_25519_ChaChaPoly_BLAKE2s".parse().unwrap())
        .build_initiator()
        .unwrap();
    let mut buf = vec![0u8; 1024];
    let n = hs.write_message(&[], &mut buf).unwrap();
    let mut first = (n as u16).to_be_bytes().to_vec();
    first.extend_from_slice(&buf[..n]);
    out.put("first-message", &first);
    let mut two = first.clone();
    two.extend_from_slice(&(proof(&root, &[&alice]).len() as u16 + 16).to_be_bytes());
    two.extend_from_slice(&proof(&root, &[&alice]));
    two.extend_from_slice(&[0u8; 16]);
    out.put("first-message-and-proof", &two);
    out.put("bad-short-record", [0u8, 40, 1, 2, 3]);
}
