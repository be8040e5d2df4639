//! The hasher for hot maps whose keys come from a bounded set (an application's
//! pairs and sources, a window stage's keys): rustc-hash's Fx hash.
//!
//! SipHash (std's default) showed up as 15% of a pipeline profile: a stage
//! that looks a key up for every event pays it every time. Such keys are a few
//! bytes from a bounded set, so flooding resistance buys nothing.

pub use rustc_hash::FxHasher;

/// A `HashMap` with [`FxHasher`].
pub type FastMap<K, V> = rustc_hash::FxHashMap<K, V>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distinguishes_keys() {
        let mut map: FastMap<(String, u32), u32> = FastMap::default();
        let keys = [("north/7", 1), ("7/north", 1), ("north/7", 2), ("", 0)];
        for (i, (k, n)) in keys.iter().enumerate() {
            map.insert((k.to_string(), *n), i as u32);
        }
        for (i, (k, n)) in keys.iter().enumerate() {
            assert_eq!(map[&(k.to_string(), *n)], i as u32);
        }
    }
}
