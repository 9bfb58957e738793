//! [`ConfigIdentityProvider`]: credentials resolved against the live [`DynamicConfig`].

use std::sync::Arc;

use arc_swap::ArcSwap;
use futures::future::BoxFuture;
use subtle::ConstantTimeEq;

use crate::config::DynamicConfig;
use crate::credentials::{api_key_digest, parse_token, unix_now};
use crate::{CallError, Credential, Identity, IdentityProvider};

/// Resolves key fingerprints, API keys and signed tokens (formats in
/// [`credentials`](crate::credentials)) against the dynamic configuration, loading the
/// current snapshot lock-free on every lookup: a reload applies to the next lookup.
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
}

impl ConfigIdentityProvider {
    /// A provider reading `config` (from [`ConfigServiceImpl::shared`](crate::config::ConfigServiceImpl::shared)).
    pub fn new(config: Arc<ArcSwap<DynamicConfig>>) -> Self {
        ConfigIdentityProvider { config }
    }

    /// Resolve `credential` now, without a future.
    pub fn resolve_now(&self, credential: Credential<'_>) -> Result<Identity, CallError> {
        self.resolve_shared(credential)
            .map(|identity| (*identity).clone())
    }

    /// Resolve `credential` now, sharing the configured identity rather than copying it:
    /// what an adapter hands to [`Caller::identity`](crate::Caller::identity) per request.
    pub fn resolve_shared(&self, credential: Credential<'_>) -> Result<Arc<Identity>, CallError> {
        let config = self.config.load();
        match credential {
            Credential::KeyFingerprint(fingerprint) => {
                config.public_keys.get(fingerprint).cloned().ok_or_else(|| {
                    CallError::unauthenticated(format!("the key `{fingerprint}` is not allowed"))
                })
            }
            Credential::ApiKey(key) => api_key(&config, key),
            Credential::Token(token) => signed_token(&config, token),
        }
    }
}

impl IdentityProvider for ConfigIdentityProvider {
    fn resolve<'a>(
        &'a self,
        credential: Credential<'a>,
    ) -> BoxFuture<'a, Result<Identity, CallError>> {
        Box::pin(futures::future::ready(self.resolve_now(credential)))
    }
}

fn api_key(config: &DynamicConfig, key: &str) -> Result<Arc<Identity>, CallError> {
    let digest = api_key_digest(key)?;
    // Every stored hash is compared, in constant time, so the time taken says nothing
    // about which key (or how much of a hash) matched.
    let digest = words(&digest);
    let mut found = None;
    for entry in &config.api_keys {
        if bool::from(words(&entry.hash).ct_eq(&digest)) {
            found = Some(entry);
        }
    }
    let entry = found.ok_or_else(|| CallError::unauthenticated("the API key is not valid"))?;
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
