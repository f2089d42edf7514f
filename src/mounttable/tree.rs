//! The mount table's name tree and who may do what to it: pure state, no
//! I/O and no threads (the table's lock is held around every call here).
//!
//! Each node may carry permissions of its own: an access list per tag for
//! the tags set there (the others are its parent's), a version, and its
//! creator. A node made by a caller is the caller's: its proven names get
//! `Admin` and `Mount` there. The root's tags that are not set are
//! [`defaults`](Table::defaults): everyone may resolve, read and create
//! below it, no one mounts at it, and the table's own principal is its
//! `Admin`. Whoever is `Admin` of the root is `Admin` of every node.
//!
//! The tag sets each operation needs follow Vanadium's mount table: every
//! node passed on the way needs one of Read, Resolve, Create or Admin; a
//! new node needs Create (or Admin) on its parent, and Mount on the
//! nearest mount point above it (a node with a server, or that had one
//! while it has been kept: resolution picks the longest mounted prefix);
//! and so on per method (see the constants below).

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use crate::clock::Clock;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::glob::{Pattern, States};
use crate::naming;
use crate::rpc::{GlobEntry, MountedServer};
use crate::security::BlessingPattern;
use crate::security::access::{AccessList, MAX_PATTERNS, Permissions, Tag};

/// Passing through a node on the way to another.
const TRAVERSE: &[Tag] = &[Tag::Read, Tag::Resolve, Tag::Create, Tag::Admin];
/// Making a child of a node.
const CREATE: &[Tag] = &[Tag::Create, Tag::Admin];
/// Mounting and unmounting at a node.
const MOUNT: &[Tag] = &[Tag::Mount, Tag::Admin];
/// Resolving a name at a node, and seeing its servers in a glob.
const RESOLVE: &[Tag] = &[Tag::Read, Tag::Resolve, Tag::Admin];
/// Listing a node's children.
const GLOB: &[Tag] = &[Tag::Read, Tag::Admin];
/// Reading a node's permissions.
const GET: &[Tag] = &[Tag::Read, Tag::Admin];
/// Changing a node's permissions, deleting it.
const ADMIN: &[Tag] = &[Tag::Admin];
/// Any access at all: a node with none is invisible in a glob.
const ANY: &[Tag] = &Tag::ALL;
/// Most work one glob may take to match its pattern against the names
/// (see [`Pattern::step_counting`]), under the table's lock: about what
/// an ordinary pattern costs over a full table (100,000 names), some
/// milliseconds. A pattern whose elements cost their length times the
/// names' (`*` then thousands of `?`) is refused past it rather than
/// holding every mount and resolution up.
const MAX_GLOB_WORK: u64 = 1 << 24;

/// Most bytes of the blessing names recorded for one mounted server, all
/// of them together: as many as its name may take. (With the count,
/// [`MAX_PATTERNS`], what an entry holds is bounded, as the number of
/// entries is.)
const MAX_RECORDED_BYTES: usize = naming::MAX_NAME_LEN;

/// Most bytes of the patterns of one name's permissions, all tags
/// together (ordinary ones take a few hundred): they are held as long as
/// the name, and written to disk with every change.
const MAX_PERMISSIONS_BYTES: usize = 4 * naming::MAX_NAME_LEN;

/// Limits of the tree (from `MountTableConfig`).
#[derive(Clone, Debug)]
pub(super) struct Limits {
    pub max_entries: usize,
    pub max_servers_per_name: usize,
    pub max_ttl: Duration,
    pub max_nodes: usize,
    pub max_nodes_per_creator: usize,
    /// How long a name made by mounting stays its maker's once nothing is
    /// mounted at or below it.
    pub hold: Duration,
}

/// One server mounted at a node.
#[derive(Clone, Debug)]
struct Mounted {
    server: String,
    expires: Instant,
    blessings: Vec<String>,
}

/// Permissions set on a node, with their version and the node's creator
/// (whose node quota it counts against; empty: nobody's). `explicit`:
/// set with SetPermissions (kept until deleted); else made by a mount
/// (kept while in use, and for the hold after). `mounted`: a server has
/// been mounted at the node (while the node is kept, names below it need
/// Mount there, its server there or not).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct Owned {
    pub permissions: Permissions,
    pub version: u32,
    #[serde(default)]
    pub creator: String,
    #[serde(default)]
    pub explicit: bool,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub mounted: bool,
}

#[derive(Default)]
struct Node {
    servers: Vec<Mounted>,
    children: BTreeMap<String, Node>,
    owned: Option<Box<Owned>>,
    /// When something was last mounted at or below (or the table loaded
    /// the node): a name made by mounting is held from then.
    used: Option<Instant>,
}

impl Node {
    fn live(&self, now: Instant) -> Vec<MountedServer> {
        self.servers
            .iter()
            .filter(|m| m.expires > now)
            .map(|m| MountedServer {
                server: m.server.clone(),
                ttl: m.expires.saturating_duration_since(now).as_secs().max(1),
                blessings: m.blessings.clone(),
            })
            .collect()
    }

    fn has_live(&self, now: Instant) -> bool {
        self.servers.iter().any(|m| m.expires > now)
    }

    /// Whether a server is mounted here, or was while the node has been
    /// kept: a name below it would take calls meant for that server
    /// (resolution picks the longest mounted prefix), now or once it is
    /// back.
    fn is_mount_point(&self, now: Instant) -> bool {
        self.owned.as_ref().is_some_and(|o| o.mounted) || self.has_live(now)
    }

    /// Whether a live server is mounted here or below.
    fn live_at_or_below(&self, now: Instant) -> bool {
        self.has_live(now) || self.children.values().any(|c| c.live_at_or_below(now))
    }

    /// Whether nothing keeps the node: no server, no child, and no
    /// permissions (or only a mount's, unused for `hold`).
    fn is_useless(&self, now: Instant, hold: Duration) -> bool {
        if !self.servers.is_empty() || !self.children.is_empty() {
            return false;
        }
        match &self.owned {
            None => true,
            Some(o) if o.explicit => false,
            Some(_) => self
                .used
                .is_none_or(|u| now.saturating_duration_since(u) >= hold),
        }
    }

    /// Drops expired servers and useless nodes below; the entries dropped.
    /// The creators of the names dropped go to `gone`.
    fn prune(&mut self, now: Instant, hold: Duration, gone: &mut Vec<String>) -> usize {
        let before = self.servers.len();
        self.servers.retain(|m| m.expires > now);
        let mut removed = before - self.servers.len();
        self.children.retain(|_, c| {
            removed += c.prune(now, hold, gone);
            let useless = c.is_useless(now, hold);
            if let (true, Some(o)) = (useless, &c.owned) {
                gone.push(o.creator.clone());
            }
            !useless
        });
        removed
    }

    /// Removes the useless nodes along `path`.
    fn prune_path(&mut self, path: &[&str], now: Instant, hold: Duration, gone: &mut Vec<String>) {
        if let Some((first, rest)) = path.split_first()
            && let Some(child) = self.children.get_mut(*first)
        {
            child.prune_path(rest, now, hold, gone);
            if child.is_useless(now, hold) {
                if let Some(o) = &child.owned {
                    gone.push(o.creator.clone());
                }
                self.children.remove(*first);
            }
        }
    }

    /// Every node at or below with permissions, as (name, owned).
    fn owned_nodes<'a>(&'a self, name: &str, out: &mut Vec<(String, &'a Owned)>) {
        if let Some(o) = &self.owned {
            out.push((name.to_string(), o));
        }
        for (e, c) in &self.children {
            c.owned_nodes(&naming::join(name, e), out);
        }
    }

