//! Forwarding calls to the peers of the configuration (`[[peers]]`): connections made on
//! first use, reused, and replaced when a reload changes the peer.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use futures::FutureExt;
use futures::future::BoxFuture;
use serde_json::Value;

use super::client::Connection;
use super::quic::{CallConfig, CallEndpoint};
use super::remote::call_options;
use arc_swap::ArcSwap;

use crate::config::{DynamicConfig, Peer};
use crate::quic::{NodeIdentity, PeerKey, Redial};
use crate::{CallError, DispatchPath, OperationContext, PeerPaths, ValueStream};

/// A node's call-protocol connections to the peers of its `[[peers]]`, by peer name: the
/// way [`NodePolicy`](crate::NodePolicy) forwards calls
/// ([`NodePolicy::forward_through`](crate::NodePolicy::forward_through)).
///
/// Connections are made on the first call forwarded to a peer (or the first
/// [`readiness`](PeerLinks::readiness) answer that finds none) and reused; when a reload
/// changes a peer's address or fingerprint, the next forwarded call connects anew. A peer
/// that does not complete the QUIC handshake within the [`CallConfig`]'s
/// `handshake_timeout` is unreachable (`UNAVAILABLE`).
#[derive(Clone)]
pub struct PeerLinks(Arc<Links>);

struct Links {
    identity: NodeIdentity,
    config: CallConfig,
    /// Outgoing endpoints, one per kind of local address (see [`bind_address`]), bound on
    /// first use.
    endpoints: Mutex<HashMap<IpAddr, CallEndpoint>>,
    links: Mutex<HashMap<String, Arc<Link>>>,
}

/// The connection to one peer as the configuration describes it.
struct Link {
    peer: Peer,
    /// Held while connecting, so concurrent first calls make one connection.
    connection: tokio::sync::Mutex<Option<Connection>>,
    /// When to try again after failed attempts, and why they failed.
    redial: Redial,
    /// Whether a readiness answer has a connection begun in the background: one at a time,
    /// however often an (unauthenticated) caller asks.
    reconnecting: AtomicBool,
}

/// How one peer of `[[peers]]` stands, as a node's readiness answer reports it
/// ([`PeerLinks::readiness`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerReadiness {
    /// The peer's name in the configuration.
    pub name: String,
    /// Whether a connection to it is up.
    pub ready: bool,
    /// Why not, for the operator.
    pub detail: Option<String>,
}

impl PeerLinks {
    /// Links that connect as `identity` (the node's key: each peer must know its
    /// fingerprint), with the QUIC settings and limits of `config` — the same as the
    /// node's own call endpoint, so what a peer answers fits what this node accepts.
    pub fn new(identity: NodeIdentity, config: CallConfig) -> Self {
        PeerLinks(Arc::new(Links {
            identity,
            config,
            endpoints: Mutex::new(HashMap::new()),
            links: Mutex::new(HashMap::new()),
        }))
    }
}

impl PeerLinks {
    /// How each of `peers` stands: ready while a connection to it is up. For a peer with
    /// none (never called yet, closed, or unreachable at the last attempt) a connection is
    /// begun in the background, so that the next answer tells, and a peer that came back
    /// is ready again without waiting for a call to be forwarded to it.
    pub fn readiness(&self, peers: &[Peer]) -> Vec<PeerReadiness> {
        peers
            .iter()
            .map(|peer| {
                let link = self.0.link(peer);
                let not_ready = |detail: String| PeerReadiness {
                    name: peer.name.clone(),
                    ready: false,
                    detail: Some(detail),
                };
                let Ok(slot) = link.connection.try_lock() else {
                    return not_ready("connecting".into());
                };
                let closed = match slot.as_ref().map(|c| c.quic().close_reason()) {
                    Some(None) => {
                        return PeerReadiness {
                            name: peer.name.clone(),
                            ready: true,
                            detail: None,
                        };
                    }
                    Some(Some(reason)) => Some(format!("the connection closed: {reason}")),
                    None => None,
                };
                drop(slot);
                let failed = link.redial.last_failure();
                if let Ok(runtime) = tokio::runtime::Handle::try_current()
                    && !link.reconnecting.swap(true, Ordering::AcqRel)
                {
                    let (links, peer) = (self.clone(), peer.clone());
                    runtime.spawn(async move {
                        let _ = links.0.connection(&peer).await;
                        link.reconnecting.store(false, Ordering::Release);
                    });
                }
                not_ready(
                    failed
                        .or(closed)
                        .unwrap_or_else(|| "not connected yet: connecting".into()),
                )
            })
            .collect()
    }
}

impl PeerPaths for PeerLinks {
    fn path(&self, peer: &Peer) -> Arc<dyn DispatchPath> {
        Arc::new(Forward {
            links: self.clone(),
            target: Target::Peer(Arc::new(peer.clone())),
        })
    }
}

impl PeerLinks {
    /// The path of a service placed on the peer `name` (`[services]`): each call goes to
    /// the entry of that name in `config`'s live `[[peers]]`, over a connection made when
    /// first needed, made again after a loss (attempts back off while the peer is away:
    /// its calls fail at once with `UNAVAILABLE`), and replaced when a reload moves the
    /// peer.
    pub fn named(&self, name: &str, config: Arc<ArcSwap<DynamicConfig>>) -> Arc<dyn DispatchPath> {
        Arc::new(Forward {
            links: self.clone(),
            target: Target::Named {
                name: name.into(),
                config,
            },
        })
    }
}

