//! Every close has its frame: the daemon stopping closes every pipe with
//! 1001, busy ones too; a peer breaking the websocket protocol gets 1002
//! (1007 for text that is not UTF-8), and nobody else notices.

mod common;

use std::io::Write;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use serde_json::json;
use tungstenite::Message;

use common::js::*;
use common::*;

/// A masked client frame: first byte `head`, then `payload`.
fn frame(head: u8, payload: &[u8]) -> Vec<u8> {
    assert!(payload.len() < 126);
    let mask = [0x37u8, 0xfa, 0x21, 0x3d];
    let mut f = vec![head, 0x80 | payload.len() as u8];
    f.extend_from_slice(&mask);
    f.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    f
}

#[test]
fn protocol_violations_close_with_1002_and_bad_text_with_1007() {
    let d = daemon(|c| c.serve_demo = true);
    let mut good = Js::connect(d.http_addr());
    let cases: [(&str, Vec<u8>, u16); 7] = [
        ("RSV1 set", frame(0xC1, b"{}"), 1002),
        ("an unmasked frame", vec![0x81, 2, b'{', b'}'], 1002),
        (
            "text that is not UTF-8",
            frame(0x81, &[b'"', 0xff, 0xfe, b'"']),
            1007,
        ),
        (
            "a continuation with nothing to continue",
            frame(0x80, b"{}"),
            1002,
        ),
        ("a reserved data opcode", frame(0x83, b"{}"), 1002),
        ("a reserved control opcode", frame(0x8B, b""), 1002),
        ("a fragmented ping", frame(0x09, b""), 1002),
    ];
    for (what, bytes, code) in cases {
        let mut bad = Js::connect(d.http_addr());
        bad.ws.get_mut().write_all(&bytes).unwrap();
        assert_eq!(bad.close_code(), Some(code), "{what}");
        // Everyone else goes on.
        let id = good.call("demo/adder", "add", json!([1, 2]), false);
        assert_eq!(
            good.recv(),
            Msg {
                id,
                kind: FINAL,
                message: json!([3])
            },
            "after {what}"
        );
    }
}

/// Calls the demo on one pipe, one after another, until the daemon closes
/// it; the close code it gave (None: no close frame). `ready` counts the
/// pipes that have had an answer, `calls` the answers.
fn busy_pipe(addr: SocketAddr, ready: &AtomicU64, calls: &AtomicU64) -> Option<u16> {
    let mut js = Js::connect(addr);
    let mut first = true;
    js.ws
        .get_ref()
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    loop {
        let id = js.id();
        let call = json!({"id": id, "type": 0, "data": {"name": "demo/adder", "method": "add", "inArgs": [1, 2], "numOutArgs": 2}});
        if js.ws.send(Message::text(call.to_string())).is_err() {
            break;
        }
        match js.ws.read() {
            Ok(Message::Text(_)) => {
                if std::mem::take(&mut first) {
                    ready.fetch_add(1, Ordering::Relaxed);
                }
                calls.fetch_add(1, Ordering::Relaxed);
            }
            Ok(Message::Close(f)) => return f.map(|f| u16::from(f.code)),
            Ok(_) => {}
            Err(_) => return None,
        }
    }
    // (The send failed: the close may still be there to read.)
    loop {
        match js.ws.read() {
            Ok(Message::Close(f)) => return f.map(|f| u16::from(f.code)),
            Ok(_) => {}
            Err(_) => return None,
        }
    }
}

#[test]
fn sigterm_closes_every_busy_pipe_with_1001() {
    const PIPES: u64 = 40;
    let mut c = wsprd();
    c.args([
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--demo",
        "--log-level",
        "error",
    ]);
    let mut daemon = Proc::spawn(c);
    let addr: SocketAddr = daemon
        .line()
        .rsplit("http://")
        .next()
        .unwrap()
        .parse()
        .unwrap();
    daemon.line();
    let (ready, calls) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let pipes: Vec<_> = (0..PIPES)
        .map(|_| {
            let (ready, calls) = (ready.clone(), calls.clone());
            std::thread::spawn(move || busy_pipe(addr, &ready, &calls))
        })
        .collect();
    // The CPU is busy too.
    let spin = Arc::new(AtomicBool::new(true));
    let burners: Vec<_> = (0..2)
        .map(|_| {
            let spin = spin.clone();
            std::thread::spawn(move || {
                let mut x = 0u64;
                while spin.load(Ordering::Relaxed) {
                    x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
                }
                x
            })
        })
        .collect();
    wait_until(Duration::from_secs(30), "every pipe busy", || {
        ready.load(Ordering::Relaxed) == PIPES && calls.load(Ordering::Relaxed) > 20 * PIPES
    });
    daemon.signal("-TERM");
    let codes: Vec<Option<u16>> = pipes.into_iter().map(|p| p.join().unwrap()).collect();
    spin.store(false, Ordering::Relaxed);
    for b in burners {
        b.join().unwrap();
    }
    assert_eq!(daemon.wait(), Some(0));
    let closed_1001 = codes.iter().filter(|c| **c == Some(1001)).count();
    assert_eq!(
        closed_1001, PIPES as usize,
        "every pipe gets its close frame: {codes:?}"
    );
}
