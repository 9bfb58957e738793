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
use futures::{Stream, StreamExt};
use rustc_hash::FxHashMap;
use serde_json::{Map, Value};
use tokio::time::Instant;
use tracing::Instrument;

use arc_swap::ArcSwap;

use crate::admission::{Admission, AdmissionSteps, Admit, Admitting};
#[cfg(feature = "node")]
use crate::config::DynamicConfig;
use crate::context::ContextParts;
use crate::drain::{Drain, cut_off};
use crate::service::{TypedPath, ValueStream};
use crate::{
    CallError, CallMeta, DispatchPath, Identity, ItemStream, LocalService, Operation,
    OperationContext, OperationSpec, Protocol, RequestId, ResponseEnvelope, ResponseStream,
    ServiceSpec, StreamingOperation, UnaryOperation,
};

/// Namespaces the runtime keeps for its own operations.
const RESERVED_NAMESPACES: [&str; 1] = ["services"];

/// The environment every operation is called through.
///
/// Built once per node with [`OperationEnv::builder`]; cheap to clone. Adapters call it on
/// behalf of outside callers ([`OperationEnv::with_caller`]); handlers call it through
/// [`OperationContext::env`] for nested calls. Which path serves a namespace is decided at
/// assembly, never by the handlers. A path may change the operations it serves later
/// ([`Mount`]); each env value is a view of what was mounted when it was made, and
/// [`latest`](Self::latest) gives the view of now.
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
    /// What is mounted, as it was when this env was made: a call sees one table from its
    /// start to its end.
    table: Arc<Table>,
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
    request_id: Option<RequestId>,
    parent_request_id: Option<RequestId>,
    metadata: Option<Arc<Map<String, Value>>>,
    deadline: Option<Instant>,
    transport: &'static str,
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
    request_id: Option<RequestId>,
    parent_request_id: Option<RequestId>,
    metadata: Map<String, Value>,
    deadline: Option<Instant>,
    transport: Option<&'static str>,
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
    /// ([`Admitting::forwarded_for`](crate::Admitting::forwarded_for)), so an adapter sets
    /// it only for a peer whose key is a cluster node ([`KeyHolder::cluster`](crate::KeyHolder::cluster)) — never for
    /// what an outside caller claims.
    pub fn forwarded_for(mut self, forwarded_for: impl Into<String>) -> Self {
        self.forwarded_for = Some(forwarded_for.into());
        self
    }

    /// The id the call runs under, instead of a fresh one: the id another node's call
    /// has there, so that both nodes' logs name the call alike. Every call made through
    /// an env with this caller runs under it, so make that env for one call, as adapters
    /// do per request. Like [`forwarded_for`](Self::forwarded_for), an adapter sets it
    /// only for a peer whose key is a cluster node: logs are only as trustworthy as the
    /// ids they hold.
    pub fn request_id(mut self, id: RequestId) -> Self {
        self.request_id = Some(id);
        self
    }

    /// The id of the call on whose behalf this one is made, on another node: the call's
    /// `parent_request_id`. Set only for a cluster node, as
    /// [`request_id`](Self::request_id) is.
    pub fn parent_request_id(mut self, id: RequestId) -> Self {
        self.parent_request_id = Some(id);
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

    /// How the call arrived, such as `http`: its span's `transport` field and its metrics'
    /// label ([`telemetry`](crate::telemetry)). Unset: `local`.
    pub fn transport(mut self, transport: &'static str) -> Self {
        self.transport = Some(transport);
        self
    }
}

/// The services an env serves, with their paths. A [`Mount`] that changes a namespace's
/// operations swaps in a new table; calls already made keep the one they started with.
#[derive(Clone)]
pub(crate) struct Table {
    pub(crate) services: Vec<ServiceEntry>,
    by_namespace: FxHashMap<String, usize>,
    /// The type of each service's path, in the order of `services`: a typed call finds
    /// the namespace its protocol serves in-process by comparing type ids, not names. An
    /// env has a handful of services, so a scan costs less than hashing.
    path_types: Box<[std::any::TypeId]>,
    /// The env the table belongs to, for a call's nested env; weak, as the env holds the
    /// table. A call's context holds the table alone: one reference count per call.
    shared: std::sync::Weak<EnvShared>,
}

/// What every view of one env shares for its whole life.
pub(crate) struct EnvShared {
    /// The table now: what [`OperationEnv::with_caller`] and [`OperationEnv::latest`] see.
    table: ArcSwap<Table>,
    /// Admit outside calls, in order: forwarding policy, rate limits, the user's own.
    admission: AdmissionSteps,
    #[cfg(feature = "node")]
    config: Option<Arc<ArcSwap<DynamicConfig>>>,
    drain: Option<Drain>,
}

