//! Subscriptions as Server-Sent Events.

use std::convert::Infallible;

use axum::http::HeaderValue;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::{FutureExt, StreamExt, stream};
use serde_json::Value;
use tokio::sync::OwnedSemaphorePermit;

use super::{REQUEST_ID, echo, response};
use crate::adapters::error_body;
use crate::{OperationEnv, OperationSpec};

/// Subscribe and stream the items: each as an event with the item's JSON as data; a failure
/// as an `error` event with the error body, after which the stream closes; the end as a
/// `completed` event (data `{"request_id": …}`), after which the stream closes. A client that disconnects drops the
/// subscription, which cancels its handler.
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
    permit: OwnedSemaphorePermit,
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
    // The permit goes with the stream: the subscription holds its slot while it streams.
    let items = items.map(move |item| {
        let _slot = &permit;
        item
    });
    let events = stream::unfold(Some(items.boxed()), move |items| async move {
        let mut items = items?;
        let (event, rest) = match items.next().await {
            Some(Ok(item)) => (Event::default().data(item.to_string()), Some(items)),
            Some(Err(err)) => {
                let body = error_body(&err, request_id).to_string();
                (Event::default().event("error").data(body), None)
            }
            // EventSource dispatches no event without data, so the end carries the id.
            None => {
                let data = serde_json::json!({ "request_id": request_id }).to_string();
                (Event::default().event("completed").data(data), None)
            }
        };
        Some((Ok::<_, Infallible>(event), rest))
    });
    let mut response = Sse::new(events)
        .keep_alive(KeepAlive::default())
        .into_response();
    response.headers_mut().insert(REQUEST_ID, echo);
    response
}
