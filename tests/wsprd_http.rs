//! The HTTP side: the Origin policy, /health, other paths, and the
//! `wsprd serve` binary.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use serde_json::Value;

use common::js::*;
use common::*;

fn get(addr: SocketAddr, path: &str, extra: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    // A server that answers early may stop reading; the answer counts.
    let _ = write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\n{extra}\r\n");
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    let status = out
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = out.split("\r\n\r\n").nth(1).unwrap_or("").to_string();
    (status, body)
}

fn ws_status(addr: SocketAddr, origin: Option<&str>) -> u16 {
    match Js::connect_with(addr, origin) {
        Ok(_) => 101,
        Err(tungstenite::Error::Http(r)) => r.status().as_u16(),
        Err(e) => panic!("{e}"),
    }
}

#[test]
fn the_origin_policy() {
    let d = daemon(|_| {});
    let a = d.http_addr();
    assert_eq!(ws_status(a, None), 101, "no Origin: a program, accepted");
    assert_eq!(ws_status(a, Some("http://localhost:3000")), 101);
    assert_eq!(ws_status(a, Some("https://127.0.0.1")), 101);
    assert_eq!(ws_status(a, Some("http://[::1]:9")), 101);
    assert_eq!(ws_status(a, Some("https://evil.example")), 403);
    assert_eq!(ws_status(a, Some("http://localhost.evil.example")), 403);

    let d = daemon(|c| c.allowed_origins = vec!["https://app.example".into()]);
    assert_eq!(ws_status(d.http_addr(), Some("https://app.example")), 101);
    assert_eq!(ws_status(d.http_addr(), Some("https://evil.example")), 403);
    let d = daemon(|c| c.allowed_origins = vec!["*".into()]);
    assert_eq!(ws_status(d.http_addr(), Some("https://evil.example")), 101);
}

#[test]
fn health_and_other_paths() {
    let d = daemon(|_| {});
    let (status, body) = get(d.http_addr(), "/health", "");
    assert_eq!(status, 200);
    let h: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(h["namespaceRoots"], serde_json::json!(d.namespace_roots()));
    assert_eq!(h["pipes"], 0);
    let _js = Js::connect(d.http_addr());
    wait_until(Duration::from_secs(5), "the pipe to count", || {
        let (_, body) = get(d.http_addr(), "/health", "");
        serde_json::from_str::<Value>(&body).unwrap()["pipes"] == 1
    });
    assert!(h["threads"].as_u64().unwrap() > 0);
    assert_eq!(get(d.http_addr(), "/nope", "").0, 404);
    assert_eq!(get(d.http_addr(), "/ws", "").0, 400, "not an upgrade");
    let huge = format!("X-Big: {}\r\n", "a".repeat(20_000));
    assert_eq!(get(d.http_addr(), "/health", &huge).0, 431);
}

#[test]
fn wsprd_serve_starts_prints_and_stops_on_sigterm() {
    let mut c = wsprd();
    c.args(["serve", "--listen", "127.0.0.1:0", "--demo"]);
    let mut p = Proc::spawn(c);
    let first = p.line();
    let addr: SocketAddr = first
        .rsplit("http://")
        .next()
        .unwrap()
        .parse()
        .unwrap_or_else(|_| panic!("{first}"));
    let root = p.line();
    assert!(
        root.starts_with("name space root /@w1@127.0.0.1:"),
        "{root}"
    );
    let mut js = Js::connect(addr);
    let id = js.call("demo/adder", "add", serde_json::json!([2, 3]), false);
    assert_eq!(js.recv().message, serde_json::json!([5]));
    let _ = id;
    p.signal("-TERM");
    assert_eq!(p.wait(), Some(0));
    // The pipe was closed with 1001.
    assert_eq!(js.close_code(), Some(1001));
    let log = p.stderr.lock().unwrap().clone();
    assert!(
        log.contains("pipe 1 opened") && log.contains("pipe 1 closed"),
        "{log}"
    );
}
