//! The call protocol over QUIC: the endpoint (ALPN `alknet/call/1`, the key-pinned TLS of
//! [`crate::quic`]) and the per-stream server loop.

use std::net::SocketAddr;
use std::num::{NonZeroU32, NonZeroU64, NonZeroUsize};
use std::pin::{Pin, pin};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::BytesMut;
use futures::FutureExt;

use super::budget::{Budget, Charge};
use super::client::Connection;
use super::server::{CallServer, EventSink, Peer};
use super::wire::{
    ALPN, DEFAULT_FRAME_READ_TIMEOUT, DEFAULT_MAX_FRAME_SIZE, Event, EventEnvelope, FrameError,
    FrameReader, write_frame,
};
use crate::CallError;
use crate::config::CallSettings;
use crate::quic::{
    NodeIdentity, PeerKey, QuicConfig, client_config, peer_fingerprint, server_endpoint,
};
use crate::slots::{SlotLimits, Slots};

/// Limits and timeouts of the call protocol over QUIC.
///
/// A vanished peer is detected within `idle_timeout + keep_alive` (QUIC restarts the idle
/// timer on the last keep-alive sent): 800 ms with the defaults, right for a cluster on
/// one network; raise both on lossy links.
///
/// A peer is *authenticated* once the identity provider knows its key, or once one of its
/// calls carried an `auth_token` that it accepted; until then it has the `unauthenticated_`
/// limits (and the [`CallServer`]'s smaller frame limit).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallConfig {
    /// The largest frame this node reads as a caller, from the peers it calls (default
    /// 16 MiB); what it reads as a callee is the [`CallServer`]'s limit.
    pub max_frame_size: usize,
    /// How long a query or mutation may take when the caller sets no timeout (30 s).
    pub default_timeout: Duration,
    /// How often an idle connection is pinged (200 ms).
    pub keep_alive: Duration,
    /// How long without a packet from the peer before the connection is declared lost (600 ms).
    pub idle_timeout: Duration,
    /// How long a connection's handshake may take, either way (500 ms): connecting to an
    /// address that never answers fails with `UNAVAILABLE` after it — so a call to a peer
    /// that is away fails within a second.
    pub handshake_timeout: Duration,
    /// How many calls an authenticated peer may have open on one connection at once (1024).
    pub max_concurrent_calls: u32,
    /// How many calls an unauthenticated peer may have open on one connection at once (16).
    pub unauthenticated_max_concurrent_calls: u32,
    /// The bytes of frames in transit (begun, not yet whole) one connection may hold, both
    /// ways (64 MiB); a frame that would need more fails with `RESOURCE_EXHAUSTED`
    /// (retryable).
    pub connection_buffer: usize,
    /// The bytes of frames in transit all authenticated peers' connections, and this node's
    /// own calls, may hold together (1 GiB).
    pub endpoint_buffer: usize,
    /// The bytes of frames in transit all unauthenticated peers' connections may hold
    /// together (64 MiB): they cannot take what authenticated peers need.
    pub unauthenticated_buffer: usize,
    /// How many peers' connections the endpoint accepts at once (4096); more are refused
    /// during their handshake.
    pub max_connections: usize,
    /// How many of those may come from one IP address (64).
    pub max_connections_per_address: usize,
    /// How long a peer's answer frame may take to arrive whole, from its first byte
    /// (10 s); what this node reads as a callee is the [`CallServer`]'s limit.
    pub frame_read_timeout: Duration,
}

