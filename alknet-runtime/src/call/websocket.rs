//! The call protocol over WebSocket: the same envelopes, one text message each, many calls
//! multiplexed by `id` on one socket. The same [`CallServer`] code serves them.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::header::{
    AUTHORIZATION, CONNECTION, CONTENT_TYPE, HOST, ORIGIN, SEC_WEBSOCKET_ACCEPT, SEC_WEBSOCKET_KEY,
    SEC_WEBSOCKET_VERSION, UPGRADE,
};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use futures::{SinkExt, StreamExt};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio::task::AbortHandle;
use tokio::time::{Instant, Sleep};
use tokio_tungstenite::WebSocketStream;
use tungstenite::Message;
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};

use super::quic::CallConfig;
use super::server::{CallServer, EventSink, Peer};
use super::wire::{Event, EventEnvelope, FrameError};
use crate::config::CallSettings;
use crate::listener::{ConnectionLimits, ConnectionSlot};
use crate::{CallError, RequestId};

/// What the WebSocket listener allows: its connections, and the pages a browser may open a
/// socket from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebSocketLimits {
    /// The upgrade request's header timeout and the caps on connections; an upgraded
    /// connection counts until its socket closes. By default those of the QUIC endpoint
    /// ([`CallConfig::handshake_timeout`], [`CallConfig::max_connections`],
    /// [`CallConfig::max_connections_per_address`]).
    pub connections: ConnectionLimits,
    /// The `Origin`s (`scheme://host[:port]`, `"*"` for any) a browser may upgrade from;
    /// others are refused with `403` before the upgrade. `None`: only pages of the host the
    /// socket is reached at (`Origin`'s host and port are the request's `Host`). An upgrade
    /// without `Origin` comes from no browser page and is accepted either way.
    pub allowed_origins: Option<Vec<String>>,
}

impl Default for WebSocketLimits {
    fn default() -> Self {
        WebSocketLimits::from_config(&CallConfig::default(), None)
    }
}

impl WebSocketLimits {
    /// The limits a node's `[call]` settings give: each setting present, the default for
    /// each one absent.
    pub fn from_settings(settings: &CallSettings) -> Self {
        WebSocketLimits::from_config(
            &CallConfig::from_settings(settings),
            settings.websocket_allowed_origins.clone(),
        )
    }

    /// The QUIC endpoint's limits for the WebSocket listener too: its handshake timeout for
    /// the upgrade request's headers, its caps on connections.
    pub fn from_config(config: &CallConfig, allowed_origins: Option<Vec<String>>) -> Self {
        WebSocketLimits {
            connections: ConnectionLimits {
                header_read_timeout: config.handshake_timeout,
                max_connections: config.max_connections,
                max_connections_per_address: config.max_connections_per_address,
            },
            allowed_origins,
        }
    }
}

/// The call protocol at `GET /call`, a WebSocket upgrade, for browsers and any WebSocket
/// client.
///
/// Callers authenticate with `Authorization: Bearer <token>` on the upgrade request (a
/// refused token is `401` before the upgrade), per call with `auth_token`, or not at all:
/// anonymous callers reach open operations. A message larger than the server's frame limit
/// is refused with `call.error` (`RESOURCE_EXHAUSTED`, with the message's `id`) and the
/// socket carries on; one over twice the limit is not read to its end: the socket closes
/// (code 1009). A message not whole within the server's frame read timeout of its first
/// byte closes the socket (code 1008) after a `call.error` (`TIMEOUT`).
///
/// ```no_run
/// use std::sync::Arc;
/// use alknet_runtime::{OperationEnv, StaticIdentities};
/// use alknet_runtime::call::{CallServer, WebSocketAdapter, WebSocketLimits};
///
/// # async fn demo() -> std::io::Result<()> {
/// let server = CallServer::new(OperationEnv::builder().build().unwrap(), Arc::new(StaticIdentities::new()));
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:4480").await?;
/// let limits = WebSocketLimits {
///     allowed_origins: Some(vec!["https://app.example".into()]),
///     ..WebSocketLimits::default()
/// };
/// WebSocketAdapter::new(server).limits(limits).serve(listener).await
/// # }
/// ```
#[derive(Clone)]
pub struct WebSocketAdapter {
    server: CallServer,
    limits: WebSocketLimits,
}

struct Shared {
    server: CallServer,
    allowed_origins: Option<Vec<String>>,
}

impl WebSocketAdapter {
    /// Serve `server` with the default limits.
    pub fn new(server: CallServer) -> Self {
        WebSocketAdapter {
            server,
            limits: WebSocketLimits::default(),
        }
    }