impl Links {
    /// A live connection to `peer`: the one made before if it is still up and the peer's
    /// address and key are unchanged, else a new one.
    async fn connection(&self, peer: &Peer) -> Result<Connection, CallError> {
        let link = self.link(peer);
        let mut slot = link.connection.lock().await;
        if let Some(connection) = slot.as_ref()
            && connection.quic().close_reason().is_none()
        {
            return Ok(connection.clone());
        }
        link.redial.ready().map_err(CallError::unavailable)?;
        let connected = self.connect(peer).await;
        link.redial.record(&connected);
        *slot = connected.as_ref().ok().cloned();
        connected
    }

    /// The link to `peer` as the configuration describes it now: a new one when its
    /// address or key changed.
    fn link(&self, peer: &Peer) -> Arc<Link> {
        let mut links = self.links.lock().unwrap_or_else(|p| p.into_inner());
        let link = links
            .entry(peer.name.clone())
            .or_insert_with(|| Link::new(peer));
        if link.peer != *peer {
            *link = Link::new(peer);
        }
        link.clone()
    }

    async fn connect(&self, peer: &Peer) -> Result<Connection, CallError> {
        let unreachable = |why: String| {
            CallError::unavailable(format!(
                "the peer `{}` ({}) cannot be reached: {why}",
                peer.name, peer.address
            ))
        };
        let address: SocketAddr = peer
            .address
            .parse()
            .map_err(|_| unreachable("its address is not `host:port`".to_string()))?;
        let endpoint = self.endpoint(address).map_err(|e| unreachable(e.message))?;
        endpoint
            .connect(address, PeerKey::Pinned(peer.fingerprint.clone()))
            .await
            .map_err(|e| unreachable(e.message))
    }

    fn endpoint(&self, peer: SocketAddr) -> Result<CallEndpoint, CallError> {
        let local = bind_address(peer);
        let mut endpoints = self.endpoints.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(endpoint) = endpoints.get(&local) {
            return Ok(endpoint.clone());
        }
        let endpoint = CallEndpoint::bind(
            SocketAddr::new(local, 0),
            &self.identity,
            self.config.clone(),
        )?;
        endpoints.insert(local, endpoint.clone());
        Ok(endpoint)
    }
}

impl Link {
    fn new(peer: &Peer) -> Arc<Link> {
        Arc::new(Link {
            peer: peer.clone(),
            connection: tokio::sync::Mutex::new(None),
            redial: Redial::default(),
            reconnecting: AtomicBool::new(false),
        })
    }
}

/// Where outgoing connections to `peer` come from: loopback for a loopback peer (the
/// node then opens nothing beyond the machine), any address otherwise.
fn bind_address(peer: SocketAddr) -> IpAddr {
    match (peer.ip(), peer.ip().is_loopback()) {
        (IpAddr::V4(_), true) => IpAddr::V4(Ipv4Addr::LOCALHOST),
        (IpAddr::V4(_), false) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        (IpAddr::V6(_), true) => IpAddr::V6(Ipv6Addr::LOCALHOST),
        (IpAddr::V6(_), false) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
    }
}

/// A call this node makes on `target`: the same operation there, with the caller in
/// `forwarded_for` and the call's remaining deadline.
#[derive(Clone)]
struct Forward {
    links: PeerLinks,
    target: Target,
}

/// The peer a [`Forward`] calls.
#[derive(Clone)]
enum Target {
    /// As the forwarding policy found it for this call. Shared with the call's future,
    /// which must own what it reads.
    Peer(Arc<Peer>),
    /// Whichever entry of the live `[[peers]]` has this name when a call is made.
    Named {
        name: Arc<str>,
        config: Arc<ArcSwap<DynamicConfig>>,
    },
}

impl Target {
    fn peer(&self) -> Result<Arc<Peer>, CallError> {
        match self {
            Target::Peer(peer) => Ok(peer.clone()),
            Target::Named { name, config } => config
                .load()
                .peers
                .iter()
                .find(|peer| *peer.name == **name)
                .map(|peer| Arc::new(peer.clone()))
                .ok_or_else(|| {
                    CallError::unavailable(format!(
                        "the peer `{name}` is not in the configuration's [[peers]]"
                    ))
                }),
        }
    }
}

impl Forward {
    async fn connection(&self) -> Result<Connection, CallError> {
        self.links.0.connection(&*self.target.peer()?).await
    }
}

impl DispatchPath for Forward {
    fn invoke(
        &self,
        ctx: OperationContext,
        input: Value,
    ) -> BoxFuture<'static, Result<Value, CallError>> {
        let forward = self.clone();
        async move {
            let connection = forward.connection().await?;
            let target = ctx.operation().bindings().call_protocol;
            connection
                .call_with(&target, input, &call_options(&ctx))
                .await
        }
        .boxed()
    }

    fn subscribe(
        &self,
        ctx: OperationContext,
        input: Value,
    ) -> BoxFuture<'static, Result<ValueStream, CallError>> {
        let forward = self.clone();
        async move {
            let connection = forward.connection().await?;
            let target = ctx.operation().bindings().call_protocol;
            Ok(connection
                .subscribe_with(&target, input, &call_options(&ctx))
                .await)
        }
        .boxed()
    }
}
