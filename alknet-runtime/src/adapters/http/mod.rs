//! The HTTP adapter (axum): every external operation at `POST /v1/{namespace}/{op}`.
//!
//! | route | answer |
//! |---|---|
//! | `POST /v1/{namespace}/{op}` | the input as the JSON body (empty = no input); `200` and the output as JSON |
//! | the same, for a subscription | `200` and Server-Sent Events: one event per item (`id` its number), an `error` event, a `completed` event (both `id: end`) |
//! | `GET /v1/{namespace}/{op}?input=<JSON>`, a subscription | the same stream, for `EventSource`; `204` to one reconnecting with `Last-Event-ID: end` |
//! | `GET /v1/operations` | the external operations, and whether this caller may call each |
//! | `GET /openapi.json` | the OpenAPI 3.1 document of [`schema::openapi`](crate::schema::openapi) |
//! | `GET /healthz` | `{"status": "ok"}` while the process serves |
//! | `GET /readyz` | `200` `{"status": "ready", "checks": […]}`, or `503` `not_ready` ([`HttpAdapter::readiness`]) |
//! | `GET /metrics` | the Prometheus text exposition, when [`HttpAdapter::metrics`] is given |
//! | `/mcp` (feature `mcp`) | the MCP adapter over streamable HTTP ([`crate::adapters::mcp`]) |
//!
//! Failures answer `{"error": {code, message, retryable, details, request_id}}` with the
//! status of SPEC §9: `NOT_FOUND` 404, `UNAUTHENTICATED` 401, `FORBIDDEN` 403,
//! `INVALID_INPUT` 422 (a body that is not JSON: 400), `TIMEOUT` 504, `UNAVAILABLE` 503,
//! `RESOURCE_EXHAUSTED` 429 with `Retry-After` (a body over the limit: 413), `INTERNAL` 500,
//! a declared domain code its declared status.
//!
//! ```no_run
//! use std::sync::Arc;
//! use alknet_example::{EchoProtocol, EchoService};
//! use alknet_runtime::adapters::http::HttpAdapter;
//! use alknet_runtime::{Identity, OperationEnv, StaticIdentities};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> std::io::Result<()> {
//! let env = OperationEnv::builder()
//!     .local(EchoProtocol::local(EchoService::default()))
//!     .build()
//!     .unwrap();
//! let identities = StaticIdentities::new()
//!     .with_token("s3cret", Identity::new("user:ada").with_scopes(["echo:admin"]));
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
//! HttpAdapter::new(env).identities(Arc::new(identities)).serve(listener).await
//! # }
//! ```

mod ops;
mod response;
mod sse;

pub use ops::{Readiness, ReadinessCheck};

use std::net::{IpAddr, SocketAddr};
use std::num::{NonZeroU64, NonZeroUsize};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, Path, Request, State};
use axum::http::header::{ALLOW, CONTENT_LENGTH, CONTENT_TYPE};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::bearer;
#[cfg(feature = "mcp")]
use super::mcp::McpSessionLimits;
use crate::config::HttpSettings;
use crate::listener::ConnectionLimits;
use crate::slots::{SlotLimits, Slots};
use crate::{CallError, Caller, IdentityProvider, OperationEnv, RequestId, StaticIdentities};

/// The header a client may send to name its request; the adapter answers with it.
pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The header an `EventSource` reconnects with: the `id` of the last event it received.
const LAST_EVENT_ID: HeaderName = HeaderName::from_static("last-event-id");

/// The longest client request id the adapter accepts; a longer or non-ASCII one is ignored.
const MAX_CLIENT_REQUEST_ID: usize = 128;

