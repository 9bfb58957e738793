//! Compatibility between two versions of a service document.
//!
//! The question for every change: does a client written against the old document still
//! work against the new one? Inputs flow from clients, so a new input schema must accept
//! everything the old one accepted; outputs, items and error details flow to clients, so a
//! new output schema must produce only what the old one described. `docs/schemas.md` lists
//! every rule with an example.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde_json::{Map, Value};

use super::document;
use super::files::pointer_segment;

/// Whether a change keeps old clients working.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Compatibility {
    /// A client written against the old document may fail against the new one.
    Breaking,
    /// Old clients keep working.
    Compatible,
}

impl fmt::Display for Compatibility {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // `pad` honours the width `Change` lines its columns up with.
        f.pad(match self {
            Compatibility::Breaking => "breaking",
            Compatibility::Compatible => "compatible",
        })
    }
}

/// One difference between two service documents.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Change {
    /// Where: a JSON Pointer into the new document, or into the old one for what was
    /// removed.
    pub pointer: String,
    /// Breaking or compatible.
    pub kind: Compatibility,
    /// What changed, naming the operation and the side (input, output, …).
    pub description: String,
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:<10} {}: {}",
            self.kind, self.pointer, self.description
        )
    }
}

/// Every difference between two service documents (as made by
/// [`service_document`](super::service_document)), classified, sorted by pointer.
///
/// Descriptions, titles, defaults and examples are not compared.
pub fn diff(old: &Value, new: &Value) -> Vec<Change> {
    let mut differ = Differ {
        old,
        new,
        changes: BTreeSet::new(),
        seen: BTreeSet::new(),
    };
    differ.documents();
    differ.changes.into_iter().collect()
}

/// Which way data flows through a schema.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Flow {
    /// From clients: the new schema must accept at least what the old one accepted.
    Input,
    /// To clients: the new schema must describe at most what the old one described.
    Output,
}

/// Where a comparison stands: the side it is on and the pointers into both documents.
#[derive(Clone)]
struct At<'s> {
    flow: Flow,
    side: &'s str,
    old: String,
    new: String,
}

impl At<'_> {
    fn child(&self, segment: &str) -> Self {
        let segment = pointer_segment(segment);
        At {
            old: format!("{}/{segment}", self.old),
            new: format!("{}/{segment}", self.new),
            ..self.clone()
        }
    }
}

struct Differ<'a> {
    old: &'a Value,
    new: &'a Value,
    changes: BTreeSet<Change>,
    /// Schema pairs already compared on one flow, so recursive types end.
    seen: BTreeSet<(Flow, String, String)>,
}

const ANNOTATIONS: [&str; 9] = [
    "title",
    "description",
    "default",
    "examples",
    "deprecated",
    "readOnly",
    "writeOnly",
    "$comment",
    "$schema",
];

