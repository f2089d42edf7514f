//! Where the time comes from: the system's monotonic clock, or a manual
//! clock that only moves when told to, so that what depends on time (the
//! timer's callbacks, the mount table's TTLs, the refreshes of mounted
//! names) can be tested without waiting for it.
//!
//! ```
//! use std::time::Duration;
//! use wspr::clock::Clock;
//! let clock = Clock::manual();
//! let start = clock.now();
//! clock.advance(Duration::from_secs(3600));
//! assert_eq!(clock.now() - start, Duration::from_secs(3600));
//! ```

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, select};

use crate::sync::lock;

/// A clock (see the module documentation). Cloning shares it; the default
/// is the system's.
#[derive(Clone, Default)]
pub struct Clock(Option<Arc<Manual>>);

/// A manual clock's state.
struct Manual {
    start: Instant,
    state: Mutex<ManualState>,
}

struct ManualState {
    /// How far it was moved.
    moved: Duration,
    /// Those waiting for it to move (see [`Clock::recv_until`]).
    waiting: Vec<Sender<()>>,
}

impl std::fmt::Debug for Clock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.0 {
            None => write!(f, "Clock(system)"),
            Some(m) => write!(f, "Clock(manual, moved {:?})", lock(&m.state).moved),
        }
    }
}

impl Clock {
    /// The system's monotonic clock.
    pub fn system() -> Clock {
        Clock(None)
    }

    /// A clock that starts at the system's now and moves only with
    /// [`Clock::advance`].
    pub fn manual() -> Clock {
        Clock(Some(Arc::new(Manual {
            start: Instant::now(),
            state: Mutex::new(ManualState {
                moved: Duration::ZERO,
                waiting: Vec::new(),
            }),
        })))
    }

    /// Whether this is a manual clock.
    pub fn is_manual(&self) -> bool {
        self.0.is_some()
    }

    /// Now, by this clock.
    pub fn now(&self) -> Instant {
        match &self.0 {
            None => Instant::now(),
            Some(m) => m.start + lock(&m.state).moved,
        }
    }

    /// Moves a manual clock `by` forward, and wakes whoever waits on it.
    /// (The system's clock moves by itself: nothing happens.)
    pub fn advance(&self, by: Duration) {
        let Some(m) = &self.0 else { return };
        let waiting = {
            let mut st = lock(&m.state);
            st.moved += by;
            std::mem::take(&mut st.waiting)
        };
        for w in waiting {
            let _ = w.try_send(());
        }
    }

    /// Waits for a message on `rx` until `until` by this clock: `Ok` for a
    /// message, `Timeout` once `until` has come, `Disconnected` when `rx`
    /// disconnects. On a manual clock the wait ends when the clock is moved
    /// past `until` (or by the message, or the disconnection), however
    /// long that takes.
    pub(crate) fn recv_until(
        &self,
        rx: &Receiver<()>,
        until: Instant,
    ) -> Result<(), RecvTimeoutError> {
        let Some(m) = &self.0 else {
            return rx.recv_deadline(until);
        };
        loop {
            let moved = {
                let mut st = lock(&m.state);
                if m.start + st.moved >= until {
                    return Err(RecvTimeoutError::Timeout);
                }
                let (tx, moved) = crossbeam_channel::bounded(1);
                st.waiting.push(tx);
                moved
            };
            select! {
                recv(rx) -> r => return r.map_err(|_| RecvTimeoutError::Disconnected),
                recv(moved) -> _ => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manual_clock_moves_only_when_told_and_wakes_its_waiters() {
        let clock = Clock::manual();
        let t0 = clock.now();
        assert_eq!(clock.now(), t0, "it does not move by itself");
        let (_tx, rx) = crossbeam_channel::bounded::<()>(1);
        let c = clock.clone();
        let waiter = std::thread::spawn(move || c.recv_until(&rx, t0 + Duration::from_secs(10)));
        // A move short of the instant wakes it for nothing: it waits on.
        clock.advance(Duration::from_secs(5));
        clock.advance(Duration::from_secs(5));
        assert_eq!(waiter.join().unwrap(), Err(RecvTimeoutError::Timeout));
        assert_eq!(clock.now() - t0, Duration::from_secs(10));
        // A message ends the wait; so does a disconnection.
        let far = clock.now() + Duration::from_secs(60);
        let (tx, rx) = crossbeam_channel::bounded::<()>(1);
        tx.send(()).unwrap();
        assert_eq!(clock.recv_until(&rx, far), Ok(()));
        drop(tx);
        assert_eq!(
            clock.recv_until(&rx, far),
            Err(RecvTimeoutError::Disconnected)
        );
    }

    #[test]
    fn the_system_clock_is_the_default() {
        let c = Clock::default();
        assert!(!c.is_manual());
        let before = Instant::now();
        assert!(c.now() >= before);
        let (_tx, rx) = crossbeam_channel::bounded::<()>(1);
        assert_eq!(
            c.recv_until(&rx, Instant::now()),
            Err(RecvTimeoutError::Timeout)
        );
    }
}
