//! The mount table: a name server. It maps names to the servers mounted
//! under them, each with a TTL and the blessing names the server must
//! prove, keeps who may do what to each name, and answers these methods
//! on the name (the call's suffix):
//!
//! | method | arguments | results | needs |
//! |---|---|---|---|
//! | `Mount` | server (rooted name), ttl (seconds), blessings (optional: names or patterns the server proves; default: the mounter's names, their extensions and the names they extend) | none | Mount (or Admin); making a name needs Create on its parent |
//! | `Unmount` | server (`""`: all) | none | Mount (or Admin) |
//! | `ResolveStep` | none | `[servers, suffix]`: the servers of the longest mounted prefix of the name, and what is left of the name (`[[], name]` when nothing is mounted) | Resolve, Read or Admin |
//! | `Glob` | pattern | streams `{name, servers}` per match; none | Read or Admin to list a node's children |
//! | `GetPermissions` | none | `[permissions, version]` | Read or Admin |
//! | `SetPermissions` | permissions, version (`""`: any) | none | Admin |
//! | `Delete` | deleteSubtree (bool) | none | Admin of every name deleted |
//!
//! A name made by a caller is the caller's: the names it proved get Admin
//! and Mount there; its other tags are its parent's. Making a name below
//! a mounted one (at any depth; mounted once, while the name is kept)
//! also needs Mount on the nearest mounted name above it. The root lets
//! everyone resolve, read and make names, and the table's own principal
//! is its Admin, which is Admin of every name (see `docs/security.md`).
//!
//! Entries expire at their TTL; expired entries are dropped when met and by
//! a sweep every few hundred mounts. A name made by mounting stays its
//! maker's with nothing mounted at or below it for a while
//! ([`MountTableConfig::name_hold`]); one given permissions with
//! `SetPermissions` stays until deleted. Mounting and
//! making names are bounded (see [`MountTableConfig`]). With a state
//! directory ([`MountTable::with_state`]) the permissions survive a
//! restart.

mod store;
mod tree;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde_json::{Value, json};

use crate::clock::Clock;
use crate::error::{Error, Result};
use crate::glob::Pattern;
use crate::rpc::{
    AllowAll, Dispatcher, GlobEntry, Invocation, Invoker, Lookup, MethodSignature, Pending,
    ServerCall, Signature, Step,
};
use crate::security::BlessingPattern;
use crate::security::access::Permissions;
use crate::sync::lock;

pub use store::PERMISSIONS_FILE;
use tree::{Caller, Changed, Table};

/// Most elements in a mounted name (the tree is walked recursively).
const MAX_DEPTH: usize = crate::glob::MAX_ELEMENTS;

/// Limits of a [`MountTable`].
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct MountTableConfig {
    /// Most (name, server) entries. Default 100,000.
    pub max_entries: usize,
    /// Most servers under one name. Default 32.
    pub max_servers_per_name: usize,
    /// Longest TTL granted; longer asks are cut to it. Default 1 day.
    pub max_ttl: Duration,
    /// Most names with owners (names stay when nothing is mounted at
    /// them, until deleted). Default 100,000.
    pub max_names: usize,
    /// Most names one creator (its first proven blessing name) may own;
    /// the table's own principal has no limit. Default 1,000.
    pub max_names_per_creator: usize,
    /// How long a name made by mounting stays its maker's once nothing is
    /// mounted at or below it (its server restarting, its page reloading,
    /// the table restarting: the hold starts again when the table loads).
    /// Names given permissions with `SetPermissions` stay until deleted.
    /// Default 1 day.
    pub name_hold: Duration,
    /// What TTLs and holds are measured by. Default: the system's clock
    /// (a manual one makes them testable without waiting).
    pub clock: Clock,
}

impl Default for MountTableConfig {
    fn default() -> Self {
        MountTableConfig {
            max_entries: 100_000,
            max_servers_per_name: 32,
            max_ttl: Duration::from_secs(86_400),
            max_names: 100_000,
            max_names_per_creator: 1_000,
            name_hold: Duration::from_secs(86_400),
            clock: Clock::system(),
        }
    }
}

