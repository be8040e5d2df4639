//! One retry policy for everything that tries again: a sink's writes (the
//! shared `retry:` field), a webhook's deliveries, an HTTP source's polls.
//! Exponential backoff from `initial_backoff`, doubling to `max_backoff`,
//! with jitter so that clients that failed together do not return together
//! (backon's exponential backoff), and a server's `Retry-After` — seconds or
//! an HTTP date — read in one place and honoured when it asks for longer.

use std::time::{Duration, SystemTime};

use backon::BackoffBuilder;

/// How a stage retries before it gives up.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize, serde::Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RetryConfig {
    /// Attempts after the first one.
    #[serde(default = "RetryConfig::default_attempts")]
    pub attempts: u32,
    /// Wait before the first retry; doubles on each further one (each wait
    /// plus a random part of as much again, never past `max_backoff`).
    #[serde(default = "RetryConfig::default_initial_backoff", with = "crate::duration")]
    #[schemars(schema_with = "crate::duration::schema")]
    pub initial_backoff: Duration,
    /// The longest wait between two attempts (a server's `Retry-After` may ask for longer).
    #[serde(default = "RetryConfig::default_max_backoff", with = "crate::duration")]
    #[schemars(schema_with = "crate::duration::schema")]
    pub max_backoff: Duration,
}

impl RetryConfig {
    fn default_attempts() -> u32 {
        5
    }
    fn default_initial_backoff() -> Duration {
        Duration::from_millis(100)
    }
    fn default_max_backoff() -> Duration {
        Duration::from_secs(10)
    }

    /// The waits before each retry, `attempts` of them.
    pub fn waits(&self) -> Waits {
        Waits::new(self, Some(self.attempts))
    }

    /// The waits for something that retries forever (a source's polls),
    /// growing to `max_backoff` and staying there.
    pub fn endless_waits(&self) -> Waits {
        Waits::new(self, None)
    }

    /// Problems with the values, as (field, problem).
    pub fn problems(&self) -> Vec<(&'static str, &'static str)> {
        let mut problems = Vec::new();
        if self.initial_backoff.is_zero() {
            problems.push(("retry", "retry initial_backoff must be longer than zero"));
        }
        if self.max_backoff < self.initial_backoff {
            problems.push(("retry", "retry max_backoff must not be shorter than initial_backoff"));
        }
        problems
    }
}

impl Default for RetryConfig {
    fn default() -> Self {
        Self {
            attempts: Self::default_attempts(),
            initial_backoff: Self::default_initial_backoff(),
            max_backoff: Self::default_max_backoff(),
        }
    }
}

/// Longest `Retry-After` honoured: a server asking for more is waited on this long.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(24 * 3600);

/// The waits of one series of retries.
pub struct Waits {
    backoff: backon::ExponentialBackoff,
    max: Duration,
}

impl Waits {
    fn new(config: &RetryConfig, attempts: Option<u32>) -> Self {
        let mut builder = backon::ExponentialBuilder::default()
            .with_min_delay(config.initial_backoff)
            .with_max_delay(config.max_backoff)
            .with_factor(2.0)
            .with_jitter();
        builder = match attempts {
            Some(n) => builder.with_max_times(n as usize),
            None => builder.without_max_times(),
        };
        Waits {
            backoff: builder.build(),
            max: config.max_backoff.max(config.initial_backoff),
        }
    }

    /// The next wait, at least what the server asked for (`Retry-After`, up to
    /// [`MAX_RETRY_AFTER`], even past `max_backoff`); `None` once the attempts are spent.
    pub fn next_after(&mut self, asked: Option<Duration>) -> Option<Duration> {
        self.next()
            .map(|wait| wait.max(asked.unwrap_or_default().min(MAX_RETRY_AFTER)))
    }
}

impl Iterator for Waits {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        self.backoff.next().map(|wait| wait.min(self.max))
    }
}

/// A `Retry-After` value: delay-seconds (`120`) or an HTTP date
/// (`Wed, 21 Oct 2026 07:28:00 GMT`, also the two obsolete forms), as a wait
/// from `now` (zero for a date in the past). `None` when it is neither.
pub fn retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(attempts: u32, initial_ms: u64, max_ms: u64) -> RetryConfig {
        RetryConfig {
            attempts,
            initial_backoff: Duration::from_millis(initial_ms),
            max_backoff: Duration::from_millis(max_ms),
        }
    }

    #[test]
    fn waits_double_with_jitter_up_to_the_cap_and_stop_after_the_attempts() {
        for _ in 0..200 {
            let waits: Vec<u128> = config(6, 100, 1000).waits().map(|w| w.as_millis()).collect();
            assert_eq!(waits.len(), 6, "one wait per retry");
            for (i, wait) in waits.iter().enumerate() {
                let base = (100u128 << i).min(1000);
                assert!(
                    *wait >= base && *wait <= (2 * base).min(1000),
                    "retry {i}: {wait} ms, base {base}"
                );
            }
        }
        let spread: std::collections::HashSet<u128> = (0..50)
            .map(|_| config(1, 1000, 5000).waits().next().unwrap().as_millis())
            .collect();
        assert!(spread.len() > 10, "jittered: {spread:?}");
        assert_eq!(config(0, 100, 1000).waits().next(), None, "no retries");
    }

    #[test]
    fn endless_waits_stay_at_the_cap() {
        let mut waits = config(0, 10, 40).endless_waits();
        let late: Vec<Duration> = waits.by_ref().skip(10).take(100).collect();
        assert_eq!(late.len(), 100);
        assert!(late.iter().all(|w| *w == Duration::from_millis(40)));
    }

    #[test]
    fn a_server_may_ask_for_longer_but_not_for_ever() {
        let mut waits = config(3, 100, 1000).waits();
        assert_eq!(
            waits.next_after(Some(Duration::from_secs(30))),
            Some(Duration::from_secs(30))
        );
        let short = waits.next_after(Some(Duration::from_millis(1))).unwrap();
        assert!(
            short >= Duration::from_millis(200),
            "the backoff when the server asks for less"
        );
        assert_eq!(
            waits.next_after(Some(Duration::from_secs(10 * 86_400))),
            Some(MAX_RETRY_AFTER)
        );
        assert_eq!(waits.next_after(None), None, "attempts spent");
    }

    #[test]
    fn retry_after_reads_seconds_and_http_dates() {
        let now = httpdate::parse_http_date("Wed, 21 Oct 2026 07:28:00 GMT").unwrap();
        assert_eq!(retry_after(" 120 ", now), Some(Duration::from_secs(120)));
        assert_eq!(
            retry_after("Wed, 21 Oct 2026 07:29:30 GMT", now),
            Some(Duration::from_secs(90))
        );
        assert_eq!(
            retry_after("Wednesday, 21-Oct-26 07:29:00 GMT", now),
            Some(Duration::from_secs(60))
        );
        assert_eq!(
            retry_after("Wed Oct 21 07:28:10 2026", now),
            Some(Duration::from_secs(10))
        );
        assert_eq!(
            retry_after("Tue, 20 Oct 2026 07:28:00 GMT", now),
            Some(Duration::ZERO),
            "past"
        );
        assert_eq!(retry_after("soon", now), None);
        assert_eq!(retry_after("-5", now), None);
    }
}