impl CallConfig {
    /// The limits a node's `[call]` settings give: each setting present, the default for
    /// each one absent.
    pub fn from_settings(settings: &CallSettings) -> CallConfig {
        let defaults = CallConfig::default();
        let count =
            |setting: Option<NonZeroUsize>, default| setting.map_or(default, NonZeroUsize::get);
        let calls = |setting: Option<NonZeroU32>, default| setting.map_or(default, NonZeroU32::get);
        let millis = |setting: Option<NonZeroU64>, default| {
            setting.map_or(default, |ms| Duration::from_millis(ms.get()))
        };
        let idle_timeout = millis(settings.idle_timeout_ms, defaults.idle_timeout);
        CallConfig {
            max_frame_size: count(settings.max_frame_bytes, defaults.max_frame_size),
            max_concurrent_calls: calls(
                settings.max_concurrent_calls,
                defaults.max_concurrent_calls,
            ),
            unauthenticated_max_concurrent_calls: calls(
                settings.unauthenticated_max_concurrent_calls,
                defaults.unauthenticated_max_concurrent_calls,
            ),
            connection_buffer: count(settings.connection_buffer_bytes, defaults.connection_buffer),
            endpoint_buffer: count(settings.node_buffer_bytes, defaults.endpoint_buffer),
            unauthenticated_buffer: count(
                settings.unauthenticated_buffer_bytes,
                defaults.unauthenticated_buffer,
            ),
            max_connections: count(settings.max_connections, defaults.max_connections),
            max_connections_per_address: count(
                settings.max_connections_per_address,
                defaults.max_connections_per_address,
            ),
            handshake_timeout: millis(settings.handshake_timeout_ms, defaults.handshake_timeout),
            idle_timeout,
            keep_alive: settings
                .idle_timeout_ms
                .map_or(defaults.keep_alive, |_| idle_timeout / 3),
            frame_read_timeout: millis(settings.frame_read_timeout_ms, defaults.frame_read_timeout),
            ..defaults
        }
    }

    fn quic(&self) -> QuicConfig {
        QuicConfig {
            keep_alive: self.keep_alive,
            idle_timeout: self.idle_timeout,
            handshake_timeout: self.handshake_timeout,
            // Every connection starts unauthenticated; `serve_connection` raises it.
            max_concurrent_streams: self.unauthenticated_max_concurrent_calls,
        }
    }
}

impl Default for CallConfig {
    fn default() -> Self {
        CallConfig {
            max_frame_size: DEFAULT_MAX_FRAME_SIZE,
            default_timeout: Duration::from_secs(30),
            keep_alive: Duration::from_millis(200),
            idle_timeout: Duration::from_millis(600),
            handshake_timeout: Duration::from_millis(500),
            max_concurrent_calls: 1024,
            unauthenticated_max_concurrent_calls: 16,
            connection_buffer: 64 << 20,
            endpoint_buffer: 1 << 30,
            unauthenticated_buffer: 64 << 20,
            max_connections: 4096,
            max_connections_per_address: 64,
            frame_read_timeout: DEFAULT_FRAME_READ_TIMEOUT,
        }
    }
}

/// What the connections of one endpoint share: its limits, its budgets for frames in
/// transit, and the count of peers' connections.
pub(crate) struct EndpointShared {
    pub(crate) config: CallConfig,
    /// Frames in transit from authenticated peers, and answers to this node's own calls.
    authenticated: Budget,
    /// Frames in transit from unauthenticated peers.
    unauthenticated: Budget,
    /// One slot per peer's connection, in all and by address.
    connections: Slots,
}

impl EndpointShared {
    fn new(config: CallConfig) -> Self {
        EndpointShared {
            authenticated: Budget::new("the node", config.endpoint_buffer),
            unauthenticated: Budget::new(
                "the node's room for unauthenticated peers",
                config.unauthenticated_buffer,
            ),
            connections: Slots::new(
                "connections",
                SlotLimits {
                    total: config.max_connections,
                    per_identity: usize::MAX,
                    per_address: config.max_connections_per_address,
                },
            ),
            config,
        }
    }

    /// A reader's charge on a connection with budget `connection`: against the node's
    /// budget for authenticated peers or for the others.
    pub(crate) fn charge(&self, connection: &Budget, authenticated: bool) -> Charge {
        let endpoint = if authenticated {
            &self.authenticated
        } else {
            &self.unauthenticated
        };
        Charge::new(connection.clone(), endpoint.clone())
    }
}

/// A QUIC endpoint speaking the call protocol (ALPN `alknet/call/1`): it accepts peers'
/// connections and makes its own, with one node identity for both.
///
/// ```no_run
/// use std::sync::Arc;
/// use alknet_runtime::{OperationEnv, StaticIdentities};
/// use alknet_runtime::call::{CallConfig, CallEndpoint, CallServer, NodeIdentity, PeerKey};
///
/// # async fn demo(env: OperationEnv, peer: std::net::SocketAddr, peer_key: String) -> Result<(), alknet_runtime::CallError> {
/// let endpoint = CallEndpoint::bind("127.0.0.1:0".parse().unwrap(), &NodeIdentity::generate()?, CallConfig::default())?;
/// let server = CallServer::new(env, Arc::new(StaticIdentities::new()));
/// endpoint.serve(server.clone());                              // accept peers' calls
/// let worker = endpoint.connect(peer, PeerKey::Pinned(peer_key)).await?;
/// worker.serve(server);                                       // and let that peer call back
/// let out = worker.call("/echo/say", serde_json::json!({"text": "hi"})).await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct CallEndpoint {
    endpoint: noq::Endpoint,
    identity: NodeIdentity,
    shared: Arc<EndpointShared>,
}

