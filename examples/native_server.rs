//! A native RPC server: a calculator served from closures, under a name
//! in the user's name space, as the user.
//!
//! ```text
//! cargo run --example native_server [-- NAME]     # NAME: examples/calc
//! ```
//!
//! It is who the user's tools are (the credentials of `wsprd`:
//! `WSPR_CREDENTIALS`, else `~/.config/wspr/credentials`) and mounts its
//! name in their name space (`WSPR_NAMESPACE_ROOT`, else the mount table
//! of `wsprd serve`), so `wsprd call examples/calc Add 2 3`, the
//! `native_client` example and the pages of the user's `wsprd serve` can
//! call it; other principals are refused (the default policy). It serves
//! until its input ends (Enter, or Ctrl-D).

use std::sync::Arc;

use wspr::rpc::{Client, Server, Service, Stream};

fn calculator() -> Service {
    Service::new()
        // Arguments and results are decoded and encoded with serde; the
        // signature (two arguments, one result) comes from the closure.
        .method("Add", |a: i64, b: i64| {
            a.checked_add(b)
                .ok_or_else(|| wspr::Error::bad_arg("the sum does not fit in 64 bits"))
        })
        .method("Divide", |a: f64, b: f64| {
            if b == 0.0 {
                return Err(wspr::Error::bad_arg("division by zero"));
            }
            Ok(a / b)
        })
        // For each number the caller streams, the running total; the
        // result is the final total.
        .streaming("Sum", |s: &mut Stream<i64, i64>| {
            let mut total: i64 = 0;
            while let Some(n) = s.recv()? {
                total = total
                    .checked_add(n)
                    .ok_or_else(|| wspr::Error::bad_arg("the sum does not fit in 64 bits"))?;
                s.send(&total)?;
            }
            Ok(total)
        })
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let name = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "examples/calc".to_string());
    let client = Client::from_env()?;
    let server = Server::listen("127.0.0.1:0", Arc::new(calculator()), client)?;
    server.add_name(&name)?;
    println!("serving {name} at {}", server.name());
    println!("stop with Enter or Ctrl-D");
    // Until the input ends: a test runs it with its input closed when done.
    let _ = std::io::stdin().read_line(&mut String::new());
    // Unmounts the name, lets calls in flight end, closes the listener.
    server.stop();
    Ok(())
}
