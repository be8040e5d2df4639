//! Request limits: body size, page size, stream clients, and token-bucket
//! rate limits per client address and per API key.

use std::collections::HashMap;
use std::hash::Hash;
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
    /// Requests per client address (every endpoint). `None`: unlimited.
    #[serde(default = "default_per_ip")]
    pub per_ip: Option<RateLimit>,
    /// Mutating requests per API key. `None`: unlimited.
    #[serde(default = "default_per_key")]
    pub per_key: Option<RateLimit>,
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
    limit: RateLimit,
    buckets: Mutex<HashMap<K, Bucket>>,
}

/// Buckets kept before idle ones are swept.
const SWEEP_ABOVE: usize = 10_000;

impl<K: Hash + Eq + Clone> Limiter<K> {
    pub fn new(limit: RateLimit) -> Self {
        Limiter {
            limit,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Take one token for `key`: `Err(seconds)` to wait when there is none.
    pub fn check(&self, key: &K) -> Result<(), u64> {
        self.check_at(key, Instant::now())
    }

    fn check_at(&self, key: &K, now: Instant) -> Result<(), u64> {
        let rate = f64::from(self.limit.per_second);
        let burst = f64::from(self.limit.burst);
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        if buckets.len() > SWEEP_ABOVE {
            // A bucket idle long enough to be full again is the same as no bucket.
            let full_after = burst / rate;
            buckets.retain(|_, b| now.duration_since(b.updated).as_secs_f64() < full_after);
        }
        let bucket = buckets.entry(key.clone()).or_insert(Bucket {
            tokens: burst,
            updated: now,
        });
        let elapsed = now.duration_since(bucket.updated).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * rate).min(burst);
        bucket.updated = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
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
}
