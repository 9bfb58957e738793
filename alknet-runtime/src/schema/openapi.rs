//! The OpenAPI 3.1 document of the HTTP adapter (SPEC §9), built from the service
//! documents so both describe every type the same way.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

use super::{DIALECT, pointer_segment, service_document};
use crate::{OperationSpec, ServiceSpec, codes};

const SCHEMAS: &str = "#/components/schemas/";
const ERROR_ENVELOPE: &str = "alknet.Error";
const BEARER: &str = "bearer";

/// The protocol errors every HTTP operation may answer, with their statuses (SPEC §9).
/// `UNAUTHENTICATED` and `FORBIDDEN` only apply to operations with access control.
const PROTOCOL_ERRORS: [(u16, &str, &str); 9] = [
    (400, codes::INVALID_INPUT, "the body is not JSON"),
    (
        401,
        codes::UNAUTHENTICATED,
        "the operation needs an identity and the request carried no valid bearer token",
    ),
    (
        403,
        codes::FORBIDDEN,
        "the caller lacks a scope or resource grant the operation requires",
    ),
    (
        404,
        codes::NOT_FOUND,
        "no such operation, or the caller may not see it",
    ),
    (
        422,
        codes::INVALID_INPUT,
        "the body does not match the input schema",
    ),
    (
        429,
        codes::RESOURCE_EXHAUSTED,
        "a rate limit (retryable; see `Retry-After`) or a size limit was exceeded",
    ),
    (
        500,
        codes::INTERNAL,
        "the handler failed unexpectedly or returned an undeclared error",
    ),
    (
        503,
        codes::UNAVAILABLE,
        "the node serving the operation is unreachable (retryable)",
    ),
    (
        504,
        codes::TIMEOUT,
        "the call's deadline passed before it completed (retryable)",
    ),
];

/// The OpenAPI 3.1 document for `services`: one `POST /v1/{namespace}/{operation}` per
/// external operation (internal ones never appear), with the input as request body, the
/// output as the `200` response (Server-Sent Events for a subscription), a response per
/// declared error and protocol error, and bearer authentication on every operation with
/// access control.
///
/// Each service's named types are components named `{namespace}.{Type}`; each error
/// response body is `{"error": {code, message, retryable, details, request_id}}`.
pub fn openapi<'a>(services: impl IntoIterator<Item = &'a ServiceSpec>) -> Value {
    let documented: Vec<(&ServiceSpec, Value)> = services
        .into_iter()
        .map(|service| (service, service_document(service)))
        .collect();
    openapi_of(&documented)
}

/// [`openapi`] from services whose documents are already built.
pub(super) fn openapi_of(services: &[(&ServiceSpec, Value)]) -> Value {
    let mut schemas = Map::new();
    schemas.insert(ERROR_ENVELOPE.into(), error_envelope());
    let mut paths = Map::new();
    let mut tags = Vec::new();
    let mut versions = Vec::new();

    for (service, document) in services {
        let namespace = &service.namespace;
        let prefix = format!("{namespace}.");
        if let Some(Value::Object(defs)) = document.get("$defs") {
            for (name, schema) in defs {
                schemas.insert(format!("{prefix}{name}"), to_components(schema, &prefix));
            }
        }
        for op in service.operations.iter().filter(|op| op.is_external()) {
            let entry = &document["operations"][&op.name];
            let post = operation(op, entry, &prefix, &mut schemas);
            paths.insert(op.bindings().http_path, json!({ "post": post }));
        }
        tags.push(json!({ "name": namespace, "description": service.description }));
        versions.push(format!("{namespace} {}", service.version));
    }

    json!({
        "openapi": "3.1.0",
        "jsonSchemaDialect": DIALECT,
        "info": {
            "title": "alknet",
            "description": "Every external operation of the node's services, as the HTTP adapter serves them.",
            "version": if versions.is_empty() { "none".to_string() } else { versions.join(", ") },
        },
        "tags": tags,
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                BEARER: {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "`Authorization: Bearer <token>`: an API key or a signed token.",
                },
            },
        },
    })
}

