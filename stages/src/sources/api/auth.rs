//! API keys: mutating endpoints need `Authorization: Bearer <key>`.
//!
//! Keys come from the stage config, typically `keys: "${FXFLOW_API_KEYS}"`
//! (comma-separated). Only their SHA-256 digests are kept, and a presented
//! key is compared with every digest in constant time, so neither timing nor
//! length tells an attacker how close a guess was.

use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use serde::{Deserialize, Deserializer};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::context::ApiState;
use super::error::ApiError;

/// The configured keys: a comma-separated string or a list.
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

/// The digests of the keys, for checking requests.
pub struct KeyRing {
    digests: Vec<[u8; 32]>,
}

fn digest(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

impl KeyRing {
    pub fn new(keys: &[String]) -> Self {
        KeyRing {
            digests: keys.iter().map(|k| digest(k)).collect(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.digests.is_empty()
    }

    /// The index of the matching key. Every digest is compared, matched or not.
    pub fn find(&self, presented: &str) -> Option<usize> {
        let presented = digest(presented);
        let mut found = None;
        for (i, known) in self.digests.iter().enumerate() {
            if bool::from(known.ct_eq(&presented)) {
                found = Some(i);
            }
        }
        found
    }
}

/// A random key (hex, 128 bits) for a pipeline that was given none.
pub fn random_key() -> String {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).expect("the operating system provides random bytes");
    format!("fxk_{}", hex::encode(bytes))
}

/// An authenticated request: which key it carried.
#[derive(Debug, Clone, Copy)]
pub struct Authorized {
    pub key: usize,
}

impl FromRequestParts<ApiState> for Authorized {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &ApiState) -> Result<Self, Self::Rejection> {
        let Some(header) = parts.headers.get(AUTHORIZATION) else {
            return Err(ApiError::unauthorized(
                "this endpoint needs an API key: send `Authorization: Bearer <key>`",
            ));
        };
        let token = header
            .to_str()
            .ok()
            .and_then(|h| h.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, token)| token.trim())
            .filter(|token| !token.is_empty());
        let Some(token) = token else {
            return Err(ApiError::unauthorized(
                "malformed Authorization header: expected `Bearer <key>`",
            ));
        };
        if state.keys.is_empty() {
            return Err(ApiError::forbidden(
                "this API has no keys configured, so it accepts no changes (set the stage's `keys`, e.g. FXFLOW_API_KEYS)",
            ));
        }
        let Some(key) = state.keys.find(token) else {
            return Err(ApiError::forbidden("unknown API key"));
        };
        if let Some(limiter) = &state.per_key {
            if let Err(wait) = limiter.check(&key) {
                state.metrics.rate_limited("key");
                return Err(ApiError::rate_limited(
                    wait,
                    format!("too many changes with this API key; retry in {wait} s"),
                ));
            }
        }
        Ok(Authorized { key })
    }
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
    fn a_key_ring_finds_only_exact_keys() {
        let ring = KeyRing::new(&["first-key-0123456789".into(), "second-key-0123456789".into()]);
        assert_eq!(ring.find("second-key-0123456789"), Some(1));
        assert_eq!(ring.find("second-key-012345678"), None);
        assert_eq!(ring.find(""), None);
        let key = random_key();
        assert!(key.len() > MIN_KEY_LENGTH && key.starts_with("fxk_"));
        assert_ne!(key, random_key());
    }
}
