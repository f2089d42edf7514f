//! The command line (contract section 9): argh definitions and what each
//! command does. Errors go to stderr with a non-zero exit status.

use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use argh::FromArgs;
use serde_json::Value;
use simplelog::{ColorChoice, ConfigBuilder, LevelFilter, TermLogger, TerminalMode};

use wspr::mounttable::{MountTable, MountTableConfig};
use wspr::rpc::{CallOptions, Client, Namespace, Server, ServerConfig};
use wspr::security::{BlessingPattern, Caveat, Principal, hex};
use wspr::{Error, Result};

/// The mount table address the tools use when no root is given.
const DEFAULT_ROOT: &str = "/127.0.0.1:8125";

#[derive(FromArgs)]
/// wspr: JavaScript programs as equals in an RPC network.
struct Top {
    #[argh(subcommand)]
    cmd: Cmd,
}

#[derive(FromArgs)]
#[argh(subcommand)]
enum Cmd {
    Serve(ServeCmd),
    Principal(PrincipalCmd),
    MountTable(MountTableCmd),
    Call(CallCmd),
    Glob(GlobCmd),
    Demo(DemoCmd),
}

#[derive(FromArgs)]
/// Run the daemon: websocket pipes for JavaScript at /ws, health at /health.
/// Prints where it listens and the name space root.
#[argh(subcommand, name = "serve")]
struct ServeCmd {
    /// credentials directory (default: $WSPR_CREDENTIALS, else
    /// ~/.config/wspr/credentials); created with a new principal if empty
    #[argh(option)]
    credentials: Option<String>,
    /// HTTP address (default 127.0.0.1:8124)
    #[argh(option, default = "String::from(\"127.0.0.1:8124\")")]
    listen: String,
    /// host that JavaScript-served servers listen on (default 127.0.0.1)
    #[argh(option, default = "String::from(\"127.0.0.1\")")]
    rpc_listen: String,
    /// a name space root (repeatable); none: run an embedded mount table
    #[argh(option)]
    namespace_root: Vec<String>,
    /// where the embedded mount table listens (default 127.0.0.1:0)
    #[argh(option, default = "String::from(\"127.0.0.1:0\")")]
    mounttable_listen: String,
    /// origins allowed besides localhost, comma-separated (* allows all)
    #[argh(option, default = "String::new()")]
    allowed_origins: String,
    /// how long a lookup waits for JavaScript, ms (default 10000)
    #[argh(option, default = "10_000")]
    lookup_timeout_ms: u64,
    /// largest websocket message, bytes (default 1048576)
    #[argh(option, default = "1 << 20")]
    max_message_bytes: usize,
    /// worker threads for JavaScript's requests (default 16)
    #[argh(option, default = "16")]
    workers: usize,
    /// most pipes at once; more get HTTP 503 (default 1024)
    #[argh(option, default = "1024")]
    max_pipes: usize,
    /// most flows in flight on one pipe (default 1024)
    #[argh(option, default = "1024")]
    max_flows_per_pipe: usize,
    /// most servers one pipe may serve (default 64)
    #[argh(option, default = "64")]
    max_servers_per_pipe: usize,
    /// most names one server may be mounted under (default 32)
    #[argh(option, default = "32")]
    max_names_per_server: usize,
    /// bytes of stream items JavaScript may send ahead of their reader on
    /// one flow (default 1048576)
    #[argh(option, default = "1 << 20")]
    max_stream_buffer_bytes: usize,
    /// let callers of any principal family call JavaScript servers
    #[argh(switch)]
    open_access: bool,
    /// also serve the demo object as demo/adder
    #[argh(switch)]
    demo: bool,
    /// seconds a mount lives without a refresh (default 60)
    #[argh(option, default = "60")]
    mount_ttl_secs: u64,
    /// ms of silence before a pipe is pinged (default 30000)
    #[argh(option, default = "30_000")]
    keepalive_ms: u64,
    /// log level: error, warn, info, debug, trace (default info)
    #[argh(option, default = "LevelFilter::Info")]
    log_level: LevelFilter,
}

