//! Interned source names (`"ecb"`, `"oanda"`): `Copy`, compared by pointer.
//!
//! Every quote, cross and alert carries the name of the provider it came
//! from. As an `Arc<str>` that costs an atomic increment and decrement per
//! event (28 of each per snapshot's crosses); interned, it is a plain copy.
//! Names are few (one per provider), so they are interned for the process's
//! life; a cap keeps a flood of distinct names in decoded input from growing
//! memory without bound.

use std::collections::HashSet;
use std::fmt;
use std::sync::{Mutex, OnceLock};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Most distinct source names one process will intern.
pub const MAX_SOURCE_NAMES: usize = 10_000;

#[derive(Clone, Copy, Eq)]
pub struct SourceName(&'static str);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("more than {MAX_SOURCE_NAMES} distinct source names; refusing `{0}`")]
pub struct TooManySources(pub String);

impl SourceName {
    /// The interned name `name` (interning it on first use).
    pub fn intern(name: &str) -> Result<SourceName, TooManySources> {
        // A decoding worker interns the same one or two names for every event: the
        // thread's last name answers without the process-wide lock.
        thread_local! {
            static LAST: std::cell::Cell<Option<SourceName>> = const { std::cell::Cell::new(None) };
        }
        if let Some(last) = LAST.get().filter(|last| last.0 == name) {
            return Ok(last);
        }
        let interned = Self::intern_shared(name)?;
        LAST.set(Some(interned));
        Ok(interned)
    }

    fn intern_shared(name: &str) -> Result<SourceName, TooManySources> {
        static NAMES: OnceLock<Mutex<HashSet<&'static str>>> = OnceLock::new();
        let mut names = NAMES
            .get_or_init(Default::default)
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(existing) = names.get(name) {
            return Ok(SourceName(existing));
        }
        if names.len() >= MAX_SOURCE_NAMES {
            return Err(TooManySources(name.to_owned()));
        }
        let leaked: &'static str = Box::leak(name.to_owned().into_boxed_str());
        names.insert(leaked);
        Ok(SourceName(leaked))
    }

    pub fn as_str(&self) -> &'static str {
        self.0
    }
}

impl PartialEq for SourceName {
    fn eq(&self, other: &Self) -> bool {
        // Interned: equal names share one allocation.
        std::ptr::eq(self.0, other.0) || self.0 == other.0
    }
}

/// By name (not by address), so orders are the same in every process.
impl PartialOrd for SourceName {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for SourceName {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.cmp(other.0)
    }
}

impl std::hash::Hash for SourceName {
    /// Interned, so the address identifies the name within this process.
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        state.write_usize(self.0.as_ptr() as usize)
    }
}

impl fmt::Display for SourceName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

impl fmt::Debug for SourceName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.0, f)
    }
}

impl Serialize for SourceName {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.0)
    }
}

impl<'de> Deserialize<'de> for SourceName {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = std::borrow::Cow::<str>::deserialize(deserializer)?;
        SourceName::intern(&name).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interning_shares_one_copy() {
        let a = SourceName::intern("ecb").unwrap();
        let b = SourceName::intern(&String::from("ecb")).unwrap();
        assert!(std::ptr::eq(a.as_str(), b.as_str()));
        assert_eq!(a, b);
        assert_ne!(a, SourceName::intern("oanda").unwrap());
        let json = serde_json::to_string(&a).unwrap();
        assert_eq!(json, "\"ecb\"");
        assert_eq!(serde_json::from_str::<SourceName>(&json).unwrap(), a);
    }
}
