//! The contract between `#[alk_service]` and the runtime: [`Protocol`], [`Operation`],
//! [`Dispatch`], and [`LocalService`], the in-process dispatch entry.

use std::any::Any;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use futures::stream::BoxStream;
use futures::{FutureExt, Stream, StreamExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::{
    AccessControl, CallError, ErrorDef, Identity, OperationContext, OperationKind, OperationSpec,
    ResourceGrant, ResourceRule, ServiceSpec, Visibility,
};

/// The items of a subscription, as a handler returns them.
///
/// ```
/// use alknet_runtime::{CallError, ItemStream};
/// use alknet_runtime::futures::stream;
///
/// let items: ItemStream<u32> = Box::pin(stream::iter([Ok(1), Ok(2)]));
/// ```
pub type ItemStream<T> = Pin<Box<dyn Stream<Item = Result<T, CallError>> + Send + 'static>>;

/// The responses of a subscription of protocol `P`, as a [`Dispatch`] streams them.
pub type ResponseStream<P> = BoxStream<'static, Result<<P as Protocol>::Response, CallError>>;

/// A service's protocol enum, as `#[alk_service]` rewrites it: one variant per operation,
/// each carrying that operation's request type.
pub trait Protocol: Sized + Send + 'static {
    /// The service's namespace.
    const NAMESPACE: &'static str;
    /// One variant per operation, carrying its output (or, for a subscription, one item).
    type Response: Send + 'static;

    /// What the macro read from the declaration.
    fn declaration() -> &'static ServiceDecl;
    /// The index, in declaration order, of the operation this request is for.
    fn operation_index(&self) -> usize;
    /// Decode the JSON input of operation `index`.
    fn decode(index: usize, input: Value) -> Result<Self, CallError>;
    /// Encode an output (or item) as JSON.
    fn encode(response: Self::Response) -> Result<Value, CallError>;
}

/// A request type: one operation of a [`Protocol`].
pub trait Operation:
    Serialize + DeserializeOwned + Into<Self::Protocol> + Send + Sync + 'static
{
    /// The protocol the operation belongs to.
    type Protocol: Protocol;
    /// The output of a query or mutation; the item type of a subscription.
    type Output: Serialize + DeserializeOwned + Send + Sync + 'static;
    /// The operation's index in declaration order.
    const INDEX: usize;
    /// The operation's name within its namespace.
    const NAME: &'static str;

    /// Take this operation's output out of a response of its protocol.
    fn output(response: <Self::Protocol as Protocol>::Response) -> Option<Self::Output>;
}

/// An operation that answers once: a query or a mutation.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is the request of a subscription, which answers with a stream: call it with `env.stream`, not `env.call`",
    label = "a subscription's request",
    note = "`env.call` (and `invoke`) serve queries and mutations; `env.stream` (and `subscribe`) serve subscriptions"
)]
pub trait UnaryOperation: Operation {}

/// An operation that answers with a stream of items: a subscription.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is the request of a query or mutation, which answers once: call it with `env.call`, not `env.stream`",
    label = "a query's or mutation's request",
    note = "`env.stream` (and `subscribe`) serve subscriptions; `env.call` (and `invoke`) serve queries and mutations"
)]
pub trait StreamingOperation: Operation {}

/// Serves the requests of protocol `P`. `#[alk_service]` implements it over the service's
/// handler trait; other dispatch paths (irpc, remote) implement it over their transport.
///
/// The futures own what they need (`'static`): a call that is not done at its first poll
/// can move to a task of its own, as the irpc actor moves it.
pub trait Dispatch<P: Protocol>: Send + Sync + 'static {
    /// Run a query or mutation.
    fn call(
        &self,
        ctx: OperationContext,
        request: P,
    ) -> BoxFuture<'static, Result<P::Response, CallError>>;

    /// Run a query or mutation and encode its output as JSON.
    fn call_json(
        &self,
        ctx: OperationContext,
        request: P,
    ) -> BoxFuture<'static, Result<Value, CallError>> {
        let call = self.call(ctx, request);
        Box::pin(async move { P::encode(call.await?) })
    }

    /// Start a subscription.
    fn subscribe(
        &self,
        ctx: OperationContext,
        request: P,
    ) -> BoxFuture<'static, Result<ResponseStream<P>, CallError>>;
}

/// A service's handler, shared with its calls' futures, wrapped so that `#[alk_service]`
/// can implement [`Dispatch`] for it.
#[doc(hidden)]
pub struct Local<H>(pub Arc<H>);

