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

fn main() {
    let n = iters(20_000);
    let mut rows = vec![tcp_echo_floor(n)];

    let client = Client::new(Namespace::new(vec![]));
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

    print_table("RPC runtime (loopback)", &rows, "tcp echo, 64 B (floor)");
    let seq = &rows[1];
    let par = &rows[2];
    println!(
        "sequential p50 / tcp echo p50 = {:.2} (target <= 1.5); 64-in-flight calls/s / sequential = {:.2} (target >= 5)",
        seq.p50_us / rows[0].p50_us,
        par.calls_per_sec / seq.calls_per_sec
    );
    write_json("rpc.json", &rows, &[]);
    demo.stop();
}