    /// Replace the limits.
    pub fn limits(mut self, limits: WebSocketLimits) -> Self {
        self.limits = limits;
        self
    }

    /// The axum router, `GET /call`. Served by [`WebSocketAdapter::serve`] it also gets the
    /// connection limits and the header timeout, which only the server can enforce; served
    /// otherwise (`axum::serve`), it needs connections with upgrades and
    /// `into_make_service_with_connect_info::<SocketAddr>()` for the limits per address.
    pub fn router(self) -> Router {
        Router::new()
            .route("/call", get(upgrade))
            .with_state(Arc::new(Shared {
                server: self.server,
                allowed_origins: self.limits.allowed_origins,
            }))
    }

    /// Serve on `listener` until the process ends.
    pub async fn serve(self, listener: TcpListener) -> io::Result<()> {
        self.serve_with_shutdown(listener, std::future::pending())
            .await
    }

    /// Serve on `listener` until `shutdown` completes; then accept no more connections.
    /// Open sockets carry on until their clients close them.
    pub async fn serve_with_shutdown(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()>,
    ) -> io::Result<()> {
        let connections = self.limits.connections.clone();
        crate::listener::serve(listener, self.router(), &connections, shutdown).await
    }
}

async fn upgrade(State(shared): State<Arc<Shared>>, mut request: Request) -> Response {
    let headers = request.headers();
    let Some(key) = handshake_key(headers) else {
        let err = CallError::invalid_input(
            "`/call` is a WebSocket: send `Connection: Upgrade`, `Upgrade: websocket`, `Sec-WebSocket-Version: 13` and a `Sec-WebSocket-Key`",
        );
        let mut response = refuse(StatusCode::UPGRADE_REQUIRED, &err);
        response
            .headers_mut()
            .insert(SEC_WEBSOCKET_VERSION, HeaderValue::from_static("13"));
        return response;
    };
    if let Err(err) = check_origin(headers, shared.allowed_origins.as_deref()) {
        return refuse(StatusCode::FORBIDDEN, &err);
    }
    let server = shared.server.clone();
    let address = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| addr.ip().to_canonical());
    let token = headers
        .get(AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "));
    let peer = match server.bearer_peer(token, address).await {
        Ok(peer) => peer,
        Err(err) => return refuse(StatusCode::UNAUTHORIZED, &err),
    };
    let Some(on_upgrade) = request
        .extensions_mut()
        .remove::<hyper::upgrade::OnUpgrade>()
    else {
        let err = CallError::internal(
            "this connection cannot be upgraded: serve the router with `WebSocketAdapter::serve`",
        );
        return refuse(StatusCode::INTERNAL_SERVER_ERROR, &err);
    };
    // Held while the socket lives: an upgraded connection counts against the caps.
    let slot = request.extensions_mut().remove::<ConnectionSlot>();
    // Up to twice the limit a message is read, so that its refusal can name its call. The
    // socket's reads are sized once: a per-call `auth_token` raises the limit a message is
    // refused at, not what the socket reads.
    let read_at_most = server
        .frame_limit(peer.is_authenticated())
        .saturating_mul(2);
    let config = WebSocketConfig::default()
        .max_message_size(Some(read_at_most))
        .max_frame_size(Some(read_at_most));
    tokio::spawn(async move {
        let upgraded = match on_upgrade.await {
            Ok(upgraded) => upgraded,
            Err(err) => {
                tracing::debug!(%err, "a WebSocket upgrade failed");
                return;
            }
        };
        let clocked = MessageClock::new(TokioIo::new(upgraded), server.read_timeout());
        let socket = WebSocketStream::from_raw_socket(clocked, Role::Server, Some(config)).await;
        serve_socket(socket, server, peer).await;
        drop(slot);
    });
    Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header(CONNECTION, "upgrade")
        .header(UPGRADE, "websocket")
        .header(SEC_WEBSOCKET_ACCEPT, key)
        .body(Body::empty())
        .unwrap_or_default()
}

/// The `Sec-WebSocket-Accept` of a well-formed upgrade request (RFC 6455 §4.2.1), or
/// `None` if it is not one.
fn handshake_key(headers: &HeaderMap) -> Option<String> {
    let has = |name, token: &str| {
        headers.get_all(name).iter().any(|value| {
            value.to_str().is_ok_and(|value| {
                value
                    .split(',')
                    .any(|part| part.trim().eq_ignore_ascii_case(token))
            })
        })
    };
    let upgrade = has(CONNECTION, "upgrade") && has(UPGRADE, "websocket");
    let version = headers
        .get(SEC_WEBSOCKET_VERSION)
        .map(HeaderValue::as_bytes)
        == Some(b"13");
    let key = headers.get(SEC_WEBSOCKET_KEY)?;
    (upgrade && version).then(|| tungstenite::handshake::derive_accept_key(key.as_bytes()))
}

