//! `secret`: a node's seed, sealed at rest under a passphrase and kept unlocked in memory,
//! deriving keys from it, signing and encrypting — without ever handing out a private key.
//!
//! - **The seed.** `init` makes one (256 bits from the OS, shown once as a 24-word BIP-39
//!   mnemonic) or imports a mnemonic, and seals it in the seed file under a key Argon2id
//!   derives from the passphrase. `unlock` opens it into a page of memory locked against
//!   swap; `lock` zeroes it and every key derived from it. Wrong passphrases make the next
//!   attempt wait, doubling each time.
//! - **Signing keys.** Ed25519 by SLIP-0010 at hardened paths (`m/44'/1234'/0'`):
//!   `public_key`, `sign`, `verify`.
//! - **Encryption keys.** Named and versioned, by HKDF-SHA-256: `encrypt` makes a
//!   self-describing ciphertext under the name's current version, `decrypt` opens any
//!   version not retired, `rotate` starts a new version, `retire` ends an old one.
//!
//! Every operation needs `secret:use` (or `secret:admin`); `init`, `rotate`, `retire`
//! and the internal `export_private_key` need `secret:admin`. Each call that touches the
//! seed logs an audit line (target `alknet::audit`): the caller, the operation, the path
//! or key name — never a message, plaintext or key. docs/secret.md gives the threat model,
//! the file format and the key paths.
//!
//! ```
//! use alknet_runtime::config::SecretSettings;
//! use alknet_runtime::{Binary, Caller, Identity, OperationEnv};
//! use alknet_secret::{SecretClient, SecretProtocol, SecretService, SeedState};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let dir = tempfile::tempdir().unwrap();
//! let settings = SecretSettings {
//!     file: Some(dir.path().join("secret.json")),
//!     kdf_memory_kib: std::num::NonZeroU32::new(1024),
//!     kdf_target_ms: Some(0),
//!     ..SecretSettings::default()
//! };
//! let env = OperationEnv::builder()
//!     .local(SecretProtocol::local(SecretService::open(&settings).unwrap()))
//!     .build()
//!     .unwrap();
//! let admin = Identity::new("user:ops").with_scopes(["secret:admin"]);
//! let secret = SecretClient::new(env.with_caller(Caller::new().identity(admin)));
//!
//! let made = secret.init("correct horse battery".into(), None).await.unwrap();
//! assert_eq!(made.mnemonic.unwrap().split(' ').count(), 24);
//! let signed = secret.sign("m/44'/0'".into(), Binary::from(&b"hello"[..])).await.unwrap();
//! let checked = secret
//!     .verify(None, Some(signed.public_key), Binary::from(&b"hello"[..]), signed.signature)
//!     .await
//!     .unwrap();
//! assert!(checked.valid);
//!
//! secret.lock().await.unwrap();
//! assert_eq!(secret.status().await.unwrap().state, SeedState::Locked);
//! # }
//! ```

#![deny(missing_docs, warnings)]

mod cipher;
mod memory;
mod sealed;
mod slip10;
mod unlocked;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use alknet_runtime::config::SecretSettings;
use alknet_runtime::prelude::*;
use ed25519_dalek::{Signature as Ed25519Signature, Signer, VerifyingKey};
use zeroize::Zeroizing;

pub use memory::refuse_core_dumps;
pub use slip10::{DerivationPath, MAX_DEPTH};

use sealed::{KeyVersions, OpenError, SeedFile, Tuning};
use unlocked::Unlocked;

/// The shortest passphrase `init` accepts.
pub const MIN_PASSPHRASE_CHARS: usize = 8;
const DEFAULT_KDF_MEMORY_KIB: u32 = 64 * 1024;
const DEFAULT_KDF_TARGET: Duration = Duration::from_millis(250);
const DEFAULT_BACKOFF: Duration = Duration::from_secs(1);
const DEFAULT_BACKOFF_MAX: Duration = Duration::from_secs(300);

/// Whether the node has a seed, and whether it is in memory.
#[alk_type]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum SeedState {
    /// There is no seed file yet: `init` makes one.
    Uninitialized,
    /// The seed is sealed in its file: `unlock` opens it.
    Locked,
    /// The seed is in memory: keys can be derived.
    Unlocked,
}

/// The answer to `secret/status`, `unlock` and `lock`.
#[alk_type]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretStatus {
    /// Locked, unlocked, or no seed yet.
    pub state: SeedState,
    /// The seed's public fingerprint (`seed:` and 32 hex digits), once there is a seed.
    pub fingerprint: Option<String>,
    /// Wrong passphrases given since the last unlock.
    pub failed_unlocks: u32,
    /// How long until `unlock` may be tried again, in milliseconds; none when it may now.
    pub retry_after_ms: Option<u64>,
}

