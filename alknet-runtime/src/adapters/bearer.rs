//! `Authorization: Bearer <token>` -> the caller's identity, for the adapters that speak HTTP.

use std::sync::Arc;

use axum::http::HeaderMap;
use axum::http::header::AUTHORIZATION;

use crate::{CallError, Credential, Identity, IdentityProvider};

/// The identity the request's bearer token proves; `None` for a request without an
/// `Authorization` header (an anonymous caller). A header that is not `Bearer <token>`, or
/// a token the provider refuses, is `UNAUTHENTICATED`.
pub(crate) async fn identity(
    identities: &dyn IdentityProvider,
    headers: &HeaderMap,
) -> Result<Option<Arc<Identity>>, CallError> {
    let Some(value) = headers.get(AUTHORIZATION) else {
        return Ok(None);
    };
    let token = value
        .to_str()
        .ok()
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim())
        .filter(|token| !token.is_empty())
        .ok_or_else(|| {
            CallError::unauthenticated(
                "the Authorization header must be `Bearer <token>` with an API key or signed token",
            )
        })?;
    identities
        .resolve(Credential::bearer(token))
        .await
        .map(Some)
}