#[derive(FromArgs)]
/// Show, create and bless principals (credentials directories).
#[argh(subcommand, name = "principal")]
struct PrincipalCmd {
    #[argh(subcommand)]
    cmd: PrincipalSub,
}

#[derive(FromArgs)]
#[argh(subcommand)]
enum PrincipalSub {
    Show(PrincipalShow),
    Create(PrincipalCreate),
    Bless(PrincipalBless),
    Trust(PrincipalTrust),
}

#[derive(FromArgs)]
/// Print a principal's public key, blessings and trusted roots.
#[argh(subcommand, name = "show")]
struct PrincipalShow {
    /// credentials directory
    #[argh(option)]
    credentials: Option<String>,
}

#[derive(FromArgs)]
/// Create a new principal self-blessed as NAME (refuses to replace one).
#[argh(subcommand, name = "create")]
struct PrincipalCreate {
    /// credentials directory
    #[argh(option)]
    credentials: Option<String>,
    /// the blessing name
    #[argh(positional)]
    name: String,
}

#[derive(FromArgs)]
/// Bless the principal in --to as BLESSER/EXTENSION; it gets the
/// blessing as its default and trusts this principal's root.
#[argh(subcommand, name = "bless")]
struct PrincipalBless {
    /// credentials directory of the blesser
    #[argh(option)]
    credentials: Option<String>,
    /// credentials directory of the principal to bless
    #[argh(option)]
    to: String,
    /// the blessing expires after this many seconds
    #[argh(option)]
    for_secs: Option<u64>,
    /// only for calls of this method (repeatable)
    #[argh(option)]
    method: Vec<String>,
    /// only when presented to peers matching this pattern (repeatable)
    #[argh(option)]
    peer: Vec<String>,
    /// the name component to add
    #[argh(positional)]
    extension: String,
}

#[derive(FromArgs)]
/// Trust the roots of the principal in --from (so that its blessings
/// count here).
#[argh(subcommand, name = "trust")]
struct PrincipalTrust {
    /// credentials directory of the principal that trusts
    #[argh(option)]
    credentials: Option<String>,
    /// credentials directory of the principal to trust
    #[argh(option)]
    from: String,
}

#[derive(FromArgs)]
/// Run a mount table on its own; prints its rooted name on stdout.
#[argh(subcommand, name = "mounttable")]
struct MountTableCmd {
    /// credentials directory (default: $WSPR_CREDENTIALS, else
    /// ~/.config/wspr/credentials); created with a new principal if empty
    #[argh(option)]
    credentials: Option<String>,
    /// address to listen on (default 127.0.0.1:8125)
    #[argh(option, default = "String::from(\"127.0.0.1:8125\")")]
    listen: String,
    /// log level: error, warn, info, debug, trace (default info)
    #[argh(option, default = "LevelFilter::Info")]
    log_level: LevelFilter,
}

#[derive(FromArgs)]
/// Call a method; prints the results as one JSON line (streamed items, if
/// any, each on a line before it).
#[argh(subcommand, name = "call")]
struct CallCmd {
    /// credentials directory (default: $WSPR_CREDENTIALS, else
    /// ~/.config/wspr/credentials); created with a new principal if empty
    #[argh(option)]
    credentials: Option<String>,
    /// a name space root, such as /127.0.0.1:8125 (repeatable; default:
    /// $WSPR_NAMESPACE_ROOT, else /127.0.0.1:8125)
    #[argh(option)]
    namespace_root: Vec<String>,
    /// give up after this many milliseconds
    #[argh(option)]
    timeout_ms: Option<u64>,
    /// send each line of stdin (a JSON value) as a stream item
    #[argh(switch)]
    stdin: bool,
    /// log level (default warn)
    #[argh(option, default = "LevelFilter::Warn")]
    log_level: LevelFilter,
    /// the object's name
    #[argh(positional)]
    name: String,
    /// the method (UpperCamelCase or lowerCamelCase)
    #[argh(positional)]
    method: String,
    /// arguments, each a JSON value
    #[argh(positional, greedy)]
    args: Vec<String>,
}

