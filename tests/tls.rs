//! Pipes over TLS: calls and served objects over `wss://`, the HTTP paths
//! over `https://`, handshakes that fail (plain HTTP, a name the
//! certificate lacks, garbage, silence) while a pipe goes on being served,
//! key updates, the close frame and close_notify on shutdown, the
//! certificate reloaded on SIGHUP (a bad one keeps the old), the Host a
//! client asked for by name, and no plain listening beyond loopback
//! without saying so.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use wspr::error::ids;

use common::js::*;
use common::tls::*;
use common::*;

/// A daemon serving the demo over TLS with `cert`.
fn tls_daemon(cert: &TestCert) -> wspr::wsprd::Daemon {
    daemon(|c| {
        c.serve_demo = true;
        c.tls = Some(tls_config(cert));
    })
}

fn add(js: &mut Js, a: i64, b: i64) -> Msg {
    let id = js.call("demo/adder", "add", json!([a, b]), false);
    let m = js.recv();
    assert_eq!(m.id, id, "{m:?}");
    m
}

fn assert_adds(js: &mut Js) {
    let m = add(js, 19, 23);
    assert_eq!((m.kind, &m.message), (FINAL, &json!([42])), "{m:?}");
}

/// An HTTPS request for `path` with `host` as SNI and Host; the response.
fn https_get(
    addr: SocketAddr,
    config: &Arc<rustls::ClientConfig>,
    host: &str,
    header_host: &str,
    path: &str,
) -> String {
    let tcp = TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let name = rustls::pki_types::ServerName::try_from(host.to_string()).unwrap();
    let conn = rustls::ClientConnection::new(config.clone(), name).unwrap();
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    write!(
        tls,
        "GET {path} HTTP/1.1\r\nHost: {header_host}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = Vec::new();
    // (A close_notify ends it; so may a reset after it.)
    let _ = tls.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

#[test]
fn a_pipe_over_tls_calls_and_serves_and_https_answers() {
    let cert = make_cert("pipe", &["localhost"]);
    let d = tls_daemon(&cert);
    assert!(d.uses_tls());
    let config = client_config(&[&cert]);
    let mut js = Js::connect_tls(
        d.http_addr(),
        "localhost",
        &config,
        Some("https://localhost:3000"),
    )
    .unwrap();
    assert_adds(&mut js);
    // A served object, called by a native caller.
    js.serve("tls/adder", 1);
    let native = native_client(&d);
    let call = native
        .start_call(
            "tls/adder",
            "add",
            vec![json!(2), json!(40)],
            Default::default(),
        )
        .unwrap();
    js.answer_next_lookup(1);
    let r = js.recv();
    assert_eq!(r.kind, SERVER_REQUEST);
    js.send(r.id, 2, json!({"results": [42], "err": null}));
    assert_eq!(call.finish().unwrap(), vec![json!(42)]);
    // A big message each way (records split and joined).
    let big = "x".repeat(200_000);
    let id = js.id();
    js.send(id, 13, json!({"method": "resolve", "name": big}));
    let m = js.recv();
    assert_eq!((m.id, m.kind), (id, ERROR), "{m:?}");
    // The HTTP paths.
    let health = https_get(d.http_addr(), &config, "localhost", "localhost", "/health");
    assert!(health.starts_with("HTTP/1.1 200"), "{health}");
    assert!(health.contains("\"pipes\":1"), "{health}");
    let lib = https_get(d.http_addr(), &config, "localhost", "localhost", "/wspr.js");
    assert!(
        lib.starts_with("HTTP/1.1 200") && lib.contains("export async function connect"),
        "{lib:.200}"
    );
    // TLS 1.2 is offered too.
    let v12 = client_config_versions(&[&cert], &[&rustls::version::TLS12]);
    let mut old = Js::connect_tls(d.http_addr(), "localhost", &v12, None).unwrap();
    assert_adds(&mut old);
}

#[test]
fn failed_handshakes_leave_the_daemon_serving_a_pipe() {
    let cert = make_cert("failures", &["localhost"]);
    let d = daemon(|c| {
        c.serve_demo = true;
        c.tls = Some(tls_config(&cert));
        c.setup_timeout = Duration::from_millis(500);
    });
    let addr = d.http_addr();
    let config = client_config(&[&cert]);
    let mut good = Js::connect_tls(addr, "localhost", &config, None).unwrap();
    assert_adds(&mut good);

    // Plain HTTP to the TLS port: told to use https, in plain text.
    let mut plain = TcpStream::connect(addr).unwrap();
    plain
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    plain
        .write_all(b"GET /health HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .unwrap();
    let mut answer = String::new();
    let _ = plain.read_to_string(&mut answer);
    assert!(
        answer.starts_with("HTTP/1.1 400") && answer.contains("https://"),
        "{answer}"
    );
    assert_adds(&mut good);

    // A plain websocket to the TLS port fails the same way.
    assert!(Js::connect_with(addr, None).is_err());
    assert_adds(&mut good);

    // A name the certificate lacks: the client refuses the handshake.
    let e = Js::connect_tls(addr, "wrong.example", &config, None)
        .err()
        .expect("refused");
    assert!(
        e.to_string().contains("certificate") || e.to_string().contains("Certificate"),
        "{e}"
    );
    assert_adds(&mut good);

    // A client that does not trust the certificate.
    let other = make_cert("other", &["localhost"]);
    let e = Js::connect_tls(addr, "localhost", &client_config(&[&other]), None)
        .err()
        .expect("refused");
    assert!(e.to_string().to_lowercase().contains("certificate"), "{e}");
    assert_adds(&mut good);

    // Garbage that looks like a TLS record, and a handshake that stops
    // half-way: closed, the second at the setup time.
    for bytes in [
        vec![0x16, 0x03, 0x01, 0x00, 0x05, 1, 2, 3, 4, 5],
        vec![0x16, 0x03, 0x01, 0x02, 0x00, 1],
        vec![0xff; 64],
    ] {
        let mut bad = TcpStream::connect(addr).unwrap();
        bad.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        bad.write_all(&bytes).unwrap();
        // Closed by the daemon (an alert, then the end), at the latest at
        // the setup time, long before this side's 10 s.
        assert!(closed_by_daemon(&mut bad), "{bytes:?}");
        assert_adds(&mut good);
    }
    // A handshake that stops half-way counts as setting up, until it is
    // closed at the setup time.
    let mut stalled = TcpStream::connect(addr).unwrap();
    stalled
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stalled
        .write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 1, 2, 3])
        .unwrap();
    wait_until(
        Duration::from_secs(5),
        "the stalled handshake counted",
        || d.health()["settingUp"]["http"] == 1,
    );
    assert!(closed_by_daemon(&mut stalled));
    // Connections that never say anything are closed at the setup time.
    let mut silent = TcpStream::connect(addr).unwrap();
    silent
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    assert!(closed_by_daemon(&mut silent));
    assert_adds(&mut good);
    wait_until(
        Duration::from_secs(5),
        "no connection left setting up",
        || d.health()["settingUp"]["http"] == 0,
    );
    assert_eq!(d.health()["pipes"], 1);
}

/// Whether the daemon ends `s` (reads reach its end, or a reset) before
/// the socket's read timeout.
fn closed_by_daemon(s: &mut TcpStream) -> bool {
    let mut sink = [0u8; 1024];
    loop {
        match s.read(&mut sink) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) => {
                return !matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                );
            }
        }
    }
}

