//! Deadlines, cancel, dead servers and bad bytes on the RPC port.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Sender, unbounded};
use serde_json::{Value, json};
use wspr::error::ids;
use wspr::rpc::{
    CallOptions, Dispatcher, Invocation, Invoker, Lookup, Pending, RawSession, Server, ServerCall,
    ServerEvent, Signature, Step,
};
use wspr::{Error, Result};

use common::*;

/// Reports what its calls saw.
struct Probe {
    seen: Sender<String>,
}

impl Dispatcher for Probe {
    fn lookup(&self, call: Pending) -> Step<Pending> {
        call.blocking(|_call| {
            Ok(Lookup {
                invoker: Arc::new(ProbeInvoker {
                    seen: self.seen.clone(),
                }),
                authorizer: None,
            })
        })
    }
}

struct ProbeInvoker {
    seen: Sender<String>,
}

impl Invoker for ProbeInvoker {
    fn invoke(&self, call: Invocation) -> Step<Invocation> {
        call.blocking(|call, _args| {
            let method = call.method().to_string();
            let method = method.as_str();
            match method {
                "Deadline" => {
                    let left = call
                        .deadline()
                        .map(|d| d.saturating_duration_since(Instant::now()).as_millis() as u64);
                    Ok(vec![json!(left)])
                }
                "Block" => {
                    let _ = self.seen.send("started".into());
                    let limit = Instant::now() + Duration::from_secs(30);
                    loop {
                        match call.events().recv_deadline(limit) {
                            Ok(ServerEvent::Cancelled) => {
                                let _ = self.seen.send("cancelled".into());
                                return Err(Error::aborted("cancelled"));
                            }
                            Ok(_) => continue,
                            Err(_) => {
                                let _ = self.seen.send("never cancelled".into());
                                return Ok(vec![]);
                            }
                        }
                    }
                }
                _ => Err(Error::no_exist(method.to_string())),
            }
        })
    }
    fn signature(&self, _call: &ServerCall) -> Result<Signature> {
        Ok(Signature::new())
    }
}

fn probe() -> (
    Server,
    wspr::rpc::Client,
    crossbeam_channel::Receiver<String>,
) {
    // (No mount table: the probe is called by its endpoint.)
    let client = wspr::rpc::Client::new(wspr::rpc::Namespace::new(vec![])).unwrap();
    let (tx, rx) = unbounded();
    let server =
        Server::listen("127.0.0.1:0", Arc::new(Probe { seen: tx }), client.clone()).unwrap();
    (server, client, rx)
}

#[test]
fn the_callers_deadline_reaches_the_server() {
    let (server, client, _) = probe();
    let got = client
        .call(
            &server.name(),
            "Deadline",
            vec![],
            CallOptions::timeout(Duration::from_secs(5)),
        )
        .unwrap();
    let left = got[0].as_u64().expect("the server saw a deadline");
    assert!((4000..=5000).contains(&left), "server saw {left} ms left");
    let got = client
        .call(&server.name(), "Deadline", vec![], CallOptions::default())
        .unwrap();
    assert_eq!(got, vec![Value::Null], "no deadline given, none seen");
}

#[test]
fn a_passed_deadline_is_timeout_and_cancels_the_server() {
    let (server, client, seen) = probe();
    let err = client
        .call(
            &server.name(),
            "Block",
            vec![],
            CallOptions::timeout(Duration::from_millis(200)),
        )
        .unwrap_err();
    assert_eq!(err.id(), ids::TIMEOUT, "{err}");
    assert_eq!(
        seen.recv_timeout(Duration::from_secs(10)).unwrap(),
        "started"
    );
    assert_eq!(
        seen.recv_timeout(Duration::from_secs(10)).unwrap(),
        "cancelled"
    );
}

#[test]
fn a_cancel_reaches_the_invoker() {
    let (server, client, seen) = probe();
    let call = client
        .start_call(&server.name(), "Block", vec![], CallOptions::default())
        .unwrap();
    assert_eq!(
        seen.recv_timeout(Duration::from_secs(10)).unwrap(),
        "started"
    );
    call.canceller().cancel();
    assert_eq!(
        seen.recv_timeout(Duration::from_secs(10)).unwrap(),
        "cancelled"
    );
    let err = call.finish().unwrap_err();
    assert_eq!(err.id(), ids::ABORTED);
}

#[test]
fn a_server_killed_mid_call_gives_an_error_not_a_hang() {
    let (_mt, client) = mount_table();
    let mut c = wsprd();
    c.args([
        "demo",
        "--namespace-root",
        &client.namespace().roots()[0],
        "--name",
        "victim",
    ]);
    let mut demo = Proc::spawn(c);
    demo.line();
    let mut call = client
        .start_call("victim", "StreamingAdd", vec![], CallOptions::default())
        .unwrap();
    call.send(json!(1)).unwrap();
    assert_eq!(call.recv().unwrap(), Some(json!(1)));
    demo.signal("-KILL");
    demo.wait();
    // No deadline on the call: only the connection's end can finish it.
    let (tx, rx) = crossbeam_channel::bounded(1);
    std::thread::spawn(move || {
        let r = call.recv().and_then(|_| call.finish());
        let _ = tx.send(r);
    });
    let result = rx
        .recv_timeout(Duration::from_secs(10))
        .expect("the call hung after its server died");
    let err = result.unwrap_err();
    assert_eq!(err.id(), ids::ABORTED, "{err}");
}

