//! What every call returns: [`ResponseEnvelope`], [`CallError`] and the protocol error codes.

use std::borrow::Cow;
use std::fmt;
use std::hash::{BuildHasher, RandomState};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

use crate::Json;

/// The error codes produced by alknet's machinery.
///
/// A service may declare its own domain codes, but never one of these: the macro refuses
/// a declaration that would shadow a protocol code, so a client can always tell a failure
/// of the machinery from a failure of the domain.
pub mod codes {
    /// The namespace or operation does not exist, or the caller may not see it.
    pub const NOT_FOUND: &str = "NOT_FOUND";
    /// The operation is restricted and the caller presented no identity.
    pub const UNAUTHENTICATED: &str = "UNAUTHENTICATED";
    /// The caller's identity lacks the scopes or resources the operation requires.
    pub const FORBIDDEN: &str = "FORBIDDEN";
    /// The input does not match the operation's input type.
    pub const INVALID_INPUT: &str = "INVALID_INPUT";
    /// A subscription was invoked as a call, or a call subscribed to.
    pub const INVALID_OPERATION_TYPE: &str = "INVALID_OPERATION_TYPE";
    /// The call's deadline passed before it completed. Retryable.
    pub const TIMEOUT: &str = "TIMEOUT";
    /// The call was aborted by its caller or because its parent call ended.
    pub const ABORTED: &str = "ABORTED";
    /// The peer or connection serving the call is gone. Retryable.
    pub const UNAVAILABLE: &str = "UNAVAILABLE";
    /// A rate limit (retryable, with a hint) or a size limit (not retryable) was exceeded.
    pub const RESOURCE_EXHAUSTED: &str = "RESOURCE_EXHAUSTED";
    /// The handler panicked, returned an undeclared error code, or the machinery failed.
    pub const INTERNAL: &str = "INTERNAL";

    /// Every protocol code, in the order above.
    pub const ALL: [&str; 10] = [
        NOT_FOUND,
        UNAUTHENTICATED,
        FORBIDDEN,
        INVALID_INPUT,
        INVALID_OPERATION_TYPE,
        TIMEOUT,
        ABORTED,
        UNAVAILABLE,
        RESOURCE_EXHAUSTED,
        INTERNAL,
    ];

    /// Whether `code` is one of the protocol codes.
    pub fn is_protocol_code(code: &str) -> bool {
        ALL.contains(&code)
    }
}

/// Why a call failed: a machine-readable code, a sentence for people, and optional details.
///
/// ```
/// use alknet_runtime::CallError;
/// use serde_json::json;
///
/// let err = CallError::new("NAME_TAKEN", "the name `ada` is already taken")
///     .with_details(json!({ "name": "ada" }));
/// assert_eq!(err.code, "NAME_TAKEN");
/// assert!(!err.retryable);
/// ```
#[derive(Debug, Clone, PartialEq, Deserialize, JsonSchema)]
pub struct CallError {
    /// A protocol code (see [`codes`]) or a code the operation declared.
    pub code: Cow<'static, str>,
    /// One sentence that names the problem.
    pub message: String,
    /// Whether the same call may succeed if tried again later.
    #[serde(default)]
    pub retryable: bool,
    /// Structured details; for a declared domain error, a value of its declared details type.
    #[serde(default, deserialize_with = "wire_details")]
    pub details: Option<Value>,
}

fn wire_details<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Value>, D::Error> {
    Ok(Option::<Json>::deserialize(deserializer)?.map(Json::into_inner))
}

/// JSON leaves out absent details; postcard, which has no field names, always carries the
/// field, and carries the details as JSON text.
impl Serialize for CallError {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let omit_details = serializer.is_human_readable() && self.details.is_none();
        let mut state =
            serializer.serialize_struct("CallError", if omit_details { 3 } else { 4 })?;
        state.serialize_field("code", &self.code)?;
        state.serialize_field("message", &self.message)?;
        state.serialize_field("retryable", &self.retryable)?;
        if omit_details {
            state.skip_field("details")?;
        } else {
            state.serialize_field("details", &self.details.as_ref().map(Json))?;
        }
        state.end()
    }
}

impl CallError {
    /// An error with any code; use this for the domain errors an operation declares.
    pub fn new(code: impl Into<Cow<'static, str>>, message: impl Into<String>) -> Self {
        let code = code.into();
        let retryable = code == codes::TIMEOUT || code == codes::UNAVAILABLE;
        CallError {
            code,
            message: message.into(),
            retryable,
            details: None,
        }
    }

