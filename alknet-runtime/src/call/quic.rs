//! The call protocol over QUIC: the endpoint (ALPN `alknet/call/1`, the key-pinned TLS of
//! [`crate::quic`]) and the per-stream server loop.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::pin::{Pin, pin};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::BytesMut;
use futures::FutureExt;

use super::budget::{Budget, Charge};
use super::client::Connection;
use super::server::{CallServer, EventSink, Peer};
use super::wire::{
    ALPN, DEFAULT_MAX_FRAME_SIZE, Event, EventEnvelope, FrameError, FrameReader, write_frame,
};
use crate::quic::{
    NodeIdentity, PeerKey, QuicConfig, client_config, peer_fingerprint, server_endpoint,
};
use crate::{CallError, Credential};

/// Limits and timeouts of the call protocol over QUIC.
///
/// A vanished peer is detected within `idle_timeout + keep_alive` (QUIC restarts the idle
/// timer on the last keep-alive sent): 800 ms with the defaults, right for a cluster on
/// one network; raise both on lossy links.
///
/// A peer is *authenticated* once the identity provider knows its key, or once one of its
/// calls carried an `auth_token` that it accepted; until then it has the `unauthenticated_`
/// limits (and the [`CallServer`]'s smaller frame limit).
#[derive(Debug, Clone)]
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
    /// How long a connection's handshake may take, either way (1 s): connecting to an
    /// address that never answers fails with `UNAVAILABLE` after it.
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
}

impl CallConfig {
    /// The limits `[call]` sets, each absent setting at its default.
    pub fn from_settings(settings: &crate::config::CallSettings) -> Self {
        use std::num::{NonZeroU32, NonZeroUsize};
        let defaults = CallConfig::default();
        CallConfig {
            max_frame_size: settings
                .max_frame_bytes
                .map_or(defaults.max_frame_size, NonZeroUsize::get),
            max_concurrent_calls: settings
                .max_concurrent_calls
                .map_or(defaults.max_concurrent_calls, NonZeroU32::get),
            unauthenticated_max_concurrent_calls: settings
                .unauthenticated_max_concurrent_calls
                .map_or(
                    defaults.unauthenticated_max_concurrent_calls,
                    NonZeroU32::get,
                ),
            connection_buffer: settings
                .connection_buffer_bytes
                .map_or(defaults.connection_buffer, NonZeroUsize::get),
            endpoint_buffer: settings
                .node_buffer_bytes
                .map_or(defaults.endpoint_buffer, NonZeroUsize::get),
            unauthenticated_buffer: settings
                .unauthenticated_buffer_bytes
                .map_or(defaults.unauthenticated_buffer, NonZeroUsize::get),
            max_connections: settings
                .max_connections
                .map_or(defaults.max_connections, NonZeroUsize::get),
            max_connections_per_address: settings
                .max_connections_per_address
                .map_or(defaults.max_connections_per_address, NonZeroUsize::get),
            handshake_timeout: settings
                .handshake_timeout_ms
                .map_or(defaults.handshake_timeout, |ms| {
                    Duration::from_millis(ms.get())
                }),
            ..defaults
        }
    }

    fn quic(&self) -> QuicConfig {
        QuicConfig {
            keep_alive: self.keep_alive,
            idle_timeout: self.idle_timeout,
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
            handshake_timeout: Duration::from_secs(1),
            max_concurrent_calls: 1024,
            unauthenticated_max_concurrent_calls: 16,
            connection_buffer: 64 << 20,
            endpoint_buffer: 1 << 30,
            unauthenticated_buffer: 64 << 20,
            max_connections: 4096,
            max_connections_per_address: 64,
        }
    }
}

/// What the connections of one endpoint share: its limits, its budgets for frames in
/// transit, and the count of peers' connections.
#[derive(Debug)]
pub(crate) struct EndpointShared {
    pub(crate) config: CallConfig,
    /// Frames in transit from authenticated peers, and answers to this node's own calls.
    authenticated: Budget,
    /// Frames in transit from unauthenticated peers.
    unauthenticated: Budget,
    admitted: Mutex<Admitted>,
}

/// The peers' connections an endpoint holds, in all and by address.
#[derive(Debug, Default)]
struct Admitted {
    total: usize,
    by_address: HashMap<IpAddr, usize>,
}

/// One accepted connection's place among its endpoint's; given back when dropped.
struct Admission {
    endpoint: Arc<EndpointShared>,
    address: IpAddr,
}

impl EndpointShared {
    fn new(config: CallConfig) -> Self {
        EndpointShared {
            authenticated: Budget::new("the node", config.endpoint_buffer),
            unauthenticated: Budget::new(
                "the node's room for unauthenticated peers",
                config.unauthenticated_buffer,
            ),
            config,
            admitted: Mutex::default(),
        }
    }

    /// A place for one more connection from `address`, if both limits allow it.
    fn admit(self: &Arc<Self>, address: IpAddr) -> Result<Admission, CallError> {
        let mut admitted = self.admitted.lock().unwrap_or_else(PoisonError::into_inner);
        let from_address = admitted.by_address.get(&address).copied().unwrap_or(0);
        if admitted.total >= self.config.max_connections {
            return Err(CallError::resource_exhausted(format!(
                "the node holds its limit of {} connections",
                self.config.max_connections
            ))
            .retryable(true));
        }
        if from_address >= self.config.max_connections_per_address {
            return Err(CallError::resource_exhausted(format!(
                "{address} holds its limit of {} connections to the node",
                self.config.max_connections_per_address
            ))
            .retryable(true));
        }
        admitted.total += 1;
        admitted.by_address.insert(address, from_address + 1);
        Ok(Admission {
            endpoint: self.clone(),
            address,
        })
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

impl Drop for Admission {
    fn drop(&mut self) {
        let mut admitted = self
            .endpoint
            .admitted
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        admitted.total -= 1;
        if let Some(count) = admitted.by_address.get_mut(&self.address) {
            *count -= 1;
            if *count == 0 {
                admitted.by_address.remove(&self.address);
            }
        }
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
        let admission = match self.shared.admit(addr.ip().to_canonical()) {
            Ok(admission) => admission,
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
    let peer = Arc::new(
        server
            .resolve_peer(
                Some(Credential::KeyFingerprint(&connection.peer_fingerprint)),
                connection
                    .quic
                    .path(noq::PathId::ZERO)
                    .and_then(|path| path.remote_address().ok())
                    .map(|addr| addr.ip().to_canonical()),
            )
            .await,
    );
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
        );
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
/// is never contended.
struct StreamSink<'a>(&'a Mutex<noq::SendStream>);

fn locked(send: &Mutex<noq::SendStream>) -> std::sync::MutexGuard<'_, noq::SendStream> {
    send.lock().unwrap_or_else(PoisonError::into_inner)
}

impl EventSink for StreamSink<'_> {
    async fn send(&mut self, event: EventEnvelope) -> std::io::Result<()> {
        // A subscription's items go out without waiting until flow control stops them: the
        // budget lets the connection's driver, which it woke, send them meanwhile.
        tokio::task::consume_budget().await;
        let frame = event.to_frame();
        let mut written = 0;
        while written < frame.len() {
            written += std::future::poll_fn(|cx| {
                Pin::new(&mut *locked(self.0)).poll_write(cx, &frame[written..])
            })
            .await?;
        }
        Ok(())
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
        let mut sink = StreamSink(&send);
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