/// The answer to `secret/init`.
#[alk_type]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Initialized {
    /// The new seed's 24 words: shown this once, and the only way to restore the seed if
    /// the passphrase or the file is lost. None when a mnemonic was imported.
    pub mnemonic: Option<String>,
    /// The seed's public fingerprint.
    pub fingerprint: String,
    /// The Argon2id passes `init` chose to take the target time here.
    pub kdf_iterations: u32,
}

/// An Ed25519 public key at a path.
#[alk_type]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicKeyInfo {
    /// The path, written with `'`.
    pub path: String,
    /// The raw 32-byte key, in hex.
    pub public_key: String,
    /// Its fingerprint, `ed25519:` and 64 hex digits, as node keys are named.
    pub fingerprint: String,
}

/// The answer to `secret/sign`.
#[alk_type]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signed {
    /// The path, written with `'`.
    pub path: String,
    /// The key that signed, in hex.
    pub public_key: String,
    /// The 64-byte Ed25519 signature.
    pub signature: Binary,
}

/// The answer to `secret/verify`.
#[alk_type]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// Whether the signature is the key's, over the message (strict Ed25519 verification).
    pub valid: bool,
}

/// The answer to `secret/encrypt`.
#[alk_type]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Encrypted {
    /// The self-describing ciphertext: format, key name and version, nonce, tag.
    pub ciphertext: Binary,
    /// The key name.
    pub key_name: String,
    /// The key version it was made with.
    pub key_version: u32,
}

/// The answer to `secret/decrypt`.
#[alk_type]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decrypted {
    /// The plaintext.
    pub plaintext: Binary,
    /// The key name the ciphertext names.
    pub key_name: String,
    /// The key version it was made with.
    pub key_version: u32,
}

/// The versions of a named key.
#[alk_type]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyInfo {
    /// The key name.
    pub key_name: String,
    /// The version `encrypt` uses.
    pub current_version: u32,
    /// The versions that no longer decrypt, lowest first.
    pub retired_versions: Vec<u32>,
}

/// An exported private key.
#[alk_type]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportedKey {
    /// The path, written with `'`.
    pub path: String,
    /// The 32-byte Ed25519 private key (its seed, as `ed25519-dalek` and node key files
    /// take it).
    pub private_key: Binary,
    /// Its public key, in hex.
    pub public_key: String,
}

/// The details of `WRONG_PASSPHRASE` and `TOO_MANY_ATTEMPTS`.
#[alk_type]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnlockRefused {
    /// Wrong passphrases given since the last unlock.
    pub failed_unlocks: u32,
    /// How long until the next attempt is heard, in milliseconds.
    pub retry_after_ms: u64,
}

/// The details of the key-version errors.
#[alk_type]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyVersionDetails {
    /// The key name.
    pub key_name: String,
    /// The version asked for.
    pub key_version: u32,
    /// The name's current version.
    pub current_version: u32,
}

/// A node's seed: derive, sign and encrypt without handing out a private key.
#[alk_service(namespace = "secret", version = "1.0.0")]
pub enum SecretProtocol {
    /// Whether there is a seed and whether it is unlocked, its public fingerprint, and the
    /// unlock backoff. Never the seed.
    #[alk_operation(query, output = SecretStatus, any_scopes = ["secret:use", "secret:admin"])]
    Status,

