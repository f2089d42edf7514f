//! `make bench`, RPC runtime part: a raw TCP echo on loopback (the floor)
//! and native calls, sequential and with 64 in flight.

mod util;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;

use serde_json::json;
use util::*;
use wspr::rpc::{CallOptions, Client, Namespace, Server};

fn tcp_echo_floor(n: usize) -> Row {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let server = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        s.set_nodelay(true).unwrap();
        let mut buf = [0u8; 64];
        while s.read_exact(&mut buf).is_ok() {
            if s.write_all(&buf).is_err() {
                break;
            }
        }
    });
    let mut c = TcpStream::connect(addr).unwrap();
    c.set_nodelay(true).unwrap();
    let mut buf = [7u8; 64];
    let row = sequential("tcp echo, 64 B (floor)", 1000, n, || {
        c.write_all(&buf).unwrap();
        c.read_exact(&mut buf).unwrap();
    });
    drop(c);
    server.join().unwrap();
    row
}

/// The time to seal and open one ~100-byte request record and one ~40-byte
/// response record with the session's cipher (ChaCha20-Poly1305 through
/// snow's Noise NN transport), which is what encryption adds to a call.
fn crypto_per_call(n: usize) -> f64 {
    let pattern: snow::params::NoiseParams = "Noise_NN_25519_ChaChaPoly_BLAKE2s".parse().unwrap();
    let mut i = snow::Builder::new(pattern.clone())
        .build_initiator()
        .unwrap();
    let mut r = snow::Builder::new(pattern).build_responder().unwrap();
    let (mut b, mut p) = ([0u8; 1024], [0u8; 1024]);
    let len = i.write_message(&[], &mut b).unwrap();
    r.read_message(&b[..len], &mut p).unwrap();
    let len = r.write_message(&[], &mut b).unwrap();
    i.read_message(&b[..len], &mut p).unwrap();
    let (i, r) = (
        i.into_stateless_transport_mode().unwrap(),
        r.into_stateless_transport_mode().unwrap(),
    );
    let (req, resp) = ([7u8; 100], [9u8; 40]);
    let start = std::time::Instant::now();
    for nonce in 0..n as u64 {
        let l = i.write_message(nonce, &req, &mut b).unwrap();
        r.read_message(nonce, &b[..l], &mut p).unwrap();
        let l = r.write_message(nonce, &resp, &mut b).unwrap();
        i.read_message(nonce, &b[..l], &mut p).unwrap();
    }
    start.elapsed().as_secs_f64() * 1e6 / n as f64
}

fn main() {
    let n = iters(20_000);
    let mut rows = vec![tcp_echo_floor(n)];

    // Over loopback TCP (the in-process shortcut would skip the wire).
    let mut config = wspr::rpc::ClientConfig::default();
    config.in_process = false;
    let client = Client::with_config(Namespace::new(vec![]), config).unwrap();
    let demo = Server::listen("127.0.0.1:0", Arc::new(wspr::demo::Demo), client.clone()).unwrap();
    let name = demo.name();
    let add = || {
        let r = client
            .call(
                &name,
                "Add",
                vec![json!(2), json!(3)],
                CallOptions::default(),
            )
            .unwrap();
        assert_eq!(r, vec![json!(5)]);
    };
    rows.push(sequential("native call Add, sequential", 1000, n, add));
    rows.push(concurrent("native call Add, 64 in flight", 64, n * 2, add));

    // Connection setup: TCP, hello, Noise handshake and both proofs, then
    // one call; against a call on a warm connection.
    let principal = client.principal();
    let setups: Vec<std::time::Duration> = (0..iters(400))
        .map(|_| {
            let mut config = wspr::rpc::ClientConfig::default();
            config.in_process = false;
            let fresh = Client::with_principal(Namespace::new(vec![]), principal.clone(), config);
            let t = std::time::Instant::now();
            fresh
                .call(
                    &name,
                    "Add",
                    vec![json!(2), json!(3)],
                    CallOptions::default(),
                )
                .unwrap();
            t.elapsed()
        })
        .collect();
    let setup = Row::from_samples(
        "new connection + first call",
        setups,
        std::time::Duration::from_secs(1),
    );
    let crypto = crypto_per_call(iters(200_000));
    rows.push(setup);

    print_table("RPC runtime (loopback)", &rows, "tcp echo, 64 B (floor)");
    let seq_p50 = rows[1].p50_us;
    println!(
        "handshake cost (new connection + first call, minus a warm call): p50 {:.0} µs",
        rows[3].p50_us - seq_p50
    );
    println!(
        "encryption per call (seal + open of a request and a response record): {:.2} µs = {:.1}% of the sequential call p50 (target <= 10%)",
        crypto,
        crypto / seq_p50 * 100.0
    );
    let seq = &rows[1];
    let par = &rows[2];
    println!(
        "sequential p50 / tcp echo p50 = {:.2} (target <= 1.5); 64-in-flight calls/s / sequential = {:.2} (target >= 5)",
        seq.p50_us / rows[0].p50_us,
        par.calls_per_sec / seq.calls_per_sec
    );
    write_json(
        "rpc.json",
        &rows,
        &[("encryption_us_per_call", format!("{crypto:.3}"))],
    );
    demo.stop();
}
