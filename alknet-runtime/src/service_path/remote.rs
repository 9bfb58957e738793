//! The irpc path between nodes: postcard over QUIC, a stream per request. A client of
//! another node's listener ([`connect`]), and the serving side of the requests a listener
//! reads ([`IrpcPeer`], `Actor::unary_remote`, `Actor::streaming_remote`).

use std::net::IpAddr;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use futures::future::BoxFuture;
use irpc::channel::{mpsc, oneshot};
use irpc::rpc::noq;

use super::{Actor, Call, CallMeta, IrpcProtocol, alpn, error_chain, send_items, unreachable};
use crate::env::output;
use crate::quic::Turns;
use crate::{
    CallError, Caller, KeyHolder, Operation, Protocol, StreamingOperation, TypedEntry,
    UnaryOperation,
};

/// Who sent a request to this node's irpc listener: the key the connection proved, as the
/// identity provider knew it when the request arrived, and the address it came from.
/// Generated code only passes it on.
#[derive(Debug, Clone)]
pub struct IrpcPeer {
    holder: KeyHolder,
    address: IpAddr,
}

impl IrpcPeer {
    pub(crate) fn new(holder: KeyHolder, address: IpAddr) -> Self {
        IrpcPeer { holder, address }
    }

    /// The outside caller a request of this peer runs as, with what it asserted in `meta`
    /// set aside; `None` for a cluster node, whose assertions stand.
    fn outside_caller<R: Operation>(&self, meta: &CallMeta) -> Option<Caller> {
        if self.holder.cluster {
            return None;
        }
        let own = &self.holder.identity;
        let asserted = meta.identity.as_ref().filter(|asserted| asserted != &own);
        if asserted.is_some() || meta.forwarded_for.is_some() {
            tracing::warn!(
                peer = %own.id,
                address = %self.address,
                operation = %format_args!("{}/{}", <R::Protocol as Protocol>::NAMESPACE, R::NAME),
                asserted_identity = asserted.map(|identity| identity.id.as_str()),
                asserted_forwarded_for = meta.forwarded_for.as_deref(),
                "an irpc peer that is not a cluster node asserted who its call is for; the call runs as the peer's own key and the assertion is ignored"
            );
        }
        let mut caller = Caller::new()
            .transport("irpc")
            .identity(own.clone())
            .peer_addr(self.address);
        if let Some(ms) = meta.timeout_ms {
            caller = caller.timeout(Duration::from_millis(ms));
        }
        Some(caller)
    }
}

impl<P: IrpcProtocol> Actor<P> {
    /// Serve a query or mutation that `peer` sent on a QUIC stream; a caller that stops
    /// the stream cancels the handler.
    pub fn unary_remote<R>(
        &self,
        call: Call<R>,
        send: noq::SendStream,
        peer: IrpcPeer,
    ) -> BoxFuture<'static, ()>
    where
        R: UnaryOperation<Protocol = P>,
        Result<R::Output, CallError>: irpc::RpcMessage,
    {
        let call = serve_unary::<P, R>(self.entry.clone(), call, peer);
        Box::pin(async move {
            let mut call = std::pin::pin!(call);
            // A call that is done at its first poll never watches the caller: no
            // STOP_SENDING registration (a lock and an allocation) for it.
            let result = match futures::poll!(call.as_mut()) {
                Poll::Ready(result) => result,
                Poll::Pending => tokio::select! {
                    biased;
                    result = call => result,
                    _ = send.stopped() => return,
                },
            };
            let _ = oneshot::Sender::<Result<R::Output, CallError>>::from(send)
                .send(result)
                .await;
        })
    }

    /// Serve a subscription that `peer` sent on a QUIC stream.
    pub fn streaming_remote<R>(
        &self,
        call: Call<R>,
        send: noq::SendStream,
        peer: IrpcPeer,
    ) -> BoxFuture<'static, ()>
    where
        R: StreamingOperation<Protocol = P>,
        Result<R::Output, CallError>: irpc::RpcMessage,
    {
        let tx = mpsc::Sender::from(send);
        match peer.outside_caller::<R>(&call.meta) {
            None => self.stream_into(call, tx),
            Some(caller) => {
                let env = self.entry.env().with_caller(caller);
                Box::pin(send_items(
                    async move { env.stream(call.request).await },
                    tx,
                ))
            }
        }
    }
}

