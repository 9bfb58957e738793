//! [`RateLimiter`]: token buckets per identity and per client network, for adapters to
//! consult before each call.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use governor::clock::{Clock, DefaultClock, Reference};
use governor::middleware::NoOpMiddleware;
use governor::state::keyed::DashMapStateStore;
use governor::{NotUntil, Quota};

use crate::config::{DynamicConfig, Rate, RateLimits};
use crate::{CallError, Identity};

/// How often buckets that have refilled are forgotten. A full bucket is what a new one
/// would be, so forgetting it changes nothing; between sweeps, memory holds only the
/// buckets of callers seen since the last one and those still refilling.
const PRUNE_EVERY: Duration = Duration::from_secs(1);

/// Token buckets for the rate limits of the dynamic configuration
/// (`[rate_limits] per_identity`, `per_ip`), read on every check, so a reload changes the
/// limits of the next call.
///
/// A node's [`NodePolicy`](crate::NodePolicy) checks it once per outside call, after the
/// identity is resolved and access checked; a refusal is `RESOURCE_EXHAUSTED`, retryable,
/// with `details.retry_after_ms`.
///
/// Addresses share a bucket by network: the first `ipv4_prefix` bits of an IPv4 address
/// (default 32, the whole address), the first `ipv6_prefix` bits of an IPv6 one (default
/// 64), so a host cannot multiply its limit by cycling through the addresses of its block.
/// A check costs the same however many callers the limiter has seen (governor's keyed
/// GCRA buckets in a sharded map); buckets that have refilled are swept out every second.
///
/// ```
/// use alknet_runtime::config::ConfigServiceImpl;
/// use alknet_runtime::{RateLimiter, codes};
///
/// let config = ConfigServiceImpl::from_text(
///     "[rate_limits]\nper_ip = { per_second = 1, burst = 2 }\n", "example").unwrap();
/// let limiter = RateLimiter::new(config.shared());
/// let ip = "192.0.2.1".parse().ok();
/// assert!(limiter.check(None, ip).is_ok());
/// assert!(limiter.check(None, ip).is_ok());
/// let refused = limiter.check(None, ip).unwrap_err();
/// assert_eq!(refused.code, codes::RESOURCE_EXHAUSTED);
/// assert!(refused.retryable);
/// ```
pub struct RateLimiter {
    config: Arc<ArcSwap<DynamicConfig>>,
    buckets: Buckets<DefaultClock>,
}

/// Governor's keyed limiter on clock `C`.
type Keyed<K, C> =
    governor::RateLimiter<K, DashMapStateStore<K>, C, NoOpMiddleware<<C as Clock>::Instant>>;

/// The buckets of the limits in force, on clock `C` (a fake one in tests).
struct Buckets<C: Clock> {
    clock: C,
    /// One keyed limiter per limit; replaced (empty) when a reload changes that limit.
    current: ArcSwap<Limiters<C>>,
    /// Serializes replacing `current`, so one reload builds one set of limiters.
    replacing: Mutex<()>,
    started: C::Instant,
    /// When the next sweep is due, in nanoseconds since `started`.
    next_prune: AtomicU64,
}

struct Limiters<C: Clock> {
    identity: Option<Arc<Limiter<String, C>>>,
    ip: Option<Arc<IpLimiter<C>>>,
}

struct Limiter<K: std::hash::Hash + Eq + Clone, C: Clock> {
    rate: Rate,
    buckets: Keyed<K, C>,
}

/// Buckets per network, and how addresses map to networks.
struct IpLimiter<C: Clock> {
    limiter: Limiter<IpAddr, C>,
    ipv4_prefix: u8,
    ipv6_prefix: u8,
}

impl<C: Clock> Limiters<C> {
    fn match_limits(&self, limits: &RateLimits) -> bool {
        self.identity.as_ref().map(|l| l.rate) == limits.per_identity
            && self
                .ip
                .as_ref()
                .map(|l| (l.limiter.rate, l.ipv4_prefix, l.ipv6_prefix))
                == limits
                    .per_ip
                    .map(|rate| (rate, limits.ipv4_prefix, limits.ipv6_prefix))
    }
}

