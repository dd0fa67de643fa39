//! A word-at-a-time hash for the engine's lookup tables: each 8-byte word is mixed in with a
//! folded 64×64→128-bit multiply (the construction of foldhash and aHash's fallback).
//!
//! The tables are built from the flag set, which administrators control; requests only look keys
//! up, so nobody outside can grow a table to provoke collisions, and a hash that is not
//! DoS-resistant is safe here. On short keys it is several times faster than SipHash.

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};

const MULTIPLIER: u64 = 0x5851_f42d_4c95_7f2d;
const SEED: u64 = 0x243f_6a88_85a3_08d3;

#[derive(Debug, Clone, Copy)]
pub struct WordHasher(u64);

impl Default for WordHasher {
    fn default() -> Self {
        Self(SEED)
    }
}

impl WordHasher {
    fn add(&mut self, word: u64) {
        let product = u128::from(self.0 ^ word) * u128::from(MULTIPLIER);
        self.0 = (product as u64) ^ ((product >> 64) as u64);
    }
}

impl Hasher for WordHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            self.add(u64::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3], chunk[4], chunk[5], chunk[6], chunk[7]]));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut word = [0_u8; 8];
            word[..rest.len()].copy_from_slice(rest);
            // The length byte keeps "a" and "a\0" apart.
            word[7] ^= rest.len() as u8;
            self.add(u64::from_le_bytes(word));
        }
    }

    fn write_u8(&mut self, byte: u8) {
        self.add(u64::from(byte));
    }
}

pub type FastMap<K, V> = HashMap<K, V, BuildHasherDefault<WordHasher>>;
pub type FastSet<T> = HashSet<T, BuildHasherDefault<WordHasher>>;

#[cfg(test)]
mod tests {
    use super::*;
    use std::hash::BuildHasher;

    #[test]
    fn distinct_keys_spread_and_equal_keys_agree() {
        let build = BuildHasherDefault::<WordHasher>::default();
        let mut seen = HashSet::new();
        for index in 0..10_000 {
            let key = format!("flag-{index}");
            assert_eq!(build.hash_one(&key), build.hash_one(key.clone()));
            // hashbrown uses the top 7 bits as tags and the low bits as the bucket index.
            seen.insert(build.hash_one(&key));
        }
        assert_eq!(seen.len(), 10_000, "no collisions among 10,000 flag keys");
        let mut low_bits = HashSet::new();
        for index in 0..4_096 {
            low_bits.insert(build.hash_one(format!("flag-{index}")) & 0xfff);
        }
        assert!(low_bits.len() > 2_400, "bucket indexes spread: {} of 4,096 distinct", low_bits.len());
        assert_ne!(build.hash_one("a"), build.hash_one("a\0"));
        assert_ne!(build.hash_one(""), build.hash_one("\0"));
    }
}
