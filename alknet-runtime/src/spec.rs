//! What an operation is, as every adapter sees it: [`OperationSpec`] and [`ServiceSpec`].

use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{AccessControl, Identity};

/// Whether an operation reads, writes, or streams.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum OperationKind {
    /// Reads without side effects; one output.
    Query,
    /// Changes state; one output.
    Mutation,
    /// A stream of items.
    Subscription,
}

impl OperationKind {
    /// `query`, `mutation` or `subscription`.
    pub fn as_str(self) -> &'static str {
        match self {
            OperationKind::Query => "query",
            OperationKind::Mutation => "mutation",
            OperationKind::Subscription => "subscription",
        }
    }
}

/// Who can reach an operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Visibility {
    /// Every adapter serves it (subject to its access control).
    External,
    /// Only nested calls from services on the same node reach it; adapters answer
    /// `NOT_FOUND` and leave it out of listings.
    Internal,
}

/// A domain error an operation declares.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ErrorDef {
    /// The code, in SCREAMING_SNAKE_CASE; never a protocol code.
    pub code: String,
    /// The HTTP status the HTTP adapter answers with.
    pub http_status: u16,
    /// When the error happens.
    pub description: String,
    /// The JSON Schema of the error's `details`, if it has any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema: Option<Value>,
}

/// Everything alknet knows about one operation.
///
/// Built once, when a service is registered, from what `#[alk_service]` generated.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct OperationSpec {
    /// `namespace/operation`, such as `auth/verify_pubkey`.
    pub id: String,
    /// The service's namespace.
    pub namespace: String,
    /// The operation's name within its namespace.
    pub name: String,
    /// Query, mutation or subscription.
    pub kind: OperationKind,
    /// External or internal.
    pub visibility: Visibility,
    /// A mutation that may be repeated with the same input to the same effect (a reload, a
    /// put), and that destroys nothing: `#[alk_operation(mutation, idempotent)]`. Queries
    /// are idempotent by nature and leave this `false`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub idempotent: bool,
    /// The operation's doc comment.
    pub description: String,
    /// The service's semantic version.
    pub version: String,
    /// What the caller must hold.
    pub access: AccessControl,
    /// The longest the operation may run, if it declares a limit.
    #[serde(
        rename = "timeout_ms",
        default,
        skip_serializing_if = "Option::is_none",
        with = "millis"
    )]
    #[schemars(rename = "timeout_ms", with = "Option<u64>")]
    pub timeout: Option<Duration>,
    /// JSON Schema (2020-12) of the input.
    pub input_schema: Value,
    /// JSON Schema (2020-12) of the output; for a subscription, of each item.
    pub output_schema: Value,
    /// The domain errors the operation may return.
    pub errors: Vec<ErrorDef>,
}

impl OperationSpec {
    /// Whether the operation streams items.
    pub fn is_subscription(&self) -> bool {
        self.kind == OperationKind::Subscription
    }

    /// Whether adapters serve the operation.
    pub fn is_external(&self) -> bool {
        self.visibility == Visibility::External
    }

    /// The declared error with `code`, if any.
    pub fn error(&self, code: &str) -> Option<&ErrorDef> {
        self.errors.iter().find(|e| e.code == code)
    }

    /// How each adapter addresses the operation.
    ///
    /// ```
    /// # use alknet_runtime::{OperationSpec, OperationKind, Visibility, AccessControl};
    /// # let spec = OperationSpec { id: "auth/whoami".into(), namespace: "auth".into(),
    /// #   name: "whoami".into(), kind: OperationKind::Query, visibility: Visibility::External,
    /// #   idempotent: false, description: String::new(), version: "1.0.0".into(), access: AccessControl::default(),
    /// #   timeout: None, input_schema: serde_json::json!({}), output_schema: serde_json::json!({}),
    /// #   errors: vec![] };
    /// let bindings = spec.bindings();
    /// assert_eq!(bindings.call_protocol, "/auth/whoami");
    /// assert_eq!(bindings.http_path, "/v1/auth/whoami");
    /// assert_eq!(bindings.mcp_tool.as_deref(), Some("auth.whoami"));
    /// assert_eq!(bindings.dns_name.as_deref(), Some("whoami.auth"));
    /// ```
    pub fn bindings(&self) -> Bindings {
        let external = self.is_external();
        let unary = !self.is_subscription();
        Bindings {
            call_protocol: format!("/{}", self.id),
            http_path: format!("/v1/{}", self.id),
            // A remote node's operation is named `echo/say`; MCP tool names keep to
            // letters, digits, `_`, `-` and `.`.
            mcp_tool: (external && unary)
                .then(|| format!("{}.{}", self.namespace, self.name.replace('/', "."))),
            mcp_read_only: self.kind == OperationKind::Query,
            // Most specific label first, as DNS names go: `echo/say` is `say.echo`.
            dns_name: (external && unary).then(|| {
                let labels: Vec<&str> = self.name.rsplit('/').collect();
                format!("{}.{}", labels.join("."), self.namespace)
            }),
        }
    }
}

/// How the adapters address one operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bindings {
    /// The call protocol's `operationId`: `/namespace/operation`.
    pub call_protocol: String,
    /// The HTTP adapter's `POST` path: `/v1/namespace/operation`.
    pub http_path: String,
    /// The MCP tool name, `namespace.operation` (a `/` in the operation's name as `.`); none
    /// for subscriptions and internal operations.
    pub mcp_tool: Option<String>,
    /// Whether MCP annotates the tool as read-only (queries).
    pub mcp_read_only: bool,
    /// The DNS name below the zone, `operation.namespace`; none for subscriptions and
    /// internal operations.
    pub dns_name: Option<String>,
}

/// A service as registered: its identity, its composition rules and its operations.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ServiceSpec {
    /// The namespace, such as `auth`.
    pub namespace: String,
    /// Semantic version.
    pub version: String,
    /// The service's doc comment.
    pub description: String,
    /// The identity the service's nested calls run with; `None` runs them with the
    /// caller's own identity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authority: Option<Identity>,
    /// The operations the service's handlers may call: `namespace/operation` or
    /// `namespace/*`.
    pub calls: Vec<String>,
    /// The operations, in declaration order.
    pub operations: Vec<OperationSpec>,
}

impl ServiceSpec {
    /// Whether the service's handlers may call `namespace/operation`.
    pub fn may_call(&self, namespace: &str, operation: &str) -> bool {
        self.calls.iter().any(|pattern| {
            let (ns, op) = pattern.split_once('/').unwrap_or((pattern, ""));
            ns == namespace && (op == "*" || op == operation)
        })
    }
}

mod millis {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(value: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match value {
            Some(d) => s.serialize_some(&(d.as_millis() as u64)),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        Ok(Option::<u64>::deserialize(d)?.map(Duration::from_millis))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn call_patterns_match_one_operation_or_a_namespace() {
        let spec = ServiceSpec {
            namespace: "orders".into(),
            version: "1.0.0".into(),
            description: String::new(),
            authority: None,
            calls: vec!["auth/whoami".into(), "inventory/*".into()],
            operations: vec![],
        };
        assert!(spec.may_call("auth", "whoami"));
        assert!(!spec.may_call("auth", "reload_keys"));
        assert!(spec.may_call("inventory", "reserve"));
        assert!(!spec.may_call("inventoryx", "reserve"));
    }
}
