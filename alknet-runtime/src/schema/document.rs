//! The per-service document: every operation with its schemas, and every named type once
//! under a shared `$defs`.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value, json};

use super::{DIALECT, pointer_segment};
use crate::{OperationSpec, ServiceSpec};

const DEFS_PREFIX: &str = "#/$defs/";

/// The document of one service: a JSON Schema 2020-12 document whose `$defs` hold every
/// named type of the service once, and whose `operations` (keyed by operation name) carry
/// the wire id, kind, visibility, access control, description, bindings, the `input`
/// schema, the `output` schema (`item` for a subscription) and the declared `errors`
/// (keyed by code, each with its HTTP status and `details` schema).
///
/// Schemas inside `operations` reference types as `#/$defs/Name`, relative to this
/// document. Two types with the same name but different schemas are kept apart as
/// `Name`, `Name_2`, ….
pub fn service_document(service: &ServiceSpec) -> Value {
    let mut defs = Defs::default();
    let operations: Map<String, Value> = service
        .operations
        .iter()
        .map(|op| (op.name.clone(), operation_entry(op, &mut defs)))
        .collect();
    json!({
        "$schema": DIALECT,
        // Not the bare namespace: a model generator would name the root `Echo` and push the
        // `Echo` type in `$defs` aside.
        "title": format!("{} service document", service.namespace),
        "description": service.description,
        "namespace": service.namespace,
        "version": service.version,
        "operations": operations,
        "$defs": defs.into_map(),
    })
}

fn operation_entry(op: &OperationSpec, defs: &mut Defs) -> Value {
    let bindings = op.bindings();
    let errors: Map<String, Value> = op
        .errors
        .iter()
        .map(|error| {
            let mut entry = json!({
                "http_status": error.http_status,
                "description": error.description,
            });
            if let Some(schema) = &error.schema {
                entry["details"] = defs.absorb(schema);
            }
            (error.code.clone(), entry)
        })
        .collect();
    let mut entry = json!({
        "id": op.id,
        "kind": op.kind,
        "visibility": op.visibility,
        "description": op.description,
        "access": op.access,
        "bindings": {
            "call_protocol": bindings.call_protocol,
            "http_path": bindings.http_path,
            "mcp_tool": bindings.mcp_tool,
            "dns_name": bindings.dns_name,
        },
        "input": defs.absorb(&op.input_schema),
        "errors": errors,
    });
    let output_key = if op.is_subscription() {
        "item"
    } else {
        "output"
    };
    entry[output_key] = defs.absorb(&op.output_schema);
    if let Some(timeout) = op.timeout {
        entry["timeout_ms"] = json!(timeout.as_millis() as u64);
    }
    if op.idempotent {
        entry["idempotent"] = json!(true);
    }
    entry
}

/// The shared `$defs` of one document, filled one self-contained schema at a time.
#[derive(Default)]
struct Defs(BTreeMap<String, Value>);

impl Defs {
    fn into_map(self) -> Map<String, Value> {
        self.0.into_iter().collect()
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
            if self.0.contains_key(shared) {
                continue; // the same type, already shared
            }
            rewrite_refs(&mut schema, &renames, self_ref.as_deref());
            self.0.insert(shared.clone(), schema);
        }
        rewrite_refs(&mut embedded, &renames, self_ref.as_deref());
        embedded
    }

    /// The shared name for each local type: its own name when that is free or names the
    /// same schema (which must hold for every type it references too), else `Name_2`, ….
    fn names_for(&self, local: &BTreeMap<String, Value>) -> BTreeMap<String, String> {
        let mut same: BTreeSet<&String> = local
            .iter()
            .filter(|(name, schema)| self.0.get(*name) == Some(schema))
            .map(|(name, _)| name)
            .collect();
        // A type equal to its shared namesake is only the same type if every local type it
        // references keeps its name too.
        loop {
            let keeps_name = |name: &String| same.contains(name) || !self.0.contains_key(name);
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
        let mut taken: BTreeSet<String> = self.0.keys().cloned().collect();
        taken.extend(local.keys().cloned());
        local
            .keys()
            .map(|name| {
                let shared = if same.contains(name) || !self.0.contains_key(name) {
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