    /// Make the node's seed and seal it under `passphrase`: a new one (256 bits from the
    /// OS), whose 24-word mnemonic is returned this once, or the one `mnemonic` gives. The
    /// seed is unlocked afterwards.
    #[alk_operation(
        mutation,
        output = Initialized,
        scopes = ["secret:admin"],
        error(code = "ALREADY_INITIALIZED", status = 409, description = "the node has a seed already; its file must be removed by hand to make another"),
        error(code = "SEED_FILE", status = 500, description = "the seed file could not be read or written; the message says why")
    )]
    Init {
        /// The passphrase that seals the seed: at least 8 characters.
        passphrase: String,
        /// A BIP-39 mnemonic (12 to 24 English words) to import instead of a new seed.
        #[serde(default)]
        mnemonic: Option<String>,
    },

    /// Open the seed into memory with its passphrase. After a wrong one, the next attempt
    /// waits (1 s, doubling to 5 minutes by default).
    #[alk_operation(
        mutation,
        idempotent,
        output = SecretStatus,
        any_scopes = ["secret:use", "secret:admin"],
        error(code = "NOT_INITIALIZED", status = 409, description = "the node has no seed yet: `secret/init` makes one"),
        error(code = "WRONG_PASSPHRASE", status = 403, details = UnlockRefused, description = "the passphrase does not open the seed"),
        error(code = "TOO_MANY_ATTEMPTS", status = 429, details = UnlockRefused, description = "a wrong passphrase was given too recently: try again after `retry_after_ms`"),
        error(code = "SEED_FILE", status = 500, description = "the seed file could not be read or written; the message says why")
    )]
    Unlock {
        /// The passphrase the seed was sealed with.
        passphrase: String,
    },

    /// Zero the seed in memory, and every key derived from it.
    #[alk_operation(mutation, idempotent, output = SecretStatus, any_scopes = ["secret:use", "secret:admin"])]
    Lock,

    /// The Ed25519 public key at a hardened SLIP-0010 path, such as `m/44'/1234'/0'`.
    #[alk_operation(
        query,
        output = PublicKeyInfo,
        any_scopes = ["secret:use", "secret:admin"],
        error(code = "LOCKED", status = 423, description = "the seed is locked (or there is none): `secret/unlock` opens it")
    )]
    PublicKey {
        /// The path, such as `m/44'/1234'/0'`.
        path: String,
    },

    /// Sign a message with the Ed25519 key at a path.
    #[alk_operation(
        mutation,
        idempotent,
        output = Signed,
        any_scopes = ["secret:use", "secret:admin"],
        error(code = "LOCKED", status = 423, description = "the seed is locked (or there is none): `secret/unlock` opens it")
    )]
    Sign {
        /// The path, such as `m/44'/1234'/0'`.
        path: String,
        /// The message.
        message: Binary,
    },

    /// Check an Ed25519 signature, against a public key (hex) or the key at a path.
    #[alk_operation(
        query,
        output = Verified,
        any_scopes = ["secret:use", "secret:admin"],
        error(code = "LOCKED", status = 423, description = "the seed is locked (or there is none): `secret/unlock` opens it")
    )]
    Verify {
        /// The key's path; give this or `public_key`.
        #[serde(default)]
        path: Option<String>,
        /// The raw 32-byte public key, in hex; give this or `path`.
        #[serde(default)]
        public_key: Option<String>,
        /// The message.
        message: Binary,
        /// The 64-byte signature.
        signature: Binary,
    },

    /// Encrypt with the current version of a named key (XChaCha20-Poly1305). The
    /// ciphertext names the key and version, so `decrypt` needs nothing else but `aad`.
    #[alk_operation(
        mutation,
        idempotent,
        output = Encrypted,
        any_scopes = ["secret:use", "secret:admin"],
        error(code = "LOCKED", status = 423, description = "the seed is locked (or there is none): `secret/unlock` opens it")
    )]
    Encrypt {
        /// The key name: 1 to 64 of `A-Z a-z 0-9 . _ -`.
        key_name: String,
        /// The data to encrypt.
        plaintext: Binary,
        /// Data bound to the ciphertext but not in it; `decrypt` must be given the same.
        #[serde(default)]
        aad: Binary,
    },

    /// Decrypt a ciphertext `encrypt` made, with the `aad` it was made with.
    #[alk_operation(
        query,
        output = Decrypted,
        any_scopes = ["secret:use", "secret:admin"],
        error(code = "LOCKED", status = 423, description = "the seed is locked (or there is none): `secret/unlock` opens it"),
        error(code = "UNKNOWN_KEY_VERSION", status = 404, details = KeyVersionDetails, description = "the ciphertext names a key version that was never made"),
        error(code = "RETIRED_KEY_VERSION", status = 410, details = KeyVersionDetails, description = "the ciphertext's key version was retired and no longer decrypts"),
        error(code = "AAD_MISMATCH", status = 422, description = "the `aad` is not the one the ciphertext was made with"),
        error(code = "TAMPERED", status = 422, description = "the ciphertext was altered after it was made")
    )]
    Decrypt {
        /// The ciphertext.
        ciphertext: Binary,
        /// The associated data it was made with.
        #[serde(default)]
        aad: Binary,
    },

    /// Start a new version of a named key: `encrypt` uses it from now on, and older
    /// versions still decrypt until retired.
    #[alk_operation(
        mutation,
        output = KeyInfo,
        scopes = ["secret:admin"],
        error(code = "LOCKED", status = 423, description = "the seed is locked (or there is none): `secret/unlock` opens it"),
        error(code = "SEED_FILE", status = 500, description = "the seed file could not be read or written; the message says why")
    )]
    Rotate {
        /// The key name.
        key_name: String,
    },

    /// Retire a version of a named key: its ciphertexts no longer decrypt. The current
    /// version cannot be retired: rotate first.
    #[alk_operation(
        mutation,
        idempotent,
        output = KeyInfo,
        scopes = ["secret:admin"],
        error(code = "LOCKED", status = 423, description = "the seed is locked (or there is none): `secret/unlock` opens it"),
        error(code = "UNKNOWN_KEY_VERSION", status = 404, details = KeyVersionDetails, description = "the ciphertext names a key version that was never made"),
        error(code = "CURRENT_KEY_VERSION", status = 409, details = KeyVersionDetails, description = "the version is the one `encrypt` uses: rotate first"),
        error(code = "SEED_FILE", status = 500, description = "the seed file could not be read or written; the message says why")
    )]
    Retire {
        /// The key name.
        key_name: String,
        /// The version to retire.
        version: u32,
    },

    /// The named keys that have been rotated or retired (every other name is at version 1).
    #[alk_operation(query, output = Vec<KeyInfo>, any_scopes = ["secret:use", "secret:admin"])]
    Keys,

    /// EXPORTS A PRIVATE KEY: the Ed25519 private key at a path, to provision a node key
    /// from the seed. Internal (only other services of this node may call it) and
    /// admin-scoped; every call is in the audit log.
    #[alk_operation(
        query,
        internal,
        output = ExportedKey,
        scopes = ["secret:admin"],
        error(code = "LOCKED", status = 423, description = "the seed is locked (or there is none): `secret/unlock` opens it")
    )]
    ExportPrivateKey {
        /// The path, such as `m/44'/1234'/0'`.
        path: String,
    },
}

