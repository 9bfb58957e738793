//! The files of a schema directory, as `alknet schema export` writes them.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::{Value, json};

use super::document::service_document;
use super::openapi;
use crate::ServiceSpec;

/// The file a service's document is exported to, relative to the schema directory.
pub fn service_file(namespace: &str) -> String {
    format!("services/{namespace}.json")
}

/// The index file, relative to the schema directory.
pub const INDEX_FILE: &str = "index.json";

/// The OpenAPI document, relative to the schema directory.
pub const OPENAPI_FILE: &str = "openapi.json";

/// The index of `services`: each service's version, description, document file and
/// operations (kind and visibility), keyed by namespace.
pub fn index<'a>(services: impl IntoIterator<Item = &'a ServiceSpec>) -> Value {
    let services: serde_json::Map<String, Value> = services
        .into_iter()
        .map(|service| {
            let operations: serde_json::Map<String, Value> = service
                .operations
                .iter()
                .map(|op| {
                    let entry = json!({ "kind": op.kind, "visibility": op.visibility });
                    (op.name.clone(), entry)
                })
                .collect();
            let entry = json!({
                "version": service.version,
                "description": service.description,
                "document": service_file(&service.namespace),
                "operations": operations,
            });
            (service.namespace.clone(), entry)
        })
        .collect();
    json!({ "services": services, "openapi": OPENAPI_FILE })
}

/// Every file of the schema directory: path (relative, `/`-separated) → contents.
///
/// `services/{namespace}.json` per service, `index.json` and `openapi.json`; each is
/// [`to_pretty_json`], so the same services always give the same bytes.
///
/// ```
/// use alknet_example::{EchoProtocol, EchoService};
/// use alknet_runtime::{OperationEnv, schema};
///
/// let env = OperationEnv::builder()
///     .local(EchoProtocol::local(EchoService::default()))
///     .build()
///     .unwrap();
/// let files = schema::export(env.services());
/// assert!(files.contains_key("services/echo.json"));
///
/// let echo = schema::service_document(env.services().next().unwrap());
/// assert_eq!(
///     echo["operations"]["say"]["input"]["$ref"],
///     "https://alk.dev/schemas/services/echo.json#/$defs/say.input"
/// );
/// assert_eq!(echo["schema"]["$defs"]["say.input"]["$ref"], "#/$defs/Say");
/// assert!(schema::diff(&echo, &echo).is_empty());
/// assert_eq!(&schema::service_spec(&echo).unwrap().namespace, "echo");
/// ```
pub fn export<'a>(services: impl IntoIterator<Item = &'a ServiceSpec>) -> BTreeMap<String, String> {
    let documented: Vec<(&ServiceSpec, Value)> = services
        .into_iter()
        .map(|service| (service, service_document(service)))
        .collect();
    let mut files: BTreeMap<String, String> = documented
        .iter()
        .map(|(service, document)| (service_file(&service.namespace), to_pretty_json(document)))
        .collect();
    files.insert(
        INDEX_FILE.to_string(),
        to_pretty_json(&index(documented.iter().map(|(service, _)| *service))),
    );
    files.insert(
        OPENAPI_FILE.to_string(),
        to_pretty_json(&openapi::openapi_of(&documented)),
    );
    files
}

/// `value` as pretty JSON with every object's keys sorted and a trailing newline.
///
/// Keys are sorted here rather than left to `serde_json`'s map type, so the output stays
/// the same if another crate turns on `serde_json/preserve_order`.
pub fn to_pretty_json(value: &Value) -> String {
    let mut text = serde_json::to_string_pretty(&Sorted(value))
        .expect("a JSON value with string keys always serializes");
    text.push('\n');
    text
}

/// Serializes a value with the keys of every object in sorted order.
struct Sorted<'a>(&'a Value);

impl Serialize for Sorted<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::{SerializeMap, SerializeSeq};
        match self.0 {
            Value::Object(map) => {
                let mut entries: Vec<(&String, &Value)> = map.iter().collect();
                entries.sort_unstable_by_key(|(key, _)| *key);
                let mut out = serializer.serialize_map(Some(entries.len()))?;
                for (key, value) in entries {
                    out.serialize_entry(key, &Sorted(value))?;
                }
                out.end()
            }
            Value::Array(items) => {
                let mut out = serializer.serialize_seq(Some(items.len()))?;
                for item in items {
                    out.serialize_element(&Sorted(item))?;
                }
                out.end()
            }
            other => other.serialize(serializer),
        }
    }
}

/// Escape a name for use as one JSON Pointer segment (RFC 6901).
pub(crate) fn pointer_segment(name: &str) -> String {
    name.replace('~', "~0").replace('/', "~1")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pretty_json_sorts_keys_at_every_level_and_ends_with_a_newline() {
        let value = json!({"b": 1, "a": {"d": [{"z": 1, "y": 2}], "c": null}});
        let text = to_pretty_json(&value);
        assert!(text.ends_with("}\n"));
        let positions: Vec<usize> = ["\"a\"", "\"c\"", "\"d\"", "\"y\"", "\"z\"", "\"b\""]
            .iter()
            .map(|key| text.find(key).unwrap())
            .collect();
        assert!(positions.windows(2).all(|w| w[0] < w[1]), "{text}");
    }

    #[test]
    fn pointer_segments_escape_tilde_and_slash() {
        assert_eq!(pointer_segment("a/b~c"), "a~1b~0c");
    }
}
