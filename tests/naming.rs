//! Names through mount tables: two tables deep, glob, TTL expiry, loops.

mod common;

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use wspr::clock::Clock;
use wspr::error::ids;
use wspr::rpc::{CallOptions, Server, ServerConfig};

use common::*;

#[test]
fn a_name_resolves_through_two_mount_tables() {
    let (_root, client) = mount_table();
    // A second mount table, mounted in the first as "sub".
    let sub = mount_table_on(&client);
    sub.add_name("sub").unwrap();
    // The demo object mounts itself as "sub/adder": the name space walks
    // into the second table to mount it there.
    let demo = Server::listen("127.0.0.1:0", Arc::new(wspr::demo::Demo), client.clone()).unwrap();
    demo.add_name("sub/adder").unwrap();

    let resolved = client.resolve("sub/adder").unwrap();
    assert_eq!(resolved, vec![demo.name()]);
    let at = client.resolve_to_mount_table("sub/adder").unwrap();
    assert_eq!(
        at,
        vec![format!("{}/adder", sub.name())],
        "mounted in the second table"
    );

    let sum = client
        .call(
            "sub/adder",
            "Add",
            vec![json!(2), json!(3)],
            CallOptions::default(),
        )
        .unwrap();
    assert_eq!(sum, vec![json!(5)]);

    // Glob walks into the second table too.
    let names: Vec<String> = client
        .glob("...")
        .unwrap()
        .into_iter()
        .map(|e| e.name)
        .collect();
    assert_eq!(names, vec!["sub", "sub/adder"]);
    let names: Vec<String> = client
        .glob("sub/*")
        .unwrap()
        .into_iter()
        .map(|e| e.name)
        .collect();
    assert_eq!(names, vec!["sub/adder"]);

    // Stopping the demo unmounts it from the second table.
    demo.stop();
    let err = client
        .call(
            "sub/adder",
            "Add",
            vec![json!(1), json!(1)],
            CallOptions::default(),
        )
        .unwrap_err();
    assert_eq!(err.id(), ids::NO_EXIST, "{err}");
}

#[test]
fn wsprd_glob_lists_names() {
    let mut c = wsprd();
    c.args(["mounttable", "--listen", "127.0.0.1:0"]);
    let mt = Proc::spawn(c);
    let root = mt.line();
    let mut demos = vec![];
    for name in ["demo/adder", "demo/other", "top"] {
        let mut c = wsprd();
        c.args(["demo", "--namespace-root", &root, "--name", name]);
        let p = Proc::spawn(c);
        p.line();
        demos.push(p);
    }
    let glob = |pattern: &str| -> Vec<String> {
        let out = wsprd()
            .args(["glob", "--namespace-root", &root, pattern])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| l.split('\t').next().unwrap().to_string())
            .collect()
    };
    assert_eq!(glob("*"), vec!["demo", "top"]);
    assert_eq!(glob("..."), vec!["demo", "demo/adder", "demo/other", "top"]);
    assert_eq!(glob("demo/a*"), vec!["demo/adder"]);
    // Each leaf line names its server.
    let out = wsprd()
        .args(["glob", "--namespace-root", &root, "top"])
        .output()
        .unwrap();
    let line = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        line.starts_with("top\t/@w1@127.0.0.1:") && line.trim_end().ends_with("@s@@"),
        "{line}"
    );
}

#[test]
fn a_server_that_dies_without_unmounting_disappears_at_its_ttl() {
    // (The mount table's TTLs are by a clock the test moves.)
    let clock = Clock::manual();
    let (mt, client) = mount_table_clocked(&clock);
    let mut c = wsprd();
    c.args([
        "demo",
        "--namespace-root",
        &client.namespace().roots()[0],
        "--name",
        "shortlived",
        "--mount-ttl-secs",
        "1",
    ]);
    let mut demo = Proc::spawn(c);
    demo.line();
    assert_eq!(client.glob("shortlived").unwrap().len(), 1);
    // Killed: no chance to unmount.
    demo.signal("-KILL");
    demo.wait();
    assert_eq!(
        client.glob("shortlived").unwrap().len(),
        1,
        "still mounted right after"
    );
    // Whatever it sent before it died has been read once its connection
    // has closed.
    wait_until(Duration::from_secs(10), "its connection to close", || {
        mt.listener().connections() == 0
    });
    // Past its TTL of 1 s.
    clock.advance(Duration::from_secs(2));
    wait_until(Duration::from_secs(10), "the mount to expire", || {
        client.glob("shortlived").unwrap().is_empty()
    });
    let err = client
        .call(
            "shortlived",
            "Add",
            vec![json!(1), json!(2)],
            CallOptions::default(),
        )
        .unwrap_err();
    assert_eq!(err.id(), ids::NO_EXIST);
}

