//! The state of flows, apart from sockets, threads and locks: what an RPC
//! client, an RPC server and a pipe each keep per flow, and the table of
//! them.
//!
//! A *flow* is one call on a connection (or one request on a pipe), named
//! by an id its opener chose. Events go in as method calls (a frame
//! arrived, a sender offers an item, credit came, the caller cancelled, the
//! deadline passed) and what has to be done comes out as their answers:
//! bytes to write, an item to deliver, senders to wake, a value to end.
//! Nothing here reads or writes a socket, starts a thread or takes a lock:
//! each owner keeps its table behind its own lock, and does what an answer
//! asks once it has released that lock.
//!
//! - [`Flows`]: the table: opening (an id in use, the limit), ids handed
//!   out before their flow is ready ([`Flows::reserve`]), numbering so that
//!   an id used again is another flow ([`Slot::serial`]), cancel, the
//!   deadline as data, and the end (a flow that has ended is unknown: any
//!   late event for it is dropped).
//! - [`Stream`]: an RPC flow's stream items, each way: the receiver's
//!   credit accounting, the sender's window, the items that wait for
//!   credit, senders blocked on it, and the sender's close.
//! - [`Queue`]: items that wait (for credit, or for a call to start), in
//!   order, counted against a per-flow limit and a budget shared by many.
//! - [`Gate`]: a flow whose items wait until it has started (a call of
//!   JavaScript's still being placed), then go straight through.
//! - [`Credit`]: one flow's flow-control window, both ways.

// (The pipe's transitions, reservations and gates, are the daemon's: the
// RPC runtime alone does not use them.)
#![cfg_attr(not(feature = "daemon"), allow(dead_code))]

use std::collections::hash_map::Entry;
use std::collections::{HashMap, VecDeque};
use std::time::Instant;

use crossbeam_channel::{Receiver, Sender};

use crate::budget::{Budget, Charge};

/// The flows of one connection or pipe. See the module documentation.
pub(crate) struct Flows<F> {
    open: HashMap<u64, Slot<F>>,
    /// Ids handed out whose flow is not yet in place, and whether each
    /// was cancelled meanwhile.
    reserved: HashMap<u64, bool>,
    /// Most flows at once (reserved ones count).
    max: usize,
    /// The next id of the owner's own, and the step between them.
    next_id: u64,
    step: u64,
    /// Numbers every flow opened.
    serials: u64,
    /// Set by [`Flows::close`]: nothing opens any more.
    closed: bool,
}

/// One flow in the table: what the owner keeps (`F`, reached through
/// `Deref`), and what every flow has.
pub(crate) struct Slot<F> {
    serial: u64,
    cancelled: bool,
    deadline: Option<Instant>,
    /// Whether a timer holds the deadline.
    armed: bool,
    value: F,
}

/// Why a flow was not opened; the value is handed back.
#[derive(Debug)]
pub(crate) enum Refused<F> {
    /// A flow with that id is open.
    InUse(F),
    /// The table holds its limit of flows.
    Full(F),
    /// The table is closed (its owner is closing).
    Closed(F),
}

/// Why a reserved id was not filled; the value is handed back.
#[derive(Debug)]
pub(crate) enum Unfilled<F> {
    /// The flow was cancelled while it was being set up.
    Cancelled(F),
    /// The reservation is gone: the table was drained (its owner closed).
    Gone(F),
}

/// What [`Flows::cancel`] found.
pub(crate) enum Cancelled<'a, F> {
    /// An open flow, now marked cancelled (it stays in the table).
    Open(&'a mut Slot<F>),
    /// A reserved id: its [`Flows::fill`] will say so.
    Reserved,
    /// No such flow (ended, or never opened).
    Unknown,
}

impl<F> Flows<F> {
    /// A table of at most `max` flows, whose owner picks its own ids from
    /// `first` on, `step` apart (ids a peer picks are opened with
    /// [`Flows::open`]).
    pub(crate) fn new(max: usize, first: u64, step: u64) -> Flows<F> {
        Flows {
            open: HashMap::new(),
            reserved: HashMap::new(),
            max,
            next_id: first,
            step,
            serials: 0,
            closed: false,
        }
    }

