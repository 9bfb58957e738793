//! Forwarding calls to the peers of the configuration (`[[peers]]`): connections made on
//! first use, reused, and replaced when a reload changes the peer.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::FutureExt;
use futures::future::BoxFuture;
use serde_json::Value;

use super::client::Connection;
use super::quic::{CallConfig, CallEndpoint};
use super::remote::call_options;
use crate::config::Peer;
use crate::quic::{NodeIdentity, PeerKey};
use crate::service::ValueStream;
use crate::{CallError, OperationContext};

/// The node's connections to its peers, by peer name.
pub(crate) struct PeerLinks {
    identity: NodeIdentity,
    connect_timeout: Duration,
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
}

impl PeerLinks {
    pub(crate) fn new(identity: NodeIdentity, connect_timeout: Duration) -> Self {
        PeerLinks {
            identity,
            connect_timeout,
            endpoints: Mutex::new(HashMap::new()),
            links: Mutex::new(HashMap::new()),
        }
    }

    /// A live connection to `peer`: the one made before if it is still up and the peer's
    /// address and key are unchanged, else a new one.
    async fn connection(&self, peer: &Peer) -> Result<Connection, CallError> {
        let link = {
            let mut links = self.links.lock().unwrap_or_else(|p| p.into_inner());
            let link = links
                .entry(peer.name.clone())
                .or_insert_with(|| Link::new(peer));
            if link.peer != *peer {
                *link = Link::new(peer);
            }
            link.clone()
        };
        let mut slot = link.connection.lock().await;
        if let Some(connection) = slot.as_ref()
            && connection.quic().close_reason().is_none()
        {
            return Ok(connection.clone());
        }
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
        let connection = endpoint
            .connect(address, PeerKey::Pinned(peer.fingerprint.clone()))
            .await
            .map_err(|e| unreachable(e.message))?;
        *slot = Some(connection.clone());
        Ok(connection)
    }

    fn endpoint(&self, peer: SocketAddr) -> Result<CallEndpoint, CallError> {
        let local = bind_address(peer);
        let mut endpoints = self.endpoints.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(endpoint) = endpoints.get(&local) {
            return Ok(endpoint.clone());
        }
        let config = CallConfig {
            handshake_timeout: self.connect_timeout,
            ..CallConfig::default()
        };
        let endpoint = CallEndpoint::bind(SocketAddr::new(local, 0), &self.identity, config)?;
        endpoints.insert(local, endpoint.clone());
        Ok(endpoint)
    }
}

impl Link {
    fn new(peer: &Peer) -> Arc<Link> {
        Arc::new(Link {
            peer: peer.clone(),
            connection: tokio::sync::Mutex::new(None),
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

/// An outside call the forwarding policy sends to `peer`: the same operation there, with
/// the caller in `forwarded_for` and the call's remaining deadline.
pub(crate) struct Forward {
    links: Arc<PeerLinks>,
    peer: Peer,
}

impl Forward {
    pub(crate) fn new(links: Arc<PeerLinks>, peer: Peer) -> Self {
        Forward { links, peer }
    }

    pub(crate) fn invoke(
        self,
        ctx: OperationContext,
        input: Value,
    ) -> BoxFuture<'static, Result<Value, CallError>> {
        async move {
            let connection = self.links.connection(&self.peer).await?;
            let target = ctx.operation().bindings().call_protocol;
            connection
                .call_with(&target, input, &call_options(&ctx))
                .await
        }
        .boxed()
    }

    pub(crate) fn subscribe(
        self,
        ctx: OperationContext,
        input: Value,
    ) -> BoxFuture<'static, Result<ValueStream, CallError>> {
        async move {
            let connection = self.links.connection(&self.peer).await?;
            let target = ctx.operation().bindings().call_protocol;
            Ok(connection
                .subscribe_with(&target, input, &call_options(&ctx))
                .await)
        }
        .boxed()
    }
}
