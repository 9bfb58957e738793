//! [`Binary`]: bytes in an operation's input or output, base64 in JSON and raw in postcard.

use std::borrow::Cow;
use std::fmt;
use std::ops::{Deref, DerefMut};

use base64::Engine;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use schemars::{JsonSchema, Schema, SchemaGenerator};
use serde::de::{self, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Standard base64 (RFC 4648 §4), written padded; read with or without padding, since
/// many encoders leave it off.
const BASE64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Binary data: a base64 string (standard alphabet) in JSON and every other human-readable
/// format, and a plain byte string in postcard, so the irpc path carries it without the
/// third it would grow as text. Its schema is
/// `{"type": "string", "contentEncoding": "base64"}`.
///
/// Its `Debug` prints only the length: the bytes may be a message to sign or a plaintext,
/// and a log line should not carry them.
///
/// ```
/// use alknet_runtime::Binary;
///
/// let data = Binary::from(&b"hi!"[..]);
/// assert_eq!(serde_json::to_string(&data).unwrap(), r#""aGkh""#);
/// assert_eq!(serde_json::from_str::<Binary>(r#""aGkh""#).unwrap(), data);
/// assert_eq!(format!("{data:?}"), "Binary(3 bytes)");
/// ```
#[derive(Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Binary(pub Vec<u8>);

impl Binary {
    /// The bytes.
    pub fn into_inner(self) -> Vec<u8> {
        self.0
    }
}

impl From<Vec<u8>> for Binary {
    fn from(bytes: Vec<u8>) -> Self {
        Binary(bytes)
    }
}

impl From<&[u8]> for Binary {
    fn from(bytes: &[u8]) -> Self {
        Binary(bytes.to_vec())
    }
}

impl Deref for Binary {
    type Target = Vec<u8>;

    fn deref(&self) -> &Vec<u8> {
        &self.0
    }
}

impl DerefMut for Binary {
    fn deref_mut(&mut self) -> &mut Vec<u8> {
        &mut self.0
    }
}

impl AsRef<[u8]> for Binary {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for Binary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Binary({} bytes)", self.0.len())
    }
}

impl Serialize for Binary {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if serializer.is_human_readable() {
            serializer.serialize_str(&BASE64.encode(&self.0))
        } else {
            serializer.serialize_bytes(&self.0)
        }
    }
}

impl<'de> Deserialize<'de> for Binary {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        if deserializer.is_human_readable() {
            deserializer.deserialize_str(BinaryVisitor)
        } else {
            deserializer.deserialize_byte_buf(BinaryVisitor)
        }
    }
}

struct BinaryVisitor;

impl<'de> Visitor<'de> for BinaryVisitor {
    type Value = Binary;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("binary data: a base64 string (RFC 4648, standard alphabet)")
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<Binary, E> {
        BASE64.decode(text).map(Binary).map_err(|err| {
            E::custom(format_args!(
                "expected base64 (RFC 4648, standard alphabet `A-Z a-z 0-9 + /`): {err}"
            ))
        })
    }

    fn visit_bytes<E: de::Error>(self, bytes: &[u8]) -> Result<Binary, E> {
        Ok(Binary(bytes.to_vec()))
    }

    fn visit_byte_buf<E: de::Error>(self, bytes: Vec<u8>) -> Result<Binary, E> {
        Ok(Binary(bytes))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Binary, A::Error> {
        // Grows with the bytes that arrive, never with a length the input promised.
        let mut bytes = Vec::new();
        while let Some(byte) = seq.next_element()? {
            bytes.push(byte);
        }
        Ok(Binary(bytes))
    }
}

impl JsonSchema for Binary {
    fn inline_schema() -> bool {
        true
    }

    fn schema_name() -> Cow<'static, str> {
        "Binary".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        schemars::json_schema!({"type": "string", "contentEncoding": "base64"})
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(feature = "irpc")]
    #[test]
    fn is_base64_in_json_and_bytes_in_postcard() {
        for length in [0usize, 1, 2, 3, 1023, 1024, 1025, 65536] {
            let data = Binary((0..length).map(|i| (i * 7) as u8).collect());
            let text = serde_json::to_string(&data).unwrap();
            assert_eq!(serde_json::from_str::<Binary>(&text).unwrap(), data);
            let wire = postcard::to_allocvec(&data).unwrap();
            // A length prefix and the bytes themselves, nothing more.
            assert!(wire.len() <= length + 3, "{} for {length}", wire.len());
            assert_eq!(postcard::from_bytes::<Binary>(&wire).unwrap(), data);
        }
    }

    #[test]
    fn reads_unpadded_base64_and_names_bad_input() {
        assert_eq!(
            serde_json::from_str::<Binary>(r#""aGk""#).unwrap(),
            Binary(b"hi".to_vec())
        );
        let err = serde_json::from_str::<Binary>(r#""not base64!""#).unwrap_err();
        assert!(err.to_string().contains("expected base64"), "{err}");
        let err = serde_json::from_str::<Binary>("42").unwrap_err();
        assert!(err.to_string().contains("a base64 string"), "{err}");
    }
}
