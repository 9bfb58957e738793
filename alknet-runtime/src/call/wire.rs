//! The call protocol's wire format (SPEC §7): [`EventEnvelope`]s, JSON, each framed by a
//! 4-byte big-endian length. `docs/call-protocol.md` is the byte-level specification.

use std::borrow::Cow;
use std::fmt;
use std::io;
use std::pin::Pin;
use std::task::Poll;
use std::time::Duration;

use bytes::{Buf, BytesMut};
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::time::{Instant, Sleep};
use tokio_util::codec::{Decoder, FramedRead};

use super::budget::Charge;
use crate::{CallError, RequestId};

/// The ALPN protocol name of the call protocol over QUIC.
pub const ALPN: &[u8] = b"alknet/call/1";

/// The largest frame accepted by default: 16 MiB of JSON.
pub const DEFAULT_MAX_FRAME_SIZE: usize = 16 * 1024 * 1024;

/// How long a frame may take to arrive whole, from its first byte, by default: 10 s.
pub const DEFAULT_FRAME_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// One event of one call: what travels in a frame (QUIC) or a text message (WebSocket).
///
/// ```
/// use alknet_runtime::call::{Event, EventEnvelope};
/// use serde_json::json;
///
/// let event = EventEnvelope::new("7", Event::Responded { output: json!("hi") });
/// assert_eq!(
///     event.to_json(),
///     r#"{"type":"call.responded","id":"7","payload":{"output":"hi"}}"#
/// );
/// assert_eq!(EventEnvelope::decode(event.to_json().as_bytes()).unwrap(), event);
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct EventEnvelope {
    /// The call this event belongs to: chosen by the caller, unique among its calls in
    /// flight on the connection, repeated on every event of the call.
    pub id: String,
    /// What happened.
    pub event: Event,
}

/// The five event types.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// `call.requested`: the caller starts a call (always the first event of a call).
    Requested(CallRequested),
    /// `call.responded`: the output of a query or mutation, or one item of a subscription.
    Responded {
        /// The output or item.
        output: Value,
    },
    /// `call.completed`: a subscription ended normally.
    Completed,
    /// `call.aborted`: the caller gave up on the call; the callee cancels it.
    Aborted,
    /// `call.error`: the call failed; no event follows.
    Error(CallError),
}

/// The payload of `call.requested`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CallRequested {
    /// `/namespace/operation`.
    #[serde(rename = "operationId")]
    pub operation_id: String,
    /// The operation's input; absent or `null` stands for `{}`.
    #[serde(default)]
    pub input: Value,
    /// A token that identifies the caller for this call, instead of the connection's key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_token: Option<String>,
    /// Who the call is made on behalf of, for audit only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forwarded_for: Option<String>,
    /// The caller's id for this call, so that the callee's logs name the call as the
    /// caller's do.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "sent_ids::request_id"
    )]
    pub request_id: Option<RequestId>,
    /// The id of the call on whose behalf this one is made.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "sent_ids::parent_request_id"
    )]
    pub parent_request_id: Option<RequestId>,
    /// How many milliseconds the caller will wait, counted from when it sent the event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deadline: Option<u64>,
}

/// The request ids a `call.requested` may carry, read by [`RequestId`]'s rules; one that is
/// not a request id is refused with a sentence naming its field.
mod sent_ids {
    use std::borrow::Cow;

    use serde::de::Error;
    use serde::{Deserialize, Deserializer};

    use crate::RequestId;

    pub(super) fn request_id<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<RequestId>, D::Error> {
        named("request_id", d)
    }

    pub(super) fn parent_request_id<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<RequestId>, D::Error> {
        named("parent_request_id", d)
    }

    fn named<'de, D: Deserializer<'de>>(field: &str, d: D) -> Result<Option<RequestId>, D::Error> {
        let text = Option::<Cow<str>>::deserialize(d)
            .map_err(|err| D::Error::custom(format!("`{field}` is not a string: {err}")))?;
        text.map(|text| {
            text.parse().map_err(|_| {
                D::Error::custom(format!(
                    "`{field}` is `{text}`, which is not a request id (32 hex digits)"
                ))
            })
        })
        .transpose()
    }
}

impl Event {
    /// The event's `type` on the wire.
    pub fn type_name(&self) -> &'static str {
        let kind = match self {
            Event::Requested(_) => Kind::Requested,
            Event::Responded { .. } => Kind::Responded,
            Event::Completed => Kind::Completed,
            Event::Aborted => Kind::Aborted,
            Event::Error(_) => Kind::Error,
        };
        kind.name()
    }
}

/// The event types, as a sentence lists them.
const TYPES: &str =
    "`call.requested`, `call.responded`, `call.completed`, `call.aborted` or `call.error`";

#[derive(Serialize)]
struct Outgoing<'a, P> {
    #[serde(rename = "type")]
    kind: &'static str,
    id: &'a str,
    payload: P,
}

#[derive(Serialize)]
struct Output<'a> {
    output: &'a Value,
}

#[derive(Serialize)]
struct Empty {}

/// An envelope's fields but its payload, which is only checked to be JSON: the first of the
/// two passes that read an envelope whose `type` does not come first, and the one every
/// error but the payload's comes from.
#[derive(Deserialize)]
struct Head {
    #[serde(rename = "type")]
    kind: String,
    id: String,
    #[serde(default)]
    #[expect(
        dead_code,
        reason = "read to refuse a second payload, as `type` and `id`"
    )]
    payload: Option<serde::de::IgnoredAny>,
}

/// A field of an envelope.
#[derive(Deserialize)]
#[serde(field_identifier, rename_all = "lowercase")]
enum Field {
    Type,
    Id,
    Payload,
    #[serde(other)]
    Other,
}

/// A `type`, borrowed from the envelope's text when it has no escapes.
#[derive(Deserialize)]
struct TypeName<'a>(#[serde(borrow)] Cow<'a, str>);

