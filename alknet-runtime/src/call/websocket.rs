//! The call protocol over WebSocket: the same envelopes, one text message each, many calls
//! multiplexed by `id` on one socket. The same [`CallServer`] code serves them.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade, close_code};
use axum::extract::{ConnectInfo, State};
use axum::http::header::AUTHORIZATION;
use axum::http::{Extensions, HeaderMap};
use axum::response::Response;
use axum::routing::get;
use tokio::sync::mpsc;
use tokio::task::AbortHandle;

use super::server::{CallServer, EventSink, Peer};
use super::wire::{Event, EventEnvelope, FrameError};
use crate::{CallError, Credential};

/// An axum router serving the call protocol at `GET /call` (a WebSocket upgrade).
///
/// Callers authenticate with `Authorization: Bearer <token>` on the upgrade request, or
/// per call with `auth_token`. Serve it with
/// `into_make_service_with_connect_info::<SocketAddr>()` so the node's rate limits per IP
/// address see the client's address. A message larger than the server's frame limit is
/// refused with `call.error` (`RESOURCE_EXHAUSTED`, with the message's `id`) and the socket
/// carries on; one over twice the limit is not read to its end: the socket closes (code 1009).
///
/// ```
/// use std::sync::Arc;
/// use alknet_runtime::{OperationEnv, StaticIdentities};
/// use alknet_runtime::call::{CallServer, websocket_router};
///
/// let server = CallServer::new(OperationEnv::builder().build().unwrap(), Arc::new(StaticIdentities::new()));
/// let app: axum::Router = websocket_router(server);
/// ```
pub fn router(server: CallServer) -> Router {
    Router::new()
        .route("/call", get(upgrade))
        .with_state(server)
}

async fn upgrade(
    State(server): State<CallServer>,
    headers: HeaderMap,
    extensions: Extensions,
    ws: WebSocketUpgrade,
) -> Response {
    // Present when the router is served with
    // `into_make_service_with_connect_info::<SocketAddr>()`, as the node serves it.
    let address = extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| addr.ip().to_canonical());
    let token = headers
        .get(AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
        .map(str::to_string);
    let peer = server
        .resolve_peer(token.as_deref().map(Credential::bearer), address)
        .await;
    // Up to twice the limit a message is read, so that its refusal can name its call. The
    // socket's reads are sized once: a per-call `auth_token` raises the limit a message is
    // refused at, not what the socket reads.
    let read_at_most = server
        .frame_limit(peer.is_authenticated())
        .saturating_mul(2);
    ws.max_message_size(read_at_most)
        .max_frame_size(read_at_most)
        .on_upgrade(move |socket| serve_socket(socket, server, peer))
}

struct ChannelSink(mpsc::Sender<EventEnvelope>);

impl EventSink for ChannelSink {
    async fn send(&mut self, event: EventEnvelope) -> std::io::Result<()> {
        self.0
            .send(event)
            .await
            .map_err(|_| std::io::Error::from(std::io::ErrorKind::BrokenPipe))
    }
}

/// The calls in flight on one socket, by id; each entry's generation tells a finished
/// call from a later one that reused its id.
struct Running {
    calls: HashMap<String, (u64, AbortHandle)>,
    generation: u64,
}

async fn serve_socket(mut socket: WebSocket, server: CallServer, peer: Peer) {
    let peer = Arc::new(peer);
    let (events, mut outgoing) = mpsc::channel::<EventEnvelope>(256);
    let (finished, mut finished_ids) = mpsc::unbounded_channel::<(String, u64)>();
    let mut running = Running {
        calls: HashMap::new(),
        generation: 0,
    };
    loop {
        let reply = tokio::select! {
            Some(event) = outgoing.recv() => Some(event),
            Some((id, generation)) = finished_ids.recv() => {
                if running.calls.get(&id).is_some_and(|(g, _)| *g == generation) {
                    running.calls.remove(&id);
                }
                None
            }
            message = socket.recv() => match message {
                Some(Ok(Message::Text(text))) if text.len() > server.frame_limit(peer.is_authenticated()) => {
                    let too_large = FrameError::TooLarge {
                        len: u32::try_from(text.len()).unwrap_or(u32::MAX),
                        max: server.frame_limit(peer.is_authenticated()),
                    };
                    Some(EventEnvelope::new(oversized_id(text.as_bytes()), Event::Error(too_large.to_call_error())))
                }
                Some(Ok(Message::Text(text))) => {
                    match EventEnvelope::decode(text.as_bytes()) {
                        Ok(EventEnvelope { id, event: Event::Requested(request) }) => {
                            if running.calls.contains_key(&id) {
                                Some(EventEnvelope::new(id.clone(), Event::Error(CallError::invalid_input(format!(
                                    "a call with the id `{id}` is already in flight on this socket"
                                )))))
                            } else {
                                running.generation += 1;
                                let generation = running.generation;
                                let (server, peer, finished) = (server.clone(), peer.clone(), finished.clone());
                                let mut sink = ChannelSink(events.clone());
                                let call_id = id.clone();
                                let task = tokio::spawn(async move {
                                    server.run_call(&peer, &call_id, request, &mut sink).await;
                                    let _ = finished.send((call_id, generation));
                                });
                                running.calls.insert(id, (generation, task.abort_handle()));
                                None
                            }
                        }
                        Ok(EventEnvelope { id, event: Event::Aborted }) => {
                            if let Some((_, task)) = running.calls.remove(&id) {
                                task.abort();
                            }
                            None
                        }
                        Ok(EventEnvelope { id, event }) => Some(EventEnvelope::new(id, Event::Error(CallError::invalid_input(format!(
                            "a caller sends only `call.requested` and `call.aborted`, not `{}`",
                            event.type_name()
                        ))))),
                        Err(err) => Some(EventEnvelope::new(err.id().unwrap_or_default(), Event::Error(err.to_call_error()))),
                    }
                }
                Some(Ok(Message::Binary(_))) => Some(EventEnvelope::new("", Event::Error(CallError::invalid_input(
                    "events are text messages; a binary message is not part of the call protocol",
                )))),
                Some(Ok(_)) => None,
                Some(Err(err)) => {
                    if let Some(close) = close_for(err) {
                        let _ = socket.send(Message::Close(Some(close))).await;
                    }
                    break;
                }
                None => break,
            },
        };
        if let Some(reply) = reply
            && socket
                .send(Message::Text(reply.to_json().into()))
                .await
                .is_err()
        {
            break;
        }
    }
    for (_, (_, task)) in running.calls {
        task.abort();
    }
}

/// The close frame a failed read deserves: 1009 for a message over what the socket reads
/// (the rest of it is not read, so the socket cannot carry on), none when the socket broke.
fn close_for(err: axum::Error) -> Option<CloseFrame> {
    let err = err.into_inner();
    match err.downcast_ref::<tungstenite::Error>()? {
        tungstenite::Error::Capacity(too_large) => Some(CloseFrame {
            code: close_code::SIZE,
            reason: format!(
                "{too_large}; the socket reads messages of at most twice the frame limit"
            )
            .into(),
        }),
        _ => None,
    }
}

/// The `id` of an envelope too large to decode, read without keeping its payload, so the
/// refusal reaches the call it belongs to; `""` if it has none.
fn oversized_id(json: &[u8]) -> String {
    #[derive(serde::Deserialize)]
    struct IdOnly {
        id: String,
    }
    serde_json::from_slice::<IdOnly>(json)
        .map(|envelope| envelope.id)
        .unwrap_or_default()
}