#[test]
fn key_updates_of_the_client_are_answered_in_order() {
    let cert = make_cert("keyupdate", &["localhost"]);
    let d = tls_daemon(&cert);
    let config = client_config(&[&cert]);
    let mut js = Js::connect_tls(d.http_addr(), "localhost", &config, None).unwrap();
    for round in 0..20 {
        // The client changes its keys and asks the daemon to change its
        // own: the daemon's KeyUpdate must go out before anything it
        // encrypts with the new keys.
        match js.ws.get_mut() {
            Conn::Tls(s) => s.conn.refresh_traffic_keys().unwrap(),
            Conn::Plain(_) => unreachable!(),
        }
        let m = add(&mut js, round, 1);
        assert_eq!(
            (m.kind, &m.message),
            (FINAL, &json!([round + 1])),
            "round {round}: {m:?}"
        );
    }
}

#[test]
fn shutdown_sends_the_close_frame_and_close_notify() {
    let cert = make_cert("close", &["localhost"]);
    let d = tls_daemon(&cert);
    let config = client_config(&[&cert]);
    let mut pipes: Vec<Js> = (0..4)
        .map(|_| Js::connect_tls(d.http_addr(), "localhost", &config, None).unwrap())
        .collect();
    for js in &mut pipes {
        assert_adds(js);
    }
    d.shutdown();
    for mut js in pipes {
        assert_eq!(js.close_code(), Some(1001));
        // Then TLS ends cleanly: close_notify, not a cut.
        let Conn::Tls(s) = js.ws.get_mut() else {
            unreachable!()
        };
        let mut rest = Vec::new();
        let end = s.read_to_end(&mut rest);
        assert!(end.is_ok(), "no close_notify: {end:?}");
    }
}