#[derive(Clone)]
pub(crate) struct ServiceEntry {
    pub(crate) spec: ServiceSpec,
    authority: Option<Arc<Identity>>,
    by_name: FxHashMap<String, usize>,
    path: Arc<dyn DispatchPath>,
}

impl ServiceEntry {
    fn new(spec: ServiceSpec, path: Arc<dyn DispatchPath>) -> Self {
        let by_name = spec
            .operations
            .iter()
            .enumerate()
            .map(|(index, op)| (op.name.clone(), index))
            .collect();
        ServiceEntry {
            authority: spec.authority.clone().map(Arc::new),
            spec,
            by_name,
            path,
        }
    }
}

/// A namespace as an env mounted it: what its [`DispatchPath`] is given, once the env is
/// built, to change the operations it serves there later
/// ([`DispatchPath::mounted`]). Holds the env weakly: a path that keeps it does not keep
/// the env alive.
#[derive(Clone)]
pub struct Mount {
    env: std::sync::Weak<EnvShared>,
    namespace: String,
}

impl Mount {
    /// The namespace mounted.
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// Serve `spec`'s operations on this namespace from now on, along the same path: its
    /// access control, kinds and schemas as `spec` says. Calls already made finish as they
    /// began; outside calls and listings ([`OperationEnv::latest`]) see the new operations
    /// at once. Fails if `spec` is for another namespace, or the env is gone.
    pub fn replace(&self, spec: ServiceSpec) -> Result<(), BuildError> {
        let refuse = |reason: &str| BuildError::Mount {
            namespace: self.namespace.clone(),
            reason: reason.to_string(),
        };
        if spec.namespace != self.namespace {
            return Err(refuse(&format!(
                "the new operations are for the namespace `{}`",
                spec.namespace
            )));
        }
        let env = self
            .env
            .upgrade()
            .ok_or_else(|| refuse("the env it was mounted in is gone"))?;
        env.table.rcu(|table| {
            let mut table = Table::clone(table);
            let index = table.by_namespace[&self.namespace];
            let path = table.services[index].path.clone();
            table.services[index] = ServiceEntry::new(spec.clone(), path);
            table
        });
        Ok(())
    }
}

impl fmt::Debug for Mount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Mount")
            .field("namespace", &self.namespace)
            .finish_non_exhaustive()
    }
}

/// Why an [`OperationEnv`] could not be built.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BuildError {
    /// Two services were mounted on one namespace.
    DuplicateNamespace(String),
    /// A service used a namespace the runtime keeps for itself.
    ReservedNamespace(String),
    /// A namespace could not be mounted on the path asked for (a route to a node that is
    /// not mounted, a peer that does not serve it).
    Mount {
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
            BuildError::Mount { namespace, reason } => {
                write!(f, "cannot mount `{namespace}`: {reason}")
            }
        }
    }
}

impl std::error::Error for BuildError {}

/// Assembles an [`OperationEnv`]: which path serves each namespace, and the admission
/// steps outside calls pass.
#[derive(Default)]
pub struct OperationEnvBuilder {
    services: Vec<ServiceEntry>,
    errors: Vec<BuildError>,
    admission: AdmissionSteps,
    #[cfg(feature = "node")]
    config: Option<Arc<ArcSwap<DynamicConfig>>>,
    drain: Option<Drain>,
}

impl OperationEnvBuilder {
    /// Serve a service in this process, with no serialization on the typed path. An irpc
    /// client of a service (`XProtocol::service(client)`) is mounted the same way.
    pub fn local(self, service: impl Into<LocalService>) -> Self {
        let service = service.into();
        self.mount_shared(service.spec, service.path)
    }

    /// Serve the namespace of `spec` along `path`: a dispatch path of your own (see
    /// [`DispatchPath`]). The env checks access and admission against `spec`'s operations
    /// before `path` is asked.
    pub fn mount(self, spec: ServiceSpec, path: impl DispatchPath) -> Self {
        self.mount_shared(spec, Arc::new(path))
    }

    /// [`mount`](Self::mount), for a path shared with other namespaces.
    pub fn mount_shared(mut self, spec: ServiceSpec, path: Arc<dyn DispatchPath>) -> Self {
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
        self.services.push(ServiceEntry::new(spec, path));
        self
    }

