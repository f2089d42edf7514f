//! The mount table: a name server. It maps names to the servers mounted
//! under them, each with a TTL, and answers four methods on the name
//! (the call's suffix):
//!
//! | method | arguments | results |
//! |---|---|---|
//! | `Mount` | server (rooted name), ttl (seconds) | none |
//! | `Unmount` | server (`""`: all) | none |
//! | `ResolveStep` | none | `[servers, suffix]`: the servers of the longest mounted prefix of the name, and what is left of the name (`[[], name]` when nothing is mounted) |
//! | `Glob` | pattern | streams `{name, servers}` per match; none |
//!
//! Entries expire at their TTL; expired entries are dropped when met and by
//! a sweep every few hundred mounts. Mounting is bounded (see
//! [`MountTableConfig`]).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::error::{Error, Result};
use crate::glob::{Pattern, States};
use crate::naming::{self, Name};
use crate::pool::lock;

/// Most elements in a mounted name (the tree is walked recursively).
const MAX_DEPTH: usize = crate::glob::MAX_ELEMENTS;
use crate::rpc::{
    AllowAll, Dispatcher, Invoker, Lookup, MethodSignature, Now, Reply, ServerCall, Signature,
};
use crate::rpc::{GlobEntry, MountedServer};

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
}

impl Default for MountTableConfig {
    fn default() -> Self {
        MountTableConfig {
            max_entries: 100_000,
            max_servers_per_name: 32,
            max_ttl: Duration::from_secs(86_400),
        }
    }
}

#[derive(Default)]
struct Node {
    servers: Vec<(String, Instant)>,
    children: BTreeMap<String, Node>,
}

impl Node {
    fn prune(&mut self, now: Instant) -> usize {
        let before = self.servers.len();
        self.servers.retain(|(_, exp)| *exp > now);
        let mut removed = before - self.servers.len();
        self.children.retain(|_, c| {
            removed += c.prune(now);
            !c.servers.is_empty() || !c.children.is_empty()
        });
        removed
    }

    /// Removes the nodes along `path` that are left with nothing in or
    /// below them.
    fn prune_path(&mut self, path: &[&str]) {
        if let Some((first, rest)) = path.split_first()
            && let Some(child) = self.children.get_mut(*first)
        {
            child.prune_path(rest);
            if child.servers.is_empty() && child.children.is_empty() {
                self.children.remove(*first);
            }
        }
    }

    fn live(&self, now: Instant) -> Vec<MountedServer> {
        self.servers
            .iter()
            .filter(|(_, exp)| *exp > now)
            .map(|(s, exp)| MountedServer {
                server: s.clone(),
                ttl: exp.saturating_duration_since(now).as_secs().max(1),
            })
            .collect()
    }
}

struct Table {
    root: Node,
    entries: usize,
}

struct Inner {
    table: Mutex<Table>,
    config: MountTableConfig,
    mounts: AtomicU64,
}

/// See the module documentation. Cloning shares the table; it is its own
/// [`Dispatcher`].
#[derive(Clone)]
pub struct MountTable {
    inner: Arc<Inner>,
}

