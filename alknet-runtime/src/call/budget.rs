//! Memory budgets for frames that have begun to arrive and are not yet whole. A frame's
//! length is a promise; what a reader holds is what arrived, charged to its connection's
//! budget and to its endpoint's, so no peer holds more than the node lets it, however many
//! frames it announces.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::wire::FrameError;

/// A number of bytes that frame readers share; cheap to clone.
#[derive(Debug, Clone)]
pub(crate) struct Budget(Arc<Pool>);

#[derive(Debug)]
struct Pool {
    /// Whose budget it is, as a sentence names it: "the connection".
    owner: &'static str,
    limit: usize,
    used: AtomicUsize,
}

impl Budget {
    /// `limit` bytes, named `owner` in errors.
    pub(crate) fn new(owner: &'static str, limit: usize) -> Self {
        Budget(Arc::new(Pool {
            owner,
            limit,
            used: AtomicUsize::new(0),
        }))
    }

    /// How many bytes readers hold now.
    #[cfg(test)]
    pub(crate) fn used(&self) -> usize {
        self.0.used.load(Ordering::Acquire)
    }

    fn take(&self, bytes: usize) -> bool {
        self.0
            .used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(bytes)
                    .filter(|&total| total <= self.0.limit)
            })
            .is_ok()
    }

    fn give_back(&self, bytes: usize) {
        self.0.used.fetch_sub(bytes, Ordering::AcqRel);
    }
}

/// What one frame reader holds of its budgets (its connection's, then its endpoint's);
/// given back when dropped.
#[derive(Debug)]
pub(crate) struct Charge {
    budgets: [Budget; 2],
    held: usize,
}

impl Charge {
    /// Nothing held yet of `connection` and `endpoint`.
    pub(crate) fn new(connection: Budget, endpoint: Budget) -> Self {
        Charge {
            budgets: [connection, endpoint],
            held: 0,
        }
    }

    /// Hold `bytes` in all: more if every budget has room for the difference (else
    /// nothing changes and the error names the budget that is full), or less.
    pub(crate) fn hold(&mut self, bytes: usize) -> Result<(), FrameError> {
        if bytes <= self.held {
            for budget in &self.budgets {
                budget.give_back(self.held - bytes);
            }
            self.held = bytes;
            return Ok(());
        }
        let more = bytes - self.held;
        for (taken, budget) in self.budgets.iter().enumerate() {
            if !budget.take(more) {
                for earlier in &self.budgets[..taken] {
                    earlier.give_back(more);
                }
                return Err(FrameError::OverBudget {
                    owner: budget.0.owner,
                    limit: budget.0.limit,
                });
            }
        }
        self.held = bytes;
        Ok(())
    }
}

impl Drop for Charge {
    fn drop(&mut self) {
        let _ = self.hold(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_charge_fits_every_budget_or_takes_nothing() {
        let connection = Budget::new("the connection", 100);
        let endpoint = Budget::new("the node", 150);
        let mut first = Charge::new(connection.clone(), endpoint.clone());
        first.hold(100).unwrap();
        let err = first.hold(101).unwrap_err();
        assert_eq!(
            err.to_string(),
            "the connection has no room for more frames in transit: its 100 bytes for them are in use"
        );
        assert_eq!(err.to_call_error().code, crate::codes::RESOURCE_EXHAUSTED);
        assert!(
            err.to_call_error().retryable,
            "room comes back as frames arrive"
        );
        assert_eq!((connection.used(), endpoint.used()), (100, 100));

        let other_connection = Budget::new("the connection", 100);
        let mut second = Charge::new(other_connection.clone(), endpoint.clone());
        second.hold(50).unwrap();
        let err = second.hold(51).unwrap_err();
        assert!(err.to_string().starts_with("the node has no room"), "{err}");
        assert_eq!(
            other_connection.used(),
            50,
            "the connection's share is given back"
        );

        first.hold(10).unwrap();
        second.hold(60).unwrap();
        drop(first);
        drop(second);
        assert_eq!((connection.used(), endpoint.used()), (0, 0));
        assert_eq!(other_connection.used(), 0);
    }
}
