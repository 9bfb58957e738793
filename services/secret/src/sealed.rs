//! The seed file: the seed sealed under a key from the passphrase, and the versions of the
//! named encryption keys, authenticated by a key from the seed. docs/secret.md describes
//! the format.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use alknet_runtime::Binary;
use argon2::{Algorithm, Argon2, Params, Version};
use chacha20poly1305::aead::{AeadInOut, Generate, KeyInit};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use zeroize::Zeroizing;

use crate::memory::{SEED_LEN, SeedMemory};

/// The `format` of the files this code writes and reads.
pub const FORMAT: &str = "alknet-secret/1";
const CIPHER: &str = "xchacha20poly1305";
const KDF: &str = "argon2id";
const TAG_LEN: usize = 16;

/// The most a file may ask of Argon2id: a file is read before its passphrase is known, so
/// a planted one must not make the node allocate or spin without bound.
const MAX_MEMORY_KIB: u32 = 1 << 20;
const MAX_ITERATIONS: u32 = 64;
const MAX_PARALLELISM: u32 = 8;
/// The passes `init` tries first, and the most it raises them to.
const MIN_ITERATIONS: u32 = 2;
const TUNED_MAX_ITERATIONS: u32 = 16;

/// Argon2id's parameters, as the file records them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Kdf {
    algorithm: String,
    version: u32,
    memory_kib: u32,
    iterations: u32,
    parallelism: u32,
    salt: Binary,
}

/// The versions of one named encryption key.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyVersions {
    /// The version `encrypt` uses; every name starts at 1.
    pub current: u32,
    /// Versions that no longer decrypt.
    pub retired: BTreeSet<u32>,
}

/// The named keys that have been rotated or retired; a name absent here is at version 1.
pub type Keyring = BTreeMap<String, KeyVersions>;

/// A seed file, as read or about to be written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeedFile {
    format: String,
    /// The seed's public fingerprint.
    pub fingerprint: String,
    kdf: Kdf,
    cipher: String,
    nonce: Binary,
    sealed_seed: Binary,
    /// The named keys' versions.
    pub keys: Keyring,
    keys_mac: Binary,
}

/// Why a file could not be opened.
pub enum OpenError {
    /// The passphrase does not open it.
    WrongPassphrase,
    /// The file is not what this code wrote; the message says how.
    Invalid(String),
}

/// How `init` picks Argon2id's work.
#[derive(Debug, Clone, Copy)]
pub struct Tuning {
    /// The memory, in KiB.
    pub memory_kib: u32,
    /// The least time one derivation should take here.
    pub target: Duration,
}

impl SeedFile {
    /// Seal `seed` under `passphrase`, with Argon2id tuned to take at least
    /// `tuning.target` on this machine, and an empty keyring authenticated by `keys_key`.
    pub fn seal(
        seed: &[u8; SEED_LEN],
        fingerprint: String,
        passphrase: &str,
        tuning: &Tuning,
        keys_key: &[u8],
    ) -> Result<SeedFile, String> {
        let mut salt = [0u8; 16];
        getrandom::fill(&mut salt).map_err(|err| format!("the OS gave no randomness: {err}"))?;
        let mut kdf = Kdf {
            algorithm: KDF.into(),
            version: 0x13,
            memory_kib: tuning.memory_kib,
            iterations: MIN_ITERATIONS,
            parallelism: 1,
            salt: Binary(salt.to_vec()),
        };
        let key = loop {
            let started = Instant::now();
            let key = kdf.derive(passphrase)?;
            let took = started.elapsed();
            if took >= tuning.target || kdf.iterations >= TUNED_MAX_ITERATIONS {
                break key;
            }
            // Passes cost about the same each: scale them to the target, at least one more.
            let per_pass = took.as_secs_f64() / f64::from(kdf.iterations);
            let wanted = (tuning.target.as_secs_f64() / per_pass.max(1e-6)).ceil() as u32;
            kdf.iterations = wanted.clamp(kdf.iterations + 1, TUNED_MAX_ITERATIONS);
        };
        let mut file = SeedFile {
            format: FORMAT.into(),
            fingerprint,
            kdf,
            cipher: CIPHER.into(),
            nonce: Binary(XNonce::generate().to_vec()),
            sealed_seed: Binary(Vec::new()),
            keys: Keyring::new(),
            keys_mac: Binary(Vec::new()),
        };
        let mut sealed = seed.to_vec();
        let nonce = XNonce::try_from(&file.nonce[..]).expect("a fresh 24-byte nonce");
        let tag = XChaCha20Poly1305::new(&(*key).into())
            .encrypt_inout_detached(&nonce, &file.header(), sealed.as_mut_slice().into())
            .map_err(|_| "the seed could not be sealed".to_string())?;
        sealed.extend_from_slice(&tag);
        file.sealed_seed = Binary(sealed);
        file.set_keys(Keyring::new(), keys_key);
        Ok(file)
    }

    /// The Argon2id passes the file asks for.
    pub fn kdf_iterations(&self) -> u32 {
        self.kdf.iterations
    }