/// Whether a browser page may open a socket: an upgrade without `Origin` is no page's; one
/// with it must be allowed (`allowed`, or else the request's own host).
fn check_origin(headers: &HeaderMap, allowed: Option<&[String]>) -> Result<(), CallError> {
    let Some(origin) = headers.get(ORIGIN) else {
        return Ok(());
    };
    let origin = origin.to_str().unwrap_or_default();
    let accepted = match allowed {
        Some(allowed) => allowed
            .iter()
            .any(|entry| entry == "*" || entry.trim_end_matches('/').eq_ignore_ascii_case(origin)),
        None => {
            let host = headers.get(HOST).and_then(|host| host.to_str().ok());
            let origin_host = origin.split_once("://").map(|(_, authority)| authority);
            host.zip(origin_host)
                .is_some_and(|(host, origin_host)| host.eq_ignore_ascii_case(origin_host))
        }
    };
    if accepted {
        return Ok(());
    }
    let advice = match allowed {
        Some(_) => "it is not in `[call] websocket_allowed_origins`",
        None => {
            "only pages of this host may, unless `[call] websocket_allowed_origins` lists others"
        }
    };
    Err(CallError::forbidden(format!(
        "a page from the origin `{origin}` may not open a WebSocket here: {advice}"
    )))
}

/// An error before the upgrade, with the error body HTTP answers with.
fn refuse(status: StatusCode, err: &CallError) -> Response {
    let body = crate::adapters::error_body(err, RequestId::next()).to_string();
    (
        status,
        [(CONTENT_TYPE, HeaderValue::from_static("application/json"))],
        body,
    )
        .into_response()
}

/// Watches what a client sends for where its WebSocket messages begin and end, and fails
/// the read once a message has been arriving for longer than the read timeout: a message
/// that trickles in, or stops half-sent, does not hold its buffer for ever. Between
/// messages a socket may be quiet as long as it likes.
struct MessageClock<S> {
    inner: S,
    timeout: Duration,
    frames: FrameBounds,
    /// Runs while a message is arriving, to its deadline.
    timer: Option<Pin<Box<Sleep>>>,
}

impl<S> MessageClock<S> {
    fn new(inner: S, timeout: Duration) -> Self {
        MessageClock {
            inner,
            timeout,
            frames: FrameBounds::default(),
            timer: None,
        }
    }

    /// The read's outcome once `now` is past the deadline of the message arriving.
    fn overdue(&mut self, cx: &mut Context<'_>, now: Option<Instant>) -> Option<io::Error> {
        let Some(since) = self.frames.message_since else {
            self.timer = None;
            return None;
        };
        let deadline = since + self.timeout;
        let late = match now {
            Some(now) => now >= deadline,
            None => {
                let timer = self
                    .timer
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
                if timer.deadline() != deadline {
                    timer.as_mut().reset(deadline);
                }
                timer.as_mut().poll(cx).is_ready()
            }
        };
        late.then(|| {
            io::Error::new(
                io::ErrorKind::TimedOut,
                FrameError::TimedOut {
                    timeout: self.timeout,
                },
            )
        })
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for MessageClock<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                let now = Instant::now();
                this.frames.feed(&buf.filled()[before..], now);
                match this.overdue(cx, Some(now)) {
                    Some(err) => Poll::Ready(Err(err)),
                    None => Poll::Ready(Ok(())),
                }
            }
            Poll::Ready(Err(err)) => Poll::Ready(Err(err)),
            Poll::Pending => match this.overdue(cx, None) {
                Some(err) => Poll::Ready(Err(err)),
                None => Poll::Pending,
            },
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for MessageClock<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// Where a client's bytes are among its WebSocket frames (RFC 6455 §5.2): only their
/// boundaries, read from each frame's header; tungstenite reads the frames themselves.
#[derive(Default)]
struct FrameBounds {
    /// The current frame's header so far (at most 14 bytes).
    header: [u8; 14],
    header_len: usize,
    /// The current frame's payload bytes still to come, once its header is whole.
    payload_left: Option<u64>,
    /// The current frame is the last of a message: a data frame with FIN, or a control
    /// frame outside a fragmented message.
    ends_message: bool,
    /// A data message has begun and its final frame has not.
    fragmented: bool,
    /// When the message arriving now began; `None` between messages.
    message_since: Option<Instant>,
}

impl FrameBounds {
    fn feed(&mut self, mut bytes: &[u8], now: Instant) {
        while let Some((&first, rest)) = bytes.split_first() {
            self.message_since.get_or_insert(now);
            match self.payload_left {
                None => {
                    self.header[self.header_len] = first;
                    self.header_len += 1;
                    bytes = rest;
                    if let Some(len) = self.payload_len() {
                        self.begin_payload(len);
                    }
                }
                Some(left) => {
                    let taken = left.min(bytes.len() as u64);
                    bytes = &bytes[taken as usize..];
                    self.payload_left = Some(left - taken);
                }
            }
            if self.payload_left == Some(0) {
                self.payload_left = None;
                if self.ends_message {
                    self.message_since = None;
                }
            }
        }
    }

