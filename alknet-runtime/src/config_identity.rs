//! [`ConfigIdentityProvider`]: credentials resolved against the live [`DynamicConfig`].

use std::sync::{Arc, RwLock};

use arc_swap::ArcSwap;
use futures::future::BoxFuture;
use rustc_hash::FxHashMap;
use siphasher::sip128::SipHasher;
use subtle::ConstantTimeEq;

use crate::config::{ApiKeyEntry, DynamicConfig};
use crate::credentials::{api_key_digest, parse_token, unix_now};
use crate::{CallError, Credential, Identity, IdentityProvider, KeyHolder};

/// Resolves key fingerprints, API keys and signed tokens (formats in
/// [`credentials`](crate::credentials)) against the dynamic configuration, loading the
/// current snapshot lock-free on every lookup: a reload applies to the next lookup.
///
/// An API key that verified once is recognised again by a keyed SipHash-2-4 (128-bit, with
/// a secret drawn at start) instead of its SHA-256, for as long as the configuration
/// snapshot it was verified against is in force: the provider never keeps a key, only
/// that MAC and which entry matched, and any reload starts over. Expiry is checked on
/// every lookup.
///
/// ```
/// use alknet_runtime::config::ConfigServiceImpl;
/// use alknet_runtime::credentials::api_key_hash;
/// use alknet_runtime::{ConfigIdentityProvider, Credential, IdentityProvider};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let key = "alk_0123456789abcdefghijklmnopqrstuvwxyzABCDEFG";
/// let config = ConfigServiceImpl::from_text(
///     format!(
///         "[[api_keys]]\nid = \"ci\"\nhash = \"{}\"\nidentity = \"svc:ci\"\nscopes = [\"echo:admin\"]\n",
///         api_key_hash(key)
///     ),
///     "example",
/// )
/// .unwrap();
/// let provider = ConfigIdentityProvider::new(config.shared());
/// let ci = provider.resolve(Credential::ApiKey(key)).await.unwrap();
/// assert_eq!(ci.id, "svc:ci");
/// assert!(provider.resolve(Credential::ApiKey("alk_")).await.is_err());
/// # }
/// ```
#[derive(Clone)]
pub struct ConfigIdentityProvider {
    config: Arc<ArcSwap<DynamicConfig>>,
    verified: Arc<VerifiedKeys>,
}

/// API keys that verified against one configuration snapshot, by their MAC.
struct VerifiedKeys {
    /// `None` without the OS's random source: a guessable secret would make the MAC
    /// forgeable, so every lookup then pays for its SHA-256.
    mac: Option<SipHasher>,
    current: RwLock<Option<Verified>>,
}

/// The snapshot the indices point into (held, so that its address cannot be reused by
/// another snapshot while they do), and each verified key's MAC with its entry's index.
type Verified = (Arc<DynamicConfig>, FxHashMap<u128, usize>);

impl VerifiedKeys {
    fn new() -> Self {
        let mut secret = [0u8; 16];
        let mac = getrandom::fill(&mut secret)
            .is_ok()
            .then(|| SipHasher::new_with_key(&secret));
        VerifiedKeys {
            mac,
            current: RwLock::new(None),
        }
    }

    /// The index in `config.api_keys` of the entry `key` matches: the one remembered for
    /// this very snapshot, else the one its SHA-256 finds, which is then remembered.
    fn index(&self, config: &Arc<DynamicConfig>, key: &str) -> Result<usize, CallError> {
        let Some(hasher) = &self.mac else {
            return verified_index(config, key);
        };
        let mac = hasher.hash(key.as_bytes()).into();
        if let Some(index) = self.find(config, mac) {
            return Ok(index);
        }
        let index = verified_index(config, key)?;
        self.remember(config, mac, index);
        Ok(index)
    }

    fn find(&self, config: &Arc<DynamicConfig>, mac: u128) -> Option<usize> {
        let current = self.current.read().unwrap_or_else(|p| p.into_inner());
        let (snapshot, keys) = current.as_ref()?;
        Arc::ptr_eq(snapshot, config)
            .then(|| keys.get(&mac).copied())
            .flatten()
    }

    fn remember(&self, config: &Arc<DynamicConfig>, mac: u128, index: usize) {
        let mut current = self.current.write().unwrap_or_else(|p| p.into_inner());
        match &mut *current {
            Some((snapshot, keys)) if Arc::ptr_eq(snapshot, config) => {
                keys.insert(mac, index);
            }
            // A newer snapshot starts over; the old one's entries are gone with it.
            _ => *current = Some((config.clone(), FxHashMap::from_iter([(mac, index)]))),
        }
    }
}

