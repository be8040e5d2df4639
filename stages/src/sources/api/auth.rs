//! API keys and tenants: the alert endpoints need `Authorization: Bearer <key>`,
//! and every key belongs to a tenant, whose rules and firings are its own.
//!
//! A key entry is `tenant:key`, `tenant:sha256:<hex of the key's SHA-256>`
//! (so a key file need not hold the key itself), or a bare `key` (tenant
//! `default`: what a deployment from before tenants had). Entries come from the
//! stage's `keys` (typically `"${FXFLOW_API_KEYS}"`, comma-separated) and from
//! its `keys_file` (one entry per line), which is read again when it changes:
//! add a tenant's new key, deploy it to the clients, then remove the old one —
//! no restart, and the tenant's rules stay, since they belong to the tenant,
//! not to a key.
//!
//! Only digests are kept, and a presented key is compared with every digest
//! in constant time, so neither timing nor length tells how close a guess was.
//! Failed attempts also spend a small budget of the client's own
//! ([`super::limits::LimitsConfig::failed_auth`]): a key guesser gets a few
//! tries a minute, not the general request rate.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use serde::{Deserialize, Deserializer};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::error::ApiError;

/// The configured key entries: a comma-separated string or a list.
#[derive(Clone, Default, PartialEq, Eq, schemars::JsonSchema)]
#[schemars(with = "String")]
pub struct ApiKeys(pub Vec<String>);

impl std::fmt::Debug for ApiKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ApiKeys({} keys)", self.0.len())
    }
}

impl<'de> Deserialize<'de> for ApiKeys {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Keys {
            Text(String),
            List(Vec<String>),
        }
        let keys = match Keys::deserialize(deserializer)? {
            Keys::Text(text) => text.split(',').map(str::to_owned).collect(),
            Keys::List(list) => list,
        };
        Ok(ApiKeys(
            keys.into_iter()
                .map(|k| k.trim().to_owned())
                .filter(|k| !k.is_empty())
                .collect(),
        ))
    }
}

/// Shortest key accepted: guessing must stay hopeless under the rate limit.
pub const MIN_KEY_LENGTH: usize = 16;

/// The tenant of a bare key (an entry without `tenant:`).
pub const DEFAULT_TENANT: &str = "default";

/// Longest tenant name.
const MAX_TENANT: usize = 64;

/// One key: the tenant it belongs to and the SHA-256 of the key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyEntry {
    pub tenant: Arc<str>,
    pub digest: [u8; 32],
}

fn digest(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

/// Whether `name` can name a tenant: letters, digits, `.`, `_`, `-`, starting
/// with a letter or digit (it appears in logs and metrics as it is).
pub fn is_tenant_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_TENANT
        && name.as_bytes()[0].is_ascii_alphanumeric()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-')
}

/// Parse one entry (`key`, `tenant:key` or `tenant:sha256:<hex>`); the error
/// never repeats the key.
pub fn parse_entry(text: &str) -> Result<KeyEntry, String> {
    let text = text.trim();
    let (tenant, secret) = match text.split_once(':') {
        Some((tenant, secret)) => (tenant, secret),
        None => (DEFAULT_TENANT, text),
    };
    if !is_tenant_name(tenant) {
        return Err(format!(
            "`{}` is not a tenant name (letters, digits, `.`, `_`, `-`; at most {MAX_TENANT})",
            tenant.chars().take(MAX_TENANT).collect::<String>()
        ));
    }
    if let Some(hex_digest) = secret.strip_prefix("sha256:") {
        let mut digest = [0u8; 32];
        return match hex::decode_to_slice(hex_digest, &mut digest) {
            Ok(()) => Ok(KeyEntry {
                tenant: tenant.into(),
                digest,
            }),
            Err(_) => Err(format!(
                "tenant `{tenant}`: `sha256:` must be followed by the 64 hex digits of the key's SHA-256"
            )),
        };
    }
    if secret.len() < MIN_KEY_LENGTH {
        let whose = if text.contains(':') {
            format!(" of tenant `{tenant}`")
        } else {
            String::new()
        };
        return Err(format!(
            "an API key{whose} has {} characters; at least {MIN_KEY_LENGTH} are needed",
            secret.len()
        ));
    }
    Ok(KeyEntry {
        tenant: tenant.into(),
        digest: digest(secret),
    })
}

