//! The call protocol's wire format (SPEC §7): [`EventEnvelope`]s, JSON, each framed by a
//! 4-byte big-endian length. `docs/call-protocol.md` is the byte-level specification.

use std::fmt;
use std::io;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::CallError;

/// The ALPN protocol name of the call protocol over QUIC.
pub const ALPN: &[u8] = b"alknet/call/1";

/// The largest frame accepted by default: 16 MiB of JSON.
pub const DEFAULT_MAX_FRAME_SIZE: usize = 16 * 1024 * 1024;

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
    /// How many milliseconds the caller will wait, counted from when it sent the event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deadline: Option<u64>,
}

impl Event {
    /// The event's `type` on the wire.
    pub fn type_name(&self) -> &'static str {
        match self {
            Event::Requested(_) => "call.requested",
            Event::Responded { .. } => "call.responded",
            Event::Completed => "call.completed",
            Event::Aborted => "call.aborted",
            Event::Error(_) => "call.error",
        }
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

#[derive(Deserialize)]
struct Incoming {
    #[serde(rename = "type")]
    kind: String,
    id: String,
    #[serde(default)]
    payload: Value,
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
        frame.extend_from_slice(&[0; 4]);
        self.write_json(&mut frame);
        let len = (frame.len() - 4) as u32;
        frame[..4].copy_from_slice(&len.to_be_bytes());
        frame
    }

    /// Parse one envelope from its JSON.
    pub fn decode(json: &[u8]) -> Result<Self, DecodeError> {
        let incoming: Incoming =
            serde_json::from_slice(json).map_err(|e| DecodeError::Malformed(e.to_string()))?;
        let Incoming { kind, id, payload } = incoming;
        let invalid = |reason: serde_json::Error| DecodeError::InvalidPayload {
            id: id.clone(),
            kind: kind.clone(),
            reason: reason.to_string(),
        };
        let event = match kind.as_str() {
            "call.requested" => Event::Requested(serde_json::from_value(payload).map_err(invalid)?),
            "call.responded" => Event::Responded {
                output: serde_json::from_value::<OutputIn>(payload)
                    .map_err(invalid)?
                    .output,
            },
            "call.completed" => Event::Completed,
            "call.aborted" => Event::Aborted,
            "call.error" => Event::Error(serde_json::from_value(payload).map_err(invalid)?),
            _ => return Err(DecodeError::UnknownType { id, kind }),
        };
        Ok(EventEnvelope { id, event })
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
    /// The stream ended inside a frame.
    Truncated,
    /// The stream failed (reset, connection lost).
    Io(io::Error),
}

impl FrameError {
    /// The `call.error` this becomes: `RESOURCE_EXHAUSTED` (not retryable) for a frame over
    /// the limit, `INVALID_INPUT` for a truncated one, `UNAVAILABLE` for a failed stream.
    pub fn to_call_error(&self) -> CallError {
        match self {
            FrameError::TooLarge { .. } => CallError::resource_exhausted(self.to_string()),
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
            FrameError::Truncated => write!(f, "the stream ended in the middle of a frame"),
            FrameError::Io(err) => write!(f, "the connection to the peer failed: {err}"),
        }
    }
}

impl std::error::Error for FrameError {}

/// Reads frames from one stream. Each read asks for as much as the stream has ready, so a
/// small frame usually takes one read, and the stream's end arriving with it is seen
/// at once (on QUIC, that spares the peer a STOP_SENDING); what a read brings beyond the
/// current frame is kept for the next.
pub struct FrameReader<R> {
    reader: R,
    max: usize,
    /// `buf[start..end]` is read and not yet returned.
    buf: Vec<u8>,
    start: usize,
    end: usize,
    /// Read nothing beyond the current frame (for [`read_frame`]).
    exact: bool,
}

/// How much a [`FrameReader`] asks for at least: room for a typical event and the
/// stream's end.
const READ_AHEAD: usize = 1024;

impl<R: AsyncRead + Unpin> FrameReader<R> {
    /// Frames of at most `max` bytes from `reader`.
    pub fn new(reader: R, max: usize) -> Self {
        FrameReader {
            reader,
            max,
            buf: Vec::new(),
            start: 0,
            end: 0,
            exact: false,
        }
    }

    /// The stream it reads.
    pub fn get_mut(&mut self) -> &mut R {
        &mut self.reader
    }

