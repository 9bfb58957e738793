//! Access control: what an operation requires of its caller, and the check.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::{CallError, Identity};

/// What an operation requires of the identity that calls it.
///
/// An operation with no requirement is open to everyone, anonymous callers included.
/// Otherwise the caller needs an identity (`UNAUTHENTICATED` without one) that holds every
/// scope of `scopes`, at least one of `any_scopes` (when not empty), and the `resource`
/// grant (when set) — `FORBIDDEN` if it lacks any of them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct AccessControl {
    /// Scopes the caller must all hold.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scopes: Vec<String>,
    /// Scopes of which the caller must hold at least one.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub any_scopes: Vec<String>,
    /// A resource type and action the caller must be granted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource: Option<ResourceRule>,
}

/// A resource type and the action an operation performs on it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ResourceRule {
    /// The resource type, such as `graph`.
    pub resource: String,
    /// The action, such as `read`.
    pub action: String,
}

impl AccessControl {
    /// Whether the operation is open to anyone.
    #[inline]
    pub fn is_open(&self) -> bool {
        self.scopes.is_empty() && self.any_scopes.is_empty() && self.resource.is_none()
    }

    /// Check `identity` against these requirements; `operation` names the operation in
    /// the error message.
    #[inline]
    pub fn check(&self, identity: Option<&Identity>, operation: &str) -> Result<(), CallError> {
        // Inlined for the open operation, which most calls are; the rest is a call away.
        if self.is_open() {
            return Ok(());
        }
        self.check_required(identity, operation)
    }

    fn check_required(
        &self,
        identity: Option<&Identity>,
        operation: &str,
    ) -> Result<(), CallError> {
        let Some(identity) = identity else {
            return Err(CallError::unauthenticated(format!(
                "`{operation}` requires an authenticated caller"
            )));
        };
        if let Some(missing) = self.scopes.iter().find(|s| !identity.has_scope(s)) {
            return Err(CallError::forbidden(format!(
                "`{operation}` requires the scope `{missing}`, which `{}` does not hold",
                identity.id
            )));
        }
        if !self.any_scopes.is_empty() && !self.any_scopes.iter().any(|s| identity.has_scope(s)) {
            return Err(CallError::forbidden(format!(
                "`{operation}` requires one of the scopes {:?}, and `{}` holds none",
                self.any_scopes, identity.id
            )));
        }
        if let Some(rule) = &self.resource
            && !identity.may(&rule.resource, &rule.action)
        {
            return Err(CallError::forbidden(format!(
                "`{operation}` requires `{}` on `{}`, which `{}` was not granted",
                rule.action, rule.resource, identity.id
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ResourceGrant, codes};

    fn rule(scopes: &[&str], any: &[&str], resource: Option<(&str, &str)>) -> AccessControl {
        AccessControl {
            scopes: scopes.iter().map(|s| s.to_string()).collect(),
            any_scopes: any.iter().map(|s| s.to_string()).collect(),
            resource: resource.map(|(r, a)| ResourceRule {
                resource: r.into(),
                action: a.into(),
            }),
        }
    }

    fn code(result: Result<(), CallError>) -> Option<String> {
        result.err().map(|e| e.code.into_owned())
    }

    #[test]
    fn open_operations_admit_anyone() {
        assert_eq!(code(rule(&[], &[], None).check(None, "x/y")), None);
    }

    #[test]
    fn restricted_operations_need_an_identity() {
        for access in [
            rule(&["a"], &[], None),
            rule(&[], &["a"], None),
            rule(&[], &[], Some(("graph", "read"))),
        ] {
            assert_eq!(
                code(access.check(None, "x/y")).as_deref(),
                Some(codes::UNAUTHENTICATED)
            );
        }
    }

    #[test]
    fn scopes_are_all_required_any_scopes_one_of() {
        let ada = Identity::new("ada").with_scopes(["a", "c"]);
        assert_eq!(
            code(rule(&["a", "c"], &[], None).check(Some(&ada), "x/y")),
            None
        );
        assert_eq!(
            code(rule(&["a", "b"], &[], None).check(Some(&ada), "x/y")).as_deref(),
            Some(codes::FORBIDDEN)
        );
        assert_eq!(
            code(rule(&[], &["b", "c"], None).check(Some(&ada), "x/y")),
            None
        );
        assert_eq!(
            code(rule(&[], &["b", "d"], None).check(Some(&ada), "x/y")).as_deref(),
            Some(codes::FORBIDDEN)
        );
    }

    #[test]
    fn resources_match_type_and_action_with_wildcards() {
        let reader = Identity::new("r").with_resources([ResourceGrant::new("graph", ["read"])]);
        let admin = Identity::new("a").with_resources([ResourceGrant::new("*", ["*"])]);
        let read = rule(&[], &[], Some(("graph", "read")));
        let write = rule(&[], &[], Some(("graph", "write")));
        assert_eq!(code(read.check(Some(&reader), "x/y")), None);
        assert_eq!(
            code(write.check(Some(&reader), "x/y")).as_deref(),
            Some(codes::FORBIDDEN)
        );
        assert_eq!(code(write.check(Some(&admin), "x/y")), None);
    }

    #[test]
    fn forbidden_names_the_missing_scope() {
        let err = rule(&["orders:write"], &[], None)
            .check(Some(&Identity::new("ada")), "orders/place")
            .unwrap_err();
        assert!(err.message.contains("orders:write"), "{}", err.message);
        assert!(err.message.contains("orders/place"), "{}", err.message);
    }
}
