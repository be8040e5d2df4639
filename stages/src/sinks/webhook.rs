//! `Webhook`: POSTs each firing of a rule that carries a webhook, signed,
//! with retries, and dead-letters the deliveries that keep failing.
//!
//! Which rules have a webhook — and their secrets — is read from the history
//! store (where the API writes every rule before it reaches the `Alert`
//! stage), so firings stay small and secrets never travel on the alerts topic.
//!
//! Each delivery is `POST <url>` with the firing as JSON — fxflow's own, or
//! with the target's `format` a Slack-compatible message or a Microsoft Teams
//! card, so a chat channel's incoming webhook shows it as text — `X-Fxflow-Delivery`
//! (a stable id: receivers can drop repeats), and with a secret
//! `X-Fxflow-Signature: sha256=<hex HMAC-SHA256 of the body>`. A timeout,
//! a connection error, 408, 429 and 5xx are retried by the stage's shared
//! `retry` policy (exponential backoff with jitter; a `Retry-After` in seconds
//! or as an HTTP date makes the wait longer); other answers are final. A
//! delivery that fails for good goes to the error output with the reason.
//!
//! **SSRF**: a webhook URL is chosen by whoever holds an API key, and the
//! worker that delivers sits inside the network, next to databases and cloud
//! metadata endpoints. So only `http`/`https` URLs are taken, redirects are not
//! followed, and — unless `allow_private_targets` — loopback, private,
//! link-local and other internal addresses are refused, both as literal IPs
//! and after DNS resolution (checked on the addresses actually connected to,
//! so a name that resolves inward is refused too).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use fxflow_engine::{
    async_trait, BuildContext, ConfigProblem, Envelope, ItemError, Kinds, ResourceUse, Shape, Sink, SinkError, Stage,
    StageConfig, StageError,
};
use hmac::{Hmac, KeyInit, Mac};
use reqwest::{StatusCode, Url};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::backends::STORE_KINDS;
use crate::fx::notice::Notice;
use crate::fx::{kind, AlertFired, FxEvent, WebhookFormat, WebhookTarget};
use crate::store::RuleCache;

/// Delivers alert firings to the webhooks of their rules.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// A `Postgres` or `Sqlite` resource holding the rules (with their webhooks).
    pub store: String,
    /// How long one delivery attempt may take.
    #[serde(default = "default_timeout", with = "fxflow_engine::duration")]
    #[schemars(schema_with = "fxflow_engine::duration::schema")]
    pub timeout: Duration,
    /// Deliveries in flight at once.
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
    /// Deliver to loopback and private addresses too. Off by default (SSRF);
    /// for tests and receivers inside a trusted network.
    #[serde(default)]
    pub allow_private_targets: bool,
}

fn default_timeout() -> Duration {
    Duration::from_secs(5)
}
fn default_concurrency() -> usize {
    16
}

#[async_trait]
impl StageConfig<FxEvent> for WebhookConfig {
    fn shape(&self) -> Shape {
        Shape::Sink
    }

    fn accepts(&self) -> Kinds {
        Kinds::only(&[kind::ALERT_FIRED])
    }

    fn resources(&self) -> Vec<ResourceUse> {
        vec![ResourceUse::one_of("store", &self.store, STORE_KINDS)]
    }

    fn check(&self) -> Vec<ConfigProblem> {
        let mut problems = Vec::new();
        if self.timeout.is_zero() {
            problems.push(ConfigProblem::field("timeout", "must be longer than zero"));
        }
        if self.concurrency == 0 {
            problems.push(ConfigProblem::field("concurrency", "must be at least 1"));
        }
        problems
    }

    async fn build(&self, cx: &BuildContext) -> Result<Stage<FxEvent>, StageError> {
        let store = crate::backends::open_store(&cx.resources, &self.store, false).await?;
        let mut client = reqwest::Client::builder()
            .timeout(self.timeout)
            .redirect(reqwest::redirect::Policy::none())
            // A proxy from the environment would resolve the target itself, around the checks below.
            .no_proxy()
            .user_agent(concat!("fxflow/", env!("CARGO_PKG_VERSION")));
        if !self.allow_private_targets {
            client = client.dns_resolver(Arc::new(PublicOnly));
        }
        let client = client
            .build()
            .map_err(|e| StageError::new(format!("HTTP client: {e}")))?;
        Ok(Stage::Sink(Box::new(WebhookSink {
            config: self.clone(),
            client,
            rules: RuleCache::new(store),
        })))
    }
}

struct WebhookSink {
    config: WebhookConfig,
    client: reqwest::Client,
    rules: RuleCache,
}

