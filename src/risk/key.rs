//! Short strings (terminal, merchant ids, MCCs, dates) as 128-bit keys, and
//! the hasher of the state maps.

use std::hash::{BuildHasherDefault, Hasher};

/// Longest string with an exact key.
pub(super) const SHORT: usize = 15;

/// The exact key of a string of at most [`SHORT`] bytes: its bytes, zero
/// padded, with the length in the last byte.
pub(super) fn short_key(s: &str) -> Option<u128> {
    let bytes = s.as_bytes();
    let mut key = [0u8; 16];
    key.get_mut(..bytes.len())?.copy_from_slice(bytes);
    let len = u8::try_from(bytes.len())
        .ok()
        .filter(|&n| usize::from(n) <= SHORT)?;
    *key.last_mut()? = len;
    Some(u128::from_be_bytes(key))
}

/// The key of any string: exact up to [`SHORT`] bytes; a 120-bit hash of
/// a longer one, marked so as never to equal an exact key.
pub(super) fn key(s: &str) -> u128 {
    short_key(s).unwrap_or_else(|| {
        let (mut a, mut b) = (0xcbf2_9ce4_8422_2325_u64, 0x6c62_272e_07bb_0142_u64);
        for &byte in s.as_bytes() {
            a = (a ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3);
            b = (b ^ u64::from(byte)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        }
        (u128::from(a) << 64 | u128::from(b)) | 0xFF
    })
}

/// Hashes a 128-bit key with one multiply. The keys are card digests (an
/// HMAC under the switch's secret key: uniform, not chosen by an attacker)
/// and registry merchant ids, so no keyed hash is needed.
#[derive(Default)]
pub(super) struct KeyHasher(u64);

/// Builds [`KeyHasher`]s.
pub(super) type BuildKeyHasher = BuildHasherDefault<KeyHasher>;

const MIX: u64 = 0x9e37_79b9_7f4a_7c15;

impl Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(MIX);
        }
    }

    fn write_u64(&mut self, n: u64) {
        let x = (self.0 ^ n).wrapping_mul(MIX);
        self.0 = x ^ (x >> 32);
    }

    fn write_u128(&mut self, n: u128) {
        self.write_u64((n as u64) ^ ((n >> 64) as u64).rotate_left(32));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_keys_are_exact_and_long_ones_are_marked() {
        assert_eq!(short_key(""), Some(0));
        assert_eq!(short_key("AB"), Some(0x4142 << 112 | 2));
        assert_ne!(short_key("AB"), short_key("AB\0"));
        assert_eq!(short_key("MERCHANT0000001").map(|k| k as u8), Some(15));
        assert_eq!(short_key("MERCHANT00000001"), None);
        assert_eq!(key("T1"), short_key("T1").unwrap_or_default());
        let long = key("MERCHANT00000001");
        assert_eq!(long as u8, 0xFF);
        assert_ne!(long, key("MERCHANT00000002"));
    }
}
