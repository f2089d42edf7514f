//! An ordered outgoing byte queue that any thread may write to, with no
//! lock held across I/O and no hand-off to a writer thread.
//!
//! Whoever appends to an idle outbox takes the *sink* (the socket's write
//! half) out of the shared state and becomes the flusher: it writes
//! everything queued, without the lock, then puts the sink back. Threads
//! that append while a flush is under way only queue their bytes and
//! return; the flusher picks them up before it gives the sink back. Bytes
//! therefore leave in the order they were appended.
//!
//! A *token* may ride along with the bytes: it is dropped once those bytes
//! are written (or the outbox fails). Flow-control credit uses this: the
//! credit for an item is granted when the item has left, not when it was
//! queued.
//!
//! The queue is bounded ([`Outbox::new`]'s `max_queued`); a push past the
//! bound is refused and the caller decides what a stuck peer costs it. A
//! blocked flusher is bounded by the sink's write timeout.
//!
//! Reader threads (a connection's, a pipe's) *batch*: what they push while
//! working through input they have already read is written just before
//! they would block reading more ([`flush_deferred`]), so a burst of
//! messages in costs one write out per peer instead of one per message,
//! and a lone message is written at once.

use crate::sync::lock;
use std::cell::RefCell;
use std::io;
use std::sync::{Arc, Mutex, MutexGuard};

/// Where the bytes go: a socket's write half, possibly with a record layer.
pub(crate) trait Sink: Send {
    /// Writes all of `buf`.
    fn write_all(&mut self, buf: &[u8]) -> io::Result<()>;
    /// Ends the write side (and wakes whoever reads the other side).
    fn shutdown(&mut self);
}

/// Why a push was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum PushError {
    /// The outbox was closed, or a write failed; the text says why.
    Closed(String),
    /// More than `max` bytes are waiting: the peer is not reading.
    Full { queued: usize, max: usize },
}

impl std::fmt::Display for PushError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PushError::Closed(why) => write!(f, "connection closed: {why}"),
            PushError::Full { queued, max } => {
                write!(f, "peer is not reading: {queued} bytes queued, limit {max}")
            }
        }
    }
}

type Token = Box<dyn Send>;

struct State<S> {
    queue: Vec<u8>,
    tokens: Vec<Token>,
    spare: Vec<u8>,
    /// `None` while a flusher holds it.
    sink: Option<S>,
    /// Set once closed or failed.
    closed: Option<String>,
    /// Shut the sink down after the current flush.
    shutdown_after_flush: bool,
    /// The sink has bytes of its own to write (a record layer's alerts,
    /// key updates, tickets): call it even with nothing queued.
    nudged: bool,
}

/// See the module documentation.
pub(crate) struct Outbox<S: Sink> {
    state: Mutex<State<S>>,
    max_queued: usize,
}

/// Something whose queued bytes can be written now.
trait Kick: Send + Sync {
    fn kick_now(&self);
}

impl<S: Sink + 'static> Kick for Outbox<S> {
    fn kick_now(&self) {
        // A failure is recorded in the outbox; later pushes report it.
        let _ = self.kick_inner();
    }
}

thread_local! {
    /// On a batching thread: the outboxes it has pushed to since it last
    /// flushed.
    static DEFERRED: RefCell<Option<Vec<Arc<dyn Kick>>>> = const { RefCell::new(None) };
}

/// While alive, makes the current thread batch its writes (see the module
/// documentation); dropping it writes what is deferred.
pub(crate) struct Batching(());

impl Batching {
    pub(crate) fn start() -> Batching {
        DEFERRED.with(|d| *d.borrow_mut() = Some(Vec::new()));
        Batching(())
    }
}

impl Drop for Batching {
    fn drop(&mut self) {
        flush_deferred();
        DEFERRED.with(|d| *d.borrow_mut() = None);
    }
}

/// Writes what this thread has deferred. Reader threads call it before
/// every read that may block.
pub(crate) fn flush_deferred() {
    loop {
        // Writing may defer more (an in-process peer answering on this
        // thread): go on until nothing is left.
        let pending = DEFERRED.with(|d| d.borrow_mut().as_mut().map(std::mem::take));
        match pending {
            Some(list) if !list.is_empty() => {
                for o in list {
                    o.kick_now();
                }
            }
            _ => return,
        }
    }
}