/// What a receiver gets.
#[derive(Debug, Serialize, Deserialize, PartialEq)]
pub struct Delivery {
    /// Always `alert.fired`.
    pub event: String,
    /// Stable per firing: `rule_id/fired_at/source`.
    pub delivery: String,
    pub rule_id: String,
    pub pair: String,
    pub condition: String,
    pub value: String,
    pub previous: Option<String>,
    pub fired_at: String,
    pub source: String,
}

impl Delivery {
    fn of(fired: &AlertFired) -> Delivery {
        let fired_at = fired.ts.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true);
        Delivery {
            event: "alert.fired".into(),
            delivery: format!("{}/{fired_at}/{}", fired.rule_id, fired.source),
            rule_id: fired.rule_id.to_string(),
            pair: fired.pair.to_string(),
            condition: fired.condition.to_string(),
            value: fired.value.to_string(),
            previous: fired.previous.map(|p| p.to_string()),
            fired_at,
            source: fired.source.to_string(),
        }
    }
}

/// A Slack-compatible incoming-webhook message: `text` (what notifications
/// and clients without blocks show) and `blocks` (the headline, then the facts).
pub fn slack_message(notice: &Notice) -> serde_json::Value {
    // Slack's mrkdwn treats these three as markup.
    let escape = |text: &str| text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;");
    let fields: Vec<serde_json::Value> = notice
        .facts
        .iter()
        .map(|(name, value)| serde_json::json!({"type": "mrkdwn", "text": format!("*{name}*\n{}", escape(value))}))
        .collect();
    serde_json::json!({
        "text": notice.headline,
        "blocks": [
            {"type": "section", "text": {"type": "mrkdwn", "text": format!("*{}*", escape(&notice.headline))}},
            {"type": "section", "fields": fields},
        ],
    })
}

/// A Microsoft Teams message card: the headline, then the facts.
pub fn teams_card(notice: &Notice) -> serde_json::Value {
    let facts: Vec<serde_json::Value> = notice
        .facts
        .iter()
        .map(|(name, value)| serde_json::json!({"name": name, "value": value}))
        .collect();
    serde_json::json!({
        "@type": "MessageCard",
        "@context": "https://schema.org/extensions",
        "summary": notice.headline,
        "themeColor": "0078D7",
        "title": "fxflow alert",
        "text": notice.headline,
        "sections": [{"facts": facts}],
    })
}

