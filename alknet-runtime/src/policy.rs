//! [`NodePolicy`]: what a node does with an outside call before serving it — the
//! forwarding policy and the rate limits of its live configuration — written once for
//! every adapter.

use std::net::IpAddr;
use std::sync::Arc;
#[cfg(feature = "call")]
use std::time::Duration;

use arc_swap::ArcSwap;

use crate::config::{DynamicConfig, ForwardingAction, ForwardingPolicy};
use crate::{CallError, Identity, RateLimiter};

/// A node's admission of outside calls: the `[forwarding]` policy and the `[rate_limits]`
/// of its dynamic configuration, read on every call, so a reload governs the next call.
///
/// Given to [`OperationEnvBuilder::policy`](crate::OperationEnvBuilder::policy), it runs
/// once for every call an adapter makes on behalf of an outside caller (HTTP, MCP, DNS,
/// the call protocol over QUIC and WebSocket, the irpc listener for a key that is not a
/// cluster node), after the caller's identity is resolved and the operation's access
/// control passed:
///
/// 1. the forwarding policy decides (first matching rule, else the default): `deny` is
///    `FORBIDDEN`; `forward` sends the call to the rule's peer (see
///    [`NodePolicy::forward_as`]); `local` serves it here. A call that arrived forwarded
///    (it carries `forwarded_for`, which adapters set only for a cluster node's calls) is
///    never forwarded again: it is served where it lands, so two nodes' policies cannot
///    bounce a call between them.
/// 2. the rate limits take one token from the caller's identity's bucket and from its
///    address's ([`Caller::peer_addr`](crate::Caller::peer_addr)); an empty bucket is
///    `RESOURCE_EXHAUSTED`, retryable, with `details.retry_after_ms`.
///
/// Nested calls (a handler calling through its context) are never limited or re-routed.
/// An env without a policy admits every call as before, at no cost.
///
/// ```
/// use alknet_example::{EchoProtocol, EchoService};
/// use alknet_runtime::config::ConfigServiceImpl;
/// use alknet_runtime::{Caller, NodePolicy, OperationEnv, codes};
/// use serde_json::json;
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let config = ConfigServiceImpl::from_text(
///     r#"
///     [rate_limits]
///     per_ip = { per_second = 1, burst = 1 }
///
///     [[forwarding.rules]]
///     operations = "echo/shout"
///     action = "deny"
///     "#,
///     "example",
/// )
/// .unwrap();
/// let env = OperationEnv::builder()
///     .local(EchoProtocol::local(EchoService::default()))
///     .policy(NodePolicy::new(config.shared()))
///     .build()
///     .unwrap();
///
/// let client = env.with_caller(Caller::new().peer_addr("192.0.2.1".parse().unwrap()));
/// assert!(client.invoke("echo", "say", json!({"text": "hi"})).await.result.is_ok());
/// let refused = client.invoke("echo", "say", json!({"text": "hi"})).await.result.unwrap_err();
/// assert_eq!(refused.code, codes::RESOURCE_EXHAUSTED);
/// assert!(refused.details.unwrap()["retry_after_ms"].as_u64().unwrap() > 0);
///
/// let denied = env.invoke("echo", "shout", json!({"text": "hi"})).await.result.unwrap_err();
/// assert_eq!(denied.code, codes::FORBIDDEN);
/// # }
/// ```
#[derive(Clone)]
pub struct NodePolicy {
    config: Arc<ArcSwap<DynamicConfig>>,
    limiter: Arc<RateLimiter>,
    #[cfg(feature = "call")]
    peers: Option<Arc<crate::call::PeerLinks>>,
}

/// Where an admitted outside call goes.
pub(crate) enum Route {
    /// Served by this node.
    Local,
    /// Sent to a peer.
    #[cfg_attr(not(feature = "call"), allow(dead_code))]
    Forward(Forward),
}

/// A call on its way to a peer; made by [`NodePolicy::admit`], run by the call protocol.
#[cfg(feature = "call")]
pub(crate) use crate::call::Forward;

/// Without the call protocol no call is ever forwarded: this type has no values.
#[cfg(not(feature = "call"))]
pub(crate) enum Forward {}

#[cfg(not(feature = "call"))]
impl Forward {
    pub(crate) fn invoke(
        self,
        _: crate::OperationContext,
        _: serde_json::Value,
    ) -> futures::future::BoxFuture<'static, Result<serde_json::Value, CallError>> {
        match self {}
    }

    pub(crate) fn subscribe(
        self,
        _: crate::OperationContext,
        _: serde_json::Value,
    ) -> futures::future::BoxFuture<'static, Result<crate::service::ValueStream, CallError>> {
        match self {}
    }
}

/// What [`NodePolicy::admit`] knows of the caller.
pub(crate) struct Admitting<'a> {
    /// `ns/op`.
    pub(crate) operation: &'a str,
    pub(crate) identity: Option<&'a Identity>,
    pub(crate) peer_addr: Option<IpAddr>,
    /// The call arrived forwarded by another node (it carries `forwarded_for`).
    pub(crate) forwarded: bool,
}