impl MountTable {
    /// An empty mount table.
    pub fn new(config: MountTableConfig) -> MountTable {
        MountTable {
            inner: Arc::new(Inner {
                table: Mutex::new(Table {
                    root: Node::default(),
                    entries: 0,
                }),
                config,
                mounts: AtomicU64::new(0),
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Table> {
        lock(&self.inner.table)
    }

    /// Live (name, server) entries.
    pub fn len(&self) -> usize {
        let mut t = self.lock();
        let removed = t.root.prune(Instant::now());
        t.entries -= removed;
        t.entries
    }

    /// Whether nothing is mounted.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn mount(&self, name: &str, server: &str, ttl: Duration) -> Result<()> {
        let name = naming::clean(name);
        if name.is_empty() {
            return Err(Error::bad_arg("cannot mount at the root of a mount table"));
        }
        // The tree is walked recursively (prune, glob, drop): its depth is
        // bounded, as a name's length is.
        let depth = name.split('/').count();
        if depth > MAX_DEPTH || name.len() > naming::MAX_NAME_LEN {
            return Err(Error::bad_arg(format!(
                "a name of {depth} elements and {} bytes (limits {MAX_DEPTH} and {})",
                name.len(),
                naming::MAX_NAME_LEN
            )));
        }
        if !server.starts_with('/') {
            return Err(Error::bad_arg(format!(
                "server {server:?} is not a rooted name"
            )));
        }
        Name::parse(server)?;
        let ttl = ttl.min(self.inner.config.max_ttl);
        let now = Instant::now();
        let mut t = self.lock();
        if self.inner.mounts.fetch_add(1, Ordering::Relaxed) % 256 == 255 {
            let removed = t.root.prune(now);
            t.entries -= removed;
        }
        let full = t.entries >= self.inner.config.max_entries;
        let node = name.split('/').fold(&mut t.root, |n, e| {
            n.children.entry(e.to_string()).or_default()
        });
        let expired = node.servers.len();
        node.servers.retain(|(_, exp)| *exp > now);
        let expired = expired - node.servers.len();
        if let Some(entry) = node.servers.iter_mut().find(|(s, _)| s == server) {
            entry.1 = now + ttl;
            t.entries -= expired;
            return Ok(());
        }
        if full || node.servers.len() >= self.inner.config.max_servers_per_name {
            let why = if full {
                format!(
                    "the mount table is full ({} entries)",
                    self.inner.config.max_entries
                )
            } else {
                format!("{name} has {} servers, the limit", node.servers.len())
            };
            t.entries -= expired;
            return Err(Error::bad_arg(why));
        }
        node.servers.push((server.to_string(), now + ttl));
        t.entries = t.entries - expired + 1;
        Ok(())
    }

    fn unmount(&self, name: &str, server: &str) -> Result<()> {
        let name = naming::clean(name);
        let path: Vec<&str> = name.split('/').filter(|e| !e.is_empty()).collect();
        let mut t = self.lock();
        let mut node = &mut t.root;
        for e in &path {
            match node.children.get_mut(*e) {
                Some(n) => node = n,
                None => return Ok(()),
            }
        }
        let before = node.servers.len();
        node.servers
            .retain(|(s, _)| !server.is_empty() && s != server);
        t.entries -= before - node.servers.len();
        // Only the path: the whole tree is pruned every 256 mounts.
        t.root.prune_path(&path);
        Ok(())
    }

    fn resolve_step(&self, name: &str) -> (Vec<MountedServer>, String) {
        let name = naming::clean(name);
        let now = Instant::now();
        let t = self.lock();
        let elems: Vec<&str> = name.split('/').filter(|e| !e.is_empty()).collect();
        let mut node = &t.root;
        let mut best: Option<(Vec<MountedServer>, usize)> = None;
        for (i, e) in elems.iter().enumerate() {
            match node.children.get(*e) {
                Some(n) => node = n,
                None => break,
            }
            let live = node.live(now);
            if !live.is_empty() {
                best = Some((live, i + 1));
            }
        }
        match best {
            Some((servers, used)) => (servers, elems[used..].join("/")),
            None => (Vec::new(), name),
        }
    }

    fn glob(&self, at: &str, pattern: &Pattern, out: &mut Vec<GlobEntry>) {
        let now = Instant::now();
        let t = self.lock();
        let mut node = &t.root;
        for e in naming::clean(at).split('/').filter(|e| !e.is_empty()) {
            match node.children.get(e) {
                Some(n) => node = n,
                None => return,
            }
        }
        glob_node(node, "", pattern, &pattern.start(), now, out);
    }
}

fn glob_node(
    node: &Node,
    name: &str,
    pattern: &Pattern,
    states: &States,
    now: Instant,
    out: &mut Vec<GlobEntry>,
) {
    for (elem, child) in &node.children {
        let st = pattern.step(states, elem);
        if Pattern::is_dead(&st) {
            continue;
        }
        let child_name = naming::join(name, elem);
        let servers = child.live(now);
        let below = pattern.has_remainder(&st);
        if pattern.is_final(&st) || (below && !servers.is_empty()) {
            if servers.is_empty() && child.children.is_empty() {
                continue; // expired and not yet pruned
            }
            out.push(GlobEntry {
                name: child_name.clone(),
                servers,
            });
        }
        if below {
            glob_node(child, &child_name, pattern, &st, now, out);
        }
    }
}

fn signature() -> Signature {
    let m = |args: &[&str], streaming: bool| MethodSignature {
        in_args: args.iter().map(|s| s.to_string()).collect(),
        num_out_args: 1,
        is_streaming: streaming,
    };
    let mut sig = Signature::new();
    sig.insert("Mount".into(), m(&["server", "ttl"], false));
    sig.insert("Unmount".into(), m(&["server"], false));
    sig.insert(
        "ResolveStep".into(),
        MethodSignature {
            num_out_args: 3,
            ..m(&[], false)
        },
    );
    sig.insert("Glob".into(), m(&["pattern"], true));
    sig
}

impl Dispatcher for MountTable {
    fn lookup(&self, _call: &ServerCall) -> Result<Lookup> {
        Ok(Lookup {
            invoker: Arc::new(MountTableInvoker(self.clone())),
            // Anyone may read and write names (see docs/security.md).
            authorizer: Some(Arc::new(AllowAll)),
        })
    }

    fn lookup_now(&self, call: &ServerCall) -> Option<Result<Lookup>> {
        Some(self.lookup(call))
    }
}

struct MountTableInvoker(MountTable);

fn arg_str<'a>(args: &'a [Value], i: usize, what: &str) -> Result<&'a str> {
    args.get(i)
        .and_then(Value::as_str)
        .ok_or_else(|| Error::bad_arg(format!("argument {i} ({what}) must be a string")))
}

impl Invoker for MountTableInvoker {
    fn invoke_now(&self, method: &str, args: Vec<Value>, call: ServerCall, reply: Reply) -> Now {
        // Only Glob streams (and may wait for credit).
        if method == "Glob" {
            return Now::Blocking(call, args, reply);
        }
        let mut call = call;
        reply.send(self.invoke(method, args, &mut call));
        Now::Handled
    }