/// The five event types.
#[derive(Clone, Copy)]
enum Kind {
    Requested,
    Responded,
    Completed,
    Aborted,
    Error,
}

impl Kind {
    const ALL: [Kind; 5] = [
        Kind::Requested,
        Kind::Responded,
        Kind::Completed,
        Kind::Aborted,
        Kind::Error,
    ];

    /// Its `type` on the wire.
    fn name(self) -> &'static str {
        match self {
            Kind::Requested => "call.requested",
            Kind::Responded => "call.responded",
            Kind::Completed => "call.completed",
            Kind::Aborted => "call.aborted",
            Kind::Error => "call.error",
        }
    }

    fn named(name: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|kind| kind.name() == name)
    }
}

/// An envelope read in one pass, its payload straight into the type its `type` names:
/// for envelopes whose `type` comes before their `payload`, as every writer of this
/// crate puts them. It gives up (`Err`) on anything else, and on anything malformed, for
/// the two passes to read again; the payload it reads as they would ([`PayloadOf`]), and
/// the rest as [`Head`] does.
struct InOnePass;

impl<'de> serde::de::Visitor<'de> for InOnePass {
    type Value = (String, Event);

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an envelope with its type before its payload")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        use serde::de::Error;
        let (mut kind, mut id, mut event) = (None, None::<String>, None);
        while let Some(field) = map.next_key::<Field>()? {
            match field {
                Field::Type if kind.is_none() => {
                    let TypeName(name) = map.next_value()?;
                    kind = Some(Kind::named(&name).ok_or_else(|| A::Error::custom("a type"))?);
                }
                Field::Id if id.is_none() => id = Some(map.next_value()?),
                Field::Payload if event.is_none() => {
                    let kind = kind.ok_or_else(|| A::Error::custom("payload first"))?;
                    event = Some(map.next_value_seed(PayloadOf(kind))?);
                }
                Field::Type | Field::Id | Field::Payload => {
                    return Err(A::Error::custom("a duplicate field"));
                }
                Field::Other => {
                    map.next_value::<serde::de::IgnoredAny>()?;
                }
            }
        }
        let (Some(id), Some(event)) = (id, event) else {
            return Err(A::Error::custom("no id or no payload"));
        };
        Ok((id, event))
    }
}

/// The second pass: the payload of an envelope of type `.0`, every other field skipped;
/// `None` if it has none.
struct PayloadIn(Kind);

impl<'de> serde::de::Visitor<'de> for PayloadIn {
    type Value = Option<Event>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an envelope")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut event = None;
        while let Some(field) = map.next_key::<Field>()? {
            match field {
                Field::Payload => event = Some(map.next_value_seed(PayloadOf(self.0))?),
                _ => {
                    map.next_value::<serde::de::IgnoredAny>()?;
                }
            }
        }
        Ok(event)
    }
}

/// The payload of an envelope of type `.0`, read as that type's.
struct PayloadOf(Kind);

impl<'de> serde::de::DeserializeSeed<'de> for PayloadOf {
    type Value = Event;

    fn deserialize<D: serde::Deserializer<'de>>(self, payload: D) -> Result<Event, D::Error> {
        use serde::de::IgnoredAny;
        Ok(match self.0 {
            Kind::Requested => Event::Requested(CallRequested::deserialize(payload)?),
            Kind::Responded => Event::Responded {
                output: OutputIn::deserialize(payload)?.output,
            },
            Kind::Completed => {
                IgnoredAny::deserialize(payload)?;
                Event::Completed
            }
            Kind::Aborted => {
                IgnoredAny::deserialize(payload)?;
                Event::Aborted
            }
            Kind::Error => Event::Error(CallError::deserialize(payload)?),
        })
    }
}

#[derive(Deserialize)]
struct OutputIn {
    output: Value,
}

impl EventEnvelope {
    /// An event of call `id`.
    pub fn new(id: impl Into<String>, event: Event) -> Self {
        EventEnvelope {
            id: id.into(),
            event,
        }
    }

    /// Append the envelope's JSON to `out`.
    pub fn write_json(&self, out: &mut Vec<u8>) {
        let id = &self.id;
        let kind = self.event.type_name();
        // Serializing these types into memory cannot fail: every map key is a string.
        let written = match &self.event {
            Event::Requested(payload) => {
                serde_json::to_writer(&mut *out, &Outgoing { kind, id, payload })
            }
            Event::Responded { output } => serde_json::to_writer(
                &mut *out,
                &Outgoing {
                    kind,
                    id,
                    payload: Output { output },
                },
            ),
            Event::Completed | Event::Aborted => serde_json::to_writer(
                &mut *out,
                &Outgoing {
                    kind,
                    id,
                    payload: Empty {},
                },
            ),
            Event::Error(payload) => {
                serde_json::to_writer(&mut *out, &Outgoing { kind, id, payload })
            }
        };
        debug_assert!(written.is_ok());
    }

    /// The envelope as JSON text: one WebSocket message.
    pub fn to_json(&self) -> String {
        let mut out = Vec::with_capacity(64);
        self.write_json(&mut out);
        // serde_json writes UTF-8.
        String::from_utf8(out).unwrap_or_default()
    }

    /// The envelope as one frame: the 4-byte big-endian length of the JSON, then the JSON.
    pub fn to_frame(&self) -> Vec<u8> {
        let mut frame = Vec::with_capacity(128);
        self.write_frame(&mut frame);
        frame
    }

    /// Append the envelope's frame to `out`, after what it holds.
    pub fn write_frame(&self, out: &mut Vec<u8>) {
        let start = out.len();
        out.extend_from_slice(&[0; 4]);
        self.write_json(out);
        let len = (out.len() - start - 4) as u32;
        out[start..start + 4].copy_from_slice(&len.to_be_bytes());
    }

