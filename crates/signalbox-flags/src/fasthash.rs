//! Lookups of short string keys on the evaluation path: flag keys, constant `in` lists, context
//! property names.
//!
//! A key is read as a [`Probe`]: its length and its first and last 8 bytes (zero-padded below 8).
//! For keys of at most 16 bytes the probe *is* the key, so equality is three word compares with no
//! pointer chase and no `memcmp` call; longer keys compare their bytes after the probe matched.
//! The hash folds the probe (and the middle of longer keys) with 64×64→128-bit multiplies (the
//! construction of foldhash and aHash's fallback).
//!
//! [`KeyTable`] is an open-addressing table built once per flag-set version from keys that
//! administrators control; requests only look keys up, so nobody outside can grow a table to
//! provoke collisions, and a hash that is not DoS-resistant is safe here.

const MULTIPLIER: u64 = 0x5851_f42d_4c95_7f2d;
const SEED_FIRST: u64 = 0x243f_6a88_85a3_08d3;
const SEED_LAST: u64 = 0x1319_8a2e_0370_7344;

#[inline(always)]
fn fold_multiply(left: u64, right: u64) -> u64 {
    let product = u128::from(left) * u128::from(right);
    (product as u64) ^ ((product >> 64) as u64)
}

#[inline(always)]
fn word(bytes: &[u8], at: usize) -> u64 {
    let mut word = [0_u8; 8];
    word.copy_from_slice(&bytes[at..at + 8]);
    u64::from_le_bytes(word)
}

#[inline(always)]
fn half_word(bytes: &[u8], at: usize) -> u64 {
    let mut half = [0_u8; 4];
    half.copy_from_slice(&bytes[at..at + 4]);
    u64::from(u32::from_le_bytes(half))
}

/// The bytes of a key shorter than 8 as one little-endian word, zero-padded, without a loop:
/// overlapping loads put the same byte at the same place twice, so OR-ing them is exact.
#[inline(always)]
fn short_word(bytes: &[u8]) -> u64 {
    let length = bytes.len();
    if length >= 4 {
        half_word(bytes, 0) | (half_word(bytes, length - 4) << (8 * (length - 4)))
    } else if length > 0 {
        u64::from(bytes[0]) | (u64::from(bytes[length / 2]) << (8 * (length / 2))) | (u64::from(bytes[length - 1]) << (8 * (length - 1)))
    } else {
        0
    }
}

/// A key read for lookup: length, first 8 bytes, last 8 bytes (0 when the key is shorter than 8).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Probe {
    length: usize,
    first: u64,
    last: u64,
}

impl Probe {
    #[inline(always)]
    pub(crate) fn new(key: &[u8]) -> Self {
        let length = key.len();
        // 8 bytes take the word path (first and last are then the same word): real flag keys
        // are rarely shorter, so keys of 8 and 9 bytes do not split on a mispredicted branch.
        if length < 8 {
            Self { length, first: short_word(key), last: 0 }
        } else {
            Self { length, first: word(key, 0), last: word(key, length - 8) }
        }
    }

    /// Whether `key` (whose probe is `self`) equals `other`. Keys of at most 16 bytes are
    /// decided by the probe alone; `other` is read only when lengths agree.
    #[inline(always)]
    pub(crate) fn matches(&self, key: &[u8], other: &[u8]) -> bool {
        other.len() == self.length && (self.length > 16 || Probe::new(other) == *self) && (self.length <= 16 || key == other)
    }

    /// The hash of the key this probe was read from.
    #[inline(always)]
    pub(crate) fn hash(&self, key: &[u8]) -> u64 {
        let mut hash = fold_multiply(self.first ^ SEED_FIRST, self.last ^ SEED_LAST ^ (self.length as u64));
        if self.length > 16 {
            for chunk in key[8..self.length - 8].chunks(8) {
                hash = fold_multiply(hash ^ Probe::new(chunk).first, MULTIPLIER);
            }
        }
        hash
    }
}