fn operation(
    op: &OperationSpec,
    entry: &Value,
    prefix: &str,
    schemas: &mut Map<String, Value>,
) -> Value {
    let component = |schema: &Value| to_components(schema, prefix);
    let mut responses = Map::new();
    responses.insert("200".into(), success(op, entry, &component));

    // Every code an operation may answer with, grouped by HTTP status.
    let mut by_status: BTreeMap<u16, Vec<(String, String)>> = BTreeMap::new();
    for (status, code, when) in PROTOCOL_ERRORS {
        let needs_identity = code == codes::UNAUTHENTICATED || code == codes::FORBIDDEN;
        if needs_identity && op.access.is_open() {
            continue;
        }
        let name = format!("alknet.error.{code}");
        schemas
            .entry(name.clone())
            .or_insert_with(|| error_body(json!({ "const": code }), None));
        by_status
            .entry(status)
            .or_default()
            .push((name, when.to_string()));
    }
    for error in &op.errors {
        let name = format!("{prefix}{}.error.{}", op.name, error.code);
        let details = entry["errors"][&error.code].get("details").map(component);
        schemas.insert(
            name.clone(),
            error_body(json!({ "const": error.code }), details),
        );
        let when = format!("`{}`: {}", error.code, error.description);
        by_status
            .entry(error.http_status)
            .or_default()
            .push((name, when));
    }
    for (status, bodies) in by_status {
        responses.insert(status.to_string(), error_response(status, &bodies));
    }

    let mut post = json!({
        "operationId": format!("{}.{}", op.namespace, op.name),
        "summary": op.description.lines().next().unwrap_or_default(),
        "description": op.description,
        "tags": [op.namespace],
        "requestBody": {
            "required": true,
            "content": { "application/json": { "schema": component(&entry["input"]) } },
        },
        "responses": responses,
        "x-alknet-kind": op.kind,
        "x-alknet-access": op.access,
    });
    if !op.access.is_open() {
        post["security"] = json!([{ BEARER: [] }]);
    }
    // The method stays POST (the HTTP adapter's one form); the extension tells a client
    // that repeating the call is safe.
    if op.idempotent {
        post["x-alknet-idempotent"] = json!(true);
    }
    post
}

fn success(op: &OperationSpec, entry: &Value, component: &impl Fn(&Value) -> Value) -> Value {
    if op.is_subscription() {
        json!({
            "description": "A stream of Server-Sent Events: one event per item, whose data is the item as JSON (see `x-alknet-item`), then one that ends the stream or carries the error that ended it.",
            "content": {
                "text/event-stream": {
                    "schema": { "type": "string" },
                    "x-alknet-item": component(&entry["item"]),
                },
            },
        })
    } else {
        json!({
            "description": "The output.",
            "content": { "application/json": { "schema": component(&entry["output"]) } },
        })
    }
}

fn error_response(status: u16, bodies: &[(String, String)]) -> Value {
    let schema = match bodies {
        [(name, _)] => json!({ "$ref": format!("{SCHEMAS}{}", pointer_segment(name)) }),
        _ => json!({
            "oneOf": bodies
                .iter()
                .map(|(name, _)| json!({ "$ref": format!("{SCHEMAS}{}", pointer_segment(name)) }))
                .collect::<Vec<_>>(),
        }),
    };
    let description = bodies
        .iter()
        .map(|(_, when)| when.as_str())
        .collect::<Vec<_>>()
        .join("; ");
    let mut response = json!({
        "description": description,
        "content": { "application/json": { "schema": schema } },
    });
    if status == 429 {
        response["headers"] = json!({
            "Retry-After": {
                "description": "For a rate limit: the seconds to wait before trying again.",
                "schema": { "type": "integer", "minimum": 0 },
            },
        });
    }
    response
}

/// `{"error": {code, message, retryable, details, request_id}}`, the body of every error.
fn error_envelope() -> Value {
    json!({
        "description": "Why a call failed (SPEC §9).",
        "type": "object",
        "required": ["error"],
        "properties": {
            "error": {
                "type": "object",
                "required": ["code", "message", "retryable", "request_id"],
                "properties": {
                    "code": { "type": "string", "description": "A protocol code or a code the operation declares." },
                    "message": { "type": "string", "description": "One sentence that names the problem." },
                    "retryable": { "type": "boolean", "description": "Whether the same call may succeed if tried again later." },
                    "details": { "description": "Structured details; for a declared error, its details type." },
                    "request_id": { "type": "string", "pattern": "^[0-9a-f]{32}$", "description": "The id of the call." },
                },
            },
        },
    })
}

/// The error envelope narrowed to one code and, for a declared error, its details.
fn error_body(code: Value, details: Option<Value>) -> Value {
    let mut error = json!({ "properties": { "code": code } });
    if let Some(details) = details {
        error["properties"]["details"] = details;
    }
    json!({
        "allOf": [{ "$ref": format!("{SCHEMAS}{ERROR_ENVELOPE}") }],
        "properties": { "error": error },
    })
}

