//! The name space: roots, resolution through mount tables (with a cache),
//! mount, unmount and glob. The operations are methods of
//! [`Client`](crate::rpc::Client); they are written here over the calls to
//! mount tables they make ([`Tables`], which the client implements).
//!
//! Resolution only ever asks *mount tables* (endpoints marked `m`) to
//! resolve; a leaf server's name is final. A walk deeper than
//! [`MAX_DEPTH`] mount tables, or one that comes back to a mount table it
//! has seen, is refused.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::error::{Error, Result};
use crate::glob::Pattern;
use crate::naming::Endpoint;
use crate::naming::{self, Name};
use crate::rpc::server_auth::Expect;
use crate::security::access::Permissions;
use crate::sync::lock;

/// What the name space needs of a client: calls to mount tables.
pub(crate) trait Tables {
    /// Calls `method` on the object `suffix` of the mount table at
    /// `endpoint` (no name resolved), if it is who `expect` says; its
    /// results. With `item`, each item it streams goes there first (an
    /// error ends the call with it); without, the caller's stream is
    /// closed at once and items are dropped.
    #[allow(clippy::too_many_arguments)]
    fn call_table(
        &self,
        endpoint: &Endpoint,
        suffix: &str,
        method: &str,
        args: Vec<Value>,
        deadline: Instant,
        expect: Expect,
        item: Option<&mut dyn FnMut(Value) -> Result<()>>,
    ) -> Result<Vec<Value>>;
}

/// Most mount tables a resolution walks through.
pub const MAX_DEPTH: usize = 32;
/// Entries kept in the resolution cache.
pub const MAX_CACHE: usize = 4096;
/// Most entries one glob returns.
pub const MAX_GLOB: usize = 100_000;
/// The deadline of name space calls when the caller gives none.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// A server a name is mounted to, for how much longer, and who it must
/// prove to be.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MountedServer {
    /// The server's rooted name.
    pub server: String,
    /// Seconds left before the mount expires.
    pub ttl: u64,
    /// The blessing names the server proved when it mounted (or that its
    /// mounter gave for it): a client that reaches it through this entry
    /// refuses it unless it proves one of them. Empty from a mount table
    /// that records none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub blessings: Vec<String>,
}

/// One glob match.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GlobEntry {
    /// The name, relative to the root the pattern was matched in.
    pub name: String,
    /// The servers mounted there (empty for an intermediate name).
    pub servers: Vec<MountedServer>,
}

/// A server a name resolves to: its rooted name, and the blessing names
/// the name space recorded for it (which it must prove before a client
/// sends it anything; none recorded: any name the client recognizes).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Resolved {
    /// The rooted name.
    pub name: String,
    /// The blessing names (or patterns) recorded for the server.
    pub blessings: Vec<String>,
}

impl Resolved {
    fn plain(name: String) -> Resolved {
        Resolved {
            name,
            blessings: Vec::new(),
        }
    }

    /// What a client expects of the server.
    pub(crate) fn expect(&self) -> Expect<'_> {
        Expect {
            recorded: &self.blessings,
            pinned: &[],
        }
    }
}

fn names(targets: &[Resolved]) -> Vec<String> {
    targets.iter().map(|t| t.name.clone()).collect()
}

/// What a name resolves to.
type Targets = Arc<Vec<Resolved>>;

/// The roots of a name space and its resolution cache; shared by clients.
pub struct Namespace {
    roots: RwLock<Vec<String>>,
    /// (Shared with the callers that read it: a call on a cached name
    /// copies nothing.)
    cache: Mutex<HashMap<String, (Targets, Instant)>>,
}

impl Namespace {
    /// A name space with these roots (rooted names of mount tables).
    pub fn new(roots: Vec<String>) -> Arc<Namespace> {
        Arc::new(Namespace {
            roots: RwLock::new(roots),
            cache: Mutex::new(HashMap::new()),
        })
    }