    /// Open the seed into memory with `passphrase`.
    pub fn open(&self, passphrase: &str) -> Result<SeedMemory, OpenError> {
        let key = self.kdf.derive(passphrase).map_err(OpenError::Invalid)?;
        let nonce = XNonce::try_from(&self.nonce[..])
            .map_err(|_| OpenError::Invalid("`nonce` is not 24 bytes".into()))?;
        if self.sealed_seed.len() != SEED_LEN + TAG_LEN {
            return Err(OpenError::Invalid(format!(
                "`sealed_seed` is {} bytes, not {}",
                self.sealed_seed.len(),
                SEED_LEN + TAG_LEN
            )));
        }
        let (sealed, tag) = self.sealed_seed.split_at(SEED_LEN);
        let tag = tag.try_into().expect("split at the tag");
        let mut memory = SeedMemory::new();
        memory.seed_mut().copy_from_slice(sealed);
        XChaCha20Poly1305::new(&(*key).into())
            .decrypt_inout_detached(
                &nonce,
                &self.header(),
                (&mut memory.seed_mut()[..]).into(),
                tag,
            )
            .map_err(|_| OpenError::WrongPassphrase)?;
        Ok(memory)
    }

    /// Replace the keyring, authenticated by `keys_key`.
    pub fn set_keys(&mut self, keys: Keyring, keys_key: &[u8]) {
        self.keys_mac = Binary(keyring_mac(&keys, keys_key).to_vec());
        self.keys = keys;
    }

    /// Whether the keyring is the one last written with `keys_key`.
    pub fn keys_are_authentic(&self, keys_key: &[u8]) -> bool {
        let expected = keyring_mac(&self.keys, keys_key);
        subtle::ConstantTimeEq::ct_eq(&expected[..], &self.keys_mac[..]).into()
    }

    /// The parts a reader trusts before the passphrase opens the seed: bound to the sealed
    /// seed as its associated data, so none can be changed without the open failing.
    fn header(&self) -> Vec<u8> {
        serde_json::to_vec(&(&self.format, &self.fingerprint, &self.kdf, &self.cipher))
            .expect("plain data serializes")
    }

    /// Read `path`: `None` when there is no file.
    pub fn read(path: &Path) -> Result<Option<SeedFile>, String> {
        let text = match std::fs::read(path) {
            Ok(text) => text,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(err) => return Err(format!("cannot read {}: {err}", path.display())),
        };
        let file: SeedFile = serde_json::from_slice(&text)
            .map_err(|err| format!("{} is not a seed file: {err}", path.display()))?;
        file.check().map_err(|why| {
            format!(
                "{} is not a seed file this node can open: {why}",
                path.display()
            )
        })?;
        Ok(Some(file))
    }

    fn check(&self) -> Result<(), String> {
        if self.format != FORMAT {
            return Err(format!("its format is `{}`, not `{FORMAT}`", self.format));
        }
        if self.cipher != CIPHER {
            return Err(format!("its cipher is `{}`, not `{CIPHER}`", self.cipher));
        }
        let kdf = &self.kdf;
        if kdf.algorithm != KDF || kdf.version != 0x13 {
            return Err(format!(
                "its kdf is `{}` version {}, not `{KDF}` version 19",
                kdf.algorithm, kdf.version
            ));
        }
        if kdf.memory_kib > MAX_MEMORY_KIB
            || kdf.iterations > MAX_ITERATIONS
            || kdf.parallelism > MAX_PARALLELISM
        {
            return Err(format!(
                "its kdf asks for {} KiB, {} passes and {} lanes: at most {MAX_MEMORY_KIB} KiB, {MAX_ITERATIONS} passes and {MAX_PARALLELISM} lanes",
                kdf.memory_kib, kdf.iterations, kdf.parallelism
            ));
        }
        kdf.params().map(drop)
    }

    /// Write the file to `path` so that a crash at any moment leaves either the old file or
    /// the new one: a new file beside it (owner-only), flushed to disk, renamed over it,
    /// and the directory flushed so the rename lasts.
    pub fn write(&self, path: &Path) -> std::io::Result<()> {
        let text = serde_json::to_vec_pretty(self).expect("plain data serializes");
        let dir = match path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir,
            _ => Path::new("."),
        };
        create_private_dir(dir)?;
        let mut temporary = tempfile::Builder::new()
            .prefix(".secret-")
            .permissions(owner_only())
            .tempfile_in(dir)?;
        temporary.write_all(&text)?;
        temporary.write_all(b"\n")?;
        temporary.as_file().sync_all()?;
        temporary.persist(path).map_err(|err| err.error)?;
        std::fs::File::open(dir)?.sync_all()
    }
}

impl Kdf {
    fn params(&self) -> Result<Params, String> {
        Params::new(self.memory_kib, self.iterations, self.parallelism, Some(32))
            .map_err(|err| format!("its kdf parameters are refused by Argon2: {err}"))
    }

    fn derive(&self, passphrase: &str) -> Result<Zeroizing<[u8; 32]>, String> {
        let mut key = Zeroizing::new([0u8; 32]);
        Argon2::new(Algorithm::Argon2id, Version::V0x13, self.params()?)
            .hash_password_into(passphrase.as_bytes(), &self.salt, &mut key[..])
            .map_err(|err| format!("Argon2 refused the input: {err}"))?;
        Ok(key)
    }
}

fn keyring_mac(keys: &Keyring, key: &[u8]) -> [u8; 32] {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes a key of any length");
    mac.update(&serde_json::to_vec(keys).expect("plain data serializes"));
    mac.finalize().into_bytes().into()
}

#[cfg(unix)]
fn owner_only() -> std::fs::Permissions {
    std::os::unix::fs::PermissionsExt::from_mode(0o600)
}

fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)
}
