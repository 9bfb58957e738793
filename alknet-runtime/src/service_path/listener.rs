//! Serving irpc actors to other nodes over QUIC, secure by default: every connection must
//! present an allow-listed key before a single request is read, and what each request may
//! do follows from that key (SPEC §5): a cluster node's calls run as the identities it
//! asserts, anyone else's as the key's own identity, as an outside caller.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use futures::FutureExt;
use futures::future::BoxFuture;
use irpc::channel::oneshot;
use irpc::rpc::noq;
use irpc::util::AsyncReadVarintExt;

use super::{Actor, IrpcLink, IrpcPeer, IrpcProtocol, IrpcTarget};
use crate::quic::{NodeIdentity, QuicConfig, peer_fingerprint, server_endpoint};
use crate::{CallError, IdentityProvider, LocalService, OperationEnv, Protocol};

/// The ALPN of protocol `P`'s irpc service: one per namespace, so one listener can serve
/// several services and a connection names the one it wants.
pub fn alpn<P: Protocol>() -> Vec<u8> {
    format!("alknet/irpc/1/{}", P::NAMESPACE).into_bytes()
}

/// QUIC application error codes the listener closes or stops with.
mod close {
    /// The peer's key is not allowed.
    pub const UNAUTHENTICATED: u32 = 0x10;
    /// A request was over the size limit.
    pub const TOO_LARGE: u32 = 0x11;
}

/// Limits of an irpc listener.
#[derive(Debug, Clone)]
pub struct IrpcLimits {
    /// The largest request accepted, in bytes (16 MiB by default). A larger one is refused
    /// with `RESOURCE_EXHAUSTED` before it is read; the connection's other calls carry on.
    /// A request's buffer grows with the bytes that arrive, never with the size it promised.
    pub max_request_size: u64,
}

impl Default for IrpcLimits {
    fn default() -> Self {
        IrpcLimits {
            max_request_size: 16 * 1024 * 1024,
        }
    }
}

type StreamServer = Arc<
    dyn Fn(Arc<Connected>, noq::RecvStream, noq::SendStream) -> BoxFuture<'static, ()>
        + Send
        + Sync,
>;

/// Chooses what an [`IrpcListener`] serves.
///
/// ```no_run
/// use std::sync::Arc;
/// use alknet_example::{EchoProtocol, EchoService};
/// use alknet_runtime::quic::{NodeIdentity, QuicConfig};
/// use alknet_runtime::service_path::IrpcListener;
/// use alknet_runtime::{Identity, OperationEnv, StaticIdentities};
///
/// # async fn demo(head_node_key: String) -> Result<(), alknet_runtime::CallError> {
/// let env = OperationEnv::builder().local(EchoProtocol::local(EchoService::default())).build().unwrap();
/// // The head node admitted its callers: its requests run as the identities they carry.
/// let peers = StaticIdentities::new().with_cluster_key(head_node_key, Identity::new("node:head"));
/// let listener = IrpcListener::builder(env, Arc::new(peers))
///     .serve::<EchoProtocol>()?
///     .bind("127.0.0.1:0".parse().unwrap(), &NodeIdentity::generate()?, QuicConfig::default())?;
/// println!("irpc on {} as {}", listener.local_addr(), listener.fingerprint());
/// # Ok(()) }
/// ```
pub struct IrpcListenerBuilder {
    env: OperationEnv,
    identities: Arc<dyn IdentityProvider>,
    limits: IrpcLimits,
    services: HashMap<Vec<u8>, StreamServer>,
}

impl IrpcListenerBuilder {
    /// Serve `P`'s namespace, which `env` must serve in-process.
    pub fn serve<P: IrpcProtocol>(mut self) -> Result<Self, CallError> {
        let actor = Actor::<P>::new(self.env.clone()).ok_or_else(|| {
            CallError::not_found(format!(
                "the namespace `{}` is not served in-process by this env, so it cannot be listened for",
                P::NAMESPACE
            ))
        })?;
        let actor = Arc::new(actor);
        let limit = self.limits.max_request_size;
        self.services.insert(
            alpn::<P>(),
            Arc::new(move |peer, recv, send| {
                Box::pin(serve_stream(actor.clone(), peer, recv, send, limit))
            }),
        );
        Ok(self)
    }

    /// Serve the service `serving` registers (see [`IrpcServing`]), which `env` must serve
    /// in-process.
    pub fn serve_registered(self, serving: &IrpcServing) -> Result<Self, CallError> {
        (serving.serve)(self)
    }

    /// Set the limits.
    pub fn limits(mut self, limits: IrpcLimits) -> Self {
        self.limits = limits;
        self
    }