    /// The path mounted on `namespace` so far, if it is a `T`: how one mount builds on
    /// another (a route through a node mounted before).
    pub fn mounted<T: DispatchPath>(&self, namespace: &str) -> Option<&T> {
        let entry = self
            .services
            .iter()
            .find(|entry| entry.spec.namespace == namespace)?;
        let path: &dyn std::any::Any = &*entry.path;
        path.downcast_ref::<T>()
    }

    /// Record a mistake found while mounting; [`build`](Self::build) reports it.
    pub fn fail(mut self, error: BuildError) -> Self {
        self.errors.push(error);
        self
    }

    /// Run `step` for every outside call, after its identity and access are checked and
    /// after the steps added before it. Nested calls are not subject to it. See
    /// [`Admission`]; `NodePolicy` (feature `node`) is the node's forwarding policy and rate
    /// limits.
    pub fn admission(mut self, step: impl Admission) -> Self {
        self.admission.push(Arc::new(step));
        self
    }

    /// The node's live dynamic configuration (the `Arc<ArcSwap<DynamicConfig>>` of
    /// [`ConfigServiceImpl::shared`](crate::config::ConfigServiceImpl::shared)), for
    /// adapters that read it per request: which proxies the HTTP adapter believes about
    /// a client's address.
    #[cfg(feature = "node")]
    pub fn config(mut self, config: Arc<ArcSwap<DynamicConfig>>) -> Self {
        self.config = Some(config);
        self
    }

