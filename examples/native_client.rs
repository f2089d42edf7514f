//! A native RPC client: calls the calculator of the `native_server`
//! example by name, as the user.
//!
//! ```text
//! cargo run --example native_client [-- NAME]     # NAME: examples/calc
//! ```
//!
//! `Client::from_env()` is the client of the user's tools: the name space
//! of `WSPR_NAMESPACE_ROOT` (else the mount table of `wsprd serve`) and
//! the user's credentials (`WSPR_CREDENTIALS`, else
//! `~/.config/wspr/credentials`), so servers of the same user admit it.

use std::time::Duration;

use serde_json::json;
use wspr::rpc::{CallOptions, Client};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let name = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "examples/calc".to_string());
    let client = Client::from_env()?;
    // Every call has a deadline: a server that does not answer is an error.
    let opts = || CallOptions::timeout(Duration::from_secs(10));

    let sum = client.call(&name, "Add", vec![json!(2), json!(3)], opts())?;
    println!("Add(2, 3) = {}", sum[0]);

    // An error comes back with its kind, id and message.
    let err = client
        .call(&name, "Divide", vec![json!(1), json!(0)], opts())
        .unwrap_err();
    println!("Divide(1, 0): {:?} {}", err.kind(), err.msg());

    // A streaming call: send items, close the sending side, read what the
    // server streams back, then the result.
    let mut call = client.start_call(&name, "Sum", vec![], opts())?;
    for n in 1..=4 {
        call.send(json!(n))?;
    }
    call.close_send()?;
    let mut totals = vec![];
    while let Some(t) = call.recv()? {
        totals.push(t.to_string());
    }
    let result = call.finish()?;
    println!(
        "Sum streamed {} and returned {}",
        totals.join(" "),
        result[0]
    );
    Ok(())
}
