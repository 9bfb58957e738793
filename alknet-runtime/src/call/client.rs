//! Calling a peer: [`Connection`], one QUIC stream per call.

use std::sync::Arc;
use std::time::Duration;

use futures::stream::{self, BoxStream};
use futures::{FutureExt, StreamExt};
use serde_json::Value;
use tokio::time::Instant;

use super::budget::Budget;
use super::quic::EndpointShared;
use super::server::CallServer;
use super::wire::{CallRequested, Event, EventEnvelope, FrameReader};
use crate::quic::Turns;
use crate::{CallError, RequestId};

/// A call-protocol connection to a peer node, for calling it — and, with
/// [`Connection::serve`], for being called by it on the same connection.
///
/// Cheap to clone. Calls run concurrently, each on its own QUIC stream. When the
/// connection is lost every call in flight fails at once with `UNAVAILABLE`.
#[derive(Clone)]
pub struct Connection {
    pub(crate) quic: noq::Connection,
    /// The endpoint's limits and budgets.
    pub(crate) endpoint: Arc<EndpointShared>,
    /// Frames in transit on this connection, both ways.
    pub(crate) budget: Budget,
    pub(crate) peer_fingerprint: Arc<str>,
    /// Calls take turns to open their stream and send their request.
    pub(crate) turns: Arc<Turns>,
}

/// Per-call options: deadline, a token for the callee, who the call is made for, which
/// call it is and on whose behalf.
///
/// ```
/// use std::time::Duration;
/// use alknet_runtime::RequestId;
/// use alknet_runtime::call::CallOptions;
///
/// let options = CallOptions::new().timeout(Duration::from_secs(2)).auth_token("alk_…");
/// let traced = CallOptions::new().request_id(RequestId::next());
/// ```
#[derive(Debug, Clone, Default)]
pub struct CallOptions {
    timeout: Option<Duration>,
    auth_token: Option<String>,
    forwarded_for: Option<String>,
    request_id: Option<RequestId>,
    parent_request_id: Option<RequestId>,
}

impl CallOptions {
    /// The connection's defaults.
    pub fn new() -> Self {
        Self::default()
    }

    /// Give up after `timeout` (sent to the callee as `deadline`); queries and mutations
    /// default to the connection's [`CallConfig::default_timeout`](super::CallConfig::default_timeout), subscriptions to none.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Identify the caller of this call with a token instead of the connection's key.
    pub fn auth_token(mut self, token: impl Into<String>) -> Self {
        self.auth_token = Some(token.into());
        self
    }

    /// Who the call is made on behalf of (audit only).
    pub fn forwarded_for(mut self, who: impl Into<String>) -> Self {
        self.forwarded_for = Some(who.into());
        self
    }

    /// The caller's id for this call (sent as `request_id`): a callee that believes it
    /// (as it believes `forwarded_for`, from a cluster node) runs the call under it, so
    /// both nodes' logs name the call alike.
    pub fn request_id(mut self, id: RequestId) -> Self {
        self.request_id = Some(id);
        self
    }

    /// The id of the call on whose behalf this one is made (sent as `parent_request_id`),
    /// believed as [`request_id`](Self::request_id) is.
    pub fn parent_request_id(mut self, id: RequestId) -> Self {
        self.parent_request_id = Some(id);
        self
    }
}

impl Connection {
    /// The fingerprint (`ed25519:…`) of the key the peer proved it holds.
    pub fn peer_fingerprint(&self) -> &str {
        &self.peer_fingerprint
    }

    /// The underlying QUIC connection, for what this API does not cover.
    pub fn quic(&self) -> &noq::Connection {
        &self.quic
    }

    /// Serve `server` to the peer on this connection: the peer may call this node while
    /// this node calls it. Ends when the connection closes.
    pub fn serve(&self, server: CallServer) -> tokio::task::JoinHandle<()> {
        let connection = self.clone();
        tokio::spawn(super::quic::serve_connection(connection, server))
    }

    /// Close the connection; calls in flight on both sides fail with `UNAVAILABLE`.
    pub fn close(&self) {
        self.quic.close(0u32.into(), b"closed");
    }

    /// Call a query or mutation: `operation_id` is `/namespace/operation`.
    pub async fn call(&self, operation_id: &str, input: Value) -> Result<Value, CallError> {
        self.call_with(operation_id, input, &CallOptions::new())
            .await
    }

    /// [`Connection::call`] with options. Dropping the future aborts the call: the peer is
    /// told (STOP_SENDING on the call's stream) and cancels it.
    pub async fn call_with(
        &self,
        operation_id: &str,
        input: Value,
        options: &CallOptions,
    ) -> Result<Value, CallError> {
        let timeout = options
            .timeout
            .unwrap_or(self.endpoint.config.default_timeout);
        let deadline = Instant::now() + timeout;
        let call = async {
            let mut call = self
                .start(operation_id, input, options, Some(timeout))
                .await?;
            let outcome = match call.next_event().await? {
                Event::Responded { output } => Ok(output),
                Event::Error(err) => Err(err),
                other => Err(call.violation(&other, "`call.responded` or `call.error`")),
            };
            call.done();
            outcome
        };
        tokio::time::timeout_at(deadline, call)
            .await
            .unwrap_or_else(|_| {
                Err(CallError::timeout(format!(
                    "`{operation_id}` did not answer within {} ms",
                    timeout.as_millis()
                )))
            })
    }