fn raw(server: &Server) -> TcpStream {
    let s = TcpStream::connect(server.endpoint().address()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s
}

/// Reads until the server closes the connection; what it sent.
fn read_to_close(mut s: TcpStream) -> Vec<u8> {
    let mut out = vec![];
    match s.read_to_end(&mut out) {
        Ok(_) => out,
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => out,
        Err(e) => panic!("the server did not close the connection: {e}"),
    }
}

fn hello(version: u16, rid: u64) -> Vec<u8> {
    let mut h = b"WSPR".to_vec();
    h.extend_from_slice(&version.to_be_bytes());
    h.push(0);
    h.extend_from_slice(&rid.to_be_bytes());
    h
}

#[test]
fn bad_bytes_close_one_connection_and_the_server_goes_on() {
    capture_logs();
    let (_mt, client) = mount_table();
    let demo = Server::listen("127.0.0.1:0", Arc::new(wspr::demo::Demo), client.clone()).unwrap();
    let rid = demo.endpoint().routing_id();
    let add = || {
        client
            .call(
                &demo.name(),
                "Add",
                vec![json!(2), json!(3)],
                CallOptions::default(),
            )
            .unwrap()
    };
    // A client that stays connected throughout.
    assert_eq!(add(), vec![json!(5)]);

    // Garbage instead of a hello.
    let mut s = raw(&demo);
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    assert!(read_to_close(s).is_empty());
    wait_until(Duration::from_secs(5), "a logged refusal", || {
        logged(&["refused", "does not speak the wspr protocol"])
    });
    assert_eq!(add(), vec![json!(5)]);

    // A version this server does not speak: it answers with its own
    // version and closes.
    let mut s = raw(&demo);
    s.write_all(&hello(99, rid)).unwrap();
    let reply = read_to_close(s);
    assert_eq!(&reply[..4], b"WSPR");
    assert_eq!(reply[6], 1, "status BadVersion");
    wait_until(Duration::from_secs(5), "a logged version error", || {
        logged(&["refused", "version 99"])
    });
    assert_eq!(add(), vec![json!(5)]);

    // Frames in the clear are not offered: session kind 0 is refused; so
    // is kind 1, the session before the hellos were bound to it.
    for kind in [0, 1] {
        let mut s = raw(&demo);
        let mut h = hello(1, rid);
        h[6] = kind;
        s.write_all(&h).unwrap();
        let reply = read_to_close(s);
        assert_eq!(reply[6], 3, "status BadSession for kind {kind}");
    }

    // An authenticated peer sends a frame that says it is 2 GiB long.
    let principal = client.principal();
    let mut s = RawSession::connect(demo.endpoint().address(), rid, &principal).unwrap();
    s.send(&0x7fff_ffffu32.to_be_bytes()).unwrap();
    assert!(s.closed_by_peer(Duration::from_secs(10)));
    wait_until(Duration::from_secs(5), "a logged oversized frame", || {
        logged(&["over the limit"])
    });

    // And a frame of an unknown kind.
    let mut s = RawSession::connect(demo.endpoint().address(), rid, &principal).unwrap();
    s.send(&[0, 0, 0, 9, 200, 0, 0, 0, 0, 0, 0, 0, 1]).unwrap();
    assert!(s.closed_by_peer(Duration::from_secs(10)));
    wait_until(Duration::from_secs(5), "a logged unknown frame", || {
        logged(&["unknown frame kind 200"])
    });

    // A routing id nobody has.
    let mut s = raw(&demo);
    let mut h = hello(1, rid ^ 0xff00);
    h[6] = wspr::rpc::wire::SessionKind::Noise as u8;
    s.write_all(&h).unwrap();
    let reply = read_to_close(s);
    assert_eq!(reply[6], 2, "status NoSuchServer");

    assert_eq!(add(), vec![json!(5)]);
    assert_eq!(
        client.connections(),
        1,
        "one connection, kept open, served every call"
    );
}

#[test]
fn a_client_that_trickles_its_setup_is_cut_off_at_the_handshake_deadline() {
    let (_mt, client) = mount_table();
    let mut config = wspr::rpc::ServerConfig::default();
    config.handshake_timeout = Duration::from_millis(300);
    let demo =
        Server::listen_with("127.0.0.1:0", Arc::new(wspr::demo::Demo), client, config).unwrap();
    // A hello, a byte every 100 ms: each byte comes well within the
    // setup time, the whole hello (1.5 s) well after it.
    let mut s = raw(&demo);
    let mut sent = 0;
    for b in hello(wspr::rpc::wire::VERSION, demo.endpoint().routing_id()) {
        if s.write_all(&[b]).is_err() {
            break;
        }
        sent += 1;
        std::thread::sleep(Duration::from_millis(100));
    }
    // The server never answered the hello: it closed the connection.
    assert!(read_to_close(s).is_empty(), "after {sent} bytes");
}

#[test]
fn an_overlong_method_name_is_refused_before_it_is_sent() {
    let (_mt, client) = mount_table();
    let demo = Server::listen("127.0.0.1:0", Arc::new(wspr::demo::Demo), client.clone()).unwrap();
    let method = "A".repeat(wspr::rpc::wire::MAX_STR + 1);
    let err = client
        .call(&demo.name(), &method, vec![], CallOptions::default())
        .unwrap_err();
    assert_eq!(err.id(), ids::BAD_ARG, "{err}");
    // The connection is fine.
    let sum = client.call(
        &demo.name(),
        "Add",
        vec![json!(1), json!(2)],
        CallOptions::default(),
    );
    assert_eq!(sum.unwrap(), vec![json!(3)]);
}
