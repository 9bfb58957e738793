//! The per-service document: alknet's metadata for every operation, beside one JSON Schema
//! 2020-12 resource that holds every schema of the service, and its inverse for the
//! remote mount.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use super::DIALECT;
use super::files::{pointer_segment, service_file};
use crate::{AccessControl, ErrorDef, OperationKind, OperationSpec, ServiceSpec, Visibility};

const DEFS_PREFIX: &str = "#/$defs/";

/// The key of a service document that holds its schema resource.
pub(super) const SCHEMA_KEY: &str = "schema";

/// Where the schema resources of service documents are identified: a service's resource is
/// `$id` `https://alk.dev/schemas/services/{namespace}.json`, named after its file. An
/// identifier, not a location to fetch.
const SCHEMA_ID_BASE: &str = "https://alk.dev/schemas/";

/// The `$id` of `namespace`'s schema resource.
pub fn schema_id(namespace: &str) -> String {
    format!("{SCHEMA_ID_BASE}{}", service_file(namespace))
}

/// The `$defs` name of one part of an operation: `say.input`, `say.output`, `ticks.item`,
/// `shout.error.EMPTY_TEXT` (the details of an error). A type never takes a part's name:
/// one that would is renamed like any other clash (see [`Defs`]).
pub(super) fn part_name(operation: &str, part: &str) -> String {
    format!("{operation}.{part}")
}

/// The part of an error's details: `error.{CODE}`.
pub(super) fn error_part(code: &str) -> String {
    format!("error.{code}")
}

/// The document of one service: a plain JSON object (not itself a schema) with the
/// service's `namespace`, `version`, `description` and `operations` (keyed by name: wire
/// id, kind, visibility, access control, description, bindings, `timeout_ms`,
/// `idempotent`, and the declared `errors` keyed by code with their HTTP status), and under
/// `schema` one JSON Schema 2020-12 resource with its own `$id` ([`schema_id`]).
///
/// The resource's `$defs` hold every named type of the service once, and one entry per
/// operation part ([`part_name`]); the operation's `input`, `output` (`item` for a
/// subscription) and each error's `details` are `{"$ref": "{$id}#/$defs/{part}"}`, so a
/// validator that registered the resource validates a part with that schema as it stands.
/// Two types with the same name but different schemas are kept apart as `Name`, `Name_2`, ….
pub fn service_document(service: &ServiceSpec) -> Value {
    let id = schema_id(&service.namespace);
    let parts: Vec<(&OperationSpec, Vec<(String, &Value)>)> = service
        .operations
        .iter()
        .map(|op| (op, operation_parts(op)))
        .collect();
    let mut defs = Defs {
        reserved: part_names(service),
        ..Defs::default()
    };
    let mut operations = Map::new();
    for (op, parts) in parts {
        let mut refs = BTreeMap::new();
        for (part, schema) in parts {
            let name = part_name(&op.name, &part);
            let embedded = defs.absorb(schema);
            defs.types.insert(name.clone(), embedded);
            refs.insert(part, json!({ "$ref": format!("{id}{}", def_ref(&name)) }));
        }
        let entry = OperationEntry::new(op, &mut refs);
        let entry = serde_json::to_value(entry).expect("an operation entry serializes");
        operations.insert(op.name.clone(), entry);
    }
    json!({
        "namespace": service.namespace,
        "version": service.version,
        "description": service.description,
        "operations": operations,
        SCHEMA_KEY: {
            "$schema": DIALECT,
            "$id": id,
            // Never the name of a type in `$defs`: a model generator would name the root
            // `Echo` and push the `Echo` type aside as `Echo1`.
            "title": format!("{} service schemas", service.namespace),
            "description": format!(
                "Every schema of the `{}` service: its types, and `{{operation}}.input`, `.output` (`.item` for a subscription) and `.error.{{CODE}}` (an error's details) per operation.",
                service.namespace
            ),
            "$defs": defs.into_map(),
        },
    })
}

