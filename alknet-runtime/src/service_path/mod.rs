//! The irpc service path (SPEC §8): a service as an irpc actor, reached through tokio
//! channels in-process or postcard over QUIC, mounted in an [`OperationEnv`] like any other.
//!
//! ```
//! use alknet_example::{EchoClient, EchoProtocol, EchoService};
//! use alknet_runtime::OperationEnv;
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! // The actor: requests run concurrently, each under the context the caller sent.
//! let client = EchoProtocol::spawn(EchoService::default());
//! // A node that reaches `echo` through it.
//! let env = OperationEnv::builder().local(EchoProtocol::service(client)).build().unwrap();
//! let echo = EchoClient::new(env);
//! assert_eq!(echo.say("over irpc".into()).await.unwrap().length, 9);
//! # }
//! ```

use std::future::Future;
use std::net::IpAddr;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::future::BoxFuture;
use futures::{FutureExt, StreamExt};
use irpc::channel::{mpsc, none::NoReceiver, oneshot};
use irpc::rpc::noq;
use irpc::{Channels, WithChannels};
use serde::{Deserialize, Serialize};

mod listener;

pub use listener::{IrpcLimits, IrpcListener, IrpcListenerBuilder, IrpcServing, alpn};

pub use crate::CallMeta;
use crate::env::output;
use crate::quic::Turns;
use crate::{
    CallError, Caller, Dispatch, ItemStream, KeyHolder, LocalService, Operation, OperationContext,
    OperationEnv, Protocol, ResponseStream, StreamingOperation, TypedEntry, UnaryOperation,
};

/// How many messages wait for the actor before senders wait too.
const ACTOR_QUEUE: usize = 128;
/// How many items of one subscription may be in flight in-process.
const STREAM_BUFFER: usize = 16;

/// A request on the irpc path: the request, and the context the caller admitted it under.
#[derive(Debug, Serialize, Deserialize)]
pub struct Call<R> {
    /// The context that travels with the call.
    pub meta: CallMeta,
    /// The operation's request.
    pub request: R,
}

/// A protocol that can travel over irpc. `#[alk_service]` implements it: `Rpc` is the
/// generated `XRpc` enum (each request wrapped in [`Call`]), whose message enum `XMessage`
/// carries the channels.
pub trait IrpcProtocol: Protocol {
    /// The irpc service: what goes over the wire.
    type Rpc: irpc::Service + irpc::rpc::RemoteService;

    /// Send a query or mutation through `client`.
    fn send(
        client: &IrpcClient<Self::Rpc>,
        meta: CallMeta,
        request: Self,
    ) -> BoxFuture<'static, Result<Self::Response, CallError>>;

    /// Start a subscription through `client`.
    fn send_subscribe(
        client: &IrpcClient<Self::Rpc>,
        meta: CallMeta,
        request: Self,
    ) -> BoxFuture<'static, Result<ResponseStream<Self>, CallError>>;

    /// Serve one message that reached the actor, polling it first with the actor's `cx`.
    fn serve(
        message: <Self::Rpc as irpc::Service>::Message,
        actor: &Actor<Self>,
        cx: &mut Context<'_>,
    );

    /// Serve one request that `peer` sent on a QUIC stream, answering on `send`.
    fn serve_remote(
        request: Self::Rpc,
        send: noq::SendStream,
        actor: &Actor<Self>,
        peer: IrpcPeer,
    ) -> BoxFuture<'static, ()>;
}

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

/// Serve `P`'s namespace of `env` as an irpc actor: a task that runs requests concurrently
/// (a request that has to wait continues on a task of its own), each under the context the
/// caller sent, with `env` for its nested calls. Returns the
/// actor's client, for [`OperationEnvBuilder::local`](crate::OperationEnvBuilder::local)
/// or a QUIC listener.
///
/// Fails with `NOT_FOUND` unless `env` serves `P`'s namespace in-process.
pub fn spawn<P: IrpcProtocol>(env: &OperationEnv) -> Result<irpc::Client<P::Rpc>, CallError> {
    let actor = Actor::<P>::new(env.clone()).ok_or_else(|| {
        CallError::not_found(format!(
            "the namespace `{}` is not served in-process by this env, so it cannot be spawned as an actor",
            P::NAMESPACE
        ))
    })?;
    Ok(run_actor(actor))
}