    fn insert(&mut self, id: u64, value: F) -> u64 {
        self.serials += 1;
        self.open.insert(
            id,
            Slot {
                serial: self.serials,
                cancelled: false,
                deadline: None,
                armed: false,
                value,
            },
        );
        self.serials
    }

    /// Why nothing more may open, if so.
    fn refuse<T>(&self, value: T) -> Result<T, Refused<T>> {
        if self.closed {
            Err(Refused::Closed(value))
        } else if self.open.len() + self.reserved.len() >= self.max {
            Err(Refused::Full(value))
        } else {
            Ok(value)
        }
    }

    /// Opens the flow `id` (picked by a peer); its serial.
    pub(crate) fn open(&mut self, id: u64, value: F) -> Result<u64, Refused<F>> {
        // (Most tables have no reservation: no second lookup for them.)
        if self.open.contains_key(&id)
            || (!self.reserved.is_empty() && self.reserved.contains_key(&id))
        {
            return Err(Refused::InUse(value));
        }
        let value = self.refuse(value)?;
        Ok(self.insert(id, value))
    }

    fn take_id(&mut self) -> u64 {
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(self.step);
        id
    }

    /// Opens a flow under the owner's next id; the id and its serial.
    pub(crate) fn open_next(&mut self, value: F) -> Result<(u64, u64), Refused<F>> {
        let value = self.refuse(value)?;
        let id = self.take_id();
        Ok((id, self.insert(id, value)))
    }

    /// Hands out the owner's next id for a flow set up in steps (hooks
    /// that name the id registered before the flow is in place); it counts
    /// against the limit from now on. [`Flows::fill`] puts the flow in
    /// place; a cancel meanwhile is kept for it.
    pub(crate) fn reserve(&mut self) -> Result<u64, Refused<()>> {
        self.refuse(())?;
        let id = self.take_id();
        self.reserved.insert(id, false);
        Ok(id)
    }

    /// Puts the flow of a reserved id in place; its serial. Handed back
    /// if it was cancelled meanwhile, or the table was closed.
    pub(crate) fn fill(&mut self, id: u64, value: F) -> Result<u64, Unfilled<F>> {
        match self.reserved.remove(&id) {
            None => Err(Unfilled::Gone(value)),
            Some(true) => Err(Unfilled::Cancelled(value)),
            Some(false) => Ok(self.insert(id, value)),
        }
    }

    /// Whether a flow is open or reserved under `id`.
    pub(crate) fn contains(&self, id: u64) -> bool {
        self.open.contains_key(&id) || self.reserved.contains_key(&id)
    }

    /// The flow `id`.
    pub(crate) fn get(&self, id: u64) -> Option<&Slot<F>> {
        self.open.get(&id)
    }

    /// The flow `id`.
    pub(crate) fn get_mut(&mut self, id: u64) -> Option<&mut Slot<F>> {
        self.open.get_mut(&id)
    }

    /// The flow `id` if it is still the one numbered `serial` (the id may
    /// have been used again since).
    pub(crate) fn get_serial(&mut self, id: u64, serial: u64) -> Option<&mut Slot<F>> {
        self.open.get_mut(&id).filter(|s| s.serial == serial)
    }