    /// The payload's length, once the header is whole.
    fn payload_len(&self) -> Option<u64> {
        let header = &self.header[..self.header_len];
        let second = *header.get(1)?;
        let (extended, short) = match second & 0x7f {
            126 => (2, 0),
            127 => (8, 0),
            len => (0, u64::from(len)),
        };
        let mask = if second & 0x80 != 0 { 4 } else { 0 };
        if header.len() < 2 + extended + mask {
            return None;
        }
        Some(
            header[2..2 + extended]
                .iter()
                .fold(short, |len, &byte| len << 8 | u64::from(byte)),
        )
    }

    fn begin_payload(&mut self, len: u64) {
        let fin = self.header[0] & 0x80 != 0;
        let control = self.header[0] & 0x08 != 0;
        self.ends_message = if control { !self.fragmented } else { fin };
        if !control {
            self.fragmented = !fin;
        }
        self.header_len = 0;
        self.payload_left = Some(len);
    }
}

struct ChannelSink(mpsc::Sender<EventEnvelope>);

/// Each event goes to the socket's writer as it comes: the channel is the queue.
impl EventSink for ChannelSink {
    async fn feed(&mut self, event: EventEnvelope) -> std::io::Result<()> {
        self.0
            .send(event)
            .await
            .map_err(|_| std::io::Error::from(std::io::ErrorKind::BrokenPipe))
    }

    async fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }

    fn wants_more(&self) -> bool {
        false
    }
}

/// The calls in flight on one socket, by id; each entry's generation tells a finished
/// call from a later one that reused its id.
struct Running {
    calls: HashMap<String, (u64, AbortHandle)>,
    generation: u64,
}

type Socket = WebSocketStream<MessageClock<TokioIo<hyper::upgrade::Upgraded>>>;

async fn serve_socket(mut socket: Socket, server: CallServer, peer: Peer) {
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
            message = socket.next() => match message {
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
                    let (error, close) = close_for(err);
                    if let Some(error) = error {
                        let _ = socket.send(Message::text(EventEnvelope::new("", Event::Error(error)).to_json())).await;
                    }
                    if let Some(close) = close {
                        let _ = socket.send(Message::Close(Some(close))).await;
                    }
                    break;
                }
                None => break,
            },
        };
        if let Some(reply) = reply
            && socket.send(Message::text(reply.to_json())).await.is_err()
        {
            break;
        }
    }
    for (_, (_, task)) in running.calls {
        task.abort();
    }
}

/// What a failed read deserves: 1009 for a message over what the socket reads (the rest of
/// it is not read, so the socket cannot carry on), a `call.error` (`TIMEOUT`) and 1008 for
/// a message that did not arrive in time, nothing when the socket broke.
fn close_for(err: tungstenite::Error) -> (Option<CallError>, Option<CloseFrame>) {
    match err {
        tungstenite::Error::Capacity(too_large) => (
            None,
            Some(CloseFrame {
                code: CloseCode::Size,
                reason: format!(
                    "{too_large}; the socket reads messages of at most twice the frame limit"
                )
                .into(),
            }),
        ),
        tungstenite::Error::Io(err) => {
            match err
                .get_ref()
                .and_then(|err| err.downcast_ref::<FrameError>())
            {
                Some(slow @ FrameError::TimedOut { .. }) => (
                    Some(slow.to_call_error()),
                    Some(CloseFrame {
                        code: CloseCode::Policy,
                        reason: slow.to_string().into(),
                    }),
                ),
                _ => (None, None),
            }
        }
        _ => (None, None),
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