    /// Parse one envelope from its JSON.
    pub fn decode(json: &[u8]) -> Result<Self, DecodeError> {
        let mut one_pass = serde_json::Deserializer::from_slice(json);
        if let Ok((id, event)) = serde::Deserializer::deserialize_map(&mut one_pass, InOnePass)
            && one_pass.end().is_ok()
        {
            return Ok(EventEnvelope { id, event });
        }
        Self::decode_in_two_passes(json)
    }

    /// [`decode`](Self::decode) in two passes over `json`: its [`Head`], then its payload
    /// as its type's ([`PayloadIn`]). What the one pass must agree with.
    fn decode_in_two_passes(json: &[u8]) -> Result<Self, DecodeError> {
        let Head { kind: name, id, .. } =
            serde_json::from_slice(json).map_err(|e| DecodeError::Malformed(e.to_string()))?;
        let Some(kind) = Kind::named(&name) else {
            return Err(DecodeError::UnknownType { id, kind: name });
        };
        let invalid = |reason: serde_json::Error| DecodeError::InvalidPayload {
            id: id.clone(),
            kind: name.clone(),
            reason: without_position(&reason),
        };
        let mut payload_pass = serde_json::Deserializer::from_slice(json);
        let read = serde::Deserializer::deserialize_map(&mut payload_pass, PayloadIn(kind));
        let event = match read.map_err(invalid)? {
            Some(event) => event,
            // An absent payload reads as `null`, which the payloads that need one refuse.
            None => serde::de::DeserializeSeed::deserialize(PayloadOf(kind), Value::Null)
                .map_err(invalid)?,
        };
        Ok(EventEnvelope { id, event })
    }
}

/// What `err` says, without where in the payload's text it happened: the payload is part
/// of a larger event, so its own line and column would mislead.
fn without_position(err: &serde_json::Error) -> String {
    let text = err.to_string();
    let position = format!(" at line {} column {}", err.line(), err.column());
    match text.strip_suffix(&position) {
        Some(message) => message.to_string(),
        None => text,
    }
}

/// Why bytes could not be read as an [`EventEnvelope`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecodeError {
    /// Not JSON, or not an object with a string `type` and a string `id`.
    Malformed(String),
    /// A `type` that is not one of the five event types.
    UnknownType {
        /// The envelope's id.
        id: String,
        /// The type it named.
        kind: String,
    },
    /// A known type whose payload lacks a field or has one of the wrong type.
    InvalidPayload {
        /// The envelope's id.
        id: String,
        /// The event type.
        kind: String,
        /// What is wrong with the payload.
        reason: String,
    },
}

impl DecodeError {
    /// The id of the call the bad envelope named, if it could be read.
    pub fn id(&self) -> Option<&str> {
        match self {
            DecodeError::Malformed(_) => None,
            DecodeError::UnknownType { id, .. } | DecodeError::InvalidPayload { id, .. } => {
                Some(id)
            }
        }
    }

    /// The `call.error` a peer receives for it: `INVALID_INPUT` with the sentence.
    pub fn to_call_error(&self) -> CallError {
        CallError::invalid_input(self.to_string())
    }
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::Malformed(reason) => write!(
                f,
                "the event is not a JSON object with a string `type` and a string `id`: {reason}"
            ),
            DecodeError::UnknownType { kind, .. } => {
                write!(f, "unknown event type `{kind}`; expected {TYPES}")
            }
            DecodeError::InvalidPayload { kind, reason, .. } => {
                write!(f, "the payload of `{kind}` is invalid: {reason}")
            }
        }
    }
}

impl std::error::Error for DecodeError {}

/// Why a frame could not be read.
#[derive(Debug)]
pub enum FrameError {
    /// The length prefix announced more than the limit; nothing was allocated.
    TooLarge {
        /// The announced length.
        len: u32,
        /// The limit.
        max: usize,
    },
    /// The frame's bytes would not fit the memory set aside for frames still arriving, on
    /// the connection or on the whole endpoint.
    OverBudget {
        /// Whose budget is full: "the connection", "the node", …
        owner: &'static str,
        /// Its size in bytes.
        limit: usize,
    },
    /// The stream ended inside a frame.
    Truncated,
    /// A frame began to arrive and was not whole within the read timeout; what it held
    /// was given back.
    TimedOut {
        /// The read timeout.
        timeout: Duration,
    },
    /// The stream failed (reset, connection lost).
    Io(io::Error),
}

impl FrameError {
    /// The `call.error` this becomes: `RESOURCE_EXHAUSTED` for a frame over the limit (not
    /// retryable) or over a budget (retryable: the room comes back as other frames arrive),
    /// `INVALID_INPUT` for a truncated one, `TIMEOUT` for a slow one, `UNAVAILABLE` for a
    /// failed stream.
    pub fn to_call_error(&self) -> CallError {
        match self {
            FrameError::TimedOut { .. } => CallError::timeout(self.to_string()),
            FrameError::TooLarge { .. } => CallError::resource_exhausted(self.to_string()),
            FrameError::OverBudget { .. } => {
                CallError::resource_exhausted(self.to_string()).retryable(true)
            }
            FrameError::Truncated => CallError::invalid_input(self.to_string()),
            FrameError::Io(_) => CallError::unavailable(self.to_string()),
        }
    }
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FrameError::TooLarge { len, max } => {
                write!(f, "a frame of {len} bytes is over the limit of {max} bytes")
            }
            FrameError::OverBudget { owner, limit } => write!(
                f,
                "{owner} has no room for more frames in transit: its {limit} bytes for them are in use"
            ),
            FrameError::Truncated => write!(f, "the stream ended in the middle of a frame"),
            FrameError::TimedOut { timeout } => write!(
                f,
                "a frame began to arrive and was not whole within {} ms",
                timeout.as_millis()
            ),
            FrameError::Io(err) => write!(f, "the connection to the peer failed: {err}"),
        }
    }
}

impl std::error::Error for FrameError {}