impl<K: std::hash::Hash + Eq + Clone, C: Clock> Limiter<K, C> {
    fn new(rate: Rate, clock: &C) -> Self
    where
        C: Clone,
    {
        // The configuration refuses zeros; a programmatic one is held to one per second.
        let nonzero = |n| NonZeroU32::new(n).unwrap_or(NonZeroU32::MIN);
        let quota = Quota::per_second(nonzero(rate.per_second)).allow_burst(nonzero(rate.burst));
        Limiter {
            rate,
            buckets: governor::RateLimiter::dashmap_with_clock(quota, clock.clone()),
        }
    }

    fn take(
        &self,
        key: &K,
        who: impl FnOnce() -> String,
        now: C::Instant,
    ) -> Result<(), CallError> {
        self.buckets
            .check_key(key)
            .map_err(|refused: NotUntil<C::Instant>| {
                rate_limited(who(), self.rate, refused.wait_time_from(now))
            })
    }

    fn prune(&self) {
        self.buckets.retain_recent();
        self.buckets.shrink_to_fit();
    }
}

impl<C: Clock> IpLimiter<C> {
    /// The network `ip` counts against.
    fn network(&self, ip: IpAddr) -> IpAddr {
        match ip {
            IpAddr::V4(v4) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(self.ipv4_prefix.min(32)));
                IpAddr::V4(Ipv4Addr::from(u32::from(v4) & mask.unwrap_or(0)))
            }
            IpAddr::V6(v6) => {
                let mask = u128::MAX.checked_shl(128 - u32::from(self.ipv6_prefix.min(128)));
                IpAddr::V6(Ipv6Addr::from(u128::from(v6) & mask.unwrap_or(0)))
            }
        }
    }

    /// Whose bucket it is, as a refusal names it.
    fn describe(&self, network: IpAddr) -> String {
        let (prefix, bits) = match network {
            IpAddr::V4(_) => (self.ipv4_prefix, 32),
            IpAddr::V6(_) => (self.ipv6_prefix, 128),
        };
        if prefix >= bits {
            format!("the address {network}")
        } else {
            format!("the network {network}/{prefix}")
        }
    }
}

impl RateLimiter {
    /// A limiter reading its limits from `config`.
    pub fn new(config: Arc<ArcSwap<DynamicConfig>>) -> Self {
        RateLimiter {
            config,
            buckets: Buckets::new(DefaultClock::default()),
        }
    }

    /// Take one call from the caller's buckets: its identity's (when authenticated), then
    /// its network's (when its address is known). A call refused by its identity's bucket
    /// takes nothing from its network's; one refused by its network's has spent its
    /// identity's token, so an over-eager caller drains its own bucket, never its
    /// neighbours'.
    pub fn check(&self, identity: Option<&Identity>, ip: Option<IpAddr>) -> Result<(), CallError> {
        let limits = &self.config.load().rate_limits;
        self.check_limits(limits, identity, ip)
    }

    /// [`RateLimiter::check`] against `limits`, read by the caller from the snapshot it
    /// already holds.
    pub(crate) fn check_limits(
        &self,
        limits: &RateLimits,
        identity: Option<&Identity>,
        ip: Option<IpAddr>,
    ) -> Result<(), CallError> {
        if limits.per_identity.is_none() && limits.per_ip.is_none() {
            return Ok(());
        }
        self.buckets.check(limits, identity, ip)
    }
}

impl<C: Clock + Clone> Buckets<C> {
    fn new(clock: C) -> Self {
        Buckets {
            started: clock.now(),
            current: ArcSwap::from_pointee(Limiters {
                identity: None,
                ip: None,
            }),
            replacing: Mutex::new(()),
            next_prune: AtomicU64::new(0),
            clock,
        }
    }