    /// Count outside calls (and calls adopted from other nodes) in flight on `drain`, so
    /// that the node can stop gracefully: see [`Drain`].
    pub fn drain(mut self, drain: Drain) -> Self {
        self.drain = Some(drain);
        self
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
        let path_types = self
            .services
            .iter()
            .map(|s| {
                let path: &dyn std::any::Any = &*s.path;
                path.type_id()
            })
            .collect();
        let shared = Arc::new_cyclic(|shared| EnvShared {
            table: ArcSwap::from_pointee(Table {
                services: self.services,
                by_namespace,
                path_types,
                shared: shared.clone(),
            }),
            admission: self.admission,
            #[cfg(feature = "node")]
            config: self.config,
            drain: self.drain,
        });
        let table = shared.table.load_full();
        for entry in &table.services {
            entry.path.mounted(Mount {
                env: Arc::downgrade(&shared),
                namespace: entry.spec.namespace.clone(),
            });
        }
        OperationEnv::from_parts(
            table,
            shared,
            Origin::External(Arc::new(ExternalCaller {
                identity: None,
                peer_addr: None,
                forwarded_for: None,
                request_id: None,
                parent_request_id: None,
                metadata: None,
                deadline: None,
                transport: crate::telemetry::LOCAL,
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

    pub(crate) fn from_parts(table: Arc<Table>, shared: Arc<EnvShared>, origin: Origin) -> Self {
        OperationEnv {
            table,
            shared,
            origin,
        }
    }

    /// The env of the calls a call with `table` makes: its own env, or — if every view of
    /// that env is gone while the call runs — one that serves `table` alone (nested calls
    /// run no admission and count in no drain, so nothing else is missed).
    pub(crate) fn nested(table: Arc<Table>, origin: Origin) -> Self {
        let shared = table.shared.upgrade().unwrap_or_else(|| {
            Arc::new(EnvShared {
                table: ArcSwap::new(table.clone()),
                admission: AdmissionSteps::default(),
                #[cfg(feature = "node")]
                config: None,
                drain: None,
            })
        });
        OperationEnv::from_parts(table, shared, origin)
    }

    /// The same environment, calling on behalf of an outside `caller`, with what is
    /// mounted now (see [`latest`](Self::latest)). Adapters use this once per request,
    /// after resolving who is asking.
    pub fn with_caller(&self, caller: Caller) -> OperationEnv {
        let metadata = (!caller.metadata.is_empty()).then(|| Arc::new(caller.metadata));
        self.now_as(Origin::External(Arc::new(ExternalCaller {
            identity: caller.identity,
            peer_addr: caller.peer_addr,
            forwarded_for: caller.forwarded_for.map(Arc::from),
            request_id: caller.request_id,
            parent_request_id: caller.parent_request_id,
            metadata,
            deadline: caller.deadline,
            transport: caller.transport.unwrap_or(crate::telemetry::LOCAL),
        })))
    }

    /// The same environment and caller, with what is mounted now. An env is a view of
    /// its services as they were when it was made — from [`build`](OperationEnvBuilder::build),
    /// [`with_caller`](Self::with_caller), or a call's [`OperationContext::env`] — so that a
    /// call sees one set from start to end; a [`Mount`] may change a namespace's operations
    /// since (a remote node that serves others after a reconnect). Listings that outlive
    /// one request read this.
    pub fn latest(&self) -> OperationEnv {
        self.now_as(self.origin.clone())
    }

    /// This env with what is mounted now, calling as `origin`.
    fn now_as(&self, origin: Origin) -> OperationEnv {
        OperationEnv::from_parts(self.shared.table.load_full(), self.shared.clone(), origin)
    }

    /// Every mounted service.
    pub fn services(&self) -> impl Iterator<Item = &ServiceSpec> {
        self.table.services.iter().map(|s| &s.spec)
    }

    /// Every operation of every mounted service, internal ones included.
    pub fn operations(&self) -> impl Iterator<Item = &OperationSpec> {
        self.services().flat_map(|s| s.operations.iter())
    }

    /// The live dynamic configuration the env was given
    /// ([`OperationEnvBuilder::config`]), as it is now.
    #[cfg(feature = "node")]
    pub fn config(&self) -> Option<arc_swap::Guard<Arc<DynamicConfig>>> {
        self.shared.config.as_ref().map(|config| config.load())
    }

    /// The spec of `namespace/operation`, if it is mounted.
    pub fn spec(&self, namespace: &str, operation: &str) -> Option<&OperationSpec> {
        let (service, index) = self.lookup(namespace, operation)?;
        Some(&self.table.services[service].spec.operations[index])
    }

    /// Call a query or mutation with JSON input.
    ///
    /// A missing or mistyped input field is `INVALID_INPUT` naming the field; an unknown
    /// operation is `NOT_FOUND`; a subscription is `INVALID_OPERATION_TYPE`. `null` input
    /// stands for `{}`.
    pub async fn invoke(&self, namespace: &str, operation: &str, input: Value) -> ResponseEnvelope {
        let request_id = self.answered_request_id();
        let result = match self.start_json(request_id, namespace, operation, input) {
            Ok((end, call)) => run(&end.0, call).await,
            Err(err) => Err(err),
        };
        ResponseEnvelope { request_id, result }
    }

    /// The request id a JSON call answers with, refused or not: the one its caller set
    /// ([`Caller::request_id`]), which the call then runs under, else a fresh one.
    #[inline]
    fn answered_request_id(&self) -> RequestId {
        match &self.origin {
            Origin::External(caller) => caller.request_id,
            Origin::Nested(_) => None,
        }
        .unwrap_or_else(RequestId::next)
    }

    /// Resolve, admit and decode a JSON call: everything before its handler runs.
    fn start_json(
        &self,
        request_id: RequestId,
        namespace: &str,
        operation: &str,
        input: Value,
    ) -> Result<(EndOnDrop, BoxFuture<'static, Result<Value, CallError>>), CallError> {
        let (service, index) = self.resolve(namespace, operation)?;
        let entry = &self.table.services[service];
        if entry.spec.operations[index].is_subscription() {
            return Err(wrong_kind(
                &entry.spec.operations[index],
                "invoked",
                "subscribe to it",
            ));
        }
        let (ctx, admitted) = self.admit(request_id, service, index)?;
        let end = EndOnDrop(ctx);
        let input = no_input_as_empty(input);
        let call = match admitted {
            Admit::Here => entry.path.invoke(end.0.clone(), input),
            Admit::Via(path) => path.invoke(end.0.clone(), input),
        };
        Ok((end, call))
    }

    /// Subscribe to a subscription with JSON input. Errors before the first item (unknown
    /// operation, access, input) come as the stream's only item.
    pub async fn subscribe(&self, namespace: &str, operation: &str, input: Value) -> Subscription {
        let request_id = self.answered_request_id();
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
    ) -> Result<ValueStream, CallError> {
        let (service, index) = self.resolve(namespace, operation)?;
        let entry = &self.table.services[service];
        if !entry.spec.operations[index].is_subscription() {
            return Err(wrong_kind(
                &entry.spec.operations[index],
                "subscribed to",
                "invoke it",
            ));
        }
        let (ctx, admitted) = self.admit(request_id, service, index)?;
        let end = EndOnDrop(ctx);
        let input = no_input_as_empty(input);
        let subscription = match admitted {
            Admit::Here => entry.path.subscribe(end.0.clone(), input),
            Admit::Via(path) => path.subscribe(end.0.clone(), input),
        };
        let items = run(&end.0, subscription).await?;
        Ok(Guarded::new(end, items).boxed())
    }

    /// Call a query or mutation with its typed request. On the local path no JSON is
    /// involved; on other paths the request is encoded at the boundary.
    pub async fn call<R: UnaryOperation>(&self, request: R) -> Result<R::Output, CallError> {
        let request_id = RequestId::next();
        if let Some((service, typed)) = self.typed_service::<R::Protocol>() {
            let (ctx, admitted) = self.admit(request_id, service, R::INDEX)?;
            let path = match admitted {
                Admit::Here => {
                    // Run in this future rather than `finish`'s: one future fewer to move.
                    let ServedCall { end, call } = ServedCall::start(typed, ctx, request.into());
                    return output::<R>(run(&end.0, call).await);
                }
                Admit::Via(path) => path,
            };
            let input = encode_request(&request)?;
            let end = EndOnDrop(ctx);
            return decode_output(run(&end.0, path.invoke(end.0.clone(), input)).await?);
        }
        let namespace = <R::Protocol as Protocol>::NAMESPACE;
        self.resolve_namespace(namespace)?;
        let input = encode_request(&request)?;
        let (end, call) = self.start_json(request_id, namespace, R::NAME, input)?;
        decode_output(run(&end.0, call).await?)
    }

    /// Subscribe with a typed request; items arrive typed.
    pub async fn stream<R: StreamingOperation>(
        &self,
        request: R,
    ) -> Result<ItemStream<R::Output>, CallError> {
        let request_id = RequestId::next();
        if let Some((service, typed)) = self.typed_service::<R::Protocol>() {
            let (ctx, admitted) = self.admit(request_id, service, R::INDEX)?;
            let ctx = match admitted {
                Admit::Here => ctx,
                Admit::Via(path) => {
                    let input = encode_request(&request)?;
                    let items = forwarded_subscription(ctx, path, input).await?;
                    return Ok(Box::pin(items.map(|item| item.and_then(decode_output))));
                }
            };
            let items = run_subscription(typed, ctx, request.into()).await?;
            return Ok(Box::pin(items.map(output::<R>)));
        }
        let namespace = <R::Protocol as Protocol>::NAMESPACE;
        self.resolve_namespace(namespace)?;
        let input = encode_request(&request)?;
        let items = self
            .subscribe_json(request_id, namespace, R::NAME, input)
            .await?;
        Ok(Box::pin(items.map(|item| item.and_then(decode_output))))
    }

    /// The namespace protocol `P` serves in-process, and its typed path, if it does.
    fn typed_service<P: Protocol>(&self) -> Option<(usize, &TypedPath<P>)> {
        let wanted = std::any::TypeId::of::<TypedPath<P>>();
        let service = self.table.path_types.iter().position(|&ty| ty == wanted)?;
        Some((service, self.typed::<P>(service)?))
    }

    /// The typed path of namespace `service`, if protocol `P` serves it in-process.
    fn typed<P: Protocol>(&self, service: usize) -> Option<&TypedPath<P>> {
        let path: &dyn std::any::Any = &*self.table.services[service].path;
        path.downcast_ref::<TypedPath<P>>()
    }

    /// The entry for calls to `P`'s namespace that were admitted elsewhere, if this env
    /// serves it in-process (to a handler, or to a client of `P`): what the server side of
    /// a transport that carries typed calls with their context (the irpc actor) serves.
    pub fn typed_entry<P: Protocol>(&self) -> Option<TypedEntry<P>> {
        let service = self.resolve_namespace(P::NAMESPACE).ok()?;
        self.typed::<P>(service)?;
        Some(TypedEntry {
            env: self.clone(),
            service,
            _protocol: std::marker::PhantomData,
        })
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

    /// The context of a call whose caller admitted it elsewhere and sent `meta` along:
    /// the call keeps its request id, identity and remaining deadline, and the operation's
    /// access control is checked again, against the identity `meta` carries.
    fn adopt(
        &self,
        service: usize,
        index: usize,
        meta: CallMeta,
    ) -> Result<OperationContext, CallError> {
        let operations = &self.table.services[service].spec.operations;
        let Some(spec) = operations.get(index) else {
            return Err(CallError::not_found(format!(
                "`{}` has no operation number {index}",
                self.table.services[service].spec.namespace
            )));
        };
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
            in_flight: match &self.shared.drain {
                Some(drain) => Some(drain.enter(&spec.id)?),
                None => None,
            },
            transport: crate::telemetry::IRPC,
        };
        Ok(OperationContext::new(
            self.table.clone(),
            service,
            index,
            parts,
        ))
    }

    fn lookup(&self, namespace: &str, operation: &str) -> Option<(usize, usize)> {
        let service = *self.table.by_namespace.get(namespace)?;
        let index = *self.table.services[service].by_name.get(operation)?;
        Some((service, index))
    }

    #[inline]
    fn resolve(&self, namespace: &str, operation: &str) -> Result<(usize, usize), CallError> {
        self.lookup(namespace, operation)
            .ok_or_else(|| no_such_operation(namespace, operation))
    }

    fn resolve_namespace(&self, namespace: &str) -> Result<usize, CallError> {
        self.table
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
    ) -> Result<(OperationContext, Admit), CallError> {
        self.admit_or_refuse(request_id, service, index)
            .inspect_err(|err| self.refused(service, index, err))
    }

    /// Count a call to `namespace/operation` that a transport refused before it reached
    /// the env (a refused credential, a body over the limit, no free slot) as the env
    /// counts the calls it refuses itself ([`telemetry`](crate::telemetry)). A call to an
    /// operation that does not exist, or is internal, is not counted: its name is the
    /// caller's to choose.
    #[cold]
    pub fn count_refused(
        &self,
        namespace: &str,
        operation: &str,
        transport: &'static str,
        err: &CallError,
    ) {
        if let Some(spec) = self.spec(namespace, operation)
            && spec.is_external()
        {
            crate::telemetry::refused(spec, transport, &err.code);
        }
    }

    #[cold]
    fn refused(&self, service: usize, index: usize, err: &CallError) {
        let transport = match &self.origin {
            Origin::External(caller) => caller.transport,
            Origin::Nested(_) => crate::telemetry::NESTED,
        };
        let spec = &self.table.services[service].spec.operations[index];
        crate::telemetry::refused(spec, transport, &err.code);
    }

    #[inline(always)]
    fn admit_or_refuse(
        &self,
        request_id: RequestId,
        service: usize,
        index: usize,
    ) -> Result<(OperationContext, Admit), CallError> {
        let entry = &self.table.services[service];
        let spec = &entry.spec.operations[index];
        let mut parts = match &self.origin {
            Origin::External(caller) => {
                if !spec.is_external() {
                    return Err(no_such_operation(&spec.namespace, &spec.name));
                }
                ContextParts {
                    request_id: caller.request_id.unwrap_or(request_id),
                    parent: None,
                    parent_request_id: caller.parent_request_id,
                    identity: caller.identity.clone(),
                    forwarded_for: caller.forwarded_for.clone(),
                    metadata: caller.metadata.clone(),
                    deadline: caller.deadline,
                    in_flight: None,
                    transport: caller.transport,
                }
            }
            Origin::Nested(parent) => {
                let calling = &self.table.services[parent.service_index()];
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
                    in_flight: None,
                    transport: crate::telemetry::NESTED,
                }
            }
        };
        spec.access.check(parts.identity.as_deref(), &spec.id)?;
        let admitted = match &self.origin {
            Origin::External(caller) if !self.shared.admission.is_empty() => {
                self.shared.admission.admit(&Admitting {
                    operation: spec,
                    identity: parts.identity.as_deref(),
                    peer_addr: caller.peer_addr,
                    forwarded_for: parts.forwarded_for.as_deref(),
                })?
            }
            _ => Admit::Here,
        };
        if let (Origin::External(_), Some(drain)) = (&self.origin, &self.shared.drain) {
            parts.in_flight = Some(drain.enter(&spec.id)?);
        }
        if let Some(timeout) = spec.timeout {
            let end = Instant::now() + timeout;
            parts.deadline = Some(parts.deadline.map_or(end, |deadline| deadline.min(end)));
        }
        let ctx = OperationContext::new(self.table.clone(), service, index, parts);
        Ok((ctx, admitted))
    }
}

/// Where calls to protocol `P`'s namespace that were admitted elsewhere enter an env:
/// from [`OperationEnv::typed_entry`]. The server side of the irpc path serves through it.
pub struct TypedEntry<P> {
    env: OperationEnv,
    /// Where the env serves `P`'s namespace: looked up once, not per call.
    service: usize,
    _protocol: std::marker::PhantomData<fn() -> P>,
}

impl<P> Clone for TypedEntry<P> {
    fn clone(&self) -> Self {
        TypedEntry {
            env: self.env.clone(),
            service: self.service,
            _protocol: std::marker::PhantomData,
        }
    }
}

impl<P: Protocol> TypedEntry<P> {
    /// The env the calls run in (and make their nested calls through).
    pub fn env(&self) -> &OperationEnv {
        &self.env
    }

    /// Start a query or mutation under the context its caller sent. Access control is
    /// checked again against `meta`'s identity; admission is not run again.
    pub fn call(&self, meta: CallMeta, request: P) -> Result<ServedCall<P>, CallError> {
        let ctx = self
            .env
            .adopt(self.service, request.operation_index(), meta)?;
        let typed = self.typed();
        Ok(ServedCall::start(typed, ctx, request))
    }

    /// Start a subscription under the context its caller sent.
    pub async fn subscribe(
        &self,
        meta: CallMeta,
        request: P,
    ) -> Result<ResponseStream<P>, CallError> {
        let ctx = self
            .env
            .adopt(self.service, request.operation_index(), meta)?;
        Ok(run_subscription(self.typed(), ctx, request).await?.boxed())
    }

    fn typed(&self) -> &TypedPath<P> {
        self.env
            .typed::<P>(self.service)
            .expect("a typed entry is made only for a namespace P serves")
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

/// Runs a call's future under its context: the deadline, cancellation by the parent or by
/// the env's drain, a panic turned into `INTERNAL`, and undeclared error codes turned into
/// `INTERNAL`.
#[inline(always)]
fn run<'a, T: Send + 'a>(
    ctx: &'a OperationContext,
    call: BoxFuture<'a, Result<T, CallError>>,
) -> Run<'a, T> {
    // Most calls have neither a deadline nor a parent; only those that do pay for the
    // timer and the cancellation wait, boxed so the common future stays small.
    let call = if ctx.deadline().is_none() && ctx.parent().is_none() {
        call
    } else {
        Box::pin(bounded(ctx, call))
    };
    // A span no one watches is not entered at every poll.
    let call = match ctx.watched_span() {
        Some(span) => Box::pin(call.instrument(span.clone())),
        None => call,
    };
    Run {
        call,
        ctx,
        cut: None,
    }
}

/// The future of [`run`]: one layer around the call, since most calls are done at their
/// first poll. A waiter is registered on the drain's cut
/// ([`OperationContext::cut_token`]) only once the call has to wait: registering costs two
/// locks, more than the rest of a local call.
struct Run<'a, T> {
    call: BoxFuture<'a, Result<T, CallError>>,
    ctx: &'a OperationContext,
    cut: Option<Pin<Box<tokio_util::sync::WaitForCancellationFuture<'a>>>>,
}

impl<T> Future for Run<'_, T> {
    type Output = Result<T, CallError>;

    #[inline]
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        let cut_short = |ctx: &OperationContext| settle(ctx, Ok(Err(cut_off(&ctx.operation().id))));
        if let Some(cut) = this.cut.as_mut()
            && cut.as_mut().poll(cx).is_ready()
        {
            return Poll::Ready(cut_short(this.ctx));
        }
        let Poll::Ready(outcome) = poll_settled(this.ctx, &mut this.call, cx) else {
            if this.cut.is_none()
                && let Some(token) = this.ctx.cut_token()
            {
                let mut cut = Box::pin(token.cancelled());
                if cut.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(cut_short(this.ctx));
                }
                this.cut = Some(cut);
            }
            return Poll::Pending;
        };
        Poll::Ready(outcome)
    }
}

/// Poll `call` once, guarded: a panic becomes `INTERNAL`, and what it ends with is
/// [`settle`]d.
#[inline]
fn poll_settled<T>(
    ctx: &OperationContext,
    call: &mut BoxFuture<'_, Result<T, CallError>>,
    cx: &mut Context<'_>,
) -> Poll<Result<T, CallError>> {
    match std::panic::catch_unwind(AssertUnwindSafe(|| call.as_mut().poll(cx))) {
        Ok(Poll::Pending) => Poll::Pending,
        Ok(Poll::Ready(result)) => Poll::Ready(settle(ctx, Ok(result))),
        Err(panic) => Poll::Ready(settle(ctx, Err(panic))),
    }
}

/// What a call's caller receives for its `outcome`: a panic and an undeclared error code
/// become `INTERNAL`. It is the call's recorded outcome.
#[inline(always)]
fn settle<T>(
    ctx: &OperationContext,
    outcome: std::thread::Result<Result<T, CallError>>,
) -> Result<T, CallError> {
    let _in_call = ctx.watched_span().map(tracing::Span::enter);
    let result = match outcome {
        Ok(result) => result.map_err(|err| vet_error(ctx, err)),
        Err(panic) => Err(panicked(ctx, panic)),
    };
    ctx.record_result(&result);
    result
}

/// A typed call started under its context ([`TypedEntry::call`]); dropping it ends the
/// call and cancels what it left behind. A server polls it once where the request arrived
/// ([`poll_first`](Self::poll_first)) and gives it a task of its own only if it has to
/// wait: most calls are done at their first poll and never need one.
pub struct ServedCall<P: Protocol> {
    end: EndOnDrop,
    call: BoxFuture<'static, Result<P::Response, CallError>>,
}

impl<P: Protocol> ServedCall<P> {
    fn start(typed: &TypedPath<P>, ctx: OperationContext, request: P) -> Self {
        let end = EndOnDrop(ctx);
        let call = typed.dispatch.call(end.0.clone(), request);
        ServedCall { end, call }
    }