    /// The roots.
    pub fn roots(&self) -> Vec<String> {
        self.roots.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Replaces the roots (and empties the cache).
    pub fn set_roots(&self, roots: Vec<String>) {
        *self.roots.write().unwrap_or_else(|p| p.into_inner()) = roots;
        lock(&self.cache).clear();
    }

    /// Forgets what `name` resolved to.
    pub fn forget(&self, name: &str) {
        lock(&self.cache).remove(name);
    }

    /// Entries in the resolution cache.
    pub fn cache_len(&self) -> usize {
        lock(&self.cache).len()
    }

    /// What `name` resolves to, if that is known without asking anyone: a
    /// rooted name that needs no resolution, or a live cache entry.
    pub fn cached(&self, name: &str) -> Option<Vec<String>> {
        self.cached_targets(name).map(|t| names(&t))
    }

    /// Like [`cached`](Self::cached), with what the name space recorded
    /// for each server.
    pub fn cached_targets(&self, name: &str) -> Option<Arc<Vec<Resolved>>> {
        let parsed = Name::parse(name).ok()?;
        if parsed.endpoint().is_some() && (parsed.is_terminal() || parsed.suffix().is_empty()) {
            return Some(Arc::new(vec![Resolved::plain(name.to_string())]));
        }
        let cache = lock(&self.cache);
        cache
            .get(name)
            .filter(|(_, until)| *until > Instant::now())
            .map(|(t, _)| t.clone())
    }

    fn initial(&self, name: &str) -> Result<Vec<Resolved>> {
        let parsed = Name::parse(name)?;
        if parsed.endpoint().is_some() {
            return Ok(vec![Resolved::plain(name.to_string())]);
        }
        let roots = self.roots();
        if roots.is_empty() {
            return Err(Error::no_exist(format!(
                "cannot resolve {name:?}: no name space root is set"
            )));
        }
        Ok(roots
            .iter()
            .map(|r| Resolved::plain(naming::join(r, name)))
            .collect())
    }

    /// Resolves `name`, from the cache unless `fresh`; says whether the
    /// answer came from the cache.
    pub(crate) fn resolve_cached(
        &self,
        tables: &dyn Tables,
        name: &str,
        deadline: Option<Instant>,
        fresh: bool,
    ) -> Result<(Arc<Vec<Resolved>>, bool)> {
        let parsed = Name::parse(name)?;
        if parsed.endpoint().is_some() && (parsed.is_terminal() || parsed.suffix().is_empty()) {
            return Ok((Arc::new(vec![Resolved::plain(name.to_string())]), false));
        }
        if !fresh {
            let cache = lock(&self.cache);
            if let Some((targets, until)) = cache.get(name)
                && *until > Instant::now()
            {
                return Ok((targets.clone(), true));
            }
        }
        let (targets, ttl) = walk(tables, self.initial(name)?, deadline, Walk::ToServer)?;
        let targets = Arc::new(targets);
        if let Some(ttl) = ttl.filter(|t| !t.is_zero()) {
            let mut cache = lock(&self.cache);
            if cache.len() >= MAX_CACHE {
                let now = Instant::now();
                cache.retain(|_, (_, until)| *until > now);
                if cache.len() >= MAX_CACHE {
                    cache.clear();
                }
            }
            // (A mount table's TTL past the clock's range: not cached.)
            if let Some(until) = Instant::now().checked_add(ttl) {
                cache.insert(name.to_string(), (targets.clone(), until));
            }
        }
        Ok((targets, false))
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Walk {
    /// Down to the server that serves the name.
    ToServer,
    /// Down to the mount table where the name is (or would be) mounted.
    ToMountTable,
}

fn call_deadline(deadline: Option<Instant>) -> Instant {
    let cap = Instant::now() + DEFAULT_TIMEOUT;
    deadline.map_or(cap, |d| d.min(cap))
}

/// Asks the mount tables at `targets` (replicas, tried in order) to
/// resolve one step. `Ok(None)`: nothing is mounted there.
fn resolve_step(
    tables: &dyn Tables,
    targets: &[Resolved],
    deadline: Option<Instant>,
) -> Result<Option<(Vec<Resolved>, String, Duration)>> {
    let mut last = Error::no_exist("no mount table to ask");
    for t in targets {
        let n = &t.name;
        let parsed = Name::parse(n)?;
        let Some(ep) = parsed.endpoint() else {
            continue;
        };
        let got = tables.call_table(
            ep,
            parsed.suffix(),
            "ResolveStep",
            vec![],
            call_deadline(deadline),
            t.expect(),
            None,
        );
        match got {
            Ok(results) => {
                let servers: Vec<MountedServer> = results
                    .first()
                    .cloned()
                    .and_then(|v| serde_json::from_value(v).ok())
                    .filter(|s: &Vec<MountedServer>| s.iter().all(bounded))
                    .ok_or_else(|| Error::internal(format!("{n}: malformed ResolveStep reply")))?;
                let rest = results
                    .get(1)
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string();
                if servers.is_empty() {
                    return Ok(None);
                }
                let ttl = servers.iter().map(|s| s.ttl).min().unwrap_or(0);
                let next = servers
                    .into_iter()
                    .map(|s| Resolved {
                        name: naming::join(&s.server, &rest),
                        blessings: s.blessings,
                    })
                    .collect();
                return Ok(Some((next, rest, Duration::from_secs(ttl))));
            }
            Err(e) => last = e,
        }
    }
    Err(last)
}

/// Whether a mount entry from a mount table is within what a client keeps
/// (a table could send any list of names for a server).
fn bounded(s: &MountedServer) -> bool {
    s.blessings.len() <= crate::security::access::MAX_PATTERNS
        && s.blessings.iter().all(|b| b.len() <= naming::MAX_NAME_LEN)
}

fn walk(
    tables: &dyn Tables,
    mut names: Vec<Resolved>,
    deadline: Option<Instant>,
    mode: Walk,
) -> Result<(Vec<Resolved>, Option<Duration>)> {
    let first = names.first().map(|n| n.name.clone()).unwrap_or_default();
    let mut seen = HashSet::new();
    let mut ttl: Option<Duration> = None;
    for _ in 0..=MAX_DEPTH {
        let Some(head) = names.first() else {
            return Err(Error::no_exist(format!("{first} resolves to no server")));
        };
        let parsed = Name::parse(&head.name)?;
        if parsed.is_terminal() || parsed.suffix().is_empty() {
            return Ok((names, ttl));
        }
        if !seen.insert(head.name.clone()) {
            return Err(Error::no_exist(format!(
                "resolving {first}: the mount tables loop at {}",
                head.name
            )));
        }
        match resolve_step(tables, &names, deadline)? {
            None => {
                return match mode {
                    Walk::ToMountTable => Ok((names, ttl)),
                    Walk::ToServer => Err(Error::no_exist(format!(
                        "{first}: nothing is mounted at {}",
                        parsed.suffix()
                    ))),
                };
            }
            Some((next, rest, step_ttl)) => {
                let next_parsed = Name::parse(&next[0].name)?;
                if mode == Walk::ToMountTable && (rest.is_empty() || next_parsed.is_terminal()) {
                    return Ok((names, ttl));
                }
                ttl = Some(ttl.map_or(step_ttl, |t| t.min(step_ttl)));
                names = next;
            }
        }
    }
    Err(Error::no_exist(format!(
        "resolving {first}: more than {MAX_DEPTH} mount tables deep"
    )))
}

impl Namespace {
    /// The rooted names `name` resolves to (asking only mount tables).
    pub(crate) fn resolve(&self, t: &dyn Tables, name: &str) -> Result<Vec<String>> {
        Ok(names(&self.resolve_servers(t, name)?))
    }

    /// The servers `name` resolves to, with the blessing names the name
    /// space recorded for each.
    pub(crate) fn resolve_servers(&self, t: &dyn Tables, name: &str) -> Result<Vec<Resolved>> {
        Ok(self
            .resolve_cached(t, name, None, false)?
            .0
            .as_ref()
            .clone())
    }

    /// The rooted names of the mount table entry where `name` is, or would
    /// be, mounted.
    pub(crate) fn resolve_to_mount_table(&self, t: &dyn Tables, name: &str) -> Result<Vec<String>> {
        Ok(names(&self.mount_table_of(t, name)?))
    }

    fn mount_table_of(&self, t: &dyn Tables, name: &str) -> Result<Vec<Resolved>> {
        let initial = self.initial(name)?;
        Ok(walk(t, initial, None, Walk::ToMountTable)?.0)
    }

    /// Calls `method` on the mount table entry of `name` (replicas tried in
    /// order); its results.
    fn on_mount_table(
        &self,
        tables: &dyn Tables,
        name: &str,
        method: &str,
        args: Vec<Value>,
    ) -> Result<Vec<Value>> {
        let targets = self.mount_table_of(tables, name)?;
        let mut last = Error::no_exist(format!("no mount table for {name}"));
        for target in &targets {
            let parsed = Name::parse(&target.name)?;
            let Some(ep) = parsed.endpoint() else {
                continue;
            };
            match tables.call_table(
                ep,
                parsed.suffix(),
                method,
                args.clone(),
                call_deadline(None),
                target.expect(),
                None,
            ) {
                Ok(results) => {
                    self.forget(name);
                    return Ok(results);
                }
                // Refused: another replica would refuse too.
                Err(e) if e.is(crate::error::ids::NO_ACCESS) => return Err(e),
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    /// Mounts `server` (a rooted name or endpoint) under `name` for `ttl`;
    /// the mount table records the blessing names this client proves as
    /// the server's.
    pub(crate) fn mount(
        &self,
        t: &dyn Tables,
        name: &str,
        server: &str,
        ttl: Duration,
    ) -> Result<()> {
        self.mount_with(t, name, server, ttl, &[])
    }

    /// Like [`Client::mount`], recording `blessings` (names or patterns
    /// the server proves) for the server; none: this client's own names.
    pub(crate) fn mount_with(
        &self,
        t: &dyn Tables,
        name: &str,
        server: &str,
        ttl: Duration,
        blessings: &[String],
    ) -> Result<()> {
        if naming::clean(name).is_empty() {
            return Err(Error::bad_arg("cannot mount at the root of a name space"));
        }
        let server = if server.starts_with('/') {
            server.to_string()
        } else {
            format!("/{server}")
        };
        Name::parse(&server)?;
        for b in blessings {
            crate::security::BlessingPattern::new(b)?;
        }
        let mut args = vec![json!(server), json!(ttl.as_secs().max(1))];
        if !blessings.is_empty() {
            args.push(json!(blessings));
        }
        self.on_mount_table(t, name, "Mount", args).map(|_| ())
    }

    /// Unmounts `server` from `name` (every server when `server` is empty).
    pub(crate) fn unmount(&self, t: &dyn Tables, name: &str, server: &str) -> Result<()> {
        if naming::clean(name).is_empty() {
            return Err(Error::bad_arg("cannot unmount the root of a name space"));
        }
        let server = if server.is_empty() || server.starts_with('/') {
            server.to_string()
        } else {
            format!("/{server}")
        };
        self.on_mount_table(t, name, "Unmount", vec![json!(server)])
            .map(|_| ())
    }

    /// The permissions in force at `name` (`""`: the root of the first
    /// mount table) and their version.
    pub(crate) fn get_permissions(
        &self,
        t: &dyn Tables,
        name: &str,
    ) -> Result<(Permissions, String)> {
        let results = self.on_mount_table(t, name, "GetPermissions", vec![])?;
        let bad = || Error::internal(format!("{name}: malformed GetPermissions reply"));
        let perms = results
            .first()
            .cloned()
            .and_then(|v| serde_json::from_value(v).ok())
            .ok_or_else(bad)?;
        let version = results
            .get(1)
            .and_then(Value::as_str)
            .ok_or_else(bad)?
            .to_string();
        Ok((perms, version))
    }

    /// Sets the permissions of `name` (made, as this client's, if it does
    /// not exist): the tags given replace the name's own, the others are
    /// its parent's. `version` is what [`Client::get_permissions`] gave
    /// (`""`: whatever it is now).
    pub(crate) fn set_permissions(
        &self,
        t: &dyn Tables,
        name: &str,
        perms: &Permissions,
        version: &str,
    ) -> Result<()> {
        self.on_mount_table(
            t,
            name,
            "SetPermissions",
            vec![json!(perms), json!(version)],
        )
        .map(|_| ())
    }

    /// Deletes `name` from its mount table, with every name below it if
    /// `subtree` (else there must be none).
    pub(crate) fn delete(&self, t: &dyn Tables, name: &str, subtree: bool) -> Result<()> {
        if naming::clean(name).is_empty() {
            return Err(Error::bad_arg("cannot delete the root of a name space"));
        }
        self.on_mount_table(t, name, "Delete", vec![json!(subtree)])
            .map(|_| ())
    }

    /// Every name matching `pattern`, walking into mount tables mounted in
    /// mount tables. Sorted by name.
    pub(crate) fn glob(&self, t: &dyn Tables, pattern: &str) -> Result<Vec<GlobEntry>> {
        let (start, prefix, rest) = match Name::parse(pattern)?.endpoint() {
            Some(ep) => {
                let rest = Name::parse(pattern)?.suffix().to_string();
                (
                    vec![Resolved::plain(format!("/{ep}"))],
                    format!("/{ep}"),
                    rest,
                )
            }
            None => (
                self.roots().into_iter().map(Resolved::plain).collect(),
                String::new(),
                pattern.to_string(),
            ),
        };
        if start.is_empty() {
            return Err(Error::no_exist("cannot glob: no name space root is set"));
        }
        let mut out: BTreeMap<String, Vec<MountedServer>> = BTreeMap::new();
        let mut queue = vec![(start, prefix, rest, 0usize)];
        let mut seen = HashSet::new();
        let mut first_error = None;
        let mut answered = false;
        while let Some((tables, prefix, pat, depth)) = queue.pop() {
            if depth > MAX_DEPTH || !seen.insert((names(&tables), pat.clone())) {
                continue;
            }
            let pattern = Pattern::parse(&pat)?;
            let entries = match glob_one(t, &tables, &pat) {
                Ok(e) => e,
                Err(e) => {
                    log::debug!("glob {pat} at {:?}: {e}", names(&tables));
                    first_error.get_or_insert(e);
                    continue;
                }
            };
            answered = true;
            for e in entries {
                let states = pattern.walk(&e.name);
                let full = naming::join(&prefix, &e.name);
                if full.is_empty() || full == prefix {
                    continue;
                }
                if pattern.is_final(&states) {
                    out.insert(full.clone(), e.servers.clone());
                    if out.len() > MAX_GLOB {
                        return Err(Error::bad_arg(format!(
                            "glob matches more than {MAX_GLOB} names"
                        )));
                    }
                }
                let below: Vec<Resolved> = e
                    .servers
                    .iter()
                    .filter(|s| {
                        Name::parse(&s.server)
                            .ok()
                            .and_then(|n| n.endpoint().map(|ep| ep.is_mount_table()))
                            .unwrap_or(false)
                    })
                    .map(|s| Resolved {
                        name: s.server.clone(),
                        blessings: s.blessings.clone(),
                    })
                    .collect();
                if !below.is_empty() {
                    for r in pattern.remainders(&states) {
                        queue.push((below.clone(), full.clone(), r, depth + 1));
                    }
                }
            }
        }
        if let (false, Some(e)) = (answered, first_error) {
            return Err(e);
        }
        Ok(out
            .into_iter()
            .map(|(name, servers)| GlobEntry { name, servers })
            .collect())
    }
}

fn glob_one(tables: &dyn Tables, targets: &[Resolved], pattern: &str) -> Result<Vec<GlobEntry>> {
    let mut last = Error::no_exist("no mount table to ask");
    for table in targets {
        let t = &table.name;
        let parsed = Name::parse(t)?;
        let Some(ep) = parsed.endpoint() else {
            continue;
        };
        let mut entries = Vec::new();
        let mut item = |v: Value| match serde_json::from_value::<GlobEntry>(v) {
            Ok(e) if !e.servers.iter().all(bounded) => {
                Err(Error::internal(format!("{t}: malformed glob item")))
            }
            Ok(e) if entries.len() < MAX_GLOB => {
                entries.push(e);
                Ok(())
            }
            Ok(_) => Err(Error::bad_arg("glob reply too long")),
            Err(e) => Err(Error::internal(format!("{t}: malformed glob item: {e}"))),
        };
        match tables.call_table(
            ep,
            parsed.suffix(),
            "Glob",
            vec![json!(pattern)],
            call_deadline(None),
            table.expect(),
            Some(&mut item),
        ) {
            Ok(_) => return Ok(entries),
            Err(e) => last = e,
        }
    }
    Err(last)
}