/// The HTTP adapter's limits. Each has a default that suits a small node; every count is
/// enforced in all and, where it names one, per identity (the bearer token's) and per
/// address (the TCP peer's), so no one caller can hold what the others need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpLimits {
    /// The largest request body accepted; a larger one is `413` with `RESOURCE_EXHAUSTED`.
    pub max_body_bytes: usize,
    /// How long a query or mutation may take; past it the call is cancelled and answered
    /// `504` with `TIMEOUT`. Subscriptions last as long as their client listens.
    pub request_timeout: Duration,
    /// How long a client has to send a request's line and headers, counted from when the
    /// connection is ready for the next request — so also how long an idle keep-alive
    /// connection stays open. Past it the connection is closed without an answer (there is
    /// no request to answer).
    pub header_read_timeout: Duration,
    /// How long a client has to send a request's whole body, counted from when its headers
    /// arrived; past it `408` with `TIMEOUT`. A body is read before the request takes a
    /// call slot, so a slow client holds only its own connection.
    pub body_read_timeout: Duration,
    /// How many connections are open at once; one more is answered `429` with
    /// `RESOURCE_EXHAUSTED` and closed before its request is read.
    pub max_connections: usize,
    /// How many connections one address may hold open at once; one more is turned away
    /// like one over [`HttpLimits::max_connections`].
    pub max_connections_per_address: usize,
    /// How many calls (`POST /v1/…` and MCP tool calls) are served at once; one more is
    /// turned away at once with `429`, `RESOURCE_EXHAUSTED` (retryable) and
    /// `Retry-After: 1` (over MCP, an `isError` result), never queued.
    pub max_concurrent_requests: usize,
    /// How many of those one identity may have in progress at once.
    pub max_concurrent_requests_per_identity: usize,
    /// How many of those one address may have in progress at once.
    pub max_concurrent_requests_per_address: usize,
    /// How many subscriptions stream at once; one more is turned away like a call over
    /// its limit. Subscriptions draw on their own slots, not the calls'.
    pub max_open_subscriptions: usize,
    /// How many subscriptions one identity may hold open at once.
    pub max_open_subscriptions_per_identity: usize,
    /// How many subscriptions one address may hold open at once.
    pub max_open_subscriptions_per_address: usize,
    /// A subscription that sends no item for this long is ended with an `error` event
    /// (`TIMEOUT`, retryable) and its slot freed. SSE keep-alive comments, sent every
    /// 15 s, do not count as items: they only keep proxies from closing a quiet stream.
    pub subscription_idle_timeout: Duration,
    /// MCP's sessions over streamable HTTP at `/mcp`.
    #[cfg(feature = "mcp")]
    pub mcp_sessions: McpSessionLimits,
}

impl Default for HttpLimits {
    fn default() -> Self {
        HttpLimits {
            max_body_bytes: 1024 * 1024,
            request_timeout: Duration::from_secs(30),
            header_read_timeout: Duration::from_secs(10),
            body_read_timeout: Duration::from_secs(30),
            max_connections: 4096,
            max_connections_per_address: 256,
            max_concurrent_requests: 1024,
            max_concurrent_requests_per_identity: 128,
            max_concurrent_requests_per_address: 128,
            max_open_subscriptions: 1024,
            max_open_subscriptions_per_identity: 32,
            max_open_subscriptions_per_address: 32,
            subscription_idle_timeout: Duration::from_secs(300),
            #[cfg(feature = "mcp")]
            mcp_sessions: McpSessionLimits::default(),
        }
    }
}

