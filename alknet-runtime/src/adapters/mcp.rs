//! The MCP adapter (rmcp): every external query and mutation as an MCP tool.
//!
//! - `tools/list` lists each external, non-subscription operation the caller may call, named
//!   `{namespace}.{op}`, with its description, `inputSchema`, `outputSchema` and the
//!   annotation `readOnlyHint` (true for queries, false for mutations).
//! - `tools/call` invokes the operation through [`OperationEnv`] and answers
//!   `structuredContent` plus a text rendering (the output as JSON text). A failed call is a
//!   tool result with `isError: true` whose one text `content` block is the error body
//!   `{"error": {code, message, retryable, details, request_id}}` as JSON, without
//!   `structuredContent` (which clients check against `outputSchema`), never a protocol
//!   fault.
//!
//! MCP requires `outputSchema` to describe an object. An operation whose output is not an
//! object (a string, a number, a list, nothing) is wrapped: its `outputSchema` is
//! `{"type": "object", "properties": {"result": <schema>}, "required": ["result"]}` and its
//! `structuredContent` is `{"result": <output>}`; the text rendering stays the bare output.
//!
//! Served over streamable HTTP at `/mcp` on the HTTP adapter's router (the bearer token of
//! each request picks the caller; a refused token is answered `401` with
//! `WWW-Authenticate: Bearer`, before any MCP message is read), and over stdio
//! ([`McpAdapter::serve_stdio`], anonymous).
//!
//! Over streamable HTTP each client holds a session, from `initialize` until it closes it
//! (`DELETE`, answered `200`) or leaves it unused for the idle timeout; sessions are capped in all and per
//! address ([`McpSessionLimits`]), and opening them may be rate limited
//! ([`McpAdapter::session_rate_limits`]).

mod sessions;

use std::sync::Arc;
use std::time::Duration;

use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, Implementation,
    JsonObject, ListToolsResult, PaginatedRequestParams, ServerCapabilities, ServerConfig, Tool,
    ToolAnnotations,
};
use rmcp::service::RequestContext;
use rmcp::{ErrorData, RoleServer, ServerHandler, ServiceExt};
use serde_json::{Map, Value, json};
use tokio_util::sync::CancellationToken;

use super::error_body;
use crate::slots::{SlotLimits, Slots};
use crate::{
    CallError, Caller, Identity, IdentityProvider, OperationEnv, OperationSpec, RateLimiter,
    RequestId, StaticIdentities,
};

/// The key a non-object output is wrapped under in `structuredContent`.
const WRAPPED: &str = "result";

/// How many MCP sessions over streamable HTTP may be open, and how long one lives unused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct McpSessionLimits {
    /// Sessions open at once, in all; one more `initialize` is answered `429` with
    /// `RESOURCE_EXHAUSTED` (retryable) and `Retry-After: 1`.
    pub max_sessions: usize,
    /// Sessions open at once from one address; one more is turned away the same way.
    pub max_sessions_per_address: usize,
    /// A session that exchanges no message for this long is closed and its memory freed
    /// (rmcp's session keep-alive); its client's next request gets `404` and it starts a
    /// new session. Keep it longer than the request timeout: a session waiting on a tool
    /// call exchanges nothing meanwhile.
    pub idle_timeout: Duration,
}

impl Default for McpSessionLimits {
    fn default() -> Self {
        McpSessionLimits {
            max_sessions: 1024,
            max_sessions_per_address: 16,
            idle_timeout: Duration::from_secs(300),
        }
    }
}

/// Serves an [`OperationEnv`] as MCP tools. See the [module docs](self).
#[derive(Clone)]
pub struct McpAdapter {
    env: OperationEnv,
    identities: Arc<dyn IdentityProvider>,
    timeout: Duration,
    /// `None`: rmcp's loopback names.
    allowed_hosts: Option<Vec<String>>,
    max_body_bytes: usize,
    body_read_timeout: Duration,
    sessions: McpSessionLimits,
    /// `None`: opening sessions is limited only by their counts.
    session_rate: Option<Arc<RateLimiter>>,
    /// `None`: tool calls are not limited.
    slots: Option<Slots>,
    /// Cancelled when the server shuts down: every session ends.
    stopping: CancellationToken,
}