#[derive(FromArgs)]
/// List the names matching a pattern (`*` one element, `...` any depth):
/// one line per name, its servers after tabs.
#[argh(subcommand, name = "glob")]
struct GlobCmd {
    /// credentials directory (default: $WSPR_CREDENTIALS, else
    /// ~/.config/wspr/credentials); created with a new principal if empty
    #[argh(option)]
    credentials: Option<String>,
    /// a name space root (repeatable)
    #[argh(option)]
    namespace_root: Vec<String>,
    /// log level (default warn)
    #[argh(option, default = "LevelFilter::Warn")]
    log_level: LevelFilter,
    /// the pattern
    #[argh(positional)]
    pattern: String,
}

#[derive(FromArgs)]
/// Serve the demo object (Add, Divide, StreamingAdd); prints its rooted
/// name on stdout.
#[argh(subcommand, name = "demo")]
struct DemoCmd {
    /// credentials directory (default: $WSPR_CREDENTIALS, else
    /// ~/.config/wspr/credentials); created with a new principal if empty
    #[argh(option)]
    credentials: Option<String>,
    /// a name space root (repeatable)
    #[argh(option)]
    namespace_root: Vec<String>,
    /// the name to serve under (default demo/adder)
    #[argh(option, default = "String::from(\"demo/adder\")")]
    name: String,
    /// address to listen on (default 127.0.0.1:0)
    #[argh(option, default = "String::from(\"127.0.0.1:0\")")]
    listen: String,
    /// seconds a mount lives without a refresh (default 60)
    #[argh(option, default = "60")]
    mount_ttl_secs: u64,
    /// log level (default info)
    #[argh(option, default = "LevelFilter::Info")]
    log_level: LevelFilter,
}

fn init_log(level: LevelFilter) {
    let config = ConfigBuilder::new()
        .set_thread_level(LevelFilter::Off)
        .set_target_level(LevelFilter::Off)
        .set_location_level(LevelFilter::Off)
        .build();
    let _ = TermLogger::init(level, config, TerminalMode::Stderr, ColorChoice::Never);
}

fn credentials_dir(flag: &Option<String>) -> PathBuf {
    flag.as_ref()
        .map(PathBuf::from)
        .unwrap_or_else(Principal::default_dir)
}

/// The principal of `--credentials`, created if the directory has none.
fn credentials(flag: &Option<String>) -> Result<Arc<Principal>> {
    let dir = credentials_dir(flag);
    Ok(Arc::new(Principal::load_or_create(
        &dir,
        &Principal::default_name(),
    )?))
}

fn client(roots_flag: &[String], credentials_flag: &Option<String>) -> Result<Client> {
    Ok(Client::with_principal(
        Namespace::new(roots(roots_flag)),
        credentials(credentials_flag)?,
        Default::default(),
    ))
}

fn roots(flags: &[String]) -> Vec<String> {
    if !flags.is_empty() {
        return flags.to_vec();
    }
    match std::env::var("WSPR_NAMESPACE_ROOT") {
        Ok(v) if !v.trim().is_empty() => v.split(',').map(|s| s.trim().to_string()).collect(),
        _ => vec![DEFAULT_ROOT.to_string()],
    }
}

/// Runs the command line; returns the exit status.
pub fn main() -> i32 {
    let top: Top = argh::from_env();
    let result = match top.cmd {
        Cmd::Serve(c) => serve(c),
        Cmd::Principal(c) => principal(c),
        Cmd::MountTable(c) => mounttable(c),
        Cmd::Call(c) => call(c),
        Cmd::Glob(c) => glob(c),
        Cmd::Demo(c) => demo(c),
    };
    match result {
        Ok(()) => 0,
        Err(e) => {
            // The whole id: an application's own ids are not abbreviated.
            eprintln!("wsprd: {}: {}", e.id(), e.msg());
            1
        }
    }
}

/// Blocks until SIGINT or SIGTERM.
fn wait_for_signal() -> Result<()> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM])
        .map_err(|e| Error::internal(format!("cannot handle signals: {e}")))?;
    if let Some(sig) = signals.forever().next() {
        log::info!("signal {sig}: stopping");
    }
    Ok(())
}

