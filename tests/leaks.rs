//! Stopping servers and dropping clients leaves no thread behind. One test
//! in its own binary, so that no other test's threads are counted.

mod common;

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use wspr::rpc::{CallOptions, Client, ClientConfig, Namespace, Server};

use common::*;

#[test]
fn stopping_and_dropping_leave_no_threads() {
    let baseline = threads_named("wspr-");
    assert!(baseline.is_empty(), "{baseline:?}");
    // Over sockets, then through in-process links.
    exercise(false);
    assert_eq!(threads_left(&baseline), baseline);
    exercise(true);
    assert_eq!(threads_left(&baseline), baseline);
}

/// The `wspr-` threads still listed, once they are `expected` or 10 s
/// have passed. Every thread is joined before `exercise` returns, but
/// Linux wakes a joiner when the thread lets go of its memory, a step
/// before it takes the thread out of `/proc/self/task`; on a loaded
/// machine a joined thread can stay listed for a moment. A thread that
/// was never joined stays listed, and the test fails.
fn threads_left(expected: &[String]) -> Vec<String> {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let now = threads_named("wspr-");
        if now == expected || std::time::Instant::now() >= deadline {
            return now;
        }
        std::thread::yield_now();
    }
}

fn exercise(in_process: bool) {
    {
        let mut config = ClientConfig::default();
        config.in_process = in_process;
        let client = Client::with_config(Namespace::new(vec![]), config).unwrap();
        let mt = mount_table_on(&client);
        client.namespace().set_roots(vec![mt.name()]);
        let demo =
            Server::listen("127.0.0.1:0", Arc::new(wspr::demo::Demo), client.clone()).unwrap();
        demo.add_name("demo/adder").unwrap();
        // Plain calls, concurrent calls, streams, cancels and timeouts.
        std::thread::scope(|s| {
            for _ in 0..8 {
                s.spawn(|| {
                    for i in 0..20 {
                        let r = client
                            .call(
                                "demo/adder",
                                "Add",
                                vec![json!(i), json!(1)],
                                CallOptions::default(),
                            )
                            .unwrap();
                        assert_eq!(r, vec![json!(i + 1)]);
                    }
                });
            }
        });
        let mut call = client
            .start_call("demo/adder", "StreamingAdd", vec![], CallOptions::default())
            .unwrap();
        call.send(json!(1)).unwrap();
        assert_eq!(call.recv().unwrap(), Some(json!(1)));
        call.cancel();
        let mut timed = client
            .start_call(
                "demo/adder",
                "StreamingAdd",
                vec![],
                CallOptions::timeout(Duration::from_millis(200)),
            )
            .unwrap();
        timed.send(json!(1)).unwrap();
        assert_eq!(timed.recv().unwrap(), Some(json!(1)));
        // The server waits for more items, the caller for more totals.
        let err = timed.recv().unwrap_err();
        assert_eq!(err.id(), wspr::error::ids::TIMEOUT);
        // A call left open when everything stops.
        let open = client
            .start_call("demo/adder", "StreamingAdd", vec![], CallOptions::default())
            .unwrap();
        let during = threads_named("wspr-");
        assert!(
            during.iter().any(|t| t.starts_with("wspr-call")),
            "{during:?}"
        );
        // Sockets have reader threads on both sides; in-process links none.
        let socket_threads = during
            .iter()
            .filter(|t| t.starts_with("wspr-client-") || t.starts_with("wspr-conn-"))
            .count();
        assert_eq!(socket_threads > 0, !in_process, "{during:?}");
        demo.abort();
        let err = open.finish().unwrap_err();
        assert_eq!(err.id(), wspr::error::ids::ABORTED);
        mt.stop();
        drop(client);
        drop(demo);
        drop(mt);
    }
}
