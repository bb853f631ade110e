//! Openfire's password encryption (`org.jivesoftware.util.Blowfish` with its legacy SHA-1
//! key derivation): the key is the SHA-1 of the `passwordKey` property's bytes; a stored
//! value is hex: an 8-byte CBC IV, then Blowfish-CBC over the password as UTF-16BE padded
//! to whole blocks with PKCS#5 (a full block of padding when it fits exactly).

use blowfish::cipher::{BlockDecrypt, KeyInit};
use sha1::{Digest, Sha1};

/// Decrypts an `encryptedPassword`; `None` when it is not such a value under this key.
pub fn decrypt(password_key: &str, hex: &str) -> Option<String> {
    let key = Sha1::digest(password_key.as_bytes());
    // Big-endian halves (the default), as Openfire's and Schneier's definitions have it.
    let cipher: blowfish::Blowfish = blowfish::Blowfish::new_from_slice(&key).ok()?;
    let bytes = from_hex(hex)?;
    if bytes.len() < 16 || !bytes.len().is_multiple_of(8) {
        return None;
    }
    let (iv, data) = bytes.split_at(8);
    let mut prev: [u8; 8] = iv.try_into().ok()?;
    let mut plain = Vec::with_capacity(data.len());
    for block in data.chunks_exact(8) {
        let mut b = blowfish::cipher::generic_array::GenericArray::clone_from_slice(block);
        cipher.decrypt_block(&mut b);
        for (p, c) in b.iter().zip(prev.iter()) {
            plain.push(p ^ c);
        }
        prev.copy_from_slice(block);
    }
    let pad = usize::from(*plain.last()?);
    if pad == 0
        || pad > 8
        || plain[plain.len() - pad..]
            .iter()
            .any(|&b| usize::from(b) != pad)
    {
        return None;
    }
    plain.truncate(plain.len() - pad);
    if !plain.len().is_multiple_of(2) {
        return None;
    }
    let units: Vec<u16> = plain
        .chunks_exact(2)
        .map(|c| u16::from_be_bytes([c[0], c[1]]))
        .collect();
    String::from_utf16(&units).ok()
}

fn from_hex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| s.get(i..i + 2).and_then(|h| u8::from_str_radix(h, 16).ok()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::decrypt;

    /// Made with Openfire's own `Blowfish` class (its source at v4.9.2/main, compiled with
    /// the SHA-1 key derivation): `new Blowfish("kQ8vWz3YpR1tXn5").encryptString(...)`.
    const KEY: &str = "kQ8vWz3YpR1tXn5";
    const VECTORS: [(&str, &str); 4] = [
        (
            "old password",
            "c47f188c3f7d0179e0849b1bf0bfe5e7a83f21e6aa16e11ff588e654e563bddb69ae61ec2e2a4703",
        ),
        (
            "pässwörd 🎉",
            "4d14d34e64f1ef837f70b2a834b73c14c6758490688c14b2f7597101959303f8",
        ),
        // 8 bytes of UTF-16: a whole block of padding follows.
        (
            "12345678",
            "b37f78ca9b9654ef551ca5f7c36a3fa3a7198731110148ceaaceebaa1c3913b4",
        ),
        ("", "2649ad5b082ba1abdd012ae35355e9ba"),
    ];

    #[test]
    fn openfire_vectors() {
        for (plain, hex) in VECTORS {
            assert_eq!(decrypt(KEY, hex).as_deref(), Some(plain), "{hex}");
        }
    }

    #[test]
    fn wrong_key_or_damaged_values_are_none() {
        let (_, hex) = VECTORS[0];
        assert_eq!(decrypt("another key", hex), None);
        assert_eq!(decrypt(KEY, &hex[..hex.len() - 2]), None);
        assert_eq!(decrypt(KEY, "zz"), None);
        assert_eq!(decrypt(KEY, ""), None);
    }
}