/// Run a query or mutation that `peer` sent: under the context it sent if it is a cluster
/// node, else as an outside caller of this node.
async fn serve_unary<P, R>(
    entry: TypedEntry<P>,
    call: Call<R>,
    peer: IrpcPeer,
) -> Result<R::Output, CallError>
where
    P: IrpcProtocol,
    R: UnaryOperation<Protocol = P>,
{
    let Call { meta, request } = call;
    match peer.outside_caller::<R>(&meta) {
        None => output::<R>(entry.call(meta, request.into())?.finish().await),
        Some(caller) => entry.env().with_caller(caller).call(request).await,
    }
}

/// Open a stream to the remote actor and send `request` on it, in turn with the
/// connection's other callers; the stream's receive side carries the answer.
pub(super) async fn send_remote<P: IrpcProtocol>(
    client: irpc::Client<P::Rpc>,
    turns: Arc<Turns>,
    request: P::Rpc,
) -> Result<noq::RecvStream, CallError> {
    let mut turn = turns.take().await;
    let irpc::Request::Remote(sender) = client.request().await.map_err(unreachable::<P>)? else {
        return Err(CallError::internal(format!(
            "the `{}` service's QUIC client turned out to be in-process",
            P::NAMESPACE
        )));
    };
    let (send, recv) = turn
        .write(sender.write(request))
        .await
        .map_err(unreachable::<P>)?;
    // Dropping the send side finishes it, still in turn.
    drop(send);
    drop(turn);
    Ok(recv)
}

/// A client of protocol `P`'s actor on the node at `addr`, whose key must be
/// `server_fingerprint`; this node presents `identity`, which the server must allow.
///
/// The connection opens on the first call, and again on the next call after it is lost.
/// While the node cannot be reached, attempts back off (100 ms, doubling to 2 s) and the
/// calls in between fail at once with `UNAVAILABLE`, naming why the last attempt failed.
/// Mount the client with `OperationEnv::builder().local(XProtocol::service(client))`.
pub fn connect<P: IrpcProtocol>(
    addr: std::net::SocketAddr,
    server_fingerprint: &str,
    identity: &crate::quic::NodeIdentity,
    config: &crate::quic::QuicConfig,
) -> Result<irpc::Client<P::Rpc>, CallError> {
    Ok(connect_linked::<P>(addr, server_fingerprint, identity, config)?.0)
}

/// [`connect`], and how its connection stands ([`IrpcLink`]), for a readiness answer.
pub fn connect_linked<P: IrpcProtocol>(
    addr: std::net::SocketAddr,
    server_fingerprint: &str,
    identity: &crate::quic::NodeIdentity,
    config: &crate::quic::QuicConfig,
) -> Result<(irpc::Client<P::Rpc>, IrpcLink), CallError> {
    let fingerprint = server_fingerprint.to_string();
    let target: IrpcTarget = Arc::new(move || Ok((addr, fingerprint.clone())));
    connect_following::<P>(target, identity, config)
}

/// Where another node's irpc listener is and the key it must prove, asked again before
/// each connection is made: so a link follows configuration that changes while it lives.
/// An `Err` says why there is nowhere to connect to now; calls fail with it
/// (`UNAVAILABLE`).
pub type IrpcTarget = Arc<dyn Fn() -> Result<(std::net::SocketAddr, String), String> + Send + Sync>;

/// [`connect_linked`] to wherever `target` says when each connection is made: a node that
/// moved, or changed its key, is reached at its new address with its new key from the next
/// connection on. The client's socket takes the address family `target` gives now.
pub fn connect_following<P: IrpcProtocol>(
    target: IrpcTarget,
    identity: &crate::quic::NodeIdentity,
    config: &crate::quic::QuicConfig,
) -> Result<(irpc::Client<P::Rpc>, IrpcLink), CallError> {
    let (addr, fingerprint) = target().map_err(CallError::unavailable)?;
    let alpn = alpn::<P>();
    let client = crate::quic::client_config(
        identity,
        crate::quic::PeerKey::Pinned(fingerprint),
        &alpn,
        config,
    )?;
    let endpoint = crate::quic::client_endpoint(client, addr)?;
    let live = Arc::new(Live {
        endpoint,
        target,
        identity: identity.clone(),
        alpn,
        quic: config.clone(),
        connection: Arc::default(),
        redial: crate::quic::Redial::default(),
    });
    let client = irpc::Client::boxed(LiveConnection(live.clone()));
    Ok((client, IrpcLink(live)))
}