impl MountTableConfig {
    /// Checks that the settings make sense.
    pub fn validate(&self) -> Result<()> {
        if self.max_entries == 0
            || self.max_servers_per_name == 0
            || self.max_names == 0
            || self.max_names_per_creator == 0
        {
            return Err(Error::bad_arg("mount table limits must be positive"));
        }
        if self.max_ttl < Duration::from_secs(1) {
            return Err(Error::bad_arg("max_ttl must be at least 1 s"));
        }
        Ok(())
    }
}

struct Inner {
    table: Mutex<Table>,
    /// Writes the permissions, for a table with a state directory.
    store: Option<store::Store>,
}

impl store::Source for Inner {
    fn snapshot(&self) -> Vec<tree::StoredNode> {
        lock(&self.table).snapshot()
    }
}

/// See the module documentation. Cloning shares the table; it is its own
/// [`Dispatcher`].
#[derive(Clone)]
pub struct MountTable {
    inner: Arc<Inner>,
}

fn limits(config: &MountTableConfig) -> tree::Limits {
    tree::Limits {
        max_entries: config.max_entries,
        max_servers_per_name: config.max_servers_per_name,
        max_ttl: config.max_ttl,
        max_nodes: config.max_names,
        max_nodes_per_creator: config.max_names_per_creator,
        hold: config.name_hold,
    }
}

impl MountTable {
    /// An empty mount table that keeps everything in memory.
    pub fn new(config: MountTableConfig) -> MountTable {
        MountTable {
            inner: Arc::new(Inner {
                table: Mutex::new(Table::new(limits(&config), config.clock.clone())),
                store: None,
            }),
        }
    }

    /// A mount table whose permissions live in `dir` (created with mode
    /// 0700 if missing): read now, written after every change. Refuses a
    /// file it cannot read.
    pub fn with_state(config: MountTableConfig, dir: &Path) -> Result<MountTable> {
        config.validate()?;
        let mut table = Table::new(limits(&config), config.clock.clone());
        table.restore(store::load(dir)?)?;
        let mut started = None;
        let inner = Arc::new_cyclic(|weak: &std::sync::Weak<Inner>| {
            let store = store::Store::start(dir.to_path_buf(), weak.clone());
            let s = match store {
                Ok(s) => Some(s),
                Err(e) => {
                    started = Some(e);
                    None
                }
            };
            Inner {
                table: Mutex::new(table),
                store: s,
            }
        });
        if let Some(e) = started {
            return Err(e);
        }
        let owned = lock(&inner.table).owned();
        log::info!(
            "mount table state in {} ({owned} names with owners)",
            dir.display()
        );
        Ok(MountTable { inner })
    }

    /// Where a table listening on `listen` keeps its permissions unless
    /// told otherwise: `<state>/mounttable/<host>_<port>`, where `<state>`
    /// is `$WSPR_STATE`, else `$XDG_STATE_HOME/wspr`, else
    /// `$HOME/.local/state/wspr`. None for port 0: a table on a port picked
    /// afresh each run is a new table each run (clients find it by its new
    /// address), so it keeps nothing.
    pub fn default_state_dir(listen: &str) -> Option<PathBuf> {
        let port = listen.rsplit_once(':').map(|(_, p)| p)?;
        if port.parse::<u16>().ok()? == 0 {
            return None;
        }
        let env = |k: &str| {
            std::env::var_os(k)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        };
        let root = env("WSPR_STATE")
            .or_else(|| env("XDG_STATE_HOME").map(|d| d.join("wspr")))
            .or_else(|| env("HOME").map(|h| h.join(".local/state/wspr")))?;
        let leaf: String = listen
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        Some(root.join("mounttable").join(leaf))
    }

    /// The state directory, if the table has one.
    pub fn state_dir(&self) -> Option<PathBuf> {
        self.inner.store.as_ref().map(|s| s.dir().to_path_buf())
    }

    fn lock(&self) -> MutexGuard<'_, Table> {
        lock(&self.inner.table)
    }

    /// Live (name, server) entries.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether nothing is mounted.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn signature() -> Signature {
    let m = |args: &[&str], outs: u32, streaming: bool| MethodSignature {
        in_args: args.iter().map(|s| s.to_string()).collect(),
        num_out_args: outs,
        is_streaming: streaming,
    };
    let mut sig = Signature::new();
    sig.insert("Mount".into(), m(&["server", "ttl", "blessings"], 1, false));
    sig.insert("Unmount".into(), m(&["server"], 1, false));
    sig.insert("ResolveStep".into(), m(&[], 3, false));
    sig.insert("Glob".into(), m(&["pattern"], 1, true));
    sig.insert("GetPermissions".into(), m(&[], 3, false));
    sig.insert(
        "SetPermissions".into(),
        m(&["permissions", "version"], 1, false),
    );
    sig.insert("Delete".into(), m(&["deleteSubtree"], 1, false));
    sig
}

