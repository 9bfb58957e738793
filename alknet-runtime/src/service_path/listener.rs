//! Serving irpc actors to other nodes over QUIC, secure by default: every connection must
//! present an allow-listed key before a single request is read.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use futures::FutureExt;
use futures::future::BoxFuture;
use irpc::channel::oneshot;
use irpc::rpc::noq;
use irpc::util::AsyncReadVarintExt;

use super::{Actor, IrpcProtocol};
use crate::quic::{NodeIdentity, QuicConfig, peer_fingerprint, server_endpoint};
use crate::{CallError, Credential, IdentityProvider, OperationEnv, Protocol};

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
    pub max_request_size: u64,
}

impl Default for IrpcLimits {
    fn default() -> Self {
        IrpcLimits {
            max_request_size: 16 * 1024 * 1024,
        }
    }
}

type StreamServer =
    Arc<dyn Fn(noq::RecvStream, noq::SendStream) -> BoxFuture<'static, ()> + Send + Sync>;

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
/// let peers = StaticIdentities::new().with_key(head_node_key, Identity::new("node:head"));
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
            Arc::new(move |recv, send| Box::pin(serve_stream(actor.clone(), recv, send, limit))),
        );
        Ok(self)
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

/// A QUIC listener serving irpc actors to allow-listed peers.
pub struct IrpcListener {
    endpoint: noq::Endpoint,
    fingerprint: String,
    accepting: tokio::task::JoinHandle<()>,
}

impl IrpcListener {
    /// Serve `env`'s namespaces to the peers `identities` allows (by key fingerprint).
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
                    .resolve(Credential::KeyFingerprint(&fingerprint))
                    .await
                    .map(|identity| (fingerprint, identity)),
                Err(err) => Err(err),
            };
            match allowed {
                Ok((fingerprint, identity)) => {
                    tracing::debug!(%peer, %fingerprint, identity = %identity.id, "irpc peer connected");
                    serve_connection(connection, server).await;
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

/// Requests on a connection run concurrently: each is polled once here, and one that has
/// to wait (for its bytes, its handler, or the peer) continues on a task of its own.
async fn serve_connection(connection: noq::Connection, server: StreamServer) {
    while let Ok((send, recv)) = connection.accept_bi().await {
        let mut serving = server(recv, send);
        if futures::poll!(&mut serving).is_pending() {
            tokio::spawn(serving);
        }
    }
}

/// Read one request, within the limit, and serve it; a request that is too large or does
/// not decode is answered with an error on its own stream.
async fn serve_stream<P: IrpcProtocol>(
    actor: Arc<Actor<P>>,
    mut recv: noq::RecvStream,
    send: noq::SendStream,
    limit: u64,
) {
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
    let mut request = vec![0; size as usize];
    if let Err(err) = recv.read_exact(&mut request).await {
        return refuse(
            send,
            CallError::invalid_input(format!("the request ended early: {err}")),
        )
        .await;
    }
    // The caller finishes its side with the request: taking that end now lets the receive
    // side drop without a lock (and without a STOP_SENDING).
    let _ = recv.read(&mut [0; 1]).now_or_never();
    match postcard::from_bytes::<P::Rpc>(&request) {
        Ok(request) => P::serve_remote(request, send, &actor).await,
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

/// Answer with an error. `Result<T, CallError>` encodes an `Err` the same whatever `T`, so
/// a caller waiting for any operation's answer reads it.
async fn refuse(send: noq::SendStream, err: CallError) {
    let _ = oneshot::Sender::<Result<(), CallError>>::from(send)
        .send(Err(err))
        .await;
}
