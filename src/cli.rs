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
use wspr::naming::Name;
use wspr::rpc::{CallOptions, Client, Namespace, Server, ServerConfig, env_roots, root_name};
use wspr::security::{BlessingPattern, Caveat, Principal, hex};
use wspr::{Error, Result};

use wspr::rpc::DEFAULT_ROOT;
/// Where `serve` runs its embedded mount table unless told (the address of
/// [`DEFAULT_ROOT`]).
const DEFAULT_MOUNTTABLE_LISTEN: &str = "127.0.0.1:8125";

#[derive(FromArgs)]
/// wspr: JavaScript programs as equals in an RPC network.
struct Top {
    /// print the version and exit
    #[argh(switch)]
    version: bool,
    #[argh(subcommand)]
    cmd: Option<Cmd>,
}

#[derive(FromArgs)]
#[argh(subcommand)]
// (Made once, at the start: serve's many flags cost nothing worth a box.)
#[allow(clippy::large_enum_variant)]
enum Cmd {
    Serve(ServeCmd),
    Principal(PrincipalCmd),
    MountTable(MountTableCmd),
    Call(CallCmd),
    Glob(GlobCmd),
    Demo(DemoCmd),
    Mount(MountCmd),
    Unmount(UnmountCmd),
    Perms(PermsCmd),
    Delete(DeleteCmd),
}