    /// The next frame's JSON. `Ok(None)`: the stream ended cleanly between frames. The
    /// length is checked against the limit before anything is allocated for the frame.
    pub async fn next(&mut self) -> Result<Option<&[u8]>, FrameError> {
        if !self.fill(4).await? {
            return if self.start == self.end {
                Ok(None)
            } else {
                Err(FrameError::Truncated)
            };
        }
        let prefix = &self.buf[self.start..self.start + 4];
        let len = u32::from_be_bytes([prefix[0], prefix[1], prefix[2], prefix[3]]);
        if len as usize > self.max {
            return Err(FrameError::TooLarge { len, max: self.max });
        }
        let frame_end = self.start + 4 + len as usize;
        if !self.fill(4 + len as usize).await? {
            return Err(FrameError::Truncated);
        }
        let frame = self.start + 4..frame_end;
        self.start = frame_end;
        Ok(Some(&self.buf[frame]))
    }

    /// Have at least `wanted` unread bytes; `false` if the stream ended first.
    async fn fill(&mut self, wanted: usize) -> Result<bool, FrameError> {
        while self.end - self.start < wanted {
            if self.buf.len() < self.start + wanted {
                self.buf.copy_within(self.start..self.end, 0);
                self.end -= self.start;
                self.start = 0;
                let size = if self.exact {
                    wanted
                } else {
                    wanted.max(READ_AHEAD)
                };
                self.buf.resize(size.max(self.buf.len()), 0);
            }
            let limit = if self.exact {
                self.start + wanted
            } else {
                self.buf.len()
            };
            match self.reader.read(&mut self.buf[self.end..limit]).await {
                Ok(0) => return Ok(false),
                Ok(read) => self.end += read,
                Err(err) => return Err(FrameError::Io(err)),
            }
        }
        Ok(true)
    }
}

/// Read one frame's JSON, and nothing of the stream beyond it. `Ok(None)`: the stream
/// ended cleanly between frames. The length is checked against `max` before anything is
/// allocated.
pub async fn read_frame<R: AsyncRead + Unpin>(
    reader: &mut R,
    max: usize,
) -> Result<Option<Vec<u8>>, FrameError> {
    let mut frames = FrameReader::new(reader, max);
    frames.exact = true;
    Ok(frames.next().await?.map(<[u8]>::to_vec))
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
    fn the_documented_request_is_byte_exact() {
        let event = EventEnvelope::new(
            "1",
            Event::Requested(CallRequested {
                operation_id: "/echo/say".into(),
                input: json!({"text": "hi"}),
                auth_token: None,
                forwarded_for: None,
                deadline: Some(30000),
            }),
        );
        let frame = event.to_frame();
        let json = r#"{"type":"call.requested","id":"1","payload":{"operationId":"/echo/say","input":{"text":"hi"},"deadline":30000}}"#;
        assert_eq!(&frame[4..], json.as_bytes());
        assert_eq!(&frame[..4], &(json.len() as u32).to_be_bytes());
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
            assert_eq!(&EventEnvelope::decode(frame).unwrap(), event);
        }
        assert!(frames.next().await.unwrap().is_none());

        // `read_frame` takes one frame and leaves the next in the stream.
        let mut stream: &[u8] = &bytes;
        let frame = read_frame(&mut stream, DEFAULT_MAX_FRAME_SIZE)
            .await
            .unwrap();
        assert_eq!(EventEnvelope::decode(&frame.unwrap()).unwrap(), events[0]);
        let first_frame = events[0].to_frame();
        assert_eq!(stream, &bytes[first_frame.len()..]);
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

    #[tokio::test]
    async fn frames_over_the_limit_are_refused_before_allocating() {
        let mut bytes: &[u8] = &[0xff, 0xff, 0xff, 0xff];
        match read_frame(&mut bytes, DEFAULT_MAX_FRAME_SIZE).await {
            Err(FrameError::TooLarge { len, .. }) => assert_eq!(len, u32::MAX),
            other => panic!("{other:?}"),
        }
        let mut truncated: &[u8] = &[0, 0, 0, 5, b'{'];
        assert!(matches!(
            read_frame(&mut truncated, 100).await,
            Err(FrameError::Truncated)
        ));
        let mut empty: &[u8] = &[];
        assert!(matches!(read_frame(&mut empty, 100).await, Ok(None)));
    }
}
