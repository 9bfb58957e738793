//! [`ForwardingPolicy`]: where a call goes — served here, forwarded to a peer, or refused.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// What to do with a call, decided by the first matching rule or else the default.
///
/// ```
/// use alknet_runtime::config::{ForwardingAction, ForwardingPolicy, ForwardingRule};
///
/// let policy = ForwardingPolicy {
///     default: ForwardingAction::Local,
///     rules: vec![
///         ForwardingRule::new("storage/*", ForwardingAction::Forward).peer("worker-1"),
///         ForwardingRule::new("*", ForwardingAction::Deny).identities("guest:*"),
///     ],
/// };
/// let rule = policy.decide("storage/get_node", Some("user:ada")).unwrap();
/// assert_eq!(rule.peer.as_deref(), Some("worker-1"));
/// assert_eq!(policy.action("echo/say", Some("guest:1")), ForwardingAction::Deny);
/// assert_eq!(policy.action("echo/say", Some("user:ada")), ForwardingAction::Local);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ForwardingPolicy {
    /// What happens to a call no rule matches.
    #[serde(default)]
    pub default: ForwardingAction,
    /// Tried in order; the first that matches decides.
    #[serde(default)]
    pub rules: Vec<ForwardingRule>,
}

/// One rule: which calls it matches and what happens to them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ForwardingRule {
    /// The operations it matches: `ns/op`, `ns/*` or `*` (a trailing `*` matches any rest).
    pub operations: String,
    /// The caller identities it matches, the same way (`user:*`); absent matches every
    /// caller, anonymous ones included.
    #[serde(default)]
    pub identities: Option<String>,
    /// What happens to a matching call.
    pub action: ForwardingAction,
    /// The peer a `forward` rule sends calls to.
    #[serde(default)]
    pub peer: Option<String>,
}

/// What happens to a call.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ForwardingAction {
    /// Serve it on this node.
    #[default]
    Local,
    /// Send it to the rule's peer.
    Forward,
    /// Refuse it (`FORBIDDEN`).
    Deny,
}

impl ForwardingRule {
    /// A rule matching `operations`, for every caller.
    pub fn new(operations: impl Into<String>, action: ForwardingAction) -> Self {
        ForwardingRule {
            operations: operations.into(),
            identities: None,
            action,
            peer: None,
        }
    }

    /// Match only callers whose identity matches `pattern`.
    pub fn identities(mut self, pattern: impl Into<String>) -> Self {
        self.identities = Some(pattern.into());
        self
    }

    /// Forward to `peer`.
    pub fn peer(mut self, peer: impl Into<String>) -> Self {
        self.peer = Some(peer.into());
        self
    }

    /// Whether the rule matches a call of `operation` (`ns/op`) by `identity`.
    pub fn matches(&self, operation: &str, identity: Option<&str>) -> bool {
        matches_pattern(&self.operations, operation)
            && match (&self.identities, identity) {
                (None, _) => true,
                (Some(pattern), Some(id)) => matches_pattern(pattern, id),
                (Some(_), None) => false,
            }
    }
}

impl ForwardingPolicy {
    /// The first rule matching a call of `operation` by `identity`; `None` means the
    /// default applies.
    pub fn decide(&self, operation: &str, identity: Option<&str>) -> Option<&ForwardingRule> {
        self.rules
            .iter()
            .find(|rule| rule.matches(operation, identity))
    }

    /// What happens to a call of `operation` by `identity`.
    pub fn action(&self, operation: &str, identity: Option<&str>) -> ForwardingAction {
        self.decide(operation, identity)
            .map_or(self.default, |rule| rule.action)
    }
}

impl Default for ForwardingPolicy {
    fn default() -> Self {
        ForwardingPolicy {
            default: ForwardingAction::Local,
            rules: Vec::new(),
        }
    }
}

fn matches_pattern(pattern: &str, value: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => value.starts_with(prefix),
        None => pattern == value,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_matching_rule_wins_over_later_ones() {
        let policy = ForwardingPolicy {
            default: ForwardingAction::Deny,
            rules: vec![
                ForwardingRule::new("echo/say", ForwardingAction::Local),
                ForwardingRule::new("echo/*", ForwardingAction::Forward).peer("w"),
            ],
        };
        assert_eq!(policy.action("echo/say", None), ForwardingAction::Local);
        assert_eq!(policy.action("echo/shout", None), ForwardingAction::Forward);
        assert_eq!(policy.action("auth/whoami", None), ForwardingAction::Deny);
    }

    #[test]
    fn an_identity_rule_never_matches_an_anonymous_caller() {
        let rule = ForwardingRule::new("*", ForwardingAction::Deny).identities("user:*");
        assert!(rule.matches("echo/say", Some("user:ada")));
        assert!(!rule.matches("echo/say", Some("node:1")));
        assert!(!rule.matches("echo/say", None));
    }
}
