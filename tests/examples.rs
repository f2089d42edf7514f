//! The programs of `examples/`, run as a user runs them, together: the
//! embedded daemon, the native server mounting its calculator in the
//! daemon's name space, the native client calling it, and a page of the
//! daemon calling both objects. All are one user (one credentials
//! directory); each ends by itself when its input ends.

mod common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use common::js::*;

/// Builds the examples (as `cargo build --examples` would; the library is
/// built already, so this only links them) and gives their executables
/// by name.
fn build_examples() -> HashMap<String, PathBuf> {
    let mut cmd = Command::new(env!("CARGO"));
    cmd.args(["build", "--examples", "--message-format=json"])
        .current_dir(env!("CARGO_MANIFEST_DIR"));
    if !cfg!(debug_assertions) {
        cmd.arg("--release");
    }
    let out = cmd.output().expect("cargo build --examples");
    assert!(
        out.status.success(),
        "cargo build --examples failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut exes = HashMap::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Ok(m) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        if let (Some(name), Some(exe)) = (m["target"]["name"].as_str(), m["executable"].as_str()) {
            exes.insert(name.to_string(), PathBuf::from(exe));
        }
    }
    exes
}

/// A program of the examples running with its input open; dropping it
/// kills it if it has not ended.
struct Program {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<String>,
    name: &'static str,
}

impl Program {
    fn start(exe: &Path, name: &'static str, env: &[(&str, &Path)], args: &[&str]) -> Program {
        let mut cmd = Command::new(exe);
        cmd.args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().unwrap_or_else(|e| panic!("{name}: {e}"));
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = channel();
        std::thread::spawn(move || {
            for l in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(l).is_err() {
                    break;
                }
            }
        });
        Program {
            stdin: child.stdin.take(),
            child,
            lines,
            name,
        }
    }

    /// The next line it prints (within 30 s).
    fn line(&self) -> String {
        match self.lines.recv_timeout(Duration::from_secs(30)) {
            Ok(l) => l,
            Err(RecvTimeoutError::Timeout) => panic!("{}: no output for 30 s", self.name),
            Err(RecvTimeoutError::Disconnected) => panic!("{}: ended early", self.name),
        }
    }

    /// Closes its input and waits (up to 30 s) for it to end by itself;
    /// whether it succeeded.
    fn finish(&mut self) -> bool {
        drop(self.stdin.take());
        let limit = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.success();
            }
            assert!(
                Instant::now() < limit,
                "{}: still running 30 s after its input closed",
                self.name
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Program {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn the_examples_run_together_and_end_by_themselves() {
    let exes = build_examples();
    let exe = |name: &str| {
        exes.get(name)
            .unwrap_or_else(|| panic!("no example {name} among {:?}", exes.keys()))
            .clone()
    };
    let dir =
        Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("examples-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let creds = dir.join("credentials");

    let mut daemon = Program::start(
        &exe("embedded_daemon"),
        "embedded_daemon",
        &[("WSPR_CREDENTIALS", &creds)],
        &["--listen", "127.0.0.1:0"],
    );
    let http = daemon.line();
    let http: std::net::SocketAddr = http
        .strip_prefix("http://")
        .unwrap_or_else(|| panic!("an address: {http}"))
        .parse()
        .unwrap();
    let root = daemon.line();
    let root = PathBuf::from(root.strip_prefix("root ").expect("the root").to_string());
    assert_eq!(daemon.line(), r#"examples/notes: ["started"]"#);
    assert_eq!(daemon.line(), "stop with Enter or Ctrl-D");

    let env = [
        ("WSPR_CREDENTIALS", creds.as_path()),
        ("WSPR_NAMESPACE_ROOT", root.as_path()),
    ];
    let mut server = Program::start(&exe("native_server"), "native_server", &env, &[]);
    let serving = server.line();
    assert!(
        serving.starts_with("serving examples/calc at /@"),
        "{serving}"
    );

    let client = Command::new(exe("native_client"))
        .envs(env)
        .stdin(Stdio::null())
        .output()
        .expect("native_client");
    let out = String::from_utf8_lossy(&client.stdout);
    assert!(
        client.status.success(),
        "native_client failed: {out}{}",
        String::from_utf8_lossy(&client.stderr)
    );
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        vec![
            "Add(2, 3) = 5",
            "Divide(1, 0): BadArg division by zero",
            "Sum streamed 1 3 6 10 and returned 10",
        ]
    );

    // A page of the embedded daemon calls the daemon's own object and the
    // native server's (a page extends the user's name: both admit it).
    let mut js = Js::connect(http);
    let id = js.call("examples/notes", "add", json!(["from a page"]), false);
    assert_eq!(
        js.recv(),
        Msg {
            id,
            kind: FINAL,
            message: json!([2])
        }
    );
    let id = js.call("examples/calc", "add", json!([20, 22]), false);
    assert_eq!(
        js.recv(),
        Msg {
            id,
            kind: FINAL,
            message: json!([42])
        }
    );
    drop(js);

    assert!(server.finish(), "native_server failed");
    // Its name went with it.
    let client = Command::new(exe("native_client"))
        .envs(env)
        .stdin(Stdio::null())
        .output()
        .expect("native_client");
    assert!(!client.status.success());
    assert!(
        String::from_utf8_lossy(&client.stderr).contains("NoExist"),
        "{}",
        String::from_utf8_lossy(&client.stderr)
    );

    // Enter stops the daemon as the end of its input does.
    daemon.stdin.as_mut().unwrap().write_all(b"\n").unwrap();
    assert!(daemon.finish(), "embedded_daemon failed");
    let _ = std::fs::remove_dir_all(&dir);
}