/// Serve `service` alone as an irpc actor; its handlers' nested calls reach only itself.
/// Generated `spawn` functions use this; to give an actor a whole node's env for its nested
/// calls, mount the service in that env and use [`spawn`].
pub fn spawn_service<P: IrpcProtocol>(service: LocalService) -> irpc::Client<P::Rpc> {
    let entry = OperationEnv::single(service)
        .typed_entry::<P>()
        .expect("an env of P's own service serves P");
    run_actor(Actor { entry })
}

fn run_actor<P: IrpcProtocol>(actor: Actor<P>) -> irpc::Client<P::Rpc> {
    let (tx, mut rx) = tokio::sync::mpsc::channel(ACTOR_QUEUE);
    tokio::spawn(async move {
        while let Some(message) = rx.recv().await {
            // Each request is polled once here: one that finishes at once costs no task
            // (nor a box beyond its handler's); one that waits moves to a task of its own,
            // so it never holds up the next.
            let mut message = Some(message);
            std::future::poll_fn(|cx| {
                if let Some(message) = message.take() {
                    P::serve(message, &actor, cx);
                }
                Poll::Ready(())
            })
            .await;
        }
    });
    irpc::Client::local(tx)
}

/// The serving side of `P`'s irpc actor. Generated code hands it each message.
pub struct Actor<P> {
    entry: TypedEntry<P>,
}

impl<P: IrpcProtocol> Actor<P> {
    /// The actor of `P`'s namespace of `env`, unless `env` does not serve it in-process.
    pub(crate) fn new(env: OperationEnv) -> Option<Self> {
        Some(Actor {
            entry: env.typed_entry::<P>()?,
        })
    }

