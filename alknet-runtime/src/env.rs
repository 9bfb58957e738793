//! [`OperationEnv`]: namespace + operation -> invoke(input) -> [`ResponseEnvelope`], whatever
//! path serves the operation.

use std::fmt;
use std::future::Future;
use std::net::IpAddr;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::future::BoxFuture;
use futures::stream::BoxStream;
use futures::{FutureExt, Stream, StreamExt};
use rustc_hash::FxHashMap;
use serde_json::{Map, Value};
use tokio::time::Instant;

use crate::context::ContextParts;
use crate::policy::{Admitting, Forward, NodePolicy, Route};
use crate::service::{Backend, TypedBackend};
use crate::{
    CallError, Identity, ItemStream, LocalService, Operation, OperationContext, OperationSpec,
    Protocol, RequestId, ResponseEnvelope, ServiceSpec, StreamingOperation, UnaryOperation,
};

/// Namespaces the runtime keeps for its own operations.
const RESERVED_NAMESPACES: [&str; 1] = ["services"];

/// The environment every operation is called through.
///
/// Built once per node with [`OperationEnv::builder`]; cheap to clone. Adapters call it on
/// behalf of outside callers ([`OperationEnv::with_caller`]); handlers call it through
/// [`OperationContext::env`] for nested calls. Which path serves a namespace is decided at
/// assembly, never by the handlers.
///
/// ```
/// use alknet_runtime::prelude::*;
/// use alknet_example::{EchoProtocol, EchoService};
/// use serde_json::json;
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let env = OperationEnv::builder()
///     .local(EchoProtocol::local(EchoService::default()))
///     .build()
///     .unwrap();
///
/// // JSON, as adapters call it:
/// let reply = env.invoke("echo", "say", json!({"text": "hi"})).await;
/// assert_eq!(reply.result.unwrap(), json!({"text": "hi", "length": 2}));
///
/// // Typed, with no JSON on the local path:
/// let echo = alknet_example::EchoClient::new(env.clone());
/// assert_eq!(echo.say("hi".into()).await.unwrap().text, "hi");
/// # }
/// ```
#[derive(Clone)]
pub struct OperationEnv {
    shared: Arc<EnvShared>,
    origin: Origin,
}

/// Who calls through an [`OperationEnv`].
#[derive(Clone)]
pub(crate) enum Origin {
    /// An outside caller, as an adapter describes it.
    External(Arc<ExternalCaller>),
    /// A handler, making a nested call on behalf of its own call.
    Nested(OperationContext),
}

pub(crate) struct ExternalCaller {
    identity: Option<Arc<Identity>>,
    peer_addr: Option<IpAddr>,
    forwarded_for: Option<Arc<str>>,
    metadata: Option<Arc<Map<String, Value>>>,
    deadline: Option<Instant>,
}

/// An outside caller, as an adapter resolved it: who it is and what it sent along.
///
/// ```
/// use std::time::Duration;
/// use alknet_runtime::{Caller, Identity};
///
/// let caller = Caller::new()
///     .identity(Identity::new("user:ada").with_scopes(["orders:read"]))
///     .peer_addr("203.0.113.7".parse().unwrap())
///     .timeout(Duration::from_secs(5));
/// ```
#[derive(Debug, Clone, Default)]
pub struct Caller {
    identity: Option<Arc<Identity>>,
    peer_addr: Option<IpAddr>,
    forwarded_for: Option<String>,
    metadata: Map<String, Value>,
    deadline: Option<Instant>,
}

impl Caller {
    /// An anonymous caller with no deadline.
    pub fn new() -> Self {
        Self::default()
    }

    /// The caller's authenticated identity: an `Identity`, or an `Arc<Identity>` an
    /// identity provider shares without copying.
    pub fn identity(mut self, identity: impl Into<Arc<Identity>>) -> Self {
        self.identity = Some(identity.into());
        self
    }

    /// The network address the call came from, as the transport saw it (the TCP or QUIC
    /// peer, the UDP source) — never a header the client wrote. The node's rate limits per
    /// IP address count against it.
    pub fn peer_addr(mut self, addr: IpAddr) -> Self {
        self.peer_addr = Some(addr);
        self
    }

    /// Who the call was forwarded for (audit only): set by the call protocol when another
    /// node forwards a call. A forwarded call is never forwarded again
    /// ([`NodePolicy`](crate::NodePolicy)), so an adapter sets it only for a peer whose key
    /// is a cluster node ([`KeyHolder::cluster`](crate::KeyHolder::cluster)) — never for
    /// what an outside caller claims.
    pub fn forwarded_for(mut self, forwarded_for: impl Into<String>) -> Self {
        self.forwarded_for = Some(forwarded_for.into());
        self
    }

