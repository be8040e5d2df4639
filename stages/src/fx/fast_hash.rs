//! The engine's fast hasher (see [`fxflow_engine::fast_hash`]), for the hot maps keyed by pairs
//! and source names.

pub use fxflow_engine::fast_hash::{FastMap, FxHasher};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fx::Pair;

    #[test]
    fn distinguishes_pairs() {
        let mut map: FastMap<Pair, u32> = FastMap::default();
        let pairs = ["EUR/USD", "USD/EUR", "GBP/JPY", "JPY/GBP", "EUR/GBP"];
        for (i, p) in pairs.iter().enumerate() {
            map.insert(p.parse().unwrap(), i as u32);
        }
        for (i, p) in pairs.iter().enumerate() {
            assert_eq!(map[&p.parse::<Pair>().unwrap()], i as u32);
        }
    }
}