/// Why a seed file could not be read when the service started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeedFileError(String);

impl std::fmt::Display for SeedFileError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for SeedFileError {}

/// The `secret` service over one seed file.
pub struct SecretService {
    path: PathBuf,
    tuning: Tuning,
    backoff: Duration,
    backoff_max: Duration,
    state: RwLock<State>,
    attempts: Mutex<Attempts>,
    /// Unlock, init, rotate and retire one at a time: each runs Argon2id or rewrites the
    /// file, and running them side by side would only spend CPU or race on the file.
    writer: tokio::sync::Mutex<()>,
}

struct State {
    file: Option<SeedFile>,
    unlocked: Option<Arc<Unlocked>>,
}

#[derive(Default)]
struct Attempts {
    failures: u32,
    not_before: Option<Instant>,
}

impl SecretService {
    /// The service over the seed file `settings` names (locked), refusing core dumps first
    /// when they say so. A file that is there but cannot be read is an error.
    pub fn open(settings: &SecretSettings) -> Result<Self, SeedFileError> {
        if settings.refuse_core_dumps {
            refuse_core_dumps().map_err(|err| {
                SeedFileError(format!(
                    "cannot refuse core dumps (`refuse_core_dumps`): {err}"
                ))
            })?;
        }
        let path = match &settings.file {
            Some(path) => path.clone(),
            None => default_file().ok_or_else(|| {
                SeedFileError(
                    "neither XDG_DATA_HOME nor HOME is set: give `[secret] file`".to_string(),
                )
            })?,
        };
        let file = SeedFile::read(&path).map_err(SeedFileError)?;
        let millis = |ms: Option<std::num::NonZeroU64>, default| {
            ms.map_or(default, |ms| Duration::from_millis(ms.get()))
        };
        Ok(SecretService {
            path,
            tuning: Tuning {
                memory_kib: settings
                    .kdf_memory_kib
                    .map_or(DEFAULT_KDF_MEMORY_KIB, |kib| kib.get()),
                target: settings
                    .kdf_target_ms
                    .map_or(DEFAULT_KDF_TARGET, Duration::from_millis),
            },
            backoff: millis(settings.unlock_backoff_ms, DEFAULT_BACKOFF),
            backoff_max: millis(settings.unlock_backoff_max_ms, DEFAULT_BACKOFF_MAX),
            state: RwLock::new(State {
                file,
                unlocked: None,
            }),
            attempts: Mutex::default(),
            writer: tokio::sync::Mutex::new(()),
        })
    }