    /// Attach a metadata entry, such as an `x-request-id` the client sent.
    pub fn metadata(mut self, key: impl Into<String>, value: impl Into<Value>) -> Self {
        self.metadata.insert(key.into(), value.into());
        self
    }

    /// The instant by which calls must be done.
    pub fn deadline(mut self, deadline: Instant) -> Self {
        self.deadline = Some(deadline);
        self
    }

    /// Calls must be done within `timeout` from now.
    pub fn timeout(self, timeout: Duration) -> Self {
        self.deadline(Instant::now() + timeout)
    }
}

pub(crate) struct EnvShared {
    pub(crate) services: Vec<ServiceEntry>,
    by_namespace: FxHashMap<String, usize>,
    /// Admits outside calls: forwarding policy and rate limits.
    policy: Option<NodePolicy>,
}

pub(crate) struct ServiceEntry {
    pub(crate) spec: ServiceSpec,
    authority: Option<Arc<Identity>>,
    by_name: FxHashMap<String, usize>,
    pub(crate) backend: Arc<dyn Backend>,
}

/// Why an [`OperationEnv`] could not be built.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BuildError {
    /// Two services were mounted on one namespace.
    DuplicateNamespace(String),
    /// A service used a namespace the runtime keeps for itself.
    ReservedNamespace(String),
    /// A namespace could not be routed to a remote node.
    Route {
        /// The namespace.
        namespace: String,
        /// Why.
        reason: String,
    },
}

impl fmt::Display for BuildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BuildError::DuplicateNamespace(ns) => {
                write!(
                    f,
                    "two services are mounted on the namespace `{ns}`; mount each namespace once"
                )
            }
            BuildError::ReservedNamespace(ns) => {
                write!(
                    f,
                    "the namespace `{ns}` is reserved for the runtime's own operations"
                )
            }
            BuildError::Route { namespace, reason } => {
                write!(f, "cannot route `{namespace}`: {reason}")
            }
        }
    }
}

impl std::error::Error for BuildError {}

/// Assembles an [`OperationEnv`]: which path serves each namespace.
#[derive(Default)]
pub struct OperationEnvBuilder {
    pub(crate) services: Vec<ServiceEntry>,
    pub(crate) errors: Vec<BuildError>,
    policy: Option<NodePolicy>,
}

impl OperationEnvBuilder {
    /// Serve a service in this process, with no serialization on the typed path.
    pub fn local(mut self, service: LocalService) -> Self {
        self.mount(service.spec, service.backend);
        self
    }

    /// Reach a service through an irpc client: tokio channels to an actor in this process,
    /// or postcard over QUIC to another node. Typed calls cross without JSON; `invoke`
    /// converts at this boundary.
    #[cfg(feature = "irpc")]
    pub fn service(mut self, service: crate::service_path::IrpcService) -> Self {
        self.mount(service.0.spec, service.0.backend);
        self
    }

    /// Admit every outside call with `policy` — the node's forwarding policy and rate
    /// limits — after its identity and access are checked. Nested calls are not subject to
    /// it. See [`NodePolicy`].
    pub fn policy(mut self, policy: NodePolicy) -> Self {
        self.policy = Some(policy);
        self
    }

    pub(crate) fn mount(&mut self, spec: ServiceSpec, backend: Arc<dyn Backend>) {
        if RESERVED_NAMESPACES.contains(&spec.namespace.as_str()) {
            self.errors
                .push(BuildError::ReservedNamespace(spec.namespace.clone()));
        }
        if self
            .services
            .iter()
            .any(|s| s.spec.namespace == spec.namespace)
        {
            self.errors
                .push(BuildError::DuplicateNamespace(spec.namespace.clone()));
        }
        let by_name = spec
            .operations
            .iter()
            .enumerate()
            .map(|(index, op)| (op.name.clone(), index))
            .collect();
        self.services.push(ServiceEntry {
            authority: spec.authority.clone().map(Arc::new),
            spec,
            by_name,
            backend,
        });
    }

    /// Finish assembly. Fails on the first mistake found, such as a namespace mounted twice.
    pub fn build(mut self) -> Result<OperationEnv, BuildError> {
        if !self.errors.is_empty() {
            return Err(self.errors.remove(0));
        }
        Ok(self.finish())
    }

