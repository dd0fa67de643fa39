//! MurmurHash3, x86 32-bit variant (Austin Appleby's public-domain algorithm), seed 0 by default.
//!
//! flagd's `fractional` v2 hashes `utf8(bucketBy)` with this function (reference §2.1,
//! `core/pkg/evaluator/fractional.go`, Go `twmb/murmur3.StringSum32`). The hasher is
//! incremental so `flagKey + targetingKey` can be hashed without concatenating into a new string.

const C1: u32 = 0xcc9e_2d51;
const C2: u32 = 0x1b87_3593;

/// Incremental MurmurHash3 x86_32. Feeding bytes in several `write` calls gives the same hash as
/// one call with the concatenation. The pending tail (fewer than 4 bytes) is kept in a register-sized
/// word rather than a byte buffer, so a block completed across two writes is not stored byte by
/// byte and read back as a word (a store-forwarding stall).
#[derive(Debug, Clone)]
pub struct Murmur3 {
    hash: u32,
    /// Pending bytes, little-endian, `tail_len` of them.
    tail: u32,
    tail_len: u32,
    /// The input length modulo 2^32, as the reference algorithm mixes it in.
    total_len: u32,
}

impl Murmur3 {
    pub fn with_seed(seed: u32) -> Self {
        Self { hash: seed, tail: 0, tail_len: 0, total_len: 0 }
    }

    #[inline(always)]
    fn mix_block(&mut self, block: u32) {
        let k = block.wrapping_mul(C1).rotate_left(15).wrapping_mul(C2);
        self.hash ^= k;
        self.hash = self.hash.rotate_left(13).wrapping_mul(5).wrapping_add(0xe654_6b64);
    }

    #[inline]
    pub fn write(&mut self, mut bytes: &[u8]) {
        self.total_len = self.total_len.wrapping_add(bytes.len() as u32);
        if self.tail_len > 0 {
            while self.tail_len < 4 {
                let Some((&first, rest)) = bytes.split_first() else { return };
                self.tail |= u32::from(first) << (8 * self.tail_len);
                self.tail_len += 1;
                bytes = rest;
            }
            let block = self.tail;
            self.mix_block(block);
            self.tail = 0;
            self.tail_len = 0;
        }
        let mut chunks = bytes.chunks_exact(4);
        for chunk in &mut chunks {
            let block = u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
            self.mix_block(block);
        }
        for &byte in chunks.remainder() {
            self.tail |= u32::from(byte) << (8 * self.tail_len);
            self.tail_len += 1;
        }
    }

    #[inline]
    pub fn finish(&self) -> u32 {
        let mut hash = self.hash;
        if self.tail_len > 0 {
            hash ^= self.tail.wrapping_mul(C1).rotate_left(15).wrapping_mul(C2);
        }
        hash ^= self.total_len;
        hash ^= hash >> 16;
        hash = hash.wrapping_mul(0x85eb_ca6b);
        hash ^= hash >> 13;
        hash = hash.wrapping_mul(0xc2b2_ae35);
        hash ^= hash >> 16;
        hash
    }
}

/// One-shot MurmurHash3 x86_32 with seed 0 over the concatenation of `parts`.
pub fn murmur3_x86_32(parts: &[&[u8]]) -> u32 {
    let mut hasher = Murmur3::with_seed(0);
    for part in parts {
        hasher.write(part);
    }
    hasher.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_answers() {
        // Published MurmurHash3_x86_32 answers (seed 0 unless noted).
        assert_eq!(murmur3_x86_32(&[b""]), 0);
        let mut seeded = Murmur3::with_seed(1);
        seeded.write(b"");
        assert_eq!(seeded.finish(), 0x514e_28b7);
        assert_eq!(murmur3_x86_32(&[b"hello"]), 0x248b_fa47);
        assert_eq!(murmur3_x86_32(&[b"The quick brown fox jumps over the lazy dog"]), 0x2e4f_f723);
    }

    #[test]
    fn split_writes_equal_one_write() {
        let text = b"fractional-flagjack-and-some-more-bytes";
        let whole = murmur3_x86_32(&[text]);
        for cut_a in 0..text.len() {
            for cut_b in cut_a..text.len() {
                let parts: [&[u8]; 3] = [&text[..cut_a], &text[cut_a..cut_b], &text[cut_b..]];
                assert_eq!(murmur3_x86_32(&parts), whole, "cuts {cut_a} {cut_b}");
            }
        }
    }
}