    /// Counts, at or below: server entries, and nodes per creator.
    fn tally(&self, entries: &mut usize, creators: &mut HashMap<String, usize>) {
        *entries += self.servers.len();
        if let Some(o) = &self.owned {
            *creators.entry(o.creator.clone()).or_default() += 1;
        }
        for c in self.children.values() {
            c.tally(entries, creators);
        }
    }
}

/// The access lists in force at a node: each tag's nearest setting on the
/// way from the root.
#[derive(Clone, Copy)]
struct Eff<'a>([&'a AccessList; 5]);

impl<'a> Eff<'a> {
    fn under(mut self, node: &'a Node) -> Eff<'a> {
        if let Some(o) = &node.owned {
            for (t, l) in o.permissions.iter() {
                self.0[t as usize] = l;
            }
        }
        self
    }

    fn allows(&self, tags: &[Tag], names: &[String]) -> bool {
        tags.iter().any(|t| self.0[*t as usize].includes(names))
    }

    fn permissions(&self) -> Permissions {
        let mut p = Permissions::new();
        for t in Tag::ALL {
            p.set(t, self.0[t as usize].clone());
        }
        p
    }
}

/// Who is asking: the names the caller proved to the table.
pub(super) struct Caller<'a> {
    pub names: &'a [String],
}

/// What a change did, for persistence: whether the permissions changed.
#[must_use]
#[derive(Debug)]
pub(super) struct Changed(pub bool);

/// The name tree.
pub(super) struct Table {
    root: Node,
    /// Live and expired (name, server) entries not yet pruned.
    entries: usize,
    /// Nodes with permissions, per creator.
    creators: HashMap<String, usize>,
    /// Nodes with permissions.
    nodes: usize,
    /// The root's lists for the tags it does not set.
    defaults: [AccessList; 5],
    /// Whether `defaults` know the table's own names yet.
    own_known: bool,
    limits: Limits,
    mounts: u64,
    /// What TTLs and holds are measured by.
    clock: Clock,
}

/// One node's permissions as stored.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(super) struct StoredNode {
    pub name: String,
    #[serde(flatten)]
    pub owned: Owned,
}

fn split(name: &str) -> Vec<&str> {
    name.split('/').filter(|e| !e.is_empty()).collect()
}

fn denied(what: &str, name: &str, caller: &Caller, tags: &[Tag]) -> Error {
    let tags: Vec<&str> = tags.iter().map(|t| t.as_str()).collect();
    let who = if caller.names.is_empty() {
        "a caller that proved no blessing name this mount table recognizes".to_string()
    } else {
        format!("{:?}", caller.names)
    };
    Error::no_access(format!(
        "{what} {:?}: {who} has none of {} there",
        if name.is_empty() { "(the root)" } else { name },
        tags.join(", ")
    ))
}

impl Table {
    pub(super) fn new(limits: Limits, clock: Clock) -> Table {
        Table {
            clock,
            root: Node::default(),
            entries: 0,
            creators: HashMap::new(),
            nodes: 0,
            defaults: Self::defaults(&[]),
            own_known: false,
            limits,
            mounts: 0,
        }
    }

    /// The root's lists for tags it does not set, for a table whose own
    /// principal is named `own`: Resolve, Read and Create for everyone,
    /// Mount for no one, Admin for the table's own names.
    pub(super) fn defaults(own: &[String]) -> [AccessList; 5] {
        let everyone = || AccessList::parse(&["..."]).unwrap_or_default();
        let mut d: [AccessList; 5] = Default::default();
        d[Tag::Resolve as usize] = everyone();
        d[Tag::Read as usize] = everyone();
        d[Tag::Create as usize] = everyone();
        d[Tag::Mount as usize] = AccessList::default();
        // (Names that are not valid patterns name no one.)
        d[Tag::Admin as usize] = AccessList::new(
            own.iter()
                .filter_map(|n| BlessingPattern::new(n).ok())
                .collect(),
        )
        .unwrap_or_default();
        d
    }

    /// Sets the table's own names (the root's default Admin), once: from
    /// the principal that serves the table, at its first call.
    pub(super) fn know_own_names(&mut self, own: impl FnOnce() -> Vec<String>) {
        if !self.own_known {
            self.defaults = Self::defaults(&own());
            self.own_known = true;
        }
    }