    /// Listen on `addr` as `identity`, and start accepting.
    pub fn bind(
        self,
        addr: SocketAddr,
        identity: &NodeIdentity,
        config: QuicConfig,
    ) -> Result<IrpcListener, CallError> {
        let alpns = self.services.keys().cloned().collect();
        let endpoint = server_endpoint(addr, identity, alpns, &config)?;
        let accepting = tokio::spawn(accept(
            endpoint.clone(),
            Arc::new(self.services),
            self.identities,
        ));
        Ok(IrpcListener {
            endpoint,
            fingerprint: identity.fingerprint().to_string(),
            accepting,
        })
    }
}

/// How to serve one protocol over irpc, with its type erased: `#[alk_service]` attaches one
/// to every [`LocalService`](crate::LocalService) its `local` function makes, so a node
/// can serve every service it mounts without naming their types:
///
/// ```
/// use alknet_example::{EchoProtocol, EchoService};
/// use alknet_runtime::service_path::IrpcServing;
///
/// let echo = EchoProtocol::local(EchoService::default());
/// assert!(echo.extension::<IrpcServing>().is_some());
/// ```
#[derive(Clone, Copy)]
pub struct IrpcServing {
    serve: fn(IrpcListenerBuilder) -> Result<IrpcListenerBuilder, CallError>,
    reach: Reach,
}

type Reach =
    fn(IrpcTarget, &NodeIdentity, &QuicConfig) -> Result<(LocalService, IrpcLink), CallError>;

impl IrpcServing {
    /// The registration of protocol `P`.
    pub fn of<P: IrpcProtocol>() -> Self {
        IrpcServing {
            serve: IrpcListenerBuilder::serve::<P>,
            reach: |target, identity, config| {
                let (client, link) = super::connect_following::<P>(target, identity, config)?;
                Ok((super::IrpcService::new::<P>(client).into(), link))
            },
        }
    }

    /// The same service, reached on the irpc listener of the node `target` names (asked
    /// again before each connection), as this node (`identity`), which that node must
    /// allow: what [`connect_following`](super::connect_following) and
    /// `XProtocol::service` make, for a service known only as a [`LocalService`]; with how
    /// its connection stands.
    pub fn reach(
        &self,
        target: IrpcTarget,
        identity: &NodeIdentity,
        config: &QuicConfig,
    ) -> Result<(LocalService, IrpcLink), CallError> {
        (self.reach)(target, identity, config)
    }
}

impl std::fmt::Debug for IrpcServing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("IrpcServing")
    }
}

/// A QUIC listener serving irpc actors to allow-listed peers.
pub struct IrpcListener {
    endpoint: noq::Endpoint,
    fingerprint: String,
    accepting: tokio::task::JoinHandle<()>,
}

impl IrpcListener {
    /// Serve `env`'s namespaces to the peers `identities` allows (by key fingerprint).
    /// [`IdentityProvider::resolve_key`] decides, for every request, whether its sender is
    /// a cluster node; only `env`'s policy governs the requests of other keys.
    pub fn builder(
        env: OperationEnv,
        identities: Arc<dyn IdentityProvider>,
    ) -> IrpcListenerBuilder {
        IrpcListenerBuilder {
            env,
            identities,
            limits: IrpcLimits::default(),
            services: HashMap::new(),
        }
    }

    /// Where it listens.
    pub fn local_addr(&self) -> SocketAddr {
        self.endpoint
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)))
    }

    /// The listener's key fingerprint, which clients pin.
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }
}

impl Drop for IrpcListener {
    fn drop(&mut self) {
        self.accepting.abort();
        self.endpoint.close(0u32.into(), b"listener closed");
    }
}

async fn accept(
    endpoint: noq::Endpoint,
    services: Arc<HashMap<Vec<u8>, StreamServer>>,
    identities: Arc<dyn IdentityProvider>,
) {
    while let Some(incoming) = endpoint.accept().await {
        let services = services.clone();
        let identities = identities.clone();
        tokio::spawn(async move {
            let peer = incoming.remote_address();
            let connection = match incoming.await {
                Ok(connection) => connection,
                Err(err) => {
                    tracing::warn!(%peer, %err, "an irpc peer failed its handshake");
                    return;
                }
            };
            let Some(server) = negotiated(&connection)
                .and_then(|alpn| services.get(&alpn))
                .cloned()
            else {
                connection.close(0u32.into(), b"no such service");
                return;
            };
            let allowed = match peer_fingerprint(&connection) {
                Ok(fingerprint) => identities
                    .resolve_key(&fingerprint)
                    .await
                    .map(|holder| (fingerprint, holder)),
                Err(err) => Err(err),
            };
            match allowed {
                Ok((fingerprint, holder)) => {
                    tracing::debug!(
                        %peer,
                        %fingerprint,
                        identity = %holder.identity.id,
                        cluster = holder.cluster,
                        "irpc peer connected"
                    );
                    let connected = Arc::new(Connected {
                        fingerprint,
                        address: peer.ip(),
                        identities,
                    });
                    serve_connection(connection, connected, server).await;
                }
                Err(err) => {
                    tracing::warn!(%peer, reason = %err.message, "refused an irpc peer");
                    connection.close(close::UNAUTHENTICATED.into(), b"this key is not allowed");
                }
            }
        });
    }
}

