//! What a handler knows about the call it serves: [`OperationContext`].

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use serde_json::{Map, Value};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::drain::InFlight;
use crate::env::{Origin, Table};
use crate::telemetry::{CallFacts, CallTelemetry};
use crate::{Identity, OperationEnv, OperationSpec, RequestId, ServiceSpec};

/// The parts of an [`OperationContext`] that travel with a call admitted in one place and
/// served in another (the irpc path carries it with every request), and that
/// [`TypedEntry`](crate::TypedEntry) adopts on the serving side.
///
/// What the serving side believes of them depends on who sent them. In-process, and from
/// a peer whose key is a cluster node ([`KeyHolder::cluster`](crate::KeyHolder::cluster)),
/// the call runs as `identity` (none: anonymous) with its `forwarded_for`, since it was
/// admitted where it entered the cluster; access is checked again all the same. A
/// transport serving any other peer ignores both and calls as that peer, an outside
/// caller like any other.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct CallMeta {
    /// The call's id: the serving side keeps it.
    pub request_id: RequestId,
    /// The id of the call that made this one, for a nested call.
    pub parent_request_id: Option<RequestId>,
    /// The identity the call runs with; in-process, the caller's own, shared.
    pub identity: Option<Arc<Identity>>,
    /// Who the call was forwarded for (audit only).
    pub forwarded_for: Option<Arc<str>>,
    /// How long the call had left when it was sent, in milliseconds.
    pub timeout_ms: Option<u64>,
}

impl CallMeta {
    /// What of `ctx` travels.
    pub fn of(ctx: &OperationContext) -> Self {
        CallMeta {
            request_id: ctx.request_id(),
            parent_request_id: ctx.parent_request_id(),
            identity: ctx.identity_arc(),
            forwarded_for: ctx.forwarded_for_arc(),
            timeout_ms: ctx.remaining().map(|d| d.as_millis() as u64),
        }
    }
}

/// The context of one call, handed to its handler.
///
/// Cheap to clone. A handler makes nested calls through [`OperationContext::env`]: they get
/// a fresh request id, this call as their parent, fresh metadata, a deadline no later than
/// this one's, and the identity the service's composition authority gives them.
///
/// ```
/// use alknet_runtime::prelude::*;
///
/// async fn log_call(ctx: &OperationContext) {
///     let who = ctx.identity().map_or("anonymous", |i| i.id.as_str());
///     println!("{} called {} ({})", who, ctx.operation().id, ctx.request_id());
/// }
/// ```
#[derive(Clone)]
pub struct OperationContext(Arc<ContextInner>);

struct ContextInner {
    request_id: RequestId,
    /// The calling call, when it runs in this process.
    parent: Option<OperationContext>,
    /// The calling call's id, wherever it runs.
    parent_request_id: Option<RequestId>,
    identity: Option<Arc<Identity>>,
    forwarded_for: Option<Arc<str>>,
    metadata: Option<Arc<Map<String, Value>>>,
    table: Arc<Table>,
    service: usize,
    operation: usize,
    deadline: Option<Instant>,
    /// Made on first use: most calls are never cancelled and never spawn nested calls.
    cancellation: OnceLock<CancellationToken>,
    /// Set when the call ends, so a token made after that is born cancelled.
    ended: AtomicBool,
    /// An outside call of an env with a [`Drain`](crate::Drain): counted until the context
    /// is gone.
    in_flight: Option<InFlight>,
    telemetry: CallTelemetry,
}

/// The parts of a new context that depend on who is calling.
pub(crate) struct ContextParts {
    pub(crate) request_id: RequestId,
    pub(crate) parent: Option<OperationContext>,
    pub(crate) parent_request_id: Option<RequestId>,
    pub(crate) identity: Option<Arc<Identity>>,
    pub(crate) forwarded_for: Option<Arc<str>>,
    pub(crate) metadata: Option<Arc<Map<String, Value>>>,
    pub(crate) deadline: Option<Instant>,
    pub(crate) in_flight: Option<InFlight>,
    pub(crate) transport: &'static str,
}

impl OperationContext {
    #[inline]
    pub(crate) fn new(
        table: Arc<Table>,
        service: usize,
        operation: usize,
        parts: ContextParts,
    ) -> Self {
        let telemetry = CallTelemetry::begin(|| CallFacts {
            request_id: parts.request_id,
            parent_request_id: parts.parent_request_id,
            operation: &table.services[service].spec.operations[operation],
            identity: parts.identity.as_deref(),
            forwarded_for: parts.forwarded_for.as_deref(),
            transport: parts.transport,
            parent_span: parts
                .parent
                .as_ref()
                .and_then(|parent| parent.0.telemetry.span()),
        });
        OperationContext(Arc::new(ContextInner {
            request_id: parts.request_id,
            parent: parts.parent,
            parent_request_id: parts.parent_request_id,
            identity: parts.identity,
            forwarded_for: parts.forwarded_for,
            metadata: parts.metadata,
            table,
            service,
            operation,
            deadline: parts.deadline,
            cancellation: OnceLock::new(),
            ended: AtomicBool::new(false),
            in_flight: parts.in_flight,
            telemetry,
        }))
    }

    /// The call's span: a nested call's is a child of it. A call no subscriber is
    /// interested in has a disabled one.
    pub fn span(&self) -> &tracing::Span {
        static UNWATCHED: std::sync::LazyLock<tracing::Span> =
            std::sync::LazyLock::new(tracing::Span::none);
        self.0.telemetry.span().unwrap_or(&UNWATCHED)
    }

    /// The call's span, if a subscriber or a recorder watches the call: what the env
    /// enters while it runs the call.
    pub(crate) fn watched_span(&self) -> Option<&tracing::Span> {
        self.0.telemetry.span()
    }

