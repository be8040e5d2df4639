//! Request limits: body size, page size, stream clients, and token-bucket
//! rate limits per client address and per API key.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::Mutex;
use std::time::Instant;

use serde::Deserialize;

/// Limits of the `Api` stage. Every limit answers with a JSON error (413, 400,
/// 429 with `Retry-After`, 503), never by dropping the connection.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LimitsConfig {
    /// Largest request body in bytes; a larger one gets 413.
    #[serde(default = "default_max_body")]
    pub max_body: usize,
    /// Most rows a page may ask for (`limit` of history and alert listings); more gets 400.
    #[serde(default = "default_max_page")]
    pub max_page: u32,
    /// Requests per client address (every endpoint); an IPv6 client counts by its /64.
    /// `None`: unlimited.
    #[serde(default = "default_per_ip")]
    pub per_ip: Option<RateLimit>,
    /// Mutating requests per API key. `None`: unlimited.
    #[serde(default = "default_per_key")]
    pub per_key: Option<RateLimit>,
    /// Failed authentications (unknown key, malformed header) per client
    /// address; once spent, every authenticated request of that client gets
    /// 429 until the budget refills. `None`: unlimited (not advised).
    #[serde(default = "default_failed_auth")]
    pub failed_auth: Option<FailureLimit>,
    /// Most rules a tenant may keep stored (any status); one more gets 409.
    #[serde(default = "default_rules_per_tenant")]
    pub rules_per_tenant: u32,
    /// Most of a tenant's stored rules that may carry a webhook; one more gets 409.
    #[serde(default = "default_webhooks_per_tenant")]
    pub webhooks_per_tenant: u32,
    /// Most live-stream (SSE) clients at once; one more gets 503.
    #[serde(default = "default_stream_clients")]
    pub stream_clients: usize,
    /// How many items a stream client may fall behind before it is cut off
    /// (so a slow client never slows the pipeline).
    #[serde(default = "default_stream_backlog")]
    pub stream_backlog: usize,
    /// Items kept per stream for clients that reconnect with `Last-Event-ID`.
    #[serde(default = "default_stream_replay")]
    pub stream_replay: usize,
}

/// A token bucket: `per_second` on average, up to `burst` at once.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RateLimit {
    pub per_second: u32,
    pub burst: u32,
}

/// A budget that refills slowly: `per_minute` on average, up to `burst` at once.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FailureLimit {
    pub per_minute: u32,
    pub burst: u32,
}

fn default_failed_auth() -> Option<FailureLimit> {
    Some(FailureLimit {
        per_minute: 10,
        burst: 10,
    })
}
fn default_rules_per_tenant() -> u32 {
    1000
}
fn default_webhooks_per_tenant() -> u32 {
    100
}
fn default_max_body() -> usize {
    16 * 1024
}
fn default_max_page() -> u32 {
    10_000
}
fn default_per_ip() -> Option<RateLimit> {
    Some(RateLimit {
        per_second: 200,
        burst: 400,
    })
}
fn default_per_key() -> Option<RateLimit> {
    Some(RateLimit {
        per_second: 10,
        burst: 50,
    })
}
fn default_stream_clients() -> usize {
    10_000
}
fn default_stream_backlog() -> usize {
    1024
}
fn default_stream_replay() -> usize {
    4096
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            max_body: default_max_body(),
            max_page: default_max_page(),
            per_ip: default_per_ip(),
            per_key: default_per_key(),
            failed_auth: default_failed_auth(),
            rules_per_tenant: default_rules_per_tenant(),
            webhooks_per_tenant: default_webhooks_per_tenant(),
            stream_clients: default_stream_clients(),
            stream_backlog: default_stream_backlog(),
            stream_replay: default_stream_replay(),
        }
    }
}

impl LimitsConfig {
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if self.max_body == 0 {
            problems.push("max_body must be at least 1 byte".to_owned());
        }
        if self.max_page == 0 {
            problems.push("max_page must be at least 1".to_owned());
        }
        for (name, limit) in [("per_ip", self.per_ip), ("per_key", self.per_key)] {
            if let Some(limit) = limit {
                if limit.per_second == 0 || limit.burst == 0 {
                    problems.push(format!(
                        "{name}: per_second and burst must be at least 1 (remove the limit with None)"
                    ));
                }
            }
        }
        if let Some(limit) = self.failed_auth {
            if limit.per_minute == 0 || limit.burst == 0 {
                problems.push(
                    "failed_auth: per_minute and burst must be at least 1 (remove the limit with None)".to_owned(),
                );
            }
        }
        if self.rules_per_tenant == 0 {
            problems.push("rules_per_tenant must be at least 1".to_owned());
        }
        if self.stream_backlog == 0 {
            problems.push("stream_backlog must be at least 1".to_owned());
        }
        problems
    }
}

struct Bucket {
    tokens: f64,
    updated: Instant,
}

/// Token buckets by key (client address, API key).
pub struct Limiter<K> {
    /// Tokens per second.
    rate: f64,
    burst: f64,
    buckets: Mutex<Buckets<K>>,
}

struct Buckets<K> {
    by_key: HashMap<K, Bucket>,
    /// The last sweep: at most one per refill period, so many keys cannot make
    /// every request pay for a sweep.
    swept: Option<Instant>,
}

/// The key a client address is limited by: an IPv6 client by its /64 (one
/// host's, or one subscriber's, prefix: rotating addresses inside it does not
/// buy more requests), an IPv4 one (also when mapped into IPv6) by its address.
pub fn client_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(Ipv6Addr::from(u128::from(v6) & !((1u128 << 64) - 1))),
        },
    }
}

/// Buckets kept before idle ones are swept.
const SWEEP_ABOVE: usize = 10_000;

