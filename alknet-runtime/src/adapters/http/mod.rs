//! The HTTP adapter (axum): every external operation at `POST /v1/{namespace}/{op}`.
//!
//! | route | answer |
//! |---|---|
//! | `POST /v1/{namespace}/{op}` | the input as the JSON body (empty = no input); `200` and the output as JSON |
//! | the same, for a subscription | `200` and Server-Sent Events: one event per item, an `error` event, a `completed` event |
//! | `GET /v1/operations` | the external operations, and whether this caller may call each |
//! | `GET /openapi.json` | the OpenAPI 3.1 document of [`schema::openapi`](crate::schema::openapi) |
//! | `GET /healthz` | `{"status": "ok"}` |
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

mod response;
mod sse;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, Path, Request, State};
use axum::http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};

use super::bearer;
use super::slots::CallSlots;
use crate::{CallError, Caller, IdentityProvider, OperationEnv, RequestId, StaticIdentities};

/// The header a client may send to name its request; the adapter answers with it.
pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The longest client request id the adapter accepts; a longer or non-ASCII one is ignored.
const MAX_CLIENT_REQUEST_ID: usize = 128;

/// The HTTP adapter's limits. Each has a default that suits a small node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpLimits {
    /// The largest request body accepted; a larger one is `413` with `RESOURCE_EXHAUSTED`.
    pub max_body_bytes: usize,
    /// How long a query or mutation may take; past it the call is cancelled and answered
    /// `504` with `TIMEOUT`. Subscriptions last as long as their client listens.
    pub request_timeout: Duration,
    /// How many calls (`POST /v1/…` and MCP tool calls) are served at once; one more is
    /// turned away at once with `429`, `RESOURCE_EXHAUSTED` (retryable) and
    /// `Retry-After: 1` (over MCP, an `isError` result), never queued. A subscription
    /// holds its slot while it streams.
    pub max_concurrent_requests: usize,
}

impl Default for HttpLimits {
    fn default() -> Self {
        HttpLimits {
            max_body_bytes: 1024 * 1024,
            request_timeout: Duration::from_secs(30),
            max_concurrent_requests: 1024,
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
}

/// What every request handler shares.
struct Shared {
    env: OperationEnv,
    identities: Arc<dyn IdentityProvider>,
    limits: HttpLimits,
    openapi: Bytes,
    /// One per call in progress (`POST /v1/…` and MCP's tool calls), up to the limit.
    slots: CallSlots,
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

    /// The axum router: every route of the adapter (and `/mcp` with the `mcp` feature).
    pub fn router(self) -> Router {
        let openapi = serde_json::to_vec(&crate::schema::openapi(self.env.services()))
            .expect("a JSON value always serializes");
        let slots = CallSlots::new(self.limits.max_concurrent_requests);
        #[cfg(feature = "mcp")]
        let mcp = {
            let mcp = super::mcp::McpAdapter::new(self.env.clone())
                .identities(self.identities.clone())
                .timeout(self.limits.request_timeout)
                .max_body_bytes(self.limits.max_body_bytes)
                .slots(slots.clone());
            match self.mcp_allowed_hosts {
                Some(hosts) => mcp.allowed_hosts(hosts),
                None => mcp,
            }
        };
        let shared = Arc::new(Shared {
            env: self.env,
            identities: self.identities,
            limits: self.limits,
            openapi: Bytes::from(openapi),
            slots,
        });
        let router = Router::new()
            .route("/v1/operations", get(operations))
            .route("/v1/{namespace}/{operation}", post(call))
            .route("/openapi.json", get(openapi_document))
            .route("/healthz", get(health))
            .fallback(no_route)
            .method_not_allowed_fallback(wrong_method);
        #[cfg(feature = "mcp")]
        let router = router.nest_service("/mcp", mcp.streamable_http_service());
        router.with_state(shared)
    }

    /// Serve on `listener` until the process ends.
    pub async fn serve(self, listener: tokio::net::TcpListener) -> std::io::Result<()> {
        axum::serve(
            listener,
            self.router()
                .into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
    }
}

/// `POST /v1/{namespace}/{operation}`.
async fn call(
    State(shared): State<Arc<Shared>>,
    Path((namespace, operation)): Path<(String, String)>,
    request: Request,
) -> Response {
    let (parts, body) = request.into_parts();
    let client_id = client_request_id(&parts.headers);
    // Taken before reading the body, so a flood of large bodies is turned away too.
    let permit = match shared.slots.take() {
        Ok(permit) => permit,
        Err(err) => return refuse(StatusCode::TOO_MANY_REQUESTS, &err, client_id),
    };
    let input = match read_input(body, &parts.headers, shared.limits.max_body_bytes).await {
        Ok(input) => input,
        Err((status, err)) => return refuse(status, &err, client_id),
    };
    let mut caller = match caller(&shared, &parts.headers).await {
        Ok(caller) => caller,
        Err(err) => return refuse(StatusCode::UNAUTHORIZED, &err, client_id),
    };
    if let Some(ConnectInfo(peer)) = parts.extensions.get::<ConnectInfo<SocketAddr>>() {
        caller = caller.peer_addr(crate::client_addr::resolve(
            &shared.env,
            peer.ip(),
            &parts.headers,
        ));
    }
    if let Some(id) = client_id.as_ref().and_then(|id| id.to_str().ok()) {
        caller = caller.metadata(REQUEST_ID.as_str(), id);
    }
    let spec = shared.env.spec(&namespace, &operation);
    if spec.is_some_and(|spec| spec.is_subscription() && spec.is_external()) {
        let env = shared.env.with_caller(caller);
        return sse::subscribe(&env, spec, &namespace, &operation, input, client_id, permit).await;
    }
    let env = shared
        .env
        .with_caller(caller.timeout(shared.limits.request_timeout));
    let reply = env.invoke(&namespace, &operation, input).await;
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

async fn openapi_document(State(shared): State<Arc<Shared>>) -> Response {
    (
        [(CONTENT_TYPE, HeaderValue::from_static("application/json"))],
        shared.openapi.clone(),
    )
        .into_response()
}

async fn health() -> Response {
    (
        [(CONTENT_TYPE, HeaderValue::from_static("application/json"))],
        r#"{"status":"ok"}"#,
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

/// The caller as the request's bearer token proves it (anonymous without one).
async fn caller(shared: &Shared, headers: &HeaderMap) -> Result<Caller, CallError> {
    let identity = bearer::identity(&*shared.identities, headers).await?;
    Ok(identity.into_iter().fold(Caller::new(), Caller::identity))
}

/// The body as JSON input; an empty body is no input.
async fn read_input(
    body: Body,
    headers: &HeaderMap,
    limit: usize,
) -> Result<Value, (StatusCode, CallError)> {
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
    let bytes = axum::body::to_bytes(body, limit).await.map_err(|err| {
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
    })?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(Value::Null);
    }
    serde_json::from_slice(&bytes).map_err(|e| {
        let err = CallError::invalid_input(format!("the request body is not valid JSON: {e}"))
            .with_details(json!({ "line": e.line(), "column": e.column() }));
        (StatusCode::BAD_REQUEST, err)
    })
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
fn refuse(status: StatusCode, err: &CallError, client_id: Option<HeaderValue>) -> Response {
    let id = RequestId::next();
    response::error(status, err, id, echo(client_id, id))
}