#[test]
fn a_live_server_keeps_its_name_past_the_ttl() {
    // (The mount table's TTLs and the server's refreshes are by a clock
    // the test moves.)
    let clock = Clock::manual();
    let (_mt, client) = mount_table_clocked(&clock);
    let mut config = ServerConfig::default();
    config.mount_ttl = Duration::from_secs(60);
    config.clock = clock.clone();
    let demo = Server::listen_with(
        "127.0.0.1:0",
        Arc::new(wspr::demo::Demo),
        client.clone(),
        config,
    )
    .unwrap();
    demo.add_name("refreshed").unwrap();
    let ttl = || {
        let entries = client.glob("refreshed").unwrap();
        assert_eq!(entries.len(), 1);
        entries[0].servers.iter().map(|s| s.ttl).max().unwrap_or(0)
    };
    // Three TTLs later the name is still there: it was refreshed at half
    // its TTL each time (left alone, 29 s would be left of it).
    for _ in 0..6 {
        clock.advance(Duration::from_secs(31));
        wait_until(Duration::from_secs(10), "the name to be refreshed", || {
            ttl() > 45
        });
    }
    assert_eq!(client.glob("refreshed").unwrap().len(), 1);
}

#[test]
fn resolution_loops_and_depth_are_refused() {
    let (mt, client) = mount_table();
    // "a" points back at the same name on the same table: a loop.
    client
        .mount("a", &format!("{}/a", mt.name()), Duration::from_secs(60))
        .unwrap();
    let err = client.resolve("a").unwrap_err();
    assert_eq!(err.id(), ids::NO_EXIST);
    assert!(err.msg().contains("loop"), "{err}");
    // "x" points at "x/x" on the same table: every step is new and deeper.
    client
        .mount("x", &format!("{}/x/x", mt.name()), Duration::from_secs(60))
        .unwrap();
    let err = client.resolve("x").unwrap_err();
    assert!(err.msg().contains("deep"), "{err}");
}

#[test]
fn the_cache_is_dropped_when_a_server_is_gone() {
    let (_mt, client) = mount_table();
    let root = client.namespace().roots()[0].clone();
    let mut c = wsprd();
    c.args(["demo", "--namespace-root", &root, "--name", "svc"]);
    let mut first = Proc::spawn(c);
    let first_name = first.line();
    let add = || {
        client.call(
            "svc",
            "Add",
            vec![json!(1), json!(1)],
            CallOptions::default(),
        )
    };
    assert_eq!(add().unwrap(), vec![json!(2)]);
    assert_eq!(client.resolve("svc").unwrap(), vec![first_name.clone()]);
    assert_eq!(client.namespace().cache_len(), 1);

    // The first server dies without unmounting; a second mounts the name.
    first.signal("-KILL");
    first.wait();
    // (Another client mounts it, so this client's cache is untouched; of
    // the first server's principal, whose name it is.)
    let other = test_client(vec![root.clone()]);
    let second = Server::listen("127.0.0.1:0", Arc::new(wspr::demo::Demo), other).unwrap();
    second.add_name("svc").unwrap();
    assert_eq!(client.namespace().cache_len(), 1);
    // The cache still says "first"; the call fails to reach it, forgets
    // the cached answer, asks the mount table again and reaches the second.
    assert_eq!(add().unwrap(), vec![json!(2)]);
    let now = client.resolve("svc").unwrap();
    assert!(now.contains(&second.name()), "{now:?}");
}