    /// Serve a query or mutation; a caller that stops waiting cancels the handler.
    pub fn unary<R>(&self, message: WithChannels<Call<R>, P::Rpc>, cx: &mut Context<'_>)
    where
        R: Operation<Protocol = P>,
        Call<R>:
            Channels<P::Rpc, Tx = oneshot::Sender<Result<R::Output, CallError>>, Rx = NoReceiver>,
    {
        let WithChannels {
            inner: Call { meta, request },
            tx,
            ..
        } = message;
        let mut served = match self.entry.call(meta, request.into()) {
            Ok(served) => served,
            Err(err) => return answer(tx, Err(err)),
        };
        if let Poll::Ready(result) = served.poll_first(cx) {
            return answer(tx, output::<R>(result));
        }
        match tokio::sync::oneshot::Sender::try_from(tx) {
            Ok(mut tx) => tokio::spawn(async move {
                tokio::select! {
                    biased;
                    result = served.finish() => { let _ = tx.send(output::<R>(result)); }
                    // The caller is gone: dropping `served` cancels the handler.
                    _ = tx.closed() => {}
                }
            }),
            Err(tx) => tokio::spawn(async move {
                let _ = tx.send(output::<R>(served.finish().await)).await;
            }),
        };
    }

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

    /// Serve a subscription; a consumer that goes away stops the producer.
    pub fn streaming<R>(&self, message: WithChannels<Call<R>, P::Rpc>, cx: &mut Context<'_>)
    where
        R: Operation<Protocol = P>,
        Call<R>: Channels<P::Rpc, Tx = mpsc::Sender<Result<R::Output, CallError>>, Rx = NoReceiver>,
    {
        let mut streaming = self.stream_into(message.inner, message.tx);
        if streaming.as_mut().poll(cx).is_pending() {
            tokio::spawn(streaming);
        }
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

    /// Run a subscription under the context its caller sent, its items sent on `tx`.
    fn stream_into<R>(
        &self,
        call: Call<R>,
        tx: mpsc::Sender<Result<R::Output, CallError>>,
    ) -> BoxFuture<'static, ()>
    where
        R: Operation<Protocol = P>,
    {
        let entry = self.entry.clone();
        let Call { meta, request } = call;
        Box::pin(send_items(
            async move {
                let items = entry.subscribe(meta, request.into()).await?;
                Ok(items.map(output::<R>).boxed())
            },
            tx,
        ))
    }
}

/// Send a subscription's items on `tx` as they come, until it ends, fails (the error is
/// its last item), or the consumer goes away (which stops the producer).
async fn send_items<T: Send + Sync + 'static>(
    items: impl Future<Output = Result<ItemStream<T>, CallError>>,
    tx: mpsc::Sender<Result<T, CallError>>,
) {
    let items = tokio::select! {
        _ = tx.closed() => return,
        items = items => items,
    };
    let mut items = match items {
        Ok(items) => items,
        Err(err) => {
            let _ = tx.send(Err(err)).await;
            return;
        }
    };
    loop {
        // An item that is ready goes straight out; only while waiting for the next is the
        // consumer watched (watching costs a lock of the stream per item), and a consumer
        // that left meanwhile fails the send.
        let item = match items.next().now_or_never() {
            Some(item) => item,
            None => tokio::select! {
                _ = tx.closed() => return,
                item = items.next() => item,
            },
        };
        let Some(item) = item else { return };
        let last = item.is_err();
        if tx.send(item).await.is_err() || last {
            return;
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

/// Answer an in-process request on its channel `tx`.
fn answer<T: Send + 'static>(tx: oneshot::Sender<T>, value: T) {
    match tokio::sync::oneshot::Sender::try_from(tx) {
        Ok(tx) => {
            let _ = tx.send(value);
        }
        // A channel of irpc's own remote handling, which sends asynchronously.
        Err(tx) => {
            tokio::spawn(async move {
                let _ = tx.send(value).await;
            });
        }
    }
}

/// Send a query or mutation of operation `R` over irpc; `wrap` makes its output `P`'s response.
pub fn send_unary<P, R>(
    client: &IrpcClient<P::Rpc>,
    call: Call<R>,
    wrap: fn(R::Output) -> P::Response,
) -> BoxFuture<'static, Result<P::Response, CallError>>
where
    P: IrpcProtocol,
    R: Operation<Protocol = P>,
    Call<R>: Channels<P::Rpc, Tx = oneshot::Sender<Result<R::Output, CallError>>, Rx = NoReceiver>,
    P::Rpc: From<Call<R>>,
    <P::Rpc as irpc::Service>::Message: From<WithChannels<Call<R>, P::Rpc>>,
    Result<R::Output, CallError>: irpc::RpcMessage,
{
    match &client.0 {
        // The boxed future holds the sender and the call, not irpc's `rpc` future: that one
        // has room for a QUIC request, and copying it into the box cost more than sending.
        ClientPath::Local(sender) => {
            let sender = sender.clone();
            Box::pin(async move {
                let (tx, rx) = oneshot::channel();
                sender.send((call, tx)).await.map_err(unreachable::<P>)?;
                rx.await.map_err(unreachable::<P>)?.map(wrap)
            })
        }
        ClientPath::Remote { client, turns } => {
            let sent = send_remote::<P>(client.clone(), turns.clone(), call.into());
            Box::pin(async move {
                oneshot::Receiver::<Result<R::Output, CallError>>::from(sent.await?)
                    .await
                    .map_err(unreachable::<P>)?
                    .map(wrap)
            })
        }
    }
}

/// Start a subscription of operation `R` over irpc.
pub fn send_streaming<P, R>(
    client: &IrpcClient<P::Rpc>,
    call: Call<R>,
    wrap: fn(R::Output) -> P::Response,
) -> BoxFuture<'static, Result<ResponseStream<P>, CallError>>
where
    P: IrpcProtocol,
    R: Operation<Protocol = P>,
    Call<R>: Channels<P::Rpc, Tx = mpsc::Sender<Result<R::Output, CallError>>, Rx = NoReceiver>,
    P::Rpc: From<Call<R>>,
    <P::Rpc as irpc::Service>::Message: From<WithChannels<Call<R>, P::Rpc>>,
    Result<R::Output, CallError>: irpc::RpcMessage,
{
    let started = match &client.0 {
        ClientPath::Local(sender) => {
            let sender = sender.clone();
            async move {
                let (tx, rx) = mpsc::channel(STREAM_BUFFER);
                sender.send((call, tx)).await.map_err(unreachable::<P>)?;
                Ok(rx)
            }
            .boxed()
        }
        ClientPath::Remote { client, turns } => {
            send_remote::<P>(client.clone(), turns.clone(), call.into())
                .map(|sent| sent.map(mpsc::Receiver::from))
                .boxed()
        }
    };
    Box::pin(async move {
        let receiver = started.await?;
        let items = futures::stream::unfold(Some(receiver), |receiver| async move {
            let mut receiver = receiver?;
            match receiver.recv().await {
                Ok(Some(item)) => Some((item, Some(receiver))),
                Ok(None) => None,
                Err(err) => Some((Err(unreachable::<P>(err)), None)),
            }
        });
        Ok(items.map(move |item| item.map(wrap)).boxed())
    })
}

/// Open a stream to the remote actor and send `request` on it, in turn with the
/// connection's other callers; the stream's receive side carries the answer.
async fn send_remote<P: IrpcProtocol>(
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

/// An irpc client as the service path sends through it. Generated code only passes it on.
pub struct IrpcClient<S: irpc::Service>(ClientPath<S>);

enum ClientPath<S: irpc::Service> {
    /// Tokio channels to an actor in this process.
    Local(irpc::LocalSender<S>),
    /// A QUIC connection to another node's listener; each request takes a turn
    /// (`quic::Turns`) to open its stream and write itself in irpc's format.
    Remote {
        client: irpc::Client<S>,
        turns: Arc<Turns>,
    },
}

impl<S: irpc::Service> IrpcClient<S> {
    fn new(client: irpc::Client<S>) -> Self {
        IrpcClient(match client.as_local() {
            Some(sender) => ClientPath::Local(sender),
            None => ClientPath::Remote {
                client,
                turns: Arc::default(),
            },
        })
    }
}

/// A [`Dispatch`] that sends every request through an irpc client.
struct IrpcDispatch<P: IrpcProtocol> {
    client: IrpcClient<P::Rpc>,
}

impl<P: IrpcProtocol> Dispatch<P> for IrpcDispatch<P> {
    fn call(
        &self,
        ctx: OperationContext,
        request: P,
    ) -> BoxFuture<'static, Result<P::Response, CallError>> {
        P::send(&self.client, CallMeta::of(&ctx), request)
    }

    fn subscribe(
        &self,
        ctx: OperationContext,
        request: P,
    ) -> BoxFuture<'static, Result<ResponseStream<P>, CallError>> {
        P::send_subscribe(&self.client, CallMeta::of(&ctx), request)
    }
}

/// A service reached through an irpc client, ready for
/// [`OperationEnvBuilder::local`](crate::OperationEnvBuilder::local): typed calls cross as
/// they are, `invoke` converts at this boundary. Made by the `service` function
/// `#[alk_service]` generates.
pub struct IrpcService(LocalService);

impl From<IrpcService> for LocalService {
    fn from(service: IrpcService) -> Self {
        service.0
    }
}

impl IrpcService {
    /// Reach protocol `P` through `client`: in-process channels or a QUIC connection.
    pub fn new<P: IrpcProtocol>(client: irpc::Client<P::Rpc>) -> Self {
        IrpcService(LocalService::new::<P>(IrpcDispatch::<P> {
            client: IrpcClient::new(client),
        }))
    }
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

/// `err` and its causes, one after the other: irpc's errors say little at the top; the
/// cause (such as the peer's reason for closing) is further down the chain.
fn error_chain(err: &dyn std::error::Error) -> String {
    let mut reason = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        reason.push_str(": ");
        reason.push_str(&cause.to_string());
        source = cause.source();
    }
    reason
}

fn unreachable<P: Protocol>(err: impl std::error::Error) -> CallError {
    CallError::unavailable(format!(
        "the `{}` service is unreachable: {}",
        P::NAMESPACE,
        error_chain(&err)
    ))
}