fn print_line(s: &str) -> Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{s}")
        .and_then(|_| out.flush())
        .map_err(|e| Error::internal(format!("writing to stdout: {e}")))
}

fn serve(c: ServeCmd) -> Result<()> {
    init_log(c.log_level);
    let mut config = wspr::wsprd::Config::default();
    config.listen = c.listen;
    config.rpc_listen = c.rpc_listen;
    config.namespace_roots = c.namespace_root;
    config.mounttable_listen = c.mounttable_listen;
    config.allowed_origins = c
        .allowed_origins
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect();
    config.lookup_timeout = Duration::from_millis(c.lookup_timeout_ms);
    config.max_message_bytes = c.max_message_bytes;
    config.workers = c.workers;
    config.max_pipes = c.max_pipes;
    config.max_flows_per_pipe = c.max_flows_per_pipe;
    config.max_servers_per_pipe = c.max_servers_per_pipe;
    config.max_names_per_server = c.max_names_per_server;
    config.max_stream_buffer_bytes = c.max_stream_buffer_bytes;
    config.open_access = c.open_access;
    config.serve_demo = c.demo;
    config.mount_ttl = Duration::from_secs(c.mount_ttl_secs);
    config.keepalive = Duration::from_millis(c.keepalive_ms);
    config.principal = Some(credentials(&c.credentials)?);
    let daemon = wspr::wsprd::Daemon::spawn(config)?;
    print_line(&format!("wsprd listening on http://{}", daemon.http_addr()))?;
    print_line(&format!(
        "name space root {}",
        daemon.namespace_roots().join(" ")
    ))?;
    wait_for_signal()?;
    daemon.shutdown();
    Ok(())
}

fn mounttable(c: MountTableCmd) -> Result<()> {
    init_log(c.log_level);
    let client = Client::with_principal(
        Namespace::new(vec![]),
        credentials(&c.credentials)?,
        Default::default(),
    );
    let server = Server::listen_with(
        &c.listen,
        Arc::new(MountTable::new(MountTableConfig::default())),
        client,
        ServerConfig::default(),
        true,
    )?;
    log::info!("mount table at {}", server.name());
    print_line(&server.name())?;
    wait_for_signal()?;
    server.stop();
    Ok(())
}

fn parse_json(s: &str, what: &str) -> Result<Value> {
    serde_json::from_str(s).map_err(|e| {
        Error::bad_arg(format!(
            "{what} {s:?} is not JSON ({e}); quote strings, e.g. '\"text\"'"
        ))
    })
}

fn call(c: CallCmd) -> Result<()> {
    init_log(c.log_level);
    let args = c
        .args
        .iter()
        .enumerate()
        .map(|(i, a)| parse_json(a, &format!("argument {}", i + 1)))
        .collect::<Result<Vec<_>>>()?;
    let client = client(&c.namespace_root, &c.credentials)?;
    let opts = match c.timeout_ms {
        Some(ms) => CallOptions::timeout(Duration::from_millis(ms)),
        None => CallOptions::default(),
    };
    let mut call = client.start_call(&c.name, &c.method, args, opts)?;
    let handle = call.handle();
    let stdin = c.stdin;
    // Not joined: once the call has ended nothing waits for stdin (which
    // may never end); the thread goes with the process.
    let (fed_tx, fed) = crossbeam_channel::bounded(1);
    std::thread::Builder::new()
        .name("stdin".into())
        .spawn(move || {
            let feed = || -> Result<()> {
                if stdin {
                    for (i, line) in std::io::stdin().lock().lines().enumerate() {
                        let line =
                            line.map_err(|e| Error::internal(format!("reading stdin: {e}")))?;
                        if line.trim().is_empty() {
                            continue;
                        }
                        handle.send(&parse_json(&line, &format!("stdin line {}", i + 1))?)?;
                    }
                }
                handle.close_send()
            };
            let _ = fed_tx.send(feed());
        })
        .map_err(|e| Error::internal(format!("cannot start a thread: {e}")))?;
    while let Some(item) = call.recv()? {
        print_line(&item.to_string())?;
    }
    // The call's own outcome wins: a server may finish before it has read
    // every item, which ends the feeding with an error.
    let results = call.finish()?;
    if let Ok(Err(e)) = fed.try_recv() {
        log::warn!("not every stdin item was sent: {e}");
    }
    print_line(&Value::Array(results).to_string())
}

