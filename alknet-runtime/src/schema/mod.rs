//! Schemas for other languages (SPEC §10): one JSON document per service, an index, and an
//! OpenAPI 3.1 document, all built from the [`ServiceSpec`](crate::ServiceSpec)s a node
//! registers; plus the compatibility check between two versions of a service document.
//! The documents are the node's (feature `node`); a service crate uses only
//! [`integer_bounds`], through the schemas its operations generate.
//!
//! The `alknet schema` commands write and check these files; the HTTP adapter serves the
//! same `openapi` document at `/openapi.json`.

#[cfg(feature = "node")]
mod diff;
#[cfg(feature = "node")]
mod document;
#[cfg(feature = "node")]
mod files;
#[cfg(feature = "node")]
mod openapi;

use serde_json::Value;

#[cfg(feature = "node")]
pub use diff::{Change, Compatibility, diff};
#[cfg(feature = "node")]
pub use document::{schema_id, service_document, service_spec};
#[cfg(feature = "node")]
pub use files::{INDEX_FILE, OPENAPI_FILE, export, index, service_file, to_pretty_json};
#[cfg(feature = "node")]
pub use openapi::openapi;

/// The JSON Schema dialect of every schema alknet writes.
pub const DIALECT: &str = "https://json-schema.org/draft/2020-12/schema";

/// Replace schemars' integer `format`s (`uint64`, `int32`, `uint`, …), which strict
/// validators refuse as unknown formats, with the range they stand for as `minimum` and
/// `maximum`; a bound already there (a declared range) is kept. `uint`/`int` are Rust's
/// `usize`/`isize`, taken as 64 bits. 128-bit ranges do not fit a JSON number: they keep
/// only their lower bound of 0, if unsigned.
pub fn integer_bounds(schema: &mut schemars::Schema) {
    let Some(object) = schema.as_object_mut() else {
        return;
    };
    let Some(format) = object.get("format").and_then(Value::as_str) else {
        return;
    };
    let (minimum, maximum): (Value, Option<Value>) = match format {
        "int8" => (i8::MIN.into(), Some(i8::MAX.into())),
        "int16" => (i16::MIN.into(), Some(i16::MAX.into())),
        "int32" => (i32::MIN.into(), Some(i32::MAX.into())),
        "int64" | "int" => (i64::MIN.into(), Some(i64::MAX.into())),
        "uint8" => (0.into(), Some(u8::MAX.into())),
        "uint16" => (0.into(), Some(u16::MAX.into())),
        "uint32" => (0.into(), Some(u32::MAX.into())),
        "uint64" | "uint" => (0.into(), Some(u64::MAX.into())),
        "uint128" => (0.into(), None),
        "int128" => (Value::Null, None),
        _ => return,
    };
    object.remove("format");
    if !minimum.is_null() {
        object.entry("minimum").or_insert(minimum);
    }
    if let Some(maximum) = maximum {
        object.entry("maximum").or_insert(maximum);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn integer_formats_become_bounds_and_declared_bounds_stay() {
        let mut u64_schema: schemars::Schema =
            json!({"type": "integer", "format": "uint64", "minimum": 0})
                .try_into()
                .unwrap();
        integer_bounds(&mut u64_schema);
        assert_eq!(
            u64_schema.as_value(),
            &json!({"type": "integer", "minimum": 0, "maximum": u64::MAX})
        );
        let mut declared: schemars::Schema =
            json!({"type": "integer", "format": "int32", "maximum": 9})
                .try_into()
                .unwrap();
        integer_bounds(&mut declared);
        assert_eq!(
            declared.as_value(),
            &json!({"type": "integer", "minimum": i32::MIN, "maximum": 9})
        );
        let mut text: schemars::Schema = json!({"type": "string", "format": "date-time"})
            .try_into()
            .unwrap();
        integer_bounds(&mut text);
        assert_eq!(text.as_value()["format"], "date-time");
    }
}