impl Differ<'_> {
    fn report(&mut self, pointer: &str, kind: Compatibility, description: String) {
        self.changes.insert(Change {
            pointer: pointer.to_string(),
            kind,
            description,
        });
    }

    fn documents(&mut self) {
        let empty = Map::new();
        let old_ops = self.old["operations"].as_object().unwrap_or(&empty);
        let new_ops = self.new["operations"].as_object().unwrap_or(&empty);
        for (name, old_op) in old_ops {
            let pointer = format!("/operations/{}", pointer_segment(name));
            let id = old_op["id"].as_str().unwrap_or(name).to_string();
            match new_ops.get(name) {
                None => self.report(
                    &pointer,
                    Compatibility::Breaking,
                    format!("operation `{id}` was removed"),
                ),
                Some(new_op) => self.operation(&id, &pointer, old_op, new_op),
            }
        }
        for (name, new_op) in new_ops {
            if !old_ops.contains_key(name) {
                let id = new_op["id"].as_str().unwrap_or(name);
                let pointer = format!("/operations/{}", pointer_segment(name));
                self.report(
                    &pointer,
                    Compatibility::Compatible,
                    format!("operation `{id}` was added"),
                );
            }
        }
    }

    fn operation(&mut self, id: &str, pointer: &str, old: &Value, new: &Value) {
        use Compatibility::*;
        if old["kind"] != new["kind"] {
            self.report(
                &format!("{pointer}/kind"),
                Breaking,
                format!(
                    "`{id}` changed kind from {} to {}",
                    old["kind"], new["kind"]
                ),
            );
        }
        if old["visibility"] != new["visibility"] {
            let kind = if new["visibility"] == "internal" {
                Breaking
            } else {
                Compatible
            };
            self.report(
                &format!("{pointer}/visibility"),
                kind,
                format!(
                    "`{id}` changed visibility from {} to {}",
                    old["visibility"], new["visibility"]
                ),
            );
        }
        self.access(id, pointer, &old["access"], &new["access"]);

        let sides = [
            ("input", Flow::Input),
            ("output", Flow::Output),
            ("item", Flow::Output),
        ];
        for (side, flow) in sides {
            if let (Some(o), Some(n)) = (old.get(side), new.get(side)) {
                let at = At {
                    flow,
                    side: &format!("`{id}` {side}"),
                    old: format!("{pointer}/{side}"),
                    new: format!("{pointer}/{side}"),
                };
                self.schema(&at, o, n);
            }
        }
        self.errors(id, pointer, &old["errors"], &new["errors"]);
    }

    fn access(&mut self, id: &str, pointer: &str, old: &Value, new: &Value) {
        if old == new {
            return;
        }
        let strings = |v: &Value, key: &str| -> BTreeSet<String> {
            v[key]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|s| s.as_str().map(String::from))
                        .collect()
                })
                .unwrap_or_default()
        };
        let (old_all, new_all) = (strings(old, "scopes"), strings(new, "scopes"));
        let (old_any, new_any) = (strings(old, "any_scopes"), strings(new, "any_scopes"));
        // Looser means every caller admitted before is admitted now.
        let looser = new_all.is_subset(&old_all)
            && (new_any.is_empty() || (!old_any.is_empty() && new_any.is_superset(&old_any)))
            && (new.get("resource").is_none() || new.get("resource") == old.get("resource"));
        let kind = if looser {
            Compatibility::Compatible
        } else {
            Compatibility::Breaking
        };
        self.report(
            &format!("{pointer}/access"),
            kind,
            format!("`{id}` changed its access control from {old} to {new}"),
        );
    }

    fn errors(&mut self, id: &str, pointer: &str, old: &Value, new: &Value) {
        let empty = Map::new();
        let old = old.as_object().unwrap_or(&empty);
        let new = new.as_object().unwrap_or(&empty);
        for (code, old_error) in old {
            let pointer = format!("{pointer}/errors/{}", pointer_segment(code));
            let Some(new_error) = new.get(code) else {
                self.report(
                    &pointer,
                    Compatibility::Breaking,
                    format!("`{id}` no longer declares the error code `{code}`"),
                );
                continue;
            };
            if old_error["http_status"] != new_error["http_status"] {
                self.report(
                    &format!("{pointer}/http_status"),
                    Compatibility::Breaking,
                    format!(
                        "`{id}` error `{code}` changed HTTP status from {} to {}",
                        old_error["http_status"], new_error["http_status"]
                    ),
                );
            }
            match (old_error.get("details"), new_error.get("details")) {
                (Some(o), Some(n)) => {
                    let at = At {
                        flow: Flow::Output,
                        side: &format!("`{id}` error `{code}` details"),
                        old: format!("{pointer}/details"),
                        new: format!("{pointer}/details"),
                    };
                    self.schema(&at, o, n);
                }
                (None, None) => {}
                (Some(_), None) => self.report(
                    &pointer,
                    Compatibility::Breaking,
                    format!("`{id}` error `{code}` no longer has details"),
                ),
                (None, Some(_)) => self.report(
                    &format!("{pointer}/details"),
                    Compatibility::Compatible,
                    format!("`{id}` error `{code}` gained details"),
                ),
            }
        }
        for code in new.keys().filter(|code| !old.contains_key(*code)) {
            self.report(
                &format!("{pointer}/errors/{}", pointer_segment(code)),
                Compatibility::Compatible,
                format!("`{id}` declares a new error code `{code}`"),
            );
        }
    }

    /// Follow `$ref`s within the document; returns the schema and its pointer.
    fn resolve<'v>(
        document: &'v Value,
        mut schema: &'v Value,
        mut pointer: String,
    ) -> (&'v Value, String) {
        for _ in 0..32 {
            let Some(reference) = schema.get("$ref").and_then(Value::as_str) else {
                break;
            };
            match document::resolve(document, reference) {
                Some((found, at)) => {
                    schema = found;
                    pointer = at;
                }
                None => break,
            }
        }
        (schema, pointer)
    }

    fn schema(&mut self, at: &At, old: &Value, new: &Value) {
        let (old, old_ptr) = Self::resolve(self.old, old, at.old.clone());
        let (new, new_ptr) = Self::resolve(self.new, new, at.new.clone());
        if !self
            .seen
            .insert((at.flow, old_ptr.clone(), new_ptr.clone()))
        {
            return;
        }
        let at = At {
            old: old_ptr,
            new: new_ptr,
            ..at.clone()
        };
        let empty = Map::new();
        let (old_map, new_map) = (as_schema(old, &empty), as_schema(new, &empty));
        let (Some(o), Some(n)) = (old_map, new_map) else {
            // A boolean schema: `true` accepts everything, `false` nothing.
            if old != new {
                self.bounds(
                    &at,
                    "the schema",
                    Some(old.to_string()),
                    Some(new.to_string()),
                    widens(old, new),
                );
            }
            return;
        };

        self.types(&at, o, n);
        self.numbers(&at, o, n);
        let enum_handled = self.enums(&at, o, n);
        self.objects(&at, o, n);
        if let (Some(oi), Some(ni)) = (o.get("items"), n.get("items")) {
            self.schema(&at.child("items"), oi, ni);
        }
        for key in ["oneOf", "anyOf"] {
            if !enum_handled {
                self.alternatives(&at, key, o.get(key), n.get(key));
            }
        }
        self.other_keywords(&at, o, n, enum_handled);
    }

    fn types(&mut self, at: &At, o: &Map<String, Value>, n: &Map<String, Value>) {
        let (Some(old), Some(new)) = (type_set(o), type_set(n)) else {
            if type_set(o).is_some() != type_set(n).is_some() {
                let widened = type_set(n).is_none();
                let description = if widened {
                    "no longer restricts its type"
                } else {
                    "now restricts its type"
                };
                self.directional(at, "/type", widened, format!("{} {description}", at.side));
            }
            return;
        };
        if old == new {
            return;
        }
        let covers = |set: &BTreeSet<&str>, t: &str| {
            set.contains(t) || (t == "integer" && set.contains("number"))
        };
        let wider = old.iter().all(|t| covers(&new, t));
        let narrower = new.iter().all(|t| covers(&old, t));
        let text = format!("{} changed type from {old:?} to {new:?}", at.side);
        match (wider, narrower) {
            (true, _) => self.directional(at, "/type", true, text.replace("changed", "widened")),
            (_, true) => self.directional(at, "/type", false, text.replace("changed", "narrowed")),
            _ => self.report(
                &format!("{}/type", at.new),
                Compatibility::Breaking,
                text.replace("changed type", "retyped"),
            ),
        }
    }

    /// Report a change that widens (accepts or produces more) or narrows: narrowing breaks
    /// inputs, widening breaks outputs.
    fn directional(&mut self, at: &At, suffix: &str, widened: bool, description: String) {
        let breaking = match at.flow {
            Flow::Input => !widened,
            Flow::Output => widened,
        };
        let kind = if breaking {
            Compatibility::Breaking
        } else {
            Compatibility::Compatible
        };
        self.report(&format!("{}{suffix}", at.new), kind, description);
    }

    fn bounds(
        &mut self,
        at: &At,
        what: &str,
        old: Option<String>,
        new: Option<String>,
        widened: bool,
    ) {
        let show = |v: &Option<String>| v.clone().unwrap_or_else(|| "none".into());
        let description = format!(
            "{} changed {what} from {} to {}",
            at.side,
            show(&old),
            show(&new)
        );
        self.directional(at, "", widened, description);
    }

    fn numbers(&mut self, at: &At, o: &Map<String, Value>, n: &Map<String, Value>) {
        let numeric = |m: &Map<String, Value>| {
            type_set(m).is_some_and(|t| t.contains("integer") || t.contains("number"))
        };
        if !numeric(o) || !numeric(n) {
            return;
        }
        let (old, new) = (range(o), range(n));
        if old == new {
            return;
        }
        let contains =
            |outer: (f64, f64), inner: (f64, f64)| outer.0 <= inner.0 && inner.1 <= outer.1;
        let show = |r: (f64, f64)| format!("[{}, {}]", r.0, r.1);
        let description = format!(
            "{} changed its range from {} to {}",
            at.side,
            show(old),
            show(new)
        );
        if contains(new, old) {
            self.directional(at, "", true, description);
        } else if contains(old, new) {
            self.directional(at, "", false, description);
        } else {
            self.report(&at.new, Compatibility::Breaking, description);
        }
    }

    /// Compare enumerated values (`enum`, `const`, or alternatives that are all `const`).
    /// Returns whether both sides were enumerations.
    fn enums(&mut self, at: &At, o: &Map<String, Value>, n: &Map<String, Value>) -> bool {
        let (Some(old), Some(new)) = (enum_values(o), enum_values(n)) else {
            return false;
        };
        for removed in old.difference(&new) {
            let description = match at.flow {
                Flow::Input => format!("{} no longer accepts the value {removed}", at.side),
                Flow::Output => format!("{} lost the variant {removed}", at.side),
            };
            self.report(&at.new, Compatibility::Breaking, description);
        }
        for added in new.difference(&old) {
            let (kind, description) = match at.flow {
                Flow::Input => (
                    Compatibility::Compatible,
                    format!("{} accepts the new value {added}", at.side),
                ),
                Flow::Output => (
                    Compatibility::Breaking,
                    format!(
                        "{} gained the variant {added}, which clients that check variants exhaustively reject",
                        at.side
                    ),
                ),
            };
            self.report(&at.new, kind, description);
        }
        true
    }

    fn objects(&mut self, at: &At, o: &Map<String, Value>, n: &Map<String, Value>) {
        use Compatibility::*;
        let empty = Map::new();
        let props = |m: &'_ Map<String, Value>| {
            m.get("properties")
                .and_then(Value::as_object)
                .cloned()
                .unwrap_or_else(|| empty.clone())
        };
        let (old_props, new_props) = (props(o), props(n));
        let (old_req, new_req) = (required(o), required(n));
        let side = at.side;
        for (name, old_schema) in &old_props {
            let field = at.child("properties").child(name);
            let Some(new_schema) = new_props.get(name) else {
                let description = match at.flow {
                    Flow::Input => format!(
                        "{side} no longer has the field `{name}`: values old clients send for it would be ignored"
                    ),
                    Flow::Output => format!("{side} no longer has the field `{name}`"),
                };
                self.report(&field.old, Breaking, description);
                continue;
            };
            let (was, is) = (old_req.contains(name), new_req.contains(name));
            match (at.flow, was, is) {
                (Flow::Input, false, true) => self.report(
                    &field.new,
                    Breaking,
                    format!("{side} field `{name}` became required"),
                ),
                (Flow::Input, true, false) => self.report(
                    &field.new,
                    Compatible,
                    format!("{side} field `{name}` became optional"),
                ),
                (Flow::Output, true, false) => self.report(
                    &field.new,
                    Breaking,
                    format!("{side} field `{name}` may now be absent"),
                ),
                (Flow::Output, false, true) => self.report(
                    &field.new,
                    Compatible,
                    format!("{side} field `{name}` is now always present"),
                ),
                _ => {}
            }
            self.schema(
                &At {
                    side: &format!("{side} field `{name}`"),
                    ..field
                },
                old_schema,
                new_schema,
            );
        }
        for name in new_props
            .keys()
            .filter(|name| !old_props.contains_key(*name))
        {
            let field = at.child("properties").child(name);
            let (kind, description) = match (at.flow, new_req.contains(name)) {
                (Flow::Input, true) => (
                    Breaking,
                    format!("{side} gained the required field `{name}`"),
                ),
                (Flow::Input, false) => (
                    Compatible,
                    format!("{side} gained the optional field `{name}`"),
                ),
                (Flow::Output, _) => (Compatible, format!("{side} gained the field `{name}`")),
            };
            self.report(&field.new, kind, description);
        }
        // Required names without a property schema still constrain the object.
        for name in new_req
            .difference(&old_req)
            .filter(|n| !new_props.contains_key(*n) && at.flow == Flow::Input)
        {
            self.report(
                &format!("{}/required", at.new),
                Breaking,
                format!("{side} now requires the field `{name}`"),
            );
        }
        for name in old_req
            .difference(&new_req)
            .filter(|n| !old_props.contains_key(*n) && at.flow == Flow::Output)
        {
            self.report(
                &format!("{}/required", at.new),
                Breaking,
                format!("{side} no longer guarantees the field `{name}`"),
            );
        }
        if let (Some(old), Some(new)) =
            (o.get("additionalProperties"), n.get("additionalProperties"))
        {
            self.schema(&at.child("additionalProperties"), old, new);
        }
    }

    /// `oneOf` / `anyOf`: alternatives are matched by what distinguishes them (a constant,
    /// a tag, the type they reference, their type).
    fn alternatives(&mut self, at: &At, key: &str, old: Option<&Value>, new: Option<&Value>) {
        let list = |v: Option<&Value>| v.and_then(Value::as_array).cloned().unwrap_or_default();
        let (old_list, new_list) = (list(old), list(new));
        if old_list.is_empty() && new_list.is_empty() {
            return;
        }
        let keyed = |items: &[Value]| -> BTreeMap<String, usize> {
            items
                .iter()
                .enumerate()
                .map(|(i, alt)| (alternative_key(alt, i), i))
                .collect()
        };
        let (old_keys, new_keys) = (keyed(&old_list), keyed(&new_list));
        for (k, &i) in &old_keys {
            let child = at.child(key).child(&i.to_string());
            match new_keys.get(k) {
                Some(&j) => {
                    let pair = At {
                        new: format!("{}/{key}/{j}", at.new),
                        ..child
                    };
                    self.schema(&pair, &old_list[i], &new_list[j]);
                }
                None => {
                    let description = match at.flow {
                        Flow::Input => format!("{} no longer accepts the alternative {k}", at.side),
                        Flow::Output => format!("{} lost the variant {k}", at.side),
                    };
                    self.report(&child.old, Compatibility::Breaking, description);
                }
            }
        }
        for (k, &j) in new_keys.iter().filter(|(k, _)| !old_keys.contains_key(*k)) {
            let pointer = format!("{}/{key}/{j}", at.new);
            let (kind, description) = match at.flow {
                Flow::Input => (
                    Compatibility::Compatible,
                    format!("{} accepts the new alternative {k}", at.side),
                ),
                Flow::Output => (
                    Compatibility::Breaking,
                    format!(
                        "{} gained the variant {k}, which clients that check variants exhaustively reject",
                        at.side
                    ),
                ),
            };
            self.report(&pointer, kind, description);
        }
    }

    /// Every keyword the rules above do not cover: a constraint that appears narrows, one
    /// that disappears widens, one that changes cannot be classified and counts as breaking.
    fn other_keywords(
        &mut self,
        at: &At,
        o: &Map<String, Value>,
        n: &Map<String, Value>,
        enum_handled: bool,
    ) {
        const LOWER: [&str; 3] = ["minLength", "minItems", "minProperties"];
        const UPPER: [&str; 3] = ["maxLength", "maxItems", "maxProperties"];
        let numeric = type_set(o).is_some_and(|t| t.contains("integer") || t.contains("number"));
        let both = |k: &str| o.contains_key(k) && n.contains_key(k);
        let keys: BTreeSet<&String> = o.keys().chain(n.keys()).collect();
        for key in keys {
            let k = key.as_str();
            let handled = match k {
                "format" => numeric,
                "enum" | "const" => enum_handled,
                "items" | "additionalProperties" => both(k),
                "type" | "properties" | "required" | "oneOf" | "anyOf" | "$ref" | "$defs" => true,
                "minimum" | "maximum" | "exclusiveMinimum" | "exclusiveMaximum" => true,
                _ => ANNOTATIONS.contains(&k),
            };
            if handled {
                continue;
            }
            let (old, new) = (o.get(k), n.get(k));
            if old == new {
                continue;
            }
            let text = |v: Option<&Value>| v.map_or("none".to_string(), Value::to_string);
            let description = format!(
                "{} changed `{k}` from {} to {}",
                at.side,
                text(old),
                text(new)
            );
            let suffix = format!("/{}", pointer_segment(k));
            let bound = |v: Option<&Value>| v.and_then(Value::as_f64);
            match (old, new) {
                (Some(_), Some(_)) if LOWER.contains(&k) => {
                    self.directional(at, &suffix, bound(new) < bound(old), description)
                }
                (Some(_), Some(_)) if UPPER.contains(&k) => {
                    self.directional(at, &suffix, bound(new) > bound(old), description)
                }
                (Some(_), Some(_)) => self.report(
                    &format!("{}{suffix}", at.new),
                    Compatibility::Breaking,
                    format!("{description}; a change alknet cannot classify counts as breaking"),
                ),
                (None, Some(_)) => self.directional(at, &suffix, false, description),
                (Some(_), None) => self.directional(at, &suffix, true, description),
                (None, None) => {}
            }
        }
    }
}

