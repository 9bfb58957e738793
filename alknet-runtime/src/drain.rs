//! [`Drain`]: how a node stops without dropping calls on the floor — refuse new outside
//! calls, let the ones in flight finish, then end the rest.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::CallError;

/// The outside calls of an env in flight, and the switch that stops them; give it to
/// [`OperationEnvBuilder::drain`](crate::OperationEnvBuilder::drain). Cheap to clone.
///
/// A graceful stop is [`close`](Drain::close) (every new outside call answers
/// `UNAVAILABLE`), then [`idle`](Drain::idle) for as long as calls may take to finish,
/// then [`cut`](Drain::cut): the calls still running end with `UNAVAILABLE`, and so do
/// their nested calls and subscriptions. [`Drain::stop`] does all three.
///
/// ```
/// use std::time::Duration;
/// use alknet_example::{EchoProtocol, EchoService};
/// use alknet_runtime::{Drain, OperationEnv, codes};
/// use serde_json::json;
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let drain = Drain::new();
/// let env = OperationEnv::builder()
///     .local(EchoProtocol::local(EchoService::default()))
///     .drain(drain.clone())
///     .build()
///     .unwrap();
/// assert!(env.invoke("echo", "say", json!({"text": "hi"})).await.result.is_ok());
/// assert_eq!(drain.stop(Duration::from_secs(1)).await, 0);
/// let refused = env.invoke("echo", "say", json!({"text": "hi"})).await.result.unwrap_err();
/// assert_eq!(refused.code, codes::UNAVAILABLE);
/// # }
/// ```
#[derive(Clone, Default)]
pub struct Drain(Arc<DrainShared>);

#[derive(Default)]
struct DrainShared {
    in_flight: AtomicUsize,
    /// Tasks in [`Drain::idle`].
    idle_waiters: AtomicUsize,
    closed: AtomicBool,
    idle: Notify,
    cut: CancellationToken,
}

impl Drain {
    /// Nothing in flight, open.
    pub fn new() -> Self {
        Self::default()
    }

    /// How many outside calls (and open subscriptions) are running.
    pub fn in_flight(&self) -> usize {
        self.0.in_flight.load(Ordering::SeqCst)
    }

    /// Refuse new outside calls with `UNAVAILABLE`; the ones in flight go on.
    pub fn close(&self) {
        self.0.closed.store(true, Ordering::SeqCst);
    }

    /// Whether [`close`](Self::close) was called.
    pub fn is_closed(&self) -> bool {
        self.0.closed.load(Ordering::SeqCst)
    }

    /// Resolves when no outside call is in flight.
    pub async fn idle(&self) {
        struct Waiting<'a>(&'a AtomicUsize);
        impl Drop for Waiting<'_> {
            fn drop(&mut self) {
                self.0.fetch_sub(1, Ordering::SeqCst);
            }
        }
        self.0.idle_waiters.fetch_add(1, Ordering::SeqCst);
        let _waiting = Waiting(&self.0.idle_waiters);
        loop {
            let notified = self.0.idle.notified();
            if self.in_flight() == 0 {
                return;
            }
            notified.await;
        }
    }

    /// End every call still running with `UNAVAILABLE`.
    pub fn cut(&self) {
        self.0.cut.cancel();
    }

    /// Close, wait up to `drain_time` for the calls in flight to finish, then cut the rest
    /// and give their answers a moment to leave. Returns how many calls were cut.
    pub async fn stop(&self, drain_time: Duration) -> usize {
        self.close();
        if tokio::time::timeout(drain_time, self.idle()).await.is_ok() {
            return 0;
        }
        let cut = self.in_flight();
        self.cut();
        let _ = tokio::time::timeout(CUT_GRACE, self.idle()).await;
        cut
    }

    /// Count one outside call in, unless the env is closed.
    pub(crate) fn enter(&self, operation: &str) -> Result<InFlight, CallError> {
        if self.is_closed() {
            return Err(shutting_down(operation));
        }
        self.0.in_flight.fetch_add(1, Ordering::SeqCst);
        Ok(InFlight(self.clone()))
    }
}

/// How long cut calls get to send their `UNAVAILABLE` before the listeners close.
const CUT_GRACE: Duration = Duration::from_millis(500);

/// One outside call in flight: counted out when dropped, with the call's context.
pub(crate) struct InFlight(Drain);

impl InFlight {
    /// Cancelled when the drain cuts the calls still running.
    pub(crate) fn cut_token(&self) -> &CancellationToken {
        &self.0.0.cut
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        // Notifying takes a lock: only when someone waits in `idle`. All four accesses are
        // SeqCst, so either this sees the waiter, or the waiter (which counts itself before
        // it reads) sees the count at 0.
        if self.0.0.in_flight.fetch_sub(1, Ordering::SeqCst) == 1
            && self.0.0.idle_waiters.load(Ordering::SeqCst) > 0
        {
            self.0.0.idle.notify_waiters();
        }
    }
}

pub(crate) fn shutting_down(operation: &str) -> CallError {
    CallError::unavailable(format!(
        "the node is shutting down and takes no new calls; `{operation}` was not run"
    ))
}

pub(crate) fn cut_off(operation: &str) -> CallError {
    CallError::unavailable(format!("the node shut down before `{operation}` finished"))
}