/// A service document's schema with `#/$defs/Name` rewritten to the component
/// `#/components/schemas/{namespace}.Name`.
fn to_components(schema: &Value, prefix: &str) -> Value {
    match schema {
        Value::Object(map) => map
            .iter()
            .map(|(key, value)| {
                let value = match (key.as_str(), value) {
                    ("$ref", Value::String(reference)) => {
                        match reference.strip_prefix("#/$defs/") {
                            Some(rest) => Value::String(format!("{SCHEMAS}{prefix}{rest}")),
                            None => value.clone(),
                        }
                    }
                    _ => to_components(value, prefix),
                };
                (key.clone(), value)
            })
            .collect(),
        Value::Array(items) => items
            .iter()
            .map(|item| to_components(item, prefix))
            .collect(),
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{AccessControl, ErrorDef, OperationKind, Visibility};

    fn op(name: &str, kind: OperationKind, visibility: Visibility) -> OperationSpec {
        OperationSpec {
            id: format!("shop/{name}"),
            namespace: "shop".into(),
            name: name.into(),
            kind,
            visibility,
            idempotent: false,
            description: format!("Does {name}."),
            version: "2.1.0".into(),
            access: AccessControl::default(),
            timeout: None,
            input_schema: json!({"$schema": DIALECT, "title": "In", "type": "object", "properties": {}}),
            output_schema: json!({"$schema": DIALECT, "type": "string"}),
            errors: vec![],
        }
    }

    fn shop() -> ServiceSpec {
        let mut buy = op("buy", OperationKind::Mutation, Visibility::External);
        buy.access.scopes = vec!["shop:buy".into()];
        buy.errors.push(ErrorDef {
            code: "SOLD_OUT".into(),
            http_status: 409,
            description: "nothing left".into(),
            schema: Some(json!({"$schema": DIALECT, "title": "Stock", "type": "object", "properties": {"left": {"type": "integer"}}})),
        });
        ServiceSpec {
            namespace: "shop".into(),
            version: "2.1.0".into(),
            description: "Sells things.".into(),
            authority: None,
            calls: vec![],
            operations: vec![
                buy,
                op("feed", OperationKind::Subscription, Visibility::External),
                op("audit", OperationKind::Query, Visibility::Internal),
            ],
        }
    }

    #[test]
    fn external_operations_become_post_paths_and_internal_ones_never_appear() {
        let doc = openapi([&shop()]);
        let paths = doc["paths"].as_object().unwrap();
        assert_eq!(
            paths.keys().collect::<Vec<_>>(),
            ["/v1/shop/buy", "/v1/shop/feed"]
        );
        assert!(!doc.to_string().contains("audit"));
        assert_eq!(doc["openapi"], "3.1.0");
    }

    #[test]
    fn declared_errors_protocol_errors_and_security_follow_the_access_control() {
        let doc = openapi([&shop()]);
        let buy = &doc["paths"]["/v1/shop/buy"]["post"];
        assert_eq!(buy["security"], json!([{"bearer": []}]));
        for status in [
            "200", "400", "401", "403", "404", "409", "422", "429", "500", "503", "504",
        ] {
            assert!(buy["responses"].get(status).is_some(), "missing {status}");
        }
        assert_eq!(
            buy["responses"]["409"]["content"]["application/json"]["schema"]["$ref"],
            "#/components/schemas/shop.buy.error.SOLD_OUT"
        );
        let sold_out = &doc["components"]["schemas"]["shop.buy.error.SOLD_OUT"];
        assert_eq!(
            sold_out["properties"]["error"]["properties"]["details"]["$ref"],
            "#/components/schemas/shop.Stock"
        );
        assert!(
            buy["responses"]["429"]["headers"]
                .get("Retry-After")
                .is_some()
        );
        assert_eq!(
            buy["requestBody"]["content"]["application/json"]["schema"]["$ref"],
            "#/components/schemas/shop.In"
        );

        let feed = &doc["paths"]["/v1/shop/feed"]["post"];
        assert!(
            feed.get("security").is_none(),
            "open operations need no token"
        );
        assert!(feed["responses"].get("401").is_none());
        assert!(
            feed["responses"]["200"]["content"]
                .get("text/event-stream")
                .is_some()
        );
    }

    #[test]
    fn only_an_idempotent_mutation_carries_the_idempotent_extension() {
        let mut shop = shop();
        let mut reload = op("reload", OperationKind::Mutation, Visibility::External);
        reload.idempotent = true;
        shop.operations.push(reload);
        let doc = openapi([&shop]);
        let reload = &doc["paths"]["/v1/shop/reload"]["post"];
        assert_eq!(reload["x-alknet-idempotent"], true);
        let buy = &doc["paths"]["/v1/shop/buy"]["post"];
        assert!(buy.get("x-alknet-idempotent").is_none());
    }
}
