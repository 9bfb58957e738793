//! [`Json`]: free-form JSON that can cross every path, postcard included.

use std::borrow::Cow;
use std::fmt;
use std::ops::{Deref, DerefMut};

use schemars::{JsonSchema, Schema, SchemaGenerator};
use serde::de::{DeserializeOwned, Error as _};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;

/// A value carried as JSON text where the format cannot describe itself.
///
/// `serde_json::Value`, maps of it, `#[serde(flatten)]` and untagged enums need a
/// self-describing format; postcard, which the irpc path speaks, is not one. Wrap such a
/// field in `Json`: in JSON it is the plain value (and its schema is the inner type's), in
/// postcard it travels as a string of JSON text.
///
/// ```
/// use alknet_runtime::Json;
/// use serde_json::json;
///
/// let attributes: Json = Json(json!({"colour": "teal", "size": 3}));
/// assert_eq!(serde_json::to_value(&attributes).unwrap(), json!({"colour": "teal", "size": 3}));
/// assert_eq!(attributes["size"], 3);
/// ```
#[derive(Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Json<T = Value>(pub T);

impl<T> Json<T> {
    /// The wrapped value.
    pub fn into_inner(self) -> T {
        self.0
    }
}

impl<T> From<T> for Json<T> {
    fn from(value: T) -> Self {
        Json(value)
    }
}

impl<T> Deref for Json<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T> DerefMut for Json<T> {
    fn deref_mut(&mut self) -> &mut T {
        &mut self.0
    }
}

impl<T: fmt::Debug> fmt::Debug for Json<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl<T: Serialize> Serialize for Json<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serialize(&self.0, serializer)
    }
}

impl<'de, T: DeserializeOwned> Deserialize<'de> for Json<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserialize(deserializer).map(Json)
    }
}

impl<T: JsonSchema> JsonSchema for Json<T> {
    fn inline_schema() -> bool {
        T::inline_schema()
    }

    fn schema_name() -> Cow<'static, str> {
        T::schema_name()
    }

    fn schema_id() -> Cow<'static, str> {
        T::schema_id()
    }

    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        T::json_schema(generator)
    }
}

/// Serialize `value` as itself for self-describing formats, as JSON text otherwise. The
/// runtime's own types use this for their free-form fields.
pub(crate) fn serialize<T: Serialize, S: Serializer>(
    value: &T,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    if serializer.is_human_readable() {
        value.serialize(serializer)
    } else {
        let text = serde_json::to_string(value).map_err(serde::ser::Error::custom)?;
        serializer.serialize_str(&text)
    }
}

/// The inverse of [`serialize`].
pub(crate) fn deserialize<'de, T: DeserializeOwned, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<T, D::Error> {
    if deserializer.is_human_readable() {
        T::deserialize(deserializer)
    } else {
        let text = Cow::<str>::deserialize(deserializer)?;
        serde_json::from_str(&text).map_err(D::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Node {
        id: u64,
        attributes: Json,
        tags: Json<std::collections::BTreeMap<String, Value>>,
    }

    fn sample() -> Node {
        Node {
            id: 7,
            attributes: Json(json!({"nested": [1, "two", {"three": null}], "flag": true})),
            tags: Json([("a".to_string(), json!(1.5))].into_iter().collect()),
        }
    }

    #[test]
    fn round_trips_through_postcard() {
        let bytes = postcard::to_stdvec(&sample()).unwrap();
        assert_eq!(postcard::from_bytes::<Node>(&bytes).unwrap(), sample());
    }

    #[test]
    fn is_the_plain_value_in_json() {
        let value = serde_json::to_value(sample()).unwrap();
        assert_eq!(value["attributes"]["nested"][1], "two");
        assert_eq!(serde_json::from_value::<Node>(value).unwrap(), sample());
    }

    #[test]
    fn bare_value_fails_in_postcard_which_is_why_the_wrapper_exists() {
        let bytes = postcard::to_stdvec(&json!({"a": 1})).unwrap();
        assert!(postcard::from_bytes::<Value>(&bytes).is_err());
    }

    #[test]
    fn has_the_inner_type_schema() {
        let wrapped = crate::__private::schema_of::<Json<Vec<u32>>>();
        let plain = crate::__private::schema_of::<Vec<u32>>();
        assert_eq!(wrapped, plain);
    }
}