    /// Marks the flow `id` cancelled (see [`Cancelled`]).
    pub(crate) fn cancel(&mut self, id: u64) -> Cancelled<'_, F> {
        if let Some(c) = self.reserved.get_mut(&id) {
            *c = true;
            return Cancelled::Reserved;
        }
        match self.open.get_mut(&id) {
            Some(s) => {
                s.cancelled = true;
                Cancelled::Open(s)
            }
            None => Cancelled::Unknown,
        }
    }

    /// Ends the flow `id`: it is unknown from now on.
    pub(crate) fn remove(&mut self, id: u64) -> Option<Slot<F>> {
        self.open.remove(&id)
    }

    /// Ends the flow `id` if `which` says so of it.
    pub(crate) fn remove_if(&mut self, id: u64, which: impl FnOnce(&F) -> bool) -> Option<Slot<F>> {
        if self.open.get(&id).is_some_and(|s| which(&s.value)) {
            self.open.remove(&id)
        } else {
            None
        }
    }

    /// Ends the flow `id` if it is still the one numbered `serial`.
    pub(crate) fn remove_serial(&mut self, id: u64, serial: u64) -> Option<Slot<F>> {
        match self.open.entry(id) {
            Entry::Occupied(e) if e.get().serial == serial => Some(e.remove()),
            _ => None,
        }
    }

    /// Withdraws the flow `id` (its caller went away): an open one is
    /// ended and handed back; a reserved one is marked cancelled, for its
    /// [`Flows::fill`] to say so.
    pub(crate) fn withdraw(&mut self, id: u64) -> Option<Slot<F>> {
        if !self.reserved.is_empty()
            && let Some(c) = self.reserved.get_mut(&id)
        {
            *c = true;
            return None;
        }
        self.open.remove(&id)
    }

    /// Ends the flow `id` (numbered `serial`) if its deadline has passed at
    /// `now`.
    pub(crate) fn expire(&mut self, id: u64, serial: u64, now: Instant) -> Option<Slot<F>> {
        let s = self.open.get(&id)?;
        if s.serial != serial || s.deadline.is_none_or(|d| d > now) {
            return None;
        }
        self.open.remove(&id)
    }

    /// Ends every flow (the owner's connection ended): the open ones, for
    /// their owner to end; reservations are dropped (their fill finds them
    /// gone).
    pub(crate) fn drain(&mut self) -> Vec<(u64, Slot<F>)> {
        self.reserved.clear();
        self.open.drain().collect()
    }

    /// Like [`Flows::drain`], and nothing opens any more (the owner is
    /// closing).
    pub(crate) fn close(&mut self) -> Vec<(u64, Slot<F>)> {
        self.closed = true;
        self.drain()
    }

    /// Flows in the table, reserved ones included.
    pub(crate) fn len(&self) -> usize {
        self.open.len() + self.reserved.len()
    }

    /// Whether the table is empty.
    pub(crate) fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The open flows.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (u64, &Slot<F>)> {
        self.open.iter().map(|(id, s)| (*id, s))
    }
}

impl<F> Slot<F> {
    /// Numbers this flow among those of its table: a flow opened later
    /// under the same id has another.
    pub(crate) fn serial(&self) -> u64 {
        self.serial
    }

    /// Whether the flow was cancelled.
    pub(crate) fn is_cancelled(&self) -> bool {
        self.cancelled
    }

    /// Marks the flow cancelled.
    pub(crate) fn set_cancelled(&mut self) {
        self.cancelled = true;
    }

    /// Sets when the flow ends if nothing ended it first.
    pub(crate) fn set_deadline(&mut self, at: Option<Instant>) {
        self.deadline = at;
    }

    /// When the flow ends if nothing ended it first.
    #[cfg(test)]
    pub(crate) fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    /// The deadline, the first time it is asked for (for its owner to
    /// have a timer hold it, once); `None` after, or without one.
    pub(crate) fn arm(&mut self) -> Option<Instant> {
        if self.armed {
            return None;
        }
        self.armed = self.deadline.is_some();
        self.deadline
    }

    /// What the owner keeps.
    pub(crate) fn into_value(self) -> F {
        self.value
    }
}

impl<F> std::ops::Deref for Slot<F> {
    type Target = F;
    fn deref(&self) -> &F {
        &self.value
    }
}

impl<F> std::ops::DerefMut for Slot<F> {
    fn deref_mut(&mut self) -> &mut F {
        &mut self.value
    }
}

/// Flow-control state of one flow, in both directions, counted in bytes of
/// item payload.
#[derive(Debug)]
pub(crate) struct Credit {
    /// What we may still send.
    send_avail: i64,
    /// Items received but not yet consumed.
    recv_outstanding: u32,
    /// Consumed bytes not yet granted back to the peer.
    recv_unacked: u32,
    window: u32,
}

impl Credit {
    pub(crate) fn new(window: u32) -> Credit {
        Credit {
            send_avail: window as i64,
            recv_outstanding: 0,
            recv_unacked: 0,
            window,
        }
    }

    /// Whether an item of `size` may be sent now; an item larger than the
    /// window goes when nothing is outstanding.
    pub(crate) fn can_send(&self, size: u32) -> bool {
        self.send_avail >= size as i64 || self.send_avail >= self.window as i64
    }

    pub(crate) fn take_send(&mut self, size: u32) {
        self.send_avail -= size as i64;
    }

