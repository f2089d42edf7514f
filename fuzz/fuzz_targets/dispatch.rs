//! Websocket message decoding and dispatch: each input is one text frame
//! on a pipe of a live daemon, which must go on answering (see
//! `harness/dispatch.rs`).
//!
//! Inputs name servers anywhere (`/203.0.113.9:80/x`, `example.com:80`),
//! and the daemon would connect to them. So this target runs only in a
//! network namespace whose one interface is loopback; `make fuzz` (that is,
//! `fuzz/run.sh`) starts it in one with `unshare -n`.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../harness/dispatch.rs"]
mod harness;

/// Whether this process's network namespace has no interface but `lo`.
fn only_loopback() -> bool {
    let Ok(dev) = std::fs::read_to_string("/proc/self/net/dev") else {
        return false;
    };
    dev.lines()
        .skip(2)
        .filter_map(|l| l.split(':').next())
        .all(|name| name.trim() == "lo")
}

fuzz_target!(
    init: {
        assert!(
            only_loopback(),
            "the dispatch target sends traffic wherever its inputs say: run it in a \
             network namespace with only loopback (fuzz/run.sh does: unshare -n)"
        );
    },
    |data: &[u8]| harness::run(data)
);