fn as_schema<'v>(
    schema: &'v Value,
    empty: &'v Map<String, Value>,
) -> Option<&'v Map<String, Value>> {
    match schema {
        Value::Object(map) => Some(map),
        Value::Bool(true) => Some(empty),
        _ => None,
    }
}

/// Whether going from boolean/other schema `old` to `new` accepts more.
fn widens(old: &Value, new: &Value) -> bool {
    old == &Value::Bool(false) || new == &Value::Bool(true)
}

fn type_set(schema: &Map<String, Value>) -> Option<BTreeSet<&str>> {
    match schema.get("type")? {
        Value::String(t) => Some(BTreeSet::from([t.as_str()])),
        Value::Array(ts) => Some(ts.iter().filter_map(Value::as_str).collect()),
        _ => None,
    }
}

fn required(schema: &Map<String, Value>) -> BTreeSet<String> {
    schema
        .get("required")
        .and_then(Value::as_array)
        .map(|names| {
            names
                .iter()
                .filter_map(|n| n.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

/// The values an enumeration allows, as JSON text: `enum`, `const`, or `oneOf`/`anyOf`
/// whose alternatives are each a constant (how schemars writes documented unit variants).
fn enum_values(schema: &Map<String, Value>) -> Option<BTreeSet<String>> {
    if let Some(values) = schema.get("enum").and_then(Value::as_array) {
        return Some(values.iter().map(Value::to_string).collect());
    }
    if let Some(value) = schema.get("const") {
        return Some(BTreeSet::from([value.to_string()]));
    }
    let alternatives = schema
        .get("oneOf")
        .or_else(|| schema.get("anyOf"))?
        .as_array()?;
    let mut values = BTreeSet::new();
    for alt in alternatives {
        let alt = alt.as_object()?;
        values.extend(enum_values(alt)?);
    }
    (!alternatives.is_empty()).then_some(values)
}

/// What tells an alternative apart from its siblings.
fn alternative_key(alt: &Value, index: usize) -> String {
    if let Some(reference) = alt.get("$ref").and_then(Value::as_str) {
        return format!("`{}`", reference.rsplit('/').next().unwrap_or(reference));
    }
    if let Some(value) = alt.get("const") {
        return value.to_string();
    }
    if let Some(props) = alt.get("properties").and_then(Value::as_object) {
        // An internally tagged variant: the property holding a constant.
        if let Some((tag, value)) = props
            .iter()
            .find_map(|(k, v)| v.get("const").map(|c| (k, c)))
        {
            return format!("{tag} = {value}");
        }
        // An externally tagged variant: its one required property.
        if let Some(Value::Array(req)) = alt.get("required")
            && let [Value::String(tag)] = req.as_slice()
            && props.len() == 1
        {
            return format!("`{tag}`");
        }
    }
    if let Some(t) = alt.get("type") {
        return format!("of type {t}");
    }
    format!("#{index}")
}

/// The numeric range a schema allows, from its integer format and its bounds.
fn range(schema: &Map<String, Value>) -> (f64, f64) {
    let (mut low, mut high) = match schema.get("format").and_then(Value::as_str) {
        Some("int8") => (i8::MIN as f64, i8::MAX as f64),
        Some("int16") => (i16::MIN as f64, i16::MAX as f64),
        Some("int32") => (i32::MIN as f64, i32::MAX as f64),
        Some("int64" | "int") => (i64::MIN as f64, i64::MAX as f64),
        Some("int128") => (i128::MIN as f64, i128::MAX as f64),
        Some("uint8") => (0.0, u8::MAX as f64),
        Some("uint16") => (0.0, u16::MAX as f64),
        Some("uint32") => (0.0, u32::MAX as f64),
        Some("uint64" | "uint") => (0.0, u64::MAX as f64),
        Some("uint128") => (0.0, u128::MAX as f64),
        Some("float") => (f32::MIN as f64, f32::MAX as f64),
        _ => (f64::NEG_INFINITY, f64::INFINITY),
    };
    let bound = |key: &str| schema.get(key).and_then(Value::as_f64);
    if let Some(min) = bound("minimum").or(bound("exclusiveMinimum")) {
        low = low.max(min);
    }
    if let Some(max) = bound("maximum").or(bound("exclusiveMaximum")) {
        high = high.min(max);
    }
    (low, high)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use Compatibility::{Breaking, Compatible};

    /// The `$id` of the test documents' schema resource.
    const ID: &str = "https://alk.dev/schemas/services/shop.json";

    /// A service document with one operation `op` whose input is `$defs/In` and output
    /// `$defs/Out` (each through its part, `op.input` and `op.output`), changed by `edit`.
    fn document(edit: impl FnOnce(&mut Value)) -> Value {
        let mut doc = json!({
            "namespace": "shop",
            "version": "1.0.0",
            "operations": {
                "op": {
                    "id": "shop/op",
                    "kind": "query",
                    "visibility": "external",
                    "access": {},
                    "input": {"$ref": format!("{ID}#/$defs/op.input")},
                    "output": {"$ref": format!("{ID}#/$defs/op.output")},
                    "errors": {
                        "GONE": {"http_status": 410, "description": "gone", "details": {"$ref": format!("{ID}#/$defs/op.error.GONE")}},
                    },
                },
            },
            "schema": {
                "$schema": "https://json-schema.org/draft/2020-12/schema",
                "$id": ID,
                "$defs": {
                    "op.input": {"$ref": "#/$defs/In"},
                    "op.output": {"$ref": "#/$defs/Out"},
                    "op.error.GONE": {"$ref": "#/$defs/Out"},
                    "In": {
                        "type": "object",
                        "properties": {
                            "name": {"type": "string", "maxLength": 64},
                            "note": {"type": ["string", "null"]},
                            "count": {"type": "integer", "minimum": 0, "maximum": u64::MAX},
                            "color": {"type": "string", "enum": ["red", "green"]},
                        },
                        "required": ["name"],
                    },
                    "Out": {
                        "type": "object",
                        "properties": {
                            "id": {"type": "string"},
                            "size": {"type": "integer", "minimum": 0, "maximum": u32::MAX},
                            "state": {"oneOf": [{"const": "open"}, {"const": "closed"}]},
                        },
                        "required": ["id", "size"],
                    },
                },
            },
        });
        edit(&mut doc);
        doc
    }

    /// `doc`'s type `name`, to edit.
    fn def<'d>(doc: &'d mut Value, name: &str) -> &'d mut Value {
        &mut doc["schema"]["$defs"][name]
    }

    const OP: &str = "/operations/op";
    const IN: &str = "/schema/$defs/In/properties";
    const OUT: &str = "/schema/$defs/Out/properties";

    /// Every compatibility rule: a before/after pair and the changes it must produce.
    #[test]
    fn every_rule_classifies_its_before_and_after_pair() {
        type Edit = fn(&mut Value);
        type Rule = (&'static str, Edit, Vec<(Compatibility, String)>);
        let table: Vec<Rule> = vec![
            (
                "removed operation",
                |d| {
                    d["operations"].as_object_mut().unwrap().remove("op");
                },
                vec![(Breaking, OP.into())],
            ),
            (
                "new operation",
                |d| {
                    d["operations"]["op2"] = d["operations"]["op"].clone();
                },
                vec![(Compatible, "/operations/op2".into())],
            ),
            (
                "changed kind",
                |d| d["operations"]["op"]["kind"] = json!("mutation"),
                vec![(Breaking, format!("{OP}/kind"))],
            ),
            (
                "input field became required",
                |d| def(d, "In")["required"] = json!(["name", "count"]),
                vec![(Breaking, format!("{IN}/count"))],
            ),
            (
                "input field added as required",
                |d| {
                    def(d, "In")["properties"]["qty"] = json!({"type": "integer"});
                    def(d, "In")["required"] = json!(["name", "qty"]);
                },
                vec![(Breaking, format!("{IN}/qty"))],
            ),
            (
                "optional input field added",
                |d| def(d, "In")["properties"]["tag"] = json!({"type": "string"}),
                vec![(Compatible, format!("{IN}/tag"))],
            ),
            (
                "input field became optional",
                |d| def(d, "In")["required"] = json!([]),
                vec![(Compatible, format!("{IN}/name"))],
            ),
            (
                "input field removed",
                |d| {
                    def(d, "In")["properties"]
                        .as_object_mut()
                        .unwrap()
                        .remove("note");
                },
                vec![(Breaking, format!("{IN}/note"))],
            ),
            (
                "input type narrowed",
                |d| def(d, "In")["properties"]["note"]["type"] = json!("string"),
                vec![(Breaking, format!("{IN}/note/type"))],
            ),
            (
                "input type widened",
                |d| def(d, "In")["properties"]["name"]["type"] = json!(["string", "null"]),
                vec![(Compatible, format!("{IN}/name/type"))],
            ),
            (
                "input integer range narrowed",
                |d| def(d, "In")["properties"]["count"]["maximum"] = json!(u32::MAX),
                vec![(Breaking, format!("{IN}/count"))],
            ),
            (
                "input integer widened to number",
                |d| {
                    def(d, "In")["properties"]["count"] = json!({"type": "number"});
                },
                vec![
                    (Compatible, format!("{IN}/count/type")),
                    (Compatible, format!("{IN}/count")),
                ],
            ),
            (
                "input enum value removed",
                |d| def(d, "In")["properties"]["color"]["enum"] = json!(["red"]),
                vec![(Breaking, format!("{IN}/color"))],
            ),
            (
                "input enum value added",
                |d| def(d, "In")["properties"]["color"]["enum"] = json!(["red", "green", "blue"]),
                vec![(Compatible, format!("{IN}/color"))],
            ),
            (
                "input maxLength lowered",
                |d| def(d, "In")["properties"]["name"]["maxLength"] = json!(8),
                vec![(Breaking, format!("{IN}/name/maxLength"))],
            ),
            (
                "input pattern added",
                |d| def(d, "In")["properties"]["name"]["pattern"] = json!("^[a-z]+$"),
                vec![(Breaking, format!("{IN}/name/pattern"))],
            ),
            (
                "output field removed",
                |d| {
                    def(d, "Out")["properties"]
                        .as_object_mut()
                        .unwrap()
                        .remove("id");
                    def(d, "Out")["required"] = json!(["size"]);
                },
                vec![(Breaking, format!("{OUT}/id"))],
            ),
            (
                "output field retyped",
                |d| def(d, "Out")["properties"]["id"]["type"] = json!("integer"),
                vec![(Breaking, format!("{OUT}/id/type"))],
            ),
            (
                "output field may be absent",
                |d| def(d, "Out")["required"] = json!(["id"]),
                vec![(Breaking, format!("{OUT}/size"))],
            ),
            (
                "output field added",
                |d| def(d, "Out")["properties"]["extra"] = json!({"type": "string"}),
                vec![(Compatible, format!("{OUT}/extra"))],
            ),
            (
                "output integer range widened",
                |d| def(d, "Out")["properties"]["size"]["maximum"] = json!(u64::MAX),
                vec![(Breaking, format!("{OUT}/size"))],
            ),
            (
                "output type narrowed",
                |d| def(d, "Out")["properties"]["size"]["maximum"] = json!(100),
                vec![(Compatible, format!("{OUT}/size"))],
            ),
            (
                "output enum variant removed",
                |d| def(d, "Out")["properties"]["state"]["oneOf"] = json!([{"const": "open"}]),
                vec![(Breaking, format!("{OUT}/state"))],
            ),
            (
                "output enum variant added",
                |d| {
                    def(d, "Out")["properties"]["state"]["oneOf"] =
                        json!([{"const": "open"}, {"const": "closed"}, {"const": "lost"}]);
                },
                vec![(Breaking, format!("{OUT}/state"))],
            ),
            (
                "error code removed",
                |d| d["operations"]["op"]["errors"] = json!({}),
                vec![(Breaking, format!("{OP}/errors/GONE"))],
            ),
            (
                "error code changed",
                |d| {
                    let gone = d["operations"]["op"]["errors"]["GONE"].clone();
                    d["operations"]["op"]["errors"] = json!({ "VANISHED": gone });
                },
                vec![
                    (Breaking, format!("{OP}/errors/GONE")),
                    (Compatible, format!("{OP}/errors/VANISHED")),
                ],
            ),
            (
                "error status changed",
                |d| d["operations"]["op"]["errors"]["GONE"]["http_status"] = json!(404),
                vec![(Breaking, format!("{OP}/errors/GONE/http_status"))],
            ),
            (
                "operation became internal",
                |d| d["operations"]["op"]["visibility"] = json!("internal"),
                vec![(Breaking, format!("{OP}/visibility"))],
            ),
            (
                "operation requires a scope",
                |d| d["operations"]["op"]["access"] = json!({"scopes": ["shop:admin"]}),
                vec![(Breaking, format!("{OP}/access"))],
            ),
            (
                "description changed",
                |d| def(d, "In")["description"] = json!("Different words."),
                vec![],
            ),
        ];
        for (rule, edit, expected) in table {
            let changes = diff(&document(|_| {}), &document(edit));
            let got: Vec<(Compatibility, String)> = changes
                .iter()
                .map(|c| (c.kind, c.pointer.clone()))
                .collect();
            let mut expected = expected;
            expected.sort_by(|a, b| a.1.cmp(&b.1).then(a.0.cmp(&b.0)));
            let mut got_sorted = got.clone();
            got_sorted.sort_by(|a, b| a.1.cmp(&b.1).then(a.0.cmp(&b.0)));
            assert_eq!(got_sorted, expected, "rule `{rule}`: {changes:#?}");
        }
    }

    #[test]
    fn a_type_shared_by_input_and_output_is_judged_on_each_side() {
        let edit = |d: &mut Value| {
            def(d, "op.output")["$ref"] = json!("#/$defs/In");
            def(d, "In")["properties"]["extra"] = json!({"type": "string"});
            def(d, "In")["required"] = json!(["name", "extra"]);
        };
        let before = document(|d| def(d, "op.output")["$ref"] = json!("#/$defs/In"));
        let changes = diff(&before, &document(edit));
        let kinds: BTreeSet<Compatibility> = changes.iter().map(|c| c.kind).collect();
        assert_eq!(
            kinds,
            BTreeSet::from([Breaking, Compatible]),
            "{changes:#?}"
        );
        let breaking = changes.iter().find(|c| c.kind == Breaking).unwrap();
        assert!(
            breaking.description.contains("`shop/op` input"),
            "{breaking}"
        );
    }

    #[test]
    fn a_document_from_before_the_schema_resource_compares_with_its_successor() {
        // The earlier layout: the document was the schema, the parts inline, `$defs` at
        // its root.
        let mut earlier = document(|_| {});
        let resource = earlier.as_object_mut().unwrap().remove("schema").unwrap();
        let defs = &resource["$defs"];
        let op = &mut earlier["operations"]["op"];
        op["input"] = defs["op.input"].clone();
        op["output"] = defs["op.output"].clone();
        op["errors"]["GONE"]["details"] = defs["op.error.GONE"].clone();
        earlier["$defs"] = defs.clone();
        earlier["$defs"]
            .as_object_mut()
            .unwrap()
            .retain(|name, _| !name.contains('.'));

        assert!(diff(&earlier, &document(|_| {})).is_empty());
        let changes = diff(
            &earlier,
            &document(|d| def(d, "In")["required"] = json!([])),
        );
        assert_eq!(
            changes
                .iter()
                .map(|c| (c.kind, c.pointer.as_str()))
                .collect::<Vec<_>>(),
            [(Compatible, format!("{IN}/name").as_str())],
            "{changes:#?}"
        );
    }

    #[test]
    fn recursive_types_end() {
        let node = |d: &mut Value| {
            def(d, "In")["properties"]["next"] =
                json!({"anyOf": [{"$ref": "#/$defs/In"}, {"type": "null"}]});
        };
        let changes = diff(&document(node), &document(node));
        assert!(changes.is_empty(), "{changes:#?}");
    }
}