    /// The seed file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn state(&self) -> std::sync::RwLockReadGuard<'_, State> {
        self.state.read().expect("the state is never left torn")
    }

    fn state_mut(&self) -> std::sync::RwLockWriteGuard<'_, State> {
        self.state.write().expect("the state is never left torn")
    }

    fn unlocked(&self) -> Result<Arc<Unlocked>, CallError> {
        self.state().unlocked.clone().ok_or_else(|| {
            SecretErrors::locked("the seed is locked: `secret/unlock` opens it with its passphrase")
        })
    }

    fn status_now(&self) -> SecretStatus {
        let state = self.state();
        let attempts = self.attempts.lock().expect("never left torn");
        SecretStatus {
            state: match (&state.file, &state.unlocked) {
                (None, _) => SeedState::Uninitialized,
                (Some(_), None) => SeedState::Locked,
                (Some(_), Some(_)) => SeedState::Unlocked,
            },
            fingerprint: state.file.as_ref().map(|file| file.fingerprint.clone()),
            failed_unlocks: attempts.failures,
            retry_after_ms: attempts.wait().map(millis),
        }
    }

    /// Read the versions of `key_name` in place: encrypt and decrypt ask on every call.
    fn versions<T>(&self, key_name: &str, read: impl FnOnce(&KeyVersions) -> T) -> T {
        let state = self.state();
        read(
            state
                .file
                .as_ref()
                .and_then(|file| file.keys.get(key_name))
                .unwrap_or(&FIRST_VERSION),
        )
    }

    /// Change the keyring with `change` and write the file; the change is kept only when
    /// the file is written.
    async fn change_keys(
        &self,
        key_name: &str,
        change: impl FnOnce(&mut KeyVersions) -> Result<(), CallError>,
    ) -> Result<KeyInfo, CallError> {
        cipher::check_name(key_name)?;
        let _writer = self.writer.lock().await;
        let unlocked = self.unlocked()?;
        let mut file = self
            .state()
            .file
            .clone()
            .expect("an unlocked seed has its file");
        let mut keys = file.keys.clone();
        change(keys.entry(key_name.to_string()).or_insert(FIRST_VERSION))?;
        file.set_keys(keys, &unlocked.keyring_key()[..]);
        let written = file.clone();
        let path = self.path.clone();
        run_blocking(move || written.write(&path))
            .await?
            .map_err(|err| self.file_error("write", err))?;
        self.state_mut().file = Some(file);
        Ok(self.versions(key_name, |versions| key_info(key_name, versions)))
    }

    fn file_error(&self, verb: &str, err: impl std::fmt::Display) -> CallError {
        tracing::error!(target: "alknet::secret", path = %self.path.display(), "cannot {verb} the seed file: {err}");
        SecretErrors::seed_file(format!("cannot {verb} the seed file: {err}"))
    }
}

impl Attempts {
    fn wait(&self) -> Option<Duration> {
        self.not_before
            .and_then(|at| at.checked_duration_since(Instant::now()))
            .filter(|wait| !wait.is_zero())
    }

    fn refused(&self, wait: Duration) -> UnlockRefused {
        UnlockRefused {
            failed_unlocks: self.failures,
            retry_after_ms: millis(wait),
        }
    }
}

fn millis(duration: Duration) -> u64 {
    // Rounded up: a client that waits this long is heard.
    duration.as_micros().div_ceil(1000) as u64
}

/// The versions of a name never rotated.
const FIRST_VERSION: KeyVersions = KeyVersions {
    current: 1,
    retired: std::collections::BTreeSet::new(),
};

fn key_info(key_name: &str, versions: &KeyVersions) -> KeyInfo {
    KeyInfo {
        key_name: key_name.to_string(),
        current_version: versions.current,
        retired_versions: versions.retired.iter().copied().collect(),
    }
}

fn default_file() -> Option<PathBuf> {
    Some(alknet_runtime::config::data_dir()?.join("secret.json"))
}

/// Argon2id and file writes take long enough to hold up other tasks: run them on a
/// blocking thread.
async fn run_blocking<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, CallError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|err| CallError::internal(format!("the blocking task failed: {err}")))
}

fn audit(ctx: &OperationContext, subject: &str) {
    tracing::info!(
        target: "alknet::audit",
        caller = ctx.identity().map_or("anonymous", |identity| identity.id.as_str()),
        operation = %ctx.operation().id,
        subject,
        "secret used"
    );
}

fn public_key_hex(key: &VerifyingKey) -> String {
    key.as_bytes().iter().map(|b| format!("{b:02x}")).collect()
}

fn parse_public_key(text: &str) -> Result<VerifyingKey, CallError> {
    alknet_runtime::credentials::key_from_hex(text)
        .and_then(|bytes| VerifyingKey::from_bytes(&bytes).ok())
        .ok_or_else(|| {
            CallError::invalid_input("`public_key` must be an Ed25519 key: 64 hex digits")
        })
}

fn check_passphrase(passphrase: &str) -> Result<(), CallError> {
    if passphrase.chars().count() < MIN_PASSPHRASE_CHARS {
        return Err(CallError::invalid_input(format!(
            "the passphrase is shorter than {MIN_PASSPHRASE_CHARS} characters"
        )));
    }
    Ok(())
}