#[derive(FromArgs)]
/// Run the daemon: websocket pipes for JavaScript at /ws, health at /health,
/// figures for Prometheus at /metrics.
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
    /// a name space root, such as /127.0.0.1:8125 (repeatable); none: run
    /// an embedded mount table
    #[argh(option)]
    namespace_root: Vec<String>,
    /// where the embedded mount table listens (default 127.0.0.1:8125, or
    /// a free port with a warning if that is in use)
    #[argh(option)]
    mounttable_listen: Option<String>,
    /// where the embedded mount table keeps its permissions between runs
    /// (default: $WSPR_STATE, else ~/.local/state/wspr, then
    /// mounttable/HOST_PORT; none for port 0; "off": memory only)
    #[argh(option)]
    mounttable_state_dir: Option<String>,
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
    /// most workers one pipe's requests may hold at once; its other
    /// requests wait behind its own (default 4)
    #[argh(option, default = "4")]
    max_workers_per_pipe: usize,
    /// most streaming requests the servers of one pipe may have in flight,
    /// each holding a thread (default 32)
    #[argh(option, default = "32")]
    max_streams_per_pipe: usize,
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
    /// bytes of stream items JavaScript may send ahead of their readers
    /// over all the flows of one pipe (default 16777216)
    #[argh(option, default = "16 << 20")]
    max_pipe_buffer_bytes: usize,
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
    /// serve https:// and wss:// with this certificate chain (PEM; read
    /// again on SIGHUP); needs --tls-key
    #[argh(option)]
    tls_cert: Option<String>,
    /// the private key of --tls-cert (PEM)
    #[argh(option)]
    tls_key: Option<String>,
    /// listen on an address other than loopback without TLS (traffic in
    /// the clear; logged as a warning)
    #[argh(switch)]
    insecure_listen: bool,
    /// trust tokens (JWTs) whose iss is NAME, signed by the public key in
    /// KEYFILE (PEM: Ed25519, ECDSA P-256/P-384 or RSA), as NAME=KEYFILE
    /// (repeatable; KEYFILE is read again on SIGHUP); a pipe presenting
    /// one is its user's, DAEMON/ORIGIN/NAME:SUBJECT
    #[argh(option)]
    token_issuer: Vec<String>,
    /// an audience tokens must name (aud), such as this daemon's https URL
    /// (repeatable; needed with --token-issuer)
    #[argh(option)]
    token_audience: Vec<String>,
    /// close pipes that do not present a token first
    #[argh(switch)]
    require_token: bool,
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
/// blessing as its default and trusts this principal's root for that
/// root's own name and below (nothing else).
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
/// Trust the principal in --from as a root: its own key, for the names of
/// its self-signed blessings and below (NAME/...), or for --pattern. The
/// roots of blessings it holds from others are trusted only with
/// --blessers.
#[argh(subcommand, name = "trust")]
struct PrincipalTrust {
    /// credentials directory of the principal that trusts
    #[argh(option)]
    credentials: Option<String>,
    /// credentials directory of the principal to trust
    #[argh(option)]
    from: String,
    /// the names to trust it for (default: each of its root names and
    /// below, NAME/...); `...` trusts it for every name
    #[argh(option)]
    pattern: Option<String>,
    /// also trust the roots of the blessings it was given by others, each
    /// for that root's own name and below
    #[argh(switch)]
    blessers: bool,
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
    /// where the permissions are kept between runs (default: $WSPR_STATE,
    /// else ~/.local/state/wspr, then mounttable/HOST_PORT; none for port
    /// 0; "off": memory only)
    #[argh(option)]
    state_dir: Option<String>,
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
    /// the server must prove a blessing name matching this pattern, else
    /// nothing is sent to it (repeatable: any one of them)
    #[argh(option)]
    server_blessing: Vec<String>,
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
    /// a name space root, such as /127.0.0.1:8125 (repeatable; default:
    /// $WSPR_NAMESPACE_ROOT, else /127.0.0.1:8125)
    #[argh(option)]
    namespace_root: Vec<String>,
    /// log level (default warn)
    #[argh(option, default = "LevelFilter::Warn")]
    log_level: LevelFilter,
    /// the pattern: `*` any run of characters, `?` one, `[a-z]` one of a
    /// set, `[^a-z]` one not in it, `\x` the character x; `...` any number
    /// of elements
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
    /// a name space root, such as /127.0.0.1:8125 (repeatable; default:
    /// $WSPR_NAMESPACE_ROOT, else /127.0.0.1:8125)
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

#[derive(FromArgs)]
/// Mount SERVER (a rooted name or endpoint) under NAME; the mount table
/// records the names this principal proves as the server's, unless
/// --server-blessing says what the server proves.
#[argh(subcommand, name = "mount")]
struct MountCmd {
    /// credentials directory (default: $WSPR_CREDENTIALS, else
    /// ~/.config/wspr/credentials); created with a new principal if empty
    #[argh(option)]
    credentials: Option<String>,
    /// a name space root (repeatable)
    #[argh(option)]
    namespace_root: Vec<String>,
    /// seconds the mount lives (default 60; nothing refreshes it)
    #[argh(option, default = "60")]
    ttl_secs: u64,
    /// a blessing name or pattern the server proves (repeatable)
    #[argh(option)]
    server_blessing: Vec<String>,
    /// log level (default warn)
    #[argh(option, default = "LevelFilter::Warn")]
    log_level: LevelFilter,
    /// the name
    #[argh(positional)]
    name: String,
    /// the server's rooted name or endpoint
    #[argh(positional)]
    server: String,
}

#[derive(FromArgs)]
/// Unmount SERVER from NAME (every server of NAME without SERVER).
#[argh(subcommand, name = "unmount")]
struct UnmountCmd {
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
    /// the name
    #[argh(positional)]
    name: String,
    /// the server (default: all)
    #[argh(positional, default = "String::new()")]
    server: String,
}

#[derive(FromArgs)]
/// Read or set who may do what to a name (its mount table's permissions).
#[argh(subcommand, name = "perms")]
struct PermsCmd {
    #[argh(subcommand)]
    cmd: PermsSub,
}

#[derive(FromArgs)]
#[argh(subcommand)]
enum PermsSub {
    Get(PermsGet),
    Set(PermsSet),
}

#[derive(FromArgs)]
/// Print the permissions in force at NAME as one JSON line:
/// {"permissions": {TAG: [PATTERN..]}, "version": "N"}.
#[argh(subcommand, name = "get")]
struct PermsGet {
    /// credentials directory
    #[argh(option)]
    credentials: Option<String>,
    /// a name space root (repeatable)
    #[argh(option)]
    namespace_root: Vec<String>,
    /// log level (default warn)
    #[argh(option, default = "LevelFilter::Warn")]
    log_level: LevelFilter,
    /// the name ("" for the root)
    #[argh(positional)]
    name: String,
}

#[derive(FromArgs)]
/// Set the permissions of NAME (made, as yours, if missing) from JSON
/// {TAG: [PATTERN..]}; tags left out are the parent's. Tags: Resolve,
/// Read, Mount, Create, Admin.
#[argh(subcommand, name = "set")]
struct PermsSet {
    /// credentials directory
    #[argh(option)]
    credentials: Option<String>,
    /// a name space root (repeatable)
    #[argh(option)]
    namespace_root: Vec<String>,
    /// only if the permissions are still at this version (from perms get)
    #[argh(option, default = "String::new()")]
    version: String,
    /// log level (default warn)
    #[argh(option, default = "LevelFilter::Warn")]
    log_level: LevelFilter,
    /// the name ("" for the root)
    #[argh(positional)]
    name: String,
    /// the permissions, as JSON
    #[argh(positional)]
    permissions: String,
}

#[derive(FromArgs)]
/// Delete NAME from its mount table (servers, permissions and all), so
/// that anyone may take it again.
#[argh(subcommand, name = "delete")]
struct DeleteCmd {
    /// credentials directory
    #[argh(option)]
    credentials: Option<String>,
    /// a name space root (repeatable)
    #[argh(option)]
    namespace_root: Vec<String>,
    /// also delete every name below it
    #[argh(switch)]
    subtree: bool,
    /// log level (default warn)
    #[argh(option, default = "LevelFilter::Warn")]
    log_level: LevelFilter,
    /// the name
    #[argh(positional)]
    name: String,
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

/// The client of a tool: `roots`, and the principal of `--credentials`
/// (what [`Client::from_env`] makes, with the flags' say first).
fn client(roots: &Roots, credentials_flag: &Option<String>) -> Result<Client> {
    Client::builder()
        .namespace_roots(roots.list.clone())
        .credentials(credentials_dir(credentials_flag))
        .build()
}

/// Where the name space roots of a command came from.
#[derive(Clone, Copy, PartialEq, Eq)]
enum RootsFrom {
    Flag,
    Env,
    Default,
}

/// The name space roots of a command, rooted.
struct Roots {
    list: Vec<String>,
    from: RootsFrom,
}

impl Roots {
    /// `--namespace-root`, else `WSPR_NAMESPACE_ROOT`, else the default.
    fn of(flags: &[String]) -> Result<Roots> {
        if !flags.is_empty() {
            let list = flags.iter().map(|r| root_name(r)).collect::<Result<_>>()?;
            return Ok(Roots {
                list,
                from: RootsFrom::Flag,
            });
        }
        Ok(match env_roots()? {
            Some(list) => Roots {
                list,
                from: RootsFrom::Env,
            },
            None => Roots {
                list: vec![DEFAULT_ROOT.to_string()],
                from: RootsFrom::Default,
            },
        })
    }