    pub(crate) fn grant_send(&mut self, bytes: u32) {
        self.send_avail = (self.send_avail + bytes as i64).min(self.window as i64);
    }

    /// Accounts for a received item; false if the peer sent past the
    /// window it was given.
    pub(crate) fn receive(&mut self, size: u32) -> bool {
        if self.recv_outstanding > 0 && self.recv_outstanding.saturating_add(size) > self.window {
            return false;
        }
        self.recv_outstanding = self.recv_outstanding.saturating_add(size);
        true
    }

    /// Accounts for a consumed item; returns credit to grant now, if the
    /// unacknowledged amount is worth a frame.
    pub(crate) fn consume(&mut self, size: u32) -> Option<u32> {
        self.recv_outstanding = self.recv_outstanding.saturating_sub(size);
        self.recv_unacked = self.recv_unacked.saturating_add(size);
        if self.recv_unacked >= self.window / 4 || self.recv_outstanding == 0 {
            Some(std::mem::take(&mut self.recv_unacked)).filter(|b| *b > 0)
        } else {
            None
        }
    }
}

/// Items waiting, in order, each with what it holds: bytes counted
/// against the queue's limit, and a charge against a budget shared by
/// several queues (given back when the item leaves, however it leaves).
pub(crate) struct Queue<I> {
    items: VecDeque<Queued<I>>,
    /// What the items count, against the limit.
    bytes: usize,
}

/// One entry of a [`Queue`].
pub(crate) enum Queued<I> {
    /// An item; `size` is what it takes of the flow's credit window.
    Item {
        item: I,
        size: u32,
        counted: usize,
        /// Held until the item leaves.
        _charge: Option<Charge>,
    },
    /// The sender's stream ends here.
    Close,
}

/// How much a [`Queue`] may hold.
pub(crate) struct Limit<'a> {
    /// Bytes (as counted by whoever pushes).
    pub bytes: usize,
    /// Entries.
    pub items: usize,
    /// The budget each item is charged against.
    pub budget: Option<&'a Budget>,
}

/// Why a [`Queue`] took no more.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Full {
    /// The queue holds its limit: `waiting` bytes (or `items` entries).
    Queue {
        waiting: usize,
        items: usize,
        limit: usize,
    },
    /// The shared budget holds its limit.
    Budget { used: usize, limit: usize },
}

impl<I> Default for Queue<I> {
    fn default() -> Self {
        Queue {
            items: VecDeque::new(),
            bytes: 0,
        }
    }
}

impl<I> Queue<I> {
    /// Adds an item counted as `counted` bytes and charged `charge` bytes
    /// against the budget, unless that would pass either limit.
    pub(crate) fn push(
        &mut self,
        item: I,
        size: u32,
        counted: usize,
        charge: usize,
        limit: &Limit,
    ) -> Result<(), Full> {
        if self.items.len() >= limit.items || self.bytes + counted > limit.bytes {
            return Err(Full::Queue {
                waiting: self.bytes,
                items: self.items.len(),
                limit: limit.bytes,
            });
        }
        let charge = match limit.budget {
            None => None,
            Some(b) => Some(b.charge(charge).ok_or(Full::Budget {
                used: b.used(),
                limit: b.limit(),
            })?),
        };
        self.bytes += counted;
        self.items.push_back(Queued::Item {
            item,
            size,
            counted,
            _charge: charge,
        });
        Ok(())
    }

    /// Ends the queue with the sender's close, unless it already ends
    /// with one (a close repeated adds nothing); whether it was added.
    pub(crate) fn push_close(&mut self) -> bool {
        if matches!(self.items.back(), Some(Queued::Close)) {
            return false;
        }
        self.items.push_back(Queued::Close);
        true
    }

    /// The first entry, if it may go (`fits` says of an item's size).
    pub(crate) fn pop_if(&mut self, fits: impl FnOnce(u32) -> bool) -> Option<Queued<I>> {
        match self.items.front()? {
            Queued::Item { size, .. } if !fits(*size) => None,
            _ => {
                let q = self.items.pop_front()?;
                if let Queued::Item { counted, .. } = &q {
                    self.bytes -= counted;
                }
                Some(q)
            }
        }
    }