/// The seed a mnemonic gives, or a fresh one and its mnemonic.
fn new_seed(mnemonic: Option<&str>) -> Result<(memory::SeedMemory, Option<String>), CallError> {
    let (mnemonic, shown) = match mnemonic {
        Some(words) => {
            let normalized = Zeroizing::new(
                words
                    .split_whitespace()
                    .map(str::to_lowercase)
                    .collect::<Vec<_>>()
                    .join(" "),
            );
            let mnemonic = bip39::Mnemonic::parse_normalized(&normalized).map_err(|err| {
                CallError::invalid_input(format!("the mnemonic is not BIP-39 English: {err}"))
            })?;
            (mnemonic, false)
        }
        None => {
            let mut entropy = Zeroizing::new([0u8; 32]);
            getrandom::fill(&mut entropy[..])
                .map_err(|err| CallError::internal(format!("the OS gave no randomness: {err}")))?;
            let mnemonic = bip39::Mnemonic::from_entropy(&entropy[..])
                .map_err(|err| CallError::internal(format!("BIP-39 refused 32 bytes: {err}")))?;
            (mnemonic, true)
        }
    };
    let mut seed = memory::SeedMemory::new();
    let derived = Zeroizing::new(mnemonic.to_seed_normalized(""));
    seed.seed_mut().copy_from_slice(&derived[..]);
    Ok((seed, shown.then(|| mnemonic.to_string())))
}

impl SecretHandler for SecretService {
    async fn status(
        &self,
        _ctx: &OperationContext,
        _request: Status,
    ) -> Result<SecretStatus, CallError> {
        Ok(self.status_now())
    }

    async fn init(&self, ctx: &OperationContext, request: Init) -> Result<Initialized, CallError> {
        let passphrase = Zeroizing::new(request.passphrase);
        let mnemonic = request.mnemonic.map(Zeroizing::new);
        check_passphrase(&passphrase)?;
        let _writer = self.writer.lock().await;
        if self.state().file.is_some() {
            // The path stays in the node's log: callers need not learn the node's layout.
            tracing::info!(target: "alknet::secret", path = %self.path.display(), "init refused: the seed file exists");
            return Err(SecretErrors::already_initialized(
                "the node has a seed already: remove its file by hand to make another",
            ));
        }
        let (seed, shown) = new_seed(mnemonic.as_deref().map(String::as_str))?;
        let unlocked = Unlocked::new(seed);
        let fingerprint = unlocked.fingerprint();
        audit(ctx, &fingerprint);
        let unlocked = Arc::new(unlocked);
        let (path, tuning) = (self.path.clone(), self.tuning);
        let sealing = unlocked.clone();
        let file = run_blocking(move || {
            let file = SeedFile::seal(
                sealing.seed(),
                sealing.fingerprint(),
                &passphrase,
                &tuning,
                &sealing.keyring_key()[..],
            )?;
            file.write(&path).map_err(|err| err.to_string())?;
            Ok::<_, String>(file)
        })
        .await?
        .map_err(|err| self.file_error("write", err))?;
        let kdf_iterations = file.kdf_iterations();
        let mut state = self.state_mut();
        state.file = Some(file);
        state.unlocked = Some(unlocked);
        Ok(Initialized {
            mnemonic: shown,
            fingerprint,
            kdf_iterations,
        })
    }

    async fn unlock(
        &self,
        ctx: &OperationContext,
        request: Unlock,
    ) -> Result<SecretStatus, CallError> {
        let passphrase = Zeroizing::new(request.passphrase);
        let _writer = self.writer.lock().await;
        let Some(file) = self.state().file.clone() else {
            return Err(SecretErrors::not_initialized(
                "the node has no seed yet: `secret/init` makes one",
            ));
        };
        if self.state().unlocked.is_some() {
            return Ok(self.status_now());
        }
        {
            let attempts = self.attempts.lock().expect("never left torn");
            if let Some(wait) = attempts.wait() {
                return Err(SecretErrors::too_many_attempts(
                    format!(
                        "{} wrong passphrases: the next attempt is heard in {} ms",
                        attempts.failures,
                        millis(wait)
                    ),
                    attempts.refused(wait),
                ));
            }
        }
        audit(ctx, &file.fingerprint);
        let opened = run_blocking(move || file.open(&passphrase)).await?;
        let seed = match opened {
            Ok(seed) => seed,
            Err(OpenError::WrongPassphrase) => {
                let mut attempts = self.attempts.lock().expect("never left torn");
                attempts.failures = attempts.failures.saturating_add(1);
                let doublings = (attempts.failures - 1).min(31);
                let wait = self
                    .backoff
                    .saturating_mul(1 << doublings)
                    .min(self.backoff_max);
                attempts.not_before = Some(Instant::now() + wait);
                tracing::warn!(target: "alknet::audit", failures = attempts.failures, "a wrong passphrase for the seed");
                return Err(SecretErrors::wrong_passphrase(
                    format!(
                        "the passphrase does not open the seed; the next attempt is heard in {} ms",
                        millis(wait)
                    ),
                    attempts.refused(wait),
                ));
            }
            Err(OpenError::Invalid(why)) => return Err(self.file_error("open", why)),
        };
        let unlocked = Unlocked::new(seed);
        let state = self.state();
        let file = state.file.as_ref().expect("read above");
        if unlocked.fingerprint() != file.fingerprint
            || !file.keys_are_authentic(&unlocked.keyring_key()[..])
        {
            return Err(self.file_error(
                "trust",
                "its fingerprint or keyring does not match the seed inside it",
            ));
        }
        drop(state);
        *self.attempts.lock().expect("never left torn") = Attempts::default();
        self.state_mut().unlocked = Some(Arc::new(unlocked));
        Ok(self.status_now())
    }

