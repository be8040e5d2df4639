//! A small, fast hasher for the hot maps keyed by pairs and source names.
//!
//! SipHash (std's default) showed up as 15% of a pipeline profile: the alert
//! stage looks up a pair for every cross, enrich a (pair, source) for every
//! quote. Keys here are a few bytes from a bounded set (currencies, interned
//! source names), so flooding resistance buys nothing; this is the Fx hash
//! (rustc's): rotate, xor, multiply.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

#[derive(Default, Clone, Copy)]
pub struct FxHasher(u64);

const SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;

impl FxHasher {
    #[inline]
    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(SEED);
    }
}

impl Hasher for FxHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            self.add(u64::from_le_bytes(chunk.try_into().expect("8 bytes")));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut word = [0u8; 8];
            word[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(word));
        }
    }

    #[inline]
    fn write_u8(&mut self, i: u8) {
        self.add(i as u64);
    }

    #[inline]
    fn write_u32(&mut self, i: u32) {
        self.add(i as u64);
    }

    #[inline]
    fn write_u64(&mut self, i: u64) {
        self.add(i);
    }

    #[inline]
    fn write_usize(&mut self, i: usize) {
        self.add(i as u64);
    }

    #[inline]
    fn finish(&self) -> u64 {
        self.0
    }
}

/// A `HashMap` with [`FxHasher`].
pub type FastMap<K, V> = HashMap<K, V, BuildHasherDefault<FxHasher>>;

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
