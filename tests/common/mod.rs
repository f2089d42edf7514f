//! Helpers shared by the integration tests: servers on port 0, child
//! processes that are killed when dropped, and waiting for conditions with
//! a deadline (never a bare sleep).
#![allow(dead_code)]

pub mod js;
pub mod tls;
pub mod tokens;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use wspr::mounttable::{MountTable, MountTableConfig};
use wspr::rpc::{Client, Namespace, Server, ServerConfig};

/// The credentials every wsprd process of the tests shares (one
/// principal family), kept out of the user's home.
pub fn test_credentials() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("credentials")
}

/// Where a wsprd process of the tests keeps state (mount tables'
/// permissions): a directory of its own, out of the user's home, so that
/// no test's names carry over into another's.
pub fn test_state() -> std::path::PathBuf {
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("state-{}-{n}", std::process::id()))
}

/// The wsprd binary built for these tests.
pub fn wsprd() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_wsprd"));
    c.env("WSPR_CREDENTIALS", test_credentials());
    c.env("WSPR_STATE", test_state());
    c
}

/// The principal of [`test_credentials`]: what the wsprd processes of the
/// tests are, so that in-process servers, mount tables and clients are
/// one party with them.
pub fn test_principal() -> Arc<wspr::security::Principal> {
    Arc::new(
        wspr::security::Principal::load_or_create(&test_credentials(), "wspr-test")
            .expect("test credentials"),
    )
}

/// A client of the tests' principal.
pub fn test_client(roots: Vec<String>) -> Client {
    Client::with_principal(Namespace::new(roots), test_principal(), Default::default())
}

/// A mount table on its own listener, and a client whose root it is (both
/// the tests' principal, as the wsprd processes they start).
pub fn mount_table() -> (Server, Client) {
    let client = test_client(vec![]);
    let mt = mount_table_on(&client);
    client.namespace().set_roots(vec![mt.name()]);
    (mt, client)
}

/// A mount table on its own listener, whose client (for its own mounts
/// and calls) is `client`.
pub fn mount_table_on(client: &Client) -> Server {
    mount_table_at(client, wspr::clock::Clock::system())
}

/// Like [`mount_table`], its TTLs by `clock`.
#[allow(dead_code)]
pub fn mount_table_clocked(clock: &wspr::clock::Clock) -> (Server, Client) {
    let client = test_client(vec![]);
    let mt = mount_table_at(&client, clock.clone());
    client.namespace().set_roots(vec![mt.name()]);
    (mt, client)
}

fn mount_table_at(client: &Client, clock: wspr::clock::Clock) -> Server {
    let mut config = MountTableConfig::default();
    config.clock = clock;
    Server::listen_mount_table(
        "127.0.0.1:0",
        Arc::new(MountTable::new(config)),
        client.clone(),
        ServerConfig::default(),
    )
    .expect("mount table")
}

/// Polls `cond` until it holds; panics with `what` after `limit`.
pub fn wait_until(limit: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Threads of this process whose names start with `prefix`.
pub fn threads_named(prefix: &str) -> Vec<String> {
    let mut out = vec![];
    if let Ok(dir) = std::fs::read_dir("/proc/self/task") {
        for t in dir.flatten() {
            if let Ok(name) = std::fs::read_to_string(t.path().join("comm")) {
                let name = name.trim().to_string();
                if name.starts_with(prefix) {
                    out.push(name);
                }
            }
        }
    }
    out.sort();
    out
}

/// A child process, killed when dropped, whose stdout lines arrive on a
/// channel.
pub struct Proc {
    pub child: Child,
    pub lines: crossbeam_channel::Receiver<String>,
    pub stderr: Arc<Mutex<String>>,
    /// Disconnects once all of stderr is in `stderr` (the process closed it).
    stderr_read: crossbeam_channel::Receiver<()>,
}

impl Proc {
    pub fn spawn(mut cmd: Command) -> Proc {
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn wsprd");
        let (tx, rx) = crossbeam_channel::unbounded();
        let out = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let stderr = Arc::new(Mutex::new(String::new()));
        let err = child.stderr.take().unwrap();
        let sink = stderr.clone();
        let (read_tx, stderr_read) = crossbeam_channel::bounded::<()>(0);
        std::thread::spawn(move || {
            let _read = read_tx;
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                let mut s = sink.lock().unwrap();
                s.push_str(&line);
                s.push('\n');
            }
        });
        Proc {
            child,
            lines: rx,
            stderr,
            stderr_read,
        }
    }

    /// The next stdout line, within 20 s.
    pub fn line(&self) -> String {
        self.lines
            .recv_timeout(Duration::from_secs(20))
            .unwrap_or_else(|_| panic!("no output; stderr: {}", self.stderr.lock().unwrap()))
    }

    pub fn signal(&self, sig: &str) {
        Command::new("kill")
            .args([sig, &self.child.id().to_string()])
            .status()
            .expect("kill");
    }

    /// Waits for the process to exit (within 20 s), and for what it wrote
    /// to stderr to be in `stderr`; its status code.
    pub fn wait(&mut self) -> Option<i32> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(st) = self.child.try_wait().expect("wait") {
                let _ = self.stderr_read.recv_deadline(deadline);
                return st.code();
            }
            assert!(Instant::now() < deadline, "process did not exit");
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Log records captured in this test process.
pub fn captured_logs() -> &'static Mutex<Vec<String>> {
    static LOGS: OnceLock<Mutex<Vec<String>>> = OnceLock::new();
    LOGS.get_or_init(|| Mutex::new(Vec::new()))
}

struct Capture;

impl log::Log for Capture {
    fn enabled(&self, m: &log::Metadata) -> bool {
        m.level() <= log::Level::Info
    }
    fn log(&self, r: &log::Record) {
        if self.enabled(r.metadata()) {
            captured_logs()
                .lock()
                .unwrap()
                .push(format!("{} {}", r.level(), r.args()));
        }
    }
    fn flush(&self) {}
}

/// Captures log records at info and above into [`captured_logs`].
pub fn capture_logs() {
    static ONCE: OnceLock<()> = OnceLock::new();
    ONCE.get_or_init(|| {
        let _ = log::set_boxed_logger(Box::new(Capture));
        log::set_max_level(log::LevelFilter::Info);
    });
}

/// Whether a captured log line contains every one of `parts`.
pub fn logged(parts: &[&str]) -> bool {
    captured_logs()
        .lock()
        .unwrap()
        .iter()
        .any(|l| parts.iter().all(|p| l.contains(p)))
}