    async fn lock(
        &self,
        ctx: &OperationContext,
        _request: Lock,
    ) -> Result<SecretStatus, CallError> {
        // Calls in flight hold the keys until they finish; the last one zeroes them.
        if let Some(unlocked) = self.state_mut().unlocked.take() {
            audit(ctx, &unlocked.fingerprint());
        }
        Ok(self.status_now())
    }

    async fn public_key(
        &self,
        ctx: &OperationContext,
        request: PublicKey,
    ) -> Result<PublicKeyInfo, CallError> {
        let path = DerivationPath::parse(&request.path)?;
        let key = self.unlocked()?.signing_key(&path).verifying_key();
        audit(ctx, &request.path);
        Ok(PublicKeyInfo {
            path: path.to_string(),
            public_key: public_key_hex(&key),
            fingerprint: alknet_runtime::key_fingerprint(key.as_bytes()),
        })
    }

    async fn sign(&self, ctx: &OperationContext, request: Sign) -> Result<Signed, CallError> {
        let path = DerivationPath::parse(&request.path)?;
        let key = self.unlocked()?.signing_key(&path);
        audit(ctx, &request.path);
        Ok(Signed {
            path: path.to_string(),
            public_key: public_key_hex(&key.verifying_key()),
            signature: Binary(key.sign(&request.message).to_bytes().to_vec()),
        })
    }

    async fn verify(&self, ctx: &OperationContext, request: Verify) -> Result<Verified, CallError> {
        let key = match (&request.path, &request.public_key) {
            (Some(text), None) => {
                let path = DerivationPath::parse(text)?;
                audit(ctx, text);
                self.unlocked()?.signing_key(&path).verifying_key()
            }
            (None, Some(key)) => parse_public_key(key)?,
            _ => {
                return Err(CallError::invalid_input(
                    "give exactly one of `path` and `public_key`",
                ));
            }
        };
        let signature = Ed25519Signature::from_slice(&request.signature).map_err(|_| {
            CallError::invalid_input(format!(
                "`signature` is {} bytes: an Ed25519 signature is 64",
                request.signature.len()
            ))
        })?;
        Ok(Verified {
            valid: key.verify_strict(&request.message, &signature).is_ok(),
        })
    }

    async fn encrypt(
        &self,
        ctx: &OperationContext,
        request: Encrypt,
    ) -> Result<Encrypted, CallError> {
        cipher::check_name(&request.key_name)?;
        let unlocked = self.unlocked()?;
        let version = self.versions(&request.key_name, |versions| versions.current);
        let key = unlocked.version_key(&request.key_name, version);
        audit(ctx, &request.key_name);
        let ciphertext = cipher::encrypt(
            &key,
            &request.key_name,
            version,
            &request.plaintext,
            &request.aad,
        )?;
        Ok(Encrypted {
            ciphertext: Binary(ciphertext),
            key_name: request.key_name,
            key_version: version,
        })
    }

    async fn decrypt(
        &self,
        ctx: &OperationContext,
        request: Decrypt,
    ) -> Result<Decrypted, CallError> {
        let parsed = cipher::parse(&request.ciphertext)?;
        let unlocked = self.unlocked()?;
        let (current_version, retired) = self.versions(parsed.name, |versions| {
            (versions.current, versions.retired.contains(&parsed.version))
        });
        audit(ctx, parsed.name);
        let details = || KeyVersionDetails {
            key_name: parsed.name.to_string(),
            key_version: parsed.version,
            current_version,
        };
        if parsed.version == 0 || parsed.version > current_version {
            return Err(SecretErrors::unknown_key_version(
                format!(
                    "`{}` has no version {}: its current version is {}",
                    parsed.name, parsed.version, current_version
                ),
                details(),
            ));
        }
        if retired {
            return Err(SecretErrors::retired_key_version(
                format!("version {} of `{}` is retired", parsed.version, parsed.name),
                details(),
            ));
        }
        let key = unlocked.version_key(parsed.name, parsed.version);
        let plaintext =
            cipher::decrypt(&key, &parsed, &request.aad).map_err(|refusal| match refusal {
                cipher::Refusal::AadMismatch => SecretErrors::aad_mismatch(
                    "the `aad` is not the one the ciphertext was made with",
                ),
                cipher::Refusal::Tampered => {
                    SecretErrors::tampered("the ciphertext was altered after it was made")
                }
            })?;
        Ok(Decrypted {
            plaintext: Binary(plaintext),
            key_name: parsed.name.to_string(),
            key_version: parsed.version,
        })
    }