impl HttpLimits {
    /// The limits a node's `[http]` settings give: each setting present, the default for
    /// each one absent.
    pub fn from_settings(settings: &HttpSettings) -> HttpLimits {
        let defaults = HttpLimits::default();
        let count =
            |setting: Option<NonZeroUsize>, default| setting.map_or(default, NonZeroUsize::get);
        let millis = |setting: Option<NonZeroU64>, default| {
            setting.map_or(default, |ms| Duration::from_millis(ms.get()))
        };
        HttpLimits {
            max_body_bytes: count(settings.max_body_bytes, defaults.max_body_bytes),
            request_timeout: millis(settings.request_timeout_ms, defaults.request_timeout),
            header_read_timeout: millis(
                settings.header_read_timeout_ms,
                defaults.header_read_timeout,
            ),
            body_read_timeout: millis(settings.body_read_timeout_ms, defaults.body_read_timeout),
            max_connections: count(settings.max_connections, defaults.max_connections),
            max_connections_per_address: count(
                settings.max_connections_per_address,
                defaults.max_connections_per_address,
            ),
            max_concurrent_requests: count(
                settings.max_concurrent_requests,
                defaults.max_concurrent_requests,
            ),
            max_concurrent_requests_per_identity: count(
                settings.max_concurrent_requests_per_identity,
                defaults.max_concurrent_requests_per_identity,
            ),
            max_concurrent_requests_per_address: count(
                settings.max_concurrent_requests_per_address,
                defaults.max_concurrent_requests_per_address,
            ),
            max_open_subscriptions: count(
                settings.max_open_subscriptions,
                defaults.max_open_subscriptions,
            ),
            max_open_subscriptions_per_identity: count(
                settings.max_open_subscriptions_per_identity,
                defaults.max_open_subscriptions_per_identity,
            ),
            max_open_subscriptions_per_address: count(
                settings.max_open_subscriptions_per_address,
                defaults.max_open_subscriptions_per_address,
            ),
            subscription_idle_timeout: millis(
                settings.subscription_idle_timeout_ms,
                defaults.subscription_idle_timeout,
            ),
            #[cfg(feature = "mcp")]
            mcp_sessions: McpSessionLimits {
                max_sessions: count(
                    settings.mcp_max_sessions,
                    defaults.mcp_sessions.max_sessions,
                ),
                max_sessions_per_address: count(
                    settings.mcp_max_sessions_per_address,
                    defaults.mcp_sessions.max_sessions_per_address,
                ),
                idle_timeout: millis(
                    settings.mcp_session_idle_timeout_ms,
                    defaults.mcp_sessions.idle_timeout,
                ),
            },
        }
    }
}

/// Serves an [`OperationEnv`] over HTTP. See the [module docs](self) for the routes.
#[derive(Clone)]
pub struct HttpAdapter {
    env: OperationEnv,
    identities: Arc<dyn IdentityProvider>,
    limits: HttpLimits,
    /// `None`: the MCP adapter's default (loopback names).
    #[cfg(feature = "mcp")]
    mcp_allowed_hosts: Option<Vec<String>>,
    /// `None`: opening MCP sessions is limited only by their counts.
    #[cfg(feature = "mcp")]
    mcp_session_rate: Option<Arc<crate::RateLimiter>>,
    /// `/healthz`, `/readyz` and `/metrics`.
    ops: ops::OpsRoutes,
}

/// What every request handler shares.
struct Shared {
    env: OperationEnv,
    identities: Arc<dyn IdentityProvider>,
    limits: HttpLimits,
    /// One per call in progress (`POST /v1/…` and MCP's tool calls), up to the limits.
    calls: Slots,
    /// One per subscription streaming, up to the limits.
    subscriptions: Slots,
    /// Cancelled when the server shuts down: open subscriptions end.
    stopping: CancellationToken,
}

impl HttpAdapter {
    /// An adapter for `env` with the default limits and no known credentials: anonymous
    /// callers reach open operations, every bearer token is refused.
    pub fn new(env: OperationEnv) -> Self {
        HttpAdapter {
            env,
            identities: Arc::new(StaticIdentities::new()),
            limits: HttpLimits::default(),
            #[cfg(feature = "mcp")]
            mcp_allowed_hosts: None,
            #[cfg(feature = "mcp")]
            mcp_session_rate: None,
            ops: ops::OpsRoutes::default(),
        }
    }

    /// Resolve `Authorization: Bearer` tokens with `identities`.
    pub fn identities(mut self, identities: Arc<dyn IdentityProvider>) -> Self {
        self.identities = identities;
        self
    }

    /// Replace the limits.
    pub fn limits(mut self, limits: HttpLimits) -> Self {
        self.limits = limits;
        self
    }

    /// The `Host` names `/mcp` answers (see [`McpAdapter::allowed_hosts`]).
    ///
    /// [`McpAdapter::allowed_hosts`]: crate::adapters::mcp::McpAdapter::allowed_hosts
    #[cfg(feature = "mcp")]
    pub fn mcp_allowed_hosts(mut self, hosts: impl IntoIterator<Item = impl Into<String>>) -> Self {
        self.mcp_allowed_hosts = Some(hosts.into_iter().map(Into::into).collect());
        self
    }