    /// Poll the call once, guarded against panics and undeclared codes as [`run`] guards
    /// it. As in `run`, a call that is done at its first poll answers whatever its
    /// deadline; the deadline is watched from [`finish`](Self::finish) on. A call that
    /// adopted from elsewhere has no parent in this process, so there is no parent to watch.
    pub fn poll_first(&mut self, cx: &mut Context<'_>) -> Poll<Result<P::Response, CallError>> {
        poll_settled(&self.end.0, &mut self.call, cx)
    }

    /// Run the call to its end under its context (after a first poll that found it
    /// waiting, or without one).
    pub async fn finish(self) -> Result<P::Response, CallError> {
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
        Some(_) => {
            let token = ctx.cancellation_token();
            tokio::select! {
                biased;
                _ = token.cancelled() => Err(parent_ended_error(ctx)),
                outcome = call => outcome,
            }
        }
        None => call.await,
    }
}

/// A subscription a peer serves, under `ctx`; the call lasts as long as the stream.
async fn forwarded_subscription(
    ctx: OperationContext,
    path: Arc<dyn DispatchPath>,
    input: Value,
) -> Result<Guarded<ValueStream>, CallError> {
    let end = EndOnDrop(ctx);
    let items = run(&end.0, path.subscribe(end.0.clone(), input)).await?;
    Ok(Guarded::new(end, items))
}

/// Start a typed subscription under `ctx`; the call lasts as long as the returned stream.
async fn run_subscription<P: Protocol>(
    typed: &TypedPath<P>,
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
/// (`ABORTED`), when its deadline passes (`TIMEOUT`) or when the env's drain cuts it
/// (`UNAVAILABLE`), and dropping it cancels the subscription's nested calls.
struct Guarded<S> {
    end: EndOnDrop,
    items: Option<S>,
    /// For a nested subscription: the parent call ending; for an outside one: the drain
    /// cutting it.
    stopped: Option<Pin<Box<tokio_util::sync::WaitForCancellationFutureOwned>>>,
    /// For a subscription with a deadline: its passing.
    deadline: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl<S> Guarded<S> {
    fn new(end: EndOnDrop, items: S) -> Self {
        let stopping = match (end.0.parent(), end.0.cut_token()) {
            (Some(parent), _) => Some(parent.cancellation_token()),
            (None, cut) => cut.cloned(),
        };
        let deadline = end
            .0
            .deadline()
            .map(|deadline| Box::pin(tokio::time::sleep_until(deadline)));
        Guarded {
            stopped: stopping.map(|token| Box::pin(token.cancelled_owned())),
            end,
            items: Some(items),
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
        let _in_call = ctx.watched_span().map(tracing::Span::enter);
        if let Some(stopped) = this.stopped.as_mut()
            && stopped.as_mut().poll(cx).is_ready()
        {
            this.items = None;
            let err = match ctx.parent() {
                Some(_) => parent_ended_error(ctx),
                None => cut_off(&ctx.operation().id),
            };
            ctx.record_outcome(Some(&err.code));
            ctx.cancel();
            return Poll::Ready(Some(Err(err)));
        }
        if let Some(deadline) = this.deadline.as_mut()
            && deadline.as_mut().poll(cx).is_ready()
        {
            this.items = None;
            let err = deadline_passed(ctx);
            ctx.record_outcome(Some(&err.code));
            ctx.cancel();
            return Poll::Ready(Some(Err(err)));
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
        ctx.record_outcome(
            item.as_ref()
                .and_then(|item| item.as_ref().err())
                .map(|err| &*err.code),
        );
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