/// An operation's schemas by part: `input`, `output` or `item`, `error.{CODE}` for each
/// error with details.
fn operation_parts(op: &OperationSpec) -> Vec<(String, &Value)> {
    let output = if op.is_subscription() {
        "item"
    } else {
        "output"
    };
    let mut parts = vec![
        ("input".to_string(), &op.input_schema),
        (output.to_string(), &op.output_schema),
    ];
    parts.extend(
        op.errors
            .iter()
            .filter_map(|error| Some((error_part(&error.code), error.schema.as_ref()?))),
    );
    parts
}

/// The `$defs` names of every operation part of `service`.
pub(super) fn part_names(service: &ServiceSpec) -> BTreeSet<String> {
    service
        .operations
        .iter()
        .flat_map(|op| {
            operation_parts(op)
                .into_iter()
                .map(|(part, _)| part_name(&op.name, &part))
        })
        .collect()
}

/// One operation's metadata in a service document, as written and as read back (fields a
/// newer peer adds are ignored).
#[derive(Serialize, Deserialize)]
struct OperationEntry {
    id: String,
    kind: OperationKind,
    visibility: Visibility,
    description: String,
    access: AccessControl,
    /// Derived from the rest ([`OperationSpec::bindings`]), so not read back.
    #[serde(skip_deserializing)]
    bindings: Value,
    input: Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    output: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    item: Option<Value>,
    errors: BTreeMap<String, ErrorEntry>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    timeout_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    idempotent: bool,
}

#[derive(Serialize, Deserialize)]
struct ErrorEntry {
    http_status: u16,
    description: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    details: Option<Value>,
}

impl OperationEntry {
    /// `op`'s entry, taking its parts' references from `refs` (by part).
    fn new(op: &OperationSpec, refs: &mut BTreeMap<String, Value>) -> Self {
        let bindings = op.bindings();
        let errors = op
            .errors
            .iter()
            .map(|error| {
                let entry = ErrorEntry {
                    http_status: error.http_status,
                    description: error.description.clone(),
                    details: refs.remove(&error_part(&error.code)),
                };
                (error.code.clone(), entry)
            })
            .collect();
        OperationEntry {
            id: op.id.clone(),
            kind: op.kind,
            visibility: op.visibility,
            description: op.description.clone(),
            access: op.access.clone(),
            bindings: json!({
                "call_protocol": bindings.call_protocol,
                "http_path": bindings.http_path,
                "mcp_tool": bindings.mcp_tool,
                "dns_name": bindings.dns_name,
            }),
            input: refs.remove("input").unwrap_or_default(),
            output: refs.remove("output"),
            item: refs.remove("item"),
            errors,
            timeout_ms: op.timeout.map(|timeout| timeout.as_millis() as u64),
            idempotent: op.idempotent,
        }
    }
}

