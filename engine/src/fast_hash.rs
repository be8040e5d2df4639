//! A small, fast hasher for hot maps whose keys come from a bounded set (an
//! application's pairs and sources, a window stage's keys).
//!
//! SipHash (std's default) showed up as 15% of a pipeline profile: a stage
//! that looks a key up for every event pays it every time. Such keys are a few
//! bytes from a bounded set, so flooding resistance buys nothing; this is the
//! Fx hash (rustc's): rotate, xor, multiply.

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
