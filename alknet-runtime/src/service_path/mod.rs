//! The irpc service path (SPEC §8): a service as an irpc actor, reached through tokio
//! channels in-process or, with the `quic` feature, postcard over QUIC, mounted in an
//! [`OperationEnv`] like any other.
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
use std::task::{Context, Poll};

use futures::future::BoxFuture;
use futures::{FutureExt, StreamExt};
use irpc::channel::{mpsc, none::NoReceiver, oneshot};
use irpc::{Channels, WithChannels};
use serde::{Deserialize, Serialize};

#[cfg(feature = "quic")]
mod listener;
#[cfg(feature = "quic")]
mod remote;

#[cfg(feature = "quic")]
pub use listener::{IrpcLimits, IrpcListener, IrpcListenerBuilder, IrpcServing, alpn};
#[cfg(feature = "quic")]
pub use remote::{IrpcLink, IrpcPeer, IrpcTarget, connect, connect_following, connect_linked};

pub use crate::CallMeta;
use crate::env::output;
use crate::{
    CallError, Dispatch, ItemStream, LocalService, Operation, OperationContext, OperationEnv,
    Protocol, ResponseStream, TypedEntry,
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
    type Rpc: irpc::Service;

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
    #[cfg(feature = "quic")]
    fn serve_remote(
        request: Self::Rpc,
        send: irpc::rpc::noq::SendStream,
        actor: &Actor<Self>,
        peer: IrpcPeer,
    ) -> BoxFuture<'static, ()>;
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
        #[cfg(not(feature = "quic"))]
        ClientPath::Elsewhere => Box::pin(std::future::ready(Err(no_quic::<P>()))),
        #[cfg(feature = "quic")]
        ClientPath::Remote { client, turns } => {
            let sent = remote::send_remote::<P>(client.clone(), turns.clone(), call.into());
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
        #[cfg(not(feature = "quic"))]
        ClientPath::Elsewhere => {
            std::future::ready(Err::<mpsc::Receiver<_>, _>(no_quic::<P>())).boxed()
        }
        #[cfg(feature = "quic")]
        ClientPath::Remote { client, turns } => {
            remote::send_remote::<P>(client.clone(), turns.clone(), call.into())
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

/// An irpc client as the service path sends through it. Generated code only passes it on.
pub struct IrpcClient<S: irpc::Service>(ClientPath<S>);

enum ClientPath<S: irpc::Service> {
    /// Tokio channels to an actor in this process.
    Local(irpc::LocalSender<S>),
    /// A QUIC connection to another node's listener; each request takes a turn
    /// (`quic::Turns`) to open its stream and write itself in irpc's format.
    #[cfg(feature = "quic")]
    Remote {
        client: irpc::Client<S>,
        turns: std::sync::Arc<crate::quic::Turns>,
    },
    /// A client of another process in a build without `quic` (irpc's `rpc` feature turned
    /// on by another crate): every call fails.
    #[cfg(not(feature = "quic"))]
    Elsewhere,
}

impl<S: irpc::Service> IrpcClient<S> {
    fn new(client: irpc::Client<S>) -> Self {
        IrpcClient(match client.as_local() {
            Some(sender) => ClientPath::Local(sender),
            #[cfg(feature = "quic")]
            None => ClientPath::Remote {
                client,
                turns: Default::default(),
            },
            #[cfg(not(feature = "quic"))]
            None => ClientPath::Elsewhere,
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
    /// Reach protocol `P` through `client`: in-process channels or (feature `quic`) a QUIC
    /// connection.
    pub fn new<P: IrpcProtocol>(client: irpc::Client<P::Rpc>) -> Self {
        IrpcService(LocalService::new::<P>(IrpcDispatch::<P> {
            client: IrpcClient::new(client),
        }))
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

/// Why a client of another process cannot be used in this build.
#[cfg(not(feature = "quic"))]
fn no_quic<P: Protocol>() -> CallError {
    CallError::unavailable(format!(
        "the `{}` service's irpc client is of another process, and this build of alknet-runtime has no `quic` feature to reach it",
        P::NAMESPACE
    ))
}

fn unreachable<P: Protocol>(err: impl std::error::Error) -> CallError {
    CallError::unavailable(format!(
        "the `{}` service is unreachable: {}",
        P::NAMESPACE,
        error_chain(&err)
    ))
}