/// The service a service document describes — what a node mounting a peer learns from its
/// `services/schema`. Each schema comes back self-contained: the part itself at the root
/// (a named type in place of a bare reference to it) and the types it reaches in `$defs`.
///
/// The service's `authority` and `calls` are not in the document; they stay empty.
pub fn service_spec(document: &Value) -> Result<ServiceSpec, String> {
    let text = |key: &str| {
        document[key]
            .as_str()
            .map(String::from)
            .ok_or_else(|| format!("the service document's `{key}` is not a string"))
    };
    let (namespace, version) = (text("namespace")?, text("version")?);
    let Some(entries) = document["operations"].as_object() else {
        return Err(format!(
            "the document of `{namespace}` has no `operations` object"
        ));
    };
    let operations = entries
        .iter()
        .map(|(name, entry)| {
            let at = format!("`{namespace}` operation `{name}`");
            let entry = OperationEntry::deserialize(entry).map_err(|e| format!("{at}: {e}"))?;
            let schema = |reference: &Value, part: &str| {
                standalone(document, reference)
                    .ok_or_else(|| format!("{at}: its {part} {reference} points at no schema in the document"))
            };
            let output = match (&entry.output, &entry.item, entry.kind) {
                (None, Some(item), OperationKind::Subscription) => schema(item, "item")?,
                (Some(output), None, OperationKind::Query | OperationKind::Mutation) => {
                    schema(output, "output")?
                }
                _ => {
                    return Err(format!(
                        "{at}: a {} has exactly one of `output` (queries and mutations) and `item` (subscriptions)",
                        entry.kind.as_str()
                    ));
                }
            };
            let errors = entry
                .errors
                .iter()
                .map(|(code, error)| {
                    Ok(ErrorDef {
                        code: code.clone(),
                        http_status: error.http_status,
                        description: error.description.clone(),
                        schema: match &error.details {
                            Some(details) => Some(schema(details, &format!("error `{code}` details"))?),
                            None => None,
                        },
                    })
                })
                .collect::<Result<_, String>>()?;
            Ok(OperationSpec {
                id: entry.id,
                namespace: namespace.clone(),
                name: name.clone(),
                kind: entry.kind,
                visibility: entry.visibility,
                idempotent: entry.idempotent,
                description: entry.description,
                version: version.clone(),
                access: entry.access,
                timeout: entry.timeout_ms.map(std::time::Duration::from_millis),
                input_schema: schema(&entry.input, "input")?,
                output_schema: output,
                errors,
            })
        })
        .collect::<Result<_, String>>()?;
    Ok(ServiceSpec {
        namespace,
        version,
        description: text("description")?,
        authority: None,
        calls: Vec::new(),
        operations,
    })
}

/// The schema a reference in `document` points at, and its JSON Pointer in the document.
/// `{$id}#/…` (how operations name their parts) and `#/…` (how schemas in the resource name
/// each other) both point into the schema resource. A document written before the
/// resource existed is its own resource, `#/…` pointing into the document itself.
pub(super) fn resolve<'d>(document: &'d Value, reference: &str) -> Option<(&'d Value, String)> {
    let (resource, prefix) = match document.get(SCHEMA_KEY) {
        Some(resource) => (resource, format!("/{SCHEMA_KEY}")),
        None => (document, String::new()),
    };
    let (base, fragment) = reference.split_once('#')?;
    if !base.is_empty() && resource.get("$id").and_then(Value::as_str) != Some(base) {
        return None;
    }
    Some((resource.pointer(fragment)?, format!("{prefix}{fragment}")))
}

/// `reference` (a `{"$ref": …}` schema) as one self-contained schema: what it points at,
/// bare references to a named type followed, with every type it reaches under `$defs`.
fn standalone(document: &Value, reference: &Value) -> Option<Value> {
    let mut schema = reference;
    // A bare `{"$ref"}` stands for what it names; one with other keywords is kept whole.
    while let Some(Value::String(target)) = schema.get("$ref")
        && schema.as_object().is_some_and(|map| map.len() == 1)
    {
        schema = resolve(document, target)?.0;
    }
    let mut root = schema.as_object()?.clone();
    let defs = document
        .get(SCHEMA_KEY)
        .unwrap_or(document)
        .get("$defs")
        .and_then(Value::as_object);
    let mut reached = Map::new();
    let mut pending: Vec<String> = local_refs(schema).into_iter().collect();
    while let Some(name) = pending.pop() {
        if let Some(def) = defs.and_then(|defs| defs.get(&name))
            && !reached.contains_key(&name)
        {
            pending.extend(local_refs(def));
            reached.insert(name, def.clone());
        }
    }
    root.insert("$schema".into(), json!(DIALECT));
    if !reached.is_empty() {
        root.insert("$defs".into(), Value::Object(reached));
    }
    Some(Value::Object(root))
}

/// The shared `$defs` of one document, filled one self-contained schema at a time.
#[derive(Default)]
struct Defs {
    types: BTreeMap<String, Value>,
    /// Names no type may take: the operations' parts.
    reserved: BTreeSet<String>,
}

impl Defs {
    fn into_map(self) -> Map<String, Value> {
        self.types.into_iter().collect()
    }