impl From<io::Error> for FrameError {
    fn from(err: io::Error) -> Self {
        FrameError::Io(err)
    }
}

/// The frame format as a [`Decoder`]: a 4-byte big-endian length, then that many bytes.
///
/// The length is checked against the limit as soon as its 4 bytes are in; nothing is
/// reserved for the body: the buffer grows only as bytes arrive (tokio-util's
/// `LengthDelimitedCodec` reserves the announced length at once, which would let a peer
/// make the node allocate 16 MiB for each 4 bytes it sends).
struct FrameCodec {
    max: usize,
    /// The bytes of the frame in transit, held against the connection's and the
    /// endpoint's budgets.
    charge: Option<Charge>,
    /// When the frame in transit began to arrive; `None` between frames.
    in_transit_since: Option<Instant>,
}

/// The length prefix's size.
const PREFIX: usize = 4;

impl Decoder for FrameCodec {
    type Item = BytesMut;
    type Error = FrameError;

    fn decode(&mut self, buffer: &mut BytesMut) -> Result<Option<BytesMut>, FrameError> {
        self.decode_frame(buffer)
            .map_err(|err| self.give_up(buffer, err))
    }

    fn decode_eof(&mut self, buffer: &mut BytesMut) -> Result<Option<BytesMut>, FrameError> {
        match self.decode(buffer)? {
            None if !buffer.is_empty() => Err(self.give_up(buffer, FrameError::Truncated)),
            frame => Ok(frame),
        }
    }
}

impl FrameCodec {
    /// After an error the reader yields nothing more: what it holds goes back at once, not
    /// when the stream is dropped.
    fn give_up(&mut self, buffer: &mut BytesMut, err: FrameError) -> FrameError {
        *buffer = BytesMut::new();
        self.in_transit_since = None;
        if let Some(charge) = &mut self.charge {
            let _ = charge.hold(0);
        }
        err
    }

    fn decode_frame(&mut self, buffer: &mut BytesMut) -> Result<Option<BytesMut>, FrameError> {
        let frame_end = match frame_len(buffer) {
            Some(len) if len as usize > self.max => {
                return Err(FrameError::TooLarge { len, max: self.max });
            }
            Some(len) => PREFIX + len as usize,
            None => usize::MAX,
        };
        let frame = (buffer.len() >= frame_end).then(|| {
            let mut frame = buffer.split_to(frame_end);
            frame.advance(PREFIX);
            frame
        });
        // What is left is the start of the next frame, in transit: it began with the read
        // that brought it, now. A next frame that is already whole is not in transit (and
        // a run of them, as a subscription's items arrive, reads no clock).
        let next_is_whole =
            frame_len(buffer).is_some_and(|len| buffer.len() >= PREFIX + len as usize);
        if buffer.is_empty() || next_is_whole {
            self.in_transit_since = None;
        } else if frame.is_some() || self.in_transit_since.is_none() {
            self.in_transit_since = Some(Instant::now());
        }
        if let Some(charge) = &mut self.charge {
            charge.hold(buffer.len())?;
        }
        Ok(frame)
    }
}

/// The length of the frame `buffer` begins with, once its prefix is in.
fn frame_len(buffer: &[u8]) -> Option<u32> {
    let prefix = buffer.get(..PREFIX)?;
    Some(u32::from_be_bytes([
        prefix[0], prefix[1], prefix[2], prefix[3],
    ]))
}

/// Reads frames from any [`AsyncRead`]: a QUIC stream, a socket, bytes in memory.
///
/// Each read takes as much as the stream has ready (what comes beyond the current frame is
/// kept for the next), so a small frame usually takes one read, and the stream's end
/// arriving with it is seen at once (on QUIC, that spares the peer a STOP_SENDING). The
/// buffer grows with the bytes that arrived, at most twice them, never with the length a
/// frame announced. A frame must arrive whole within the read timeout of its first byte
/// ([`DEFAULT_FRAME_READ_TIMEOUT`] unless [`FrameReader::read_timeout`] says otherwise);
/// between frames a stream may be quiet as long as it likes.
///
/// ```
/// use alknet_runtime::call::{Event, EventEnvelope, FrameReader};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let bytes = [
///     EventEnvelope::new("1", Event::Completed).to_frame(),
///     EventEnvelope::new("2", Event::Aborted).to_frame(),
/// ]
/// .concat();
/// let mut frames = FrameReader::new(&bytes[..], 1024);
/// let first = frames.next().await.unwrap().unwrap();
/// assert_eq!(EventEnvelope::decode(&first).unwrap().id, "1");
/// let second = frames.next().await.unwrap().unwrap();
/// assert_eq!(EventEnvelope::decode(&second).unwrap().event, Event::Aborted);
/// assert!(frames.next().await.unwrap().is_none());
/// # }
/// ```
pub struct FrameReader<R> {
    frames: FramedRead<R, FrameCodec>,
    read_timeout: Duration,
    /// Runs while a frame is in transit, to its read timeout.
    timer: Option<Pin<Box<Sleep>>>,
    /// A frame timed out: the reader yields nothing more.
    gave_up: bool,
}

impl<R: AsyncRead + Unpin> FrameReader<R> {
    /// Frames of at most `max` bytes from `reader`.
    pub fn new(reader: R, max: usize) -> Self {
        Self::with_charge(reader, max, None)
    }

    /// Frames of at most `max` bytes, whose bytes in transit are held against `charge`'s
    /// budgets.
    pub(crate) fn charged(reader: R, max: usize, charge: Charge) -> Self {
        Self::with_charge(reader, max, Some(charge))
    }

    fn with_charge(reader: R, max: usize, charge: Option<Charge>) -> Self {
        FrameReader {
            frames: FramedRead::new(
                reader,
                FrameCodec {
                    max,
                    charge,
                    in_transit_since: None,
                },
            ),
            read_timeout: DEFAULT_FRAME_READ_TIMEOUT,
            timer: None,
            gave_up: false,
        }
    }

