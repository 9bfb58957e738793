//! `auth`: verifies credentials against the node's configuration and answers access
//! questions (SPEC §11).
//!
//! Who may ask: the operations that check a credential (`verify_pubkey`, `verify_token`,
//! `verify_api_key`) answer with the full identity a valid credential proves, or why one is
//! not valid (naming an expired key's id), so only trusted callers may ask — those holding
//! `auth:verify` (or `auth:admin`), such as a gateway node's key. Anyone may ask about
//! themselves: `whoami` and `check_access` answer only for the caller's own identity, and
//! tell it no more than calling the operation would.
//!
//! ```
//! use std::sync::Arc;
//! use alknet_auth::{AuthClient, AuthProtocol, AuthService};
//! use alknet_runtime::config::ConfigServiceImpl;
//! use alknet_runtime::{Caller, Identity, OperationEnv, codes};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let config = Arc::new(ConfigServiceImpl::embedded());
//! let env = OperationEnv::builder()
//!     .local(AuthProtocol::local(AuthService::new(config)))
//!     .build()
//!     .unwrap();
//! let auth = AuthClient::new(env.clone());
//! assert_eq!(auth.whoami().await.unwrap(), None);
//! let err = auth.verify_api_key("alk_nope".into()).await.unwrap_err();
//! assert_eq!(err.code, codes::UNAUTHENTICATED);
//!
//! let gateway = Identity::new("node:gateway").with_scopes(["auth:verify"]);
//! let auth = AuthClient::new(env.with_caller(Caller::new().identity(gateway)));
//! let answer = auth.verify_api_key("alk_nope".into()).await.unwrap();
//! assert!(!answer.valid);
//! # }
//! ```

#![deny(missing_docs, warnings)]

use std::sync::Arc;

use alknet_runtime::config::{ConfigError, ConfigServiceImpl, ReloadPart, ReloadReport};
use alknet_runtime::credentials::key_from_hex;
use alknet_runtime::prelude::*;
use alknet_runtime::{
    ConfigIdentityProvider, Credential, IdentityProvider, KeyHolder, codes, key_fingerprint,
};

mod identities;

pub use identities::AuthServiceIdentities;

/// The answer to a credential check.
#[alk_type]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthResult {
    /// Whether the credential is valid.
    pub valid: bool,
    /// The identity it proves, when valid.
    pub identity: Option<Identity>,
    /// Why it is not valid.
    pub reason: Option<String>,
    /// Whether a valid key (`verify_pubkey`) is a cluster node's, whose calls may speak
    /// for the callers it admitted; false for every other credential.
    #[serde(default)]
    pub cluster: bool,
}

/// The answer to `auth/check_access`.
#[alk_type]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessDecision {
    /// Whether the caller may call the operation.
    pub allowed: bool,
    /// The error code a call would fail with (`NOT_FOUND`, `UNAUTHENTICATED`, `FORBIDDEN`).
    pub code: Option<String>,
    /// Why not.
    pub reason: Option<String>,
}

/// Verifies identities and answers access questions.
#[alk_service(namespace = "auth", version = "2.1.0")]
pub enum AuthProtocol {
    /// Resolve an Ed25519 public key to the identity configured for it. Give the raw key in
    /// hex (`public_key`) or its fingerprint (`ed25519:<hex>`). The key holder is not
    /// asked to prove anything here, so only trusted callers may ask.
    #[alk_operation(query, output = AuthResult, any_scopes = ["auth:verify", "auth:admin"])]
    VerifyPubkey {
        /// The key's fingerprint, `ed25519:` and 64 hex digits.
        #[serde(default)]
        fingerprint: Option<String>,
        /// The raw 32-byte public key, in hex.
        #[serde(default)]
        public_key: Option<String>,
    },

    /// Check a signed token (`alkt1.<key id>.<unix seconds>.<signature>`). The answer
    /// carries the identity the token proves, so only trusted callers may ask.
    #[alk_operation(query, output = AuthResult, any_scopes = ["auth:verify", "auth:admin"])]
    VerifyToken {
        /// The token.
        token: String,
    },

    /// Check an API key (`alk_…`). The answer carries the identity the key proves (or the
    /// id of a key that expired), so only trusted callers may ask.
    #[alk_operation(query, output = AuthResult, any_scopes = ["auth:verify", "auth:admin"])]
    VerifyApiKey {
        /// The key.
        key: String,
    },

    /// Whether the caller may call an operation, and if not, the code the call would get.
    /// It answers for the caller's own identity only, so anyone may ask.
    #[alk_operation(query, output = AccessDecision)]
    CheckAccess {
        /// The operation, `namespace/operation`.
        operation: String,
    },

    /// The caller's identity; none for an anonymous caller.
    #[alk_operation(query, output = Option<Identity>)]
    Whoami,

