//! Subscriptions as Server-Sent Events.

use std::convert::Infallible;
use std::time::Duration;

use axum::http::HeaderValue;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::{FutureExt, StreamExt, stream};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use super::{REQUEST_ID, echo, response};
use crate::adapters::error_body;
use crate::slots::Slot;
use crate::{CallError, OperationEnv, OperationSpec, RequestId};

/// What a subscription's stream holds and obeys while it is open.
pub(super) struct Streaming {
    /// Its subscription slot, freed when the stream ends.
    pub(super) slot: Slot,
    /// How long it may go without an item.
    pub(super) idle_timeout: Duration,
    /// Cancelled when the server shuts down.
    pub(super) stopping: CancellationToken,
}

/// The `id` of the event that ends a stream (`completed` or `error`). An `EventSource`
/// that reconnects after it sends it back as `Last-Event-ID`, and is answered `204`, which
/// tells it to stop rather than run the subscription again.
pub(super) const END_ID: &str = "end";

/// Subscribe and stream the items: each as an event with the item's JSON as data and its
/// number (from 1) as `id`; a failure as an `error` event with the error body, after which
/// the stream closes; the end as a `completed` event (data `{"request_id": …}`), after which
/// the stream closes; both carry the `id` [`END_ID`]. A client that disconnects drops the
/// subscription, which cancels its handler.
///
/// A subscription that sends no item for the idle timeout ends with an `error` event
/// (`TIMEOUT`, retryable: subscribe again), one open when the server shuts down with an
/// `error` event (`UNAVAILABLE`); either way its handler is cancelled and its slot freed.
/// Keep-alive comments do not count as items.
///
/// A failure found before the subscription started (unknown operation, access, input) is
/// answered like any failed call: its status and the error body, no stream.
pub(super) async fn subscribe(
    env: &OperationEnv,
    spec: Option<&OperationSpec>,
    namespace: &str,
    operation: &str,
    input: Value,
    client_id: Option<HeaderValue>,
    streaming: Streaming,
) -> Response {
    let mut subscription = env.subscribe(namespace, operation, input).await;
    let request_id = subscription.request_id();
    let echo = echo(client_id, request_id);
    // Such failures are the subscription's only item, ready at once.
    let items = match subscription.next().now_or_never() {
        Some(Some(Err(err))) => {
            return response::error(response::status_of(&err, spec), &err, request_id, echo);
        }
        Some(Some(Ok(first))) => stream::iter([Ok(first)]).chain(subscription).boxed(),
        Some(None) => stream::empty().boxed(),
        None => subscription.boxed(),
    };
    let Streaming {
        slot,
        idle_timeout,
        stopping,
    } = streaming;
    // The slot goes with the stream: the subscription holds it while it streams.
    let items = items.map(move |item| {
        let _slot = &slot;
        item
    });
    let events = stream::unfold(Some((items.boxed(), 0u64)), move |items| {
        let stopping = stopping.clone();
        async move {
            let (mut items, sent) = items?;
            let next = tokio::select! {
                next = tokio::time::timeout(idle_timeout, items.next()) => next,
                () = stopping.cancelled() => {
                    let err = CallError::unavailable("the node is shutting down; subscribe again to another node or later");
                    return Some((Ok(error_event(&err, request_id)), None));
                }
            };
            let (event, rest) = match next {
                Ok(Some(Ok(item))) => {
                    let number = sent + 1;
                    let event = Event::default()
                        .id(number.to_string())
                        .data(item.to_string());
                    (event, Some((items, number)))
                }
                Ok(Some(Err(err))) => (error_event(&err, request_id), None),
                // EventSource dispatches no event without data, so the end carries the id.
                Ok(None) => {
                    let data = serde_json::json!({ "request_id": request_id }).to_string();
                    let event = Event::default().event("completed").id(END_ID).data(data);
                    (event, None)
                }
                Err(_) => {
                    let err = CallError::timeout(format!(
                        "the subscription sent nothing for {} ms and was closed; subscribe again",
                        idle_timeout.as_millis()
                    ));
                    (error_event(&err, request_id), None)
                }
            };
            Some((Ok::<_, Infallible>(event), rest))
        }
    });
    let mut response = Sse::new(events)
        .keep_alive(KeepAlive::default())
        .into_response();
    response.headers_mut().insert(REQUEST_ID, echo);
    response
}

fn error_event(err: &CallError, request_id: RequestId) -> Event {
    Event::default()
        .event("error")
        .id(END_ID)
        .data(error_body(err, request_id).to_string())
}
