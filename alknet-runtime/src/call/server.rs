//! Serving an [`OperationEnv`] to peers: one code path for every transport, which only
//! frames the events differently.

use std::future::Future;
use std::io;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use futures::{FutureExt, StreamExt};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::watch;

use super::wire::{
    CallRequested, DEFAULT_FRAME_READ_TIMEOUT, DEFAULT_MAX_FRAME_SIZE, Event, EventEnvelope,
};
use crate::config::CallSettings;
use crate::{
    CallError, Caller, Credential, Identity, IdentityProvider, OperationEnv, OperationKind,
    OperationSpec, ServiceSpec, schema,
};

/// Serves an [`OperationEnv`] over the call protocol: resolves who is calling, dispatches,
/// and streams the outcome back. Cheap to clone; one serves every connection and transport.
///
/// ```
/// use std::sync::Arc;
/// use alknet_runtime::{OperationEnv, StaticIdentities};
/// use alknet_runtime::call::CallServer;
///
/// let env = OperationEnv::builder().build().unwrap();
/// let server = CallServer::new(env, Arc::new(StaticIdentities::new()));
/// ```
#[derive(Clone)]
pub struct CallServer {
    inner: Arc<ServerInner>,
}

struct ServerInner {
    env: OperationEnv,
    identities: Arc<dyn IdentityProvider>,
    limits: FrameLimits,
}

/// The largest frame (or WebSocket message) read from a peer, by whether it is
/// authenticated, and how long one may take to arrive.
#[derive(Debug, Clone, Copy)]
struct FrameLimits {
    authenticated: usize,
    unauthenticated: usize,
    read_timeout: Duration,
}

/// The largest frame read from an unauthenticated peer by default: 1 MiB, as much as the
/// HTTP adapter's body limit for any caller.
pub const DEFAULT_UNAUTHENTICATED_MAX_FRAME_SIZE: usize = 1024 * 1024;

impl CallServer {
    /// Serve `env`, resolving peers' keys and tokens with `identities`.
    pub fn new(env: OperationEnv, identities: Arc<dyn IdentityProvider>) -> Self {
        CallServer {
            inner: Arc::new(ServerInner {
                env,
                identities,
                limits: FrameLimits {
                    authenticated: DEFAULT_MAX_FRAME_SIZE,
                    unauthenticated: DEFAULT_UNAUTHENTICATED_MAX_FRAME_SIZE,
                    read_timeout: DEFAULT_FRAME_READ_TIMEOUT,
                },
            }),
        }
    }

    /// Refuse frames (or WebSocket messages) larger than `bytes` from authenticated peers;
    /// default 16 MiB.
    pub fn max_frame_size(self, bytes: usize) -> Self {
        self.with_limits(|limits| limits.authenticated = bytes)
    }

    /// Refuse frames (or WebSocket messages) larger than `bytes` from peers that are not
    /// authenticated (their key unknown, no call of theirs carrying a valid `auth_token`
    /// yet; on WebSocket, no valid bearer token on the upgrade); default 1 MiB.
    pub fn unauthenticated_max_frame_size(self, bytes: usize) -> Self {
        self.with_limits(|limits| limits.unauthenticated = bytes)
    }

    /// Give up on a frame (or WebSocket message) from a peer that is not whole `timeout`
    /// after its first byte arrived (default 10 s): over QUIC the call's stream is answered
    /// `TIMEOUT` and stopped, over WebSocket the socket is closed (1008); either way what
    /// the frame held is freed.
    pub fn frame_read_timeout(self, timeout: Duration) -> Self {
        self.with_limits(|limits| limits.read_timeout = timeout)
    }

    /// The frame limits and the read timeout of a node's `[call]` settings; each one
    /// absent keeps what the server has.
    pub fn with_settings(mut self, settings: &CallSettings) -> Self {
        if let Some(bytes) = settings.max_frame_bytes {
            self = self.max_frame_size(bytes.get());
        }
        if let Some(bytes) = settings.unauthenticated_max_frame_bytes {
            self = self.unauthenticated_max_frame_size(bytes.get());
        }
        if let Some(ms) = settings.frame_read_timeout_ms {
            self = self.frame_read_timeout(Duration::from_millis(ms.get()));
        }
        self
    }

    fn with_limits(self, change: impl FnOnce(&mut FrameLimits)) -> Self {
        let inner = &self.inner;
        let mut limits = inner.limits;
        change(&mut limits);
        CallServer {
            inner: Arc::new(ServerInner {
                env: inner.env.clone(),
                identities: inner.identities.clone(),
                limits,
            }),
        }
    }

