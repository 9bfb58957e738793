//! Streamable HTTP for the MCP adapter: rmcp's transport and session manager, behind a gate
//! that reads each body within its limits and admits each new session within the session
//! limits, and a session manager that holds each open session's slot until rmcp closes it.
//!
//! rmcp closes a session on `DELETE`, when its keep-alive (our idle timeout) passes without
//! a message, and at shutdown; every close goes through [`SessionManager::close_session`],
//! which gives the slot back.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::Response;
use futures::Stream;
use rmcp::model::{ClientJsonRpcMessage, GetExtensions, JsonRpcMessage, ServerJsonRpcMessage};
use rmcp::transport::WorkerTransport;
use rmcp::transport::streamable_http_server::session::local::{
    LocalSessionManager, LocalSessionManagerError, LocalSessionWorker, SessionConfig,
};
use rmcp::transport::streamable_http_server::session::{
    ServerSseMessage, SessionId, SessionManager,
};
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};

use super::McpAdapter;
use crate::adapters::bearer;
use crate::adapters::http::{peer_addr, read_body, refuse};
use crate::slots::{Slot, SlotLimits, Slots};
use crate::{Identity, IdentityProvider, RateLimiter};

/// The header a client names its session with.
const SESSION_ID: &str = "mcp-session-id";

/// The router of [`McpAdapter::router`].
pub(super) fn router(adapter: McpAdapter) -> Router {
    let limits = &adapter.sessions;
    let gate = Arc::new(Gate {
        env: adapter.env.clone(),
        identities: adapter.identities.clone(),
        max_body_bytes: adapter.max_body_bytes,
        body_read_timeout: adapter.body_read_timeout,
        rate: adapter.session_rate.clone(),
        sessions: Slots::new(
            "open MCP sessions",
            SlotLimits {
                total: limits.max_sessions,
                per_identity: usize::MAX,
                per_address: limits.max_sessions_per_address,
            },
        ),
    });
    let mut session_config = SessionConfig::default();
    session_config.keep_alive = Some(limits.idle_timeout);
    let mut local = LocalSessionManager::default();
    local.session_config = session_config;
    let manager = Arc::new(CappedSessions {
        local,
        open: Mutex::default(),
    });
    let mut config = StreamableHttpServerConfig::default();
    if let Some(hosts) = &adapter.allowed_hosts {
        config = config.with_allowed_hosts(hosts.clone());
    }
    config.max_request_body_bytes = adapter.max_body_bytes;
    config.cancellation_token = adapter.stopping.clone();
    let service = StreamableHttpService::new(move || Ok(adapter.clone()), manager, config);
    Router::new()
        .fallback_service(service)
        .layer(middleware::from_fn_with_state(gate, admit))
}

/// What every request to `/mcp` passes before rmcp sees it.
struct Gate {
    /// Where the client's address is read from behind trusted proxies.
    env: crate::OperationEnv,
    /// Who a bearer token names.
    identities: Arc<dyn IdentityProvider>,
    max_body_bytes: usize,
    body_read_timeout: std::time::Duration,
    rate: Option<Arc<RateLimiter>>,
    sessions: Slots,
}

/// The slot of a session being opened, on its way through rmcp to
/// [`CappedSessions::initialize_session`] in the request's extensions (which must be
/// `Clone`, hence the shared cell; the slot itself is taken out once).
#[derive(Clone)]
struct Opening(Arc<Mutex<Option<Slot>>>);

/// The caller a request's bearer token names (`None`: anonymous), resolved by the gate for
/// the tools to read from the request's parts.
#[derive(Clone)]
pub(super) struct Caller(pub(super) Option<Arc<Identity>>);