fn negotiated(connection: &noq::Connection) -> Option<Vec<u8>> {
    connection
        .handshake_data()?
        .downcast::<noq::crypto::rustls::HandshakeData>()
        .ok()?
        .protocol
}

/// A connection's peer: its key, asked about again for every request, so that a reload
/// that removes the key or changes whether it is a cluster node applies to the next one.
struct Connected {
    fingerprint: String,
    address: IpAddr,
    identities: Arc<dyn IdentityProvider>,
}

impl Connected {
    async fn peer(&self) -> Result<IrpcPeer, CallError> {
        let holder = self.identities.resolve_key(&self.fingerprint).await?;
        Ok(IrpcPeer::new(holder, self.address))
    }
}

/// Requests on a connection run concurrently: each is polled once here, and one that has
/// to wait (for its bytes, its handler, or the peer) continues on a task of its own. How
/// many run at once is QUIC's stream limit (`QuicConfig::max_concurrent_streams`): a peer
/// cannot open a stream beyond it until one of its others is done.
async fn serve_connection(
    connection: noq::Connection,
    connected: Arc<Connected>,
    server: StreamServer,
) {
    while let Ok((send, recv)) = connection.accept_bi().await {
        let mut serving = server(connected.clone(), recv, send);
        if futures::poll!(&mut serving).is_pending() {
            tokio::spawn(serving);
        }
    }
}

/// Read one request, within the limit, and serve it as its sender may; a request that is
/// too large or does not decode, or whose sender's key is no longer allowed, is answered
/// with an error on its own stream.
async fn serve_stream<P: IrpcProtocol>(
    actor: Arc<Actor<P>>,
    connected: Arc<Connected>,
    mut recv: noq::RecvStream,
    send: noq::SendStream,
    limit: u64,
) {
    let peer = match connected.peer().await {
        Ok(peer) => peer,
        Err(err) => {
            let _ = recv.stop(close::UNAUTHENTICATED.into());
            return refuse(send, err).await;
        }
    };
    let size = match recv.read_varint_u64().await {
        Ok(Some(size)) => size,
        Ok(None) => return,
        Err(err) => {
            return refuse(
                send,
                CallError::invalid_input(format!("the request could not be read: {err}")),
            )
            .await;
        }
    };
    if size > limit {
        let _ = recv.stop(close::TOO_LARGE.into());
        let err = CallError::resource_exhausted(format!(
            "the request is {size} bytes, over this listener's limit of {limit}"
        ));
        return refuse(send, err).await;
    }
    let request = match read_request(&mut recv, size as usize).await {
        Ok(request) => request,
        Err(err) => return refuse(send, err).await,
    };
    // The caller finishes its side with the request: taking that end now lets the receive
    // side drop without a lock (and without a STOP_SENDING).
    let _ = recv.read(&mut [0; 1]).now_or_never();
    match postcard::from_bytes::<P::Rpc>(&request) {
        Ok(request) => P::serve_remote(request, send, &actor, peer).await,
        Err(err) => {
            refuse(
                send,
                CallError::invalid_input(format!(
                    "the request is not a `{}` request: {err}",
                    P::NAMESPACE
                )),
            )
            .await
        }
    }
}

/// Read the `size` bytes of a request as they arrive: the buffer holds what came, never
/// what was promised, so a peer that promises much and sends little costs little.
async fn read_request(recv: &mut noq::RecvStream, size: usize) -> Result<Vec<u8>, CallError> {
    let mut request = Vec::new();
    while request.len() < size {
        let chunk = recv
            .read_chunk(size - request.len())
            .await
            .map_err(|err| {
                CallError::invalid_input(format!("the request could not be read: {err}"))
            })?
            .ok_or_else(|| {
                CallError::invalid_input(format!(
                    "the request ended early: {} of the {size} bytes it announced arrived",
                    request.len()
                ))
            })?;
        request.extend_from_slice(&chunk);
    }
    Ok(request)
}

/// Answer with an error. `Result<T, CallError>` encodes an `Err` the same whatever `T`, so
/// a caller waiting for any operation's answer reads it.
async fn refuse(send: noq::SendStream, err: CallError) {
    let _ = oneshot::Sender::<Result<(), CallError>>::from(send)
        .send(Err(err))
        .await;
}