    /// The largest frame read from a peer that is `authenticated`, or not.
    pub(crate) fn frame_limit(&self, authenticated: bool) -> usize {
        if authenticated {
            self.inner.limits.authenticated
        } else {
            self.inner.limits.unauthenticated
        }
    }

    /// How long a frame from a peer may take to arrive, from its first byte.
    pub(crate) fn read_timeout(&self) -> Duration {
        self.inner.limits.read_timeout
    }

    /// The peer of a QUIC connection, from the key it proved and the address it connects
    /// from; asked once per connection. A key the node does not know is a stranger's: the
    /// peer calls anonymously.
    pub(crate) async fn key_peer(&self, fingerprint: &str, address: Option<IpAddr>) -> Peer {
        let identity = self
            .inner
            .identities
            .resolve(Credential::KeyFingerprint(fingerprint))
            .await
            .ok();
        Peer::new(identity, Some(fingerprint.to_string()), address, "quic")
    }

    /// The peer of a WebSocket, from the bearer token of its upgrade (none: anonymous). A
    /// token that is refused is `UNAUTHENTICATED`, as on HTTP: a caller that meant to be
    /// someone is told at once rather than served as no one.
    #[cfg(feature = "websocket")]
    pub(crate) async fn bearer_peer(
        &self,
        token: Option<&str>,
        address: Option<IpAddr>,
    ) -> Result<Peer, CallError> {
        let identity = match token {
            None => None,
            Some(token) => Some(
                self.inner
                    .identities
                    .resolve(Credential::bearer(token))
                    .await
                    .map_err(|err| {
                        CallError::unauthenticated(format!(
                            "the bearer token was refused: {}",
                            err.message
                        ))
                    })?,
            ),
        };
        Ok(Peer::new(identity, None, address, "websocket"))
    }

    /// Run one call and send its events to `sink`; dropping the future cancels the call
    /// and every nested call it made.
    pub(crate) async fn run_call<S: EventSink>(
        &self,
        peer: &Peer,
        id: &str,
        request: CallRequested,
        sink: &mut S,
    ) {
        let reply = |event| EventEnvelope::new(id, event);
        let Some((namespace, operation)) = split_operation_id(&request.operation_id) else {
            let err = CallError::not_found(format!(
                "`{}` is not an operation id: expected `/namespace/operation`",
                request.operation_id
            ));
            let _ = sink.send(reply(Event::Error(err))).await;
            return;
        };
        let (caller, identity) = match self.caller(peer, &request).await {
            Ok(found) => found,
            Err(err) => {
                self.inner
                    .env
                    .count_refused(namespace, operation, peer.transport, &err);
                let _ = sink.send(reply(Event::Error(err))).await;
                return;
            }
        };
        let env = self.inner.env.with_caller(caller);
        if namespace == "services" {
            let result = builtin(&env, identity.as_deref(), operation, request.input);
            let event = match result {
                Ok(output) => Event::Responded { output },
                Err(err) => Event::Error(err),
            };
            let _ = sink.send(reply(event)).await;
            return;
        }
        let kind = env.spec(namespace, operation).map(|spec| spec.kind);
        if kind == Some(OperationKind::Subscription) {
            let mut items = env.subscribe(namespace, operation, request.input).await;
            let mut ready = None;
            loop {
                let item = match ready.take() {
                    Some(item) => item,
                    // Nothing more is ready: what was fed goes out before waiting, so a
                    // lone item is never held back.
                    None => {
                        if sink.flush().await.is_err() {
                            return;
                        }
                        items.next().await
                    }
                };
                let Some(item) = item else { break };
                let (event, last) = match item {
                    Ok(output) => (Event::Responded { output }, false),
                    Err(err) => (Event::Error(err), true),
                };
                if sink.feed(reply(event)).await.is_err() {
                    return;
                }
                if last {
                    let _ = sink.flush().await;
                    return;
                }
                if sink.wants_more() {
                    ready = items.next().now_or_never();
                }
            }
            let _ = sink.send(reply(Event::Completed)).await;
        } else {
            let event = match env.invoke(namespace, operation, request.input).await.result {
                Ok(output) => Event::Responded { output },
                Err(err) => Event::Error(err),
            };
            let _ = sink.send(reply(event)).await;
        }
    }

