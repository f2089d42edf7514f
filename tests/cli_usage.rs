//! The command line as a new user meets it: real `wsprd` processes, their
//! exit codes and what they print. Every address is explicit (port 0, or a
//! port the test holds or has just released): no test uses the default
//! 127.0.0.1:8125.

mod common;

use std::io::Write;
use std::net::TcpListener;
use std::process::{Output, Stdio};
use std::time::Duration;

use common::js::*;
use common::*;

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// `wsprd ARGS`, without `WSPR_NAMESPACE_ROOT` from the environment.
fn run(args: &[&str]) -> Output {
    wsprd()
        .env_remove("WSPR_NAMESPACE_ROOT")
        .args(args)
        .output()
        .expect("run wsprd")
}

/// Runs `wsprd ARGS` with `input` on stdin (then closed); its output,
/// within 20 s (the command must end by itself).
fn run_with_input(args: &[&str], input: &[u8]) -> Output {
    let mut child = wsprd()
        .env_remove("WSPR_NAMESPACE_ROOT")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn wsprd");
    child.stdin.take().unwrap().write_all(input).unwrap();
    let (tx, rx) = crossbeam_channel::bounded(1);
    let pid = child.id();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(Duration::from_secs(20)) {
        Ok(out) => out.unwrap(),
        Err(_) => {
            let _ = std::process::Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
            panic!("wsprd {args:?} did not end within 20 s");
        }
    }
}

