//! A fast hash for the core's own numbers (node states, VM shapes): keys that come from the
//! model, never from untrusted input, looked up on the hot path of every decision. SipHash,
//! the standard library's default, defends against crafted keys at several times the cost;
//! a multiply-and-rotate mix (as rustc's FxHash) with a final avalanche serves instead.

use std::hash::{BuildHasher, Hasher};

/// Builds [`WordHasher`]s, for `HashMap<K, V, WordHash>` and `HashSet<K, WordHash>`.
#[derive(Debug, Default, Clone, Copy)]
pub struct WordHash;

impl BuildHasher for WordHash {
    type Hasher = WordHasher;
    fn build_hasher(&self) -> WordHasher {
        WordHasher(0)
    }
}

/// Mixes a key word by word.
pub struct WordHasher(u64);

impl Hasher for WordHasher {
    /// Mixed down (splitmix64's finalizer): the numbers are often multiples of large powers
    /// of two (memory in bytes), which would leave the low bits that pick a bucket alike.
    fn finish(&self) -> u64 {
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut b = [0u8; 8];
            b[..chunk.len()].copy_from_slice(chunk);
            self.write_u64(u64::from_le_bytes(b));
        }
    }

    fn write_u64(&mut self, x: u64) {
        self.0 = (self.0.rotate_left(5) ^ x).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }

    fn write_usize(&mut self, x: usize) {
        self.write_u64(x as u64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hash(words: &[u64]) -> u64 {
        let mut h = WordHash.build_hasher();
        for &w in words {
            h.write_u64(w);
        }
        h.finish()
    }

    #[test]
    fn multiples_of_a_large_power_of_two_spread_over_the_low_bits() {
        let gib = 1u64 << 30;
        let buckets: std::collections::HashSet<u64> = (1..=64).map(|k| hash(&[k * gib]) & 63).collect();
        assert!(buckets.len() > 32, "only {} of 64 buckets used", buckets.len());
    }

    #[test]
    fn the_order_of_the_words_matters() {
        assert_ne!(hash(&[1, 2]), hash(&[2, 1]));
    }
}
