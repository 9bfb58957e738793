//! Ed25519 keys at hierarchical paths, by SLIP-0010
//! (<https://github.com/satoshilabs/slips/blob/master/slip-0010.md>).
//!
//! Ed25519 has only hardened children, so every index of a path is hardened: `m/44'/0'`
//! (or `m/44H/0H`). A path without the mark is refused rather than read as hardened, so a
//! path means the same key here as in any other SLIP-0010 wallet.

use std::fmt;

use alknet_runtime::CallError;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha512;
use zeroize::Zeroizing;

/// The deepest path accepted: far beyond any scheme in use (BIP-44 has five levels).
pub const MAX_DEPTH: usize = 32;

const HARDENED: u32 = 0x8000_0000;

/// A parsed path: the hardened indexes below the master key, each below 2^31.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DerivationPath(Vec<u32>);

impl DerivationPath {
    /// Read `m/44'/1234'/0'`: `m`, then up to [`MAX_DEPTH`] indexes below 2^31, each
    /// marked hardened with `'` or `H`.
    pub fn parse(text: &str) -> Result<Self, CallError> {
        let invalid =
            |why: String| CallError::invalid_input(format!("`{text}` is not a key path: {why}"));
        let mut parts = text.split('/');
        if parts.next() != Some("m") {
            return Err(invalid("it starts with `m`, as in `m/44'/0'`".into()));
        }
        let mut indexes = Vec::new();
        for part in parts {
            let Some(number) = part.strip_suffix(['\'', 'H', 'h']) else {
                return Err(invalid(format!(
                    "`{part}` is not hardened; Ed25519 (SLIP-0010) has only hardened keys: write `{part}'`"
                )));
            };
            let index = number
                .parse::<u32>()
                .ok()
                .filter(|index| *index < HARDENED && !number.starts_with('+'))
                .ok_or_else(|| {
                    invalid(format!("`{number}` is not an index from 0 to 2147483647"))
                })?;
            indexes.push(index);
            if indexes.len() > MAX_DEPTH {
                return Err(invalid(format!("it is deeper than {MAX_DEPTH} levels")));
            }
        }
        Ok(DerivationPath(indexes))
    }
}

impl fmt::Display for DerivationPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("m")?;
        for index in &self.0 {
            write!(f, "/{index}'")?;
        }
        Ok(())
    }
}

/// The Ed25519 private key (its 32-byte seed) at `path` below `seed`.
pub fn derive(seed: &[u8], path: &DerivationPath) -> Zeroizing<[u8; 32]> {
    let (mut key, mut chain) = split(hmac(b"ed25519 seed", &[seed]));
    for index in &path.0 {
        let serialized = (index | HARDENED).to_be_bytes();
        (key, chain) = split(hmac(&chain[..], &[&[0], &key[..], &serialized]));
    }
    key
}

fn hmac(key: &[u8], parts: &[&[u8]]) -> Zeroizing<[u8; 64]> {
    let mut mac = Hmac::<Sha512>::new_from_slice(key).expect("HMAC takes a key of any length");
    for part in parts {
        mac.update(part);
    }
    let mut out = Zeroizing::new([0u8; 64]);
    out.copy_from_slice(&mac.finalize().into_bytes());
    out
}