    fn finish(self) -> OperationEnv {
        let by_namespace = self
            .services
            .iter()
            .enumerate()
            .map(|(index, s)| (s.spec.namespace.clone(), index))
            .collect();
        let shared = Arc::new(EnvShared {
            services: self.services,
            by_namespace,
            policy: self.policy,
        });
        OperationEnv::from_parts(
            shared,
            Origin::External(Arc::new(ExternalCaller {
                identity: None,
                peer_addr: None,
                forwarded_for: None,
                metadata: None,
                deadline: None,
            })),
        )
    }
}

impl OperationEnv {
    /// Start assembling an environment.
    pub fn builder() -> OperationEnvBuilder {
        OperationEnvBuilder::default()
    }

    /// An env of one service. Cannot fail: the macro already refused reserved namespaces,
    /// and one service cannot collide with another.
    #[cfg(feature = "irpc")]
    pub(crate) fn single(service: LocalService) -> Self {
        OperationEnv::builder().local(service).finish()
    }

    pub(crate) fn from_parts(shared: Arc<EnvShared>, origin: Origin) -> Self {
        OperationEnv { shared, origin }
    }

    /// The same environment, calling on behalf of an outside `caller`. Adapters use this
    /// once per request, after resolving who is asking.
    pub fn with_caller(&self, caller: Caller) -> OperationEnv {
        let metadata = (!caller.metadata.is_empty()).then(|| Arc::new(caller.metadata));
        OperationEnv::from_parts(
            self.shared.clone(),
            Origin::External(Arc::new(ExternalCaller {
                identity: caller.identity,
                peer_addr: caller.peer_addr,
                forwarded_for: caller.forwarded_for.map(Arc::from),
                metadata,
                deadline: caller.deadline,
            })),
        )
    }

    /// Every mounted service.
    pub fn services(&self) -> impl Iterator<Item = &ServiceSpec> {
        self.shared.services.iter().map(|s| &s.spec)
    }

    /// Every operation of every mounted service, internal ones included.
    pub fn operations(&self) -> impl Iterator<Item = &OperationSpec> {
        self.services().flat_map(|s| s.operations.iter())
    }

    /// The policy that admits this env's outside calls, if it has one.
    #[cfg_attr(not(feature = "http"), allow(dead_code))]
    pub(crate) fn policy(&self) -> Option<&NodePolicy> {
        self.shared.policy.as_ref()
    }

    /// The spec of `namespace/operation`, if it is mounted.
    pub fn spec(&self, namespace: &str, operation: &str) -> Option<&OperationSpec> {
        let (service, index) = self.lookup(namespace, operation)?;
        Some(&self.shared.services[service].spec.operations[index])
    }

    /// Call a query or mutation with JSON input.
    ///
    /// A missing or mistyped input field is `INVALID_INPUT` naming the field; an unknown
    /// operation is `NOT_FOUND`; a subscription is `INVALID_OPERATION_TYPE`. `null` input
    /// stands for `{}`.
    pub async fn invoke(&self, namespace: &str, operation: &str, input: Value) -> ResponseEnvelope {
        let request_id = RequestId::next();
        let result = match self.start_json(request_id, namespace, operation, input) {
            Ok((end, call)) => run(&end.0, call).await,
            Err(err) => Err(err),
        };
        ResponseEnvelope { request_id, result }
    }

    /// Resolve, admit and decode a JSON call: everything before its handler runs.
    fn start_json(
        &self,
        request_id: RequestId,
        namespace: &str,
        operation: &str,
        input: Value,
    ) -> Result<(EndOnDrop, BoxFuture<'_, Result<Value, CallError>>), CallError> {
        let (service, index) = self.resolve(namespace, operation)?;
        let entry = &self.shared.services[service];
        if entry.spec.operations[index].is_subscription() {
            return Err(wrong_kind(
                &entry.spec.operations[index],
                "invoked",
                "subscribe to it",
            ));
        }
        let (ctx, route) = self.admit(request_id, service, index)?;
        let end = EndOnDrop(ctx);
        let input = no_input_as_empty(input);
        let call = match route {
            Route::Local => entry.backend.invoke(end.0.clone(), index, input),
            Route::Forward(forward) => forward.invoke(end.0.clone(), input),
        };
        Ok((end, call))
    }