/// The entries of a key file: one per line, `#` starts a comment. Every bad
/// line is reported as `path:line: problem`.
pub fn parse_key_file(path: &Path, text: &str) -> Result<Vec<KeyEntry>, Vec<String>> {
    let mut entries = Vec::new();
    let mut problems = Vec::new();
    for (number, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or_default().trim();
        if line.is_empty() {
            continue;
        }
        match parse_entry(line) {
            Ok(entry) => entries.push(entry),
            Err(e) => problems.push(format!("{}:{}: {e}", path.display(), number + 1)),
        }
    }
    if problems.is_empty() {
        Ok(entries)
    } else {
        Err(problems)
    }
}

/// The digests of the keys, for checking requests.
#[derive(Default)]
pub struct KeyRing {
    entries: Vec<KeyEntry>,
}

impl KeyRing {
    pub fn new(entries: Vec<KeyEntry>) -> Self {
        KeyRing { entries }
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// The matching entry. Every digest is compared, matched or not.
    pub fn find(&self, presented: &str) -> Option<&KeyEntry> {
        let presented = digest(presented);
        let mut found = None;
        for known in &self.entries {
            if bool::from(known.digest.ct_eq(&presented)) {
                found = Some(known);
            }
        }
        found
    }
}

/// The keys in force: the stage's own entries plus its key file's, swapped
/// whole when the file changes, so a request sees the old set or the new one.
pub struct Keys {
    fixed: Vec<KeyEntry>,
    file: Option<PathBuf>,
    ring: RwLock<Arc<KeyRing>>,
}

/// How often the key file is looked at for changes.
pub const KEY_FILE_POLL: Duration = Duration::from_secs(2);

impl Keys {
    /// `fixed` entries and the file's (read now: a start with a bad file fails).
    pub fn load(fixed: Vec<KeyEntry>, file: Option<PathBuf>) -> Result<Self, String> {
        let mut all = fixed.clone();
        if let Some(path) = &file {
            all.extend(read_key_file(path)?);
        }
        Ok(Keys {
            fixed,
            file,
            ring: RwLock::new(Arc::new(KeyRing::new(all))),
        })
    }

    pub fn current(&self) -> Arc<KeyRing> {
        self.ring.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Read the key file again; on any problem keep the keys in force.
    pub fn reload(&self) -> Result<usize, String> {
        let Some(path) = &self.file else {
            return Ok(self.current().len());
        };
        let mut all = self.fixed.clone();
        all.extend(read_key_file(path)?);
        let count = all.len();
        *self.ring.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(KeyRing::new(all));
        Ok(count)
    }

    /// Watch the key file and reload it when its modification time or size changes.
    pub async fn watch(self: Arc<Self>, stage: String) {
        let Some(path) = self.file.clone() else { return };
        let stamp = |path: &Path| {
            std::fs::metadata(path)
                .ok()
                .map(|m| (m.modified().unwrap_or(SystemTime::UNIX_EPOCH), m.len()))
        };
        let mut seen = stamp(&path);
        let mut tick = tokio::time::interval(KEY_FILE_POLL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let now = stamp(&path);
            if now == seen {
                continue;
            }
            seen = now;
            match self.reload() {
                Ok(count) => tracing::info!(%stage, file = %path.display(), keys = count, "API keys reloaded."),
                Err(e) => tracing::error!(%stage, "The key file was not reloaded; the keys in force stay: {e}"),
            }
        }
    }
}

fn read_key_file(path: &Path) -> Result<Vec<KeyEntry>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read key file {}: {e}", path.display()))?;
    parse_key_file(path, &text).map_err(|problems| problems.join("; "))
}

/// A random key (hex, 128 bits) for a pipeline that was given none.
pub fn random_key() -> String {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).expect("the operating system provides random bytes");
    format!("fxk_{}", hex::encode(bytes))
}

/// The client's address as the API judges it (behind trusted proxies: the
/// address they forwarded), put on each request by the outermost layer.
#[derive(Clone, Copy, Debug)]
pub struct ClientAddress(pub IpAddr);

/// An authenticated request: the tenant of the key it carried.
#[derive(Debug, Clone)]
pub struct Authorized {
    pub tenant: Arc<str>,
    /// The key's digest: the per-key rate limit counts by it.
    pub key: [u8; 32],
}

/// The part of the API's state authentication needs, taken from it by `FromRef`: this
/// module depends on nothing of the context's.
#[derive(Clone)]
pub struct Auth(pub Arc<AuthState>);