    /// Limit how fast `/mcp` sessions are opened (see [`McpAdapter::session_rate_limits`]).
    ///
    /// [`McpAdapter::session_rate_limits`]: crate::adapters::mcp::McpAdapter::session_rate_limits
    #[cfg(feature = "mcp")]
    pub fn mcp_session_rate_limits(mut self, limiter: Arc<crate::RateLimiter>) -> Self {
        self.mcp_session_rate = Some(limiter);
        self
    }

    /// The axum router: every route of the adapter (and `/mcp` with the `mcp` feature).
    /// Served by [`HttpAdapter::serve`], it also gets the connection limits and the header
    /// timeout, which only the server can enforce; served otherwise, it needs
    /// `into_make_service_with_connect_info::<SocketAddr>()` for the per-address limits.
    pub fn router(self) -> Router {
        self.router_stopping(CancellationToken::new())
    }

    fn router_stopping(self, stopping: CancellationToken) -> Router {
        let limits = &self.limits;
        let calls = Slots::new(
            "concurrent calls",
            SlotLimits {
                total: limits.max_concurrent_requests,
                per_identity: limits.max_concurrent_requests_per_identity,
                per_address: limits.max_concurrent_requests_per_address,
            },
        );
        let subscriptions = Slots::new(
            "open subscriptions",
            SlotLimits {
                total: limits.max_open_subscriptions,
                per_identity: limits.max_open_subscriptions_per_identity,
                per_address: limits.max_open_subscriptions_per_address,
            },
        );
        #[cfg(feature = "mcp")]
        let mcp = {
            let mut mcp = super::mcp::McpAdapter::new(self.env.clone())
                .identities(self.identities.clone())
                .timeout(limits.request_timeout)
                .max_body_bytes(limits.max_body_bytes)
                .body_read_timeout(limits.body_read_timeout)
                .sessions(limits.mcp_sessions.clone())
                .slots(calls.clone())
                .stop_with(stopping.clone());
            if let Some(hosts) = self.mcp_allowed_hosts {
                mcp = mcp.allowed_hosts(hosts);
            }
            if let Some(limiter) = self.mcp_session_rate {
                mcp = mcp.session_rate_limits(limiter);
            }
            mcp
        };
        let shared = Arc::new(Shared {
            env: self.env,
            identities: self.identities,
            limits: self.limits,
            calls,
            subscriptions,
            stopping,
        });
        let router = Router::new()
            .route("/v1/operations", get(operations))
            .route(
                "/v1/{namespace}/{*operation}",
                post(call).get(subscribe_by_get),
            )
            .route("/openapi.json", get(openapi_document))
            .merge(self.ops.router(shared.stopping.clone()))
            .fallback(no_route)
            .method_not_allowed_fallback(wrong_method);
        #[cfg(feature = "mcp")]
        let router = router.nest_service("/mcp", mcp.router());
        router.with_state(shared)
    }

    /// Serve on `listener` until the process ends.
    pub async fn serve(self, listener: TcpListener) -> std::io::Result<()> {
        self.serve_with_shutdown(listener, std::future::pending())
            .await
    }

    /// Serve on `listener` until `shutdown` completes, then stop gracefully: accept no more
    /// connections, end open subscriptions (with an `error` event, `UNAVAILABLE`) and MCP
    /// sessions, let calls in progress finish and answer, and return once every
    /// connection has closed.
    ///
    /// Each connection is HTTP/1.1 with the header timeout and the connection limits of
    /// [`HttpLimits`].
    pub async fn serve_with_shutdown(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()>,
    ) -> std::io::Result<()> {
        let stopping = CancellationToken::new();
        let limits = ConnectionLimits {
            header_read_timeout: self.limits.header_read_timeout,
            max_connections: self.limits.max_connections,
            max_connections_per_address: self.limits.max_connections_per_address,
        };
        let router = self.router_stopping(stopping.clone());
        let shutdown = async {
            shutdown.await;
            stopping.cancel();
        };
        crate::listener::serve(listener, router, &limits, shutdown).await
    }
}

