//! Keeps a listener's names mounted: mounts a name when it is added,
//! refreshes it at half its TTL (sooner after a failure, so that a mount
//! table that restarts gets the names back), and unmounts it on removal.
//!
//! One thread per publisher (`wspr-publisher`), started with the first
//! name; it waits on a channel with a deadline (by the listener's clock)
//! and ends when the publisher is shut down.

use std::sync::{Arc, Mutex, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};

use crate::clock::Clock;
use crate::error::Result;
use crate::sync::lock;

/// Who mounts names in the name space (a client, as some principal).
pub(crate) trait Mount: Send + Sync {
    /// Mounts `server` under `name` for `ttl`.
    fn mount(&self, name: &str, server: &str, ttl: Duration) -> Result<()>;
    /// Unmounts `server` from `name`.
    fn unmount(&self, name: &str, server: &str) -> Result<()>;
}

#[derive(Clone)]
struct Entry {
    /// Mounts as the server's own principal: the mount table records the
    /// names it proves as the server's, and the name is its own.
    client: Arc<dyn Mount>,
    owner: u64,
    name: String,
    server: String,
    ttl: Duration,
    next: Instant,
    failing: bool,
}

struct Inner {
    client: Arc<dyn Mount>,
    /// When refreshes are due.
    clock: Clock,
    entries: Mutex<Vec<Entry>>,
    wake: Mutex<Option<Sender<()>>>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

pub(crate) struct Publisher {
    inner: Arc<Inner>,
}

impl Publisher {
    pub(crate) fn new(client: Arc<dyn Mount>, clock: Clock) -> Publisher {
        Publisher {
            inner: Arc::new(Inner {
                client,
                clock,
                entries: Mutex::new(Vec::new()),
                wake: Mutex::new(None),
                thread: Mutex::new(None),
            }),
        }
    }

    /// Mounts `server` under `name` now through `client` (default: the
    /// publisher's), then keeps it mounted.
    pub(crate) fn add(
        &self,
        owner: u64,
        name: &str,
        server: &str,
        ttl: Duration,
        client: Option<&Arc<dyn Mount>>,
    ) -> Result<()> {
        let client = client.unwrap_or(&self.inner.client).clone();
        client.mount(name, server, ttl)?;
        lock(&self.inner.entries).push(Entry {
            client,
            owner,
            name: name.to_string(),
            server: server.to_string(),
            ttl,
            next: self.inner.clock.now() + ttl / 2,
            failing: false,
        });
        self.ensure_thread();
        if let Some(w) = lock(&self.inner.wake).as_ref() {
            let _ = w.try_send(());
        }
        Ok(())
    }

    /// Stops refreshing `owner`'s names and unmounts them.
    pub(crate) fn remove(&self, owner: u64) {
        self.remove_where(|e| e.owner == owner);
    }

    /// Stops refreshing `owner`'s mount under `name` and unmounts it.
    pub(crate) fn remove_name(&self, owner: u64, name: &str) -> Result<()> {
        match self.remove_where(|e| e.owner == owner && e.name == name) {
            Some(err) => Err(err),
            None => Ok(()),
        }
    }

    /// Forgets and unmounts the entries `gone` picks; the last error.
    fn remove_where(&self, gone: impl Fn(&Entry) -> bool) -> Option<crate::error::Error> {
        let gone: Vec<Entry> = {
            let mut entries = lock(&self.inner.entries);
            let (gone, keep) = entries.drain(..).partition(|e| gone(e));
            *entries = keep;
            gone
        };
        let mut last = None;
        for e in gone {
            if let Err(err) = e.client.unmount(&e.name, &e.server) {
                log::warn!("unmounting {} from {}: {err}", e.server, e.name);
                last = Some(err);
            }
        }
        last
    }

    fn ensure_thread(&self) {
        let mut wake = lock(&self.inner.wake);
        if wake.is_some() {
            return;
        }
        let (tx, rx) = crossbeam_channel::bounded(1);
        let weak = Arc::downgrade(&self.inner);
        match crate::sync::spawn("wspr-publisher".into(), 256 * 1024, move || {
            refresh_loop(weak, rx)
        }) {
            Ok(h) => {
                *wake = Some(tx);
                *lock(&self.inner.thread) = Some(h);
            }
            Err(e) => log::error!("cannot start the publisher thread: {e}; names will expire"),
        }
    }

    /// Ends the refresh thread and joins it. Names are left as they are.
    pub(crate) fn shutdown(&self) {
        lock(&self.inner.wake).take();
        let h = lock(&self.inner.thread).take();
        crate::sync::join(h);
    }
}

fn refresh_loop(weak: Weak<Inner>, wake: Receiver<()>) {
    loop {
        let (next, clock) = match weak.upgrade() {
            Some(inner) => (
                lock(&inner.entries).iter().map(|e| e.next).min(),
                inner.clock.clone(),
            ),
            None => return,
        };
        let woke = match next {
            Some(at) => clock.recv_until(&wake, at),
            None => wake.recv().map_err(|_| RecvTimeoutError::Disconnected),
        };
        match woke {
            Ok(()) => continue,
            Err(RecvTimeoutError::Disconnected) => return,
            Err(RecvTimeoutError::Timeout) => {}
        }
        let Some(inner) = weak.upgrade() else { return };
        let now = inner.clock.now();
        let due: Vec<Entry> = lock(&inner.entries)
            .iter()
            .filter(|e| e.next <= now)
            .cloned()
            .collect();
        for e in due {
            let res = e.client.mount(&e.name, &e.server, e.ttl);
            let mut entries = lock(&inner.entries);
            let found = entries
                .iter_mut()
                .find(|x| x.owner == e.owner && x.name == e.name && x.server == e.server);
            match (found, res) {
                (Some(x), Ok(())) => {
                    if x.failing {
                        log::info!("{} is mounted again under {}", x.server, x.name);
                    }
                    x.failing = false;
                    x.next = inner.clock.now() + x.ttl / 2;
                }
                (Some(x), Err(err)) => {
                    if !x.failing {
                        log::warn!("refreshing {} under {}: {err}; retrying", x.server, x.name);
                    }
                    x.failing = true;
                    x.next = inner.clock.now() + (x.ttl / 4).min(Duration::from_secs(1));
                }
                (None, Ok(())) => {
                    // Removed while we refreshed it: take the mount back.
                    drop(entries);
                    let _ = e.client.unmount(&e.name, &e.server);
                }
                (None, Err(_)) => {}
            }
        }
    }
}
