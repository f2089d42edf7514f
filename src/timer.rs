//! One thread that runs callbacks at given instants.
//!
//! Used where nobody is blocked waiting for a deadline: calls whose results
//! are delivered to a sink (the daemon's calls on behalf of JavaScript) and
//! calls answered later. Callbacks run on the timer thread and must be
//! short and must not block; they usually send on a channel or push to an
//! outbox.
//!
//! The thread starts with the first callback and retires when it finds
//! nothing left to run (it looks at least every [`IDLE`]); the next
//! callback starts it again. Scheduling wakes it only for a callback due
//! before the instant it sleeps until, and cancelling never does. Clones
//! share the timer (a daemon has one); dropping the last drops what is not
//! yet due and joins the thread.
//!
//! Instants are by the timer's [`Clock`] (the system's, unless a test
//! gives it a manual one).

use crate::clock::Clock;
use crate::sync::lock;
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

/// A handle to a scheduled callback.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TimerId(u64);

/// What the caller threads and the timer thread share. Scheduling and
/// cancelling only change it; the thread is woken only when a new
/// callback is due before the instant it sleeps until (most deadlines are
/// later than every one already scheduled, and most are cancelled before
/// they are due: neither wakes it).
#[derive(Default)]
struct State {
    /// Instants and ids; an id no longer in `due` was cancelled.
    heap: BinaryHeap<Reverse<(Instant, u64)>>,
    due: HashMap<u64, (Instant, Callback)>,
    /// Wakes the thread; `None` when no thread runs.
    wake: Option<Sender<()>>,
    /// What the thread sleeps until (`None`: it is starting).
    sleeps_until: Option<Instant>,
    handle: Option<JoinHandle<()>>,
}

impl State {
    /// Rebuilds the heap when cancelled entries outnumber live ones.
    fn compact(&mut self) {
        if self.heap.len() > 2 * self.due.len() + 64 {
            self.heap = self
                .due
                .iter()
                .map(|(id, (at, _))| Reverse((*at, *id)))
                .collect();
        }
    }
}

/// See the module documentation. Cloning shares the timer.
#[derive(Clone)]
pub struct Timer {
    inner: Arc<Inner>,
}

struct Inner {
    name: String,
    next: AtomicU64,
    state: Arc<Mutex<State>>,
    clock: Clock,
}

impl std::fmt::Debug for Timer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Timer({})", self.inner.name)
    }
}

impl Timer {
    /// A timer whose thread, when running, is named `name`.
    pub fn new(name: &str) -> Timer {
        Timer::with_clock(name, Clock::system())
    }

    /// A timer whose instants are by `clock`.
    pub fn with_clock(name: &str, clock: Clock) -> Timer {
        Timer {
            inner: Arc::new(Inner {
                name: name.to_string(),
                next: AtomicU64::new(1),
                state: Arc::new(Mutex::new(State::default())),
                clock,
            }),
        }
    }

    /// Runs `f` at `at` unless cancelled first.
    pub fn schedule(&self, at: Instant, f: impl FnOnce() + Send + 'static) -> TimerId {
        let inner = &self.inner;
        let id = inner.next.fetch_add(1, Ordering::Relaxed);
        let mut st = lock(&inner.state);
        st.due.insert(id, (at, Box::new(f)));
        st.heap.push(Reverse((at, id)));
        st.compact();
        // The previous thread, if it retired, is joined once the lock is
        // released (it no longer needs the lock, but a join is a wait).
        let mut retired = None;
        match &st.wake {
            Some(tx) => {
                if st.sleeps_until.is_none_or(|u| at < u) {
                    // (Full: a wake is already on its way.)
                    let _ = tx.try_send(());
                }
            }
            None => {
                retired = st.handle.take();
                let (tx, rx) = crossbeam_channel::bounded(1);
                let state = inner.state.clone();
                let clock = inner.clock.clone();
                match crate::sync::spawn(inner.name.clone(), 128 * 1024, move || {
                    run(rx, state, clock)
                }) {
                    Ok(h) => {
                        st.wake = Some(tx);
                        st.sleeps_until = None;
                        st.handle = Some(h);
                    }
                    Err(e) => log::error!("cannot start the timer thread: {e}"),
                }
            }
        }
        drop(st);
        crate::sync::join(retired);
        TimerId(id)
    }

    /// Cancels a callback; harmless if it already ran.
    pub fn cancel(&self, id: TimerId) {
        let gone = {
            let mut st = lock(&self.inner.state);
            let gone = st.due.remove(&id.0);
            if st.due.is_empty() {
                st.heap.clear();
            } else {
                st.compact();
            }
            gone
        };
        // (Dropped without the lock: it is other people's code.)
        drop(gone);
    }

    /// Drops what is not yet due and joins the thread (a later callback
    /// starts it again).
    pub fn shutdown(&self) {
        self.inner.shutdown();
    }