/// Registers `o` for the next [`flush_deferred`] if this thread batches.
fn defer(o: Arc<dyn Kick>) -> bool {
    DEFERRED.with(|d| match d.borrow_mut().as_mut() {
        Some(list) => {
            if !list.iter().any(|x| Arc::ptr_eq(x, &o)) {
                list.push(o);
            }
            true
        }
        None => false,
    })
}

impl<S: Sink + 'static> Outbox<S> {
    /// An outbox that writes to `sink` and refuses pushes once
    /// `max_queued` bytes wait.
    pub(crate) fn new(sink: S, max_queued: usize) -> Arc<Self> {
        Arc::new(Outbox {
            state: Mutex::new(State {
                queue: Vec::new(),
                tokens: Vec::new(),
                spare: Vec::new(),
                sink: Some(sink),
                closed: None,
                shutdown_after_flush: false,
                nudged: false,
            }),
            max_queued,
        })
    }

    fn lock(&self) -> MutexGuard<'_, State<S>> {
        // A panic elsewhere cannot leave the byte queue half-updated in a
        // way that matters more than losing the connection; keep going.
        lock(&self.state)
    }

    /// Appends `bytes` (and a token dropped once they are written), and
    /// writes them unless another thread is already writing.
    pub(crate) fn push(
        self: &Arc<Self>,
        bytes: &[u8],
        token: Option<Token>,
    ) -> Result<(), PushError> {
        self.push_later(bytes, token)?;
        self.kick()
    }

    /// Appends `bytes` without writing them: the caller orders its bytes
    /// under its own lock, then calls [`Outbox::kick`] once that lock is
    /// released.
    pub(crate) fn push_later(&self, bytes: &[u8], token: Option<Token>) -> Result<(), PushError> {
        let mut st = self.lock();
        if let Some(why) = &st.closed {
            return Err(PushError::Closed(why.clone()));
        }
        if !st.queue.is_empty() && st.queue.len() + bytes.len() > self.max_queued {
            return Err(PushError::Full {
                queued: st.queue.len(),
                max: self.max_queued,
            });
        }
        st.queue.extend_from_slice(bytes);
        if let Some(t) = token {
            st.tokens.push(t);
        }
        Ok(())
    }

    /// Writes what is queued, unless another thread is already writing
    /// (or this thread batches: then before it next reads).
    pub(crate) fn kick(self: &Arc<Self>) -> Result<(), PushError> {
        if defer(self.clone()) {
            return Ok(());
        }
        self.kick_inner()
    }

    /// Has the sink write what it holds of its own (a record layer's
    /// alerts, key updates, tickets), in order with the bytes queued:
    /// the sink's [`Sink::write_all`] is called, with nothing if nothing
    /// is queued, by whoever writes next (now, unless another thread is
    /// writing or this one batches).
    #[cfg(feature = "daemon")]
    pub(crate) fn nudge(self: &Arc<Self>) -> Result<(), PushError> {
        self.lock().nudged = true;
        self.kick()
    }

    fn kick_inner(&self) -> Result<(), PushError> {
        let mut st = self.lock();
        // (A closed outbox with nothing left still has its sink to shut.)
        if st.queue.is_empty() && !st.shutdown_after_flush && !st.nudged {
            return Ok(());
        }
        match st.sink.take() {
            Some(sink) => self.flush(st, sink),
            None => Ok(()),
        }
    }

    /// Writes what is queued now, on this thread, unless another thread is
    /// writing (it writes it then); a closed outbox's sink is shut down
    /// once it is all out.
    pub(crate) fn flush_now(&self) {
        // A failure is recorded in the outbox.
        let _ = self.kick_inner();
    }

    /// Queues `last` (a goodbye such as a websocket close frame), then
    /// shuts the sink down once everything queued is written. Later pushes
    /// are refused with `why`.
    pub(crate) fn close(&self, last: Option<&[u8]>, why: &str) {
        if self.close_later(last, why) {
            self.flush_now();
        }
    }

    /// Like [`Outbox::close`], but leaves the writing to whoever calls
    /// [`Outbox::flush_now`] (or is writing already). False if the outbox
    /// was already closed (nothing is queued then).
    pub(crate) fn close_later(&self, last: Option<&[u8]>, why: &str) -> bool {
        let mut st = self.lock();
        if st.closed.is_some() {
            return false;
        }
        st.closed = Some(why.to_string());
        if let Some(b) = last {
            st.queue.extend_from_slice(b);
        }
        st.shutdown_after_flush = true;
        true
    }

    /// Ends the outbox at once: drops what is queued (its tokens too) and
    /// shuts the sink down without writing more, now or, if another thread
    /// is writing, after its current write. For a peer that has stopped
    /// reading: flushing what it will not read would only wait.
    pub(crate) fn abort(&self, why: &str) {
        let mut st = self.lock();
        if st.closed.is_none() {
            st.closed = Some(why.to_string());
        }
        st.queue.clear();
        st.nudged = false;
        let tokens = std::mem::take(&mut st.tokens);
        st.shutdown_after_flush = true;
        let sink = st.sink.take();
        drop(st);
        drop(tokens);
        if let Some(mut sink) = sink {
            sink.shutdown();
        }
    }

    /// Whether the outbox has been closed or has failed.
    pub(crate) fn is_closed(&self) -> bool {
        self.lock().closed.is_some()
    }

    fn flush<'a>(&'a self, mut st: MutexGuard<'a, State<S>>, mut sink: S) -> Result<(), PushError> {
        loop {
            if st.queue.is_empty() && !st.nudged {
                if st.shutdown_after_flush {
                    drop(st);
                    sink.shutdown();
                } else {
                    st.sink = Some(sink);
                }
                return Ok(());
            }
            st.nudged = false;
            let spare = std::mem::take(&mut st.spare);
            let mut batch = std::mem::replace(&mut st.queue, spare);
            let tokens = std::mem::take(&mut st.tokens);
            drop(st);
            let res = sink.write_all(&batch);
            drop(tokens);
            batch.clear();
            st = self.lock();
            if batch.capacity() <= 256 * 1024 {
                st.spare = batch;
            }
            if let Err(e) = res {
                let why = format!("write failed: {e}");
                st.closed.get_or_insert(why.clone());
                st.queue = Vec::new();
                let tokens = std::mem::take(&mut st.tokens);
                drop(st);
                sink.shutdown();
                drop(tokens);
                return Err(PushError::Closed(why));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<(Vec<u8>, bool)>>);
    impl Sink for Shared {
        fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
            let mut g = self.0.lock().unwrap();
            if g.1 {
                return Err(io::Error::other("shut"));
            }
            g.0.extend_from_slice(buf);
            Ok(())
        }
        fn shutdown(&mut self) {
            self.0.lock().unwrap().1 = true;
        }
    }

    #[test]
    fn bytes_leave_in_order_from_many_threads() {
        let sink = Shared::default();
        let ob = Outbox::new(sink.clone(), 1 << 20);
        let threads: Vec<_> = (0..4u8)
            .map(|t| {
                let ob = ob.clone();
                std::thread::spawn(move || {
                    for i in 0..200u8 {
                        ob.push(&[t, i], None).unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let out = sink.0.lock().unwrap().0.clone();
        assert_eq!(out.len(), 4 * 200 * 2);
        for t in 0..4u8 {
            let seq: Vec<u8> = out.chunks(2).filter(|c| c[0] == t).map(|c| c[1]).collect();
            assert_eq!(seq, (0..200).collect::<Vec<u8>>());
        }
    }

    #[test]
    fn tokens_drop_after_write_and_close_refuses() {
        struct Count(Arc<AtomicUsize>);
        impl Drop for Count {
            fn drop(&mut self) {
                self.0.fetch_add(1, Ordering::SeqCst);
            }
        }
        let n = Arc::new(AtomicUsize::new(0));
        let sink = Shared::default();
        let ob = Outbox::new(sink.clone(), 16);
        ob.push(b"abc", Some(Box::new(Count(n.clone())))).unwrap();
        assert_eq!(n.load(Ordering::SeqCst), 1);
        ob.close(Some(b"bye"), "done");
        assert_eq!(sink.0.lock().unwrap().0, b"abcbye");
        assert!(sink.0.lock().unwrap().1, "sink shut down");
        assert!(matches!(ob.push(b"x", None), Err(PushError::Closed(_))));
    }
}