    /// The outside caller of one call: its `auth_token` if it has one, else the peer —
    /// anonymous if the peer proved no identity: it reaches open operations, and
    /// restricted ones answer `UNAUTHENTICATED`, as on every adapter.
    async fn caller(
        &self,
        peer: &Peer,
        request: &CallRequested,
    ) -> Result<(Caller, Option<Arc<Identity>>), CallError> {
        let identity = match &request.auth_token {
            Some(token) => {
                let identity = self
                    .inner
                    .identities
                    .resolve(Credential::bearer(token))
                    .await
                    .map_err(|err| {
                        CallError::unauthenticated(format!(
                            "the `auth_token` was refused: {}",
                            err.message
                        ))
                    })?;
                peer.authenticated
                    .send_if_modified(|authenticated| !std::mem::replace(authenticated, true));
                Some(identity)
            }
            None => peer.identity.clone(),
        };
        let mut caller = identity
            .iter()
            .cloned()
            .fold(Caller::new().transport(peer.transport), Caller::identity);
        if let Some(address) = peer.address {
            caller = caller.peer_addr(address);
        }
        if claims_to_continue(request) {
            if self.speaks_for_others(peer, request).await {
                if let Some(forwarded_for) = &request.forwarded_for {
                    caller = caller.forwarded_for(forwarded_for.clone());
                }
                if let Some(id) = request.request_id {
                    caller = caller.request_id(id);
                }
                if let Some(id) = request.parent_request_id {
                    caller = caller.parent_request_id(id);
                }
            } else {
                tracing::warn!(
                    caller = identity.as_ref().map_or("anonymous", |identity| identity.id.as_str()),
                    address = ?peer.address,
                    forwarded_for = request.forwarded_for.as_deref(),
                    request_id = request.request_id.map(tracing::field::display),
                    parent_request_id = request.parent_request_id.map(tracing::field::display),
                    operation = %request.operation_id,
                    "a caller that is not a cluster node set `forwarded_for`, `request_id` or `parent_request_id`; they are ignored"
                );
            }
        }
        if let Some(ms) = request.deadline {
            caller = caller.timeout(Duration::from_millis(ms));
        }
        Ok((caller, identity))
    }

    /// Whether `request`'s `forwarded_for`, `request_id` and `parent_request_id` are
    /// believed: only from a connection whose key is a cluster node, asked now (a reload
    /// that changes the marker applies to the next call), and never beside an
    /// `auth_token` — a call with a token runs as the token's holder, an outside caller,
    /// whoever carried it. An outside caller's ids are not kept even as a parent: a log
    /// names only calls the cluster made.
    async fn speaks_for_others(&self, peer: &Peer, request: &CallRequested) -> bool {
        let Some(key) = peer.key.as_deref().filter(|_| request.auth_token.is_none()) else {
            return false;
        };
        self.inner
            .identities
            .resolve_key(key)
            .await
            .is_ok_and(|holder| holder.cluster)
    }
}

/// Whether `request` says it continues a call made elsewhere: for whom, under which id,
/// on whose behalf.
fn claims_to_continue(request: &CallRequested) -> bool {
    request.forwarded_for.is_some()
        || request.request_id.is_some()
        || request.parent_request_id.is_some()
}

/// A connection's peer, as its transport authenticated it.
pub(crate) struct Peer {
    /// The identity the provider resolved; none for an anonymous peer, whose calls run
    /// anonymously unless they carry an `auth_token`.
    identity: Option<Arc<Identity>>,
    /// The fingerprint of the key the connection proved, if it proved one.
    key: Option<String>,
    /// The address it connects from.
    address: Option<IpAddr>,
    /// What it connects over (`quic`, `websocket`): its calls' `transport` in spans and
    /// metrics.
    transport: &'static str,
    /// Whether it proved who it is: its credential resolved, or since then the
    /// `auth_token` of one of its calls did. Until then it has the smaller limits.
    authenticated: watch::Sender<bool>,
}

impl Peer {
    fn new(
        identity: Option<Arc<Identity>>,
        key: Option<String>,
        address: Option<IpAddr>,
        transport: &'static str,
    ) -> Self {
        Peer {
            authenticated: watch::Sender::new(identity.is_some()),
            identity,
            key,
            address,
            transport,
        }
    }

    /// Whether the peer is authenticated.
    pub(crate) fn is_authenticated(&self) -> bool {
        *self.authenticated.borrow()
    }

