//! The demo object through the library and through `wsprd call`.

mod common;

use std::io::Write;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use wspr::error::ids;
use wspr::rpc::{CallOptions, Server};

use common::*;

#[test]
fn demo_through_the_library() {
    let (_mt, client) = mount_table();
    let demo = Server::listen("127.0.0.1:0", Arc::new(wspr::demo::Demo), client.clone()).unwrap();
    demo.add_name("demo/adder").unwrap();

    let sum = client
        .call(
            "demo/adder",
            "Add",
            vec![json!(2), json!(3)],
            CallOptions::default(),
        )
        .unwrap();
    assert_eq!(sum, vec![json!(5)]);

    let err = client
        .call(
            "demo/adder",
            "Divide",
            vec![json!(1), json!(0)],
            CallOptions::default(),
        )
        .unwrap_err();
    assert_eq!(err.id(), ids::BAD_ARG);
    assert!(err.msg().contains("division by zero"), "{err}");

    let mut call = client
        .start_call("demo/adder", "StreamingAdd", vec![], CallOptions::default())
        .unwrap();
    for n in 1..=4 {
        call.send(json!(n)).unwrap();
    }
    call.close_send().unwrap();
    let mut items = vec![];
    while let Some(v) = call.recv().unwrap() {
        items.push(v);
    }
    assert_eq!(items, vec![json!(1), json!(3), json!(6), json!(10)]);
    assert_eq!(call.finish().unwrap(), vec![json!(10)]);

    // lowerCamelCase works too, and a missing method is NoExist.
    let q = client
        .call(
            "demo/adder",
            "divide",
            vec![json!(7), json!(2)],
            CallOptions::default(),
        )
        .unwrap();
    assert_eq!(q, vec![json!(3.5)]);
    let err = client
        .call(
            "demo/adder",
            "Multiply",
            vec![json!(1), json!(2)],
            CallOptions::default(),
        )
        .unwrap_err();
    assert_eq!(err.id(), ids::NO_EXIST);
    let err = client
        .call("demo/adder", "Add", vec![json!(1)], CallOptions::default())
        .unwrap_err();
    assert_eq!(err.id(), ids::BAD_ARG);
}

#[test]
fn demo_through_wsprd_call() {
    let mut mt_cmd = wsprd();
    mt_cmd.args(["mounttable", "--listen", "127.0.0.1:0"]);
    let mt = Proc::spawn(mt_cmd);
    let root = mt.line();
    assert!(root.starts_with("/@w1@127.0.0.1:"), "{root}");

    let mut demo_cmd = wsprd();
    demo_cmd.args(["demo", "--namespace-root", &root]);
    let demo = Proc::spawn(demo_cmd);
    let ep = demo.line();
    assert!(ep.ends_with("@s@@"), "{ep}");

    let out = wsprd()
        .args([
            "call",
            "--namespace-root",
            &root,
            "demo/adder",
            "Add",
            "2",
            "3",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "[5]");

    let out = wsprd()
        .args([
            "call",
            "--namespace-root",
            &root,
            "demo/adder",
            "divide",
            "1",
            "0",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("BadArg") && err.contains("division by zero"),
        "{err}"
    );

    let mut child = wsprd()
        .args([
            "call",
            "--namespace-root",
            &root,
            "--stdin",
            "demo/adder",
            "StreamingAdd",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"1\n2\n3\n4\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<_> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect();
    assert_eq!(lines, vec!["1", "3", "6", "10", "[10]"]);

    // A call that ends while stdin is still open: the command ends with
    // it, without waiting for stdin.
    let mut child = wsprd()
        .args([
            "call",
            "--namespace-root",
            &root,
            "--stdin",
            "demo/adder",
            "Add",
            "2",
            "3",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdin = child.stdin.take().unwrap(); // held open
    let (tx, rx) = crossbeam_channel::bounded(1);
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let out = rx
        .recv_timeout(Duration::from_secs(20))
        .expect("wsprd call to end while its stdin is open")
        .unwrap();
    drop(stdin);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "[5]");

    // A name nobody serves: an error on stderr, exit 1.
    let out = wsprd()
        .args([
            "call",
            "--namespace-root",
            &root,
            "no/such",
            "Add",
            "1",
            "2",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("NoExist"));

    // Bad JSON arguments are refused before anything is sent.
    let out = wsprd()
        .args([
            "call",
            "--namespace-root",
            &root,
            "demo/adder",
            "Add",
            "two",
            "3",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not JSON"));
}