impl McpAdapter {
    /// An adapter for `env`: calls time out after 30 s, every bearer token is refused;
    /// over streamable HTTP, bodies up to 1 MiB arriving within 30 s, and sessions as
    /// [`McpSessionLimits::default`] says.
    pub fn new(env: OperationEnv) -> Self {
        McpAdapter {
            env,
            identities: Arc::new(StaticIdentities::new()),
            timeout: Duration::from_secs(30),
            allowed_hosts: None,
            max_body_bytes: 1024 * 1024,
            body_read_timeout: Duration::from_secs(30),
            sessions: McpSessionLimits::default(),
            session_rate: None,
            slots: None,
            stopping: CancellationToken::new(),
        }
    }

    /// Resolve `Authorization: Bearer` tokens (streamable HTTP) with `identities`.
    pub fn identities(mut self, identities: Arc<dyn IdentityProvider>) -> Self {
        self.identities = identities;
        self
    }

    /// How long a tool call may take before it is cancelled and answered `TIMEOUT`.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Answer streamable HTTP requests whose `Host` is one of `hosts` (`name` or
    /// `name:port`) instead of only loopback names; others get `403`. The check guards a
    /// node against DNS rebinding: a node reached by name must list that name.
    pub fn allowed_hosts(mut self, hosts: impl IntoIterator<Item = impl Into<String>>) -> Self {
        self.allowed_hosts = Some(hosts.into_iter().map(Into::into).collect());
        self
    }

    /// Serve at most `calls` tool calls at once; one more is answered at once with an
    /// `isError` result carrying `RESOURCE_EXHAUSTED` (retryable), never queued.
    pub fn max_concurrent_calls(self, calls: usize) -> Self {
        self.slots(Slots::new(
            "concurrent calls",
            SlotLimits {
                total: calls,
                per_identity: calls,
                per_address: calls,
            },
        ))
    }

    /// Draw tool calls' slots from `slots`, shared with the HTTP adapter's routes.
    pub(crate) fn slots(mut self, slots: Slots) -> Self {
        self.slots = Some(slots);
        self
    }

    /// The largest streamable HTTP request body accepted; a larger one is `413` with
    /// `RESOURCE_EXHAUSTED`.
    pub fn max_body_bytes(mut self, bytes: usize) -> Self {
        self.max_body_bytes = bytes;
        self
    }

    /// How long a streamable HTTP request's body may take to arrive; a slower one is `408`
    /// with `TIMEOUT`.
    pub fn body_read_timeout(mut self, timeout: Duration) -> Self {
        self.body_read_timeout = timeout;
        self
    }

    /// Cap and expire streamable HTTP sessions with `limits`.
    pub fn sessions(mut self, limits: McpSessionLimits) -> Self {
        self.sessions = limits;
        self
    }

    /// Count every session opened (an `initialize`, or any `POST` without
    /// `Mcp-Session-Id`) against `limiter`'s per-address rate (`[rate_limits] per_ip`),
    /// in buckets of its own; over it, `429` with `RESOURCE_EXHAUSTED` and `Retry-After`.
    pub fn session_rate_limits(mut self, limiter: Arc<RateLimiter>) -> Self {
        self.session_rate = Some(limiter);
        self
    }

    /// End every session, and refuse new ones, once `stopping` is cancelled.
    pub(crate) fn stop_with(mut self, stopping: CancellationToken) -> Self {
        self.stopping = stopping;
        self
    }

