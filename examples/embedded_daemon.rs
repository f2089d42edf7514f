//! A program that embeds the daemon: web pages connect to it as to
//! `wsprd serve`, and it serves an object of its own, `examples/notes`,
//! beside theirs.
//!
//! ```text
//! cargo run --example embedded_daemon [-- --listen 127.0.0.1:8124]
//! ```
//!
//! It is who the user is (the credentials of `wsprd`: `WSPR_CREDENTIALS`,
//! else `~/.config/wspr/credentials`), runs its own mount table (the
//! root it prints: give it to tools as `WSPR_NAMESPACE_ROOT`), and serves
//! the demo object and page (http://127.0.0.1:8124). Its pages call
//! `examples/notes` (`add(text)`, `list()`); it calls what they serve
//! through `Daemon::client()`. It runs until its input ends (Enter, or
//! Ctrl-D), then shuts down: pipes closed (1001), threads joined.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::json;
use wspr::rpc::{CallOptions, Service};
use wspr::security::Principal;
use wspr::wsprd::Daemon;

/// Notes kept in memory: state shared by the closures.
fn notes() -> Service {
    let notes = Arc::new(Mutex::new(Vec::<String>::new()));
    let kept = notes.clone();
    Service::new()
        .method("Add", move |text: String| {
            let mut n = kept.lock().unwrap_or_else(|p| p.into_inner());
            n.push(text);
            Ok(n.len())
        })
        .method("List", move || {
            Ok(notes.lock().unwrap_or_else(|p| p.into_inner()).clone())
        })
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let listen = match args.as_slice() {
        [] => "127.0.0.1:8124".to_string(),
        [flag, addr] if flag == "--listen" => addr.clone(),
        _ => return Err("usage: embedded_daemon [--listen HOST:PORT]".into()),
    };
    let daemon = Daemon::builder()
        .listen(listen)
        .credentials(Principal::default_dir())
        .demo()
        .spawn()?;
    // Dropping the server (or the daemon's shutdown) stops it.
    let _notes = daemon.serve("examples/notes", Arc::new(notes()))?;
    println!("http://{}", daemon.http_addr());
    println!("root {}", daemon.namespace_roots().join(","));

    // The daemon's own client calls by name, as its pages do.
    let client = daemon.client();
    let opts = || CallOptions::timeout(Duration::from_secs(10));
    client.call("examples/notes", "Add", vec![json!("started")], opts())?;
    let list = client.call("examples/notes", "List", vec![], opts())?;
    println!("examples/notes: {}", list[0]);

    println!("stop with Enter or Ctrl-D");
    let _ = std::io::stdin().read_line(&mut String::new());
    daemon.shutdown();
    Ok(())
}