impl CallEndpoint {
    /// Bind `addr` (port 0 picks one), serving and calling as `identity`.
    pub fn bind(
        addr: SocketAddr,
        identity: &NodeIdentity,
        config: CallConfig,
    ) -> Result<Self, CallError> {
        let endpoint = server_endpoint(addr, identity, vec![ALPN.to_vec()], &config.quic())?;
        Ok(CallEndpoint {
            endpoint,
            identity: identity.clone(),
            shared: Arc::new(EndpointShared::new(config)),
        })
    }

    /// The address the endpoint listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.endpoint
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)))
    }

    /// The node's identity.
    pub fn identity(&self) -> &NodeIdentity {
        &self.identity
    }

    /// Connect to the node at `addr`, accepting its key as `peer` says; `UNAVAILABLE` if
    /// the handshake does not complete within [`CallConfig::handshake_timeout`].
    pub async fn connect(&self, addr: SocketAddr, peer: PeerKey) -> Result<Connection, CallError> {
        let config = &self.shared.config;
        let client = client_config(&self.identity, peer, ALPN, &config.quic())?;
        let failed = |why: &dyn std::fmt::Display| {
            CallError::unavailable(format!("could not connect to {addr}: {why}"))
        };
        let connecting = self
            .endpoint
            .connect_with(client, addr, "alknet-node")
            .map_err(|e| failed(&e))?;
        // QUIC gives up on a silent address only after several probe timeouts (3 s or
        // more); a node answers its handshake far sooner.
        let quic = tokio::time::timeout(config.handshake_timeout, connecting)
            .await
            .map_err(|_| failed(&handshake_timed_out(config.handshake_timeout)))?
            .map_err(|e| failed(&e))?;
        self.connection(quic)
    }

    /// The next peer that connects, once its TLS handshake (and key) checked out; `None`
    /// once the endpoint is closed. A peer over the connection limits is refused
    /// (`RESOURCE_EXHAUSTED`), one whose handshake takes longer than
    /// [`CallConfig::handshake_timeout`] dropped (`UNAVAILABLE`).
    pub async fn accept(&self) -> Option<Result<Connection, CallError>> {
        let incoming = self.endpoint.accept().await?;
        Some(self.handshake(incoming).await)
    }

    /// Accept every peer and serve `server` to each, on a task of its own (handshakes
    /// included: a slow one holds up no other).
    pub fn serve(&self, server: CallServer) -> tokio::task::JoinHandle<()> {
        let endpoint = self.clone();
        tokio::spawn(async move {
            while let Some(incoming) = endpoint.endpoint.accept().await {
                let (endpoint, server) = (endpoint.clone(), server.clone());
                tokio::spawn(async move {
                    match endpoint.handshake(incoming).await {
                        Ok(connection) => serve_connection(connection, server).await,
                        Err(err) => tracing::debug!(%err, "a peer failed to connect"),
                    }
                });
            }
        })
    }

    async fn handshake(&self, incoming: noq::Incoming) -> Result<Connection, CallError> {
        let addr = incoming.remote_address();
        let admission = match self
            .shared
            .connections
            .take(None, Some(addr.ip().to_canonical()))
        {
            Ok(slot) => slot,
            Err(err) => {
                incoming.refuse();
                return Err(err);
            }
        };
        let timeout = self.shared.config.handshake_timeout;
        let failed = |why: &dyn std::fmt::Display| {
            CallError::unavailable(format!("the connection from {addr} failed: {why}"))
        };
        let quic = tokio::time::timeout(timeout, incoming)
            .await
            .map_err(|_| failed(&handshake_timed_out(timeout)))?
            .map_err(|e| failed(&e))?;
        let closed = quic.on_closed();
        tokio::spawn(async move {
            closed.await;
            drop(admission);
        });
        self.connection(quic)
    }

    /// Close every connection and stop accepting.
    pub fn close(&self) {
        self.endpoint.close(0u32.into(), b"endpoint closed");
    }

    fn connection(&self, quic: noq::Connection) -> Result<Connection, CallError> {
        let fingerprint = peer_fingerprint(&quic)?;
        Ok(Connection {
            quic,
            budget: Budget::new("the connection", self.shared.config.connection_buffer),
            endpoint: self.shared.clone(),
            peer_fingerprint: fingerprint.into(),
            turns: Default::default(),
        })
    }
}