/// `sha256=<hex>` of the body under `secret`.
pub fn signature(secret: &str, body: &[u8]) -> String {
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(secret.as_bytes()).expect("HMAC takes keys of any length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

enum Outcome {
    Delivered,
    /// Worth another try, after at least this long (from `Retry-After`).
    Retry(String, Option<Duration>),
    Final(String),
}

impl WebhookSink {
    /// The webhook of each firing's rule (`None`: nothing to deliver).
    async fn targets(&mut self, batch: &[Envelope<FxEvent>]) -> Result<Vec<Option<WebhookTarget>>, SinkError> {
        let mut out = Vec::with_capacity(batch.len());
        for envelope in batch {
            out.push(match &envelope.event {
                FxEvent::AlertFired(fired) => self.rules.get(&fired.rule_id).await?.and_then(|r| r.webhook),
                _ => None,
            });
        }
        Ok(out)
    }

    async fn attempt(
        client: &reqwest::Client,
        url: &Url,
        target: &WebhookTarget,
        delivery: &Delivery,
        body: &[u8],
    ) -> Outcome {
        let shown = shown(url);
        let mut request = client
            .post(url.clone())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header("X-Fxflow-Event", "alert.fired")
            .header("X-Fxflow-Delivery", &delivery.delivery)
            .body(body.to_vec());
        if let Some(secret) = &target.secret {
            request = request.header("X-Fxflow-Signature", signature(secret, body));
        }
        match request.send().await {
            Ok(response) if response.status().is_success() => Outcome::Delivered,
            Ok(response) => {
                let status = response.status();
                let retry_after = response
                    .headers()
                    .get(reqwest::header::RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| fxflow_engine::retry::retry_after(v, std::time::SystemTime::now()));
                let message = format!("{shown} answered {status}");
                if status.is_server_error()
                    || status == StatusCode::REQUEST_TIMEOUT
                    || status == StatusCode::TOO_MANY_REQUESTS
                {
                    Outcome::Retry(message, retry_after)
                } else {
                    Outcome::Final(message)
                }
            }
            Err(e) if e.is_builder() => Outcome::Final(format!("{shown}: {}", e.without_url())),
            Err(e) => Outcome::Retry(format!("{shown}: {}", error_chain(&e.without_url())), None),
        }
    }

    /// One delivery attempt (the stage's `retry` policy tries again).
    async fn deliver(
        config: &WebhookConfig,
        client: &reqwest::Client,
        target: &WebhookTarget,
        fired: &AlertFired,
    ) -> Outcome {
        let url = match check_url(&target.url, config.allow_private_targets) {
            Ok(url) => url,
            Err(e) => return Outcome::Final(e),
        };
        let delivery = Delivery::of(fired);
        let body = match target.format {
            WebhookFormat::Json => serde_json::to_vec(&delivery),
            WebhookFormat::Slack => serde_json::to_vec(&slack_message(&Notice::of(fired))),
            WebhookFormat::Teams => serde_json::to_vec(&teams_card(&Notice::of(fired))),
        };
        match body {
            Ok(body) => Self::attempt(client, &url, target, &delivery, &body).await,
            Err(e) => Outcome::Final(e.to_string()),
        }
    }
}

/// A webhook URL as logs, dead letters and the API show it: scheme, host and
/// port only (paths and queries of webhook URLs often carry tokens).
pub fn shown(url: &Url) -> String {
    match url.port() {
        Some(port) => format!("{}://{}:{port}/…", url.scheme(), url.host_str().unwrap_or("?")),
        None => format!("{}://{}/…", url.scheme(), url.host_str().unwrap_or("?")),
    }
}

/// [`shown`] of a URL given as text (`…` when it does not parse).
pub fn shown_text(url: &str) -> String {
    Url::parse(url).map(|u| shown(&u)).unwrap_or_else(|_| "…".to_owned())
}

fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[async_trait]
impl Sink<FxEvent> for WebhookSink {
    async fn write(&mut self, batch: &[Envelope<FxEvent>]) -> Result<(), SinkError> {
        let targets = self.targets(batch).await?;
        let mut jobs = Vec::new();
        for (index, (envelope, target)) in batch.iter().zip(targets).enumerate() {
            if let (FxEvent::AlertFired(fired), Some(target)) = (&envelope.event, target) {
                jobs.push((index, target, fired.clone()));
            }
        }
        let config = Arc::new(self.config.clone());
        let concurrency = config.concurrency;
        let client = self.client.clone();
        let deliveries = jobs.into_iter().map(move |(index, target, fired)| {
            let (config, client) = (config.clone(), client.clone());
            async move { (index, Self::deliver(&config, &client, &target, &fired).await) }
        });
        let results: Vec<(usize, Outcome)> = futures_util::stream::iter(deliveries)
            .buffer_unordered(concurrency)
            .collect()
            .await;
        let mut retry_after: Option<Duration> = None;
        let failed: Vec<ItemError> = results
            .into_iter()
            .filter_map(|(index, outcome)| match outcome {
                Outcome::Delivered => None,
                Outcome::Retry(message, asked) => {
                    retry_after = retry_after.max(asked);
                    Some(ItemError {
                        index,
                        message,
                        retryable: true,
                    })
                }
                Outcome::Final(message) => Some(ItemError {
                    index,
                    message,
                    retryable: false,
                }),
            })
            .collect();
        if failed.is_empty() {
            Ok(())
        } else {
            for item in failed.iter().filter(|i| i.retryable) {
                if let FxEvent::AlertFired(fired) = &batch[item.index].event {
                    tracing::warn!(rule = %fired.rule_id, error = %item.message, "Webhook delivery failed; the retry policy tries again.");
                }
            }
            Err(SinkError::items(
                format!("{} of {} webhook deliveries failed", failed.len(), batch.len()),
                failed,
            )
            .with_retry_after(retry_after))
        }
    }
}

/// Is this an address a webhook must not reach without `allow_private_targets`?
pub fn is_internal(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local() // 169.254/16: cloud metadata lives here
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || v4.is_documentation()
                || a == 0
                || (a == 100 && (64..128).contains(&b)) // carrier-grade NAT 100.64/10
                || (a == 198 && (b == 18 || b == 19)) // benchmarking 198.18/15
                || (a == 192 && b == 0 && v4.octets()[2] == 0) // IETF protocol assignments 192.0.0/24
                || (a == 192 && b == 88 && v4.octets()[2] == 99) // 6to4 relay anycast 192.88.99/24
                || a >= 240
        }
        IpAddr::V6(v6) => {
            let s = v6.segments();
            let embedded =
                |hi: u16, lo: u16| std::net::Ipv4Addr::new((hi >> 8) as u8, hi as u8, (lo >> 8) as u8, lo as u8);
            // IPv4 carried inside IPv6 — mapped ::ffff:a.b.c.d, compatible ::a.b.c.d,
            // NAT64 64:ff9b::/96 and 64:ff9b:1::/48, 6to4 2002::/16 — is judged by the IPv4 inside.
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_internal(IpAddr::V4(v4));
            }
            if s[..6] == [0; 6] && !v6.is_loopback() && !v6.is_unspecified() {
                return is_internal(IpAddr::V4(embedded(s[6], s[7])));
            }
            if s[0] == 0x64 && s[1] == 0xff9b {
                return s[2] == 1 || is_internal(IpAddr::V4(embedded(s[6], s[7])));
            }
            if s[0] == 0x2002 {
                return is_internal(IpAddr::V4(embedded(s[1], s[2])));
            }
            let first = s[0];
            v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (first & 0xfe00) == 0xfc00 // unique local fc00::/7
                || (first & 0xffc0) == 0xfe80 // link-local fe80::/10
                || (first & 0xffc0) == 0xfec0 // site-local fec0::/10 (deprecated, still inward)
                || (first == 0x2001 && s[1] == 0x0db8) // documentation 2001:db8::/32
                || (first == 0x0100 && s[1..4] == [0, 0, 0]) // discard 100::/64
        }
    }
}

