//! [`AuthServiceIdentities`]: a node's callers resolved by the `auth` service, wherever it
//! runs — on the cluster's auth node, for a head.

use std::sync::Arc;
use std::time::Instant;

use alknet_runtime::arc_swap::ArcSwap;
use alknet_runtime::config::DynamicConfig;
use alknet_runtime::credentials::api_key_hash;
use alknet_runtime::futures::FutureExt;
use alknet_runtime::futures::future::BoxFuture;
use alknet_runtime::{
    CallError, Caller, Credential, Identity, IdentityProvider, KeyHolder, OperationEnv,
};

use crate::{AuthClient, AuthResult};

/// The most answers kept at once; past it, the least used go first.
const MOST_ANSWERS: usize = 10_000;

/// Resolves credentials by asking the `auth` service through an [`OperationEnv`] — in
/// this process, or on the node `[services]` places it on — as `service:auth-client`,
/// holding `auth:verify` (over the wire, the peer checks this node's own key as well).
///
/// Each answer — an identity, or a refusal — is kept for `[auth] cache_ms` (5 s) from when
/// it came, at most 10,000 of them, keyed by the credential's SHA-256: a key revoked on the
/// auth node may be accepted here for that long, and a token or key that expires is too.
/// An error that is not an answer (the auth node cannot be reached: `UNAVAILABLE`) is
/// never kept.
#[derive(Clone)]
pub struct AuthServiceIdentities {
    auth: AuthClient,
    config: Arc<ArcSwap<DynamicConfig>>,
    answers: Arc<quick_cache::sync::Cache<String, Kept>>,
}

/// An answer, and when it was asked for.
type Kept = (Instant, Result<KeyHolder, CallError>);

impl AuthServiceIdentities {
    /// Ask the `auth` service `env` reaches, keeping answers for `config`'s live
    /// `[auth] cache_ms`.
    pub fn new(env: &OperationEnv, config: Arc<ArcSwap<DynamicConfig>>) -> Self {
        let asker = Identity::new("service:auth-client").with_scopes(["auth:verify"]);
        AuthServiceIdentities {
            auth: AuthClient::new(env.with_caller(Caller::new().identity(asker))),
            config,
            answers: Arc::new(quick_cache::sync::Cache::new(MOST_ANSWERS)),
        }
    }

    /// The answer for `credential`: kept, or asked for and kept.
    async fn answer(&self, credential: Credential<'_>) -> Result<KeyHolder, CallError> {
        let key = match credential {
            Credential::KeyFingerprint(fingerprint) => format!("key {fingerprint}"),
            Credential::ApiKey(key) => format!("api_key {}", api_key_hash(key)),
            Credential::Token(token) => format!("token {}", api_key_hash(token)),
        };
        let keep = self.config.load().auth_cache;
        if let Some((asked, answer)) = self.answers.get(&key)
            && asked.elapsed() < keep
        {
            return answer;
        }
        let asked = Instant::now();
        let result = match credential {
            Credential::KeyFingerprint(fingerprint) => {
                self.auth
                    .verify_pubkey(Some(fingerprint.to_string()), None)
                    .await
            }
            Credential::ApiKey(key) => self.auth.verify_api_key(key.to_string()).await,
            Credential::Token(token) => self.auth.verify_token(token.to_string()).await,
        }?;
        let answer = holder(result);
        if !keep.is_zero() {
            self.answers.insert(key, (asked, answer.clone()));
        }
        answer
    }
}

/// What an `auth` answer means here: the identity a valid credential proves, or the
/// refusal its caller gets.
fn holder(result: AuthResult) -> Result<KeyHolder, CallError> {
    match (result.valid, result.identity) {
        (true, Some(identity)) => Ok(KeyHolder {
            identity: Arc::new(identity),
            cluster: result.cluster,
        }),
        _ => Err(CallError::unauthenticated(result.reason.unwrap_or_else(
            || "the auth service refused the credential".to_string(),
        ))),
    }
}

impl IdentityProvider for AuthServiceIdentities {
    fn resolve<'a>(
        &'a self,
        credential: Credential<'a>,
    ) -> BoxFuture<'a, Result<Arc<Identity>, CallError>> {
        async move { Ok(self.answer(credential).await?.identity) }.boxed()
    }

    fn resolve_key<'a>(
        &'a self,
        fingerprint: &'a str,
    ) -> BoxFuture<'a, Result<KeyHolder, CallError>> {
        self.answer(Credential::KeyFingerprint(fingerprint)).boxed()
    }
}