    /// Whether `name` is neither a type nor reserved.
    fn is_free(&self, name: &str) -> bool {
        !self.types.contains_key(name) && !self.reserved.contains(name)
    }

    /// Move the named types of a self-contained schema (its `$defs`, and the root itself
    /// when it is a named object or enum) into the shared `$defs`, and return what to embed
    /// in its place, with references rewritten to the shared names.
    fn absorb(&mut self, schema: &Value) -> Value {
        let Value::Object(root) = schema else {
            return schema.clone();
        };
        let mut root = root.clone();
        root.remove("$schema");
        let mut local: BTreeMap<String, Value> = match root.remove("$defs") {
            Some(Value::Object(defs)) => defs.into_iter().collect(),
            _ => BTreeMap::new(),
        };
        let mut embedded = Value::Object(root);
        let root_name = hoisted_name(&embedded, &local);
        if let Some(name) = &root_name {
            let root = std::mem::replace(&mut embedded, json!({ "$ref": def_ref(name) }));
            local.insert(name.clone(), root);
        }

        let renames = self.names_for(&local);
        let self_ref = root_name.as_ref().map(|name| def_ref(&renames[name]));
        for (name, mut schema) in local {
            let shared = &renames[&name];
            if self.types.contains_key(shared) {
                continue; // the same type, already shared
            }
            rewrite_refs(&mut schema, &renames, self_ref.as_deref());
            self.types.insert(shared.clone(), schema);
        }
        rewrite_refs(&mut embedded, &renames, self_ref.as_deref());
        embedded
    }

    /// The shared name for each local type: its own name when that is free (not a type's,
    /// not reserved) or names the same schema (which must hold for every type it references too), else `Name_2`, ….
    fn names_for(&self, local: &BTreeMap<String, Value>) -> BTreeMap<String, String> {
        let mut same: BTreeSet<&String> = local
            .iter()
            .filter(|(name, schema)| self.types.get(*name) == Some(schema))
            .map(|(name, _)| name)
            .collect();
        // A type equal to its shared namesake is only the same type if every local type it
        // references keeps its name too.
        loop {
            let keeps_name = |name: &String| same.contains(name) || self.is_free(name);
            let broken: Vec<&String> = same
                .iter()
                .copied()
                .filter(|name| {
                    local_refs(&local[*name])
                        .iter()
                        .any(|r| local.contains_key(r) && !keeps_name(r))
                })
                .collect();
            if broken.is_empty() {
                break;
            }
            for name in broken {
                same.remove(name);
            }
        }
        let mut taken: BTreeSet<String> = self.types.keys().cloned().collect();
        taken.extend(self.reserved.iter().cloned());
        taken.extend(local.keys().cloned());
        local
            .keys()
            .map(|name| {
                let shared = if same.contains(name) || self.is_free(name) {
                    name.clone()
                } else {
                    let fresh = (2..)
                        .map(|n| format!("{name}_{n}"))
                        .find(|candidate| !taken.contains(candidate))
                        .expect("an unbounded range always has a free name");
                    taken.insert(fresh.clone());
                    fresh
                };
                (name.clone(), shared)
            })
            .collect()
    }
}

/// The name to hoist a root schema under: its title, when the root is a named object or
/// enum (primitives such as `string` stay inline), or when it refers to itself.
fn hoisted_name(root: &Value, local: &BTreeMap<String, Value>) -> Option<String> {
    let title = root.get("title")?.as_str()?;
    let named_type = ["properties", "oneOf", "enum"]
        .iter()
        .any(|key| root.get(key).is_some())
        || root.get("type") == Some(&json!("object"));
    let recursive = has_root_ref(root) || local.values().any(has_root_ref);
    let identifier = title.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    ((named_type && identifier) || recursive)
        .then(|| title.to_string())
        .filter(|name| !local.contains_key(name))
}

fn def_ref(name: &str) -> String {
    format!("{DEFS_PREFIX}{}", pointer_segment(name))
}