impl<S> FromRequestParts<S> for Authorized
where
    S: Send + Sync,
    Auth: axum::extract::FromRef<S>,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let Auth(state) = <Auth as axum::extract::FromRef<S>>::from_ref(state);
        let client = parts.extensions.get::<ClientAddress>().map(|c| c.0);
        let Some(header) = parts.headers.get(AUTHORIZATION) else {
            return Err(ApiError::unauthorized(
                "this endpoint needs an API key: send `Authorization: Bearer <key>`",
            ));
        };
        // A client out of failed-attempt budget is refused before its key is even looked at.
        if let (Some(limiter), Some(ip)) = (&state.failed, client) {
            if let Some(wait) = limiter.blocked(&super::limits::client_key(ip)) {
                state.metrics.rate_limited("failed_auth");
                return Err(ApiError::rate_limited(
                    wait,
                    format!("too many failed authentications from {ip}; retry in {wait} s"),
                ));
            }
        }
        let failed = |error: ApiError| {
            state.metrics.auth_failed();
            if let (Some(limiter), Some(ip)) = (&state.failed, client) {
                let _ = limiter.check(&super::limits::client_key(ip));
            }
            error
        };
        let token = header
            .to_str()
            .ok()
            .and_then(|h| h.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, token)| token.trim())
            .filter(|token| !token.is_empty());
        let Some(token) = token else {
            return Err(failed(ApiError::unauthorized(
                "malformed Authorization header: expected `Bearer <key>`",
            )));
        };
        let ring = state.keys.current();
        if ring.is_empty() {
            return Err(ApiError::forbidden(
                "this API has no keys configured, so it serves no alert endpoint (set the stage's `keys`, e.g. FXFLOW_API_KEYS, or `keys_file`)",
            ));
        }
        let Some(entry) = ring.find(token) else {
            return Err(failed(ApiError::forbidden("unknown API key")));
        };
        if let Some(limiter) = &state.per_key {
            if parts.method != axum::http::Method::GET {
                if let Err(wait) = limiter.check(&entry.digest) {
                    state.metrics.rate_limited("key");
                    return Err(ApiError::rate_limited(
                        wait,
                        format!("too many changes with this API key; retry in {wait} s"),
                    ));
                }
            }
        }
        Ok(Authorized {
            tenant: entry.tenant.clone(),
            key: entry.digest,
        })
    }
}

/// The address a request came from: the peer, or — when the peer is a
/// trusted proxy — the nearest address in `X-Forwarded-For` (or `Forwarded`)
/// that is not itself a trusted proxy. Headers from anyone else are ignored,
/// so a client cannot pick its own address and escape its limits.
pub fn client_address(peer: IpAddr, headers: &axum::http::HeaderMap, trusted: &[ipnet::IpNet]) -> IpAddr {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|net| net.contains(ip));
    if !is_trusted(&peer) {
        return peer;
    }
    // Nearest hop last: walk from the right, skipping our own proxies.
    let mut hops: Vec<IpAddr> = Vec::new();
    for value in headers.get_all("forwarded") {
        let Ok(value) = value.to_str() else { continue };
        for element in value.split(',') {
            for pair in element.split(';') {
                if let Some((name, node)) = pair.trim().split_once('=') {
                    if name.trim().eq_ignore_ascii_case("for") {
                        if let Some(ip) = forwarded_node(node) {
                            hops.push(ip);
                        }
                    }
                }
            }
        }
    }
    if hops.is_empty() {
        for value in headers.get_all("x-forwarded-for") {
            let Ok(value) = value.to_str() else { continue };
            hops.extend(value.split(',').filter_map(|hop| forwarded_node(hop.trim())));
        }
    }
    hops.into_iter().rev().find(|ip| !is_trusted(ip)).unwrap_or(peer)
}

/// An address of `Forwarded: for=` (`192.0.2.1`, `"[2001:db8::1]:4711"`) or of `X-Forwarded-For`.
fn forwarded_node(node: &str) -> Option<IpAddr> {
    let node = node.trim().trim_matches('"');
    if let Ok(ip) = node.parse() {
        return Some(ip);
    }
    if let Some(rest) = node.strip_prefix('[') {
        return rest.split(']').next()?.parse().ok();
    }
    node.rsplit_once(':')?.0.parse().ok()
}

/// What authentication needs: the keys and the budgets.
pub struct AuthState {
    pub keys: Arc<Keys>,
    pub per_key: Option<super::limits::Limiter<[u8; 32]>>,
    /// Failed attempts per client address.
    pub failed: Option<super::limits::Limiter<IpAddr>>,
    pub metrics: super::metrics::ApiMetrics,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_come_from_a_comma_separated_string_or_a_list() {
        let keys: ApiKeys = serde_json::from_str("\" alpha , beta,,\"").unwrap();
        assert_eq!(keys.0, vec!["alpha", "beta"]);
        let keys: ApiKeys = serde_json::from_str("[\"gamma\"]").unwrap();
        assert_eq!(keys.0, vec!["gamma"]);
        assert_eq!(format!("{keys:?}"), "ApiKeys(1 keys)", "never printed");
    }