/// Read the body within its limits and resolve the bearer token (a refused one is `401`
/// with `WWW-Authenticate`, as MCP's authorization rules ask), then, for a request that
/// opens a session (a `POST` without `Mcp-Session-Id`), apply the session rate and take a
/// session slot. Refusals are answered here with the error body, before rmcp creates
/// anything. rmcp answers a `DELETE` that closed a session `202`; clients expect `200`.
async fn admit(State(gate): State<Arc<Gate>>, request: Request, next: Next) -> Response {
    let (mut parts, body) = request.into_parts();
    let body = match read_body(
        body,
        &parts.headers,
        gate.max_body_bytes,
        gate.body_read_timeout,
    )
    .await
    {
        Ok(body) => body,
        Err((status, err)) => return refuse(status, &err, None),
    };
    match bearer::identity(&*gate.identities, &parts.headers).await {
        Ok(identity) => parts.extensions.insert(Caller(identity)),
        Err(err) => return refuse(StatusCode::UNAUTHORIZED, &err, None),
    };
    let delete = parts.method == Method::DELETE;
    if parts.method == Method::POST && !parts.headers.contains_key(SESSION_ID) {
        let address = peer_addr(&gate.env, &parts.extensions, &parts.headers);
        if let Some(rate) = &gate.rate
            && let Err(err) = rate.check(None, address)
        {
            return refuse(StatusCode::TOO_MANY_REQUESTS, &err, None);
        }
        match gate.sessions.take(None, address) {
            Ok(slot) => {
                parts
                    .extensions
                    .insert(Opening(Arc::new(Mutex::new(Some(slot)))));
            }
            Err(err) => return refuse(StatusCode::TOO_MANY_REQUESTS, &err, None),
        }
    }
    let mut response = next.run(Request::from_parts(parts, Body::from(body))).await;
    if delete && response.status() == StatusCode::ACCEPTED {
        *response.status_mut() = StatusCode::OK;
    }
    response
}

/// rmcp's in-memory sessions, each holding its slot from `initialize` until it is closed.
struct CappedSessions {
    local: LocalSessionManager,
    open: Mutex<HashMap<SessionId, Slot>>,
}

impl CappedSessions {
    fn open(&self) -> std::sync::MutexGuard<'_, HashMap<SessionId, Slot>> {
        self.open.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The slot the gate took for the session `message` (an `initialize`) opens.
fn opening_slot(message: &mut ClientJsonRpcMessage) -> Option<Slot> {
    let JsonRpcMessage::Request(request) = message else {
        return None;
    };
    let parts = request
        .request
        .extensions_mut()
        .get_mut::<axum::http::request::Parts>()?;
    let Opening(cell) = parts.extensions.remove::<Opening>()?;
    cell.lock().unwrap_or_else(PoisonError::into_inner).take()
}

impl SessionManager for CappedSessions {
    type Error = LocalSessionManagerError;
    type Transport = WorkerTransport<LocalSessionWorker>;

    async fn create_session(&self) -> Result<(SessionId, Self::Transport), Self::Error> {
        self.local.create_session().await
    }

    async fn initialize_session(
        &self,
        id: &SessionId,
        mut message: ClientJsonRpcMessage,
    ) -> Result<ServerJsonRpcMessage, Self::Error> {
        // Held before the session answers, so a close can never come first and miss it.
        if let Some(slot) = opening_slot(&mut message) {
            self.open().insert(id.clone(), slot);
        }
        let initialized = self.local.initialize_session(id, message).await;
        if initialized.is_err() {
            self.open().remove(id);
        }
        initialized
    }

    async fn has_session(&self, id: &SessionId) -> Result<bool, Self::Error> {
        self.local.has_session(id).await
    }

    async fn close_session(&self, id: &SessionId) -> Result<(), Self::Error> {
        let closed = self.local.close_session(id).await;
        self.open().remove(id);
        closed
    }

    async fn create_stream(
        &self,
        id: &SessionId,
        message: ClientJsonRpcMessage,
    ) -> Result<impl Stream<Item = ServerSseMessage> + Send + Sync + 'static, Self::Error> {
        self.local.create_stream(id, message).await
    }

    async fn accept_message(
        &self,
        id: &SessionId,
        message: ClientJsonRpcMessage,
    ) -> Result<(), Self::Error> {
        self.local.accept_message(id, message).await
    }

    async fn create_standalone_stream(
        &self,
        id: &SessionId,
    ) -> Result<impl Stream<Item = ServerSseMessage> + Send + Sync + 'static, Self::Error> {
        self.local.create_standalone_stream(id).await
    }

    async fn resume(
        &self,
        id: &SessionId,
        last_event_id: String,
    ) -> Result<impl Stream<Item = ServerSseMessage> + Send + Sync + 'static, Self::Error> {
        self.local.resume(id, last_event_id).await
    }
}