/// Serve the calls a peer opens on `connection`, each stream on its own task.
pub(crate) async fn serve_connection(connection: Connection, server: CallServer) {
    let address = connection
        .quic
        .path(noq::PathId::ZERO)
        .and_then(|path| path.remote_address().ok())
        .map(|addr| addr.ip().to_canonical());
    let peer = Arc::new(server.key_peer(&connection.peer_fingerprint, address).await);
    let endpoint = &connection.endpoint;
    let mut raised = false;
    loop {
        if !raised && peer.is_authenticated() {
            let calls = endpoint.config.max_concurrent_calls;
            connection.quic.set_max_concurrent_bi_streams(calls.into());
            raised = true;
        }
        let (send, recv) = tokio::select! {
            accepted = connection.quic.accept_bi() => match accepted {
                Ok(stream) => stream,
                Err(_) => break,
            },
            () = peer.authenticated(), if !raised => continue,
        };
        let authenticated = peer.is_authenticated();
        let recv = FrameReader::charged(
            recv,
            server.frame_limit(authenticated),
            endpoint.charge(&connection.budget, authenticated),
        )
        .read_timeout(server.read_timeout());
        // Polled once here: a call that finishes at once costs no task; one that has to
        // wait continues on a task of its own.
        let mut serving = Box::pin(serve_stream(server.clone(), peer.clone(), send, recv));
        if futures::poll!(&mut serving).is_pending() {
            tokio::spawn(serving);
        }
    }
}

/// The call's send side, shared by the call (which writes events) and the watch for the
/// caller's STOP_SENDING. Both run in one task, so the lock, held for one poll at a time,
/// is never contended. Events fed are kept in `queued` until a flush writes them at once.
struct StreamSink<'a> {
    send: &'a Mutex<noq::SendStream>,
    queued: Vec<u8>,
}

/// How much a sink queues before it must be flushed: a subscription's ready items share a
/// write up to this size.
const QUEUED_MAX: usize = 64 * 1024;

/// The room a sink starts with: most calls' one event fits.
const FRAME_START: usize = 128;

fn locked(send: &Mutex<noq::SendStream>) -> std::sync::MutexGuard<'_, noq::SendStream> {
    send.lock().unwrap_or_else(PoisonError::into_inner)
}

impl EventSink for StreamSink<'_> {
    async fn feed(&mut self, event: EventEnvelope) -> std::io::Result<()> {
        event.write_frame(&mut self.queued);
        Ok(())
    }

    async fn flush(&mut self) -> std::io::Result<()> {
        if self.queued.is_empty() {
            return Ok(());
        }
        // A subscription's items go out without waiting until flow control stops them: the
        // budget lets the connection's driver, which it woke, send them meanwhile.
        tokio::task::consume_budget().await;
        let mut written = 0;
        while written < self.queued.len() {
            written += std::future::poll_fn(|cx| {
                Pin::new(&mut *locked(self.send)).poll_write(cx, &self.queued[written..])
            })
            .await?;
        }
        self.queued.clear();
        // A large item's room is not kept for the rest of the stream.
        if self.queued.capacity() > QUEUED_MAX {
            self.queued = Vec::with_capacity(FRAME_START);
        }
        Ok(())
    }

    fn wants_more(&self) -> bool {
        self.queued.len() < QUEUED_MAX
    }
}