    #[test]
    fn an_entry_names_its_tenant_or_belongs_to_the_default_one() {
        let bare = parse_entry("first-key-0123456789").unwrap();
        assert_eq!(&*bare.tenant, DEFAULT_TENANT);
        let desk = parse_entry("desk-a:second-key-0123456789").unwrap();
        assert_eq!(&*desk.tenant, "desk-a");
        assert_eq!(desk.digest, digest("second-key-0123456789"));
        let hashed = parse_entry(&format!(
            "desk-b:sha256:{}",
            hex::encode(digest("third-key-0123456789"))
        ))
        .unwrap();
        assert_eq!(&*hashed.tenant, "desk-b");
        let ring = KeyRing::new(vec![bare, desk, hashed]);
        assert_eq!(&*ring.find("third-key-0123456789").unwrap().tenant, "desk-b");
        assert_eq!(&*ring.find("second-key-0123456789").unwrap().tenant, "desk-a");
        assert!(ring.find("second-key-012345678").is_none());
        assert!(ring.find("").is_none());
    }

    #[test]
    fn bad_entries_say_what_is_wrong_without_the_key() {
        let short = parse_entry("desk:tooshort").unwrap_err();
        assert!(short.contains("8 characters") && !short.contains("tooshort"), "{short}");
        let hex = parse_entry("desk:sha256:abc").unwrap_err();
        assert!(hex.contains("64 hex digits"), "{hex}");
        let tenant = parse_entry("bad tenant:0123456789abcdef0123").unwrap_err();
        assert!(tenant.contains("not a tenant name"), "{tenant}");
        let problems = parse_key_file(
            Path::new("keys.txt"),
            "# desks\ndesk-a:0123456789abcdef0123\n\ndesk-b:short # comment\n",
        )
        .unwrap_err();
        assert_eq!(problems.len(), 1);
        assert!(problems[0].starts_with("keys.txt:4: "), "{problems:?}");
    }

    #[test]
    fn a_key_file_change_is_taken_whole_or_not_at_all() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys");
        std::fs::write(&path, "desk-a:0123456789abcdef-old\n").unwrap();
        let keys = Keys::load(vec![parse_entry("admin-key-0123456789").unwrap()], Some(path.clone())).unwrap();
        assert!(keys.current().find("0123456789abcdef-old").is_some());
        std::fs::write(&path, "desk-a:0123456789abcdef-old\ndesk-a:0123456789abcdef-new\n").unwrap();
        assert_eq!(keys.reload().unwrap(), 3);
        assert!(keys.current().find("0123456789abcdef-new").is_some());
        std::fs::write(&path, "desk-a:0123456789abcdef-new\ndesk-a:short\n").unwrap();
        assert!(keys.reload().unwrap_err().contains(":2: "));
        assert!(
            keys.current().find("0123456789abcdef-old").is_some(),
            "a bad file keeps the keys in force"
        );
        assert!(keys.current().find("admin-key-0123456789").is_some());
    }

    #[test]
    fn forwarded_addresses_count_only_from_trusted_proxies() {
        let trusted: Vec<ipnet::IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        let headers = |pairs: &[(&str, &str)]| {
            let mut map = axum::http::HeaderMap::new();
            for (name, value) in pairs {
                map.append(
                    axum::http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                    value.parse().unwrap(),
                );
            }
            map
        };
        let ip = |t: &str| t.parse::<IpAddr>().unwrap();
        let spoof = headers(&[("x-forwarded-for", "203.0.113.9")]);
        assert_eq!(client_address(ip("198.51.100.7"), &spoof, &trusted), ip("198.51.100.7"));
        let chain = headers(&[("x-forwarded-for", "203.0.113.9, 198.51.100.7, 10.1.2.3")]);
        assert_eq!(client_address(ip("10.0.0.1"), &chain, &trusted), ip("198.51.100.7"));
        let forwarded = headers(&[("forwarded", "for=192.0.2.60;proto=http, for=\"[2001:db8::1]:4711\"")]);
        assert_eq!(client_address(ip("10.0.0.1"), &forwarded, &trusted), ip("2001:db8::1"));
        assert_eq!(client_address(ip("10.0.0.1"), &headers(&[]), &trusted), ip("10.0.0.1"));
    }

    #[test]
    fn random_keys_are_long_and_different() {
        let key = random_key();
        assert!(key.len() > MIN_KEY_LENGTH && key.starts_with("fxk_"));
        assert_ne!(key, random_key());
        assert!(is_tenant_name("desk-a.eu_1") && !is_tenant_name("-x") && !is_tenant_name(""));
    }
}