    /// Subscribe to a subscription with JSON input. Errors before the first item (unknown
    /// operation, access, input) come as the stream's only item.
    pub async fn subscribe(&self, namespace: &str, operation: &str, input: Value) -> Subscription {
        let request_id = RequestId::next();
        let items = match self
            .subscribe_json(request_id, namespace, operation, input)
            .await
        {
            Ok(items) => items,
            Err(err) => futures::stream::once(futures::future::ready(Err(err))).boxed(),
        };
        Subscription { request_id, items }
    }

    async fn subscribe_json(
        &self,
        request_id: RequestId,
        namespace: &str,
        operation: &str,
        input: Value,
    ) -> Result<BoxStream<'static, Result<Value, CallError>>, CallError> {
        let (service, index) = self.resolve(namespace, operation)?;
        let entry = &self.shared.services[service];
        if !entry.spec.operations[index].is_subscription() {
            return Err(wrong_kind(
                &entry.spec.operations[index],
                "subscribed to",
                "invoke it",
            ));
        }
        let (ctx, route) = self.admit(request_id, service, index)?;
        let end = EndOnDrop(ctx);
        let input = no_input_as_empty(input);
        let subscription = match route {
            Route::Local => entry.backend.subscribe(end.0.clone(), index, input),
            Route::Forward(forward) => forward.subscribe(end.0.clone(), input),
        };
        let items = run(&end.0, subscription).await?;
        Ok(Guarded::new(end, items).boxed())
    }

    /// Call a query or mutation with its typed request. On the local path no JSON is
    /// involved; on other paths the request is encoded at the boundary.
    pub async fn call<R: UnaryOperation>(&self, request: R) -> Result<R::Output, CallError> {
        let request_id = RequestId::next();
        let service = self.resolve_namespace(<R::Protocol as Protocol>::NAMESPACE)?;
        if let Some(typed) = self.typed::<R::Protocol>(service) {
            let (ctx, route) = self.admit(request_id, service, R::INDEX)?;
            let forward = match route {
                Route::Local => {
                    // Run in this future rather than `finish`'s: one future fewer to move.
                    let ServedCall { end, call } = ServedCall::start(typed, ctx, request.into());
                    return output::<R>(run(&end.0, call).await);
                }
                Route::Forward(forward) => forward,
            };
            let input = encode_request(&request)?;
            let end = EndOnDrop(ctx);
            return decode_output(run(&end.0, forward.invoke(end.0.clone(), input)).await?);
        }
        let input = encode_request(&request)?;
        let namespace = &self.shared.services[service].spec.namespace;
        let (end, call) = self.start_json(request_id, namespace, R::NAME, input)?;
        decode_output(run(&end.0, call).await?)
    }

    /// Subscribe with a typed request; items arrive typed.
    pub async fn stream<R: StreamingOperation>(
        &self,
        request: R,
    ) -> Result<ItemStream<R::Output>, CallError> {
        let request_id = RequestId::next();
        let service = self.resolve_namespace(<R::Protocol as Protocol>::NAMESPACE)?;
        if let Some(typed) = self.typed::<R::Protocol>(service) {
            let (ctx, route) = self.admit(request_id, service, R::INDEX)?;
            let ctx = match route {
                Route::Local => ctx,
                Route::Forward(forward) => {
                    let input = encode_request(&request)?;
                    let items = forwarded_subscription(ctx, forward, input).await?;
                    return Ok(Box::pin(items.map(|item| item.and_then(decode_output))));
                }
            };
            let items = run_subscription(typed, ctx, request.into()).await?;
            return Ok(Box::pin(items.map(output::<R>)));
        }
        let input = encode_request(&request)?;
        let namespace = &self.shared.services[service].spec.namespace;
        let items = self
            .subscribe_json(request_id, namespace, R::NAME, input)
            .await?;
        Ok(Box::pin(items.map(|item| item.and_then(decode_output))))
    }

    /// The typed backend of namespace `service`, if protocol `P` serves it.
    fn typed<P: Protocol>(&self, service: usize) -> Option<&TypedBackend<P>> {
        self.shared.services[service]
            .backend
            .as_any()
            .downcast_ref::<TypedBackend<P>>()
    }

    /// Where this env dispatches `P`'s namespace itself (to a handler or a client of `P`):
    /// the namespace's index, which an actor keeps so that no call it serves looks it up.
    #[cfg(feature = "irpc")]
    pub(crate) fn local_service<P: Protocol>(&self) -> Option<usize> {
        let service = self.resolve_namespace(P::NAMESPACE).ok()?;
        self.typed::<P>(service).map(|_| service)
    }

    /// Dispatch a call that arrived over the irpc path for namespace `service` (from
    /// [`local_service`](Self::local_service)), under the context its caller sent.
    #[cfg(feature = "irpc")]
    pub(crate) fn serve_call<P: Protocol>(
        &self,
        service: usize,
        meta: crate::service_path::CallMeta,
        index: usize,
        request: P,
    ) -> Result<ServedCall<P>, CallError> {
        let (typed, ctx) = self.adopt::<P>(service, meta, index)?;
        Ok(ServedCall::start(typed, ctx, request))
    }

    /// Start a subscription that arrived over the irpc path.
    #[cfg(feature = "irpc")]
    pub(crate) async fn serve_subscription<P: Protocol>(
        &self,
        service: usize,
        meta: crate::service_path::CallMeta,
        index: usize,
        request: P,
    ) -> Result<BoxStream<'static, Result<P::Response, CallError>>, CallError> {
        let (typed, ctx) = self.adopt::<P>(service, meta, index)?;
        Ok(run_subscription(typed, ctx, request).await?.boxed())
    }

    /// The context of a call whose caller admitted it elsewhere and sent `meta` along. The
    /// operation's access control is checked again, against the identity `meta` carries.
    #[cfg(feature = "irpc")]
    fn adopt<P: Protocol>(
        &self,
        service: usize,
        meta: crate::service_path::CallMeta,
        index: usize,
    ) -> Result<(&TypedBackend<P>, OperationContext), CallError> {
        let typed = self.typed::<P>(service).ok_or_else(|| {
            CallError::not_found(format!("`{}` is not served by this node", P::NAMESPACE))
        })?;
        if index >= self.shared.services[service].spec.operations.len() {
            return Err(CallError::not_found(format!(
                "`{}` has no operation number {index}",
                P::NAMESPACE
            )));
        }
        let spec = &self.shared.services[service].spec.operations[index];
        spec.access.check(meta.identity.as_deref(), &spec.id)?;
        let parts = ContextParts {
            request_id: meta.request_id,
            parent: None,
            parent_request_id: meta.parent_request_id,
            identity: meta.identity,
            forwarded_for: meta.forwarded_for,
            metadata: None,
            deadline: meta
                .timeout_ms
                .map(|ms| Instant::now() + Duration::from_millis(ms)),
        };
        Ok((
            typed,
            OperationContext::new(self.shared.clone(), service, index, parts),
        ))
    }

    /// A context for `namespace/operation` outside any call, admitted as this env's caller
    /// would be: for calling a handler directly, as unit tests and benchmarks do.
    ///
    /// ```
    /// use alknet_example::{EchoHandler, EchoProtocol, EchoService, Say};
    /// use alknet_runtime::OperationEnv;
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let service = EchoService::default();
    /// let env = OperationEnv::builder().local(EchoProtocol::local(EchoService::default())).build().unwrap();
    /// let ctx = env.context("echo", "say").unwrap();
    /// let echo = service.say(&ctx, Say { text: "direct".into() }).await.unwrap();
    /// assert_eq!(echo.length, 6);
    /// # }
    /// ```
    pub fn context(&self, namespace: &str, operation: &str) -> Result<OperationContext, CallError> {
        let (service, index) = self.resolve(namespace, operation)?;
        Ok(self.admit(RequestId::next(), service, index)?.0)
    }

    fn lookup(&self, namespace: &str, operation: &str) -> Option<(usize, usize)> {
        let service = *self.shared.by_namespace.get(namespace)?;
        let index = *self.shared.services[service].by_name.get(operation)?;
        Some((service, index))
    }

    fn resolve(&self, namespace: &str, operation: &str) -> Result<(usize, usize), CallError> {
        self.lookup(namespace, operation)
            .ok_or_else(|| no_such_operation(namespace, operation))
    }

    fn resolve_namespace(&self, namespace: &str) -> Result<usize, CallError> {
        self.shared
            .by_namespace
            .get(namespace)
            .copied()
            .ok_or_else(|| {
                CallError::not_found(format!(
                    "no service is mounted on the namespace `{namespace}`"
                ))
            })
    }

    /// Decide whether this env's caller may call operation `index` of `service`, and if so
    /// make the call's context and say where it runs: here, or — for an outside caller
    /// the node's policy forwards — on a peer.
    fn admit(
        &self,
        request_id: RequestId,
        service: usize,
        index: usize,
    ) -> Result<(OperationContext, Route), CallError> {
        let entry = &self.shared.services[service];
        let spec = &entry.spec.operations[index];
        let parts = match &self.origin {
            Origin::External(caller) => {
                if !spec.is_external() {
                    return Err(no_such_operation(&spec.namespace, &spec.name));
                }
                ContextParts {
                    request_id,
                    parent: None,
                    parent_request_id: None,
                    identity: caller.identity.clone(),
                    forwarded_for: caller.forwarded_for.clone(),
                    metadata: caller.metadata.clone(),
                    deadline: caller.deadline,
                }
            }
            Origin::Nested(parent) => {
                let calling = &self.shared.services[parent.service_index()];
                if !calling.spec.may_call(&spec.namespace, &spec.name) {
                    return Err(CallError::not_found(format!(
                        "the service `{}` may not call `{}`: add it to `calls` in its #[alk_service]",
                        calling.spec.namespace, spec.id
                    )));
                }
                ContextParts {
                    request_id,
                    parent: Some(parent.clone()),
                    parent_request_id: Some(parent.request_id()),
                    identity: calling.authority.clone().or_else(|| parent.identity_arc()),
                    forwarded_for: parent.forwarded_for_arc(),
                    metadata: None,
                    deadline: parent.deadline(),
                }
            }
        };
        spec.access.check(parts.identity.as_deref(), &spec.id)?;
        let route = match (&self.origin, &self.shared.policy) {
            (Origin::External(caller), Some(policy)) => policy.admit(Admitting {
                operation: &spec.id,
                identity: parts.identity.as_deref(),
                peer_addr: caller.peer_addr,
                forwarded: parts.forwarded_for.is_some(),
            })?,
            _ => Route::Local,
        };
        let deadline = match (parts.deadline, spec.timeout) {
            (deadline, None) => deadline,
            (None, Some(timeout)) => Some(Instant::now() + timeout),
            (Some(deadline), Some(timeout)) => Some(deadline.min(Instant::now() + timeout)),
        };
        let ctx = OperationContext::new(
            self.shared.clone(),
            service,
            index,
            ContextParts { deadline, ..parts },
        );
        Ok((ctx, route))
    }
}