    /// Attach structured details.
    pub fn with_details(mut self, details: impl Into<Value>) -> Self {
        self.details = Some(details.into());
        self
    }

    /// Mark the error as worth retrying (or not).
    pub fn retryable(mut self, retryable: bool) -> Self {
        self.retryable = retryable;
        self
    }

    /// [`codes::NOT_FOUND`].
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(codes::NOT_FOUND, message)
    }

    /// [`codes::UNAUTHENTICATED`].
    pub fn unauthenticated(message: impl Into<String>) -> Self {
        Self::new(codes::UNAUTHENTICATED, message)
    }

    /// [`codes::FORBIDDEN`].
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(codes::FORBIDDEN, message)
    }

    /// [`codes::INVALID_INPUT`].
    pub fn invalid_input(message: impl Into<String>) -> Self {
        Self::new(codes::INVALID_INPUT, message)
    }

    /// [`codes::INVALID_OPERATION_TYPE`].
    pub fn invalid_operation_type(message: impl Into<String>) -> Self {
        Self::new(codes::INVALID_OPERATION_TYPE, message)
    }

    /// [`codes::TIMEOUT`] (retryable).
    pub fn timeout(message: impl Into<String>) -> Self {
        Self::new(codes::TIMEOUT, message)
    }

    /// [`codes::ABORTED`].
    pub fn aborted(message: impl Into<String>) -> Self {
        Self::new(codes::ABORTED, message)
    }

    /// [`codes::UNAVAILABLE`] (retryable).
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(codes::UNAVAILABLE, message)
    }

    /// [`codes::RESOURCE_EXHAUSTED`] for a limit that trying again will not fix.
    pub fn resource_exhausted(message: impl Into<String>) -> Self {
        Self::new(codes::RESOURCE_EXHAUSTED, message)
    }

    /// [`codes::RESOURCE_EXHAUSTED`] for a rate limit: retryable, with the wait as a hint
    /// in `details.retry_after_ms`.
    pub fn rate_limited(message: impl Into<String>, retry_after: std::time::Duration) -> Self {
        Self::new(codes::RESOURCE_EXHAUSTED, message)
            .retryable(true)
            .with_details(serde_json::json!({ "retry_after_ms": retry_after.as_millis() as u64 }))
    }

    /// [`codes::INTERNAL`].
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(codes::INTERNAL, message)
    }

    /// Whether the code is one of the protocol codes rather than a domain code.
    pub fn is_protocol_error(&self) -> bool {
        codes::is_protocol_code(&self.code)
    }
}

impl fmt::Display for CallError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl std::error::Error for CallError {}

/// Identifies one call. Unique per call across the process (and, by its random prefix,
/// across nodes); never derived from the input.
///
/// Shown and serialized as 32 hex digits.
#[derive(Copy, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RequestId(u128);

impl RequestId {
    /// A fresh id: the process's random prefix and the next value of a process-wide counter.
    pub fn next() -> Self {
        static PREFIX: OnceLock<u64> = OnceLock::new();
        static COUNTER: AtomicU64 = AtomicU64::new(1);
        let prefix = *PREFIX.get_or_init(|| {
            // RandomState is seeded from the OS's randomness; hashing the pid and time
            // separates processes even where that seed is shared.
            let time = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos());
            RandomState::new().hash_one((std::process::id(), time))
        });
        let count = COUNTER.fetch_add(1, Ordering::Relaxed);
        RequestId(((prefix as u128) << 64) | count as u128)
    }

    /// The id's 128 bits.
    pub fn as_u128(self) -> u128 {
        self.0
    }
}

impl From<u128> for RequestId {
    fn from(value: u128) -> Self {
        RequestId(value)
    }
}

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:032x}", self.0)
    }
}

impl fmt::Debug for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RequestId({self})")
    }
}

impl std::str::FromStr for RequestId {
    type Err = std::num::ParseIntError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        u128::from_str_radix(s, 16).map(RequestId)
    }
}

impl Serialize for RequestId {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for RequestId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = Cow::<str>::deserialize(deserializer)?;
        text.parse().map_err(|_| {
            serde::de::Error::custom(format!("`{text}` is not a request id (32 hex digits)"))
        })
    }
}