#[derive(Debug, Clone, Copy)]
struct Slot {
    hash: u64,
    probe: Probe,
    /// Index of the key in [`KeyTable::keys`]; `u32::MAX` marks an empty slot.
    index: u32,
}

const EMPTY: Slot = Slot { hash: 0, probe: Probe { length: 0, first: 0, last: 0 }, index: u32::MAX };

/// Maps each of a fixed list of distinct keys to its position in the list. Linear probing, at most
/// a quarter full, filled with Robin Hood insertion (a key that has probed further from its home
/// slot takes the place of one that has probed less), so a lookup usually reads one slot and no key
/// pays for the clusters the keys inserted before it formed; the slot holds the key's probe, so a
/// key of at most 16 bytes is found or rejected without reading the key itself.
#[derive(Debug, Clone)]
pub(crate) struct KeyTable {
    slots: Box<[Slot]>,
    mask: usize,
    keys: Box<[Box<str>]>,
}

impl KeyTable {
    /// Builds the table; a repeated key keeps its first position.
    pub(crate) fn new<'k>(keys: impl IntoIterator<Item = &'k str>) -> Self {
        let keys: Box<[Box<str>]> = keys.into_iter().map(Box::from).collect();
        let capacity = (keys.len() * 4).max(4).next_power_of_two();
        let mut table = Self { slots: vec![EMPTY; capacity].into_boxed_slice(), mask: capacity - 1, keys: Box::new([]) };
        for (index, key) in keys.iter().enumerate() {
            if table.find(key, |slot| *keys[slot.index as usize] == **key).is_some() {
                continue;
            }
            let probe = Probe::new(key.as_bytes());
            let hash = probe.hash(key.as_bytes());
            let mut carried = Slot { hash, probe, index: u32::try_from(index).unwrap_or(u32::MAX - 1) };
            let mut at = hash as usize & table.mask;
            let mut distance = 0;
            loop {
                let slot = &mut table.slots[at];
                if slot.index == u32::MAX {
                    *slot = carried;
                    break;
                }
                let slot_distance = at.wrapping_sub(slot.hash as usize) & table.mask;
                if slot_distance < distance {
                    std::mem::swap(slot, &mut carried);
                    distance = slot_distance;
                }
                at = (at + 1) & table.mask;
                distance += 1;
            }
        }
        table.keys = keys;
        table
    }

    /// The slot of `key`, deciding keys longer than 16 bytes with `equal`. Robin Hood insertion
    /// keeps every key in the run of occupied slots that starts at its home slot, so the search
    /// can stop at the first empty slot as in plain linear probing.
    #[inline(always)]
    fn find(&self, key: &str, equal: impl Fn(&Slot) -> bool) -> Option<usize> {
        let bytes = key.as_bytes();
        let probe = Probe::new(bytes);
        let hash = probe.hash(bytes);
        let mut at = hash as usize & self.mask;
        loop {
            let slot = &self.slots[at];
            if slot.index == u32::MAX {
                return None;
            }
            if slot.hash == hash && slot.probe == probe && (probe.length <= 16 || equal(slot)) {
                return Some(slot.index as usize);
            }
            at = (at + 1) & self.mask;
        }
    }

    /// The position of `key` in the list the table was built from.
    #[inline(always)]
    pub(crate) fn get(&self, key: &str) -> Option<usize> {
        self.find(key, |slot| *self.keys[slot.index as usize] == *key)
    }

    pub(crate) fn contains(&self, key: &str) -> bool {
        self.get(key).is_some()
    }

    /// The keys, in the order the table was built from.
    pub(crate) fn keys(&self) -> &[Box<str>] {
        &self.keys
    }

    pub(crate) fn len(&self) -> usize {
        self.keys.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    fn hash_of(key: &str) -> u64 {
        Probe::new(key.as_bytes()).hash(key.as_bytes())
    }

    #[test]
    fn probes_are_the_key_up_to_16_bytes() {
        let keys = ["", "a", "a\0", "ab", "abc", "abcd", "abcde", "abcdefg", "abcdefgh", "abcdefghi", "abcdefghijklmnop"];
        for (i, left) in keys.iter().enumerate() {
            for (j, right) in keys.iter().enumerate() {
                assert_eq!(Probe::new(left.as_bytes()) == Probe::new(right.as_bytes()), i == j, "{left:?} vs {right:?}");
                assert_eq!(Probe::new(left.as_bytes()).matches(left.as_bytes(), right.as_bytes()), i == j);
            }
        }
        // Every byte of a short key is in its probe, at every length.
        for length in 0..=16 {
            let key: Vec<u8> = (1..=length as u8).collect();
            for at in 0..length {
                let mut other = key.clone();
                other[at] ^= 0x80;
                assert_ne!(Probe::new(&key), Probe::new(&other), "length {length}, byte {at}");
            }
        }
        let long = "a-rather-long-flag-key-of-many-bytes";
        let twin = "a-rather-long-flag-kez-of-many-bytes";
        assert_eq!(Probe::new(long.as_bytes()), Probe::new(twin.as_bytes()), "same length, first and last 8 bytes");
        assert!(!Probe::new(long.as_bytes()).matches(long.as_bytes(), twin.as_bytes()));
        assert_ne!(hash_of(long), hash_of(twin), "the middle is hashed");
    }

    #[test]
    fn distinct_keys_spread() {
        let mut seen = HashSet::new();
        let mut low_bits = HashSet::new();
        for index in 0..10_000 {
            let key = format!("flag-{index}");
            seen.insert(hash_of(&key));
            if index < 4_096 {
                low_bits.insert(hash_of(&key) & 0xfff);
            }
        }
        assert_eq!(seen.len(), 10_000, "no collisions among 10,000 flag keys");
        assert!(low_bits.len() > 2_400, "slot indexes spread: {} of 4,096 distinct", low_bits.len());
        assert_ne!(hash_of("a"), hash_of("a\0"));
        assert_ne!(hash_of(""), hash_of("\0"));
    }

    #[test]
    fn table_finds_exactly_its_keys() {
        let keys: Vec<String> = (0..1_000).map(|index| format!("{}-{index}", "k".repeat(index % 40))).collect();
        let table = KeyTable::new(keys.iter().map(String::as_str));
        for (index, key) in keys.iter().enumerate() {
            assert_eq!(table.get(key), Some(index), "{key}");
            assert_eq!(table.get(&format!("{key}x")), None);
        }
        assert_eq!(table.get(""), None);
        let empty = KeyTable::new([]);
        assert!(!empty.contains("anything"));
        let repeated = KeyTable::new(["a", "b", "a"]);
        assert_eq!(repeated.get("a"), Some(0));
        assert_eq!(repeated.get("b"), Some(1));
    }

    /// How many slots a lookup of each key reads.
    fn probe_lengths(table: &KeyTable) -> Vec<usize> {
        table
            .keys
            .iter()
            .map(|key| {
                let home = hash_of(key) as usize & table.mask;
                let at = table.slots.iter().position(|slot| slot.index != u32::MAX && *table.keys[slot.index as usize] == **key);
                at.map_or(usize::MAX, |at| (at.wrapping_sub(home) & table.mask) + 1)
            })
            .collect()
    }

    #[test]
    fn every_key_is_found_within_a_few_slots() {
        for keys in [
            (0..1_000).map(|index| format!("flag-{index}")).collect::<Vec<_>>(),
            (0..100).map(|index| format!("{}-{index}", ["static", "in", "fractional", "semver_prefix"][index % 4])).collect(),
        ] {
            let table = KeyTable::new(keys.iter().map(String::as_str));
            let lengths = probe_lengths(&table);
            let mean = lengths.iter().sum::<usize>() as f64 / lengths.len() as f64;
            assert!(mean < 1.3, "mean probe length {mean}");
            assert!(lengths.iter().all(|length| *length <= 8), "longest probe {:?}", lengths.iter().max());
        }
    }
}