    /// Re-read the configuration file and apply it (keys, and every other dynamic setting).
    #[alk_operation(
        mutation,
        idempotent,
        output = ReloadReport,
        scopes = ["auth:admin"],
        error(code = "INVALID_CONFIG", status = 422, details = ConfigError, description = "the configuration file does not parse or validate; nothing changed")
    )]
    ReloadKeys,
}

/// The `auth` service over a node's configuration.
pub struct AuthService {
    config: Arc<ConfigServiceImpl>,
    identities: Arc<dyn IdentityProvider>,
}

impl AuthService {
    /// Verify against `config`'s live settings.
    pub fn new(config: Arc<ConfigServiceImpl>) -> Self {
        let identities = Arc::new(ConfigIdentityProvider::new(config.shared()));
        AuthService { config, identities }
    }

    /// Verify against `identities` — the node's own, such as the identities kept in its
    /// storage — instead of the configuration's keys.
    pub fn with_identities(mut self, identities: Arc<dyn IdentityProvider>) -> Self {
        self.identities = identities;
        self
    }

    /// The answer for a resolution: a credential that proves nothing is an answer
    /// (`valid: false`, why); not knowing (the identities cannot be read) is an error.
    fn answer(resolved: Result<KeyHolder, CallError>) -> Result<AuthResult, CallError> {
        match resolved {
            Ok(holder) => Ok(AuthResult {
                valid: true,
                identity: Some(Identity::clone(&holder.identity)),
                reason: None,
                cluster: holder.cluster,
            }),
            Err(err) if err.code == codes::UNAUTHENTICATED => Ok(AuthResult {
                valid: false,
                identity: None,
                reason: Some(err.message),
                cluster: false,
            }),
            Err(err) => Err(err),
        }
    }

    async fn check(&self, credential: Credential<'_>) -> Result<AuthResult, CallError> {
        let resolved = self.identities.resolve(credential).await;
        Self::answer(resolved.map(KeyHolder::outside))
    }
}

impl AuthHandler for AuthService {
    async fn verify_pubkey(
        &self,
        _ctx: &OperationContext,
        request: VerifyPubkey,
    ) -> Result<AuthResult, CallError> {
        let fingerprint = match (request.fingerprint, request.public_key) {
            (Some(fingerprint), None) => fingerprint.to_ascii_lowercase(),
            (None, Some(key)) => {
                let bytes = key_from_hex(&key).ok_or_else(|| {
                    CallError::invalid_input("`public_key` must be 64 hex digits (32 bytes)")
                })?;
                key_fingerprint(&bytes)
            }
            _ => {
                return Err(CallError::invalid_input(
                    "give exactly one of `fingerprint` and `public_key`",
                ));
            }
        };
        Self::answer(self.identities.resolve_key(&fingerprint).await)
    }

    async fn verify_token(
        &self,
        _ctx: &OperationContext,
        request: VerifyToken,
    ) -> Result<AuthResult, CallError> {
        self.check(Credential::Token(&request.token)).await
    }

    async fn verify_api_key(
        &self,
        _ctx: &OperationContext,
        request: VerifyApiKey,
    ) -> Result<AuthResult, CallError> {
        self.check(Credential::ApiKey(&request.key)).await
    }

    async fn check_access(
        &self,
        ctx: &OperationContext,
        request: CheckAccess,
    ) -> Result<AccessDecision, CallError> {
        let Some((namespace, operation)) =
            request.operation.trim_start_matches('/').split_once('/')
        else {
            return Err(CallError::invalid_input(format!(
                "`{}` is not an operation id: expected `namespace/operation`",
                request.operation
            )));
        };
        let outcome = match ctx.env().spec(namespace, operation) {
            Some(spec) if spec.is_external() => spec.access.check(ctx.identity(), &spec.id),
            _ => Err(CallError::not_found(format!(
                "there is no operation `{namespace}/{operation}`"
            ))),
        };
        Ok(match outcome {
            Ok(()) => AccessDecision {
                allowed: true,
                code: None,
                reason: None,
            },
            Err(err) => AccessDecision {
                allowed: false,
                code: Some(err.code.into_owned()),
                reason: Some(err.message),
            },
        })
    }

    async fn whoami(
        &self,
        ctx: &OperationContext,
        _request: Whoami,
    ) -> Result<Option<Identity>, CallError> {
        Ok(ctx.identity().cloned())
    }

    async fn reload_keys(
        &self,
        _ctx: &OperationContext,
        _request: ReloadKeys,
    ) -> Result<ReloadReport, CallError> {
        self.config
            .reload_logged("auth/reload_keys", ReloadPart::All)
            .map_err(|err| AuthErrors::invalid_config(err.not_reloaded(), err))
    }
}