#[test]
fn the_host_a_client_asked_for_by_name_is_this_daemons() {
    let cert = make_cert("host", &["wspr.test", "localhost"]);
    let d = tls_daemon(&cert);
    let config = client_config(&[&cert]);
    let ok = https_get(
        d.http_addr(),
        &config,
        "wspr.test",
        "wspr.test:8443",
        "/health",
    );
    assert!(ok.starts_with("HTTP/1.1 200"), "{ok}");
    // Another Host than the name asked for is still refused (DNS
    // rebinding), as without TLS.
    let refused = https_get(
        d.http_addr(),
        &config,
        "wspr.test",
        "evil.example",
        "/health",
    );
    assert!(refused.starts_with("HTTP/1.1 403"), "{refused}");
    // A websocket from a page of that host, allowed as an origin.
    let d2 = daemon(|c| {
        c.tls = Some(tls_config(&cert));
        c.serve_demo = true;
        c.allowed_origins = vec!["https://app.wspr.test".into()];
    });
    let mut js = Js::connect_tls(
        d2.http_addr(),
        "wspr.test",
        &config,
        Some("https://app.wspr.test"),
    )
    .unwrap();
    assert_adds(&mut js);
}

#[test]
fn listening_beyond_loopback_in_the_clear_must_be_asked_for() {
    let mut c = wspr::wsprd::Config::default();
    c.listen = "0.0.0.0:0".into();
    let e = c.validate().unwrap_err();
    assert_eq!(e.id(), ids::BAD_ARG);
    assert!(
        e.msg().contains("--insecure-listen") && e.msg().contains("--tls-cert"),
        "{e}"
    );
    c.insecure_listen = true;
    c.validate().unwrap();
    let cert = make_cert("any", &["localhost"]);
    c.insecure_listen = false;
    c.tls = Some(tls_config(&cert));
    c.validate().unwrap();
    // A certificate that cannot be read, or a key that is not its own.
    let other = make_cert("mismatch", &["localhost"]);
    for (tls, says) in [
        (
            wspr::wsprd::TlsConfig::new(cert.dir.join("none.pem"), &cert.key),
            "none.pem",
        ),
        (
            wspr::wsprd::TlsConfig::new(&cert.cert, &other.key),
            "not the key",
        ),
        (
            wspr::wsprd::TlsConfig::new(&cert.key, &cert.key),
            "no certificate",
        ),
    ] {
        let e = daemon_err(|c| c.tls = Some(tls.clone()));
        assert_eq!(e.id(), ids::BAD_ARG, "{e}");
        assert!(e.msg().contains(says), "{e}");
    }
}