    fn root_eff(&self) -> Eff<'_> {
        let d = &self.defaults;
        Eff([&d[0], &d[1], &d[2], &d[3], &d[4]]).under(&self.root)
    }

    /// Whether the caller is Admin of the root, and so of every node.
    fn is_superuser(&self, caller: &Caller) -> bool {
        self.root_eff().allows(ADMIN, caller.names)
    }

    /// The nodes on `path` that exist, from the root, with the lists in
    /// force at each.
    fn walk<'a>(&'a self, path: &[&str]) -> Vec<(&'a Node, Eff<'a>)> {
        let mut out = Vec::with_capacity(path.len() + 1);
        let mut node = &self.root;
        let mut eff = self.root_eff();
        out.push((node, eff));
        for e in path {
            match node.children.get(*e) {
                Some(c) => {
                    node = c;
                    eff = eff.under(c);
                    out.push((node, eff));
                }
                None => break,
            }
        }
        out
    }

    /// Checks that the caller may pass through `walked[..upto]`.
    fn check_traverse(
        walked: &[(&Node, Eff)],
        upto: usize,
        what: &str,
        path: &[&str],
        caller: &Caller,
    ) -> Result<()> {
        for (i, (_, eff)) in walked.iter().enumerate().take(upto) {
            if !eff.allows(TRAVERSE, caller.names) {
                return Err(denied(what, &path[..i].join("/"), caller, TRAVERSE));
            }
        }
        Ok(())
    }

    /// Checks that the caller may do `what` (needing `tags`) at `path`,
    /// making the nodes missing on it; `Ok(Some(n))`: the first `n`
    /// elements of `path` exist and the rest must be made (see
    /// [`make`](Self::make)).
    fn check(
        &self,
        what: &str,
        path: &[&str],
        tags: &[Tag],
        caller: &Caller,
        now: Instant,
    ) -> Result<Option<usize>> {
        let superuser = self.is_superuser(caller);
        let walked = self.walk(path);
        let have = walked.len() - 1;
        let name = path.join("/");
        if !superuser {
            Self::check_traverse(&walked, have.min(path.len()), what, path, caller)?;
        }
        if have == path.len() {
            let (_, eff) = walked[have];
            if !superuser && !eff.allows(tags, caller.names) {
                return Err(denied(what, &name, caller, tags));
            }
            return Ok(None);
        }
        // New nodes below walked[have]: of characters a reader can see for
        // what they are, so that no name passes for another in a listing.
        for e in &path[have..] {
            if let Some((c, kind)) = crate::security::first_unseen(e) {
                return Err(Error::bad_arg(format!(
                    "{what} {name:?}: the element {e:?} holds U+{:04X}, {kind}; a name is made of characters one can see for what they are (no spaces, invisible, direction-changing or unassigned ones)",
                    c as u32
                )));
            }
        }
        let (_, eff) = walked[have];
        if !superuser {
            if !eff.allows(CREATE, caller.names) {
                return Err(denied(
                    &format!("{what} (making a name below)"),
                    &path[..have].join("/"),
                    caller,
                    CREATE,
                ));
            }
            // A name below a mounted one, at any depth, would take calls
            // meant for the server of the nearest (resolution picks the
            // longest mounted prefix), now or when it is back.
            let mounted = (1..=have).rev().find(|i| walked[*i].0.is_mount_point(now));
            if let Some(i) = mounted
                && !walked[i].1.allows(MOUNT, caller.names)
            {
                return Err(denied(
                    &format!("{what} (making a name below the mounted name)"),
                    &path[..i].join("/"),
                    caller,
                    MOUNT,
                ));
            }
        }
        let Some(creator) = caller.names.first() else {
            return Err(Error::no_access(format!(
                "{what} {name:?}: a name is owned by the names its creator proves, and this caller proved none this mount table recognizes"
            )));
        };
        let new = path.len() - have;
        if !superuser {
            let mine = self.creators.get(creator).copied().unwrap_or(0);
            if mine + new > self.limits.max_nodes_per_creator {
                return Err(Error::no_access(format!(
                    "{what} {name:?}: {creator} owns {mine} names in this mount table, the limit is {}",
                    self.limits.max_nodes_per_creator
                )));
            }
        }
        if self.nodes + new > self.limits.max_nodes {
            return Err(Error::bad_arg(format!(
                "{what} {name:?}: the mount table holds {} names, the limit",
                self.nodes
            )));
        }
        Ok(Some(have))
    }

    /// Makes the nodes of `path` past the first `have`, each owned by the
    /// caller (its names are Admin and Mount there), as
    /// [`check`](Self::check) allowed.
    fn make(&mut self, path: &[&str], have: usize, caller: &Caller) -> Result<()> {
        let creator = caller
            .names
            .first()
            .ok_or_else(|| Error::internal("a name made for no one"))?
            .clone();
        let owner = AccessList::names(caller.names)?;
        let mut perms = Permissions::new();
        perms.set(Tag::Admin, owner.clone());
        perms.set(Tag::Mount, owner);
        let now = self.clock.now();
        let mut node = &mut self.root;
        for (i, e) in path.iter().enumerate() {
            node = node.children.entry(e.to_string()).or_default();
            if i >= have {
                node.owned = Some(Box::new(Owned {
                    permissions: perms.clone(),
                    version: 0,
                    creator: creator.clone(),
                    explicit: false,
                    mounted: false,
                }));
                node.used = Some(now);
            }
        }
        let new = path.len().saturating_sub(have);
        *self.creators.entry(creator).or_default() += new;
        self.nodes += new;
        Ok(())
    }

    /// Drops expired servers and names no longer held, everywhere.
    fn sweep(&mut self, now: Instant) {
        let mut gone = Vec::new();
        self.entries -= self.root.prune(now, self.limits.hold, &mut gone);
        self.forget(gone);
    }

    /// Drops the useless names along `path`.
    fn sweep_path(&mut self, path: &[&str], now: Instant) {
        let mut gone = Vec::new();
        self.root.prune_path(path, now, self.limits.hold, &mut gone);
        self.forget(gone);
    }

    /// Takes names dropped off their creators' counts.
    fn forget(&mut self, gone: Vec<String>) {
        for c in gone {
            self.nodes = self.nodes.saturating_sub(1);
            if let Some(have) = self.creators.get_mut(&c) {
                *have = have.saturating_sub(1);
                if *have == 0 {
                    self.creators.remove(&c);
                }
            }
        }
    }

    /// Before making names for `caller`: if it is at its limit, names it
    /// no longer holds are dropped first.
    fn sweep_for(&mut self, caller: &Caller, now: Instant) {
        let at_limit = caller.names.first().is_some_and(|c| {
            self.creators.get(c).copied().unwrap_or(0) >= self.limits.max_nodes_per_creator
        });
        if at_limit {
            self.sweep(now);
        }
    }

    /// Marks the nodes on `path` as in use now.
    fn touch(&mut self, path: &[&str], now: Instant) {
        let mut node = &mut self.root;
        for e in path {
            match node.children.get_mut(*e) {
                Some(c) => {
                    c.used = Some(now);
                    node = c;
                }
                None => return,
            }
        }
    }

    fn node_mut(&mut self, path: &[&str]) -> Option<&mut Node> {
        let mut node = &mut self.root;
        for e in path {
            node = node.children.get_mut(*e)?;
        }
        Some(node)
    }

    /// Mounts `server` at `name` for `ttl`, recording `blessings` for it.
    pub(super) fn mount(
        &mut self,
        caller: &Caller,
        name: &str,
        server: &str,
        ttl: Duration,
        blessings: Vec<String>,
    ) -> Result<Changed> {
        let path = split(name);
        if path.is_empty() {
            return Err(Error::bad_arg("cannot mount at the root of a mount table"));
        }
        // The tree is walked recursively (prune, glob, drop): its depth is
        // bounded, as a name's length is.
        if path.len() > crate::glob::MAX_ELEMENTS || name.len() > naming::MAX_NAME_LEN {
            return Err(Error::bad_arg(format!(
                "a name of {} elements and {} bytes (limits {} and {})",
                path.len(),
                name.len(),
                crate::glob::MAX_ELEMENTS,
                naming::MAX_NAME_LEN
            )));
        }
        if !server.starts_with('/') {
            return Err(Error::bad_arg(format!(
                "server {server:?} is not a rooted name"
            )));
        }
        naming::Name::parse(server)?;
        let bytes: usize = blessings.iter().map(String::len).sum();
        if blessings.len() > MAX_PATTERNS || bytes > MAX_RECORDED_BYTES {
            return Err(Error::bad_arg(format!(
                "{} server blessings of {bytes} bytes in all (limits {MAX_PATTERNS} and {MAX_RECORDED_BYTES} bytes): give the names the server proves (serverBlessings, --server-blessing)",
                blessings.len()
            )));
        }
        let now = self.clock.now();
        self.mounts += 1;
        if self.mounts.is_multiple_of(256) {
            self.sweep(now);
        } else {
            self.sweep_for(caller, now);
        }
        let full = self.entries >= self.limits.max_entries;
        let missing = self.check("mount at", &path, MOUNT, caller, now)?;
        // The limits, before anything is made: a refused mount makes no
        // name.
        if let Some(node) = self.walk(&path).get(path.len()).map(|(n, _)| *n)
            && !node.servers.iter().any(|m| m.server == server)
        {
            let live = node.servers.iter().filter(|m| m.expires > now).count();
            if live >= self.limits.max_servers_per_name {
                return Err(Error::bad_arg(format!(
                    "{name} has {live} servers, the limit"
                )));
            }
        }
        if full && missing.is_some() {
            return Err(Error::bad_arg(format!(
                "the mount table is full ({} entries)",
                self.limits.max_entries
            )));
        }
        if let Some(have) = missing {
            self.make(&path, have, caller)?;
        }
        let ttl = ttl.min(self.limits.max_ttl);
        let max_servers = self.limits.max_servers_per_name;
        let max_entries = self.limits.max_entries;
        let node = self
            .node_mut(&path)
            .ok_or_else(|| Error::internal("a node just made is gone"))?;
        let before = node.servers.len();
        node.servers.retain(|m| m.expires > now);
        let expired = before - node.servers.len();
        let outcome = if let Some(m) = node.servers.iter_mut().find(|m| m.server == server) {
            m.expires = now + ttl;
            m.blessings = blessings;
            Ok(())
        } else if full || node.servers.len() >= max_servers {
            Err(Error::bad_arg(if full {
                format!("the mount table is full ({max_entries} entries)")
            } else {
                format!("{name} has {} servers, the limit", node.servers.len())
            }))
        } else {
            node.servers.push(Mounted {
                server: server.to_string(),
                expires: now + ttl,
                blessings,
            });
            Ok(())
        };
        let added = usize::from(outcome.is_ok() && node.servers.len() > before - expired);
        // A mount point from now on (kept, and saved, with the node).
        let marked = match (&outcome, node.owned.as_deref_mut()) {
            (Ok(()), Some(o)) if !o.mounted => {
                o.mounted = true;
                true
            }
            _ => false,
        };
        self.entries = self.entries - expired + added;
        if outcome.is_ok() {
            self.touch(&path, now);
        }
        outcome.map(|_| Changed(missing.is_some() || marked))
    }

    /// Unmounts `server` (all when empty) from `name`.
    pub(super) fn unmount(&mut self, caller: &Caller, name: &str, server: &str) -> Result<()> {
        let path = split(name);
        let superuser = self.is_superuser(caller);
        let walked = self.walk(&path);
        if walked.len() - 1 < path.len() {
            return Ok(());
        }
        if !superuser {
            Self::check_traverse(&walked, path.len(), "unmount from", &path, caller)?;
            if !walked[path.len()].1.allows(MOUNT, caller.names) {
                return Err(denied("unmount from", name, caller, MOUNT));
            }
        }
        if let Some(node) = self.node_mut(&path) {
            let before = node.servers.len();
            node.servers
                .retain(|m| !server.is_empty() && m.server != server);
            self.entries -= before - node.servers.len();
        }
        self.sweep_path(&path, self.clock.now());
        Ok(())
    }

    /// The servers of the longest mounted prefix of `name`, and the rest.
    pub(super) fn resolve_step(
        &self,
        caller: &Caller,
        name: &str,
    ) -> Result<(Vec<MountedServer>, String)> {
        let path = split(name);
        let now = self.clock.now();
        let walked = self.walk(&path);
        let Some(at) = (1..walked.len()).rev().find(|i| walked[*i].0.has_live(now)) else {
            return Ok((Vec::new(), path.join("/")));
        };
        let superuser = || self.is_superuser(caller);
        let shown = path[..at].join("/");
        if Self::check_traverse(&walked, at, "resolve", &path, caller).is_err() && !superuser() {
            return Err(denied("resolve", &shown, caller, TRAVERSE));
        }
        if !walked[at].1.allows(RESOLVE, caller.names) && !superuser() {
            return Err(denied("resolve", &shown, caller, RESOLVE));
        }
        Ok((walked[at].0.live(now), path[at..].join("/")))
    }

    /// The names matching `pattern` below `at` that the caller may see.
    pub(super) fn glob(
        &self,
        caller: &Caller,
        at: &str,
        pattern: &Pattern,
        out: &mut Vec<GlobEntry>,
    ) -> Result<()> {
        let path = split(at);
        let walked = self.walk(&path);
        if walked.len() - 1 < path.len() {
            return Ok(());
        }
        let superuser = self.is_superuser(caller);
        if !superuser {
            Self::check_traverse(&walked, path.len(), "glob", &path, caller)?;
        }
        let (node, eff) = walked[path.len()];
        let mut g = Glob {
            caller,
            superuser,
            pattern,
            now: self.clock.now(),
            work: 0,
        };
        if g.children(node, eff, "", &pattern.start(), out).is_none() {
            out.clear();
            return Err(Error::bad_arg(format!(
                "glob: matching the pattern against this mount table's names takes more than {MAX_GLOB_WORK} steps; use a simpler pattern (fewer `*`, `?` and sets in one element, or a shorter one)"
            )));
        }
        Ok(())
    }

    /// The permissions in force at `name` (every tag) and its version.
    pub(super) fn get_permissions(
        &self,
        caller: &Caller,
        name: &str,
    ) -> Result<(Permissions, u32)> {
        let path = split(name);
        let walked = self.walk(&path);
        if walked.len() - 1 < path.len() {
            return Err(Error::no_exist(format!(
                "{name:?} is not in this mount table"
            )));
        }
        let (node, eff) = walked[path.len()];
        if !self.is_superuser(caller) {
            Self::check_traverse(
                &walked,
                path.len(),
                "read the permissions of",
                &path,
                caller,
            )?;
            if !eff.allows(GET, caller.names) {
                return Err(denied("read the permissions of", name, caller, GET));
            }
        }
        Ok((
            eff.permissions(),
            node.owned.as_ref().map_or(0, |o| o.version),
        ))
    }

    /// Sets the permissions of `name` (made if missing): the tags given
    /// replace what the node set, the others are its parent's. `version`
    /// (unless empty) must be the current one. The caller keeps Admin if
    /// it had it.
    pub(super) fn set_permissions(
        &mut self,
        caller: &Caller,
        name: &str,
        mut perms: Permissions,
        version: &str,
    ) -> Result<Changed> {
        let path = split(name);
        let bytes: usize = perms
            .iter()
            .flat_map(|(_, l)| l.patterns())
            .map(|p| p.as_str().len())
            .sum();
        if bytes > MAX_PERMISSIONS_BYTES {
            return Err(Error::bad_arg(format!(
                "permissions of {bytes} bytes of patterns (limit {MAX_PERMISSIONS_BYTES})"
            )));
        }
        let now = self.clock.now();
        self.sweep_for(caller, now);
        let missing = if path.is_empty() {
            if !self.is_superuser(caller) {
                return Err(denied("set the permissions of", name, caller, ADMIN));
            }
            None
        } else {
            self.check("set the permissions of", &path, ADMIN, caller, now)?
        };
        // Everything is decided before a missing name is made, so that a
        // refusal changes nothing. A name to be made is the caller's: its
        // names are Admin there, and on the names made with it.
        let made = AccessList::names(caller.names)?;
        let walked = self.walk(&path);
        const ADMIN_AT: usize = Tag::Admin as usize;
        let (current, was_admin, parent_admin) = match missing {
            None => {
                let (node, eff) = walked[path.len()];
                let parent = match path.len() {
                    0 => &self.defaults[ADMIN_AT],
                    n => walked[n - 1].1.0[ADMIN_AT],
                };
                let current = node.owned.as_ref().map_or(0, |o| o.version);
                (current, eff.0[ADMIN_AT], parent)
            }
            Some(have) if have + 1 == path.len() => (0, &made, walked[have].1.0[ADMIN_AT]),
            Some(_) => (0, &made, &made),
        };
        if !version.is_empty() && version != current.to_string() {
            return Err(Error::bad_arg(format!(
                "the permissions of {name:?} are at version {current}, not {version}: read them again"
            )));
        }
        // Keep the caller's Admin: names of its that were Admin here and
        // would not be.
        let keep: Vec<String> = caller
            .names
            .iter()
            .filter(|n| was_admin.includes(std::slice::from_ref(n)))
            .filter(|n| {
                !perms
                    .get(Tag::Admin)
                    .unwrap_or(parent_admin)
                    .includes(std::slice::from_ref(n))
            })
            .cloned()
            .collect();
        if !keep.is_empty() && perms.get(Tag::Admin).is_none() {
            perms.set(Tag::Admin, parent_admin.clone());
        }
        for n in keep {
            perms.get_mut(Tag::Admin).add(BlessingPattern::new(&n)?)?;
        }
        drop(walked);
        if let Some(have) = missing {
            self.make(&path, have, caller)?;
        }
        let node = self
            .node_mut(&path)
            .ok_or_else(|| Error::internal("a node just made is gone"))?;
        let creator = node.owned.as_ref().map(|o| o.creator.clone());
        let mounted = node.owned.as_ref().is_some_and(|o| o.mounted);
        let counted = creator.is_some();
        node.owned = Some(Box::new(Owned {
            permissions: perms,
            version: current.wrapping_add(1),
            creator: creator.unwrap_or_default(),
            explicit: true,
            mounted,
        }));
        if !counted {
            // (An unowned node given permissions: counted as nobody's.)
            *self.creators.entry(String::new()).or_default() += 1;
            self.nodes += 1;
        }
        Ok(Changed(true))
    }

    /// Deletes `name`, and what is below it if `subtree` (else it must
    /// have nothing below). The caller must be Admin of every node
    /// deleted.
    pub(super) fn delete(&mut self, caller: &Caller, name: &str, subtree: bool) -> Result<Changed> {
        let path = split(name);
        let Some((last, parent_path)) = path.split_last() else {
            return Err(Error::bad_arg(
                "the root of a mount table cannot be deleted",
            ));
        };
        let walked = self.walk(&path);
        if walked.len() - 1 < path.len() {
            return Ok(Changed(false));
        }
        let (node, eff) = walked[path.len()];
        if !node.children.is_empty() && !subtree {
            return Err(Error::bad_arg(format!(
                "{name:?} has names below it: delete them first, or delete the subtree"
            )));
        }
        if !self.is_superuser(caller) {
            Self::check_traverse(&walked, path.len(), "delete", &path, caller)?;
            if let Some(bad) = first_not_admin(node, eff, name, caller) {
                return Err(denied("delete", &bad, caller, ADMIN));
            }
        }
        let parent = self
            .node_mut(parent_path)
            .ok_or_else(|| Error::internal("a parent just walked is gone"))?;
        let Some(gone) = parent.children.remove(*last) else {
            return Ok(Changed(false));
        };
        let mut entries = 0;
        let mut creators = HashMap::new();
        gone.tally(&mut entries, &mut creators);
        self.entries -= entries;
        for (c, n) in creators {
            self.nodes -= n;
            if let Some(have) = self.creators.get_mut(&c) {
                *have = have.saturating_sub(n);
                if *have == 0 {
                    self.creators.remove(&c);
                }
            }
        }
        self.sweep_path(parent_path, self.clock.now());
        Ok(Changed(true))
    }

    /// Live (name, server) entries.
    pub(super) fn len(&mut self) -> usize {
        self.sweep(self.clock.now());
        self.entries
    }

    /// Nodes with permissions (names with owners).
    pub(super) fn owned(&self) -> usize {
        self.nodes
    }

    /// Every node's permissions, for the store.
    pub(super) fn snapshot(&self) -> Vec<StoredNode> {
        let mut owned = Vec::new();
        self.root.owned_nodes("", &mut owned);
        owned
            .into_iter()
            .map(|(name, o)| StoredNode {
                name,
                owned: o.clone(),
            })
            .collect()
    }

    /// Restores permissions from the store (before anything is mounted).
    pub(super) fn restore(&mut self, nodes: Vec<StoredNode>) -> Result<()> {
        let now = self.clock.now();
        for n in nodes {
            let path = split(&n.name);
            if path.len() > crate::glob::MAX_ELEMENTS {
                return Err(Error::bad_arg(format!(
                    "stored name {:?} is too deep",
                    n.name
                )));
            }
            let mut node = &mut self.root;
            for e in &path {
                node = node.children.entry(e.to_string()).or_default();
            }
            node.owned = Some(Box::new(n.owned));
            // (Held afresh from the table's start: its owner's servers
            // mount again meanwhile.)
            node.used = Some(now);
        }
        let mut entries = 0;
        let mut creators = HashMap::new();
        self.root.tally(&mut entries, &mut creators);
        self.nodes = creators.values().sum();
        self.creators = creators;
        Ok(())
    }
}