impl fmt::Debug for OperationEnv {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OperationEnv")
            .field(
                "namespaces",
                &self.services().map(|s| &s.namespace).collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

/// The items of a subscription started with [`OperationEnv::subscribe`].
///
/// Ends after the first error. Dropping it stops the producer and cancels the
/// subscription's nested calls.
pub struct Subscription {
    request_id: RequestId,
    items: BoxStream<'static, Result<Value, CallError>>,
}

impl Subscription {
    /// The subscription's request id.
    pub fn request_id(&self) -> RequestId {
        self.request_id
    }
}

impl Stream for Subscription {
    type Item = Result<Value, CallError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.items.poll_next_unpin(cx)
    }
}

impl fmt::Debug for Subscription {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Subscription")
            .field("request_id", &self.request_id)
            .finish_non_exhaustive()
    }
}

/// Runs a call's future under its context: the deadline, cancellation by the parent, a
/// panic turned into `INTERNAL`, and undeclared error codes turned into `INTERNAL`.
async fn run<'a, T: Send + 'a>(
    ctx: &'a OperationContext,
    call: BoxFuture<'a, Result<T, CallError>>,
) -> Result<T, CallError> {
    // Most calls have neither a deadline nor a parent; only those that do pay for the
    // timer and the cancellation wait, boxed so the common future stays small.
    let call = if ctx.deadline().is_none() && ctx.parent().is_none() {
        call
    } else {
        Box::pin(bounded(ctx, call))
    };
    settle(ctx, AssertUnwindSafe(call).catch_unwind().await)
}

