//! An unlocked seed and the keys derived from it, cached until the seed is locked.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use chacha20poly1305::XChaCha20Poly1305;
use chacha20poly1305::aead::KeyInit;
use ed25519_dalek::SigningKey;
use hkdf::Hkdf;
use hmac::Hmac;
use sha2::Sha256;
use zeroize::Zeroizing;

use crate::cipher::VersionKey;
use crate::memory::{SEED_LEN, SeedMemory};
use crate::slip10::{self, DerivationPath};

/// HKDF's salt for every symmetric key: names this scheme, so the same seed used by
/// another program's HKDF gives other keys.
const HKDF_SALT: &[u8] = b"alknet-secret/1";
/// The symmetric key paths the service itself uses (docs/secret.md, "Key paths").
const FINGERPRINT_PATH: &str = "fingerprint";
const KEYRING_PATH: &str = "keyring";

/// How many derived keys of each kind are kept; past it the cache starts over, so a caller
/// cycling through paths costs derivations, not memory.
const CACHE_LIMIT: usize = 1024;

/// The seed, and the keys derived from it so far. Dropping it zeroes all of them.
pub struct Unlocked {
    seed: SeedMemory,
    signing: Mutex<HashMap<DerivationPath, Arc<SigningKey>>>,
    /// By name, then version: looked up by `&str`, with no allocation per call.
    versions: Mutex<HashMap<String, HashMap<u32, Arc<VersionKey>>>>,
}

impl Unlocked {
    pub fn new(seed: SeedMemory) -> Self {
        Unlocked {
            seed,
            signing: Mutex::default(),
            versions: Mutex::default(),
        }
    }

    /// The seed's public fingerprint: `seed:` and 32 hex digits of a key derived from it,
    /// which tells seeds apart and reveals nothing of them.
    pub fn fingerprint(&self) -> String {
        fingerprint(self.seed.seed())
    }

    /// The key that authenticates the seed file's keyring.
    pub fn keyring_key(&self) -> Zeroizing<[u8; 32]> {
        symmetric(self.seed.seed(), KEYRING_PATH)
    }

    /// The seed, to seal it.
    pub fn seed(&self) -> &[u8; SEED_LEN] {
        self.seed.seed()
    }

    /// The Ed25519 key at `path`.
    pub fn signing_key(&self, path: &DerivationPath) -> Arc<SigningKey> {
        let mut cache = self.signing.lock().expect("the cache is never left torn");
        if let Some(key) = cache.get(path) {
            return key.clone();
        }
        let key = Arc::new(SigningKey::from_bytes(&slip10::derive(
            self.seed.seed(),
            path,
        )));
        if cache.len() >= CACHE_LIMIT {
            cache.clear();
        }
        cache.insert(path.clone(), key.clone());
        key
    }

    /// Version `version` of the key named `name`: the symmetric key at
    /// `aead/{name}/{version}`, its first half for XChaCha20-Poly1305 and its second for
    /// the `aad` check.
    pub fn version_key(&self, name: &str, version: u32) -> Arc<VersionKey> {
        let mut cache = self.versions.lock().expect("the cache is never left torn");
        if let Some(key) = cache.get(name).and_then(|versions| versions.get(&version)) {
            return key.clone();
        }
        let material: Zeroizing<[u8; 64]> =
            symmetric(self.seed.seed(), &format!("aead/{name}/{version}"));
        let key = Arc::new(VersionKey {
            aead: XChaCha20Poly1305::new_from_slice(&material[..32]).expect("a 32-byte key"),
            check: <Hmac<Sha256> as hmac::KeyInit>::new_from_slice(&material[32..])
                .expect("HMAC takes a key of any length"),
        });
        if cache.len() >= CACHE_LIMIT {
            cache.clear();
        }
        // Versions per name are bounded by the rotations an admin made; names by the limit.
        cache
            .entry(name.to_string())
            .or_default()
            .insert(version, key.clone());
        key
    }
}

/// `seed`'s public fingerprint.
pub fn fingerprint(seed: &[u8; SEED_LEN]) -> String {
    let key: Zeroizing<[u8; 16]> = symmetric(seed, FINGERPRINT_PATH);
    let digits: String = key.iter().map(|b| format!("{b:02x}")).collect();
    format!("seed:{digits}")
}

/// The symmetric key at `path`: HKDF-SHA-256 of the seed, with the path as info.
pub fn symmetric<const N: usize>(seed: &[u8; SEED_LEN], path: &str) -> Zeroizing<[u8; N]> {
    let mut key = Zeroizing::new([0u8; N]);
    Hkdf::<Sha256>::new(Some(HKDF_SALT), seed)
        .expand(path.as_bytes(), &mut key[..])
        .expect("HKDF-SHA-256 gives up to 8160 bytes");
    key
}