/// One call: `call.requested`, then the outcome, unless the caller aborts first.
async fn serve_stream(
    server: CallServer,
    peer: Arc<Peer>,
    mut send: noq::SendStream,
    mut recv: FrameReader<noq::RecvStream>,
) {
    let first = match recv.next().await {
        Ok(Some(frame)) => EventEnvelope::decode(&frame).map_err(|err| {
            (
                err.id().unwrap_or_default().to_string(),
                err.to_call_error(),
            )
        }),
        Ok(None) => return,
        Err(FrameError::Io(_)) => return,
        Err(err) => Err((String::new(), err.to_call_error())),
    };
    let (id, request) = match first {
        Ok(EventEnvelope {
            id,
            event: Event::Requested(request),
        }) => (id, request),
        Ok(EventEnvelope { id, event }) => {
            let err = CallError::invalid_input(format!(
                "a call must start with `call.requested`, not `{}`",
                event.type_name()
            ));
            refuse(send, recv.get_mut(), id, err).await;
            return;
        }
        Err((id, err)) => {
            refuse(send, recv.get_mut(), id, err).await;
            return;
        }
    };
    // A caller usually finishes its side along with the request; taking that end now
    // leaves only STOP_SENDING to watch for, and a receive side that drops without a lock.
    let caller_finished = match recv.next().now_or_never().map(caller_side) {
        Some(CallerSide::Waiting) => true,
        Some(CallerSide::Aborted(err)) => {
            if let Some(err) = err {
                let _ = write_frame(&mut send, &EventEnvelope::new(id, Event::Error(err))).await;
            }
            return;
        }
        None => false,
    };
    let send = Mutex::new(send);
    let outcome = {
        let mut sink = StreamSink {
            send: &send,
            queued: Vec::with_capacity(FRAME_START),
        };
        let mut call = pin!(server.run_call(&peer, &id, request, &mut sink));
        // A call that is done at its first poll never watches the caller: no STOP_SENDING
        // registration (a lock and an allocation) for it.
        if futures::poll!(call.as_mut()).is_ready() {
            None
        } else {
            // Already stopped streams resolve at once: nothing sent before this is missed.
            let stopped = locked(&send).stopped();
            let aborted = async {
                if !caller_finished && let CallerSide::Aborted(err) = caller_side(recv.next().await)
                {
                    return err;
                }
                let _ = stopped.await;
                None
            };
            tokio::select! {
                biased;
                () = call => None,
                why = aborted => why,
            }
        }
    };
    let mut send = send.into_inner().unwrap_or_else(PoisonError::into_inner);
    if let Some(err) = outcome {
        let _ = write_frame(&mut send, &EventEnvelope::new(id, Event::Error(err))).await;
    }
    // Dropping `send` finishes it: one lock of the connection, where `finish` and the drop
    // would take two.
}

/// What the caller's side of a call's stream says after `call.requested`.
enum CallerSide {
    /// It ended cleanly: the caller waits for the outcome (and aborts with STOP_SENDING).
    Waiting,
    /// `call.aborted`, a reset or a lost connection — with an error to send back if the
    /// caller broke the protocol instead.
    Aborted(Option<CallError>),
}

fn caller_side(next: Result<Option<BytesMut>, FrameError>) -> CallerSide {
    match next {
        Ok(None) => CallerSide::Waiting,
        Ok(Some(frame)) => CallerSide::Aborted(match EventEnvelope::decode(&frame) {
            Ok(EventEnvelope {
                event: Event::Aborted,
                ..
            }) => None,
            Ok(EventEnvelope { event, .. }) => Some(CallError::invalid_input(format!(
                "only `call.aborted` may follow `call.requested` from the caller, not `{}`; the call was cancelled",
                event.type_name()
            ))),
            Err(err) => Some(err.to_call_error()),
        }),
        Err(FrameError::Io(_)) => CallerSide::Aborted(None),
        Err(err) => CallerSide::Aborted(Some(err.to_call_error())),
    }
}

/// Answer a stream that did not start a call properly, and stop reading it.
async fn refuse(mut send: noq::SendStream, recv: &mut noq::RecvStream, id: String, err: CallError) {
    let _ = recv.stop(0u32.into());
    let _ = write_frame(&mut send, &EventEnvelope::new(id, Event::Error(err))).await;
    let _ = send.finish();
    // Let the error reach the peer before the stream is dropped.
    let _ = send.stopped().await;
}

fn handshake_timed_out(timeout: Duration) -> String {
    format!("no handshake within {} ms", timeout.as_millis())
}