    /// Wait until the peer is authenticated.
    pub(crate) async fn authenticated(&self) {
        let _ = self.authenticated.subscribe().wait_for(|yes| *yes).await;
    }
}

/// Where a transport sends a call's events.
pub(crate) trait EventSink: Send {
    /// Queue one event, or send it if this transport sends each as it comes; an error
    /// means the peer is gone.
    fn feed(&mut self, event: EventEnvelope) -> impl Future<Output = io::Result<()>> + Send;

    /// Send what was queued.
    fn flush(&mut self) -> impl Future<Output = io::Result<()>> + Send;

    /// Whether another event may be queued before a flush: while it may, a subscription
    /// feeds the items its stream has ready, so they go out in one write.
    fn wants_more(&self) -> bool;

    /// Send one event.
    fn send(&mut self, event: EventEnvelope) -> impl Future<Output = io::Result<()>> + Send {
        async move {
            self.feed(event).await?;
            self.flush().await
        }
    }
}

/// `/ns/op` → (`ns`, `op`); the operation may itself contain `/` (a mounted node's
/// `/worker-1/storage/get_node`).
fn split_operation_id(id: &str) -> Option<(&str, &str)> {
    let (namespace, operation) = id.strip_prefix('/')?.split_once('/')?;
    (!namespace.is_empty() && !operation.is_empty()).then_some((namespace, operation))
}

/// One entry of `services/list`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ListedOperation {
    /// `/namespace/operation`.
    #[serde(rename = "operationId")]
    pub operation_id: String,
    /// Query, mutation or subscription.
    pub kind: OperationKind,
    /// The operation's description.
    pub description: String,
    /// The service's version.
    pub version: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SchemaRequest {
    #[serde(default, rename = "operationId")]
    operation_id: Option<String>,
}

/// `services/list` and `services/schema`: only what this caller may call from outside.
fn builtin(
    env: &OperationEnv,
    identity: Option<&Identity>,
    operation: &str,
    input: Value,
) -> Result<Value, CallError> {
    let callable =
        |spec: &OperationSpec| spec.is_external() && spec.access.check(identity, &spec.id).is_ok();
    match operation {
        "list" => {
            let listed: Vec<ListedOperation> = env
                .operations()
                .filter(|spec| callable(spec))
                .map(|spec| ListedOperation {
                    operation_id: spec.bindings().call_protocol,
                    kind: spec.kind,
                    description: spec.description.clone(),
                    version: spec.version.clone(),
                })
                .collect();
            Ok(serde_json::to_value(listed).unwrap_or_default())
        }
        "schema" => {
            let input = match input {
                Value::Null => Value::Object(Default::default()),
                input => input,
            };
            let request: SchemaRequest = serde_json::from_value(input).map_err(|e| {
                CallError::invalid_input(format!("invalid input for `services/schema`: {e}"))
            })?;
            // Service documents holding only what the caller may call (with `operationId`,
            // only that operation), so they are the same shape as `schemas/services/`.
            let wanted = |spec: &OperationSpec| {
                request
                    .operation_id
                    .as_deref()
                    .is_none_or(|wanted| spec.bindings().call_protocol == wanted)
            };
            let mut documents = env.services().filter_map(|service| {
                let operations: Vec<OperationSpec> = service
                    .operations
                    .iter()
                    .filter(|spec| callable(spec) && wanted(spec))
                    .cloned()
                    .collect();
                (!operations.is_empty()).then(|| {
                    schema::service_document(&ServiceSpec {
                        operations,
                        ..service.clone()
                    })
                })
            });
            match &request.operation_id {
                None => Ok(documents.collect()),
                Some(wanted) => documents.next().ok_or_else(|| {
                    CallError::not_found(format!("there is no operation `{wanted}`"))
                }),
            }
        }
        other => Err(CallError::not_found(format!(
            "there is no operation `services/{other}`; the built-ins are `services/list` and `services/schema`"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::split_operation_id;

    #[test]
    fn operation_ids_split_at_the_first_slash() {
        assert_eq!(split_operation_id("/echo/say"), Some(("echo", "say")));
        assert_eq!(
            split_operation_id("/worker-1/storage/get_node"),
            Some(("worker-1", "storage/get_node"))
        );
        for bad in ["echo/say", "/echo", "//say", "/echo/", ""] {
            assert_eq!(split_operation_id(bad), None, "{bad}");
        }
    }
}