    /// Record the call's outcome in its span and metrics (once; later outcomes are not
    /// recorded): `error` is the code its caller received, none for `ok`.
    pub(crate) fn record_outcome(&self, error: Option<&str>) {
        self.0.telemetry.end(error);
    }

    /// Record what the call's caller receives, unless the call is a subscription that
    /// started: its stream records its end.
    pub(crate) fn record_result<T>(&self, result: &Result<T, crate::CallError>) {
        if self.0.telemetry.is_watched() && (result.is_err() || !self.operation().is_subscription())
        {
            self.record_outcome(result.as_ref().err().map(|err| &*err.code));
        }
    }

    /// This call's id: unique per call, never derived from the input.
    pub fn request_id(&self) -> RequestId {
        self.0.request_id
    }

    /// The id of the call that made this one, for a nested call — made here, or on a
    /// cluster node that sent it along.
    pub fn parent_request_id(&self) -> Option<RequestId> {
        self.0.parent_request_id
    }

    /// Whether this is a nested call made by another operation's handler (the seeds'
    /// `trusted` flag; a fact to read, never a skip of access control).
    pub fn is_nested(&self) -> bool {
        self.0.parent_request_id.is_some()
    }

    /// The identity the call runs with: the outside caller's, or for a nested call the
    /// calling service's composition authority.
    pub fn identity(&self) -> Option<&Identity> {
        self.0.identity.as_deref()
    }

    pub(crate) fn identity_arc(&self) -> Option<Arc<Identity>> {
        self.0.identity.clone()
    }

    /// Who the call was forwarded for, as the adapter was told. For audit only: access
    /// control never reads it.
    pub fn forwarded_for(&self) -> Option<&str> {
        self.0.forwarded_for.as_deref()
    }

    pub(crate) fn forwarded_for_arc(&self) -> Option<Arc<str>> {
        self.0.forwarded_for.clone()
    }

    /// Metadata the adapter attached to this call; empty for nested calls.
    pub fn metadata(&self) -> &Map<String, Value> {
        static EMPTY: OnceLock<Map<String, Value>> = OnceLock::new();
        self.0
            .metadata
            .as_deref()
            .unwrap_or_else(|| EMPTY.get_or_init(Map::new))
    }

    /// The environment for nested calls made on behalf of this one.
    pub fn env(&self) -> OperationEnv {
        OperationEnv::nested(self.0.table.clone(), Origin::Nested(self.clone()))
    }

    /// The spec of the operation being served.
    pub fn operation(&self) -> &OperationSpec {
        &self.service().operations[self.0.operation]
    }

    /// The spec of the service the operation belongs to.
    pub fn service(&self) -> &ServiceSpec {
        &self.0.table.services[self.0.service].spec
    }

    pub(crate) fn parent(&self) -> Option<&OperationContext> {
        self.0.parent.as_ref()
    }

    /// Cancelled when the env's drain cuts the calls still running; only outside calls
    /// have one (a nested call ends with its parent).
    pub(crate) fn cut_token(&self) -> Option<&CancellationToken> {
        self.0.in_flight.as_ref().map(InFlight::cut_token)
    }

    pub(crate) fn service_index(&self) -> usize {
        self.0.service
    }

    /// The operation's position in its service's operations (declaration order): what a
    /// [`DispatchPath`](crate::DispatchPath) that keeps one target per operation indexes.
    pub fn operation_index(&self) -> usize {
        self.0.operation
    }

    /// When the call must be done, if it has a deadline.
    pub fn deadline(&self) -> Option<Instant> {
        self.0.deadline
    }

    /// How long is left before the deadline, if the call has one.
    pub fn remaining(&self) -> Option<Duration> {
        self.0
            .deadline
            .map(|d| d.saturating_duration_since(Instant::now()))
    }

    /// A token cancelled when this call is dropped, aborted or finished, or when its parent
    /// is; handlers that spawn work tie it to this.
    pub fn cancellation_token(&self) -> CancellationToken {
        let token = self
            .0
            .cancellation
            .get_or_init(|| match &self.0.parent {
                Some(parent) => parent.cancellation_token().child_token(),
                None => CancellationToken::new(),
            })
            .clone();
        // `cancel` may have run before the token existed; it set `ended` first.
        if self.0.ended.load(Ordering::SeqCst) {
            token.cancel();
        }
        token
    }

    /// Whether the call has been cancelled (or has ended).
    pub fn is_cancelled(&self) -> bool {
        self.0.ended.load(Ordering::SeqCst)
            || match self.0.cancellation.get() {
                Some(token) => token.is_cancelled(),
                None => self
                    .0
                    .parent
                    .as_ref()
                    .is_some_and(OperationContext::is_cancelled),
            }
    }

    /// Resolves when the call is cancelled.
    pub async fn cancelled(&self) {
        self.cancellation_token().cancelled_owned().await
    }

    /// End the call: cancel its nested calls, now and any started later.
    #[inline]
    pub(crate) fn cancel(&self) {
        if self.0.telemetry.is_watched() {
            self.0.telemetry.end_dropped(self.operation());
        }
        // With no other handle on this context, no token can be made after this point, so
        // the common case skips the store and its full barrier.
        if Arc::strong_count(&self.0) == 1 && self.0.cancellation.get().is_none() {
            return;
        }
        self.0.ended.store(true, Ordering::SeqCst);
        if let Some(token) = self.0.cancellation.get() {
            token.cancel();
        }
    }
}

impl std::fmt::Debug for OperationContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OperationContext")
            .field("request_id", &self.0.request_id)
            .field("parent_request_id", &self.parent_request_id())
            .field("operation", &self.operation().id)
            .field("identity", &self.identity().map(|i| &i.id))
            .field("deadline", &self.0.deadline)
            .finish()
    }
}