impl<K: Hash + Eq + Clone> Limiter<K> {
    pub fn new(limit: RateLimit) -> Self {
        Self::with_rate(f64::from(limit.per_second), f64::from(limit.burst))
    }

    pub fn failures(limit: FailureLimit) -> Self {
        Self::with_rate(f64::from(limit.per_minute) / 60.0, f64::from(limit.burst))
    }

    fn with_rate(rate: f64, burst: f64) -> Self {
        Limiter {
            rate,
            burst,
            buckets: Mutex::new(Buckets {
                by_key: HashMap::new(),
                swept: None,
            }),
        }
    }

    /// Take one token for `key`: `Err(seconds)` to wait when there is none.
    pub fn check(&self, key: &K) -> Result<(), u64> {
        self.check_at(key, Instant::now())
    }

    /// `Some(seconds)` to wait when `key` has no token left; takes none.
    pub fn blocked(&self, key: &K) -> Option<u64> {
        self.take_at(key, Instant::now(), false).err()
    }

    fn check_at(&self, key: &K, now: Instant) -> Result<(), u64> {
        self.take_at(key, now, true)
    }

    fn take_at(&self, key: &K, now: Instant, take: bool) -> Result<(), u64> {
        let (rate, burst) = (self.rate, self.burst);
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        // A bucket idle long enough to be full again is the same as no bucket.
        let full_after = burst / rate;
        let due = buckets
            .swept
            .is_none_or(|at| now.duration_since(at).as_secs_f64() >= full_after);
        if buckets.by_key.len() > SWEEP_ABOVE && due {
            buckets
                .by_key
                .retain(|_, b| now.duration_since(b.updated).as_secs_f64() < full_after);
            buckets.swept = Some(now);
        }
        let bucket = buckets.by_key.entry(key.clone()).or_insert(Bucket {
            tokens: burst,
            updated: now,
        });
        let elapsed = now.duration_since(bucket.updated).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * rate).min(burst);
        bucket.updated = now;
        if bucket.tokens >= 1.0 {
            if take {
                bucket.tokens -= 1.0;
            }
            Ok(())
        } else {
            Err(((1.0 - bucket.tokens) / rate).ceil() as u64)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn an_ipv6_client_is_limited_by_its_slash_64_and_a_mapped_ipv4_one_by_its_address() {
        let key = |text: &str| client_key(text.parse().unwrap()).to_string();
        assert_eq!(key("2001:db8:1:2:aaaa::1"), "2001:db8:1:2::");
        assert_eq!(key("2001:db8:1:2:ffff:ffff:ffff:ffff"), "2001:db8:1:2::");
        assert_ne!(key("2001:db8:1:3::1"), key("2001:db8:1:2::1"));
        assert_eq!(key("::ffff:192.0.2.7"), "192.0.2.7");
        assert_eq!(key("192.0.2.7"), "192.0.2.7");
    }

    #[test]
    fn idle_buckets_are_swept_at_most_once_per_refill_period() {
        // 10 per second, burst 10: an idle bucket is full again after 1 s.
        let limiter = Limiter::new(RateLimit {
            per_second: 10,
            burst: 10,
        });
        let t = |ms: u64| Instant::now() + Duration::from_millis(ms);
        let (t0, t900, t1200, t1900) = (t(0), t(900), t(1200), t(1900));
        let count = |limiter: &Limiter<usize>| limiter.buckets.lock().unwrap().by_key.len();
        for i in 0..=SWEEP_ABOVE {
            limiter.check_at(&i, t0).unwrap();
        }
        limiter.check_at(&(usize::MAX - 1), t900).unwrap(); // sweeps; nothing is idle yet
        assert_eq!(count(&limiter), SWEEP_ABOVE + 2);
        // The first buckets are idle now, but a sweep ran 300 ms ago: none this time.
        limiter.check_at(&(usize::MAX - 2), t1200).unwrap();
        assert_eq!(
            count(&limiter),
            SWEEP_ABOVE + 3,
            "no sweep within a refill period of the last"
        );
        // A refill period after the last sweep: everything idle for 1 s goes.
        limiter.check_at(&(usize::MAX - 3), t1900).unwrap();
        assert_eq!(count(&limiter), 2, "left: the one from 1.2 s and the new one");
    }

    #[test]
    fn a_bucket_allows_the_burst_then_the_rate() {
        let limiter = Limiter::new(RateLimit {
            per_second: 2,
            burst: 3,
        });
        let start = Instant::now();
        for _ in 0..3 {
            assert!(limiter.check_at(&"a", start).is_ok());
        }
        assert_eq!(limiter.check_at(&"a", start), Err(1), "burst spent: wait");
        assert!(limiter.check_at(&"b", start).is_ok(), "keys have their own buckets");
        assert!(
            limiter.check_at(&"a", start + Duration::from_millis(500)).is_ok(),
            "one token per 500 ms"
        );
        assert!(limiter.check_at(&"a", start + Duration::from_millis(600)).is_err());
    }

    #[test]
    fn a_failure_budget_refills_per_minute_and_looking_takes_nothing() {
        let limiter = Limiter::failures(FailureLimit {
            per_minute: 6,
            burst: 2,
        });
        assert_eq!(limiter.blocked(&"a"), None);
        assert_eq!(limiter.blocked(&"a"), None, "looking is free");
        let start = Instant::now();
        limiter.check_at(&"a", start).unwrap();
        limiter.check_at(&"a", start).unwrap();
        assert_eq!(limiter.check_at(&"a", start), Err(10), "one failure per 10 s");
        assert!(limiter.check_at(&"a", start + Duration::from_secs(10)).is_ok());
    }
}
