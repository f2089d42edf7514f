//! One thread that runs callbacks at given instants.
//!
//! Used where nobody is blocked waiting for a deadline: calls whose results
//! are delivered to a sink (the daemon's calls on behalf of JavaScript) and
//! name refreshes. Callbacks run on the timer thread and must be short and
//! must not block; they usually send on a channel or push to an outbox.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::Instant;

use crossbeam_channel::{RecvTimeoutError, Sender};

type Callback = Box<dyn FnOnce() + Send + 'static>;

enum Cmd {
    Add(u64, Instant, Callback),
    Cancel(u64),
}

/// A handle to a scheduled callback.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TimerId(u64);

/// See the module documentation. Dropping the timer stops and joins its
/// thread; callbacks not yet due are dropped without running.
pub struct Timer {
    tx: Option<Sender<Cmd>>,
    next: AtomicU64,
    handle: Option<JoinHandle<()>>,
}

impl Timer {
    /// Starts a timer thread named `name`.
    pub fn new(name: &str) -> std::io::Result<Timer> {
        let (tx, rx) = crossbeam_channel::unbounded::<Cmd>();
        let handle = std::thread::Builder::new()
            .name(name.to_string())
            .stack_size(128 * 1024)
            .spawn(move || {
                let mut heap: BinaryHeap<Reverse<(Instant, u64)>> = BinaryHeap::new();
                let mut due: HashMap<u64, Callback> = HashMap::new();
                loop {
                    let cmd = match heap.peek() {
                        Some(Reverse((at, _))) => rx.recv_deadline(*at),
                        None => rx.recv().map_err(|_| RecvTimeoutError::Disconnected),
                    };
                    match cmd {
                        Ok(Cmd::Add(id, at, f)) => {
                            heap.push(Reverse((at, id)));
                            due.insert(id, f);
                        }
                        Ok(Cmd::Cancel(id)) => {
                            due.remove(&id);
                            if due.is_empty() {
                                heap.clear();
                            }
                        }
                        Err(RecvTimeoutError::Timeout) => {
                            let now = Instant::now();
                            while let Some(Reverse((at, id))) = heap.peek().copied() {
                                if at > now {
                                    break;
                                }
                                heap.pop();
                                if let Some(f) = due.remove(&id) {
                                    f();
                                }
                            }
                        }
                        Err(RecvTimeoutError::Disconnected) => return,
                    }
                }
            })?;
        Ok(Timer {
            tx: Some(tx),
            next: AtomicU64::new(1),
            handle: Some(handle),
        })
    }

    /// Runs `f` at `at` unless cancelled first.
    pub fn schedule(&self, at: Instant, f: impl FnOnce() + Send + 'static) -> TimerId {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        if let Some(tx) = &self.tx {
            let _ = tx.send(Cmd::Add(id, at, Box::new(f)));
        }
        TimerId(id)
    }

    /// Cancels a callback; harmless if it already ran.
    pub fn cancel(&self, id: TimerId) {
        if let Some(tx) = &self.tx {
            let _ = tx.send(Cmd::Cancel(id.0));
        }
    }
}

impl Drop for Timer {
    fn drop(&mut self) {
        self.tx = None;
        crate::pool::join(self.handle.take());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn fires_in_order_and_cancels() {
        let t = Timer::new("test-timer").unwrap();
        let (tx, rx) = crossbeam_channel::unbounded();
        let now = Instant::now();
        let t2 = tx.clone();
        t.schedule(now + Duration::from_millis(30), move || t2.send(2).unwrap());
        let t1 = tx.clone();
        t.schedule(now + Duration::from_millis(10), move || t1.send(1).unwrap());
        let t3 = tx.clone();
        let c = t.schedule(now + Duration::from_millis(20), move || t3.send(3).unwrap());
        t.cancel(c);
        assert_eq!(rx.recv_timeout(Duration::from_secs(5)), Ok(1));
        assert_eq!(rx.recv_timeout(Duration::from_secs(5)), Ok(2));
        drop(t);
        assert!(rx.try_recv().is_err());
    }
}