/// `POST /v1/{namespace}/{operation}`: the input is the body.
async fn call(
    State(shared): State<Arc<Shared>>,
    Path((namespace, operation)): Path<(String, String)>,
    request: Request,
) -> Response {
    let (parts, body) = request.into_parts();
    let client_id = client_request_id(&parts.headers);
    let limits = &shared.limits;
    let body = read_body(
        body,
        &parts.headers,
        limits.max_body_bytes,
        limits.body_read_timeout,
    );
    let input = match body.await.and_then(parse_input) {
        Ok(input) => input,
        Err((status, err)) => {
            return refuse_call(&shared, &namespace, &operation, status, &err, client_id);
        }
    };
    serve_call(&shared, &namespace, &operation, &parts, input, client_id).await
}

/// `GET /v1/{namespace}/{operation}?input=<JSON>`: a subscription, for `EventSource`, which
/// sends only `GET` and no body. The input is the `input` query parameter (absent: no
/// input). An `EventSource` reconnecting after the event that ended the stream (its
/// `Last-Event-ID` is [`sse::END_ID`]) is answered `204`, which tells it to stop.
async fn subscribe_by_get(
    State(shared): State<Arc<Shared>>,
    Path((namespace, operation)): Path<(String, String)>,
    request: Request,
) -> Response {
    let (parts, _) = request.into_parts();
    let client_id = client_request_id(&parts.headers);
    if parts
        .headers
        .get(LAST_EVENT_ID)
        .is_some_and(|id| id == sse::END_ID)
    {
        return StatusCode::NO_CONTENT.into_response();
    }
    if let Some(spec) = shared.env.latest().spec(&namespace, &operation)
        && spec.is_external()
        && !spec.is_subscription()
    {
        let err = CallError::not_found(format!(
            "`{}` is a {}: only subscriptions answer `GET` (for EventSource); call it with `POST`",
            spec.id,
            spec.kind.as_str()
        ));
        let mut response = refuse(StatusCode::METHOD_NOT_ALLOWED, &err, client_id);
        response
            .headers_mut()
            .insert(ALLOW, HeaderValue::from_static("POST"));
        return response;
    }
    let input = match query_input(parts.uri.query().unwrap_or_default()) {
        Ok(input) => input,
        Err((status, err)) => return refuse(status, &err, client_id),
    };
    serve_call(&shared, &namespace, &operation, &parts, input, client_id).await
}

/// The `input` parameter of a query string, as JSON; absent, no input.
fn query_input(query: &str) -> Result<Value, (StatusCode, CallError)> {
    let input = form_urlencoded::parse(query.as_bytes())
        .find(|(name, _)| name == "input")
        .map(|(_, value)| value);
    match input {
        None => Ok(Value::Null),
        Some(input) => serde_json::from_str(&input).map_err(|e| {
            let err = CallError::invalid_input(format!(
                "the `input` query parameter is not valid JSON: {e}"
            ))
            .with_details(json!({ "line": e.line(), "column": e.column() }));
            (StatusCode::BAD_REQUEST, err)
        }),
    }
}