/// The names of the `$defs` a schema references (`""` for a reference to the root).
fn local_refs(schema: &Value) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    visit_refs(schema, &mut |reference| {
        if reference == "#" {
            names.insert(String::new());
        } else if let Some(name) = ref_name(reference) {
            names.insert(name);
        }
    });
    names
}

fn has_root_ref(schema: &Value) -> bool {
    local_refs(schema).contains("")
}

/// The (unescaped) `$defs` name a `#/$defs/Name[/...]` reference points into.
fn ref_name(reference: &str) -> Option<String> {
    let rest = reference.strip_prefix(DEFS_PREFIX)?;
    let segment = rest.split('/').next().unwrap_or(rest);
    Some(segment.replace("~1", "/").replace("~0", "~"))
}

fn visit_refs(schema: &Value, f: &mut impl FnMut(&str)) {
    match schema {
        Value::Object(map) => {
            for (key, value) in map {
                match (key.as_str(), value) {
                    ("$ref", Value::String(reference)) => f(reference),
                    _ => visit_refs(value, f),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|item| visit_refs(item, f)),
        _ => {}
    }
}

/// Rewrite `#/$defs/Name` to the type's shared name, and `#` (the root) to `self_ref`.
fn rewrite_refs(schema: &mut Value, renames: &BTreeMap<String, String>, self_ref: Option<&str>) {
    match schema {
        Value::Object(map) => {
            for (key, value) in map.iter_mut() {
                match (key.as_str(), value) {
                    ("$ref", Value::String(reference)) => {
                        if reference == "#" {
                            if let Some(target) = self_ref {
                                *reference = target.to_string();
                            }
                        } else if let Some(name) = ref_name(reference)
                            && let Some(shared) = renames.get(&name)
                        {
                            let rest = &reference[DEFS_PREFIX.len()..];
                            let tail = rest.find('/').map_or("", |i| &rest[i..]);
                            *reference = format!("{}{tail}", def_ref(shared));
                        }
                    }
                    (_, value) => rewrite_refs(value, renames, self_ref),
                }
            }
        }
        Value::Array(items) => items
            .iter_mut()
            .for_each(|item| rewrite_refs(item, renames, self_ref)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shop() -> ServiceSpec {
        let stock = json!({"title": "Stock", "type": "object",
            "properties": {"left": {"type": "integer", "minimum": 0}}, "required": ["left"]});
        let order = json!({"$schema": DIALECT, "title": "Order", "type": "object",
            "properties": {"stock": {"$ref": "#/$defs/Stock"}}, "$defs": {"Stock": stock}});
        let mut stock = stock;
        stock["$schema"] = json!(DIALECT);
        let buy = OperationSpec {
            id: "shop/buy".into(),
            namespace: "shop".into(),
            name: "buy".into(),
            kind: OperationKind::Mutation,
            visibility: Visibility::External,
            idempotent: true,
            description: "Buys.".into(),
            version: "2.1.0".into(),
            access: AccessControl {
                scopes: vec!["shop:buy".into()],
                ..AccessControl::default()
            },
            timeout: Some(std::time::Duration::from_millis(1500)),
            input_schema: order,
            output_schema: json!({"$schema": DIALECT, "title": "string", "type": "string"}),
            errors: vec![ErrorDef {
                code: "SOLD_OUT".into(),
                http_status: 409,
                description: "nothing left".into(),
                schema: Some(stock),
            }],
        };
        let feed = OperationSpec {
            id: "shop/feed".into(),
            name: "feed".into(),
            kind: OperationKind::Subscription,
            idempotent: false,
            access: AccessControl::default(),
            timeout: None,
            errors: vec![],
            ..buy.clone()
        };
        ServiceSpec {
            namespace: "shop".into(),
            version: "2.1.0".into(),
            description: "Sells things.".into(),
            authority: None,
            calls: vec![],
            operations: vec![buy, feed],
        }
    }

    #[test]
    fn operations_reference_their_parts_in_one_schema_resource() {
        let doc = service_document(&shop());
        let id = "https://alk.dev/schemas/services/shop.json";
        assert_eq!(doc["schema"]["$id"], id);
        assert_eq!(doc["schema"]["$schema"], DIALECT);
        let buy = &doc["operations"]["buy"];
        assert_eq!(
            buy["input"],
            json!({"$ref": format!("{id}#/$defs/buy.input")})
        );
        assert_eq!(
            buy["errors"]["SOLD_OUT"]["details"],
            json!({"$ref": format!("{id}#/$defs/buy.error.SOLD_OUT")})
        );
        assert_eq!(buy["timeout_ms"], 1500);
        assert_eq!(buy["idempotent"], true);
        assert_eq!(
            doc["operations"]["feed"]["item"]["$ref"],
            format!("{id}#/$defs/feed.item")
        );
        assert!(doc["operations"]["feed"].get("output").is_none());
        let defs = &doc["schema"]["$defs"];
        assert_eq!(defs["buy.input"], json!({"$ref": "#/$defs/Order"}));
        assert_eq!(defs["buy.error.SOLD_OUT"], json!({"$ref": "#/$defs/Stock"}));
        assert_eq!(defs["buy.output"]["type"], "string");
        assert_eq!(
            defs["Order"]["properties"]["stock"]["$ref"],
            "#/$defs/Stock"
        );
        let (found, pointer) = resolve(&doc, buy["input"]["$ref"].as_str().unwrap()).unwrap();
        assert_eq!(
            (found, pointer.as_str()),
            (&defs["buy.input"], "/schema/$defs/buy.input")
        );
    }

    #[test]
    fn a_type_never_takes_the_name_of_a_part() {
        let mut shop = shop();
        shop.operations[0].input_schema = json!({"$schema": DIALECT, "title": "Order",
            "type": "object", "properties": {"x": {"$ref": "#/$defs/buy.output"}},
            "$defs": {"buy.output": {"type": "integer"}}});
        let doc = service_document(&shop);
        let defs = &doc["schema"]["$defs"];
        assert_eq!(
            defs["buy.output"]["type"], "string",
            "the part keeps its name"
        );
        assert_eq!(defs["buy.output_2"], json!({"type": "integer"}));
        assert_eq!(
            defs["Order"]["properties"]["x"]["$ref"],
            "#/$defs/buy.output_2"
        );
    }

    #[test]
    fn a_document_reads_back_as_its_service_with_self_contained_schemas() {
        let shop = shop();
        let read = service_spec(&service_document(&shop)).unwrap();
        assert_eq!(
            (&read.namespace, &read.version),
            (&shop.namespace, &shop.version)
        );
        for op in &shop.operations {
            let back = read.operations.iter().find(|b| b.name == op.name).unwrap();
            let without_schemas = |spec: &OperationSpec| OperationSpec {
                input_schema: Value::Null,
                output_schema: Value::Null,
                errors: spec
                    .errors
                    .iter()
                    .map(|e| ErrorDef {
                        schema: None,
                        ..e.clone()
                    })
                    .collect(),
                ..spec.clone()
            };
            assert_eq!(without_schemas(back), without_schemas(op));
            // The same schemas, each standing alone again.
            assert_eq!(service_document(&read), service_document(&shop));
        }
        let buy = &read.operations[0];
        assert_eq!(buy.input_schema["title"], "Order");
        assert_eq!(buy.input_schema["$schema"], DIALECT);
        assert_eq!(
            buy.input_schema["$defs"]
                .as_object()
                .unwrap()
                .keys()
                .collect::<Vec<_>>(),
            ["Stock"],
            "only the types it reaches"
        );
        assert_eq!(
            buy.output_schema,
            json!({"$schema": DIALECT, "title": "string", "type": "string"})
        );

        let mut broken = service_document(&shop);
        broken["operations"]["feed"]["output"] = broken["operations"]["feed"]["item"].clone();
        let err = service_spec(&broken).unwrap_err();
        assert!(err.contains("`shop` operation `feed`"), "{err}");
        broken["operations"]["feed"]["input"]["$ref"] = json!("#/$defs/nowhere");
        broken["operations"]["feed"]
            .as_object_mut()
            .unwrap()
            .remove("output");
        let err = service_spec(&broken).unwrap_err();
        assert!(err.contains("points at no schema"), "{err}");
    }

    fn object(title: &str, properties: Value, defs: Value) -> Value {
        json!({
            "$schema": DIALECT, "title": title, "type": "object",
            "properties": properties, "$defs": defs,
        })
    }

    #[test]
    fn a_type_used_by_two_schemas_is_defined_once() {
        let tick = json!({"type": "object", "properties": {"n": {"type": "integer"}}});
        let a = object(
            "A",
            json!({"t": {"$ref": "#/$defs/Tick"}}),
            json!({"Tick": tick}),
        );
        let b = object(
            "B",
            json!({"u": {"$ref": "#/$defs/Tick"}}),
            json!({"Tick": tick}),
        );
        let mut defs = Defs::default();
        assert_eq!(defs.absorb(&a), json!({"$ref": "#/$defs/A"}));
        assert_eq!(defs.absorb(&b), json!({"$ref": "#/$defs/B"}));
        let map = defs.into_map();
        assert_eq!(
            map.keys().collect::<Vec<_>>(),
            ["A", "B", "Tick"].iter().collect::<Vec<_>>()
        );
        assert_eq!(map["B"]["properties"]["u"]["$ref"], "#/$defs/Tick");
        assert!(map["A"].get("$schema").is_none());
    }

    #[test]
    fn two_different_types_with_one_name_are_kept_apart_with_references_rewritten() {
        let a = object(
            "A",
            json!({"x": {"$ref": "#/$defs/Item"}}),
            json!({"Item": {"type": "string"}}),
        );
        let b = object(
            "B",
            json!({"x": {"$ref": "#/$defs/Item"}}),
            json!({"Item": {"type": "integer"}}),
        );
        let mut defs = Defs::default();
        defs.absorb(&a);
        defs.absorb(&b);
        let map = defs.into_map();
        assert_eq!(map["Item"], json!({"type": "string"}));
        assert_eq!(map["Item_2"], json!({"type": "integer"}));
        assert_eq!(map["B"]["properties"]["x"]["$ref"], "#/$defs/Item_2");
    }

    #[test]
    fn an_equal_type_that_references_a_renamed_type_is_renamed_too() {
        let outer = json!({"type": "object", "properties": {"i": {"$ref": "#/$defs/Inner"}}});
        let a = object(
            "A",
            json!({"o": {"$ref": "#/$defs/Outer"}}),
            json!({"Outer": outer, "Inner": {"type": "string"}}),
        );
        let b = object(
            "B",
            json!({"o": {"$ref": "#/$defs/Outer"}}),
            json!({"Outer": outer, "Inner": {"type": "boolean"}}),
        );
        let mut defs = Defs::default();
        defs.absorb(&a);
        defs.absorb(&b);
        let map = defs.into_map();
        assert_eq!(map["Outer_2"]["properties"]["i"]["$ref"], "#/$defs/Inner_2");
        assert_eq!(map["Outer"]["properties"]["i"]["$ref"], "#/$defs/Inner");
    }

    #[test]
    fn primitives_stay_inline_and_recursive_roots_point_at_their_definition() {
        let mut defs = Defs::default();
        let string = json!({"$schema": DIALECT, "title": "string", "type": "string"});
        assert_eq!(
            defs.absorb(&string),
            json!({"title": "string", "type": "string"})
        );
        let node = object("Node", json!({"next": {"$ref": "#"}}), json!({}));
        assert_eq!(defs.absorb(&node), json!({"$ref": "#/$defs/Node"}));
        assert_eq!(
            defs.into_map()["Node"]["properties"]["next"]["$ref"],
            "#/$defs/Node"
        );
    }
}