/// irpc's connection to another node's listener, made again after a loss, with backoff.
#[derive(Debug, Clone)]
struct LiveConnection(Arc<Live>);

struct Live {
    endpoint: noq::Endpoint,
    target: IrpcTarget,
    identity: crate::quic::NodeIdentity,
    alpn: Vec<u8>,
    quic: crate::quic::QuicConfig,
    /// Held while connecting, so calls made meanwhile wait for that one attempt.
    connection: Arc<tokio::sync::Mutex<Option<noq::Connection>>>,
    redial: crate::quic::Redial,
}

impl std::fmt::Debug for Live {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Live")
            .field("target", &(self.target)())
            .finish_non_exhaustive()
    }
}

impl Live {
    /// A new connection in `slot`, unless an attempt failed too recently.
    async fn connect(
        &self,
        slot: &mut Option<noq::Connection>,
    ) -> Result<noq::Connection, irpc::RequestError> {
        *slot = None;
        self.redial
            .ready()
            .map_err(|reason| irpc::RequestError::from(n0_error::AnyError::from(reason)))?;
        let connected = async {
            let (addr, fingerprint) = (self.target)().map_err(n0_error::AnyError::from)?;
            let client = crate::quic::client_config(
                &self.identity,
                crate::quic::PeerKey::Pinned(fingerprint),
                &self.alpn,
                &self.quic,
            )
            .map_err(|err| n0_error::AnyError::from(err.message))?;
            let connecting = self.endpoint.connect_with(client, addr, "localhost")?;
            Ok::<_, irpc::RequestError>(connecting.await?)
        };
        let handshake_timeout = self.quic.handshake_timeout;
        let connection = match tokio::time::timeout(handshake_timeout, connected).await {
            Ok(Ok(connection)) => connection,
            Ok(Err(err)) => {
                self.redial.failed(error_chain(&err));
                return Err(err);
            }
            Err(_) => {
                let reason = format!("no handshake within {} ms", handshake_timeout.as_millis());
                self.redial.failed(reason.clone());
                return Err(n0_error::AnyError::from(reason).into());
            }
        };
        self.redial.succeeded();
        *slot = Some(connection.clone());
        Ok(connection)
    }
}

/// How the connection to another node's irpc listener stands, for a readiness answer: from
/// [`connect_linked`].
#[derive(Debug, Clone)]
pub struct IrpcLink(Arc<Live>);

impl IrpcLink {
    /// Whether a connection is up; if not, why not — and a connection is begun in the
    /// background (once at a time, within the redial backoff), so that a node that came
    /// back is seen without waiting for a call.
    pub fn readiness(&self) -> Result<(), String> {
        let live = self.0.clone();
        let Ok(mut slot) = live.connection.clone().try_lock_owned() else {
            return Err("connecting".to_string());
        };
        let closed = match slot.as_ref().map(noq::Connection::close_reason) {
            Some(None) => return Ok(()),
            Some(Some(reason)) => Some(format!("the connection closed: {reason}")),
            None => None,
        };
        let why = live
            .redial
            .last_failure()
            .or(closed)
            .unwrap_or_else(|| "not connected yet: connecting".to_string());
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                let _ = live.connect(&mut slot).await;
            });
        }
        Err(why)
    }
}

impl irpc::rpc::RemoteConnection for LiveConnection {
    fn clone_boxed(&self) -> Box<dyn irpc::rpc::RemoteConnection> {
        Box::new(self.clone())
    }

    fn open_bi(
        &self,
    ) -> BoxFuture<'static, Result<(noq::SendStream, noq::RecvStream), irpc::RequestError>> {
        let live = self.0.clone();
        Box::pin(async move {
            let mut slot = live.connection.lock().await;
            if let Some(connection) = slot.as_ref()
                && connection.close_reason().is_none()
                && let Ok(pair) = connection.open_bi().await
            {
                return Ok(pair);
            }
            let connection = live.connect(&mut slot).await?;
            Ok(connection.open_bi().await?)
        })
    }

    fn zero_rtt_rejected(&self) -> BoxFuture<'static, bool> {
        // The handshake completes before any request is sent.
        Box::pin(async { false })
    }
}