    /// Takes every entry out (to go on in order elsewhere).
    pub(crate) fn take_all(&mut self) -> VecDeque<Queued<I>> {
        self.bytes = 0;
        std::mem::take(&mut self.items)
    }

    /// Drops every entry (their charges are given back).
    pub(crate) fn clear(&mut self) {
        self.bytes = 0;
        self.items.clear();
    }

    /// Whether nothing waits.
    pub(crate) fn is_empty(&self) -> bool {
        self.items.is_empty()
    }
}

/// The senders of one flow waiting for credit. Each waits on a channel
/// of its own: woken (a message) when credit comes, or disconnected when
/// the flow ends or is cancelled. Several may wait at once (clones of a
/// call's handle); one replacing another would wake it for nothing, and
/// the two would take turns spinning.
#[derive(Default)]
pub(crate) struct Waiters(Vec<Sender<()>>);

impl Waiters {
    /// A new waiter's channel.
    pub(crate) fn add(&mut self) -> Receiver<()> {
        let (tx, rx) = crossbeam_channel::bounded(1);
        self.0.push(tx);
        rx
    }

    /// Wakes every waiter to try again.
    pub(crate) fn wake(&mut self) {
        for w in self.0.drain(..) {
            let _ = w.try_send(());
        }
    }

    /// Disconnects every waiter.
    pub(crate) fn drop_all(&mut self) {
        self.0.clear();
    }

    /// Waiters now.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.0.len()
    }
}

/// An RPC flow's stream items, each way (see the module documentation).
/// The items that wait are encoded frames, ready to write.
pub(crate) struct Stream {
    credit: Credit,
    waiting: Queue<Vec<u8>>,
    send_closed: bool,
    waiters: Waiters,
}

/// What a sender does with an item ([`Stream::send`]).
pub(crate) enum Sending {
    /// Write it now: its credit is taken.
    Now,
    /// No credit: wait on this channel (a message: try again;
    /// disconnected: the flow ended or was cancelled).
    Wait(Receiver<()>),
}

/// Why a [`Stream`] took no item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// The sender closed its stream.
    Closed,
    /// The items waiting for credit hold a limit.
    Full(Full),
}

impl Stream {
    /// A stream with a window of `window` bytes each way.
    pub(crate) fn new(window: u32) -> Stream {
        Stream {
            credit: Credit::new(window),
            waiting: Queue::default(),
            send_closed: false,
            waiters: Waiters::default(),
        }
    }

    /// A peer's item of `size` arrived; false if it is past the window the
    /// peer was given (a protocol violation).
    pub(crate) fn receive(&mut self, size: u32) -> bool {
        self.credit.receive(size)
    }

    /// The receiver consumed an item of `size`: the credit to grant the
    /// peer now, if it is worth a frame.
    pub(crate) fn consume(&mut self, size: u32) -> Option<u32> {
        self.credit.consume(size)
    }

    /// A sender that may wait has an item of `size` (see [`Sending`]). Items
    /// queued by [`Stream::offer`] go first.
    pub(crate) fn send(&mut self, size: u32) -> Result<Sending, Refusal> {
        if self.send_closed {
            return Err(Refusal::Closed);
        }
        if self.waiting.is_empty() && self.credit.can_send(size) {
            self.credit.take_send(size);
            return Ok(Sending::Now);
        }
        // (A channel only for an item that has to wait.)
        Ok(Sending::Wait(self.waiters.add()))
    }

    /// A sender that never waits has an item (`frame`, of `size`): handed
    /// back to write now (its credit taken), or kept until credit comes
    /// (`None`), counted against `limit`.
    pub(crate) fn offer(
        &mut self,
        frame: Vec<u8>,
        size: u32,
        limit: &Limit,
    ) -> Result<Option<Vec<u8>>, Refusal> {
        if self.send_closed {
            return Err(Refusal::Closed);
        }
        if self.waiting.is_empty() && self.credit.can_send(size) {
            self.credit.take_send(size);
            return Ok(Some(frame));
        }
        let n = frame.len();
        self.waiting
            .push(frame, size, n, n, limit)
            .map_err(Refusal::Full)?;
        Ok(None)
    }

