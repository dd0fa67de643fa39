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

    /// A key of at most 7 bytes as one word: its bytes, zero-padded, and its length in the top
    /// byte, so two such keys are equal exactly when their words are; `None` for longer keys.
    #[inline(always)]
    pub(crate) fn short_key(key: &[u8]) -> Option<u64> {
        (key.len() < 8).then(|| short_word(key) | ((key.len() as u64) << 56))
    }

    /// Whether `key` (whose probe is `self`) equals `other`. Keys of at most 16 bytes are
    /// decided by the probe alone; `other` is read only when lengths agree.
    #[inline(always)]
    pub(crate) fn matches(&self, key: &[u8], other: &[u8]) -> bool {
        other.len() == self.length && (self.length > 16 || Probe::new(other) == *self) && (self.length <= 16 || key == other)
    }

    /// The hash of the key this probe was read from, under `seed` (see [`KeyTable`]).
    #[inline(always)]
    pub(crate) fn hash(&self, key: &[u8], seed: u64) -> u64 {
        let mut hash = fold_multiply(self.first ^ SEED_FIRST ^ seed, self.last ^ SEED_LAST ^ (self.length as u64));
        if self.length > 16 {
            for chunk in key[8..self.length - 8].chunks(8) {
                hash = fold_multiply(hash ^ Probe::new(chunk).first, MULTIPLIER);
            }
        }
        hash
    }
}

/// One slot of a [`KeyTable`]: 32 bytes, aligned, so a lookup reads exactly one cache line.
#[derive(Debug, Clone, Copy)]
#[repr(C, align(32))]
struct Slot {
    hash: u64,
    first: u64,
    last: u64,
    /// The key's length modulo 2³²: exact for the keys of at most 16 bytes that the probe
    /// decides; longer keys are compared byte for byte after a match, so a truncated length can
    /// only send a lookup on to that comparison, never make it succeed.
    length: u32,
    /// Index of the key in [`KeyTable::keys`]; `u32::MAX` marks an empty slot.
    index: u32,
}

const EMPTY: Slot = Slot { hash: 0, first: 0, last: 0, length: 0, index: u32::MAX };

impl Slot {
    #[inline(always)]
    fn holds(&self, hash: u64, probe: &Probe) -> bool {
        self.hash == hash && self.first == probe.first && self.last == probe.last && self.length == truncated_length(probe.length)
    }
}

#[inline(always)]
fn truncated_length(length: usize) -> u32 {
    // Deliberately modulo 2³² (see `Slot::length`).
    length as u32
}

/// At most this many hash seeds are tried when a table is built (see [`KeyTable`]).
const MAX_SEEDS: u64 = 64;
/// Seeds are tried while seeds × keys stays under this, so building a huge table stays cheap.
const SEED_SEARCH_BUDGET: usize = 1 << 18;

/// Maps each of a fixed list of distinct keys to its position in the list.
///
/// Linear probing, filled with Robin Hood insertion (a key that has probed further from its home
/// slot takes the place of one that has probed less), so no key pays for the clusters the keys
/// inserted before it formed. The slot holds the key's probe, so a key of at most 16 bytes is found
/// or rejected without reading the key itself.
///
/// The keys are known when the table is built and never change, so the build tries several hash
/// seeds and keeps the one under which the fewest keys share a home slot: usually every key then
/// sits in its home slot and a lookup of a present key reads one slot, with no second iteration
/// whose branch the predictor cannot learn. The table is at most a quarter full; [`Self::sparse`]
/// leaves more room for a table looked up on every evaluation.
#[derive(Debug, Clone)]
pub(crate) struct KeyTable {
    slots: Box<[Slot]>,
    mask: usize,
    seed: u64,
    keys: Box<[Box<str>]>,
}

