//! One thread that runs callbacks at given instants.
//!
//! Used where nobody is blocked waiting for a deadline: calls whose results
//! are delivered to a sink (the daemon's calls on behalf of JavaScript) and
//! calls answered later. Callbacks run on the timer thread and must be
//! short and must not block; they usually send on a channel or push to an
//! outbox.
//!
//! The thread starts with the first callback and retires once nothing has
//! been scheduled for [`IDLE`]; the next callback starts it again. Dropping
//! the timer drops what is not yet due and joins the thread.

use crate::pool::lock;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};

/// How long the thread waits with nothing scheduled before it retires.
pub const IDLE: Duration = Duration::from_secs(10);

type Callback = Box<dyn FnOnce() + Send + 'static>;

enum Cmd {
    Add(u64, Instant, Callback),
    Cancel(u64),
}

/// A handle to a scheduled callback.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TimerId(u64);

#[derive(Default)]
struct Running {
    tx: Option<Sender<Cmd>>,
    handle: Option<JoinHandle<()>>,
}

/// See the module documentation.
pub struct Timer {
    name: String,
    next: AtomicU64,
    state: Arc<Mutex<Running>>,
}

impl Timer {
    /// A timer whose thread, when running, is named `name`.
    pub fn new(name: &str) -> Timer {
        Timer {
            name: name.to_string(),
            next: AtomicU64::new(1),
            state: Arc::new(Mutex::new(Running::default())),
        }
    }

    fn send(&self, cmd: Cmd) {
        let mut st = lock(&self.state);
        // The previous thread, if it retired, is joined once the lock is
        // released (it no longer needs the lock, but a join is a wait).
        let mut retired = None;
        if st.tx.is_none() {
            if let Cmd::Cancel(_) = cmd {
                return;
            }
            retired = st.handle.take();
            let (tx, rx) = crossbeam_channel::unbounded::<Cmd>();
            let state = self.state.clone();
            match std::thread::Builder::new()
                .name(self.name.clone())
                .stack_size(128 * 1024)
                .spawn(move || run(rx, state))
            {
                Ok(h) => {
                    st.tx = Some(tx);
                    st.handle = Some(h);
                }
                Err(e) => log::error!("cannot start the timer thread: {e}"),
            }
        }
        if let Some(tx) = &st.tx {
            let _ = tx.send(cmd);
        }
        drop(st);
        crate::pool::join(retired);
    }

    /// Runs `f` at `at` unless cancelled first.
    pub fn schedule(&self, at: Instant, f: impl FnOnce() + Send + 'static) -> TimerId {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        self.send(Cmd::Add(id, at, Box::new(f)));
        TimerId(id)
    }

    /// Cancels a callback; harmless if it already ran.
    pub fn cancel(&self, id: TimerId) {
        self.send(Cmd::Cancel(id.0));
    }

    /// Drops what is not yet due and joins the thread (a later callback
    /// starts it again).
    pub fn shutdown(&self) {
        let handle = {
            let mut st = lock(&self.state);
            st.tx = None;
            st.handle.take()
        };
        crate::pool::join(handle);
    }

    /// Whether the thread is running now.
    pub fn is_running(&self) -> bool {
        lock(&self.state).tx.is_some()
    }
}

fn run(rx: Receiver<Cmd>, state: Arc<Mutex<Running>>) {
    let mut heap: BinaryHeap<Reverse<(Instant, u64)>> = BinaryHeap::new();
    let mut due: HashMap<u64, Callback> = HashMap::new();
    loop {
        let wait_until = match heap.peek() {
            Some(Reverse((at, _))) => *at,
            None => Instant::now() + IDLE,
        };
        match rx.recv_deadline(wait_until) {
            Ok(Cmd::Add(id, at, f)) => {
                heap.push(Reverse((at, id)));
                due.insert(id, f);
            }
            Ok(Cmd::Cancel(id)) => {
                due.remove(&id);
                if due.is_empty() {
                    heap.clear();
                } else if heap.len() > 2 * due.len() + 1024 {
                    // Cancelled entries far in the future (a blessing's
                    // expiry) would otherwise stay until they are due.
                    heap.retain(|Reverse((_, id))| due.contains_key(id));
                }
            }
            Err(RecvTimeoutError::Timeout) if heap.is_empty() => {
                // Idle: retire, unless a command came in meanwhile (sends
                // happen under the same lock).
                let mut st = lock(&state);
                if rx.is_empty() {
                    st.tx = None;
                    return;
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
                        // Callbacks are other people's code (call sinks,
                        // cancel hooks): one that panics must not take
                        // every later deadline with it.
                        if std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).is_err() {
                            log::error!("a timer callback panicked; the timer goes on");
                        }
                    }
                }
            }
            Err(RecvTimeoutError::Disconnected) => return,
        }
    }
}

impl Drop for Timer {
    fn drop(&mut self) {
        self.shutdown();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fires_in_order_and_cancels() {
        let t = Timer::new("test-timer");
        assert!(!t.is_running(), "starts with the first callback");
        let (tx, rx) = crossbeam_channel::unbounded();
        let now = Instant::now();
        let t2 = tx.clone();
        t.schedule(now + Duration::from_millis(30), move || t2.send(2).unwrap());
        let t1 = tx.clone();
        t.schedule(now + Duration::from_millis(10), move || t1.send(1).unwrap());
        let t3 = tx.clone();
        let c = t.schedule(now + Duration::from_millis(20), move || t3.send(3).unwrap());
        t.cancel(c);
        assert!(t.is_running());
        assert_eq!(rx.recv_timeout(Duration::from_secs(5)), Ok(1));
        assert_eq!(rx.recv_timeout(Duration::from_secs(5)), Ok(2));
        drop(t);
        assert!(rx.try_recv().is_err());
    }
}