/// Call (or subscribe to) an operation with `input`, for the request of `parts`.
async fn serve_call(
    shared: &Arc<Shared>,
    namespace: &str,
    operation: &str,
    parts: &axum::http::request::Parts,
    input: Value,
    client_id: Option<HeaderValue>,
) -> Response {
    let refused = |status, err: CallError| {
        refuse_call(
            shared,
            namespace,
            operation,
            status,
            &err,
            client_id.clone(),
        )
    };
    let identity = match bearer::identity(&*shared.identities, &parts.headers).await {
        Ok(identity) => identity,
        Err(err) => return refused(StatusCode::UNAUTHORIZED, err),
    };
    let address = peer_addr(&shared.env, &parts.extensions, &parts.headers);
    let env = shared.env.latest();
    let spec = env.spec(namespace, operation);
    let subscription = spec.is_some_and(|spec| spec.is_subscription() && spec.is_external());
    // Taken only now, with the request read and its caller known: a slow or anonymous
    // client cannot hold a slot it has not earned, and the slot counts against its caller.
    let slots = if subscription {
        &shared.subscriptions
    } else {
        &shared.calls
    };
    let slot = match slots.take(identity.as_ref().map(|id| id.id.as_str()), address) {
        Ok(slot) => slot,
        Err(err) => return refused(StatusCode::TOO_MANY_REQUESTS, err),
    };
    let mut caller = identity
        .into_iter()
        .fold(Caller::new().transport("http"), Caller::identity);
    if let Some(address) = address {
        caller = caller.peer_addr(address);
    }
    if let Some(id) = client_id.as_ref().and_then(|id| id.to_str().ok()) {
        caller = caller.metadata(REQUEST_ID.as_str(), id);
    }
    if subscription {
        let env = shared.env.with_caller(caller);
        let stream = sse::Streaming {
            slot,
            idle_timeout: shared.limits.subscription_idle_timeout,
            stopping: shared.stopping.clone(),
        };
        return sse::subscribe(&env, spec, namespace, operation, input, client_id, stream).await;
    }
    let env = shared
        .env
        .with_caller(caller.timeout(shared.limits.request_timeout));
    let reply = env.invoke(namespace, operation, input).await;
    let echo = echo(client_id, reply.request_id);
    match &reply.result {
        Ok(output) => response::output(output, echo),
        Err(err) => response::error(response::status_of(err, spec), err, reply.request_id, echo),
    }
}

/// `GET /v1/operations`: every external operation (internal ones never appear), with its
/// access requirements and whether the caller, as its bearer token proves it, may call it.
async fn operations(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    let client_id = client_request_id(&headers);
    let identity = match bearer::identity(&*shared.identities, &headers).await {
        Ok(identity) => identity,
        Err(err) => return refuse(StatusCode::UNAUTHORIZED, &err, client_id),
    };
    let operations: Vec<Value> = shared
        .env
        .latest()
        .operations()
        .filter(|op| op.is_external())
        .map(|op| {
            json!({
                "id": op.id,
                "kind": op.kind,
                "description": op.description,
                "method": "POST",
                "path": op.bindings().http_path,
                "streams": op.is_subscription(),
                "requires_auth": !op.access.is_open(),
                "access": op.access,
                "callable": op.access.check(identity.as_deref(), &op.id).is_ok(),
            })
        })
        .collect();
    let id = RequestId::next();
    response::output(&json!({ "operations": operations }), echo(client_id, id))
}

/// Made per request, from what is mounted now: a remote node's operations change with it.
async fn openapi_document(State(shared): State<Arc<Shared>>) -> Response {
    let document = crate::schema::openapi(shared.env.latest().services());
    (
        [(CONTENT_TYPE, HeaderValue::from_static("application/json"))],
        serde_json::to_vec(&document).expect("a JSON value always serializes"),
    )
        .into_response()
}

async fn no_route(method: Method, uri: Uri, headers: HeaderMap) -> Response {
    let err = CallError::not_found(format!(
        "there is no route `{method} {}`; operations are at `POST /v1/{{namespace}}/{{operation}}`, listed at `GET /v1/operations`",
        uri.path()
    ));
    refuse(StatusCode::NOT_FOUND, &err, client_request_id(&headers))
}

/// A known route with the wrong method, such as `GET /v1/echo/say`: `405` (axum adds
/// `Allow`), with the error body like every other failure.
async fn wrong_method(method: Method, uri: Uri, headers: HeaderMap) -> Response {
    let err = CallError::not_found(format!(
        "`{}` does not answer `{method}`; operations are called with `POST`, listings read with `GET`",
        uri.path()
    ));
    refuse(
        StatusCode::METHOD_NOT_ALLOWED,
        &err,
        client_request_id(&headers),
    )
}