    /// The streamable HTTP transport as an axum router, for nesting on another (the HTTP
    /// adapter nests it at `/mcp`): it reads each body within the body limits, admits new
    /// sessions within the session limits, and hands the request to rmcp. By default it
    /// answers only requests whose `Host` is a loopback name, as rmcp does against DNS
    /// rebinding ([`McpAdapter::allowed_hosts`] widens that). The per-address limits need
    /// the router served with `into_make_service_with_connect_info::<SocketAddr>()`, as
    /// [`HttpAdapter::serve`](crate::adapters::http::HttpAdapter::serve) does.
    pub fn router(self) -> axum::Router {
        sessions::router(self)
    }

    /// Serve MCP over this process's stdin and stdout until the client closes them. The
    /// caller is anonymous: stdio carries no credentials.
    pub async fn serve_stdio(self) -> std::io::Result<()> {
        let running = self
            .serve(rmcp::transport::stdio())
            .await
            .map_err(std::io::Error::other)?;
        running.waiting().await.map_err(std::io::Error::other)?;
        Ok(())
    }

    /// Who is calling: over streamable HTTP, the identity the gate resolved from the
    /// request's bearer token (a refused token never gets this far: it is answered `401`);
    /// over stdio, no one.
    fn identity(ctx: &RequestContext<RoleServer>) -> Option<Arc<Identity>> {
        let parts = ctx.extensions.get::<axum::http::request::Parts>()?;
        let sessions::Caller(identity) = parts.extensions.get::<sessions::Caller>()?;
        identity.clone()
    }

    async fn call(
        &self,
        request: CallToolRequestParams,
        ctx: RequestContext<RoleServer>,
    ) -> CallToolResult {
        let (namespace, operation) = operation_of(&request.name);
        let operation = &*operation;
        let identity = Self::identity(&ctx);
        let address = peer_addr(&self.env, &ctx);
        let holder = identity.as_ref().map(|identity| identity.id.as_str());
        let slot = match self.slots.as_ref().map(|slots| slots.take(holder, address)) {
            Some(Err(err)) => return failed(&err, RequestId::next()),
            slot => slot,
        };
        let mut caller = identity
            .into_iter()
            .fold(Caller::new().transport("mcp"), Caller::identity)
            .timeout(self.timeout);
        if let Some(address) = address {
            caller = caller.peer_addr(address);
        }
        let input = request.arguments.map_or(Value::Null, Value::Object);
        let env = self.env.with_caller(caller);
        let call = env.invoke(namespace, operation, input);
        tokio::pin!(call);
        // A client's `notifications/cancelled` drops the call, which cancels its handler.
        // The slot is freed first: whoever sees the handler cancelled finds it free.
        let reply = tokio::select! {
            reply = &mut call => reply,
            _ = ctx.ct.cancelled() => {
                drop(slot);
                return failed(&CallError::aborted("the client cancelled the call"), RequestId::next());
            }
        };
        match reply.result {
            Ok(output) => {
                let text = output.to_string();
                let wrap = env
                    .spec(namespace, operation)
                    .is_some_and(|spec| !is_object_schema(&spec.output_schema));
                let structured = if wrap {
                    json!({ WRAPPED: output })
                } else {
                    output
                };
                let mut result = CallToolResult::structured(structured);
                result.content = vec![ContentBlock::text(text)];
                result
            }
            Err(err) => failed(&err, reply.request_id),
        }
    }
}

impl ServerHandler for McpAdapter {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new("alknet", env!("CARGO_PKG_VERSION")))
            .with_instructions("Each tool is an alknet operation, named `{namespace}.{operation}`.")
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        let identity = Self::identity(&ctx);
        let tools = self
            .env
            .latest()
            .operations()
            .filter(|op| op.access.check(identity.as_deref(), &op.id).is_ok())
            .filter_map(tool)
            .collect();
        Ok(ListToolsResult::with_all_items(tools))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        Ok(self.call(request, ctx).await.into())
    }

    fn get_tool(&self, name: &str) -> Option<Tool> {
        let (namespace, operation) = operation_of(name);
        self.env.latest().spec(namespace, &operation).and_then(tool)
    }
}

