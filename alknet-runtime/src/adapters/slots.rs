//! [`CallSlots`]: how many calls an adapter serves at once.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::CallError;

/// A fixed number of slots, one per call in progress. A call over the limit is turned away
/// at once, never queued: a client told to come back later beats one left waiting on a
/// node that is already busy. Clones share the slots, so the HTTP routes and MCP's tool
/// calls draw on one limit.
#[derive(Clone)]
pub(crate) struct CallSlots {
    permits: Arc<Semaphore>,
    limit: usize,
}

impl CallSlots {
    pub(crate) fn new(limit: usize) -> Self {
        CallSlots {
            permits: Arc::new(Semaphore::new(limit)),
            limit,
        }
    }

    /// A slot for one call, held until the permit is dropped; `RESOURCE_EXHAUSTED`
    /// (retryable, retry after 1 s) when every slot is taken.
    pub(crate) fn take(&self) -> Result<OwnedSemaphorePermit, CallError> {
        self.permits.clone().try_acquire_owned().map_err(|_| {
            CallError::rate_limited(
                format!(
                    "the node is serving its limit of {} concurrent calls",
                    self.limit
                ),
                Duration::from_secs(1),
            )
        })
    }
}