impl Dispatcher for MountTable {
    fn lookup(&self, call: Pending) -> Step<Pending> {
        call.found(Ok(Lookup {
            invoker: Arc::new(MountTableInvoker(self.clone())),
            // Every method checks the name's permissions itself.
            authorizer: Some(Arc::new(AllowAll)),
        }));
        Step::Done
    }
}

struct MountTableInvoker(MountTable);

fn arg_str<'a>(args: &'a [Value], i: usize, what: &str) -> Result<&'a str> {
    args.get(i)
        .and_then(Value::as_str)
        .ok_or_else(|| Error::bad_arg(format!("argument {i} ({what}) must be a string")))
}

/// The blessings a mount records for its server: the ones given, else
/// patterns for the names the mounter proved, their extensions and the
/// names they extend (see
/// [`related_patterns`](crate::security::access::related_patterns)): the
/// mounter's own server, a delegate's, or its blesser's.
fn mount_blessings(arg: Option<&Value>, call: &ServerCall) -> Result<Vec<String>> {
    let given = match arg {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(a)) => a
            .iter()
            .map(|v| {
                let s = v.as_str().ok_or_else(|| {
                    Error::bad_arg("argument 2 (blessings) must be an array of strings")
                })?;
                BlessingPattern::new(s)?;
                Ok(s.to_string())
            })
            .collect::<Result<Vec<_>>>()?,
        Some(_) => {
            return Err(Error::bad_arg(
                "argument 2 (blessings) must be an array of strings",
            ));
        }
    };
    // (Their number and size are bounded by the tree.)
    if !given.is_empty() {
        return Ok(given);
    }
    let mut out: Vec<String> = Vec::new();
    for n in call.remote_names() {
        for p in crate::security::access::related_patterns(n) {
            if !out.contains(&p) {
                out.push(p);
            }
        }
    }
    Ok(out)
}

impl MountTableInvoker {
    /// Runs a method; the results, and whether permissions changed (to be
    /// saved before the caller is answered).
    fn run(&self, method: &str, args: Vec<Value>, call: &ServerCall) -> Result<(Vec<Value>, bool)> {
        // Built once, not per call.
        static SIG: std::sync::OnceLock<Signature> = std::sync::OnceLock::new();
        let want = SIG
            .get_or_init(signature)
            .get(method)
            .map(|m| m.in_args.len())
            .ok_or_else(|| Error::no_exist(format!("mount tables have no method {method}")))?;
        // (Mount's blessings are optional.)
        let optional = usize::from(method == "Mount");
        if args.len() > want || args.len() + optional < want {
            return Err(Error::bad_arg(format!(
                "{method} takes {want} arguments, got {}",
                args.len()
            )));
        }
        let suffix = crate::naming::clean(call.suffix());
        if suffix.split('/').count() > MAX_DEPTH || suffix.len() > crate::naming::MAX_NAME_LEN {
            return Err(Error::bad_arg(format!(
                "a name of {} elements and {} bytes (limits {MAX_DEPTH} and {})",
                suffix.split('/').count(),
                suffix.len(),
                crate::naming::MAX_NAME_LEN
            )));
        }
        let caller = Caller {
            names: call.remote_names(),
        };
        let mut t = self.0.lock();
        t.know_own_names(|| call.local().names());
        let done = |Changed(c): Changed| Ok((vec![], c));
        match method {
            "Mount" => {
                let server = arg_str(&args, 0, "server")?;
                let ttl = args[1]
                    .as_u64()
                    .filter(|t| *t > 0)
                    .ok_or_else(|| Error::bad_arg("argument 1 (ttl) must be a positive integer"))?;
                // (The server's name is checked by the tree.)
                let blessings = mount_blessings(args.get(2), call)?;
                let changed = t.mount(
                    &caller,
                    &suffix,
                    server,
                    Duration::from_secs(ttl),
                    blessings,
                )?;
                drop(t);
                log::debug!("mounted {server} under {suffix} for {ttl} s");
                done(changed)
            }
            "Unmount" => {
                let server = arg_str(&args, 0, "server")?;
                t.unmount(&caller, &suffix, server)?;
                drop(t);
                log::debug!("unmounted {server:?} from {suffix}");
                Ok((vec![], false))
            }
            "ResolveStep" => {
                let (servers, rest) = t.resolve_step(&caller, &suffix)?;
                Ok((vec![json!(servers), json!(rest)], false))
            }
            "Glob" => {
                let pattern = Pattern::parse(arg_str(&args, 0, "pattern")?)?;
                let mut out: Vec<GlobEntry> = Vec::new();
                t.glob(&caller, &suffix, &pattern, &mut out)?;
                drop(t);
                for e in out {
                    call.send(&json!(e))?;
                }
                Ok((vec![], false))
            }
            "GetPermissions" => {
                let (perms, version) = t.get_permissions(&caller, &suffix)?;
                Ok((vec![json!(perms), json!(version.to_string())], false))
            }
            "SetPermissions" => {
                let perms: Permissions = serde_json::from_value(args[0].clone())
                    .map_err(|e| Error::bad_arg(format!("argument 0 (permissions): {e}")))?;
                let version = arg_str(&args, 1, "version")?;
                let changed = t.set_permissions(&caller, &suffix, perms, version)?;
                drop(t);
                log::info!("permissions of {suffix:?} set by {:?}", caller.names);
                done(changed)
            }
            "Delete" => {
                let subtree = args[0].as_bool().ok_or_else(|| {
                    Error::bad_arg("argument 0 (deleteSubtree) must be a boolean")
                })?;
                let changed = t.delete(&caller, &suffix, subtree)?;
                drop(t);
                log::info!("{suffix:?} deleted by {:?}", caller.names);
                done(changed)
            }
            _ => Err(Error::no_exist(format!(
                "mount tables have no method {method}"
            ))),
        }
    }
}

