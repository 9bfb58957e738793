//! How call outcomes become HTTP responses: the status map and the error body of SPEC §9.

use axum::http::header::{CONTENT_TYPE, RETRY_AFTER, WWW_AUTHENTICATE};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use super::REQUEST_ID;
use crate::adapters::error_body;
use crate::{CallError, OperationSpec, RequestId, codes};

/// The status of a failed call: the protocol codes of SPEC §9, or the status a domain code
/// was declared with.
pub(crate) fn status_of(err: &CallError, spec: Option<&OperationSpec>) -> StatusCode {
    let status = match err.code.as_ref() {
        codes::NOT_FOUND => 404,
        codes::UNAUTHENTICATED => 401,
        codes::FORBIDDEN => 403,
        codes::INVALID_INPUT => 422,
        codes::INVALID_OPERATION_TYPE => 400,
        codes::TIMEOUT => 504,
        codes::ABORTED => 409,
        codes::UNAVAILABLE => 503,
        codes::RESOURCE_EXHAUSTED => 429,
        codes::INTERNAL => 500,
        domain => spec
            .and_then(|spec| spec.error(domain))
            .map_or(500, |declared| declared.http_status),
    };
    StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}

/// `200` with the output as the body.
pub(crate) fn output(value: &Value, request_id: HeaderValue) -> Response {
    json(StatusCode::OK, value, request_id)
}

/// The error body with `status`; `Retry-After` when the error carries a retry hint.
pub(crate) fn error(
    status: StatusCode,
    err: &CallError,
    request_id: RequestId,
    echo: HeaderValue,
) -> Response {
    let mut response = json(status, &error_body(err, request_id), echo);
    if status == StatusCode::UNAUTHORIZED {
        // RFC 9110 asks every 401 to name its scheme; MCP clients look for it.
        response.headers_mut().insert(
            WWW_AUTHENTICATE,
            HeaderValue::from_static(r#"Bearer realm="alknet""#),
        );
    }
    if err.code == codes::RESOURCE_EXHAUSTED
        && let Some(ms) = err
            .details
            .as_ref()
            .and_then(|d| d.get("retry_after_ms"))
            .and_then(Value::as_u64)
    {
        // Retry-After counts whole seconds; round up so the client never comes back early.
        response
            .headers_mut()
            .insert(RETRY_AFTER, HeaderValue::from(ms.div_ceil(1000).max(1)));
    }
    response
}

fn json(status: StatusCode, value: &Value, request_id: HeaderValue) -> Response {
    let body = serde_json::to_vec(value).unwrap_or_else(|_| b"null".to_vec());
    let mut response = (status, body).into_response();
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    headers.insert(REQUEST_ID, request_id);
    response
}
