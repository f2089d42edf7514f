//! After 200 pipes opened and closed, some in mid-call, the daemon's
//! threads, flows, servers and names are back where they started. One
//! test in its own binary, so that only its threads are counted.

mod common;

use std::time::Duration;

use serde_json::json;
use wspr::error::ids;
use wspr::rpc::CallOptions;

use common::js::*;
use common::*;

fn threads() -> usize {
    std::fs::read_dir("/proc/self/task").unwrap().count()
}

#[test]
fn two_hundred_pipes_leave_nothing_behind() {
    let d = daemon(|c| {
        c.serve_demo = true;
        c.idle_thread_timeout = Duration::from_millis(200);
        c.lookup_timeout = Duration::from_secs(60);
    });
    let addr = d.http_addr();
    let settled = |what: &str| {
        wait_until(Duration::from_secs(20), what, || {
            let h = d.health();
            h["pipes"] == 0 && h["flows"] == 0 && h["servers"] == 0 && h["workers"] == 0
        });
    };
    // Warm up once, then take the baseline.
    {
        let mut js = Js::connect(addr);
        let id = js.call("demo/adder", "add", json!([1, 1]), false);
        assert_eq!(js.recv().id, id);
    }
    settled("the warm-up pipe to close");
    let client = native_client(&d);
    wait_until(Duration::from_secs(20), "threads to settle", || {
        d.health()["threads"].as_u64().unwrap() as usize == threads()
    });
    let baseline = threads();

    std::thread::scope(|s| {
        for t in 0..8 {
            let client = client.clone();
            s.spawn(move || {
                for i in 0..25 {
                    let n = t * 25 + i;
                    let mut js = Js::connect(addr);
                    match n % 4 {
                        // A call, then a clean close.
                        0 => {
                            let id = js.call("demo/adder", "add", json!([n, 1]), false);
                            assert_eq!(
                                js.recv(),
                                Msg {
                                    id,
                                    kind: FINAL,
                                    message: json!([n + 1])
                                }
                            );
                            js.ws.close(None).unwrap();
                            while js.ws.read().is_ok() {}
                        }
                        // Dropped in the middle of a streaming call.
                        1 => {
                            let id = js.call("demo/adder", "streamingAdd", json!([]), true);
                            js.send(id, 3, json!(1));
                            assert_eq!(js.recv().kind, STREAM);
                        }
                        // Dropped while a native caller waits on its lookup
                        // (2) or on its request (3).
                        _ => {
                            let name = format!("leak/{n}");
                            js.serve(&name, 1);
                            let c = client.clone();
                            let caller = std::thread::spawn(move || {
                                c.call(
                                    &name,
                                    "Add",
                                    vec![json!(1), json!(2)],
                                    CallOptions::default(),
                                )
                            });
                            if n % 4 == 2 {
                                assert_eq!(js.recv().kind, LOOKUP);
                            } else {
                                js.answer_next_lookup(1);
                                assert_eq!(js.recv().kind, SERVER_REQUEST);
                            }
                            drop(js);
                            let err = caller.join().unwrap().unwrap_err();
                            assert_eq!(err.id(), ids::ABORTED, "{err}");
                        }
                    }
                }
            });
        }
    });
    settled("every pipe to close");
    assert!(
        client.glob("leak/...").unwrap().is_empty(),
        "names unmounted"
    );
    drop(client);
    wait_until(
        Duration::from_secs(20),
        "threads back to the baseline",
        || threads() <= baseline,
    );
    let h = d.health();
    assert_eq!(h["pipesOpened"], 201);
    assert_eq!(
        (h["flows"].clone(), h["servers"].clone()),
        (json!(0), json!(0))
    );
}
