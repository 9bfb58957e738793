//! [`RateLimiter`]: token buckets per identity and per IP address, for adapters to consult
//! before each call.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;

use crate::config::{DynamicConfig, Rate, RateLimits};
use crate::{CallError, Identity};

/// Past this many buckets, full (idle) ones are forgotten: a full bucket is what a new
/// one would be, so forgetting it changes nothing.
const PRUNE_ABOVE: usize = 10_000;

/// Token buckets for the rate limits of the dynamic configuration
/// (`[rate_limits] per_identity`, `per_ip`), read on every check, so a reload changes the
/// limits of the next call.
///
/// A node's [`NodePolicy`](crate::NodePolicy) checks it once per outside call, after the
/// identity is resolved and access checked; a refusal is `RESOURCE_EXHAUSTED`, retryable,
/// with `details.retry_after_ms`.
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
    buckets: Mutex<HashMap<BucketKey, Bucket>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum BucketKey {
    Identity(String),
    Ip(IpAddr),
}

/// Whose bucket it is, as a refusal names it.
impl std::fmt::Display for BucketKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BucketKey::Identity(id) => write!(f, "`{id}`"),
            BucketKey::Ip(ip) => write!(f, "the address {ip}"),
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    updated: Instant,
}

impl RateLimiter {
    /// A limiter reading its limits from `config`.
    pub fn new(config: Arc<ArcSwap<DynamicConfig>>) -> Self {
        RateLimiter {
            config,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Take one call from the caller's buckets: its identity's (when authenticated) and its
    /// IP address's (when known). Refuses without taking anything if either is empty.
    pub fn check(&self, identity: Option<&Identity>, ip: Option<IpAddr>) -> Result<(), CallError> {
        self.check_at(identity, ip, Instant::now())
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
        self.check_limits_at(limits, identity, ip, Instant::now())
    }

    fn check_at(
        &self,
        identity: Option<&Identity>,
        ip: Option<IpAddr>,
        now: Instant,
    ) -> Result<(), CallError> {
        let limits = self.config.load().rate_limits;
        self.check_limits_at(&limits, identity, ip, now)
    }

    fn check_limits_at(
        &self,
        limits: &RateLimits,
        identity: Option<&Identity>,
        ip: Option<IpAddr>,
        now: Instant,
    ) -> Result<(), CallError> {
        let mut wanted: Vec<(BucketKey, Rate)> = Vec::with_capacity(2);
        if let (Some(identity), Some(rate)) = (identity, limits.per_identity) {
            wanted.push((BucketKey::Identity(identity.id.clone()), rate));
        }
        if let (Some(ip), Some(rate)) = (ip, limits.per_ip) {
            wanted.push((BucketKey::Ip(ip), rate));
        }
        if wanted.is_empty() {
            return Ok(());
        }
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        if buckets.len() > PRUNE_ABOVE {
            buckets.retain(|_, bucket| bucket.tokens < 1.0);
        }
        let mut refills = Vec::with_capacity(wanted.len());
        for (key, rate) in &wanted {
            let bucket = buckets.get(key).copied();
            let tokens = refill(bucket, *rate, now);
            if tokens < 1.0 {
                let wait = Duration::from_secs_f64((1.0 - tokens) / f64::from(rate.per_second));
                return Err(CallError::rate_limited(
                    format!(
                        "{key} exceeded the rate limit of {} calls per second (burst {}); retry in {} ms",
                        rate.per_second,
                        rate.burst,
                        wait.as_millis().max(1)
                    ),
                    wait.max(Duration::from_millis(1)),
                ));
            }
            refills.push(tokens);
        }
        for ((key, _), tokens) in wanted.into_iter().zip(refills) {
            buckets.insert(
                key,
                Bucket {
                    tokens: tokens - 1.0,
                    updated: now,
                },
            );
        }
        Ok(())
    }
}

/// A bucket's tokens at `now`: what it held plus what accrued, at most `burst`; a bucket
/// never seen is full.
fn refill(bucket: Option<Bucket>, rate: Rate, now: Instant) -> f64 {
    let burst = f64::from(rate.burst);
    match bucket {
        None => burst,
        Some(bucket) => {
            let elapsed = now.saturating_duration_since(bucket.updated).as_secs_f64();
            (bucket.tokens + elapsed * f64::from(rate.per_second)).min(burst)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codes;
    use crate::config::ConfigServiceImpl;

    fn limiter(text: &str) -> RateLimiter {
        RateLimiter::new(ConfigServiceImpl::from_text(text, "test").unwrap().shared())
    }

    #[test]
    fn an_identity_gets_its_burst_then_a_retry_hint_then_tokens_back_over_time() {
        let limiter = limiter("[rate_limits]\nper_identity = { per_second = 10, burst = 3 }\n");
        let ada = Identity::new("user:ada");
        let start = Instant::now();
        for _ in 0..3 {
            limiter.check_at(Some(&ada), None, start).unwrap();
        }
        let refused = limiter.check_at(Some(&ada), None, start).unwrap_err();
        assert_eq!(refused.code, codes::RESOURCE_EXHAUSTED);
        assert!(refused.retryable);
        assert_eq!(refused.details.unwrap()["retry_after_ms"], 100);
        // Another identity has its own bucket.
        limiter
            .check_at(Some(&Identity::new("user:bob")), None, start)
            .unwrap();
        // 100 ms later, one token has accrued.
        let later = start + Duration::from_millis(100);
        limiter.check_at(Some(&ada), None, later).unwrap();
        assert!(limiter.check_at(Some(&ada), None, later).is_err());
    }

    #[test]
    fn a_refusal_by_one_bucket_takes_nothing_from_the_other() {
        let limiter = limiter(
            "[rate_limits]\nper_identity = { per_second = 1, burst = 1 }\nper_ip = { per_second = 1, burst = 2 }\n",
        );
        let ada = Identity::new("user:ada");
        let ip = Some("192.0.2.7".parse().unwrap());
        let now = Instant::now();
        limiter.check_at(Some(&ada), ip, now).unwrap();
        assert!(limiter.check_at(Some(&ada), ip, now).is_err());
        // The refused call did not spend the address's second token.
        limiter.check_at(None, ip, now).unwrap();
        assert!(limiter.check_at(None, ip, now).is_err());
    }

    #[test]
    fn without_limits_nothing_is_limited() {
        let limiter = limiter("");
        let ada = Identity::new("user:ada");
        for _ in 0..1000 {
            limiter.check(Some(&ada), "192.0.2.1".parse().ok()).unwrap();
        }
    }
}