/// The request body, up to `limit` bytes and within `timeout` of the call; a larger body is
/// `413`, a slower one `408` with `TIMEOUT`. Both the `/v1` routes and `/mcp` read bodies
/// through it.
pub(crate) async fn read_body(
    body: Body,
    headers: &HeaderMap,
    limit: usize,
    timeout: Duration,
) -> Result<Bytes, (StatusCode, CallError)> {
    let too_large = || {
        (
            StatusCode::PAYLOAD_TOO_LARGE,
            CallError::resource_exhausted(format!(
                "the request body is larger than the limit of {limit} bytes"
            )),
        )
    };
    let declared = headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|length| length > limit as u64) {
        return Err(too_large());
    }
    let read = tokio::time::timeout(timeout, axum::body::to_bytes(body, limit));
    let Ok(read) = read.await else {
        return Err((
            StatusCode::REQUEST_TIMEOUT,
            CallError::timeout(format!(
                "the request body did not arrive within {} ms",
                timeout.as_millis()
            )),
        ));
    };
    read.map_err(|err| {
        let over_limit = err
            .into_inner()
            .downcast_ref::<http_body_util::LengthLimitError>()
            .is_some();
        if over_limit {
            too_large()
        } else {
            (
                StatusCode::BAD_REQUEST,
                CallError::invalid_input("the request body could not be read to its end"),
            )
        }
    })
}

/// The body as JSON input; an empty body is no input.
fn parse_input(bytes: Bytes) -> Result<Value, (StatusCode, CallError)> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(Value::Null);
    }
    serde_json::from_slice(&bytes).map_err(|e| {
        let err = CallError::invalid_input(format!("the request body is not valid JSON: {e}"))
            .with_details(json!({ "line": e.line(), "column": e.column() }));
        (StatusCode::BAD_REQUEST, err)
    })
}

/// The client's address: the connection's peer as the server recorded it, or behind
/// trusted proxies the client they name.
pub(crate) fn peer_addr(
    env: &OperationEnv,
    extensions: &axum::http::Extensions,
    headers: &HeaderMap,
) -> Option<IpAddr> {
    let ConnectInfo(peer) = extensions.get::<ConnectInfo<SocketAddr>>()?;
    Some(crate::client_addr::resolve(env, peer.ip(), headers))
}

/// The `x-request-id` the client sent, if it is short visible ASCII.
fn client_request_id(headers: &HeaderMap) -> Option<HeaderValue> {
    headers
        .get(&REQUEST_ID)
        .filter(|id| {
            let bytes = id.as_bytes();
            !bytes.is_empty()
                && bytes.len() <= MAX_CLIENT_REQUEST_ID
                && bytes.iter().all(|b| b.is_ascii_graphic())
        })
        .cloned()
}

/// The `x-request-id` of the response: the client's own, or else the call's request id.
fn echo(client_id: Option<HeaderValue>, request_id: RequestId) -> HeaderValue {
    client_id.unwrap_or_else(|| {
        // `RequestId`'s 32 hex digits, without the formatting machinery: this runs for
        // every response.
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let id = request_id.as_u128();
        let digits: [u8; 32] = std::array::from_fn(|i| HEX[((id >> (124 - 4 * i)) & 0xf) as usize]);
        HeaderValue::from_bytes(&digits).expect("hex digits are a header value")
    })
}

/// An error found before any call was made, under a fresh request id.
/// [`refuse`] a call to `namespace/operation` before it reached the env (its body, its
/// credential, no free slot), counted in the metrics ([`OperationEnv::count_refused`]).
fn refuse_call(
    shared: &Shared,
    namespace: &str,
    operation: &str,
    status: StatusCode,
    err: &CallError,
    client_id: Option<HeaderValue>,
) -> Response {
    shared.env.count_refused(namespace, operation, "http", err);
    refuse(status, err, client_id)
}

pub(crate) fn refuse(
    status: StatusCode,
    err: &CallError,
    client_id: Option<HeaderValue>,
) -> Response {
    let id = RequestId::next();
    response::error(status, err, id, echo(client_id, id))
}