    /// Subscribe: items arrive as the peer sends them; the stream ends after
    /// `call.completed` or after its first error. Dropping it aborts the subscription.
    pub async fn subscribe_with(
        &self,
        operation_id: &str,
        input: Value,
        options: &CallOptions,
    ) -> BoxStream<'static, Result<Value, CallError>> {
        let timeout = options.timeout;
        let deadline = timeout.map(|t| Instant::now() + t);
        let call = self.start(operation_id, input, options, timeout);
        let call = match deadline {
            Some(deadline) => tokio::time::timeout_at(deadline, call)
                .await
                .unwrap_or_else(|_| Err(deadline_passed(operation_id))),
            None => call.await,
        };
        let call = match call {
            Ok(call) => call,
            Err(err) => return stream::once(async { Err(err) }).boxed(),
        };
        let operation_id: Arc<str> = operation_id.into();
        stream::unfold(Some(call), move |call| {
            let operation_id = operation_id.clone();
            async move {
                let mut call = call?;
                let event = match deadline {
                    Some(deadline) => tokio::time::timeout_at(deadline, call.next_event())
                        .await
                        .unwrap_or_else(|_| Err(deadline_passed(&operation_id))),
                    None => call.next_event().await,
                };
                match event {
                    Ok(Event::Responded { output }) => Some((Ok(output), Some(call))),
                    Ok(Event::Completed) => {
                        call.done();
                        None
                    }
                    Ok(Event::Error(err)) => {
                        call.done();
                        Some((Err(err), None))
                    }
                    Ok(other) => {
                        let err = call.violation(
                            &other,
                            "`call.responded`, `call.completed` or `call.error`",
                        );
                        Some((Err(err), None))
                    }
                    Err(err) => Some((Err(err), None)),
                }
            }
        })
        .boxed()
    }

    /// Open the call's stream, send `call.requested` and finish this side of the stream: the
    /// request, its end and the callee's answer are all the stream carries, and the callee
    /// never has to stop a side the caller left open. Aborting stops the callee's side.
    async fn start(
        &self,
        operation_id: &str,
        input: Value,
        options: &CallOptions,
        timeout: Option<Duration>,
    ) -> Result<ActiveCall, CallError> {
        let id = RequestId::next().to_string();
        let request = EventEnvelope::new(
            id.clone(),
            Event::Requested(CallRequested {
                operation_id: operation_id.to_string(),
                input,
                auth_token: options.auth_token.clone(),
                forwarded_for: options.forwarded_for.clone(),
                request_id: options.request_id,
                parent_request_id: options.parent_request_id,
                deadline: timeout.map(|t| t.as_millis() as u64),
            }),
        );
        let frame = request.to_frame();
        let mut turn = self.turns.take().await;
        let (mut send, recv) = self.quic.open_bi().await.map_err(|e| lost(&e))?;
        turn.write(send.write_all(&frame))
            .await
            .map_err(|e| lost(&e))?;
        // Dropping the send side finishes it.
        drop(send);
        drop(turn);
        Ok(ActiveCall {
            id,
            recv: FrameReader::charged(
                recv,
                self.endpoint.config.max_frame_size,
                self.endpoint.charge(&self.budget, true),
            )
            .read_timeout(self.endpoint.config.frame_read_timeout),
            finished: false,
        })
    }
}

/// One call in flight. Dropped before its last event, it aborts the call.
struct ActiveCall {
    id: String,
    recv: FrameReader<noq::RecvStream>,
    finished: bool,
}

impl ActiveCall {
    async fn next_event(&mut self) -> Result<Event, CallError> {
        let frame = match self.recv.next().await {
            Ok(Some(frame)) => frame,
            Ok(None) => {
                return Err(CallError::unavailable(
                    "the peer ended the call's stream without answering",
                ));
            }
            Err(err) => return Err(err.to_call_error()),
        };
        let envelope = EventEnvelope::decode(&frame).map_err(|err| {
            CallError::internal(format!(
                "the peer sent an event this node cannot read: {err}"
            ))
        })?;
        // An empty id answers a request whose id the callee could not read; the stream
        // says which call it is.
        if envelope.id != self.id && !envelope.id.is_empty() {
            return Err(CallError::internal(format!(
                "the peer answered call `{}` with an event of call `{}`",
                self.id, envelope.id
            )));
        }
        Ok(envelope.event)
    }

    fn violation(&self, event: &Event, expected: &str) -> CallError {
        CallError::internal(format!(
            "the peer answered with `{}` where {expected} was expected",
            event.type_name()
        ))
    }

    /// The callee sent its last event: nothing to abort. If its end of the stream came
    /// after that event, taking it now (without waiting) spares the callee a STOP_SENDING.
    fn done(&mut self) {
        self.finished = true;
        let _ = self.recv.next().now_or_never();
    }
}

impl Drop for ActiveCall {
    fn drop(&mut self) {
        if !self.finished {
            // STOP_SENDING: the callee cancels the call.
            let _ = self.recv.get_mut().stop(ABORTED);
        }
    }
}

/// The STOP_SENDING code of an aborted call.
const ABORTED: noq::VarInt = noq::VarInt::from_u32(0);

fn lost(err: &dyn std::fmt::Display) -> CallError {
    CallError::unavailable(format!("the connection to the peer is lost: {err}"))
}

fn deadline_passed(operation_id: &str) -> CallError {
    CallError::timeout(format!(
        "`{operation_id}` did not finish before its deadline"
    ))
}