fn glob(c: GlobCmd) -> Result<()> {
    init_log(c.log_level);
    let client = client(&c.namespace_root, &c.credentials)?;
    for e in client.glob(&c.pattern)? {
        let mut line = e.name.clone();
        for s in &e.servers {
            line.push('\t');
            line.push_str(&s.server);
        }
        print_line(&line)?;
    }
    Ok(())
}

fn demo(c: DemoCmd) -> Result<()> {
    init_log(c.log_level);
    let client = client(&c.namespace_root, &c.credentials)?;
    let mut config = ServerConfig::default();
    config.mount_ttl = Duration::from_secs(c.mount_ttl_secs.max(1));
    let server = Server::listen_with(&c.listen, Arc::new(wspr::demo::Demo), client, config, false)?;
    server.add_name(&c.name)?;
    log::info!("demo object served as {} at {}", c.name, server.name());
    print_line(&server.name())?;
    wait_for_signal()?;
    server.stop();
    Ok(())
}

fn principal(c: PrincipalCmd) -> Result<()> {
    init_log(LevelFilter::Warn);
    match c.cmd {
        PrincipalSub::Show(s) => {
            let dir = credentials_dir(&s.credentials);
            let p = Principal::load(&dir)?;
            print_line(&format!("credentials {}", dir.display()))?;
            print_line(&format!("public key {}", hex(&p.public_key())))?;
            for b in p.blessings() {
                print_line(&format!(
                    "blessing {} (root {})",
                    b.name(),
                    hex(&b.root_key())
                ))?;
            }
            for r in p.roots() {
                print_line(&format!("trusts root {}", hex(r)))?;
            }
            Ok(())
        }
        PrincipalSub::Create(s) => {
            let dir = credentials_dir(&s.credentials);
            if dir.join(wspr::security::CREDENTIALS_FILE).exists() {
                return Err(Error::exists(format!(
                    "{} already holds a principal",
                    dir.display()
                )));
            }
            let p = Principal::load_or_create(&dir, &s.name)?;
            print_line(&format!(
                "created {} in {}",
                p.names().join(", "),
                dir.display()
            ))
        }
        PrincipalSub::Bless(s) => {
            let blesser = Principal::load(&credentials_dir(&s.credentials))?;
            let to = PathBuf::from(&s.to);
            let mut blessee = Principal::load(&to)?;
            let mut caveats = vec![];
            if let Some(secs) = s.for_secs {
                caveats.push(Caveat::expiry_in(Duration::from_secs(secs)));
            }
            if !s.method.is_empty() {
                caveats.push(Caveat::Method(s.method.clone()));
            }
            if !s.peer.is_empty() {
                caveats.push(Caveat::PeerBlessings(
                    s.peer
                        .iter()
                        .map(|p| BlessingPattern::new(p))
                        .collect::<Result<_>>()?,
                ));
            }
            let b = blesser.bless(&blessee.public_key(), &s.extension, caveats)?;
            let name = b.name();
            blessee.trust(b.root_key());
            blessee.add_blessing(b)?;
            blessee.save(&to)?;
            print_line(&format!("blessed {} as {name}", to.display()))
        }
        PrincipalSub::Trust(s) => {
            let dir = credentials_dir(&s.credentials);
            let mut p = Principal::load(&dir)?;
            let other = Principal::load(&PathBuf::from(&s.from))?;
            for b in other.blessings() {
                p.trust(b.root_key());
            }
            p.save(&dir)?;
            print_line(&format!(
                "{} now trusts the roots of {}",
                dir.display(),
                s.from
            ))
        }
    }
}