/// A webhook URL as deliveries use it: `http`/`https`, a host, no
/// credentials, and (unless `allow_private`) no internal literal address.
pub fn check_url(text: &str, allow_private: bool) -> Result<Url, String> {
    let url = Url::parse(text).map_err(|e| format!("not a URL: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!("only http and https URLs are allowed, not {}", url.scheme()));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("credentials in the URL are not allowed; use the secret to sign deliveries".into());
    }
    let host = url.host().ok_or("the URL has no host")?;
    if !allow_private {
        let internal = match host {
            url::Host::Ipv4(ip) => is_internal(IpAddr::V4(ip)),
            url::Host::Ipv6(ip) => is_internal(IpAddr::V6(ip)),
            url::Host::Domain(name) => {
                let name = name.trim_end_matches('.').to_ascii_lowercase();
                name == "localhost" || name.ends_with(".localhost")
            }
        };
        if internal {
            return Err(format!(
                "{host} is a loopback or private address; webhooks go to public addresses only (SSRF protection)"
            ));
        }
    }
    Ok(url)
}

/// Resolves names like the system does, then keeps only public addresses.
struct PublicOnly;

impl reqwest::dns::Resolve for PublicOnly {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let found: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let public: Vec<SocketAddr> = found.iter().copied().filter(|a| !is_internal(a.ip())).collect();
            if public.is_empty() {
                return Err(format!("{host} resolves only to internal addresses; refused (SSRF protection)").into());
            }
            Ok(Box::new(public.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chat_formats_carry_the_headline_and_the_facts() {
        let notice = Notice {
            headline: "EUR/USD below 1.10: 1.0998 (was 1.1002)".into(),
            facts: vec![
                ("Pair", "EUR/USD".into()),
                ("Value", "1.0998".into()),
                ("Rule", "a<b&c".into()),
            ],
        };
        let slack = slack_message(&notice);
        assert_eq!(slack["text"], "EUR/USD below 1.10: 1.0998 (was 1.1002)");
        assert_eq!(
            slack["blocks"][0]["text"]["text"],
            "*EUR/USD below 1.10: 1.0998 (was 1.1002)*"
        );
        assert_eq!(
            slack["blocks"][1]["fields"][2]["text"], "*Rule*\na&lt;b&amp;c",
            "mrkdwn is escaped"
        );
        let teams = teams_card(&notice);
        assert_eq!(teams["@type"], "MessageCard");
        assert_eq!(teams["summary"], notice.headline);
        assert_eq!(
            teams["sections"][0]["facts"][1],
            serde_json::json!({"name": "Value", "value": "1.0998"})
        );
    }

    #[test]
    fn internal_addresses_are_refused_unless_allowed() {
        for url in [
            "http://127.0.0.1:8080/hook",
            "http://10.1.2.3/",
            "http://169.254.169.254/latest/meta-data",
            "http://[::1]/",
            "http://[fd00::1]/",
            "http://[::ffff:192.168.1.1]/",
            "http://localhost/",
            "http://api.localhost/",
            "http://0.0.0.0/",
            "http://100.64.0.1/",
            "http://[::127.0.0.1]/",
            "http://[64:ff9b::a00:1]/",
            "http://[2002:c0a8:101::1]/",
            "http://[fec0::1]/",
            "http://192.0.0.8/",
        ] {
            assert!(check_url(url, false).is_err(), "{url} must be refused");
            assert!(check_url(url, true).is_ok(), "{url} is fine when allowed");
        }
        assert!(check_url("https://hooks.example.com/fx", false).is_ok());
        assert!(check_url("http://8.8.8.8/", false).is_ok());
        assert!(
            check_url("http://[2606:4700::1111]/", false).is_ok(),
            "a public IPv6 address"
        );
        assert!(
            check_url("http://[64:ff9b::808:808]/", false).is_ok(),
            "NAT64 of a public IPv4"
        );
        assert!(check_url("ftp://example.com/", true).is_err());
        assert!(check_url("https://user:pw@example.com/", true).is_err());
        assert!(check_url("not a url", true).is_err());
    }

    #[test]
    fn signatures_are_hex_hmac_sha256() {
        // RFC 4231 test case 2.
        assert_eq!(
            signature("Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