    /// Give up on a frame that is not whole `timeout` after its first byte arrived: the
    /// read fails with [`FrameError::TimedOut`] and what the frame held is given back.
    pub fn read_timeout(mut self, timeout: Duration) -> Self {
        self.read_timeout = timeout;
        self
    }

    /// The stream it reads.
    pub fn get_mut(&mut self) -> &mut R {
        self.frames.get_mut()
    }

    /// The next frame's JSON. `Ok(None)`: the stream ended cleanly between frames. The
    /// length is checked against the limit before anything is allocated for the frame.
    /// After an error the reader yields nothing more.
    pub async fn next(&mut self) -> Result<Option<BytesMut>, FrameError> {
        // Frames already read come without waiting: a reader working through thousands of
        // them would otherwise keep its thread from the tasks it woke, such as the QUIC
        // connection's driver, for as long as the idle timeout.
        tokio::task::consume_budget().await;
        if self.gave_up {
            return Ok(None);
        }
        std::future::poll_fn(|cx| {
            if let Poll::Ready(frame) = self.frames.poll_next_unpin(cx) {
                return Poll::Ready(frame.transpose());
            }
            let Some(since) = self.frames.decoder().in_transit_since else {
                self.timer = None;
                return Poll::Pending;
            };
            let deadline = since + self.read_timeout;
            let timer = self
                .timer
                .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
            if timer.deadline() != deadline {
                timer.as_mut().reset(deadline);
            }
            if timer.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            self.timer = None;
            self.gave_up = true;
            let err = FrameError::TimedOut {
                timeout: self.read_timeout,
            };
            let mut buffer = std::mem::take(self.frames.read_buffer_mut());
            Poll::Ready(Err(self.frames.decoder_mut().give_up(&mut buffer, err)))
        })
        .await
    }
}