impl ConfigIdentityProvider {
    /// A provider reading `config` (from [`ConfigServiceImpl::shared`](crate::config::ConfigServiceImpl::shared)).
    pub fn new(config: Arc<ArcSwap<DynamicConfig>>) -> Self {
        ConfigIdentityProvider {
            config,
            verified: Arc::new(VerifiedKeys::new()),
        }
    }

    /// Resolve `credential` now, without a future, sharing the configured identity rather
    /// than copying it.
    pub fn resolve_now(&self, credential: Credential<'_>) -> Result<Arc<Identity>, CallError> {
        let config = self.config.load();
        match credential {
            Credential::KeyFingerprint(fingerprint) => {
                key_holder(&config, fingerprint).map(|holder| holder.identity.clone())
            }
            Credential::ApiKey(key) => {
                unexpired(&config.api_keys[self.verified.index(&config, key)?])
            }
            Credential::Token(token) => signed_token(&config, token),
        }
    }
}

impl IdentityProvider for ConfigIdentityProvider {
    fn resolve<'a>(
        &'a self,
        credential: Credential<'a>,
    ) -> BoxFuture<'a, Result<Arc<Identity>, CallError>> {
        Box::pin(futures::future::ready(self.resolve_now(credential)))
    }

    /// The `[[public_keys]]` entry of `fingerprint`, with its `cluster` marker, from the
    /// snapshot in force now: a reload that adds or removes the marker applies to the
    /// next lookup.
    fn resolve_key<'a>(
        &'a self,
        fingerprint: &'a str,
    ) -> BoxFuture<'a, Result<KeyHolder, CallError>> {
        let holder = key_holder(&self.config.load(), fingerprint).cloned();
        Box::pin(futures::future::ready(holder))
    }
}

fn key_holder<'a>(
    config: &'a DynamicConfig,
    fingerprint: &str,
) -> Result<&'a KeyHolder, CallError> {
    config.public_keys.get(fingerprint).ok_or_else(|| {
        CallError::unauthenticated(format!("the key `{fingerprint}` is not allowed"))
    })
}

/// The index of the entry whose hash is `key`'s SHA-256.
fn verified_index(config: &DynamicConfig, key: &str) -> Result<usize, CallError> {
    let digest = api_key_digest(key)?;
    // Every stored hash is compared, in constant time, so the time taken says nothing
    // about which key (or how much of a hash) matched.
    let digest = words(&digest);
    let mut found = None;
    for (index, entry) in config.api_keys.iter().enumerate() {
        if bool::from(words(&entry.hash).ct_eq(&digest)) {
            found = Some(index);
        }
    }
    found.ok_or_else(|| CallError::unauthenticated("the API key is not valid"))
}

fn unexpired(entry: &ApiKeyEntry) -> Result<Arc<Identity>, CallError> {
    if let Some(expires_at) = entry.expires_at
        && unix_now() >= expires_at
    {
        return Err(CallError::unauthenticated(format!(
            "the API key `{}` expired at {expires_at} (Unix seconds)",
            entry.id
        )));
    }
    Ok(entry.identity.clone())
}

/// A digest as four words: `subtle` compares each element with an optimization barrier,
/// so four words cost an eighth of 32 bytes and are just as constant-time.
fn words(digest: &[u8; 32]) -> [u64; 4] {
    let mut words = [0u64; 4];
    for (word, chunk) in words.iter_mut().zip(digest.chunks_exact(8)) {
        let mut bytes = [0u8; 8];
        bytes.copy_from_slice(chunk);
        *word = u64::from_ne_bytes(bytes);
    }
    words
}

fn signed_token(config: &DynamicConfig, token: &str) -> Result<Arc<Identity>, CallError> {
    let parsed = parse_token(token)?;
    let key = config.token_keys.get(parsed.key_id).ok_or_else(|| {
        CallError::unauthenticated(format!(
            "the token is signed by `{}`, which is not a token key of this node",
            parsed.key_id
        ))
    })?;
    key.public_key
        .verify_strict(parsed.message, &parsed.signature)
        .map_err(|_| CallError::unauthenticated("the token's signature does not verify"))?;
    let window = config.token_window.as_secs() as i64;
    let skew = unix_now().saturating_sub(parsed.timestamp);
    if skew.abs() > window {
        return Err(CallError::unauthenticated(format!(
            "the token was signed {} s {}, outside the ±{window} s window",
            skew.abs(),
            if skew > 0 { "ago" } else { "in the future" }
        )));
    }
    Ok(key.identity.clone())
}