    fn check(
        &self,
        limits: &RateLimits,
        identity: Option<&Identity>,
        ip: Option<IpAddr>,
    ) -> Result<(), CallError> {
        let limiters = self.limiters(limits);
        let now = self.clock.now();
        self.prune_if_due(&limiters, now);
        if let (Some(identity), Some(limiter)) = (identity, &limiters.identity) {
            limiter.take(&identity.id, || format!("`{}`", identity.id), now)?;
        }
        if let (Some(ip), Some(ip_limiter)) = (ip, &limiters.ip) {
            let network = ip_limiter.network(ip.to_canonical());
            ip_limiter
                .limiter
                .take(&network, || ip_limiter.describe(network), now)?;
        }
        Ok(())
    }

    /// The limiters for `limits`: the current ones, or — after a reload changed a limit —
    /// new ones, keeping the buckets of every limit that did not change.
    fn limiters(&self, limits: &RateLimits) -> Arc<Limiters<C>> {
        let current = self.current.load_full();
        if current.match_limits(limits) {
            return current;
        }
        let _replacing = self.replacing.lock().unwrap_or_else(|p| p.into_inner());
        let current = self.current.load_full();
        if current.match_limits(limits) {
            return current;
        }
        let identity = match (&current.identity, limits.per_identity) {
            (Some(kept), Some(rate)) if kept.rate == rate => Some(kept.clone()),
            (_, rate) => rate.map(|rate| Arc::new(Limiter::new(rate, &self.clock))),
        };
        let ip = match (&current.ip, limits.per_ip) {
            (Some(kept), Some(rate))
                if (kept.limiter.rate, kept.ipv4_prefix, kept.ipv6_prefix)
                    == (rate, limits.ipv4_prefix, limits.ipv6_prefix) =>
            {
                Some(kept.clone())
            }
            (_, rate) => rate.map(|rate| {
                Arc::new(IpLimiter {
                    limiter: Limiter::new(rate, &self.clock),
                    ipv4_prefix: limits.ipv4_prefix,
                    ipv6_prefix: limits.ipv6_prefix,
                })
            }),
        };
        let fresh = Arc::new(Limiters { identity, ip });
        self.current.store(fresh.clone());
        fresh
    }