/// A port nothing listens on (bound, then released).
fn refused_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn a_bad_stdin_line_ends_the_call_with_bad_arg() {
    let d = daemon(|c| c.serve_demo = true);
    let root = &d.namespace_roots()[0];
    let out = run_with_input(
        &[
            "call",
            "--namespace-root",
            root,
            "--stdin",
            "demo/adder",
            "StreamingAdd",
        ],
        b"1\nfoo\n3\n",
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(
        err.contains("BadArg: line 2 is not JSON: \"foo\""),
        "names the line and what is wrong: {err}"
    );
    assert!(
        !text(&out.stdout).contains('['),
        "no results: {}",
        text(&out.stdout)
    );

    // Good lines still stream, and the results follow.
    let out = run_with_input(
        &[
            "call",
            "--namespace-root",
            root,
            "--stdin",
            "demo/adder",
            "StreamingAdd",
        ],
        b"1\n\n2\n",
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "1\n3\n[3]\n");
}

#[test]
fn a_root_without_its_slash_is_taken_and_a_bad_one_is_named() {
    let d = daemon(|c| c.serve_demo = true);
    let root = d.namespace_roots()[0].clone();
    let bare = root.trim_start_matches('/');
    let out = run(&[
        "call",
        "--namespace-root",
        bare,
        "demo/adder",
        "Add",
        "2",
        "3",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "[5]\n");

    let out = run(&["glob", "--namespace-root", "demo", "..."]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.contains("BadArg") && err.contains("namespace root \"demo\""),
        "{err}"
    );

    let out = wsprd()
        .env("WSPR_NAMESPACE_ROOT", "nowhere")
        .args(["glob", "..."])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.contains("\"nowhere\" (from WSPR_NAMESPACE_ROOT)"),
        "{err}"
    );
}

#[test]
fn a_root_that_refuses_gets_a_hint() {
    let port = refused_port();
    let root = format!("/127.0.0.1:{port}");
    let out = run(&[
        "call",
        "--namespace-root",
        &root,
        "demo/adder",
        "Add",
        "1",
        "2",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.contains(&format!("connecting to 127.0.0.1:{port}"))
            && err.contains(&format!(
                "is a mount table running at {root}? (root from --namespace-root)"
            )),
        "{err}"
    );

    let out = wsprd()
        .env("WSPR_NAMESPACE_ROOT", &root)
        .args(["glob", "..."])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(err.contains("(root from WSPR_NAMESPACE_ROOT)"), "{err}");
}

#[test]
fn version_and_help_pointers() {
    let out = run(&["--version"]);
    assert!(out.status.success());
    assert_eq!(
        text(&out.stdout),
        format!("wsprd {}\n", env!("CARGO_PKG_VERSION"))
    );

    // argh's errors point at the subcommand's help.
    let out = run(&["call"]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(err.contains("Required positional arguments"), "{err}");
    assert!(
        err.contains("Run wsprd call --help for more information."),
        "{err}"
    );
    let out = run(&["principal", "bless", "x"]);
    assert!(
        text(&out.stderr).contains("Run wsprd principal bless --help"),
        "{}",
        text(&out.stderr)
    );
    let out = run(&["glob", "--bogus", "x"]);
    assert!(
        text(&out.stderr).contains("Run wsprd glob --help"),
        "{}",
        text(&out.stderr)
    );
    // So do bad arguments found later.
    let d = daemon(|c| c.serve_demo = true);
    let root = &d.namespace_roots()[0];
    let out = run(&[
        "call",
        "--namespace-root",
        root,
        "demo/adder",
        "Add",
        "two",
        "3",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.contains("BadArg: argument 1 \"two\" is not JSON"),
        "{err}"
    );
    assert!(err.contains("Run wsprd call --help"), "{err}");
    // No command at all: the help, and a failure.
    let out = run(&[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("Commands:"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn a_malformed_glob_pattern_is_bad_arg() {
    let d = daemon(|c| c.serve_demo = true);
    let root = &d.namespace_roots()[0];
    for pattern in ["[", "demo/[b-a]"] {
        let out = run(&["glob", "--namespace-root", root, pattern]);
        assert_eq!(out.status.code(), Some(1), "{pattern}");
        assert!(out.stdout.is_empty());
        let err = text(&out.stderr);
        assert!(
            err.contains("BadArg") && err.contains(&format!("glob pattern {pattern:?}")),
            "{err}"
        );
    }
    // Sets work.
    let out = run(&["glob", "--namespace-root", root, "demo/[a-c]dder"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).starts_with("demo/adder\t"),
        "{}",
        text(&out.stdout)
    );
}

#[test]
fn serve_checks_its_addresses_before_starting_anything() {
    for (flag, value) in [
        ("--listen", "nope"),
        ("--mounttable-listen", "127.0.0.1:port"),
        ("--rpc-listen", "no such host!"),
    ] {
        let mut args = vec!["serve", "--log-level", "info", flag, value];
        for (f, v) in [
            ("--listen", "127.0.0.1:0"),
            ("--mounttable-listen", "127.0.0.1:0"),
        ] {
            if f != flag {
                args.extend([f, v]);
            }
        }
        let out = run(&args);
        assert_eq!(out.status.code(), Some(1), "{flag} {value}");
        let err = text(&out.stderr);
        assert!(
            err.contains("BadArg") && err.contains(&format!("{value:?}")),
            "{flag}: {err}"
        );
        assert!(!err.contains("listening"), "nothing started: {err}");
        assert!(err.contains("Run wsprd serve --help"), "{err}");
    }

    // An HTTP address in use: refused before the mount table starts.
    let held = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = held.local_addr().unwrap().to_string();
    let out = run(&[
        "serve",
        "--log-level",
        "info",
        "--listen",
        &addr,
        "--mounttable-listen",
        "127.0.0.1:0",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.contains("Exists") && err.contains(&format!("cannot listen on {addr}")),
        "{err}"
    );
    assert!(
        !err.contains("listening for RPCs"),
        "nothing started: {err}"
    );

    // A mount table address given and in use: an error, no fallback.
    let out = run(&[
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--mounttable-listen",
        &addr,
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("Exists"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn serve_checks_its_tls_and_token_flags_before_starting_anything() {
    let base = [
        "serve",
        "--log-level",
        "info",
        "--mounttable-listen",
        "127.0.0.1:0",
    ];
    let cert = common::tls::make_cert("cli", &["localhost"]);
    let (cert_file, key_file) = (cert.cert.to_str().unwrap(), cert.key.to_str().unwrap());
    let cases: Vec<(Vec<&str>, &str)> = vec![
        // Beyond loopback in the clear.
        (vec!["--listen", "0.0.0.0:0"], "--insecure-listen"),
        (
            vec!["--listen", "127.0.0.1:0", "--tls-cert", cert_file],
            "--tls-key",
        ),
        (
            vec![
                "--listen",
                "127.0.0.1:0",
                "--tls-cert",
                "/no/such.pem",
                "--tls-key",
                key_file,
            ],
            "/no/such.pem",
        ),
        (
            vec!["--listen", "127.0.0.1:0", "--token-issuer", "acme"],
            "NAME=KEYFILE",
        ),
        (
            vec!["--listen", "127.0.0.1:0", "--token-issuer", &"acme=x.pem"],
            "--token-audience",
        ),
        (
            vec!["--listen", "127.0.0.1:0", "--require-token"],
            "--token-issuer",
        ),
    ];
    for (flags, says) in cases {
        let mut args = base.to_vec();
        args.extend(&flags);
        let out = run(&args);
        assert_eq!(out.status.code(), Some(1), "{flags:?}");
        let err = text(&out.stderr);
        assert!(
            err.contains("BadArg") && err.contains(says),
            "{flags:?}: {err}"
        );
        assert!(
            out.stdout.is_empty() && !err.contains("listening for RPCs"),
            "nothing started: {err}"
        );
    }
    // Asked for: it starts, and says so in a warning.
    let mut c = wsprd();
    c.args(base)
        .args(["--listen", "0.0.0.0:0", "--insecure-listen"]);
    let p = Proc::spawn(c);
    assert!(p.line().starts_with("wsprd listening on http://0.0.0.0:"));
    wait_until(Duration::from_secs(10), "the warning", || {
        p.stderr.lock().unwrap().contains("without TLS")
    });
}

#[test]
fn the_embedded_mount_table_falls_back_to_a_free_port() {
    capture_logs();
    let held = TcpListener::bind("127.0.0.1:0").unwrap();
    let taken = held.local_addr().unwrap().to_string();
    let d = daemon(|c| {
        c.mounttable_listen = taken.clone();
        c.mounttable_fallback = true;
        c.serve_demo = true;
    });
    let root = d.namespace_roots()[0].clone();
    assert!(!root.contains(&taken), "{root}");
    assert!(
        logged(&["WARN", &format!("cannot listen on {taken}"), &root]),
        "a warning names the root to use: {:?}",
        captured_logs().lock().unwrap()
    );
    let out = run(&[
        "call",
        "--namespace-root",
        &root,
        "demo/adder",
        "Add",
        "1",
        "2",
    ]);
    assert_eq!(text(&out.stdout), "[3]\n", "{}", text(&out.stderr));

    // Without fallback, the address in use is the error.
    let mut c = wspr::wsprd::Config::default();
    c.listen = "127.0.0.1:0".into();
    c.mounttable_listen = taken.clone();
    let e = wspr::wsprd::Daemon::spawn(c).err().expect("refused");
    assert!(e.is(wspr::error::ids::EXISTS), "{e}");
}

#[test]
fn serve_logs_one_line_per_call_at_debug() {
    let mut c = wsprd();
    c.args([
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--mounttable-listen",
        "127.0.0.1:0",
        "--demo",
        "--log-level",
        "debug",
    ]);
    let p = Proc::spawn(c);
    let addr: std::net::SocketAddr = p.line().rsplit("http://").next().unwrap().parse().unwrap();
    let _root = p.line();
    let mut js = Js::connect(addr);
    js.call("demo/adder", "add", serde_json::json!([2, 3]), false);
    assert_eq!(js.recv().kind, FINAL);
    js.call("demo/adder", "divide", serde_json::json!([1, 0]), false);
    assert_eq!(js.recv().kind, ERROR);
    js.call("no/such", "add", serde_json::json!([]), false);
    assert_eq!(js.recv().kind, ERROR);
    let line_for = |what: &str, outcome: &str| {
        let log = p.stderr.lock().unwrap().clone();
        log.lines()
            .filter(|l| l.contains(&format!("call {what}: {outcome} in ")) && l.contains(" ms"))
            .count()
    };
    wait_until(Duration::from_secs(10), "the calls' log lines", || {
        line_for("demo/adder.Add", "ok") == 1
            && line_for("demo/adder.Divide", "veyron2/verror.BadArg") == 1
            && line_for("no/such.Add", "veyron2/verror.NoExist") == 1
    });
    let log = p.stderr.lock().unwrap().clone();
    assert!(
        log.lines()
            .any(|l| l.contains("pipe 1: call demo/adder.Add: ok in")),
        "the pipe is named: {log}"
    );
}
