//! [`Slots`]: how many of one kind of thing — calls, subscriptions, MCP sessions, TCP and
//! QUIC connections — a node holds open at once, in all, per identity and per address. One
//! counter for every transport: the HTTP adapter, MCP, the WebSocket listener and the QUIC
//! call-protocol endpoint all admit through it.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use crate::CallError;

/// How many slots may be held at once: in all, by one identity, and from one address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SlotLimits {
    pub(crate) total: usize,
    pub(crate) per_identity: usize,
    pub(crate) per_address: usize,
}

/// A pool of slots, one per thing held open. A request over a limit is turned away at once,
/// never queued: a client told to come back later beats one left waiting on a node that is
/// already busy. Clones share the pool, so the HTTP routes and MCP's tool calls draw on one
/// limit.
#[derive(Clone)]
pub(crate) struct Slots(Arc<Pool>);

struct Pool {
    /// What one slot holds, plural, as a refusal names it ("concurrent calls").
    what: &'static str,
    limits: SlotLimits,
    held: Mutex<Held>,
}

/// Only holders with a slot have an entry, so the map never outgrows the total limit.
#[derive(Default)]
struct Held {
    total: usize,
    by_holder: HashMap<Holder, usize>,
}

#[derive(Clone, PartialEq, Eq, Hash)]
enum Holder {
    Identity(Arc<str>),
    Address(IpAddr),
}

/// One slot, given back when dropped.
pub(crate) struct Slot {
    pool: Arc<Pool>,
    holders: [Option<Holder>; 2],
}

impl Slots {
    pub(crate) fn new(what: &'static str, limits: SlotLimits) -> Self {
        Slots(Arc::new(Pool {
            what,
            limits,
            held: Mutex::default(),
        }))
    }

    /// A slot for `identity` (when the caller authenticated) calling from `address` (when
    /// known), counted against every limit that applies; `RESOURCE_EXHAUSTED` (retryable,
    /// retry after 1 s) naming the limit when one is reached, and then nothing is taken.
    pub(crate) fn take(
        &self,
        identity: Option<&str>,
        address: Option<IpAddr>,
    ) -> Result<Slot, CallError> {
        let pool = &self.0;
        let limits = pool.limits;
        let what = pool.what;
        let holders = [
            identity.map(|id| Holder::Identity(id.into())),
            address.map(Holder::Address),
        ];
        let mut held = pool.held.lock().unwrap_or_else(PoisonError::into_inner);
        let refused =
            |message: String| Err(CallError::rate_limited(message, Duration::from_secs(1)));
        if held.total >= limits.total {
            return refused(format!(
                "the node is holding its limit of {} {what}",
                limits.total
            ));
        }
        for holder in holders.iter().flatten() {
            let count = held.by_holder.get(holder).copied().unwrap_or(0);
            match holder {
                Holder::Identity(id) if count >= limits.per_identity => {
                    return refused(format!(
                        "the identity `{id}` holds its limit of {} {what}",
                        limits.per_identity
                    ));
                }
                Holder::Address(ip) if count >= limits.per_address => {
                    return refused(format!(
                        "the address {ip} holds its limit of {} {what}",
                        limits.per_address
                    ));
                }
                _ => {}
            }
        }
        held.total += 1;
        for holder in holders.iter().flatten() {
            *held.by_holder.entry(holder.clone()).or_default() += 1;
        }
        drop(held);
        Ok(Slot {
            pool: pool.clone(),
            holders,
        })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut held = self
            .pool
            .held
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        held.total -= 1;
        for holder in self.holders.iter().flatten() {
            if let Some(count) = held.by_holder.get_mut(holder) {
                *count -= 1;
                if *count == 0 {
                    held.by_holder.remove(holder);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codes;

    const LIMITS: SlotLimits = SlotLimits {
        total: 3,
        per_identity: 2,
        per_address: 2,
    };

    #[test]
    fn each_limit_holds_at_its_boundary_and_frees_on_drop() {
        let slots = Slots::new("concurrent calls", LIMITS);
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();

        let first = slots.take(None, Some(a)).unwrap();
        let _second = slots.take(None, Some(a)).unwrap();
        let over = slots.take(None, Some(a)).err().unwrap();
        assert_eq!(over.code, codes::RESOURCE_EXHAUSTED);
        assert!(over.retryable);
        assert!(over.message.contains("192.0.2.1"), "{}", over.message);

        // The identity's own limit, from another address.
        let _third = slots.take(Some("user:ada"), Some(b)).unwrap();
        let total = slots.take(Some("user:bob"), Some(b)).err().unwrap();
        assert!(total.message.contains("limit of 3"), "{}", total.message);

        drop(first);
        let _again = slots.take(Some("user:ada"), Some(b)).unwrap();
        let identity = Slots::new("open subscriptions", LIMITS);
        let _one = identity.take(Some("user:ada"), Some(a)).unwrap();
        let _two = identity.take(Some("user:ada"), Some(b)).unwrap();
        let refused = identity.take(Some("user:ada"), None).err().unwrap();
        assert!(
            refused.message.contains("`user:ada`"),
            "{}",
            refused.message
        );
        assert!(refused.message.contains("open subscriptions"));
    }

    #[test]
    fn a_freed_holder_leaves_no_entry() {
        let slots = Slots::new("connections", LIMITS);
        let slot = slots
            .take(Some("user:ada"), "192.0.2.1".parse().ok())
            .unwrap();
        drop(slot);
        let held = slots.0.held.lock().unwrap();
        assert_eq!((held.total, held.by_holder.len()), (0, 0));
    }
}
