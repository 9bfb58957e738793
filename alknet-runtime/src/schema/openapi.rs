//! The OpenAPI 3.1 document of the HTTP adapter (SPEC §9), built from the service
//! documents so both describe every type the same way.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

use super::document::{SCHEMA_KEY, error_part, part_name, part_names};
use super::files::pointer_segment;
use super::{DIALECT, service_document};
use crate::{OperationSpec, ServiceSpec, codes};

const SCHEMAS: &str = "#/components/schemas/";
const BEARER: &str = "bearer";

/// The protocol errors every HTTP operation may answer, with their statuses (SPEC §9).
/// `FORBIDDEN` only applies to operations with access control; `UNAUTHENTICATED` to every
/// operation, since a bearer token that is refused is `401` whatever the operation.
const PROTOCOL_ERRORS: [(u16, &str, &str); 10] = [
    (400, codes::INVALID_INPUT, "the body is not JSON"),
    (
        401,
        codes::UNAUTHENTICATED,
        "the request carried a bearer token that was refused, or the operation needs an identity and the request carried none",
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
        413,
        codes::RESOURCE_EXHAUSTED,
        "the request body is larger than the node's limit",
    ),
    (
        422,
        codes::INVALID_INPUT,
        "the body does not match the input schema",
    ),
    (
        429,
        codes::RESOURCE_EXHAUSTED,
        "a rate limit or a concurrency limit was reached (retryable; see `Retry-After`)",
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

/// Where the example configuration listens for HTTP; clients point at their node instead.
const EXAMPLE_SERVER: &str = "http://127.0.0.1:8080";

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
    let mut paths = Map::new();
    let mut tags = Vec::new();
    let mut versions = Vec::new();

    for (service, document) in services {
        let namespace = &service.namespace;
        let prefix = format!("{namespace}.");
        let empty = Map::new();
        let defs = document[SCHEMA_KEY]["$defs"].as_object().unwrap_or(&empty);
        // The types become components; the operations' parts are used in place.
        let parts = part_names(service);
        for (name, schema) in defs.iter().filter(|(name, _)| !parts.contains(*name)) {
            schemas.insert(format!("{prefix}{name}"), to_components(schema, &prefix));
        }
        for op in service.operations.iter().filter(|op| op.is_external()) {
            let part = |part: &str| &defs[&part_name(&op.name, part)];
            let post = operation(op, &part, &prefix, &mut schemas);
            paths.insert(op.bindings().http_path, json!({ "post": post }));
        }
        tags.push(json!({ "name": namespace, "description": service.description }));
        versions.push(format!("{namespace} {}", service.version));
    }

    keep_referenced(&mut schemas, &paths);
    unique_titles(&mut schemas);
    json!({
        "openapi": "3.1.0",
        "jsonSchemaDialect": DIALECT,
        "info": {
            "title": "alknet",
            "description": "Every external operation of the node's services, as the HTTP adapter serves them.",
            "version": if versions.is_empty() { "none".to_string() } else { versions.join(", ") },
        },
        "servers": [{
            "url": EXAMPLE_SERVER,
            "description": "A node where the example configuration puts HTTP (`[listen] http`); use your node's address.",
        }],
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

/// The `POST` of `op`, whose schemas `part` looks up in its service document by part.
fn operation<'d>(
    op: &OperationSpec,
    part: &impl Fn(&str) -> &'d Value,
    prefix: &str,
    schemas: &mut Map<String, Value>,
) -> Value {
    let component = |schema: &Value| to_components(schema, prefix);
    let mut responses = Map::new();
    responses.insert("200".into(), success(op, part, &component));

    // Every code an operation may answer with, grouped by HTTP status.
    let mut by_status: BTreeMap<u16, Vec<(String, String)>> = BTreeMap::new();
    for (status, code, when) in PROTOCOL_ERRORS {
        if code == codes::FORBIDDEN && op.access.is_open() {
            continue;
        }
        let name = format!("alknet.error.{code}");
        schemas
            .entry(name.clone())
            .or_insert_with(|| error_body(json!({ "type": "string", "const": code }), None));
        by_status
            .entry(status)
            .or_default()
            .push((name, when.to_string()));
    }
    for error in &op.errors {
        let name = format!("{prefix}{}.error.{}", op.name, error.code);
        let details = error
            .schema
            .as_ref()
            .map(|_| component(part(&error_part(&error.code))));
        schemas.insert(
            name.clone(),
            error_body(json!({ "type": "string", "const": error.code }), details),
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
            // An empty body is no input, which an input without required fields accepts.
            "required": !accepts_no_input(&op.input_schema),
            "content": { "application/json": { "schema": component(part("input")) } },
        },
        "responses": responses,
        "x-alknet-kind": op.kind,
        "x-alknet-access": op.access,
    });
    // An open operation takes anonymous callers (`{}`) and bearer tokens alike.
    post["security"] = if op.access.is_open() {
        json!([{}, { BEARER: [] }])
    } else {
        json!([{ BEARER: [] }])
    };
    // The method stays POST (the HTTP adapter's one form); the extension tells a client
    // that repeating the call is safe.
    if op.idempotent {
        post["x-alknet-idempotent"] = json!(true);
    }
    post
}

/// Whether an input schema takes `{}`, which is what an empty body means.
fn accepts_no_input(schema: &Value) -> bool {
    let required = schema
        .get("required")
        .and_then(Value::as_array)
        .is_some_and(|required| !required.is_empty());
    schema.get("type") == Some(&json!("object")) && !required
}

fn success<'d>(
    op: &OperationSpec,
    part: &impl Fn(&str) -> &'d Value,
    component: &impl Fn(&Value) -> Value,
) -> Value {
    if op.is_subscription() {
        json!({
            "description": "A stream of Server-Sent Events: one event per item, whose data is the item as JSON (the stream's `contentSchema`), then one that ends the stream or carries the error that ended it.",
            "content": {
                "text/event-stream": {
                    // JSON Schema's content vocabulary: the string's content, decoded, is
                    // items of this schema.
                    "schema": {
                        "type": "string",
                        "contentMediaType": "text/event-stream",
                        "contentSchema": component(part("item")),
                    },
                },
            },
        })
    } else {
        json!({
            "description": "The output.",
            "content": { "application/json": { "schema": component(part("output")) } },
        })
    }
}

fn error_response(status: u16, bodies: &[(String, String)]) -> Value {
    let schema = match bodies {
        [(name, _)] => json!({ "$ref": format!("{SCHEMAS}{}", pointer_segment(name)) }),
        // `anyOf`, not `oneOf`: the bodies exclude each other by their nested `code`
        // constant, which linters do not look into.
        _ => json!({
            "anyOf": bodies
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

/// `{"error": {code, message, retryable, details, request_id}}`, the body of every error,
/// narrowed to one code and, for a declared error, its details: a whole object per code
/// (not an `allOf` of one shared envelope, which generators merge into one inner type
/// shared, and clashing, across every error).
fn error_body(code: Value, details: Option<Value>) -> Value {
    // Declared details are always sent; other errors may have none.
    let mut required = vec!["code", "message", "retryable", "request_id"];
    if details.is_some() {
        required.push("details");
    }
    let details = details
        .unwrap_or_else(|| json!({ "description": "Structured details, if the error has any." }));
    json!({
        "description": "Why a call failed.",
        "type": "object",
        "required": ["error"],
        "properties": {
            "error": {
                "type": "object",
                "required": required,
                "properties": {
                    "code": code,
                    "message": { "type": "string", "description": "One sentence that names the problem." },
                    "retryable": { "type": "boolean", "description": "Whether the same call may succeed if tried again later." },
                    "details": details,
                    "request_id": { "type": "string", "pattern": "^[0-9a-f]{32}$", "description": "The id of the call." },
                },
            },
        },
    })
}

/// Drop the components no operation reaches (types only internal operations use).
fn keep_referenced(schemas: &mut Map<String, Value>, paths: &Map<String, Value>) {
    let mut reached = std::collections::BTreeSet::new();
    let mut pending: Vec<String> = Vec::new();
    let found = |value: &Value, pending: &mut Vec<String>| {
        collect_refs(value, &mut |name| pending.push(name.to_string()));
    };
    for path in paths.values() {
        found(path, &mut pending);
    }
    while let Some(name) = pending.pop() {
        if reached.insert(name.clone())
            && let Some(schema) = schemas.get(&name)
        {
            found(schema, &mut pending);
        }
    }
    schemas.retain(|name, _| reached.contains(name));
}

/// Every component name `value` references, unescaped.
fn collect_refs(value: &Value, f: &mut impl FnMut(&str)) {
    match value {
        Value::Object(map) => {
            for (key, value) in map {
                match (key.as_str(), value) {
                    ("$ref", Value::String(reference)) => {
                        if let Some(name) = reference.strip_prefix(SCHEMAS) {
                            f(&name.replace("~1", "/").replace("~0", "~"));
                        }
                    }
                    _ => collect_refs(value, f),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|item| collect_refs(item, f)),
        _ => {}
    }
}

/// Give every component the title of its name in PascalCase (`auth.ReloadReport` →
/// `AuthReloadReport`, `alknet.error.NOT_FOUND` → `AlknetErrorNotFound`), made unique with
/// a number where two names give one title. Generators name their types after titles:
/// two services' `ReloadReport`, or every error body, would otherwise be one type.
fn unique_titles(schemas: &mut Map<String, Value>) {
    let mut names: Vec<String> = schemas.keys().cloned().collect();
    names.sort();
    let mut taken = std::collections::BTreeSet::new();
    for name in names {
        let base = pascal_case(&name);
        let title = std::iter::once(base.clone())
            .chain((2..).map(|n| format!("{base}{n}")))
            .find(|candidate| !taken.contains(candidate))
            .expect("an unbounded range always has a free title");
        taken.insert(title.clone());
        if let Some(Value::Object(schema)) = schemas.get_mut(&name) {
            schema.insert("title".into(), Value::String(title));
        }
    }
}

/// `a.b_c.DEF` → `ABCDef`: each word capitalised, an all-capitals word (an error code)
/// lowered after its first letter, separators dropped.
fn pascal_case(name: &str) -> String {
    name.split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|word| !word.is_empty())
        .map(|word| {
            let shouting = word.chars().all(|c| !c.is_ascii_lowercase());
            let mut chars = word.chars();
            let first = chars.next().map(|c| c.to_ascii_uppercase());
            let rest: String = if shouting {
                chars.map(|c| c.to_ascii_lowercase()).collect()
            } else {
                chars.collect()
            };
            first.into_iter().chain(rest.chars()).collect::<String>()
        })
        .collect()
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
    fn component_titles_are_unique_pascal_case_names() {
        let mut schemas = Map::new();
        for name in [
            "auth.ReloadReport",
            "config.ReloadReport",
            "alknet.error.NOT_FOUND",
            "a.bC",
            "aB.c",
        ] {
            schemas.insert(
                name.into(),
                json!({"title": "ReloadReport", "type": "object"}),
            );
        }
        unique_titles(&mut schemas);
        let title = |name: &str| schemas[name]["title"].as_str().unwrap().to_string();
        assert_eq!(title("auth.ReloadReport"), "AuthReloadReport");
        assert_eq!(title("config.ReloadReport"), "ConfigReloadReport");
        assert_eq!(title("alknet.error.NOT_FOUND"), "AlknetErrorNotFound");
        assert_eq!(
            (title("a.bC"), title("aB.c")),
            ("ABC".into(), "ABC2".into())
        );
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
            "200", "400", "401", "403", "404", "409", "413", "422", "429", "500", "503", "504",
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
        assert_eq!(
            feed["security"],
            json!([{}, {"bearer": []}]),
            "open operations take anonymous callers and tokens"
        );
        assert!(feed["responses"].get("401").is_some(), "a refused token");
        assert!(feed["responses"].get("403").is_none());
        assert_eq!(
            feed["requestBody"]["required"], false,
            "`In` has no required field"
        );
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