    /// `e` with a hint when it is a failure to reach one of the roots.
    fn explain(&self, e: Error) -> Error {
        let reached = |root: &String| {
            Name::parse(root).ok().and_then(|n| {
                n.endpoint()
                    .map(|ep| e.msg().contains(&format!("connecting to {}", ep.address())))
            }) == Some(true)
        };
        if !self.list.iter().any(reached) {
            return e;
        }
        let hint = match self.from {
            RootsFrom::Default => format!(
                "is `wsprd serve` running? (root {DEFAULT_ROOT}; set --namespace-root or WSPR_NAMESPACE_ROOT)"
            ),
            RootsFrom::Env => format!(
                "is a mount table running at {}? (root from WSPR_NAMESPACE_ROOT)",
                self.list.join(", ")
            ),
            RootsFrom::Flag => format!(
                "is a mount table running at {}? (root from --namespace-root)",
                self.list.join(", ")
            ),
        };
        Error::new(e.id(), format!("{}; {hint}", e.msg()))
    }
}

/// The subcommand words at the start of `args` (`call`, `principal
/// bless`): each leading word that argh's help takes as a subcommand (its
/// help differs from its parent's; a positional argument's does not).
fn command_path(args: &[&str]) -> Vec<String> {
    let help = |path: &[&str]| {
        let mut probe = path.to_vec();
        probe.push("--help");
        match Top::from_args(&["wsprd"], &probe) {
            Err(e) if e.status.is_ok() => Some(e.output),
            _ => None,
        }
    };
    let mut path = vec![];
    let mut parent = help(&[]);
    for word in args.iter().take_while(|a| !a.starts_with('-')).take(3) {
        path.push(*word);
        let this = help(&path);
        if this.is_none() || this == parent {
            path.pop();
            break;
        }
        parent = this;
    }
    path.iter().map(|w| w.to_string()).collect()
}

/// Where to read about `path`'s arguments.
fn help_line(path: &[String]) -> String {
    let cmd = std::iter::once("wsprd".to_string())
        .chain(path.iter().cloned())
        .collect::<Vec<_>>()
        .join(" ");
    format!("Run {cmd} --help for more information.")
}

/// Runs the command line; returns the exit status.
pub fn main() -> i32 {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let path = command_path(&args);
    let top = match Top::from_args(&["wsprd"], &args) {
        Ok(top) => top,
        Err(exit) if exit.status.is_ok() => {
            print!("{}", exit.output);
            return 0;
        }
        Err(exit) => {
            // Where the arguments are explained: the subcommand's help.
            eprintln!("{}\n{}", exit.output.trim_end(), help_line(&path));
            return 1;
        }
    };
    let cmd = match (top.version, top.cmd) {
        (true, _) => {
            println!("wsprd {}", env!("CARGO_PKG_VERSION"));
            return 0;
        }
        (false, Some(cmd)) => cmd,
        (false, None) => {
            let help = Top::from_args(&["wsprd"], &["--help"])
                .err()
                .map(|e| e.output)
                .unwrap_or_default();
            eprintln!("wsprd: give a command\n\n{}", help.trim_end());
            return 1;
        }
    };
    let result = match cmd {
        Cmd::Serve(c) => serve(c),
        Cmd::Principal(c) => principal(c),
        Cmd::MountTable(c) => mounttable(c),
        Cmd::Call(c) => call(c),
        Cmd::Glob(c) => glob(c),
        Cmd::Demo(c) => demo(c),
        Cmd::Mount(c) => mount(c),
        Cmd::Unmount(c) => unmount(c),
        Cmd::Perms(c) => perms(c),
        Cmd::Delete(c) => delete(c),
    };
    match result {
        Ok(()) => 0,
        Err(e) => {
            // The whole id: an application's own ids are not abbreviated.
            eprintln!("wsprd: {}: {}", e.id(), e.msg());
            // Bad input of the user's: where the arguments are explained.
            if e.is(wspr::error::ids::BAD_ARG) {
                eprintln!("{}", help_line(&path));
            }
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

/// Blocks until SIGINT or SIGTERM, calling `hangup` at each SIGHUP.
fn wait_for_signal_or_hangup(hangup: impl Fn()) -> Result<()> {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP])
        .map_err(|e| Error::internal(format!("cannot handle signals: {e}")))?;
    for sig in signals.forever() {
        if sig == SIGHUP {
            hangup();
            continue;
        }
        log::info!("signal {sig}: stopping");
        break;
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
    config.namespace_roots = c
        .namespace_root
        .iter()
        .map(|r| root_name(r))
        .collect::<Result<_>>()?;
    // The tools' default root, unless told otherwise (then exactly that).
    config.mounttable_fallback = c.mounttable_listen.is_none();
    config.mounttable_listen = c
        .mounttable_listen
        .unwrap_or_else(|| DEFAULT_MOUNTTABLE_LISTEN.to_string());
    config.mounttable_state_dir = state_dir(&c.mounttable_state_dir, &config.mounttable_listen);
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
    config.max_workers_per_pipe = c.max_workers_per_pipe;
    config.max_streams_per_pipe = c.max_streams_per_pipe;
    config.max_pipes = c.max_pipes;
    config.max_flows_per_pipe = c.max_flows_per_pipe;
    config.max_servers_per_pipe = c.max_servers_per_pipe;
    config.max_names_per_server = c.max_names_per_server;
    config.max_stream_buffer_bytes = c.max_stream_buffer_bytes;
    config.max_pipe_buffer_bytes = c.max_pipe_buffer_bytes;
    config.open_access = c.open_access;
    config.serve_demo = c.demo;
    config.mount_ttl = Duration::from_secs(c.mount_ttl_secs);
    config.keepalive = Duration::from_millis(c.keepalive_ms);
    config.tls = match (c.tls_cert, c.tls_key) {
        (Some(cert), Some(key)) => Some(wspr::wsprd::TlsConfig::new(cert, key)),
        (None, None) => None,
        _ => return Err(Error::bad_arg("--tls-cert and --tls-key go together")),
    };
    config.insecure_listen = c.insecure_listen;
    config.token_issuers = c
        .token_issuer
        .iter()
        .map(|i| match i.split_once('=') {
            Some((name, file)) if !file.is_empty() => Ok(wspr::wsprd::TokenIssuer::new(name, file)),
            _ => Err(Error::bad_arg(format!(
                "--token-issuer {i:?}: give NAME=KEYFILE"
            ))),
        })
        .collect::<Result<_>>()?;
    config.token_audiences = c.token_audience;
    config.require_token = c.require_token;
    // Every address and file is checked (by spawn) before the credentials
    // are made or anything is started.
    let daemon = wspr::wsprd::Daemon::builder()
        .config(config)
        .credentials(credentials_dir(&c.credentials))
        .spawn()?;
    let scheme = if daemon.uses_tls() { "https" } else { "http" };
    print_line(&format!(
        "wsprd listening on {scheme}://{}",
        daemon.http_addr()
    ))?;
    print_line(&format!(
        "name space root {}",
        daemon.namespace_roots().join(" ")
    ))?;
    wait_for_signal_or_hangup(|| {
        // (Each reload is logged by the daemon, done or not.)
        if daemon.uses_tls() {
            log::info!("SIGHUP: reloading the TLS certificate");
            let _ = daemon.reload_tls();
        }
        if daemon.uses_tokens() {
            log::info!("SIGHUP: reloading the token issuers' keys");
            let _ = daemon.reload_token_keys();
        }
        if !daemon.uses_tls() && !daemon.uses_tokens() {
            log::info!("SIGHUP: nothing to reload (no TLS, no token issuers)");
        }
    })?;
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
    let table = match state_dir(&c.state_dir, &c.listen) {
        Some(dir) => MountTable::with_state(MountTableConfig::default(), &dir)?,
        None => {
            log::info!("permissions kept in memory only");
            MountTable::new(MountTableConfig::default())
        }
    };
    let server =
        Server::listen_mount_table(&c.listen, Arc::new(table), client, ServerConfig::default())?;
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

/// One line of `--stdin`, numbered from 1.
fn parse_line(n: usize, line: &str) -> Result<Value> {
    serde_json::from_str(line).map_err(|e| {
        Error::bad_arg(format!(
            "line {n} is not JSON: {line:?} ({e}); quote strings, e.g. \"text\""
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
    let roots = Roots::of(&c.namespace_root)?;
    let client = client(&roots, &c.credentials)?;
    let opts = match c.timeout_ms {
        Some(ms) => CallOptions::timeout(Duration::from_millis(ms)),
        None => CallOptions::default(),
    }
    .with_server_blessings(
        c.server_blessing
            .iter()
            .map(|p| BlessingPattern::new(p))
            .collect::<Result<_>>()?,
    );
    let mut call = client
        .start_call(&c.name, &c.method, args, opts)
        .map_err(|e| roots.explain(e))?;
    let handle = call.handle();
    let stdin = c.stdin;
    // Not joined: once the call has ended nothing waits for stdin (which
    // may never end); the thread goes with the process.
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
                        let item = parse_line(i + 1, &line)?;
                        if let Err(e) = handle.send(&item) {
                            // The call has ended (its outcome is the
                            // command's) or cannot take more.
                            log::warn!("stdin line {} was not sent: {e}", i + 1);
                            return Ok(());
                        }
                    }
                }
                let _ = handle.close_send();
                Ok(())
            };
            // Input that cannot be sent ends the call with its error, which
            // the command then reports.
            if let Err(e) = feed() {
                handle.end(e);
            }
        })
        .map_err(|e| Error::internal(format!("cannot start a thread: {e}")))?;
    while let Some(item) = call.recv()? {
        print_line(&item.to_string())?;
    }
    // The call's own outcome wins: a server may finish before it has read
    // every item, which ends the feeding.
    let results = call.finish()?;
    print_line(&Value::Array(results).to_string())
}

fn glob(c: GlobCmd) -> Result<()> {
    init_log(c.log_level);
    let roots = Roots::of(&c.namespace_root)?;
    // A malformed pattern is refused before anything is asked.
    wspr::glob::Pattern::parse(&c.pattern)?;
    let client = client(&roots, &c.credentials)?;
    for e in client.glob(&c.pattern).map_err(|e| roots.explain(e))? {
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
    let roots = Roots::of(&c.namespace_root)?;
    let client = client(&roots, &c.credentials)?;
    let mut config = ServerConfig::default();
    config.mount_ttl = Duration::from_secs(c.mount_ttl_secs.max(1));
    let server = Server::listen_with(&c.listen, Arc::new(wspr::demo::Demo), client, config)?;
    server.add_name(&c.name).map_err(|e| roots.explain(e))?;
    log::info!("demo object served as {} at {}", c.name, server.name());
    print_line(&server.name())?;
    wait_for_signal()?;
    server.stop();
    Ok(())
}

/// `principal trust`: see [`PrincipalTrust`].
fn principal_trust(s: PrincipalTrust) -> Result<()> {
    let dir = credentials_dir(&s.credentials);
    let mut p = Principal::load(&dir)?;
    let other = Principal::load(&PathBuf::from(&s.from))?;
    let pattern = s.pattern.as_deref().map(BlessingPattern::new).transpose()?;
    let mut added: Vec<(String, String)> = vec![];
    let mut trust = |p: &mut Principal, key: [u8; 32], pattern: BlessingPattern| {
        let entry = (hex(&key), pattern.to_string());
        if !added.contains(&entry) {
            added.push(entry);
        }
        p.trust(key, pattern);
    };
    // (Each blessing's root name: its first certificate's.)
    let root_name = |b: &wspr::security::Blessing| {
        BlessingPattern::and_below(b.chain().first().map_or("", |c| c.extension.as_str()))
    };
    let own_key = other.public_key();
    match &pattern {
        Some(pattern) => trust(&mut p, own_key, pattern.clone()),
        // Its own roots: the blessings it signed itself.
        None => {
            for b in other.blessings().iter().filter(|b| b.root_key() == own_key) {
                trust(&mut p, own_key, root_name(b)?);
            }
        }
    }
    if s.blessers {
        for b in other.blessings().iter().filter(|b| b.root_key() != own_key) {
            trust(&mut p, b.root_key(), root_name(b)?);
        }
    }
    if added.is_empty() {
        return Err(Error::bad_arg(format!(
            "{} holds no self-signed blessing, so it is no root by itself; give --pattern to trust its key for those names, or --blessers to trust the roots of the blessings it holds",
            s.from
        )));
    }
    p.save(&dir)?;
    for (key, pattern) in added {
        print_line(&format!(
            "{} now trusts root {key} for {pattern}",
            dir.display()
        ))?;
    }
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
                print_line(&format!("trusts root {} for {}", hex(&r.key), r.pattern))?;
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
            blessee.trust_root_of(&b)?;
            blessee.add_blessing(b)?;
            blessee.save(&to)?;
            print_line(&format!("blessed {} as {name}", to.display()))
        }
        PrincipalSub::Trust(s) => principal_trust(s),
    }
}

/// A mount table's state directory: the flag's (`off`: none), else the
/// default for its address.
fn state_dir(flag: &Option<String>, listen: &str) -> Option<PathBuf> {
    match flag.as_deref() {
        Some("off") => None,
        Some(d) => Some(PathBuf::from(d)),
        None => MountTable::default_state_dir(listen),
    }
}

fn mount(c: MountCmd) -> Result<()> {
    init_log(c.log_level);
    let roots = Roots::of(&c.namespace_root)?;
    let client = client(&roots, &c.credentials)?;
    client
        .mount_with(
            &c.name,
            &c.server,
            Duration::from_secs(c.ttl_secs.max(1)),
            &c.server_blessing,
        )
        .map_err(|e| roots.explain(e))
}

fn unmount(c: UnmountCmd) -> Result<()> {
    init_log(c.log_level);
    let roots = Roots::of(&c.namespace_root)?;
    client(&roots, &c.credentials)?
        .unmount(&c.name, &c.server)
        .map_err(|e| roots.explain(e))
}

fn perms(c: PermsCmd) -> Result<()> {
    match c.cmd {
        PermsSub::Get(g) => {
            init_log(g.log_level);
            let roots = Roots::of(&g.namespace_root)?;
            let client = client(&roots, &g.credentials)?;
            let (permissions, version) = client
                .get_permissions(&g.name)
                .map_err(|e| roots.explain(e))?;
            print_line(
                &serde_json::json!({"permissions": permissions, "version": version}).to_string(),
            )
        }
        PermsSub::Set(s) => {
            init_log(s.log_level);
            let permissions: wspr::security::access::Permissions =
                serde_json::from_str(&s.permissions).map_err(|e| {
                    Error::bad_arg(format!(
                        "permissions {:?}: {e}; give JSON such as '{{\"Mount\": [\"alice/...\"]}}'",
                        s.permissions
                    ))
                })?;
            let roots = Roots::of(&s.namespace_root)?;
            let client = client(&roots, &s.credentials)?;
            client
                .set_permissions(&s.name, &permissions, &s.version)
                .map_err(|e| roots.explain(e))
        }
    }
}

fn delete(c: DeleteCmd) -> Result<()> {
    init_log(c.log_level);
    let roots = Roots::of(&c.namespace_root)?;
    client(&roots, &c.credentials)?
        .delete(&c.name, c.subtree)
        .map_err(|e| roots.explain(e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_root_that_refuses_says_what_to_do() {
        let roots = Roots {
            list: vec![DEFAULT_ROOT.to_string()],
            from: RootsFrom::Default,
        };
        let e = roots.explain(Error::no_exist(
            "connecting to 127.0.0.1:8125: Connection refused (os error 111)",
        ));
        assert_eq!(
            e.msg(),
            "connecting to 127.0.0.1:8125: Connection refused (os error 111); is `wsprd serve` running? (root /127.0.0.1:8125; set --namespace-root or WSPR_NAMESPACE_ROOT)"
        );
        assert!(e.is(wspr::error::ids::NO_EXIST));
        // Other errors are left as they are.
        let e = roots.explain(Error::no_exist("demo/x: nothing is mounted at demo/x"));
        assert_eq!(e.msg(), "demo/x: nothing is mounted at demo/x");
    }

    #[test]
    fn roots_are_rooted() {
        assert_eq!(root_name("127.0.0.1:8125").unwrap(), "/127.0.0.1:8125");
        assert_eq!(root_name("/127.0.0.1:8125").unwrap(), "/127.0.0.1:8125");
        let e = root_name("demo").unwrap_err();
        assert!(e.msg().contains("\"demo\""), "{e}");
    }

    #[test]
    fn the_command_path_names_subcommands_only() {
        assert_eq!(command_path(&["call", "demo/adder", "Add"]), vec!["call"]);
        assert_eq!(command_path(&["glob", "["]), vec!["glob"]);
        assert_eq!(
            command_path(&["principal", "bless", "x"]),
            vec!["principal", "bless"]
        );
        assert!(command_path(&["--version"]).is_empty());
        assert!(command_path(&["nope"]).is_empty());
    }
}
