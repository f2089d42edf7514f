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
    let _ = write!(s, "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{extra}\r\n");
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
    c.args([
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--mounttable-listen",
        "127.0.0.1:0",
        "--demo",
    ]);
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

/// A request's status line, headers (lower-case names) and body.
fn request(addr: SocketAddr, method: &str, path: &str) -> (u16, Vec<(String, String)>, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let _ = write!(s, "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    let (head, body) = out.split_once("\r\n\r\n").unwrap_or((&out, ""));
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    (status, headers, body.to_string())
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

#[test]
fn head_and_cors_on_the_static_files() {
    let d = daemon(|_| {});
    let a = d.http_addr();
    for (path, public) in [
        ("/", false),
        ("/wspr.js", true),
        ("/wspr.d.ts", true),
        ("/health", false),
        ("/metrics", false),
        ("/docs/javascript.md", false),
        ("/docs/protocol.md", false),
    ] {
        let (status, headers, body) = request(a, "GET", path);
        assert_eq!(status, 200, "GET {path}");
        assert!(!body.is_empty());
        let cors = header(&headers, "access-control-allow-origin");
        assert_eq!(cors, public.then_some("*"), "{path}: {headers:?}");
        let (status, head_headers, head_body) = request(a, "HEAD", path);
        assert_eq!(status, 200, "HEAD {path}");
        assert_eq!(head_body, "", "HEAD {path} has no body");
        assert_eq!(
            header(&head_headers, "content-type"),
            header(&headers, "content-type")
        );
        if path != "/health" && path != "/metrics" {
            assert_eq!(
                header(&head_headers, "content-length"),
                Some(body.len().to_string().as_str()),
                "HEAD {path} says how long GET is"
            );
        }
    }
    let (_, headers, body) = request(a, "GET", "/wspr.d.ts");
    assert_eq!(
        header(&headers, "content-type"),
        Some("application/typescript; charset=utf-8")
    );
    assert!(body.contains("export declare function connect("));
    let (status, headers, _) = request(a, "POST", "/wspr.js");
    assert_eq!(status, 405);
    assert_eq!(header(&headers, "allow"), Some("GET, HEAD"));
    assert_eq!(
        request(a, "HEAD", "/ws").0,
        405,
        "the websocket is GET only"
    );
    assert_eq!(request(a, "HEAD", "/nope").0, 404);
}

#[test]
fn metrics_count_pipes_calls_and_limits() {
    let d = daemon(|c| {
        c.serve_demo = true;
        c.max_flows_per_pipe = 1;
    });
    let a = d.http_addr();
    let mut js = Js::connect(a);
    js.call("demo/adder", "add", serde_json::json!([2, 3]), false);
    assert_eq!(js.recv().kind, FINAL);
    js.call("demo/adder", "divide", serde_json::json!([1, 0]), false);
    assert_eq!(js.recv().kind, ERROR);
    // Two calls at once on a pipe that takes one: the limit.
    let slow = js.call("demo/adder", "streamingAdd", serde_json::json!([]), true);
    let refused = js.call("demo/adder", "add", serde_json::json!([1, 1]), false);
    let m = js.recv();
    assert_eq!((m.id, m.kind), (refused, ERROR), "{m:?}");
    js.send(slow, 4, Value::Null);
    while js.recv().kind != FINAL {}

    let (status, headers, body) = request(a, "GET", "/metrics");
    assert_eq!(status, 200);
    assert_eq!(
        header(&headers, "content-type"),
        Some("application/openmetrics-text; version=1.0.0; charset=utf-8")
    );
    let value = |series: &str| -> f64 {
        body.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or_else(|| panic!("{series} missing from:\n{body}"))
    };
    assert_eq!(value("wsprd_pipes"), 1.0);
    assert_eq!(value("wsprd_calls_total{outcome=\"ok\"}"), 2.0);
    assert_eq!(value("wsprd_calls_total{outcome=\"BadArg\"}"), 1.0);
    assert_eq!(value("wsprd_call_duration_seconds_count"), 3.0);
    assert_eq!(
        value("wsprd_call_duration_seconds_bucket{le=\"+Inf\"}"),
        3.0
    );
    assert_eq!(
        value("wsprd_limits_reached_total{limit=\"flowsPerPipe\"}"),
        1.0
    );
    assert!(value("wsprd_pipes_opened_total") >= 1.0);
    assert!(value("wsprd_threads") > 0.0);
    // Every line is a comment or `series value`, and the exposition ends
    // as OpenMetrics says.
    for l in body.lines().filter(|l| !l.starts_with('#')) {
        let (series, v) = l.rsplit_once(' ').unwrap_or_else(|| panic!("{l}"));
        assert!(series.starts_with("wsprd_"), "{l}");
        assert!(v.parse::<f64>().is_ok(), "{l}");
    }
    assert_eq!(body.lines().last(), Some("# EOF"));
}
