//! Adapters (SPEC §9): the ways outside callers reach a node's operations. Each knows only
//! [`OperationEnv`](crate::OperationEnv) and the [`OperationSpec`](crate::OperationSpec)s
//! with their [`Bindings`](crate::Bindings) — nothing about any one service — and each sits
//! behind its own cargo feature:
//!
//! - [`http`] (feature `http`): `POST /v1/{namespace}/{op}`, Server-Sent Events for
//!   subscriptions, `GET /v1/operations`, `GET /openapi.json`, `GET /healthz`.
//! - [`mcp`] (feature `mcp`, which needs `http`): the operations as MCP tools, over
//!   streamable HTTP at `/mcp` on the HTTP adapter's router, and over stdio.
//! - [`dns`] (feature `dns`): `{op}.{namespace}.{zone} TXT?` over UDP and TCP.
//!
//! `docs/adapters.md` describes the routes, status maps and limits of each.

#[cfg(feature = "http")]
mod bearer;
#[cfg(feature = "dns")]
pub mod dns;
#[cfg(feature = "http")]
pub mod http;
#[cfg(feature = "mcp")]
pub mod mcp;

/// `{"error": {code, message, retryable, details, request_id}}`: how the HTTP adapter
/// answers a failed call, and how MCP and DNS carry the error too.
#[cfg(any(feature = "http", feature = "dns", feature = "websocket"))]
pub(crate) fn error_body(
    err: &crate::CallError,
    request_id: crate::RequestId,
) -> serde_json::Value {
    serde_json::json!({
        "error": {
            "code": err.code,
            "message": err.message,
            "retryable": err.retryable,
            "details": err.details,
            "request_id": request_id,
        }
    })
}

/// After a failed `accept`: go on at once when only that connection failed, or pause when
/// the listener itself is in trouble (out of file descriptors), rather than spin.
pub(crate) async fn wait_after_accept_error(err: std::io::Error) {
    use std::io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    if matches!(
        err.kind(),
        ConnectionAborted | ConnectionRefused | ConnectionReset
    ) {
        return;
    }
    tracing::error!(%err, "accepting a connection failed; pausing for a second");
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
}