    /// The sender closes its stream: true to write its close now, false if
    /// it waits behind items (it goes after them) or was closed already.
    pub(crate) fn close(&mut self) -> bool {
        if std::mem::replace(&mut self.send_closed, true) {
            return false;
        }
        if self.waiting.is_empty() {
            return true;
        }
        self.waiting.push_close();
        false
    }

    /// Credit came from the peer: the frames that may go now are appended
    /// to `out` (and `close` for the sender's close, if its turn came),
    /// and every waiting sender is woken.
    pub(crate) fn grant(
        &mut self,
        bytes: u32,
        out: &mut Vec<u8>,
        close: impl FnOnce(&mut Vec<u8>),
    ) {
        self.credit.grant_send(bytes);
        let mut close = Some(close);
        let credit = &mut self.credit;
        while let Some(q) = self.waiting.pop_if(|size| credit.can_send(size)) {
            match q {
                Queued::Item { item, size, .. } => {
                    credit.take_send(size);
                    out.extend_from_slice(&item);
                }
                Queued::Close => {
                    if let Some(c) = close.take() {
                        c(out);
                    }
                }
            }
        }
        self.waiters.wake();
    }

    /// The flow was cancelled: every waiting sender is told (its channel
    /// disconnects).
    pub(crate) fn cancel(&mut self) {
        self.waiters.drop_all();
    }

    /// Whether the sender closed its stream.
    #[cfg(test)]
    pub(crate) fn is_send_closed(&self) -> bool {
        self.send_closed
    }
}

/// A flow whose items wait until it has started (see the module
/// documentation): `H` is how items reach it once it has (a call's
/// handle), `I` an item.
pub(crate) struct Gate<H, I> {
    phase: Phase<H>,
    queue: Queue<I>,
}

enum Phase<H> {
    /// Not yet started: items wait.
    Shut,
    /// Whoever started it is sending what waited; new items wait too.
    Draining(H),
    /// Items go straight through.
    Open(H),
}

/// Where an item for a [`Gate`] goes.
pub(crate) enum Route<'a, H, I> {
    /// Straight through this handle, by whoever has the item (handed back).
    Through(&'a H, I),
    /// It waits (or, for a repeated close, it was there already).
    Waits,
}

/// What [`Gate::start`] has the starter do.
pub(crate) enum Start<H, I> {
    /// Send these through the handle (handed back), in order, then start
    /// again.
    Send(H, VecDeque<Queued<I>>),
    /// Nothing waits: the gate is open, items go straight through.
    Open,
}

impl<H: Clone, I> Default for Gate<H, I> {
    fn default() -> Self {
        Gate {
            phase: Phase::Shut,
            queue: Queue::default(),
        }
    }
}

impl<H: Clone, I> Gate<H, I> {
    /// An item (see [`Queue::push`] for the counts and the limit).
    pub(crate) fn item(
        &mut self,
        item: I,
        counted: usize,
        charge: usize,
        limit: &Limit,
    ) -> Result<Route<'_, H, I>, Full> {
        match &self.phase {
            Phase::Open(h) => Ok(Route::Through(h, item)),
            _ => {
                self.queue.push(item, 0, counted, charge, limit)?;
                Ok(Route::Waits)
            }
        }
    }

    /// The sender's close.
    pub(crate) fn close(&mut self) -> Route<'_, H, ()> {
        match &self.phase {
            Phase::Open(h) => Route::Through(h, ()),
            _ => {
                self.queue.push_close();
                Route::Waits
            }
        }
    }

    /// The flow started (through `handle`), or its starter sent what it
    /// was last given: what to send next (only the starter sends until
    /// the gate is open, so items keep their order).
    pub(crate) fn start(&mut self, handle: H) -> Start<H, I> {
        if self.queue.is_empty() {
            self.phase = Phase::Open(handle);
            Start::Open
        } else {
            self.phase = Phase::Draining(handle.clone());
            Start::Send(handle, self.queue.take_all())
        }
    }

    /// The handle, once it has started.
    pub(crate) fn handle(&self) -> Option<&H> {
        match &self.phase {
            Phase::Shut => None,
            Phase::Draining(h) | Phase::Open(h) => Some(h),
        }
    }

    /// Drops what waits (its charges are given back).
    pub(crate) fn clear(&mut self) {
        self.queue.clear();
    }
}

#[cfg(test)]
mod tests;