/// The namespace and operation a tool name stands for: the reverse of
/// [`Bindings::mcp_tool`](crate::Bindings::mcp_tool).
fn operation_of(tool: &str) -> (&str, std::borrow::Cow<'_, str>) {
    match tool.split_once('.') {
        Some((namespace, operation)) if operation.contains('.') => {
            (namespace, operation.replace('.', "/").into())
        }
        Some((namespace, operation)) => (namespace, operation.into()),
        None => (tool, "".into()),
    }
}

/// The tool of `spec`, if MCP serves it (external, not a subscription).
fn tool(spec: &OperationSpec) -> Option<Tool> {
    let bindings = spec.bindings();
    let name = bindings.mcp_tool?;
    let input = object(spec.input_schema.clone());
    let output = if is_object_schema(&spec.output_schema) {
        object(spec.output_schema.clone())
    } else {
        wrapped(spec.output_schema.clone())
    };
    let annotations = ToolAnnotations::new().read_only(bindings.mcp_read_only);
    let annotations = if bindings.mcp_read_only {
        annotations
    } else {
        // A mutation may change anything its service owns; say so rather than let a
        // client assume the MCP default, unless it declares itself idempotent (and so
        // destroys nothing that calling it again would not put back).
        annotations
            .destructive(!spec.idempotent)
            .idempotent(spec.idempotent)
    };
    Some(
        Tool::new(name, spec.description.clone(), Arc::new(input))
            .with_raw_output_schema(Arc::new(output))
            .with_annotations(annotations),
    )
}

fn is_object_schema(schema: &Value) -> bool {
    schema.get("type").and_then(Value::as_str) == Some("object")
}

fn object(schema: Value) -> JsonObject {
    match schema {
        Value::Object(map) => map,
        // `true` and other non-object schemas accept anything.
        _ => JsonObject::new(),
    }
}

/// `{"type": "object", "properties": {"result": schema}, "required": ["result"]}`, with the
/// inner schema's `$defs` moved to the root so its `#/$defs/…` references still resolve.
fn wrapped(schema: Value) -> JsonObject {
    let mut inner = object(schema);
    let dialect = inner.remove("$schema");
    let defs = inner.remove("$defs");
    let mut root = Map::new();
    if let Some(dialect) = dialect {
        root.insert("$schema".into(), dialect);
    }
    root.insert("type".into(), json!("object"));
    root.insert("properties".into(), json!({ WRAPPED: inner }));
    root.insert("required".into(), json!([WRAPPED]));
    if let Some(defs) = defs {
        root.insert("$defs".into(), defs);
    }
    root
}

/// The client's address, over streamable HTTP served with connect info (as the HTTP
/// adapter serves it, and behind trusted proxies as it reads them); stdio has none.
fn peer_addr(env: &OperationEnv, ctx: &RequestContext<RoleServer>) -> Option<std::net::IpAddr> {
    let parts = ctx.extensions.get::<axum::http::request::Parts>()?;
    super::http::peer_addr(env, &parts.extensions, &parts.headers)
}

/// A failed call as a tool result: `isError`, the error body as JSON text in `content`,
/// and no `structuredContent`. Clients (the TypeScript SDK among them) check
/// `structuredContent` against the tool's `outputSchema` even on an error, and an error
/// body never matches an output schema.
fn failed(err: &CallError, request_id: RequestId) -> CallToolResult {
    let body = error_body(err, request_id).to_string();
    CallToolResult::error(vec![ContentBlock::text(body)])
}

#[cfg(test)]
mod tests {
    use super::operation_of;

    #[test]
    fn a_tool_name_stands_for_its_operation() {
        assert_eq!(operation_of("echo.say"), ("echo", "say".into()));
        assert_eq!(operation_of("far.echo.say"), ("far", "echo/say".into()));
        assert_eq!(operation_of("echo"), ("echo", "".into()));
    }
}
