//! Small helpers for locks and threads that every part uses: a lock that
//! survives a panic, named threads, and joining.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;

/// Locks `m`, also after a thread panicked holding it: the data guarded
/// here stays consistent across a panic (every holder finishes its
/// change before anything that can panic, or the change does not matter).
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Joins a thread unless it is the calling thread (which cannot join
/// itself; it is ending anyway).
pub(crate) fn join(handle: Option<JoinHandle<()>>) {
    if let Some(h) = handle
        && h.thread().id() != std::thread::current().id()
    {
        let _ = h.join();
    }
}

/// Starts `f` on a thread named `name` with a stack of `stack` bytes.
pub(crate) fn spawn(
    name: String,
    stack: usize,
    f: impl FnOnce() + Send + 'static,
) -> std::io::Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name(name)
        .stack_size(stack)
        .spawn(f)
}

/// One named thread per connection, every one joined: those that have
/// ended are joined by the next [`ThreadSet::spawn`] (or `reap`), the rest
/// by [`ThreadSet::join_all`].
#[derive(Clone, Default)]
pub(crate) struct ThreadSet {
    inner: Arc<ThreadSetInner>,
}

#[derive(Default)]
struct ThreadSetInner {
    threads: Mutex<HashMap<u64, JoinHandle<()>>>,
    finished: Mutex<Vec<u64>>,
}

impl ThreadSet {
    /// Starts `f` on a thread named `name`, known as `id`.
    pub(crate) fn spawn(
        &self,
        id: u64,
        name: String,
        f: impl FnOnce() + Send + 'static,
    ) -> std::io::Result<()> {
        self.reap();
        let done = self.inner.clone();
        let h = spawn(name, 256 * 1024, move || {
            // Recorded as finished however `f` ends, panic included: a
            // thread that panicked still gives its slot back.
            struct Finished(Arc<ThreadSetInner>, u64);
            impl Drop for Finished {
                fn drop(&mut self) {
                    lock(&self.0.finished).push(self.1);
                }
            }
            let _finished = Finished(done, id);
            f();
        })?;
        lock(&self.inner.threads).insert(id, h);
        Ok(())
    }

    /// Joins the threads that have ended.
    pub(crate) fn reap(&self) {
        let done = std::mem::take(&mut *lock(&self.inner.finished));
        if done.is_empty() {
            return;
        }
        let (handles, early): (Vec<_>, Vec<_>) = {
            let mut t = lock(&self.inner.threads);
            done.into_iter()
                .map(|id| (t.remove(&id), id))
                .partition(|(h, _)| h.is_some())
        };
        // A thread that ended before its handle was stored: next time.
        lock(&self.inner.finished).extend(early.into_iter().map(|(_, id)| id));
        for (h, _) in handles {
            if let Some(h) = h {
                let _ = h.join();
            }
        }
    }

    /// Threads started and not yet joined.
    pub(crate) fn len(&self) -> usize {
        self.reap();
        lock(&self.inner.threads).len()
    }

    /// Joins the threads known as `ids` (they must be ending).
    pub(crate) fn join(&self, ids: impl IntoIterator<Item = u64>) {
        let handles: Vec<_> = {
            let mut t = lock(&self.inner.threads);
            ids.into_iter().filter_map(|id| t.remove(&id)).collect()
        };
        for h in handles {
            join(Some(h));
        }
    }

    /// Joins every thread (they must be ending).
    pub(crate) fn join_all(&self) {
        let handles: Vec<_> = lock(&self.inner.threads).drain().map(|(_, h)| h).collect();
        for h in handles {
            join(Some(h));
        }
        lock(&self.inner.finished).clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crossbeam_channel::bounded;
    use std::time::Duration;

    #[test]
    fn a_thread_that_panics_gives_its_slot_back() {
        let set = ThreadSet::default();
        let (tx, rx) = bounded::<()>(0);
        set.spawn(1, "panics".into(), move || {
            drop(tx);
            panic!("on purpose");
        })
        .unwrap();
        // The panic has happened once the sender is gone; the slot comes
        // back (it is joined) as the thread unwinds.
        let _ = rx.recv();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while set.len() != 0 {
            assert!(
                std::time::Instant::now() < deadline,
                "the slot never came back"
            );
            std::thread::yield_now();
        }
    }
}