    fn invoke(&self, method: &str, args: Vec<Value>, call: &mut ServerCall) -> Result<Vec<Value>> {
        // Built once, not per call.
        static SIG: std::sync::OnceLock<Signature> = std::sync::OnceLock::new();
        let want = SIG
            .get_or_init(signature)
            .get(method)
            .map(|m| m.in_args.len())
            .ok_or_else(|| Error::no_exist(format!("mount tables have no method {method}")))?;
        if args.len() != want {
            return Err(Error::bad_arg(format!(
                "{method} takes {want} arguments, got {}",
                args.len()
            )));
        }
        let suffix = call.suffix().to_string();
        match method {
            "Mount" => {
                let server = arg_str(&args, 0, "server")?;
                let ttl = args[1]
                    .as_u64()
                    .filter(|t| *t > 0)
                    .ok_or_else(|| Error::bad_arg("argument 1 (ttl) must be a positive integer"))?;
                self.0.mount(&suffix, server, Duration::from_secs(ttl))?;
                log::debug!("mounted {server} under {suffix} for {ttl} s");
                Ok(vec![])
            }
            "Unmount" => {
                let server = arg_str(&args, 0, "server")?;
                self.0.unmount(&suffix, server)?;
                log::debug!("unmounted {server:?} from {suffix}");
                Ok(vec![])
            }
            "ResolveStep" => {
                let (servers, rest) = self.0.resolve_step(&suffix);
                Ok(vec![json!(servers), json!(rest)])
            }
            "Glob" => {
                let pattern = Pattern::parse(arg_str(&args, 0, "pattern")?)?;
                let mut out = Vec::new();
                self.0.glob(&suffix, &pattern, &mut out);
                for e in out {
                    call.send(&json!(e))?;
                }
                Ok(vec![])
            }
            _ => Err(Error::no_exist(format!(
                "mount tables have no method {method}"
            ))),
        }
    }

    fn signature(&self, _call: &ServerCall) -> Result<Signature> {
        Ok(signature())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mount_resolve_unmount() {
        let mt = MountTable::new(MountTableConfig::default());
        mt.mount("a/b", "/h:1", Duration::from_secs(60)).unwrap();
        mt.mount("a/b/c", "/h:2", Duration::from_secs(60)).unwrap();
        let (s, rest) = mt.resolve_step("a/b/x/y");
        assert_eq!(s[0].server, "/h:1");
        assert_eq!(rest, "x/y");
        let (s, rest) = mt.resolve_step("a/b/c");
        assert_eq!(s[0].server, "/h:2");
        assert_eq!(rest, "");
        assert!(mt.resolve_step("a").0.is_empty());
        assert_eq!(mt.len(), 2);
        mt.unmount("a/b", "").unwrap();
        assert_eq!(mt.len(), 1);
        assert!(mt.mount("", "/h:1", Duration::from_secs(1)).is_err());
        assert!(mt.mount("x", "h:1", Duration::from_secs(1)).is_err());
    }

    #[test]
    fn limits_are_enforced() {
        let mt = MountTable::new(MountTableConfig {
            max_entries: 2,
            max_servers_per_name: 1,
            ..Default::default()
        });
        mt.mount("a", "/h:1", Duration::from_secs(60)).unwrap();
        mt.mount("a", "/h:1", Duration::from_secs(60)).unwrap(); // refresh
        assert!(mt.mount("a", "/h:2", Duration::from_secs(60)).is_err());
        mt.mount("b", "/h:2", Duration::from_secs(60)).unwrap();
        assert!(mt.mount("c", "/h:3", Duration::from_secs(60)).is_err());
        // A name deeper than the tree may go.
        let deep = vec!["d"; MAX_DEPTH + 1].join("/");
        assert!(mt.mount(&deep, "/h:4", Duration::from_secs(60)).is_err());
    }

    #[test]
    fn an_unmount_removes_the_nodes_it_leaves_empty() {
        let mt = MountTable::new(MountTableConfig::default());
        mt.mount("a/b/c", "/h:1", Duration::from_secs(60)).unwrap();
        mt.mount("a/x", "/h:2", Duration::from_secs(60)).unwrap();
        mt.unmount("a/b/c", "/h:1").unwrap();
        let mut out = Vec::new();
        mt.glob("", &Pattern::parse("...").unwrap(), &mut out);
        let names: Vec<_> = out.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(names, vec!["a", "a/x"]);
    }

    #[test]
    fn glob_lists_intermediate_names_and_mount_points() {
        let mt = MountTable::new(MountTableConfig::default());
        mt.mount("demo/adder", "/h:1", Duration::from_secs(60))
            .unwrap();
        mt.mount("x", "/h:2", Duration::from_secs(60)).unwrap();
        let mut out = Vec::new();
        mt.glob("", &Pattern::parse("*").unwrap(), &mut out);
        let names: Vec<_> = out.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(names, vec!["demo", "x"]);
        let mut out = Vec::new();
        mt.glob("", &Pattern::parse("...").unwrap(), &mut out);
        let names: Vec<_> = out.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(names, vec!["demo", "demo/adder", "x"]);
    }
}
