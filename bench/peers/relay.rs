//! The relay floor of `make bench-peers`: the least any relay can do.
//!
//! `peers_relay UPSTREAM` listens on 127.0.0.1 (an ephemeral port, printed
//! as `ready ws://127.0.0.1:PORT/`) and joins every connection it accepts
//! to a new connection to UPSTREAM (`host:port`), copying bytes both ways
//! with one blocking thread per direction. It parses nothing: a websocket
//! client connected through it talks to UPSTREAM's websocket server. A call
//! through it is the same chain of wake-ups as a call through wsprd (caller,
//! relay, callee, relay, caller) with no work at the relay, so its latency
//! against the echo's shows what relaying alone costs on this machine. It
//! exits when its stdin closes (its parent is gone).
use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::process::ExitCode;
use std::thread;

fn main() -> ExitCode {
    let Some(upstream) = std::env::args().nth(1) else {
        eprintln!("usage: peers_relay UPSTREAM_HOST:PORT");
        return ExitCode::from(2);
    };
    let listener =
        match TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr().map(|a| (l, a))) {
            Ok((l, addr)) => {
                println!("ready ws://{addr}/");
                l
            }
            Err(e) => {
                eprintln!("peers_relay: cannot listen: {e}");
                return ExitCode::FAILURE;
            }
        };
    // Our parent closing our stdin (or dying) ends the process.
    let watch = thread::Builder::new().name("stdin".into()).spawn(|| {
        let _ = io::copy(&mut io::stdin(), &mut io::sink());
        std::process::exit(0);
    });
    if let Err(e) = watch {
        eprintln!("peers_relay: cannot start a thread: {e}");
        return ExitCode::FAILURE;
    }
    for conn in listener.incoming() {
        let result = conn.and_then(|down| join(down, &upstream));
        if let Err(e) = result {
            eprintln!("peers_relay: {e}");
        }
    }
    ExitCode::SUCCESS
}

/// Connects `down` to a new connection to `upstream`: a thread each way.
fn join(down: TcpStream, upstream: &str) -> io::Result<()> {
    let up = TcpStream::connect(upstream)?;
    down.set_nodelay(true)?;
    up.set_nodelay(true)?;
    let (down2, up2) = (down.try_clone()?, up.try_clone()?);
    thread::Builder::new()
        .name("relay-up".into())
        .spawn(move || copy(down, up))?;
    thread::Builder::new()
        .name("relay-down".into())
        .spawn(move || copy(up2, down2))?;
    Ok(())
}

/// Copies `from` to `to` until `from` ends or either fails, then ends `to`'s
/// sending side (the other thread then sees its end and stops too).
fn copy(mut from: TcpStream, mut to: TcpStream) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match from.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        }
    }
    let _ = to.shutdown(Shutdown::Write);
    let _ = from.shutdown(Shutdown::Read);
}