impl Invoker for MountTableInvoker {
    fn invoke(&self, call: Invocation) -> Step<Invocation> {
        // Only Glob streams (and may wait for credit): on a call thread.
        if call.method() == "Glob" {
            return call.blocking(|call, args| {
                let (results, changed) = self.run(call.method(), args, call)?;
                if let (true, Some(s)) = (changed, &self.0.inner.store) {
                    // (Glob changes nothing.)
                    s.write(None);
                }
                Ok(results)
            });
        }
        // The rest never blocks: answered on the connection's thread.
        let (call, args, reply) = call.into_parts();
        match self.run(call.method(), args, &call) {
            // A change of permissions is answered once it is saved.
            Ok((_, true)) if self.0.inner.store.is_some() => {
                if let Some(s) = &self.0.inner.store {
                    s.write(Some(reply));
                }
                return Step::Later;
            }
            Ok((results, _)) => reply.send(Ok(results)),
            Err(e) => {
                if e.is(crate::error::ids::NO_ACCESS) {
                    log::info!("mount table: {} refused: {}", call.method(), e.msg());
                }
                reply.send(Err(e));
            }
        }
        Step::Done
    }

    fn signature(&self, _call: &ServerCall) -> Result<Signature> {
        Ok(signature())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fixed_address_has_a_state_directory_and_port_zero_none() {
        let d = MountTable::default_state_dir("127.0.0.1:8125");
        if std::env::var_os("WSPR_STATE").is_some()
            || std::env::var_os("XDG_STATE_HOME").is_some()
            || std::env::var_os("HOME").is_some()
        {
            let d = d.expect("a directory");
            assert!(d.ends_with("mounttable/127.0.0.1_8125"), "{d:?}");
        }
        assert_eq!(MountTable::default_state_dir("127.0.0.1:0"), None);
        assert_eq!(MountTable::default_state_dir("[::1]:0"), None);
        assert_eq!(MountTable::default_state_dir("nonsense"), None);
    }

    #[test]
    fn a_table_with_state_refuses_a_config_that_makes_no_sense() {
        let c = MountTableConfig {
            max_names_per_creator: 0,
            ..Default::default()
        };
        let dir = std::env::temp_dir().join(format!("wspr-mt-cfg-{}", std::process::id()));
        assert!(MountTable::with_state(c, &dir).is_err());
    }
}
