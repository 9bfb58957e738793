//! Who is asking: [`Identity`], and how a credential becomes one: [`IdentityProvider`].

use std::collections::HashMap;
use std::sync::Arc;

use futures::future::BoxFuture;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::CallError;
use crate::encoding::hex;

/// An authenticated principal: a person, a key, a node, or a service acting with its
/// declared composition authority.
///
/// ```
/// use alknet_runtime::{Identity, ResourceGrant};
///
/// let ada = Identity::new("user:ada")
///     .with_scopes(["orders:read"])
///     .with_resources([ResourceGrant::new("graph", ["read"])]);
/// assert!(ada.has_scope("orders:read"));
/// assert!(ada.may("graph", "read"));
/// assert!(!ada.may("graph", "write"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Identity {
    /// A stable id, such as `user:ada`, `key:ed25519:…` or `service:orders`.
    pub id: String,
    /// The scopes granted to this identity.
    #[serde(default)]
    pub scopes: Vec<String>,
    /// The resource types and actions granted to this identity.
    #[serde(default)]
    pub resources: Vec<ResourceGrant>,
}

/// Permission to perform some actions on one resource type (`*` matches any).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ResourceGrant {
    /// The resource type, or `*` for every type.
    pub resource: String,
    /// The actions allowed on it; `*` allows every action.
    pub actions: Vec<String>,
}

impl ResourceGrant {
    /// A grant of `actions` on `resource`.
    pub fn new<A: Into<String>>(
        resource: impl Into<String>,
        actions: impl IntoIterator<Item = A>,
    ) -> Self {
        ResourceGrant {
            resource: resource.into(),
            actions: actions.into_iter().map(Into::into).collect(),
        }
    }
}

impl Identity {
    /// An identity with no scopes and no resources.
    pub fn new(id: impl Into<String>) -> Self {
        Identity {
            id: id.into(),
            scopes: Vec::new(),
            resources: Vec::new(),
        }
    }

    /// Add scopes.
    pub fn with_scopes<S: Into<String>>(mut self, scopes: impl IntoIterator<Item = S>) -> Self {
        self.scopes.extend(scopes.into_iter().map(Into::into));
        self
    }

    /// Add resource grants.
    pub fn with_resources(mut self, grants: impl IntoIterator<Item = ResourceGrant>) -> Self {
        self.resources.extend(grants);
        self
    }

    /// Whether the identity holds `scope`.
    pub fn has_scope(&self, scope: &str) -> bool {
        self.scopes.iter().any(|s| s == scope)
    }

    /// Whether the identity may perform `action` on `resource`.
    pub fn may(&self, resource: &str, action: &str) -> bool {
        self.resources.iter().any(|grant| {
            (grant.resource == "*" || grant.resource == resource)
                && grant.actions.iter().any(|a| a == "*" || a == action)
        })
    }
}

/// What a caller presented to prove who it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Credential<'a> {
    /// The fingerprint ([`key_fingerprint`]) of the public key a peer proved it holds, such
    /// as the key of its TLS certificate.
    KeyFingerprint(&'a str),
    /// An API key.
    ApiKey(&'a str),
    /// A signed token.
    Token(&'a str),
}

impl<'a> Credential<'a> {
    /// A bearer secret as a client presents it (an HTTP `Authorization: Bearer`, a call's
    /// `auth_token`): `alk_…` is an API key, anything else a signed token.
    ///
    /// ```
    /// use alknet_runtime::Credential;
    ///
    /// assert!(matches!(Credential::bearer("alk_3q2x…"), Credential::ApiKey(_)));
    /// assert!(matches!(Credential::bearer("alkt1.ops.1700000000.c2ln"), Credential::Token(_)));
    /// ```
    pub fn bearer(secret: &'a str) -> Self {
        if secret.starts_with("alk_") {
            Credential::ApiKey(secret)
        } else {
            Credential::Token(secret)
        }
    }
}

/// Resolves credentials to identities. Adapters hold one as `Arc<dyn IdentityProvider>` and
/// ask it once per connection or request; the answer is either an identity or an
/// `UNAUTHENTICATED` error that says why.
pub trait IdentityProvider: Send + Sync + 'static {
    /// The identity `credential` proves, shared rather than copied: adapters resolve once
    /// per request, and the identity goes straight into the call's context.
    fn resolve<'a>(
        &'a self,
        credential: Credential<'a>,
    ) -> BoxFuture<'a, Result<Arc<Identity>, CallError>>;

    /// Who holds the key with this fingerprint, and whether it is a cluster node
    /// ([`KeyHolder`]). Peers are trusted by what their key is, never by what they send:
    /// this answer alone decides whether a peer's asserted identities and `forwarded_for`
    /// are believed.
    ///
    /// The default resolves the fingerprint with [`resolve`](Self::resolve) and makes no
    /// key a cluster node, so a provider that knows nothing of clusters never lets a peer
    /// speak for others.
    fn resolve_key<'a>(
        &'a self,
        fingerprint: &'a str,
    ) -> BoxFuture<'a, Result<KeyHolder, CallError>> {
        Box::pin(async move {
            let identity = self
                .resolve(Credential::KeyFingerprint(fingerprint))
                .await?;
            Ok(KeyHolder::outside(identity))
        })
    }
}