    /// Whether the thread is running now.
    #[cfg(test)]
    pub fn is_running(&self) -> bool {
        lock(&self.inner.state).wake.is_some()
    }
}

impl Inner {
    fn shutdown(&self) {
        let (handle, dropped) = {
            let mut st = lock(&self.state);
            st.wake = None;
            st.sleeps_until = None;
            st.heap.clear();
            (st.handle.take(), std::mem::take(&mut st.due))
        };
        drop(dropped);
        crate::sync::join(handle);
    }
}

fn run(rx: Receiver<()>, state: Arc<Mutex<State>>, clock: Clock) {
    loop {
        let mut st = lock(&state);
        if st.wake.is_none() {
            // Shut down.
            return;
        }
        let now = clock.now();
        let mut ready = vec![];
        while let Some(Reverse((at, id))) = st.heap.peek().copied() {
            if at > now {
                break;
            }
            st.heap.pop();
            if let Some((_, f)) = st.due.remove(&id) {
                ready.push(f);
            }
        }
        if !ready.is_empty() {
            drop(st);
            for f in ready {
                // Callbacks are other people's code (call sinks, cancel
                // hooks): one that panics must not take every later
                // deadline with it.
                if std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).is_err() {
                    log::error!("a timer callback panicked; the timer goes on");
                }
            }
            continue;
        }
        // (Cancelled entries at the head are skipped.)
        while let Some(Reverse((_, id))) = st.heap.peek() {
            if st.due.contains_key(id) {
                break;
            }
            st.heap.pop();
        }
        // (At least every IDLE, to see whether anything is left: a cancel
        // does not wake the thread.)
        let until = st
            .heap
            .peek()
            .map_or(now + IDLE, |Reverse((at, _))| (*at).min(now + IDLE));
        st.sleeps_until = Some(until);
        drop(st);
        match clock.recv_until(&rx, until) {
            Ok(()) => {}
            Err(RecvTimeoutError::Timeout) => {
                // Nothing left: retire, unless something was scheduled
                // meanwhile (scheduling happens under the same lock).
                let mut st = lock(&state);
                if st.due.is_empty() && rx.is_empty() {
                    st.wake = None;
                    return;
                }
            }
            Err(RecvTimeoutError::Disconnected) => return,
        }
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.shutdown();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn fires_in_order_and_cancels() {
        let clock = Clock::manual();
        let t = Timer::with_clock("test-timer", clock.clone());
        assert!(!t.is_running(), "starts with the first callback");
        let (tx, rx) = crossbeam_channel::unbounded();
        let now = clock.now();
        let t2 = tx.clone();
        t.schedule(now + 30 * MS, move || t2.send(2).unwrap());
        let t1 = tx.clone();
        t.schedule(now + 10 * MS, move || t1.send(1).unwrap());
        let t3 = tx.clone();
        let c = t.schedule(now + 20 * MS, move || t3.send(3).unwrap());
        t.cancel(c);
        assert!(t.is_running());
        // A clone shares the timer: dropping it stops nothing.
        drop(t.clone());
        clock.advance(15 * MS);
        assert_eq!(rx.recv_timeout(Duration::from_secs(5)), Ok(1));
        // Past the cancelled one's instant, then the last one's: only the
        // last runs.
        clock.advance(10 * MS);
        clock.advance(10 * MS);
        assert_eq!(rx.recv_timeout(Duration::from_secs(5)), Ok(2));
        drop(t);
        assert!(rx.try_recv().is_err());
    }

    #[test]
    fn an_earlier_callback_wakes_the_thread_and_cancels_leave_nothing() {
        let clock = Clock::manual();
        let t = Timer::with_clock("test-timer-2", clock.clone());
        let (tx, rx) = crossbeam_channel::unbounded();
        let now = clock.now();
        // A far one first, on which the thread then sleeps.
        let far = tx.clone();
        t.schedule(now + Duration::from_secs(3600), move || {
            far.send(0).unwrap()
        });
        let near = tx.clone();
        t.schedule(now + 10 * MS, move || near.send(1).unwrap());
        clock.advance(10 * MS);
        assert_eq!(rx.recv_timeout(Duration::from_secs(5)), Ok(1));
        // Many scheduled and cancelled: their callbacks are gone at once.
        let counted = std::sync::Arc::new(());
        for _ in 0..1000 {
            let c = counted.clone();
            let id = t.schedule(now + Duration::from_secs(60), move || drop(c));
            t.cancel(id);
        }
        assert_eq!(std::sync::Arc::strong_count(&counted), 1);
        assert!(
            lock(&t.inner.state).heap.len() < 200,
            "cancelled entries are compacted"
        );
        t.shutdown();
        assert!(!t.is_running());
        assert!(rx.try_recv().is_err(), "the far one was dropped, not run");
    }
}