/// A service ready to be mounted with [`OperationEnvBuilder::local`]: its spec and its
/// dispatch entry. Made by the `local` function `#[alk_service]` generates.
///
/// [`OperationEnvBuilder::local`]: crate::OperationEnvBuilder::local
pub struct LocalService {
    pub(crate) spec: ServiceSpec,
    pub(crate) path: Arc<dyn DispatchPath>,
    /// What transports need to serve the service and cannot learn from its spec, keyed
    /// by type: generated code attaches the irpc path's registration.
    extensions: Vec<Arc<dyn Any + Send + Sync>>,
}

impl LocalService {
    /// Wrap a dispatcher of protocol `P`.
    pub fn new<P: Protocol>(dispatch: impl Dispatch<P>) -> Self {
        LocalService {
            spec: ServiceSpec::from_declaration(P::declaration()),
            path: Arc::new(TypedPath::<P> {
                dispatch: Box::new(dispatch),
            }),
            extensions: Vec::new(),
        }
    }

    /// The service's spec.
    pub fn spec(&self) -> &ServiceSpec {
        &self.spec
    }

    /// Attach `value` for a transport to find with [`extension`](Self::extension); it
    /// replaces a value of the same type.
    pub fn with_extension<T: Any + Send + Sync>(mut self, value: T) -> Self {
        self.extensions.retain(|held| !held.is::<T>());
        self.extensions.push(Arc::new(value));
        self
    }

    /// The value of type `T` attached with [`with_extension`](Self::with_extension).
    pub fn extension<T: Any + Send + Sync>(&self) -> Option<&T> {
        self.extensions
            .iter()
            .find_map(|held| held.downcast_ref::<T>())
    }
}

/// A stream of JSON items: a subscription as `OperationEnv` hands it to adapters, and as a
/// [`DispatchPath`] serves it.
pub type ValueStream = BoxStream<'static, Result<Value, CallError>>;

/// How a namespace's operations are served, with JSON input and output: the piece an
/// [`OperationEnv`](crate::OperationEnv) holds for every mounted namespace.
///
/// A handler in this process, an irpc actor, a peer reached over the call protocol and a
/// forwarded call are each one of these. Mount your own with
/// [`OperationEnvBuilder::mount`](crate::OperationEnvBuilder::mount): the env resolves the
/// operation, checks access, runs admission and gives the call its context, deadline and
/// cancellation before a path is asked, and vets what it answers after.
///
/// The futures own what they need (`'static`), so a call can move to a task of its own.
///
/// ```
/// use alknet_runtime::prelude::*;
/// use alknet_runtime::{DispatchPath, ValueStream};
/// use alknet_runtime::futures::future::{BoxFuture, ready};
///
/// /// Answers every operation with its own input.
/// struct Mirror;
///
/// impl DispatchPath for Mirror {
///     fn invoke(&self, _: OperationContext, input: serde_json::Value)
///         -> BoxFuture<'static, Result<serde_json::Value, CallError>> {
///         Box::pin(ready(Ok(input)))
///     }
///     fn subscribe(&self, ctx: OperationContext, _: serde_json::Value)
///         -> BoxFuture<'static, Result<ValueStream, CallError>> {
///         let id = ctx.operation().id.clone();
///         Box::pin(ready(Err(CallError::unavailable(format!("`{id}` is not mirrored")))))
///     }
/// }
/// ```
pub trait DispatchPath: Any + Send + Sync {
    /// Run the query or mutation `ctx.operation()` with JSON `input`.
    fn invoke(
        &self,
        ctx: OperationContext,
        input: Value,
    ) -> BoxFuture<'static, Result<Value, CallError>>;

    /// Start the subscription `ctx.operation()` with JSON `input`.
    fn subscribe(
        &self,
        ctx: OperationContext,
        input: Value,
    ) -> BoxFuture<'static, Result<ValueStream, CallError>>;

    /// Called once the env this path serves a namespace of is built, with the handle that
    /// lets the path change that namespace's operations later ([`Mount::replace`]): a path
    /// whose operations are learnt from elsewhere keeps it. Most paths ignore it.
    ///
    /// [`Mount::replace`]: crate::Mount::replace
    fn mounted(&self, mount: crate::Mount) {
        let _ = mount;
    }
}

/// The in-process path of protocol `P`: typed calls skip JSON entirely.
pub(crate) struct TypedPath<P: Protocol> {
    pub(crate) dispatch: Box<dyn Dispatch<P>>,
}