/// The outcome of one call, whichever path served it.
///
/// Serialized as `{"request_id": "…", "output": …}` or `{"request_id": "…", "error": {…}}`.
#[derive(Debug, Clone, PartialEq)]
pub struct ResponseEnvelope {
    /// The id of the call this answers.
    pub request_id: RequestId,
    /// The operation's output as JSON, or why it failed.
    pub result: Result<Value, CallError>,
}

impl ResponseEnvelope {
    /// Whether the call succeeded.
    pub fn is_ok(&self) -> bool {
        self.result.is_ok()
    }

    /// The error code, if the call failed.
    pub fn error_code(&self) -> Option<&str> {
        self.result.as_ref().err().map(|e| e.code.as_ref())
    }
}

#[derive(Serialize, Deserialize)]
struct EnvelopeRepr<'a> {
    request_id: RequestId,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "present"
    )]
    output: Option<Cow<'a, Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    error: Option<Cow<'a, CallError>>,
}

/// A field that is present, even as `null`, is `Some`.
fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<T>, D::Error> {
    T::deserialize(d).map(Some)
}

impl Serialize for ResponseEnvelope {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let (output, error) = match &self.result {
            Ok(value) => (Some(Cow::Borrowed(value)), None),
            Err(err) => (None, Some(Cow::Borrowed(err))),
        };
        EnvelopeRepr {
            request_id: self.request_id,
            output,
            error,
        }
        .serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for ResponseEnvelope {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let repr = EnvelopeRepr::deserialize(deserializer)?;
        let result = match (repr.output, repr.error) {
            (Some(output), None) => Ok(output.into_owned()),
            (None, Some(error)) => Err(error.into_owned()),
            _ => {
                return Err(serde::de::Error::custom(
                    "a response envelope has exactly one of `output` and `error`",
                ));
            }
        };
        Ok(ResponseEnvelope {
            request_id: repr.request_id,
            result,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn envelope_round_trips_including_null_output() {
        for result in [
            Ok(Value::Null),
            Ok(json!({"a": 1})),
            Err(CallError::timeout("too slow")),
        ] {
            let envelope = ResponseEnvelope {
                request_id: RequestId::next(),
                result,
            };
            let text = serde_json::to_string(&envelope).unwrap();
            let back: ResponseEnvelope = serde_json::from_str(&text).unwrap();
            assert_eq!(back, envelope, "{text}");
        }
    }

    #[test]
    fn envelope_needs_exactly_one_outcome() {
        let id = RequestId::next();
        let both = json!({"request_id": id, "output": 1, "error": {"code": "X", "message": "m"}});
        let neither = json!({"request_id": id});
        for bad in [both, neither] {
            let err = serde_json::from_value::<ResponseEnvelope>(bad).unwrap_err();
            assert!(err.to_string().contains("exactly one"), "{err}");
        }
    }

    #[test]
    fn request_ids_are_distinct_and_parse_back() {
        let a = RequestId::next();
        let b = RequestId::next();
        assert_ne!(a, b);
        assert_eq!(a.to_string().len(), 32);
        assert_eq!(a.to_string().parse::<RequestId>().unwrap(), a);
    }

    #[test]
    fn call_errors_round_trip_through_postcard_and_json() {
        for err in [
            CallError::timeout("slow"),
            CallError::new("NAME_TAKEN", "taken").with_details(json!({"name": "ada", "n": [1, 2]})),
        ] {
            let bytes = postcard::to_stdvec(&err).unwrap();
            assert_eq!(postcard::from_bytes::<CallError>(&bytes).unwrap(), err);
            let text = serde_json::to_string(&err).unwrap();
            assert_eq!(serde_json::from_str::<CallError>(&text).unwrap(), err);
        }
        let plain = serde_json::to_value(CallError::timeout("slow")).unwrap();
        assert!(
            plain.get("details").is_none(),
            "JSON leaves absent details out: {plain}"
        );
    }

    #[test]
    fn retryable_follows_the_code() {
        assert!(CallError::timeout("t").retryable);
        assert!(CallError::unavailable("u").retryable);
        assert!(!CallError::resource_exhausted("frame too large").retryable);
        let limited = CallError::rate_limited("slow down", std::time::Duration::from_millis(1500));
        assert!(limited.retryable);
        assert_eq!(limited.details, Some(json!({"retry_after_ms": 1500})));
    }
}