fn daemon_err(f: impl FnOnce(&mut wspr::wsprd::Config)) -> wspr::Error {
    let mut c = wspr::wsprd::Config::default();
    c.listen = "127.0.0.1:0".into();
    f(&mut c);
    wspr::wsprd::Daemon::spawn(c).err().expect("refused")
}

/// Whether a handshake with the daemon at `addr` succeeds for a client
/// that trusts `cert` (a new client each time: no session to resume).
fn handshake_ok(addr: SocketAddr, cert: &TestCert) -> bool {
    let config = client_config(&[cert]);
    let tcp = TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let mut conn = rustls::ClientConnection::new(config.clone(), name).unwrap();
    let mut tcp = tcp;
    while conn.is_handshaking() {
        if conn.complete_io(&mut tcp).is_err() {
            return false;
        }
    }
    true
}

#[test]
fn sighup_reloads_the_certificate_and_a_bad_one_keeps_the_old() {
    let first = make_cert("reload", &["localhost"]);
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
        "--tls-cert",
    ]);
    c.arg(&first.cert).arg("--tls-key").arg(&first.key);
    let p = Proc::spawn(c);
    let line = p.line();
    assert!(line.starts_with("wsprd listening on https://"), "{line}");
    let addr: SocketAddr = line.rsplit("https://").next().unwrap().parse().unwrap();
    let _root = p.line();
    let trusts_first = client_config(&[&first]);
    let mut js = Js::connect_tls(addr, "localhost", &trusts_first, None).unwrap();
    assert_adds(&mut js);

    // A new certificate in the same files: SIGHUP, and new connections
    // get it; the pipe that is open goes on.
    let second = write_cert(&first.dir, &["localhost"]);
    let trusts_second = client_config(&[&second]);
    p.signal("-HUP");
    wait_until(Duration::from_secs(10), "the new certificate", || {
        handshake_ok(addr, &second)
    });
    assert!(!handshake_ok(addr, &first));
    assert_adds(&mut js);

    // A broken file: the one in use stays, and the log says why.
    std::fs::write(&first.key, "not a key").unwrap();
    p.signal("-HUP");
    wait_until(
        Duration::from_secs(10),
        "the log of the refused reload",
        || p.stderr.lock().unwrap().contains("not reloaded"),
    );
    assert!(handshake_ok(addr, &second));
    let mut js2 = Js::connect_tls(addr, "localhost", &trusts_second, None).unwrap();
    assert_adds(&mut js2);
    assert_adds(&mut js);
}

#[test]
fn a_silent_tls_pipe_is_pinged_then_closed_and_a_busy_one_is_not() {
    let cert = make_cert("keepalive", &["localhost"]);
    let d = daemon(|c| {
        c.serve_demo = true;
        c.tls = Some(tls_config(&cert));
        // Past the reader's hold of its buffer (1 s): it waits without one.
        c.keepalive = Duration::from_millis(1500);
    });
    let config = client_config(&[&cert]);
    let mut silent = Js::connect_tls(d.http_addr(), "localhost", &config, None).unwrap();
    let mut busy = Js::connect_tls(d.http_addr(), "localhost", &config, None).unwrap();
    // The busy pipe calls now and then (across its reader's holds) until
    // the silent one is closed; it is never closed itself.
    wait_until(Duration::from_secs(15), "the silent pipe closed", || {
        assert_adds(&mut busy);
        std::thread::sleep(Duration::from_millis(400));
        d.health()["pipes"] == 1
    });
    silent
        .ws
        .get_ref()
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let (mut pinged, mut code) = (false, None);
    while let Ok(m) = silent.ws.read() {
        match m {
            tungstenite::Message::Ping(_) => pinged = true,
            tungstenite::Message::Close(f) => {
                code = f.map(|f| u16::from(f.code));
                break;
            }
            _ => {}
        }
    }
    assert!(pinged, "no ping before the close");
    assert_eq!(code, Some(1001));
    assert_adds(&mut busy);
}