impl<P: Protocol> DispatchPath for TypedPath<P> {
    fn invoke(
        &self,
        ctx: OperationContext,
        input: Value,
    ) -> BoxFuture<'static, Result<Value, CallError>> {
        match P::decode(ctx.operation_index(), input) {
            Ok(request) => self.dispatch.call_json(ctx, request),
            Err(err) => futures::future::ready(Err(err)).boxed(),
        }
    }

    fn subscribe(
        &self,
        ctx: OperationContext,
        input: Value,
    ) -> BoxFuture<'static, Result<ValueStream, CallError>> {
        match P::decode(ctx.operation_index(), input) {
            Ok(request) => {
                let subscription = self.dispatch.subscribe(ctx, request);
                Box::pin(async move {
                    let items = subscription.await?;
                    Ok(items.map(|item| item.and_then(P::encode)).boxed())
                })
            }
            Err(err) => futures::future::ready(Err(err)).boxed(),
        }
    }
}

/// What `#[alk_service]` read from a service declaration. Generated code only.
#[doc(hidden)]
pub struct ServiceDecl {
    pub namespace: &'static str,
    pub version: &'static str,
    pub description: &'static str,
    pub authority: Option<AuthorityDecl>,
    pub calls: &'static [&'static str],
    pub operations: &'static [OperationDecl],
}

/// A service's declared composition authority. Generated code only.
#[doc(hidden)]
pub struct AuthorityDecl {
    pub scopes: &'static [&'static str],
    pub resources: &'static [(&'static str, &'static [&'static str])],
}

/// What `#[alk_service]` read from one operation. Generated code only.
#[doc(hidden)]
pub struct OperationDecl {
    pub name: &'static str,
    pub kind: OperationKind,
    pub visibility: Visibility,
    pub idempotent: bool,
    pub description: &'static str,
    pub scopes: &'static [&'static str],
    pub any_scopes: &'static [&'static str],
    pub resource: Option<(&'static str, &'static str)>,
    pub timeout_ms: Option<u64>,
    pub input_schema: fn() -> Value,
    pub output_schema: fn() -> Value,
    pub errors: &'static [ErrorDecl],
}

/// A declared domain error. Generated code only.
#[doc(hidden)]
pub struct ErrorDecl {
    pub code: &'static str,
    pub http_status: u16,
    pub description: &'static str,
    pub details_schema: Option<fn() -> Value>,
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

impl ServiceSpec {
    /// The spec of protocol `P`'s service, as its declaration gives it: what a node
    /// mounts for `P` when the service runs elsewhere.
    pub fn of<P: Protocol>() -> Self {
        Self::from_declaration(P::declaration())
    }

    /// The spec of a declared service, schemas included.
    pub(crate) fn from_declaration(decl: &ServiceDecl) -> Self {
        let authority = decl.authority.as_ref().map(|a| {
            Identity::new(format!("service:{}", decl.namespace))
                .with_scopes(a.scopes.iter().copied())
                .with_resources(a.resources.iter().map(|(resource, actions)| {
                    ResourceGrant::new(*resource, actions.iter().copied())
                }))
        });
        ServiceSpec {
            namespace: decl.namespace.to_string(),
            version: decl.version.to_string(),
            description: decl.description.to_string(),
            authority,
            calls: strings(decl.calls),
            operations: decl
                .operations
                .iter()
                .map(|op| OperationSpec::from_declaration(decl, op))
                .collect(),
        }
    }
}

impl OperationSpec {
    fn from_declaration(service: &ServiceDecl, op: &OperationDecl) -> Self {
        OperationSpec {
            id: format!("{}/{}", service.namespace, op.name),
            namespace: service.namespace.to_string(),
            name: op.name.to_string(),
            kind: op.kind,
            visibility: op.visibility,
            idempotent: op.idempotent,
            description: op.description.to_string(),
            version: service.version.to_string(),
            access: AccessControl {
                scopes: strings(op.scopes),
                any_scopes: strings(op.any_scopes),
                resource: op.resource.map(|(resource, action)| ResourceRule {
                    resource: resource.to_string(),
                    action: action.to_string(),
                }),
            },
            timeout: op.timeout_ms.map(Duration::from_millis),
            input_schema: (op.input_schema)(),
            output_schema: (op.output_schema)(),
            errors: op
                .errors
                .iter()
                .map(|e| ErrorDef {
                    code: e.code.to_string(),
                    http_status: e.http_status,
                    description: e.description.to_string(),
                    schema: e.details_schema.map(|schema| schema()),
                })
                .collect(),
        }
    }
}