/// The first node at or below `node` (named `name`) where the caller is
/// not Admin.
fn first_not_admin(node: &Node, eff: Eff, name: &str, caller: &Caller) -> Option<String> {
    if !eff.allows(ADMIN, caller.names) {
        return Some(name.to_string());
    }
    node.children
        .iter()
        .find_map(|(e, c)| first_not_admin(c, eff.under(c), &naming::join(name, e), caller))
}

/// One glob's walk.
struct Glob<'a> {
    caller: &'a Caller<'a>,
    superuser: bool,
    pattern: &'a Pattern,
    now: Instant,
    /// Work matching the pattern took so far (bounded by
    /// [`MAX_GLOB_WORK`]).
    work: u64,
}

impl Glob<'_> {
    fn allows(&self, eff: &Eff, tags: &[Tag]) -> bool {
        self.superuser || eff.allows(tags, self.caller.names)
    }

    /// Lists the children of `node` that match and that the caller may
    /// see. Names reserved by their owners with nothing mounted at or
    /// below them are not listed. `None`: the matching took more than
    /// [`MAX_GLOB_WORK`].
    fn children(
        &mut self,
        node: &Node,
        eff: Eff,
        name: &str,
        states: &States,
        out: &mut Vec<GlobEntry>,
    ) -> Option<()> {
        if !self.allows(&eff, GLOB) {
            return Some(());
        }
        for (elem, child) in &node.children {
            let st = self.pattern.step_counting(states, elem, &mut self.work);
            if self.work > MAX_GLOB_WORK {
                return None;
            }
            if Pattern::is_dead(&st) {
                continue;
            }
            let ceff = eff.under(child);
            if !self.allows(&ceff, ANY) || !child.live_at_or_below(self.now) {
                continue;
            }
            let child_name = naming::join(name, elem);
            let servers = if self.allows(&ceff, RESOLVE) {
                child.live(self.now)
            } else {
                Vec::new()
            };
            let below = self.pattern.has_remainder(&st);
            if self.pattern.is_final(&st) || (below && !servers.is_empty()) {
                out.push(GlobEntry {
                    name: child_name.clone(),
                    servers,
                });
            }
            if below {
                self.children(child, ceff, &child_name, &st, out)?;
            }
        }
        Some(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: Duration = Duration::from_secs(60);

    fn limits() -> Limits {
        Limits {
            max_entries: 100_000,
            max_servers_per_name: 32,
            max_ttl: Duration::from_secs(86_400),
            max_nodes: 100_000,
            max_nodes_per_creator: 1_000,
            hold: Duration::from_secs(86_400),
        }
    }

    fn table_with(limits: Limits) -> Table {
        table_on(limits, Clock::system())
    }

    fn table_on(limits: Limits, clock: Clock) -> Table {
        let mut t = Table::new(limits, clock);
        t.know_own_names(|| vec!["table".to_string()]);
        t
    }

    fn table() -> Table {
        table_with(limits())
    }

    fn names(n: &[&str]) -> Vec<String> {
        n.iter().map(|s| s.to_string()).collect()
    }

    fn no_access<T>(r: Result<T>) -> Error {
        match r {
            Ok(_) => panic!("allowed"),
            Err(e) => {
                assert_eq!(e.id(), crate::error::ids::NO_ACCESS, "{e}");
                e
            }
        }
    }

    fn glob_names(t: &Table, who: &[String], p: &str) -> Vec<String> {
        let mut out = Vec::new();
        t.glob(
            &Caller { names: who },
            "",
            &Pattern::parse(p).unwrap(),
            &mut out,
        )
        .unwrap();
        out.into_iter().map(|e| e.name).collect()
    }

    #[test]
    fn mount_resolve_unmount() {
        let mut mt = table();
        let a = names(&["alice"]);
        let c = Caller { names: &a };
        let _ = mt.mount(&c, "a/b", "/h:1", MIN, vec![]).unwrap();
        let _ = mt.mount(&c, "a/b/c", "/h:2", MIN, vec![]).unwrap();
        let (s, rest) = mt.resolve_step(&c, "a/b/x/y").unwrap();
        assert_eq!(s[0].server, "/h:1");
        assert_eq!(rest, "x/y");
        let (s, rest) = mt.resolve_step(&c, "a/b/c").unwrap();
        assert_eq!(s[0].server, "/h:2");
        assert_eq!(rest, "");
        assert!(mt.resolve_step(&c, "a").unwrap().0.is_empty());
        assert_eq!(mt.len(), 2);
        mt.unmount(&c, "a/b", "").unwrap();
        assert_eq!(mt.len(), 1);
        assert!(mt.mount(&c, "", "/h:1", MIN, vec![]).is_err());
        assert!(mt.mount(&c, "x", "h:1", MIN, vec![]).is_err());
    }

    #[test]
    fn a_mount_lives_its_ttl_and_its_name_stays_its_makers_for_the_hold() {
        let clock = Clock::manual();
        let mut mt = table_on(limits(), clock.clone());
        let (a, b) = (names(&["alice"]), names(&["bob"]));
        let (alice, bob) = (Caller { names: &a }, Caller { names: &b });
        let minute = Duration::from_secs(60);
        let _ = mt.mount(&alice, "x", "/h:1", minute, vec![]).unwrap();
        let (s, _) = mt.resolve_step(&alice, "x").unwrap();
        assert_eq!((s.len(), s[0].ttl), (1, 60));
        clock.advance(Duration::from_secs(59));
        let (s, _) = mt.resolve_step(&alice, "x").unwrap();
        assert_eq!((s.len(), s[0].ttl), (1, 1), "a second left");
        clock.advance(Duration::from_secs(2));
        assert!(
            mt.resolve_step(&alice, "x").unwrap().0.is_empty(),
            "expired"
        );
        assert_eq!(mt.len(), 0, "its entry is dropped when the table is swept");
        // Nothing is mounted, but the name stays Alice's for the hold.
        no_access(mt.mount(&bob, "x", "/h:2", minute, vec![]));
        clock.advance(Duration::from_secs(86_400));
        // (Names no longer held go at the next sweep.)
        assert_eq!(mt.len(), 0);
        let _ = mt.mount(&bob, "x", "/h:2", minute, vec![]).unwrap();
    }

    #[test]
    fn limits_are_enforced() {
        let mut mt = table_with(Limits {
            max_entries: 2,
            max_servers_per_name: 1,
            ..limits()
        });
        let a = names(&["alice"]);
        let c = Caller { names: &a };
        let _ = mt.mount(&c, "a", "/h:1", MIN, vec![]).unwrap();
        let _ = mt.mount(&c, "a", "/h:1", MIN, vec![]).unwrap(); // refresh
        assert!(mt.mount(&c, "a", "/h:2", MIN, vec![]).is_err());
        let _ = mt.mount(&c, "b", "/h:2", MIN, vec![]).unwrap();
        assert!(mt.mount(&c, "c", "/h:3", MIN, vec![]).is_err());
        // A name deeper than the tree may go.
        let deep = vec!["d"; crate::glob::MAX_ELEMENTS + 1].join("/");
        assert!(mt.mount(&c, &deep, "/h:4", MIN, vec![]).is_err());
        // A refused mount made no name.
        assert!(mt.get_permissions(&c, "c").is_err());
    }

    #[test]
    fn an_unmount_removes_the_nodes_it_leaves_empty() {
        let mut mt = table();
        let a = names(&["alice"]);
        let c = Caller { names: &a };
        let _ = mt.mount(&c, "a/b/c", "/h:1", MIN, vec![]).unwrap();
        let _ = mt.mount(&c, "a/x", "/h:2", MIN, vec![]).unwrap();
        mt.unmount(&c, "a/b/c", "/h:1").unwrap();
        assert_eq!(glob_names(&mt, &a, "..."), vec!["a", "a/x"]);
    }

    #[test]
    fn glob_lists_intermediate_names_and_mount_points() {
        let mut mt = table();
        let a = names(&["alice"]);
        let c = Caller { names: &a };
        let _ = mt.mount(&c, "demo/adder", "/h:1", MIN, vec![]).unwrap();
        let _ = mt.mount(&c, "x", "/h:2", MIN, vec![]).unwrap();
        assert_eq!(glob_names(&mt, &a, "*"), vec!["demo", "x"]);
        assert_eq!(glob_names(&mt, &a, "..."), vec!["demo", "demo/adder", "x"]);
    }

    #[test]
    fn a_name_is_its_creators() {
        let mut mt = table();
        let (a, b) = (names(&["alice"]), names(&["bob"]));
        let (alice, bob) = (Caller { names: &a }, Caller { names: &b });
        let _ = mt.mount(&alice, "shop/till", "/h:1", MIN, vec![]).unwrap();
        // Bob can neither mount over, unmount, re-permission nor delete it.
        no_access(mt.mount(&bob, "shop/till", "/evil:1", MIN, vec![]));
        no_access(mt.unmount(&bob, "shop/till", ""));
        no_access(mt.unmount(&bob, "shop/till", "/h:1"));
        no_access(mt.set_permissions(&bob, "shop/till", Permissions::new(), ""));
        no_access(mt.delete(&bob, "shop/till", false));
        no_access(mt.delete(&bob, "shop", true));
        // Nor a name below it (it would take the till's calls for it).
        no_access(mt.mount(&bob, "shop/till/x", "/evil:1", MIN, vec![]));
        // A name of his own next to it is fine.
        let _ = mt.mount(&bob, "shop/door", "/h:2", MIN, vec![]).unwrap();
        assert_eq!(
            mt.resolve_step(&bob, "shop/till").unwrap().0[0].server,
            "/h:1"
        );
        // With nothing mounted, the till is still Alice's.
        mt.unmount(&alice, "shop/till", "").unwrap();
        no_access(mt.mount(&bob, "shop/till", "/evil:1", MIN, vec![]));
        let _ = mt.mount(&alice, "shop/till", "/h:3", MIN, vec![]).unwrap();
        // The table's own principal is Admin everywhere.
        let t = names(&["table"]);
        let table = Caller { names: &t };
        mt.unmount(&table, "shop/till", "").unwrap();
        let _ = mt.delete(&table, "shop", true).unwrap();
        let _ = mt.mount(&bob, "shop/till", "/h:4", MIN, vec![]).unwrap();
    }

    /// Resolution picks the longest mounted prefix, so a name made below
    /// a mounted one takes calls meant for its server: that needs Mount on
    /// the nearest mounted name above, at any depth, and also while its
    /// server is away (its page reloading, the table restarting).
    #[test]
    fn no_name_below_another_partys_mounted_name_at_any_depth_nor_while_it_is_away() {
        let mut mt = table();
        let (a, b) = (names(&["alice"]), names(&["bob"]));
        let (alice, bob) = (Caller { names: &a }, Caller { names: &b });
        let _ = mt.mount(&alice, "a/b/c", "/h:1", MIN, vec![]).unwrap();
        let _ = mt.mount(&alice, "a", "/h:2", MIN, vec![]).unwrap();
        // "a/b/z" is Alice's server at "a" (suffix "b/z"), though "a/b"
        // has nothing mounted.
        let e = no_access(mt.mount(&bob, "a/b/z", "/evil:1", MIN, vec![]));
        assert!(e.msg().contains("\"a\""), "names the mounted name: {e}");
        no_access(mt.set_permissions(&bob, "a/b/z", Permissions::new(), ""));
        let (s, rest) = mt.resolve_step(&bob, "a/b/z").unwrap();
        assert_eq!((s[0].server.as_str(), rest.as_str()), ("/h:2", "b/z"));
        // Her server away (unmounted, or the table restarted): still hers.
        mt.unmount(&alice, "a", "").unwrap();
        no_access(mt.mount(&bob, "a/x", "/evil:1", MIN, vec![]));
        let stored = serde_json::to_string(&mt.snapshot()).unwrap();
        let mut again = table();
        again
            .restore(serde_json::from_str(&stored).unwrap())
            .unwrap();
        no_access(again.mount(&bob, "a/x", "/evil:1", MIN, vec![]));
        no_access(again.mount(&bob, "a/b/z", "/evil:1", MIN, vec![]));
        // Alice makes names below her own; Bob, next to hers and below
        // his own.
        let _ = mt.mount(&alice, "a/x", "/h:3", MIN, vec![]).unwrap();
        let _ = mt.mount(&bob, "b", "/h:4", MIN, vec![]).unwrap();
        let _ = mt.mount(&bob, "b/y", "/h:5", MIN, vec![]).unwrap();
        let _ = again.mount(&bob, "c/y", "/h:5", MIN, vec![]).unwrap();
        // The table's own principal may anywhere.
        let t = names(&["table"]);
        let _ = mt
            .mount(&Caller { names: &t }, "a/b/t", "/h:6", MIN, vec![])
            .unwrap();
    }

    /// A name that looks like another (a zero-width space inside, a
    /// direction override, a trailing space) would pass for it in a
    /// listing: names are made only of characters one can see for what
    /// they are.
    #[test]
    fn a_name_that_passes_for_another_is_not_made() {
        let mut mt = table();
        let a = names(&["alice"]);
        let alice = Caller { names: &a };
        let _ = mt.mount(&alice, "demo/adder", "/h:1", MIN, vec![]).unwrap();
        for bad in [
            "demo/add\u{200b}er",
            "demo/\u{202e}rredda",
            "demo/adder ",
            "demo/adder\u{feff}",
            "demo\u{00a0}/adder",
            "demo/\u{e000}",
        ] {
            let e = mt.mount(&alice, bad, "/h:2", MIN, vec![]).unwrap_err();
            assert_eq!(e.id(), crate::error::ids::BAD_ARG, "{bad:?}: {e}");
            assert!(e.msg().contains("U+"), "names the character: {e}");
            let e = mt
                .set_permissions(&alice, bad, Permissions::new(), "")
                .unwrap_err();
            assert_eq!(e.id(), crate::error::ids::BAD_ARG, "{bad:?}: {e}");
        }
        assert_eq!(glob_names(&mt, &a, "..."), vec!["demo", "demo/adder"]);
        for good in ["Élodie/日本", "demo/add-er_2.x", "o'neil"] {
            let _ = mt.mount(&alice, good, "/h:3", MIN, vec![]).unwrap();
        }
    }

    /// The blessings recorded for a server are held as long as its entry:
    /// a mounter may not make each of its (up to 32 x 1,000) entries hold
    /// a megabyte of them; a server's ordinary names are recorded.
    #[test]
    fn what_a_mount_records_for_its_server_is_bounded() {
        let mut mt = table();
        let a = names(&["alice"]);
        let alice = Caller { names: &a };
        let long = vec!["x".repeat(255); 12].join("/");
        for blessings in [
            vec![format!("{long}/..."); 2],
            (0..=MAX_PATTERNS).map(|i| format!("p{i}")).collect(),
        ] {
            let e = mt.mount(&alice, "n", "/h:1", MIN, blessings).unwrap_err();
            assert_eq!(e.id(), crate::error::ids::BAD_ARG, "{e}");
            assert!(e.msg().contains("server blessings"), "{e}");
        }
        assert!(mt.get_permissions(&alice, "n").is_err(), "no name made");
        let ok = vec!["d/http:localhost:3000/...".to_string(), "d".to_string()];
        let _ = mt.mount(&alice, "n", "/h:1", MIN, ok.clone()).unwrap();
        let (s, _) = mt.resolve_step(&alice, "n").unwrap();
        assert_eq!(s[0].blessings, ok);
    }

    /// A name's permissions are held, and written to disk with every
    /// change, as long as the name: their size is bounded.
    #[test]
    fn permissions_past_their_size_are_refused() {
        let mut mt = table();
        let a = names(&["alice"]);
        let alice = Caller { names: &a };
        let big: Vec<String> = (0..MAX_PATTERNS)
            .map(|i| format!("{i}{}", "x".repeat(250)))
            .collect();
        let big: Vec<&str> = big.iter().map(String::as_str).collect();
        let mut perms = Permissions::new();
        for t in [Tag::Resolve, Tag::Read, Tag::Mount, Tag::Create] {
            perms = perms.with(t, &big).unwrap();
        }
        let e = mt.set_permissions(&alice, "n", perms, "").unwrap_err();
        assert_eq!(e.id(), crate::error::ids::BAD_ARG, "{e}");
        assert!(e.msg().contains("bytes"), "{e}");
        assert!(mt.get_permissions(&alice, "n").is_err(), "no name made");
        let ok = Permissions::new()
            .with(Tag::Mount, &["alice", "bob/..."])
            .unwrap();
        let _ = mt.set_permissions(&alice, "n", ok, "").unwrap();
    }

    /// A refused SetPermissions changes nothing: it makes no name (which
    /// would have been the caller's, and closed to everyone else).
    #[test]
    fn a_refused_set_permissions_makes_no_name() {
        let mut mt = table();
        let (a, b) = (names(&["alice"]), names(&["bob"]));
        let (alice, bob) = (Caller { names: &a }, Caller { names: &b });
        let e = mt
            .set_permissions(&alice, "x/y", Permissions::new(), "5")
            .unwrap_err();
        assert_eq!(e.id(), crate::error::ids::BAD_ARG, "{e}");
        // An Admin list full already, that the caller would be kept in.
        let full: Vec<String> = (0..MAX_PATTERNS).map(|i| format!("p{i}")).collect();
        let full: Vec<&str> = full.iter().map(String::as_str).collect();
        let perms = Permissions::new().with(Tag::Admin, &full).unwrap();
        let e = mt.set_permissions(&alice, "x/z", perms, "").unwrap_err();
        assert_eq!(e.id(), crate::error::ids::BAD_ARG, "{e}");
        for n in ["x", "x/y", "x/z"] {
            let e = mt.get_permissions(&alice, n).unwrap_err();
            assert_eq!(e.id(), crate::error::ids::NO_EXIST, "{n}: {e}");
        }
        let _ = mt.mount(&bob, "x/y", "/h:1", MIN, vec![]).unwrap();
        // On a name of its own, too: nothing changes.
        let perms = Permissions::new().with(Tag::Admin, &full).unwrap();
        assert!(mt.set_permissions(&bob, "x/y", perms, "").is_err());
        assert_eq!(mt.get_permissions(&bob, "x/y").unwrap().1, 0);
        // And a version of the new name that is right: "0".
        let _ = mt
            .set_permissions(&alice, "w", Permissions::new(), "0")
            .unwrap();
    }

    #[test]
    fn a_caller_with_no_names_resolves_but_owns_nothing() {
        let mut mt = table();
        let a = names(&["alice"]);
        let _ = mt
            .mount(&Caller { names: &a }, "x", "/h:1", MIN, vec![])
            .unwrap();
        let nobody = Caller { names: &[] };
        assert_eq!(mt.resolve_step(&nobody, "x").unwrap().0.len(), 1);
        assert_eq!(glob_names(&mt, &[], "*"), vec!["x"]);
        let e = no_access(mt.mount(&nobody, "y", "/h:2", MIN, vec![]));
        assert!(e.msg().contains("proved none"), "{e}");
        no_access(mt.mount(&nobody, "x", "/h:2", MIN, vec![]));
    }

    #[test]
    fn permissions_are_set_with_versions_and_keep_their_admin() {
        let mut mt = table();
        let (a, b) = (names(&["alice"]), names(&["bob"]));
        let (alice, bob) = (Caller { names: &a }, Caller { names: &b });
        let _ = mt.mount(&alice, "room", "/h:1", MIN, vec![]).unwrap();
        let (p, v) = mt.get_permissions(&bob, "room").unwrap();
        assert_eq!(v, 0);
        assert!(p.get(Tag::Admin).unwrap().includes(&a));
        assert!(p.get(Tag::Resolve).unwrap().includes(&b), "inherited");
        // Alice lets Bob mount too, and drops herself from Admin: she
        // stays (no one locks themselves out).
        let grant = Permissions::new()
            .with(Tag::Mount, &["alice", "bob"])
            .unwrap();
        let _ = mt
            .set_permissions(&alice, "room", grant.clone(), "0")
            .unwrap();
        let (p, v) = mt.get_permissions(&alice, "room").unwrap();
        assert_eq!(v, 1);
        assert!(p.get(Tag::Admin).unwrap().includes(&a), "{p:?}");
        assert!(!p.get(Tag::Admin).unwrap().includes(&b));
        let _ = mt.mount(&bob, "room", "/h:2", MIN, vec![]).unwrap();
        // A stale version is refused.
        let e = mt.set_permissions(&alice, "room", grant, "0").unwrap_err();
        assert_eq!(e.id(), crate::error::ids::BAD_ARG, "{e}");
        // Read can be taken away.
        let hide = Permissions::new().with(Tag::Read, &["alice"]).unwrap();
        let _ = mt.set_permissions(&alice, "room", hide, "").unwrap();
        no_access(mt.get_permissions(&bob, "room"));
        // Setting a new name makes it, as the caller's.
        let _ = mt
            .set_permissions(&bob, "bobs/box", Permissions::new(), "")
            .unwrap();
        no_access(mt.mount(&alice, "bobs/box", "/h:3", MIN, vec![]));
        // Only the table's Admin may set the root's.
        no_access(mt.set_permissions(&alice, "", Permissions::new(), ""));
    }

    #[test]
    fn delete_needs_admin_of_every_name_below() {
        let mut mt = table();
        let (a, b) = (names(&["alice"]), names(&["bob"]));
        let (alice, bob) = (Caller { names: &a }, Caller { names: &b });
        let _ = mt.mount(&alice, "hall/a", "/h:1", MIN, vec![]).unwrap();
        let _ = mt.mount(&bob, "hall/b", "/h:2", MIN, vec![]).unwrap();
        let e = mt.delete(&alice, "hall", false).unwrap_err();
        assert_eq!(e.id(), crate::error::ids::BAD_ARG);
        let e = no_access(mt.delete(&alice, "hall", true));
        assert!(e.msg().contains("hall/b"), "{e}");
        let _ = mt.delete(&bob, "hall/b", false).unwrap();
        let _ = mt.delete(&alice, "hall", true).unwrap();
        assert!(mt.get_permissions(&alice, "hall").is_err());
        assert_eq!(mt.len(), 0);
        // Freed, the name is anyone's to take.
        let _ = mt.mount(&bob, "hall/a", "/h:3", MIN, vec![]).unwrap();
    }

    #[test]
    fn a_creator_owns_a_bounded_number_of_names() {
        let mut mt = table_with(Limits {
            max_nodes_per_creator: 3,
            ..limits()
        });
        let (a, b) = (names(&["alice"]), names(&["bob"]));
        let (alice, bob) = (Caller { names: &a }, Caller { names: &b });
        let _ = mt.mount(&alice, "a/b", "/h:1", MIN, vec![]).unwrap();
        let _ = mt.mount(&alice, "c", "/h:1", MIN, vec![]).unwrap();
        let e = no_access(mt.mount(&alice, "d", "/h:1", MIN, vec![]));
        assert!(e.msg().contains("limit"), "{e}");
        let _ = mt.mount(&bob, "d", "/h:1", MIN, vec![]).unwrap();
        let _ = mt.delete(&alice, "c", false).unwrap();
        let _ = mt.mount(&alice, "e", "/h:1", MIN, vec![]).unwrap();
    }

    #[test]
    fn a_name_made_by_mounting_is_held_a_while_and_set_permissions_for_good() {
        let mut mt = table_with(Limits {
            hold: Duration::ZERO,
            max_nodes_per_creator: 2,
            ..limits()
        });
        let (a, b) = (names(&["alice"]), names(&["bob"]));
        let (alice, bob) = (Caller { names: &a }, Caller { names: &b });
        let _ = mt.mount(&alice, "x", "/h:1", MIN, vec![]).unwrap();
        let _ = mt
            .set_permissions(&alice, "kept", Permissions::new(), "")
            .unwrap();
        // At her limit while "x" is mounted.
        no_access(mt.mount(&alice, "y", "/h:1", MIN, vec![]));
        // With no hold, "x" is free once nothing is mounted; "kept" is not.
        mt.unmount(&alice, "x", "").unwrap();
        let _ = mt.mount(&bob, "x", "/h:2", MIN, vec![]).unwrap();
        no_access(mt.mount(&bob, "kept", "/h:2", MIN, vec![]));
        // And its count went with it.
        let _ = mt.mount(&alice, "y", "/h:1", MIN, vec![]).unwrap();
    }

    #[test]
    fn glob_hides_reserved_names_and_what_the_caller_may_not_see() {
        let mut mt = table();
        let (a, b) = (names(&["alice"]), names(&["bob"]));
        let (alice, bob) = (Caller { names: &a }, Caller { names: &b });
        let _ = mt.mount(&alice, "pub/x", "/h:1", MIN, vec![]).unwrap();
        let _ = mt.mount(&alice, "priv/y", "/h:2", MIN, vec![]).unwrap();
        let _ = mt.mount(&alice, "gone", "/h:3", MIN, vec![]).unwrap();
        mt.unmount(&alice, "gone", "").unwrap();
        let only_alice = Permissions::new()
            .with(Tag::Read, &["alice"])
            .unwrap()
            .with(Tag::Resolve, &["alice"])
            .unwrap()
            .with(Tag::Create, &["alice"])
            .unwrap();
        let _ = mt.set_permissions(&alice, "priv", only_alice, "").unwrap();
        assert_eq!(
            glob_names(&mt, &a, "..."),
            vec!["priv", "priv/y", "pub", "pub/x"]
        );
        assert_eq!(glob_names(&mt, &b, "..."), vec!["pub", "pub/x"]);
        no_access(mt.resolve_step(&bob, "priv/y"));
    }

    /// A glob runs under the table's lock: a pattern whose elements cost
    /// the product of their length and the name's to match (`*` then many
    /// `?`), against long names made for it, would hold every mount and
    /// resolution up for seconds. Past a bound of work it is refused
    /// instead; ordinary patterns over the same names still list them.
    #[test]
    fn a_glob_too_costly_to_match_is_refused_and_ordinary_ones_answer() {
        let mut mt = table();
        let a = names(&["alice"]);
        let alice = Caller { names: &a };
        let long = "a".repeat(4000);
        for i in 0..10 {
            let _ = mt
                .mount(&alice, &format!("{i}{long}"), "/h:1", MIN, vec![])
                .unwrap();
        }
        let costly = Pattern::parse(&format!("*{}b", "?".repeat(3000))).unwrap();
        let mut out = Vec::new();
        let e = mt.glob(&alice, "", &costly, &mut out).unwrap_err();
        assert_eq!(e.id(), crate::error::ids::BAD_ARG, "{e}");
        assert!(e.msg().contains("simpler pattern"), "{e}");
        assert!(out.is_empty(), "nothing half-listed");
        assert_eq!(glob_names(&mt, &a, "*").len(), 10);
        assert_eq!(glob_names(&mt, &a, "3*a").len(), 1);
        assert_eq!(glob_names(&mt, &a, "...").len(), 10);
    }

    #[test]
    fn a_snapshot_restores_every_owner() {
        let mut mt = table();
        let (a, b) = (names(&["alice"]), names(&["bob"]));
        let (alice, bob) = (Caller { names: &a }, Caller { names: &b });
        let _ = mt.mount(&alice, "a/b", "/h:1", MIN, vec![]).unwrap();
        let grant = Permissions::new().with(Tag::Mount, &["bob"]).unwrap();
        let _ = mt.set_permissions(&alice, "a", grant, "").unwrap();
        let stored = serde_json::to_string(&mt.snapshot()).unwrap();
        let mut again = table();
        again
            .restore(serde_json::from_str(&stored).unwrap())
            .unwrap();
        no_access(again.mount(&bob, "a/b", "/evil:1", MIN, vec![]));
        let _ = again.mount(&bob, "a", "/h:2", MIN, vec![]).unwrap();
        let _ = again.mount(&alice, "a/b", "/h:1", MIN, vec![]).unwrap();
        assert_eq!(again.get_permissions(&alice, "a").unwrap().1, 1);
        // The quota counts survive too.
        assert_eq!(again.creators.get("alice"), Some(&2));
    }
}