    async fn rotate(&self, ctx: &OperationContext, request: Rotate) -> Result<KeyInfo, CallError> {
        audit(ctx, &request.key_name);
        self.change_keys(&request.key_name, |versions| {
            versions.current = versions.current.checked_add(1).ok_or_else(|| {
                CallError::invalid_input("the key has had 4294967295 versions: use another name")
            })?;
            Ok(())
        })
        .await
    }

    async fn retire(&self, ctx: &OperationContext, request: Retire) -> Result<KeyInfo, CallError> {
        audit(ctx, &request.key_name);
        let (name, version) = (request.key_name.clone(), request.version);
        self.change_keys(&request.key_name, move |versions| {
            let details = || KeyVersionDetails {
                key_name: name.clone(),
                key_version: version,
                current_version: versions.current,
            };
            if version == 0 || version > versions.current {
                return Err(SecretErrors::unknown_key_version(
                    format!(
                        "`{name}` has no version {version}: its current version is {}",
                        versions.current
                    ),
                    details(),
                ));
            }
            if version == versions.current {
                return Err(SecretErrors::current_key_version(
                    format!("version {version} is the one `encrypt` uses: rotate `{name}` first"),
                    details(),
                ));
            }
            versions.retired.insert(version);
            Ok(())
        })
        .await
    }

    async fn keys(
        &self,
        _ctx: &OperationContext,
        _request: Keys,
    ) -> Result<Vec<KeyInfo>, CallError> {
        let state = self.state();
        Ok(state
            .file
            .iter()
            .flat_map(|file| &file.keys)
            .map(|(name, versions)| key_info(name, versions))
            .collect())
    }

    async fn export_private_key(
        &self,
        ctx: &OperationContext,
        request: ExportPrivateKey,
    ) -> Result<ExportedKey, CallError> {
        let path = DerivationPath::parse(&request.path)?;
        let key = self.unlocked()?.signing_key(&path);
        tracing::warn!(
            target: "alknet::audit",
            caller = ctx.identity().map_or("anonymous", |identity| identity.id.as_str()),
            path = %path,
            "a private key was exported"
        );
        Ok(ExportedKey {
            path: path.to_string(),
            private_key: Binary(key.to_bytes().to_vec()),
            public_key: public_key_hex(&key.verifying_key()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::tests::take_freed;

    #[tokio::test]
    async fn lock_zeroes_the_seed_page_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let settings = SecretSettings {
            file: Some(dir.path().join("secret.json")),
            kdf_memory_kib: std::num::NonZeroU32::new(1024),
            kdf_target_ms: Some(0),
            ..SecretSettings::default()
        };
        let env = OperationEnv::builder()
            .local(SecretProtocol::local(
                SecretService::open(&settings).unwrap(),
            ))
            .build()
            .unwrap()
            .with_caller(
                Caller::new().identity(Identity::new("user:ops").with_scopes(["secret:admin"])),
            );
        let secret = SecretClient::new(env);
        secret
            .init("correct horse battery".into(), None)
            .await
            .unwrap();
        secret
            .sign("m/0'".into(), Binary(b"hi".to_vec()))
            .await
            .unwrap();
        take_freed();

        secret.lock().await.unwrap();
        // No call holds the keys, so the seed's page is zeroed as `lock` answers.
        assert_eq!(take_freed(), [true]);
        let err = secret.public_key("m/0'".into()).await.unwrap_err();
        assert_eq!(err.code, "LOCKED");
    }

    #[test]
    fn a_mnemonic_gives_its_bip39_seed() {
        // BIP-39's reference vector for this mnemonic with an empty passphrase.
        let words = "abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon about";
        let (seed, shown) = new_seed(Some(&words.to_uppercase())).unwrap();
        assert_eq!(shown, None);
        let hex: String = seed.seed().iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(
            hex,
            "5eb00bbddcf069084889a8ab9155568165f5c453ccb85e70811aaed6f6da5fc19a5ac40b389cd370d086206dec8aa6c43daea6690f20ad3d8d48b2d2ce9e38e4"
        );
        let (fresh, shown) = new_seed(None).unwrap();
        let words = shown.unwrap();
        assert_eq!(words.split(' ').count(), 24);
        let (again, _) = new_seed(Some(&words)).unwrap();
        assert_eq!(fresh.seed(), again.seed());
    }
}
