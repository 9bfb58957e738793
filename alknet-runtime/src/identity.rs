//! Who is asking: [`Identity`].

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

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