impl KeyTable {
    /// Builds a table four slots per key; a repeated key keeps its first position.
    pub(crate) fn new<'k>(keys: impl IntoIterator<Item = &'k str>) -> Self {
        Self::build(keys.into_iter().map(Box::from).collect(), 4)
    }

    /// Like [`Self::new`] with more room (16 slots per key up to 256 keys, 8 up to 4,096), which
    /// lets the seed search put nearly every key in its home slot: for the flag keys of a set,
    /// looked up on every evaluation. Slots are 32 bytes: 512 bytes per key up to 256 keys, then
    /// 256 up to 4,096, then 128; a lookup touches only its own slot's cache line.
    pub(crate) fn sparse<'k>(keys: impl IntoIterator<Item = &'k str>) -> Self {
        let keys: Box<[Box<str>]> = keys.into_iter().map(Box::from).collect();
        let room = match keys.len() {
            0..=256 => 16,
            257..=4096 => 8,
            _ => 4,
        };
        Self::build(keys, room)
    }

    fn build(keys: Box<[Box<str>]>, room: usize) -> Self {
        let capacity = (keys.len() * room).max(4).next_power_of_two();
        let mask = capacity - 1;
        let probes: Vec<Probe> = keys.iter().map(|key| Probe::new(key.as_bytes())).collect();
        let seed = Self::best_seed(&keys, &probes, capacity);
        let mut table = Self { slots: vec![EMPTY; capacity].into_boxed_slice(), mask, seed, keys: Box::new([]) };
        for (index, key) in keys.iter().enumerate() {
            if table.find(key, |slot| *keys[slot.index as usize] == **key).is_some() {
                continue;
            }
            let probe = probes[index];
            let hash = probe.hash(key.as_bytes(), seed);
            let mut carried = Slot {
                hash,
                first: probe.first,
                last: probe.last,
                length: truncated_length(probe.length),
                index: u32::try_from(index).unwrap_or(u32::MAX - 1),
            };
            let mut at = hash as usize & mask;
            let mut distance = 0;
            loop {
                let slot = &mut table.slots[at];
                if slot.index == u32::MAX {
                    *slot = carried;
                    break;
                }
                let slot_distance = at.wrapping_sub(slot.hash as usize) & mask;
                if slot_distance < distance {
                    std::mem::swap(slot, &mut carried);
                    distance = slot_distance;
                }
                at = (at + 1) & mask;
                distance += 1;
            }
        }
        table.keys = keys;
        table
    }

    /// The seed under which the fewest keys find their home slot already claimed by another key,
    /// trying seeds in order and stopping at the first with none. A repeated key always finds its
    /// twin's slot claimed, under every seed alike, so it does not change which seed wins.
    fn best_seed(keys: &[Box<str>], probes: &[Probe], capacity: usize) -> u64 {
        let tries = (SEED_SEARCH_BUDGET / keys.len().max(1)).clamp(1, MAX_SEEDS as usize) as u64;
        let mut claimed = vec![0_u64; capacity.div_ceil(64)];
        let mut best = (usize::MAX, 0);
        for attempt in 0..tries {
            let seed = attempt.wrapping_mul(0x9e37_79b9_7f4a_7c15);
            claimed.fill(0);
            let mut homes_taken = 0;
            for (key, probe) in keys.iter().zip(probes) {
                let home = probe.hash(key.as_bytes(), seed) as usize & (capacity - 1);
                let (word, bit) = (home / 64, 1_u64 << (home % 64));
                homes_taken += usize::from(claimed[word] & bit != 0);
                claimed[word] |= bit;
            }
            if homes_taken < best.0 {
                best = (homes_taken, seed);
                if homes_taken == 0 {
                    break;
                }
            }
        }
        best.1
    }

    /// The slot of `key`, deciding keys longer than 16 bytes with `equal`. Robin Hood insertion
    /// keeps every key in the run of occupied slots that starts at its home slot, so the search
    /// can stop at the first empty slot as in plain linear probing.
    #[inline(always)]
    fn find(&self, key: &str, equal: impl Fn(&Slot) -> bool) -> Option<usize> {
        let bytes = key.as_bytes();
        let probe = Probe::new(bytes);
        let hash = probe.hash(bytes, self.seed);
        let mut at = hash as usize & self.mask;
        loop {
            let slot = &self.slots[at];
            if slot.index == u32::MAX {
                return None;
            }
            if slot.holds(hash, &probe) && (probe.length <= 16 || equal(slot)) {
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
        Probe::new(key.as_bytes()).hash(key.as_bytes(), 0)
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
    fn short_keys_are_one_word_each() {
        let keys = ["", "\0", "a", "a\0", "\0a", "ab", "ba", "abc", "abcd", "abcde", "abcdef", "abcdefg", "US", "CA"];
        for left in keys {
            for right in keys {
                assert_eq!(Probe::short_key(left.as_bytes()) == Probe::short_key(right.as_bytes()), left == right, "{left:?} vs {right:?}");
            }
        }
        assert_eq!(Probe::short_key(b"abcdefgh"), None);
        // The top byte is the length (0 to 7), so no short key is all ones (a list's padding).
        for length in 0..8 {
            assert_ne!(Probe::short_key(&[0xff; 8][..length]), Some(u64::MAX));
        }
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
                let home = Probe::new(key.as_bytes()).hash(key.as_bytes(), table.seed) as usize & table.mask;
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

    #[test]
    fn seed_search_puts_the_keys_of_a_sparse_table_at_home() {
        for count in [2, 10, 100, 250] {
            let keys: Vec<String> =
                (0..count).map(|index| format!("{}-{index}", ["static", "in", "fractional", "semver_prefix"][index % 4])).collect();
            let table = KeyTable::sparse(keys.iter().map(String::as_str));
            let displaced = probe_lengths(&table).iter().filter(|length| **length > 1).count();
            // Under one seed about count²/(2·slots) keys share a home slot (3 for 250 keys);
            // the search keeps the seed with the fewest.
            assert!(displaced <= count / 100, "{displaced} of {count} keys are not in their home slot");
            for (index, key) in keys.iter().enumerate() {
                assert_eq!(table.get(key), Some(index));
                assert_eq!(table.get(&key.replace('-', "_")), None);
            }
        }
        // The search only picks a seed: lookups stay exact when no seed is perfect.
        let many: Vec<String> = (0..5_000).map(|index| format!("flag-{index}")).collect();
        let table = KeyTable::sparse(many.iter().map(String::as_str));
        assert!(many.iter().enumerate().all(|(index, key)| table.get(key) == Some(index)));
    }
}