/// What a call's caller receives for its `outcome`: a panic and an undeclared error code
/// become `INTERNAL`.
fn settle<T>(
    ctx: &OperationContext,
    outcome: std::thread::Result<Result<T, CallError>>,
) -> Result<T, CallError> {
    match outcome {
        Ok(result) => result.map_err(|err| vet_error(ctx, err)),
        Err(panic) => Err(panicked(ctx, panic)),
    }
}

/// A typed call dispatched under its context, the call ending when this is dropped.
/// A local call runs it to its end at once; the irpc actor polls it once where the request
/// arrived and gives it a task of its own only if it has to wait: most calls are done at
/// their first poll and never need one.
pub(crate) struct ServedCall<P: Protocol> {
    end: EndOnDrop,
    call: BoxFuture<'static, Result<P::Response, CallError>>,
}

impl<P: Protocol> ServedCall<P> {
    fn start(typed: &TypedBackend<P>, ctx: OperationContext, request: P) -> Self {
        let end = EndOnDrop(ctx);
        let call = typed.dispatch.call(end.0.clone(), request);
        ServedCall { end, call }
    }

    /// Poll the call once, guarded against panics and undeclared codes as [`run`] guards
    /// it. As in `run`, a call that is done at its first poll answers whatever its
    /// deadline; the deadline is watched from [`finish`](Self::finish) on. A call that
    /// arrived over irpc has no parent in this process, so there is no parent to watch.
    #[cfg(feature = "irpc")]
    pub(crate) fn poll_once(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Result<P::Response, CallError>> {
        match std::panic::catch_unwind(AssertUnwindSafe(|| self.call.as_mut().poll(cx))) {
            Ok(Poll::Pending) => Poll::Pending,
            Ok(Poll::Ready(result)) => Poll::Ready(settle(&self.end.0, Ok(result))),
            Err(panic) => Poll::Ready(settle(&self.end.0, Err(panic))),
        }
    }

    /// Run the call to its end under its context (after a first poll that found it
    /// waiting, or without one).
    pub(crate) async fn finish(self) -> Result<P::Response, CallError> {
        run(&self.end.0, self.call).await
    }
}

/// `call`, ended early by its deadline or by its parent call ending.
async fn bounded<T>(
    ctx: &OperationContext,
    call: BoxFuture<'_, Result<T, CallError>>,
) -> Result<T, CallError> {
    let call = async {
        match ctx.deadline() {
            None => call.await,
            Some(deadline) => tokio::time::timeout_at(deadline, call)
                .await
                .unwrap_or_else(|_| Err(deadline_passed(ctx))),
        }
    };
    match ctx.parent() {
        None => call.await,
        Some(_) => {
            let token = ctx.cancellation_token();
            tokio::select! {
                biased;
                _ = token.cancelled() => Err(parent_ended_error(ctx)),
                outcome = call => outcome,
            }
        }
    }
}

/// A subscription a peer serves, under `ctx`; the call lasts as long as the stream.
async fn forwarded_subscription(
    ctx: OperationContext,
    forward: Forward,
    input: Value,
) -> Result<Guarded<crate::service::ValueStream>, CallError> {
    let end = EndOnDrop(ctx);
    let items = run(&end.0, forward.subscribe(end.0.clone(), input)).await?;
    Ok(Guarded::new(end, items))
}

/// Start a typed subscription under `ctx`; the call lasts as long as the returned stream.
async fn run_subscription<P: Protocol>(
    typed: &TypedBackend<P>,
    ctx: OperationContext,
    request: P,
) -> Result<Guarded<crate::ResponseStream<P>>, CallError> {
    let end = EndOnDrop(ctx);
    let subscription = typed.dispatch.subscribe(end.0.clone(), request);
    let items = run(&end.0, subscription).await?;
    Ok(Guarded::new(end, items))
}

/// Ends a call when dropped: whatever nested calls it left behind are cancelled, whether it
/// finished, failed, or was dropped or aborted by its caller. A subscription hands it to
/// its stream, so the call lasts as long as the stream.
struct EndOnDrop(OperationContext);

impl Drop for EndOnDrop {
    fn drop(&mut self) {
        self.0.cancel();
    }
}

/// A subscription's item stream under its context: panics and undeclared codes become
/// `INTERNAL`, the stream ends after an error, when the parent call is cancelled
/// (`ABORTED`) or when its deadline passes (`TIMEOUT`), and dropping it cancels the
/// subscription's nested calls.
struct Guarded<S> {
    end: EndOnDrop,
    items: Option<S>,
    /// For a nested subscription: the parent call ending.
    parent_ended: Option<Pin<Box<tokio_util::sync::WaitForCancellationFutureOwned>>>,
    /// For a subscription with a deadline: its passing.
    deadline: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl<S> Guarded<S> {
    fn new(end: EndOnDrop, items: S) -> Self {
        let parent_ended = end
            .0
            .parent()
            .map(|parent| Box::pin(parent.cancellation_token().cancelled_owned()));
        let deadline = end
            .0
            .deadline()
            .map(|deadline| Box::pin(tokio::time::sleep_until(deadline)));
        Guarded {
            end,
            items: Some(items),
            parent_ended,
            deadline,
        }
    }
}

impl<T, S: Stream<Item = Result<T, CallError>> + Unpin> Stream for Guarded<S> {
    type Item = Result<T, CallError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        let Some(items) = this.items.as_mut() else {
            return Poll::Ready(None);
        };
        let ctx = &this.end.0;
        if let Some(parent_ended) = this.parent_ended.as_mut()
            && parent_ended.as_mut().poll(cx).is_ready()
        {
            this.items = None;
            ctx.cancel();
            return Poll::Ready(Some(Err(parent_ended_error(ctx))));
        }
        if let Some(deadline) = this.deadline.as_mut()
            && deadline.as_mut().poll(cx).is_ready()
        {
            this.items = None;
            ctx.cancel();
            return Poll::Ready(Some(Err(deadline_passed(ctx))));
        }
        let polled = std::panic::catch_unwind(AssertUnwindSafe(|| items.poll_next_unpin(cx)));
        let item = match polled {
            Ok(Poll::Pending) => return Poll::Pending,
            Ok(Poll::Ready(None)) => None,
            Ok(Poll::Ready(Some(Ok(item)))) => return Poll::Ready(Some(Ok(item))),
            Ok(Poll::Ready(Some(Err(err)))) => Some(Err(vet_error(ctx, err))),
            Err(panic) => Some(Err(panicked(ctx, panic))),
        };
        this.items = None;
        ctx.cancel();
        Poll::Ready(item)
    }
}

/// Keep protocol codes and declared domain codes; anything else becomes `INTERNAL`.
fn vet_error(ctx: &OperationContext, err: CallError) -> CallError {
    let spec = ctx.operation();
    if err.is_protocol_error() || spec.error(&err.code).is_some() {
        return err;
    }
    tracing::warn!(
        request_id = %ctx.request_id(),
        operation = %spec.id,
        code = %err.code,
        "handler returned an error code its operation does not declare"
    );
    CallError::internal(format!(
        "`{}` failed with the undeclared error code `{}`",
        spec.id, err.code
    ))
    .with_details(serde_json::json!({
        "original_code": err.code,
        "original_message": err.message,
        "original_details": err.details,
    }))
}

fn panicked(ctx: &OperationContext, panic: Box<dyn std::any::Any + Send>) -> CallError {
    let message = panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_default();
    tracing::error!(
        request_id = %ctx.request_id(),
        operation = %ctx.operation().id,
        panic = %message,
        "handler panicked"
    );
    CallError::internal(format!(
        "`{}` failed unexpectedly; the node's log has the details under this request id",
        ctx.operation().id
    ))
}

fn parent_ended_error(ctx: &OperationContext) -> CallError {
    CallError::aborted(format!(
        "`{}` was cancelled because the call that made it ended",
        ctx.operation().id
    ))
}

fn deadline_passed(ctx: &OperationContext) -> CallError {
    CallError::timeout(format!(
        "`{}` did not finish before its deadline",
        ctx.operation().id
    ))
}

fn no_such_operation(namespace: &str, operation: &str) -> CallError {
    CallError::not_found(format!("there is no operation `{namespace}/{operation}`"))
}

fn wrong_kind(spec: &OperationSpec, done: &str, instead: &str) -> CallError {
    CallError::invalid_operation_type(format!(
        "`{}` is a {} and cannot be {done}; {instead} instead",
        spec.id,
        spec.kind.as_str()
    ))
}

/// Operation `R`'s output (or item), out of its protocol's response.
pub(crate) fn output<R: Operation>(
    response: Result<<R::Protocol as Protocol>::Response, CallError>,
) -> Result<R::Output, CallError> {
    response.and_then(|response| {
        R::output(response).ok_or_else(|| {
            CallError::internal(format!(
                "the service answered `{}` with another operation's output",
                R::NAME
            ))
        })
    })
}

fn no_input_as_empty(input: Value) -> Value {
    match input {
        Value::Null => Value::Object(Map::new()),
        input => input,
    }
}

fn encode_request(request: &impl serde::Serialize) -> Result<Value, CallError> {
    serde_json::to_value(request).map_err(|e| {
        CallError::invalid_input(format!("the request could not be encoded as JSON: {e}"))
    })
}

fn decode_output<T: serde::de::DeserializeOwned>(output: Value) -> Result<T, CallError> {
    serde_json::from_value(output).map_err(|e| {
        CallError::internal(format!("the output did not match its declared type: {e}"))
    })
}