impl NodePolicy {
    /// A policy reading the forwarding rules and rate limits from `config` (the
    /// `Arc<ArcSwap<DynamicConfig>>` of
    /// [`ConfigServiceImpl::shared`](crate::config::ConfigServiceImpl::shared)). Until
    /// [`NodePolicy::forward_as`] gives it a node key, a `forward` rule answers
    /// `UNAVAILABLE`.
    pub fn new(config: Arc<ArcSwap<DynamicConfig>>) -> Self {
        NodePolicy {
            limiter: Arc::new(RateLimiter::new(config.clone())),
            config,
            #[cfg(feature = "call")]
            peers: None,
        }
    }

    /// Forward calls to peers over the call protocol, connecting as `identity` (the node's
    /// key: the peer must know its fingerprint). Connections are made on the first call
    /// forwarded to a peer and reused; when a reload changes a peer's address or
    /// fingerprint, the next forwarded call connects anew.
    ///
    /// A peer that does not complete the QUIC handshake within 1 s is unreachable
    /// (`UNAVAILABLE`); [`NodePolicy::forward_as_within`] sets another limit.
    #[cfg(feature = "call")]
    pub fn forward_as(self, identity: crate::quic::NodeIdentity) -> Self {
        self.forward_as_within(identity, Duration::from_secs(1))
    }

    /// [`NodePolicy::forward_as`], giving a peer `connect_timeout` to complete the
    /// handshake: raise it for peers across slow or lossy links.
    #[cfg(feature = "call")]
    pub fn forward_as_within(
        mut self,
        identity: crate::quic::NodeIdentity,
        connect_timeout: Duration,
    ) -> Self {
        self.peers = Some(Arc::new(crate::call::PeerLinks::new(
            identity,
            connect_timeout,
        )));
        self
    }

    /// The configuration snapshot in force, for adapters that key calls as the limits
    /// say (which address a request behind a proxy counts against).
    #[cfg_attr(not(feature = "http"), allow(dead_code))]
    pub(crate) fn config(&self) -> arc_swap::Guard<Arc<DynamicConfig>> {
        self.config.load()
    }

    /// Admit one outside call: refuse it, or say where it goes. One load of the
    /// configuration serves both the policy and the limits.
    pub(crate) fn admit(&self, call: Admitting<'_>) -> Result<Route, CallError> {
        let config = self.config.load();
        let identity_id = call.identity.map(|identity| identity.id.as_str());
        let policy = &config.forwarding;
        let rule = policy.decide(call.operation, identity_id);
        let action = rule.map_or(policy.default, |rule| rule.action);
        if action == ForwardingAction::Deny {
            return Err(denied(policy, rule, call.operation, identity_id));
        }
        self.limiter
            .check_limits(&config.rate_limits, call.identity, call.peer_addr)?;
        if action == ForwardingAction::Local || call.forwarded {
            return Ok(Route::Local);
        }
        let Some(peer_name) = rule.and_then(|rule| rule.peer.as_deref()) else {
            return Err(CallError::unavailable(format!(
                "the forwarding policy forwards `{}` but names no peer to forward it to",
                call.operation
            )));
        };
        let Some(peer) = config.peers.iter().find(|peer| peer.name == peer_name) else {
            return Err(CallError::unavailable(format!(
                "`{}` is forwarded to the peer `{peer_name}`, which is not in [[peers]]",
                call.operation
            )));
        };
        self.forward(peer)
    }

    #[cfg(feature = "call")]
    fn forward(&self, peer: &crate::config::Peer) -> Result<Route, CallError> {
        match &self.peers {
            Some(links) => Ok(Route::Forward(Forward::new(links.clone(), peer.clone()))),
            None => Err(no_node_key(&peer.name)),
        }
    }

    #[cfg(not(feature = "call"))]
    fn forward(&self, peer: &crate::config::Peer) -> Result<Route, CallError> {
        Err(no_node_key(&peer.name))
    }
}

fn no_node_key(peer: &str) -> CallError {
    CallError::unavailable(format!(
        "the peer `{peer}` cannot be reached: this node forwards no calls (it has no node key for peer connections)"
    ))
}

fn denied(
    policy: &ForwardingPolicy,
    rule: Option<&crate::config::ForwardingRule>,
    operation: &str,
    identity: Option<&str>,
) -> CallError {
    let who = identity.map_or_else(|| "anonymous callers".to_string(), |id| format!("`{id}`"));
    let which = match rule {
        Some(rule) => {
            let number = policy
                .rules
                .iter()
                .position(|r| std::ptr::eq(r, rule))
                .map_or(0, |index| index + 1);
            format!(
                "rule {number} of [forwarding] (operations = \"{}\")",
                rule.operations
            )
        }
        None => "the default action of [forwarding]".to_string(),
    };
    CallError::forbidden(format!("`{operation}` is denied to {who} by {which}"))
}
