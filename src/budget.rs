//! A byte budget shared by everything that buffers on behalf of one party
//! (a pipe's stream items, wherever they wait): a holder takes a
//! [`Charge`] for the bytes it keeps, and dropping the charge gives them
//! back, however the bytes go (sent, discarded, their flow ended).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// See the module documentation. Cloning shares it.
#[derive(Clone, Debug)]
pub(crate) struct Budget(Arc<Inner>);

#[derive(Debug)]
struct Inner {
    used: AtomicUsize,
    limit: usize,
}

/// Bytes held against a [`Budget`] until dropped.
#[derive(Debug)]
pub(crate) struct Charge {
    budget: Budget,
    bytes: usize,
}

impl Budget {
    /// A budget of `limit` bytes (the daemon gives one to each pipe).
    #[cfg_attr(not(feature = "daemon"), allow(dead_code))]
    pub(crate) fn new(limit: usize) -> Budget {
        Budget(Arc::new(Inner {
            used: AtomicUsize::new(0),
            limit,
        }))
    }

    /// Holds `bytes` more, unless that would go over the limit.
    pub(crate) fn charge(&self, bytes: usize) -> Option<Charge> {
        self.0
            .used
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |u| {
                u.checked_add(bytes).filter(|n| *n <= self.0.limit)
            })
            .ok()
            .map(|_| Charge {
                budget: self.clone(),
                bytes,
            })
    }

    /// Bytes held now.
    pub(crate) fn used(&self) -> usize {
        self.0.used.load(Ordering::SeqCst)
    }

    /// The limit.
    pub(crate) fn limit(&self) -> usize {
        self.0.limit
    }
}

impl Charge {
    /// The bytes held.
    #[cfg(test)]
    pub(crate) fn bytes(&self) -> usize {
        self.bytes
    }
}

impl Drop for Charge {
    fn drop(&mut self) {
        self.budget.0.used.fetch_sub(self.bytes, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn charges_up_to_the_limit_and_give_back_when_dropped() {
        let b = Budget::new(100);
        let a = b.charge(60).unwrap();
        assert!(b.charge(41).is_none(), "over the limit");
        let c = b.charge(40).unwrap();
        assert_eq!(b.used(), 100);
        drop(a);
        assert_eq!((b.used(), c.bytes()), (40, 40));
        drop(c);
        assert_eq!(b.used(), 0);
    }
}