/// `I_L` (the key) and `I_R` (the chain code).
fn split(i: Zeroizing<[u8; 64]>) -> (Zeroizing<[u8; 32]>, Zeroizing<[u8; 32]>) {
    let mut key = Zeroizing::new([0u8; 32]);
    let mut chain = Zeroizing::new([0u8; 32]);
    key.copy_from_slice(&i[..32]);
    chain.copy_from_slice(&i[32..]);
    (key, chain)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::SigningKey;

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    fn unhex(text: &str) -> Vec<u8> {
        (0..text.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
            .collect()
    }

    /// (path, private key, public key with SLIP-0010's `00` prefix)
    type Vector = (&'static str, &'static str, &'static str);

    const VECTOR_1_SEED: &str = "000102030405060708090a0b0c0d0e0f";
    const VECTOR_1: &[Vector] = &[
        (
            "m",
            "2b4be7f19ee27bbf30c667b642d5f4aa69fd169872f8fc3059c08ebae2eb19e7",
            "00a4b2856bfec510abab89753fac1ac0e1112364e7d250545963f135f2a33188ed",
        ),
        (
            "m/0H",
            "68e0fe46dfb67e368c75379acec591dad19df3cde26e63b93a8e704f1dade7a3",
            "008c8a13df77a28f3445213a0f432fde644acaa215fc72dcdf300d5efaa85d350c",
        ),
        (
            "m/0H/1H",
            "b1d0bad404bf35da785a64ca1ac54b2617211d2777696fbffaf208f746ae84f2",
            "001932a5270f335bed617d5b935c80aedb1a35bd9fc1e31acafd5372c30f5c1187",
        ),
        (
            "m/0H/1H/2H",
            "92a5b23c0b8a99e37d07df3fb9966917f5d06e02ddbd909c7e184371463e9fc9",
            "00ae98736566d30ed0e9d2f4486a64bc95740d89c7db33f52121f8ea8f76ff0fc1",
        ),
        (
            "m/0H/1H/2H/2H",
            "30d1dc7e5fc04c31219ab25a27ae00b50f6fd66622f6e9c913253d6511d1e662",
            "008abae2d66361c879b900d204ad2cc4984fa2aa344dd7ddc46007329ac76c429c",
        ),
        (
            "m/0H/1H/2H/2H/1000000000H",
            "8f94d394a8e8fd6b1bc2f3f49f5c47e385281d5c17e65324b0f62483e37e8793",
            "003c24da049451555d51a7014a37337aa4e12d41e485abccfa46b47dfb2af54b7a",
        ),
    ];

    const VECTOR_2_SEED: &str = "fffcf9f6f3f0edeae7e4e1dedbd8d5d2cfccc9c6c3c0bdbab7b4b1aeaba8a5a29f9c999693908d8a8784817e7b7875726f6c696663605d5a5754514e4b484542";
    const VECTOR_2: &[Vector] = &[
        (
            "m",
            "171cb88b1b3c1db25add599712e36245d75bc65a1a5c9e18d76f9f2b1eab4012",
            "008fe9693f8fa62a4305a140b9764c5ee01e455963744fe18204b4fb948249308a",
        ),
        (
            "m/0H",
            "1559eb2bbec5790b0c65d8693e4d0875b1747f4970ae8b650486ed7470845635",
            "0086fab68dcb57aa196c77c5f264f215a112c22a912c10d123b0d03c3c28ef1037",
        ),
        (
            "m/0H/2147483647H",
            "ea4f5bfe8694d8bb74b7b59404632fd5968b774ed545e810de9c32a4fb4192f4",
            "005ba3b9ac6e90e83effcd25ac4e58a1365a9e35a3d3ae5eb07b9e4d90bcf7506d",
        ),
        (
            "m/0H/2147483647H/1H",
            "3757c7577170179c7868353ada796c839135b3d30554bbb74a4b1e4a5a58505c",
            "002e66aa57069c86cc18249aecf5cb5a9cebbfd6fadeab056254763874a9352b45",
        ),
        (
            "m/0H/2147483647H/1H/2147483646H",
            "5837736c89570de861ebc173b1086da4f505d4adb387c6a1b1342d5e4ac9ec72",
            "00e33c0f7d81d843c572275f287498e8d408654fdf0d1e065b84e2e6f157aab09b",
        ),
        (
            "m/0H/2147483647H/1H/2147483646H/2H",
            "551d333177df541ad876a60ea71f00447931c0a9da16f227c11ea080d7391b8d",
            "0047150c75db263559a70d5778bf36abbab30fb061ad69f69ece61a72b0cfa4fc0",
        ),
    ];

    #[test]
    fn derives_slip_0010_test_vectors() {
        for (seed, vectors) in [(VECTOR_1_SEED, VECTOR_1), (VECTOR_2_SEED, VECTOR_2)] {
            let seed = unhex(seed);
            for (path, private, public) in vectors {
                let key = derive(&seed, &DerivationPath::parse(path).unwrap());
                assert_eq!(hex(&key[..]), *private, "private key at {path}");
                let verifying = SigningKey::from_bytes(&key).verifying_key();
                assert_eq!(
                    format!("00{}", hex(verifying.as_bytes())),
                    *public,
                    "public key at {path}"
                );
            }
        }
    }

    #[test]
    fn reads_and_writes_paths() {
        let path = DerivationPath::parse("m/44'/1234H/0h").unwrap();
        assert_eq!(path.to_string(), "m/44'/1234'/0'");
        assert_eq!(DerivationPath::parse("m").unwrap().to_string(), "m");
        assert_eq!(
            DerivationPath::parse("m/2147483647'").unwrap().0,
            [2147483647]
        );
    }

    #[test]
    fn refuses_what_is_not_a_hardened_path() {
        for (text, why) in [
            ("", "starts with `m`"),
            ("44'/0'", "starts with `m`"),
            ("m/44", "`44` is not hardened"),
            ("m/44'/0", "`0` is not hardened"),
            ("m/2147483648'", "not an index"),
            ("m/-1'", "not an index"),
            ("m/+1'", "not an index"),
            ("m/'", "not an index"),
            ("m//0'", "not hardened"),
            ("m/0'/", "not hardened"),
        ] {
            let err = DerivationPath::parse(text).unwrap_err();
            assert!(err.message.contains(why), "{text}: {}", err.message);
            assert_eq!(err.code, alknet_runtime::codes::INVALID_INPUT);
        }
        let deep = format!("m{}", "/0'".repeat(MAX_DEPTH + 1));
        assert!(
            DerivationPath::parse(&deep)
                .unwrap_err()
                .message
                .contains("deeper than 32")
        );
        assert!(DerivationPath::parse(&format!("m{}", "/0'".repeat(MAX_DEPTH))).is_ok());
    }
}