/// What a node makes of a key a peer proved it holds ([`IdentityProvider::resolve_key`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyHolder {
    /// The key's identity: what the holder's own calls run as.
    pub identity: Arc<Identity>,
    /// Whether the configuration marks the holder as a cluster node. A cluster node
    /// admitted its callers where they entered the cluster, so its calls may run as the
    /// identities it asserts and its `forwarded_for` is honoured; access is still checked
    /// against whatever identity a call runs as. Any other key is an outside caller.
    pub cluster: bool,
}

impl KeyHolder {
    /// An outside caller holding a key: its calls run as `identity`, and what it asserts
    /// about anyone else is ignored.
    pub fn outside(identity: Arc<Identity>) -> Self {
        KeyHolder {
            identity,
            cluster: false,
        }
    }

    /// A cluster node holding a key, known as `identity`.
    pub fn cluster_node(identity: Arc<Identity>) -> Self {
        KeyHolder {
            identity,
            cluster: true,
        }
    }
}

/// `ed25519:` and the SHA-256 of a raw Ed25519 public key, in lowercase hex: how alknet
/// names a key.
///
/// ```
/// let fingerprint = alknet_runtime::key_fingerprint(&[7u8; 32]);
/// assert!(fingerprint.starts_with("ed25519:"));
/// assert_eq!(fingerprint.len(), "ed25519:".len() + 64);
/// ```
pub fn key_fingerprint(public_key: &[u8]) -> String {
    format!("ed25519:{}", hex(&Sha256::digest(public_key)))
}

/// A fixed set of identities: an allow-list of keys, and tokens kept only as SHA-256
/// hashes. For tests and small deployments; configuration-backed providers replace it.
///
/// ```
/// use alknet_runtime::{Credential, Identity, IdentityProvider, StaticIdentities};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let identities = StaticIdentities::new()
///     .with_cluster_key("ed25519:ab12", Identity::new("node:worker-1"))
///     .with_key("ed25519:cd34", Identity::new("app:reporting"))
///     .with_token("s3cret", Identity::new("user:ada"));
/// let ada = identities.resolve(Credential::Token("s3cret")).await.unwrap();
/// assert_eq!(ada.id, "user:ada");
/// assert!(identities.resolve(Credential::Token("guess")).await.is_err());
/// assert!(identities.resolve_key("ed25519:ab12").await.unwrap().cluster);
/// assert!(!identities.resolve_key("ed25519:cd34").await.unwrap().cluster);
/// # }
/// ```
#[derive(Debug, Clone, Default)]
pub struct StaticIdentities {
    keys: HashMap<String, KeyHolder>,
    token_hashes: HashMap<String, Arc<Identity>>,
}

impl StaticIdentities {
    /// An empty allow-list: every credential is refused.
    pub fn new() -> Self {
        Self::default()
    }

    /// Allow the key with this fingerprint, as `identity`: an outside caller.
    pub fn with_key(mut self, fingerprint: impl Into<String>, identity: Identity) -> Self {
        self.keys
            .insert(fingerprint.into(), KeyHolder::outside(Arc::new(identity)));
        self
    }

    /// Allow the key with this fingerprint as a cluster node known as `identity`
    /// ([`KeyHolder::cluster`]).
    pub fn with_cluster_key(mut self, fingerprint: impl Into<String>, identity: Identity) -> Self {
        self.keys.insert(
            fingerprint.into(),
            KeyHolder::cluster_node(Arc::new(identity)),
        );
        self
    }

    /// Allow this token (API key or signed token), as `identity`. Only its hash is kept.
    pub fn with_token(mut self, token: &str, identity: Identity) -> Self {
        self.token_hashes
            .insert(hex(&Sha256::digest(token.as_bytes())), Arc::new(identity));
        self
    }

    fn key(&self, fingerprint: &str) -> Result<&KeyHolder, CallError> {
        self.keys.get(fingerprint).ok_or_else(|| {
            CallError::unauthenticated(format!("the key `{fingerprint}` is not allowed"))
        })
    }
}

impl IdentityProvider for StaticIdentities {
    fn resolve<'a>(
        &'a self,
        credential: Credential<'a>,
    ) -> BoxFuture<'a, Result<Arc<Identity>, CallError>> {
        let found = match credential {
            Credential::KeyFingerprint(fingerprint) => {
                self.key(fingerprint).map(|holder| &holder.identity)
            }
            // Looking up the hash, never the token, keeps lookup timing independent of it.
            Credential::ApiKey(token) | Credential::Token(token) => self
                .token_hashes
                .get(&hex(&Sha256::digest(token.as_bytes())))
                .ok_or_else(|| CallError::unauthenticated("the token is not valid")),
        };
        Box::pin(futures::future::ready(found.cloned()))
    }

    fn resolve_key<'a>(
        &'a self,
        fingerprint: &'a str,
    ) -> BoxFuture<'a, Result<KeyHolder, CallError>> {
        Box::pin(futures::future::ready(self.key(fingerprint).cloned()))
    }
}