    /// Sweep out refilled buckets once every [`PRUNE_EVERY`]; one caller does it, the others
    /// go on.
    fn prune_if_due(&self, limiters: &Limiters<C>, now: C::Instant) {
        let elapsed = u64::from(now.duration_since(self.started));
        let due = self.next_prune.load(Ordering::Relaxed);
        if elapsed < due {
            return;
        }
        let next = elapsed.saturating_add(PRUNE_EVERY.as_nanos() as u64);
        if self
            .next_prune
            .compare_exchange(due, next, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
        {
            if let Some(limiter) = &limiters.identity {
                limiter.prune();
            }
            if let Some(ip_limiter) = &limiters.ip {
                ip_limiter.limiter.prune();
            }
        }
    }

    /// How many buckets are kept.
    #[cfg(test)]
    fn len(&self) -> usize {
        let limiters = self.current.load();
        limiters.identity.as_ref().map_or(0, |l| l.buckets.len())
            + limiters.ip.as_ref().map_or(0, |l| l.limiter.buckets.len())
    }
}

fn rate_limited(who: String, rate: Rate, wait: Duration) -> CallError {
    let wait = wait.max(Duration::from_millis(1));
    CallError::rate_limited(
        format!(
            "{who} exceeded the rate limit of {} calls per second (burst {}); retry in {} ms",
            rate.per_second,
            rate.burst,
            wait.as_millis()
        ),
        wait,
    )
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use governor::clock::FakeRelativeClock;

    use super::*;
    use crate::codes;
    use crate::config::ConfigServiceImpl;

    fn limiter(text: &str) -> RateLimiter {
        RateLimiter::new(ConfigServiceImpl::from_text(text, "test").unwrap().shared())
    }

    /// Buckets on a clock the test moves, and the limits they enforce.
    fn fake(text: &str) -> (Buckets<FakeRelativeClock>, RateLimits, FakeRelativeClock) {
        let config = ConfigServiceImpl::from_text(text, "test").unwrap();
        let clock = FakeRelativeClock::default();
        let limits = config.snapshot().rate_limits.clone();
        (Buckets::new(clock.clone()), limits, clock)
    }

    fn ip(text: &str) -> Option<IpAddr> {
        Some(text.parse().unwrap())
    }

    #[test]
    fn an_identity_gets_its_burst_then_a_retry_hint_then_tokens_back_over_time() {
        let (buckets, limits, clock) =
            fake("[rate_limits]\nper_identity = { per_second = 10, burst = 3 }\n");
        let ada = Identity::new("user:ada");
        for _ in 0..3 {
            buckets.check(&limits, Some(&ada), None).unwrap();
        }
        let refused = buckets.check(&limits, Some(&ada), None).unwrap_err();
        assert_eq!(refused.code, codes::RESOURCE_EXHAUSTED);
        assert!(refused.retryable);
        assert_eq!(refused.details.unwrap()["retry_after_ms"], 100);
        assert!(
            refused.message.starts_with("`user:ada` exceeded"),
            "{}",
            refused.message
        );
        // Another identity has its own bucket.
        buckets
            .check(&limits, Some(&Identity::new("user:bob")), None)
            .unwrap();
        // 100 ms later, one token has accrued.
        clock.advance(Duration::from_millis(100));
        buckets.check(&limits, Some(&ada), None).unwrap();
        assert!(buckets.check(&limits, Some(&ada), None).is_err());
    }

    #[test]
    fn a_refusal_by_the_identity_takes_nothing_from_the_address() {
        let (buckets, limits, _) = fake(
            "[rate_limits]\nper_identity = { per_second = 1, burst = 1 }\nper_ip = { per_second = 1, burst = 2 }\n",
        );
        let ada = Identity::new("user:ada");
        let ip = ip("192.0.2.7");
        buckets.check(&limits, Some(&ada), ip).unwrap();
        assert!(buckets.check(&limits, Some(&ada), ip).is_err());
        // The refused call did not spend the address's second token.
        buckets.check(&limits, None, ip).unwrap();
        assert!(buckets.check(&limits, None, ip).is_err());
    }

    #[test]
    fn without_limits_nothing_is_limited() {
        let limiter = limiter("");
        let ada = Identity::new("user:ada");
        for _ in 0..1000 {
            limiter.check(Some(&ada), "192.0.2.1".parse().ok()).unwrap();
        }
    }

    #[test]
    fn ipv4_addresses_have_their_own_buckets_unless_a_shorter_prefix_joins_them() {
        let (buckets, limits, _) = fake("[rate_limits]\nper_ip = { per_second = 1, burst = 1 }\n");
        buckets.check(&limits, None, ip("127.0.0.2")).unwrap();
        buckets.check(&limits, None, ip("127.0.0.3")).unwrap();
        let refused = buckets.check(&limits, None, ip("127.0.0.2")).unwrap_err();
        assert!(
            refused.message.starts_with("the address 127.0.0.2 "),
            "{}",
            refused.message
        );

        let (buckets, limits, _) =
            fake("[rate_limits]\nper_ip = { per_second = 1, burst = 1 }\nipv4_prefix = 24\n");
        buckets.check(&limits, None, ip("127.0.0.2")).unwrap();
        let refused = buckets.check(&limits, None, ip("127.0.0.3")).unwrap_err();
        assert!(
            refused.message.starts_with("the network 127.0.0.0/24 "),
            "{}",
            refused.message
        );
        // The next /24 is another network.
        buckets.check(&limits, None, ip("127.0.1.2")).unwrap();
    }

    #[test]
    fn ipv6_addresses_share_a_bucket_per_64_by_default() {
        let (buckets, limits, _) = fake("[rate_limits]\nper_ip = { per_second = 1, burst = 1 }\n");
        buckets.check(&limits, None, ip("2001:db8:0:1::1")).unwrap();
        let refused = buckets
            .check(&limits, None, ip("2001:db8:0:1:ffff:ffff:ffff:ffff"))
            .unwrap_err();
        assert!(
            refused
                .message
                .starts_with("the network 2001:db8:0:1::/64 "),
            "{}",
            refused.message
        );
        // The neighbouring /64 is another host's.
        buckets.check(&limits, None, ip("2001:db8:0:2::1")).unwrap();

        // An IPv4 address written as IPv6 is that IPv4 address.
        buckets
            .check(&limits, None, ip("::ffff:192.0.2.1"))
            .unwrap();
        assert!(buckets.check(&limits, None, ip("192.0.2.1")).is_err());

        let (buckets, limits, _) =
            fake("[rate_limits]\nper_ip = { per_second = 1, burst = 1 }\nipv6_prefix = 128\n");
        buckets.check(&limits, None, ip("2001:db8:0:1::1")).unwrap();
        buckets.check(&limits, None, ip("2001:db8:0:1::2")).unwrap();
    }

    #[test]
    fn buckets_that_refilled_are_swept_out_and_those_refilling_are_kept() {
        let (buckets, limits, clock) =
            fake("[rate_limits]\nper_ip = { per_second = 1, burst = 2 }\n");
        // One call from each of 60,000 addresses: each bucket is full again a second later.
        for n in 0..60_000u32 {
            let address = IpAddr::V4(Ipv4Addr::from(0x7f00_0002 + n));
            buckets.check(&limits, None, Some(address)).unwrap();
        }
        assert_eq!(buckets.len(), 60_000);
        // Half a second on, one caller spends its whole burst.
        clock.advance(Duration::from_millis(500));
        let eager = ip("192.0.2.1");
        buckets.check(&limits, None, eager).unwrap();
        buckets.check(&limits, None, eager).unwrap();

        // The next sweep forgets the full buckets and keeps the one still refilling.
        clock.advance(Duration::from_millis(1600));
        buckets.check(&limits, None, ip("192.0.2.2")).unwrap();
        assert_eq!(
            buckets.len(),
            2,
            "the eager caller's bucket and the new caller's"
        );
        // Forgotten, the eager caller would have a fresh burst of two.
        buckets.check(&limits, None, eager).unwrap();
        assert!(buckets.check(&limits, None, eager).is_err());
    }

    #[test]
    fn a_flood_of_addresses_leaves_no_lasting_slowdown() {
        // The issue's load: one call from each of 60,000 addresses, then a normal caller.
        let limiter = limiter("[rate_limits]\nper_ip = { per_second = 1000000, burst = 1 }\n");
        for n in 0..60_000u32 {
            let _ = limiter.check(None, Some(IpAddr::V4(Ipv4Addr::from(0x7f00_0002 + n))));
        }
        let caller = ip("192.0.2.1");
        let started = Instant::now();
        for _ in 0..20_000 {
            let _ = limiter.check(None, caller);
        }
        // Each check is a map lookup, however many callers came before.
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "20,000 checks took {:?}",
            started.elapsed()
        );
    }

    #[test]
    fn a_reload_that_changes_a_limit_starts_its_buckets_afresh_and_keeps_the_others() {
        let config = ConfigServiceImpl::from_text(
            "[rate_limits]\nper_identity = { per_second = 1, burst = 1 }\nper_ip = { per_second = 1, burst = 1 }\n",
            "test",
        )
        .unwrap();
        let (buckets, _, _) = fake("");
        let mut limits = config.snapshot().rate_limits.clone();
        let ada = Identity::new("user:ada");
        buckets.check(&limits, Some(&ada), None).unwrap();
        buckets.check(&limits, None, ip("192.0.2.1")).unwrap();
        limits.per_ip = Some(Rate {
            per_second: 1,
            burst: 2,
        });
        buckets.check(&limits, None, ip("192.0.2.1")).unwrap();
        assert!(
            buckets.check(&limits, Some(&ada), None).is_err(),
            "ada's bucket is kept"
        );
    }
}