/// Write one envelope as a frame.
pub async fn write_frame<W: AsyncWrite + Unpin>(
    writer: &mut W,
    envelope: &EventEnvelope,
) -> io::Result<()> {
    writer.write_all(&envelope.to_frame()).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn every_event() -> Vec<EventEnvelope> {
        vec![
            EventEnvelope::new(
                "1",
                Event::Requested(CallRequested {
                    operation_id: "/echo/say".into(),
                    input: json!({"text": "hi"}),
                    auth_token: Some("t".into()),
                    forwarded_for: Some("user:ada".into()),
                    request_id: Some(RequestId::from(0xab_u128 << 64 | 7)),
                    parent_request_id: Some(RequestId::from(0xab_u128 << 64 | 6)),
                    deadline: Some(30_000),
                }),
            ),
            EventEnvelope::new(
                "1",
                Event::Responded {
                    output: json!(null),
                },
            ),
            EventEnvelope::new("1", Event::Completed),
            EventEnvelope::new("1", Event::Aborted),
            EventEnvelope::new(
                "1",
                Event::Error(CallError::not_found("no").with_details(json!({"a": 1}))),
            ),
        ]
    }

    #[test]
    fn every_event_round_trips_through_a_frame() {
        for event in every_event() {
            let frame = event.to_frame();
            let len = u32::from_be_bytes(frame[..4].try_into().unwrap()) as usize;
            assert_eq!(len, frame.len() - 4);
            assert_eq!(EventEnvelope::decode(&frame[4..]).unwrap(), event);
        }
    }

    #[test]
    fn what_this_crate_writes_is_read_in_one_pass() {
        for event in every_event() {
            let json = event.to_json();
            let mut reader = serde_json::Deserializer::from_str(&json);
            let (id, read) = serde::Deserializer::deserialize_map(&mut reader, InOnePass)
                .unwrap_or_else(|err| panic!("{json} is read again in full: {err}"));
            assert_eq!(EventEnvelope { id, event: read }, event);
        }
    }

    #[test]
    fn the_documented_request_is_byte_exact() {
        let event = EventEnvelope::new(
            "1",
            Event::Requested(CallRequested {
                operation_id: "/echo/say".into(),
                input: json!({"text": "hi"}),
                auth_token: None,
                forwarded_for: None,
                request_id: None,
                parent_request_id: None,
                deadline: Some(30000),
            }),
        );
        let frame = event.to_frame();
        let json = r#"{"type":"call.requested","id":"1","payload":{"operationId":"/echo/say","input":{"text":"hi"},"deadline":30000}}"#;
        assert_eq!(&frame[4..], json.as_bytes());
        assert_eq!(&frame[..4], &(json.len() as u32).to_be_bytes());
    }

    #[test]
    fn a_request_carries_its_callers_request_ids_or_leaves_them_out() {
        let json = r#"{"type":"call.requested","id":"2","payload":{"operationId":"/echo/say","input":{},"forwarded_for":"user:ada","request_id":"000000000000000a0000000000000007","parent_request_id":"000000000000000a0000000000000006"}}"#;
        let event = EventEnvelope::decode(json.as_bytes()).unwrap();
        let Event::Requested(request) = &event.event else {
            panic!("{event:?}")
        };
        assert_eq!(
            request.request_id,
            Some(RequestId::from(0xa_u128 << 64 | 7))
        );
        assert_eq!(
            request.parent_request_id,
            Some(RequestId::from(0xa_u128 << 64 | 6))
        );
        assert_eq!(event.to_json(), json);

        // Absent or `null`: none, and none is not written.
        let json = r#"{"type":"call.requested","id":"3","payload":{"operationId":"/echo/say","input":{}}}"#;
        for payload in [
            r#"{"operationId":"/echo/say","input":{}}"#,
            r#"{"operationId":"/echo/say","input":{},"request_id":null,"parent_request_id":null}"#,
        ] {
            let event = EventEnvelope::decode(
                format!(r#"{{"type":"call.requested","id":"3","payload":{payload}}}"#).as_bytes(),
            )
            .unwrap();
            let Event::Requested(request) = &event.event else {
                panic!("{event:?}")
            };
            assert_eq!(
                (request.request_id, request.parent_request_id),
                (None, None)
            );
            assert_eq!(event.to_json(), json);
        }
    }

    #[test]
    fn a_request_id_that_is_not_one_is_refused_naming_its_field() {
        for (field, value, sentence) in [
            (
                "request_id",
                r#""xyz""#,
                "`request_id` is `xyz`, which is not a request id (32 hex digits)",
            ),
            (
                "parent_request_id",
                r#""fffffffffffffffffffffffffffffffff""#,
                "`parent_request_id` is `fffffffffffffffffffffffffffffffff`, which is not a request id (32 hex digits)",
            ),
            (
                "request_id",
                "7",
                "`request_id` is not a string: invalid type: integer `7`, expected a string",
            ),
        ] {
            let json = format!(
                r#"{{"type":"call.requested","id":"4","payload":{{"operationId":"/echo/say","{field}":{value}}}}}"#
            );
            let err = EventEnvelope::decode(json.as_bytes()).unwrap_err();
            assert_eq!(err.id(), Some("4"));
            let err = err.to_call_error();
            assert_eq!(err.code, crate::codes::INVALID_INPUT);
            assert_eq!(
                err.message,
                format!("the payload of `call.requested` is invalid: {sentence}")
            );
        }
    }

    #[test]
    fn bad_envelopes_say_what_is_wrong() {
        let err = EventEnvelope::decode(b"{not json").unwrap_err();
        assert!(matches!(err, DecodeError::Malformed(_)), "{err}");
        assert_eq!(err.to_call_error().code, "INVALID_INPUT");

        let err =
            EventEnvelope::decode(br#"{"type":"call.dance","id":"9","payload":{}}"#).unwrap_err();
        assert_eq!(err.id(), Some("9"));
        assert!(
            err.to_string().contains("unknown event type `call.dance`"),
            "{err}"
        );

        let err = EventEnvelope::decode(br#"{"type":"call.requested","id":"3","payload":{}}"#)
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "the payload of `call.requested` is invalid: missing field `operationId`"
        );

        // The type may come after the payload; a missing payload is `null`.
        let err =
            EventEnvelope::decode(br#"{"payload":7,"id":"4","type":"call.error"}"#).unwrap_err();
        assert_eq!(err.id(), Some("4"));
        assert!(
            err.to_string()
                .starts_with("the payload of `call.error` is invalid: invalid type: integer `7`"),
            "{err}"
        );
        let err = EventEnvelope::decode(br#"{"type":"call.responded","id":"5"}"#).unwrap_err();
        assert!(err.to_string().contains("invalid type: null"), "{err}");
        assert_eq!(
            EventEnvelope::decode(br#"{"type":"call.aborted","id":"6"}"#).unwrap(),
            EventEnvelope::new("6", Event::Aborted)
        );
    }

    #[tokio::test]
    async fn a_frame_reader_keeps_what_it_read_ahead_for_the_next_frame() {
        let events = every_event();
        let bytes: Vec<u8> = events.iter().flat_map(EventEnvelope::to_frame).collect();
        // Two frames and a half in the first read, the rest trickling in.
        let (first, rest) = bytes.split_at(bytes.len() / 2);
        let reader = reader_of(&[first, &rest[..3], &rest[3..]]);
        let mut frames = FrameReader::new(reader, DEFAULT_MAX_FRAME_SIZE);
        for event in &events {
            let frame = frames.next().await.unwrap().unwrap();
            assert_eq!(&EventEnvelope::decode(&frame).unwrap(), event);
        }
        assert!(frames.next().await.unwrap().is_none());
    }

    #[tokio::test]
    async fn a_frame_that_straddles_a_read_arrives_whole() {
        // The subscription of issue #13: small items, then one that does not fit what the
        // first read brought. Main's reader panicked here ("range end index 1063 out of
        // range for slice of length 1024").
        let small = EventEnvelope::new("1", Event::Completed).to_frame();
        let large = EventEnvelope::new(
            "1",
            Event::Responded {
                output: json!("x".repeat(1030)),
            },
        )
        .to_frame();
        let bytes = [small.clone(), large.clone(), small.clone()].concat();
        let (first, rest) = bytes.split_at(1024);
        let mut frames = FrameReader::new(reader_of(&[first, rest]), DEFAULT_MAX_FRAME_SIZE);
        for expected in [&small, &large, &small] {
            assert_eq!(frames.next().await.unwrap().unwrap(), &expected[4..]);
        }
        assert!(frames.next().await.unwrap().is_none());
    }

    /// A reader that hands out `parts` one read at a time.
    fn reader_of(parts: &[&[u8]]) -> impl AsyncRead + Unpin + use<> {
        struct Parts(std::collections::VecDeque<Vec<u8>>);
        impl AsyncRead for Parts {
            fn poll_read(
                mut self: std::pin::Pin<&mut Self>,
                _: &mut std::task::Context<'_>,
                buf: &mut tokio::io::ReadBuf<'_>,
            ) -> std::task::Poll<io::Result<()>> {
                if let Some(part) = self.0.front_mut() {
                    let n = part.len().min(buf.remaining());
                    buf.put_slice(&part[..n]);
                    part.drain(..n);
                    if part.is_empty() {
                        self.0.pop_front();
                    }
                }
                std::task::Poll::Ready(Ok(()))
            }
        }
        Parts(parts.iter().map(|part| part.to_vec()).collect())
    }

    fn frame_of(len: usize) -> Vec<u8> {
        let mut frame = (len as u32).to_be_bytes().to_vec();
        frame.extend((0..len).map(|i| (i % 251) as u8));
        frame
    }

    #[tokio::test]
    async fn frames_at_the_limit_pass_and_one_byte_over_is_refused_before_allocating() {
        let (at_the_limit, over_it) = (frame_of(100), frame_of(101));
        let mut frames = FrameReader::new(&at_the_limit[..], 100);
        assert_eq!(frames.next().await.unwrap().unwrap().len(), 100);
        let mut frames = FrameReader::new(&over_it[..], 100);
        match frames.next().await {
            Err(FrameError::TooLarge { len: 101, max: 100 }) => {}
            other => panic!("{other:?}"),
        }
        // The prefix alone is enough to refuse; the body never comes.
        let mut frames = FrameReader::new(&[0xff, 0xff, 0xff, 0xff][..], DEFAULT_MAX_FRAME_SIZE);
        match frames.next().await {
            Err(err @ FrameError::TooLarge { len: u32::MAX, .. }) => {
                let err = err.to_call_error();
                assert_eq!(err.code, crate::codes::RESOURCE_EXHAUSTED);
                assert!(!err.retryable);
            }
            other => panic!("{other:?}"),
        }
        let mut truncated = FrameReader::new(&[0, 0, 0, 5, b'{'][..], 100);
        assert!(matches!(truncated.next().await, Err(FrameError::Truncated)));
        let mut half_a_prefix = FrameReader::new(&[0, 0][..], 100);
        assert!(matches!(
            half_a_prefix.next().await,
            Err(FrameError::Truncated)
        ));
        let mut empty = FrameReader::new(&[][..], 100);
        assert!(matches!(empty.next().await, Ok(None)));
    }

    #[tokio::test]
    async fn a_frame_in_transit_holds_what_arrived_against_its_budgets() {
        use crate::call::budget::{Budget, Charge};

        let connection = Budget::new("the connection", 1000);
        let endpoint = Budget::new("the node", 10_000);
        // A frame announcing 900 bytes, of which 300 arrived.
        let (mut writer, reader) = tokio::io::duplex(64 * 1024);
        let mut frames = FrameReader::charged(
            reader,
            DEFAULT_MAX_FRAME_SIZE,
            Charge::new(connection.clone(), endpoint.clone()),
        );
        let frame = frame_of(900);
        writer.write_all(&frame[..304]).await.unwrap();
        let pending = tokio::time::timeout(std::time::Duration::from_millis(50), frames.next());
        assert!(pending.await.is_err(), "the frame is not whole yet");
        assert_eq!((connection.used(), endpoint.used()), (304, 304));
        writer.write_all(&frame[304..]).await.unwrap();
        assert_eq!(frames.next().await.unwrap().unwrap().len(), 900);
        assert_eq!(
            (connection.used(), endpoint.used()),
            (0, 0),
            "a whole frame holds nothing"
        );

        // Past the connection's budget the frame is refused, and what it held given back.
        // (A frame that arrives whole in one read is never in transit.)
        writer.write_all(&frame_of(1200)[..1001]).await.unwrap();
        let err = frames.next().await.unwrap_err();
        assert!(
            matches!(err, FrameError::OverBudget { limit: 1000, .. }),
            "{err}"
        );
        drop(frames);
        assert_eq!((connection.used(), endpoint.used()), (0, 0));
    }

    #[tokio::test(start_paused = true)]
    async fn a_frame_that_stalls_is_given_up_at_its_read_timeout_and_frees_its_budget() {
        use crate::call::budget::{Budget, Charge};

        let connection = Budget::new("the connection", 10_000);
        let endpoint = Budget::new("the node", 10_000);
        let (mut writer, reader) = tokio::io::duplex(64 * 1024);
        let mut frames = FrameReader::charged(
            reader,
            DEFAULT_MAX_FRAME_SIZE,
            Charge::new(connection.clone(), endpoint.clone()),
        )
        .read_timeout(Duration::from_secs(2));
        // A quiet stream between frames is no frame in transit: it may wait for ever.
        let quiet = tokio::time::timeout(Duration::from_secs(60), frames.next());
        assert!(quiet.await.is_err());

        let frame = frame_of(900);
        writer.write_all(&frame[..304]).await.unwrap();
        let started = Instant::now();
        // Bytes that trickle in do not extend the frame's time.
        let trickle = async {
            for byte in &frame[304..310] {
                tokio::time::sleep(Duration::from_millis(500)).await;
                writer.write_all(std::slice::from_ref(byte)).await.unwrap();
            }
        };
        let read = async {
            let outcome = frames.next().await;
            (outcome, started.elapsed())
        };
        let ((err, elapsed), ()) = tokio::join!(read, trickle);
        let err = err.unwrap_err();
        assert!(
            matches!(err, FrameError::TimedOut { timeout } if timeout == Duration::from_secs(2)),
            "{err}"
        );
        assert_eq!(elapsed, Duration::from_secs(2));
        assert_eq!(err.to_call_error().code, crate::codes::TIMEOUT);
        assert_eq!(
            err.to_string(),
            "a frame began to arrive and was not whole within 2000 ms"
        );
        assert_eq!((connection.used(), endpoint.used()), (0, 0), "given back");
        assert!(frames.next().await.unwrap().is_none(), "nothing more");

        // The next frame's clock starts with the bytes that follow a whole frame.
        let (mut writer, reader) = tokio::io::duplex(64 * 1024);
        let mut frames = FrameReader::new(reader, 1000).read_timeout(Duration::from_secs(2));
        let two = [frame_of(10), frame_of(20)].concat();
        writer.write_all(&two[..20]).await.unwrap();
        assert_eq!(frames.next().await.unwrap().unwrap().len(), 10);
        tokio::time::sleep(Duration::from_millis(1500)).await;
        writer.write_all(&two[20..]).await.unwrap();
        assert_eq!(frames.next().await.unwrap().unwrap().len(), 20);
    }

    /// How a stream of bytes decodes, read all at once: the frames, then how it ends.
    fn reference_decode(mut bytes: &[u8], max: usize) -> (Vec<Vec<u8>>, Result<(), String>) {
        let mut frames = Vec::new();
        loop {
            if bytes.is_empty() {
                return (frames, Ok(()));
            }
            if bytes.len() < 4 {
                return (frames, Err("truncated".into()));
            }
            let len = u32::from_be_bytes(bytes[..4].try_into().unwrap()) as usize;
            if len > max {
                return (frames, Err(format!("too large: {len}")));
            }
            if bytes.len() < 4 + len {
                return (frames, Err("truncated".into()));
            }
            frames.push(bytes[4..4 + len].to_vec());
            bytes = &bytes[4 + len..];
        }
    }

    mod property {
        use super::*;
        use proptest::prelude::*;

        const MAX: usize = 100_000;

        /// Body lengths that cross every boundary: tiny, around 1 KiB and 64 KiB, up to
        /// past the limit.
        fn body_len() -> impl Strategy<Value = usize> {
            prop_oneof![0..8usize, 1020..1030usize, 65530..65542usize, 0..(MAX + 50),]
        }

        /// How the stream ends: cleanly, cut short, or with a prefix over the limit.
        #[derive(Debug, Clone)]
        enum Tail {
            Clean,
            Cut(usize),
            Oversized(u32),
        }

        fn tail() -> impl Strategy<Value = Tail> {
            prop_oneof![
                Just(Tail::Clean),
                (1..70_000usize).prop_map(Tail::Cut),
                ((MAX as u32 + 1)..=u32::MAX).prop_map(Tail::Oversized),
            ]
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(96))]

            #[test]
            fn frames_in_any_chunking_decode_as_the_reference_does(
                lens in prop::collection::vec(body_len(), 0..8),
                tail in tail(),
                chunks in prop::collection::vec(1..=65_536usize, 1..16),
            ) {
                let mut bytes: Vec<u8> = lens.iter().flat_map(|&len| frame_of(len)).collect();
                match tail {
                    Tail::Clean => {}
                    // Anywhere: inside a prefix, inside a body, or on a boundary.
                    Tail::Cut(cut) => bytes.truncate(cut % (bytes.len() + 1)),
                    Tail::Oversized(len) => {
                        bytes.extend_from_slice(&len.to_be_bytes());
                        bytes.extend_from_slice(b"{\"type\"");
                    }
                }
                let (expected, ending) = reference_decode(&bytes, MAX);

                let mut parts: Vec<&[u8]> = Vec::new();
                let mut rest = &bytes[..];
                for size in chunks.iter().cycle() {
                    if rest.is_empty() {
                        break;
                    }
                    let (part, after) = rest.split_at((*size).min(rest.len()));
                    parts.push(part);
                    rest = after;
                }
                let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
                let (frames, outcome) = runtime.block_on(async {
                    let mut reader = FrameReader::new(reader_of(&parts), MAX);
                    let mut frames = Vec::new();
                    loop {
                        match reader.next().await {
                            Ok(Some(frame)) => frames.push(frame.to_vec()),
                            Ok(None) => return (frames, Ok(())),
                            Err(FrameError::Truncated) => return (frames, Err("truncated".to_string())),
                            Err(FrameError::TooLarge { len, .. }) => {
                                return (frames, Err(format!("too large: {len}")));
                            }
                            Err(other) => return (frames, Err(other.to_string())),
                        }
                    }
                });
                prop_assert_eq!(frames.len(), expected.len());
                prop_assert!(frames == expected, "the frames differ");
                prop_assert_eq!(outcome, ending);
            }

            /// The one-pass reading and the two passes agree on every envelope: fields in
            /// any order, repeated, missing or of the wrong type, payloads valid or not,
            /// unknown fields and types, and text after the object.
            #[test]
            fn one_pass_decodes_as_the_two_passes_do(
                fields in prop::collection::vec(field(), 0..6),
                trailing in prop_oneof![Just(""), Just(" "), Just("x"), Just("{}")],
            ) {
                let body: Vec<String> =
                    fields.iter().map(|(key, value)| format!("{key:?}:{value}")).collect();
                let json = format!("{{{}}}{trailing}", body.join(","));
                prop_assert_eq!(
                    EventEnvelope::decode(json.as_bytes()),
                    EventEnvelope::decode_in_two_passes(json.as_bytes()),
                    "{}", json
                );
            }
        }

        /// One field of an envelope: a name and its JSON text.
        fn field() -> impl Strategy<Value = (String, String)> {
            let kind = prop_oneof![
                Just(r#""call.requested""#),
                Just(r#""call.responded""#),
                Just(r#""call.completed""#),
                Just(r#""call.aborted""#),
                Just(r#""call.error""#),
                Just(r#""call.dance""#),
                Just("7"),
            ];
            let id = prop_oneof![Just(r#""1""#), Just(r#""a2""#), Just("null")];
            let payload = prop_oneof![
                Just(r#"{"operationId":"echo/say","input":{"text":"hi"}}"#),
                Just(r#"{"operationId":"echo/say","request_id":"nope"}"#),
                Just(r#"{"operationId":5}"#),
                Just(r#"{"output":{"n":1}}"#),
                Just(r#"{"code":"NOT_FOUND","message":"gone"}"#),
                Just(r#"{"code":"NOT_FOUND"}"#),
                Just("{}"),
                Just("null"),
                Just("[1,2]"),
                Just(r#""text""#),
                Just(r#"{"x":1e400}"#),
                Just(r#"{"operationId":"echo/say","x":"\ud800"}"#),
                Just(r#"{"output":1e400}"#),
            ];
            prop_oneof![
                kind.prop_map(|value| ("type".to_string(), value.to_string())),
                id.prop_map(|value| ("id".to_string(), value.to_string())),
                payload.prop_map(|value| ("payload".to_string(), value.to_string())),
                Just((
                    "extra".to_string(),
                    r#"{"deep":[1,{"x":null}]}"#.to_string()
                )),
            ]
        }
    }
}
