//! [`NodePolicy`]: what a node does with an outside call before serving it — the
//! forwarding policy and the rate limits of its live configuration — written once for
//! every adapter.

use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::config::{DynamicConfig, ForwardingAction, ForwardingPolicy, Peer};
use crate::{Admission, Admit, Admitting, CallError, DispatchPath, RateLimiter};

/// A node's admission of outside calls: the `[forwarding]` policy and the `[rate_limits]`
/// of its dynamic configuration, read on every call, so a reload governs the next call.
///
/// An [`Admission`] step: given to
/// [`OperationEnvBuilder::admission`](crate::OperationEnvBuilder::admission), it runs
/// once for every call an adapter makes on behalf of an outside caller (HTTP, MCP, DNS,
/// the call protocol over QUIC and WebSocket, the irpc listener for a key that is not a
/// cluster node), after the caller's identity is resolved and the operation's access
/// control passed:
///
/// 1. the forwarding policy decides (first matching rule, else the default): `deny` is
///    `FORBIDDEN`; `forward` sends the call to the rule's peer (see
///    [`NodePolicy::forward_through`]); `local` serves it here. A call that arrived forwarded
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
///     .admission(NodePolicy::new(config.shared()))
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
    peers: Option<Arc<dyn PeerPaths>>,
}

/// How a forwarding policy reaches the peers of `[[peers]]`: the call protocol's
/// `PeerLinks` is one (connections made on first use, reused, replaced when a reload
/// changes the peer).
pub trait PeerPaths: Send + Sync + 'static {
    /// The path a call forwarded to `peer` takes.
    fn path(&self, peer: &Peer) -> Arc<dyn DispatchPath>;
}

impl NodePolicy {
    /// A policy reading the forwarding rules and rate limits from `config` (the
    /// `Arc<ArcSwap<DynamicConfig>>` of
    /// [`ConfigServiceImpl::shared`](crate::config::ConfigServiceImpl::shared)). Until
    /// [`NodePolicy::forward_through`] gives it a way to its peers, a `forward` rule
    /// answers `UNAVAILABLE`.
    pub fn new(config: Arc<ArcSwap<DynamicConfig>>) -> Self {
        NodePolicy {
            limiter: Arc::new(RateLimiter::new(config.clone())),
            config,
            peers: None,
        }
    }

    /// Forward calls to the peers of `[[peers]]` along `peers`' paths.
    pub fn forward_through(mut self, peers: impl PeerPaths) -> Self {
        self.peers = Some(Arc::new(peers));
        self
    }
}

impl Admission for NodePolicy {
    /// Refuse an outside call, or say where it goes. One load of the configuration serves
    /// both the policy and the limits.
    fn admit(&self, call: &Admitting<'_>) -> Result<Admit, CallError> {
        let config = self.config.load();
        let operation = call.operation.id.as_str();
        let identity_id = call.identity.map(|identity| identity.id.as_str());
        let policy = &config.forwarding;
        let rule = policy.decide(operation, identity_id);
        let action = rule.map_or(policy.default, |rule| rule.action);
        if action == ForwardingAction::Deny {
            return Err(denied(policy, rule, operation, identity_id));
        }
        self.limiter
            .check_limits(&config.rate_limits, call.identity, call.peer_addr)?;
        if action == ForwardingAction::Local || call.forwarded_for.is_some() {
            return Ok(Admit::Here);
        }
        let Some(peer_name) = rule.and_then(|rule| rule.peer.as_deref()) else {
            return Err(CallError::unavailable(format!(
                "the forwarding policy forwards `{operation}` but names no peer to forward it to"
            )));
        };
        let Some(peer) = config.peers.iter().find(|peer| peer.name == peer_name) else {
            return Err(CallError::unavailable(format!(
                "`{operation}` is forwarded to the peer `{peer_name}`, which is not in [[peers]]"
            )));
        };
        match &self.peers {
            Some(peers) => Ok(Admit::Via(peers.path(peer))),
            None => Err(no_node_key(&peer.name)),
        }
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
