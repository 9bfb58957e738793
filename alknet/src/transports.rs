//! The transports `alknet serve` starts, one function each, all over the node's env and
//! identity provider. Each returns what keeps it running and the address it listens on.

use std::net::SocketAddr;
use std::sync::Arc;

use alknet::node::Node;
use alknet_auth::AuthProtocol;
use alknet_config::ConfigProtocol;
use alknet_example::EchoProtocol;
use alknet_runtime::RateLimiter;
use alknet_runtime::adapters::dns::DnsAdapter;
use alknet_runtime::adapters::http::{HttpAdapter, HttpLimits};
use alknet_runtime::call::{
    CallConfig, CallEndpoint, CallServer, WebSocketAdapter, WebSocketLimits,
};
use alknet_runtime::quic::NodeIdentity;
use alknet_runtime::service_path::{IrpcLimits, IrpcListener};

/// A running transport: its name, where it listens, and what to hold to keep it up.
pub struct Running {
    pub name: &'static str,
    pub address: SocketAddr,
    _guard: Box<dyn Send>,
}

/// The call protocol over QUIC (ALPN `alknet/call/1`), with the limits of `[call]`.
pub fn call(
    node: &Node,
    identity: &NodeIdentity,
    address: SocketAddr,
    server: CallServer,
) -> Result<Running, String> {
    let config = CallConfig::from_settings(&node.config.static_config().call);
    let endpoint = CallEndpoint::bind(address, identity, config).map_err(|err| err.message)?;
    let address = endpoint.local_addr();
    let serving = endpoint.serve(server);
    Ok(Running {
        name: "call",
        address,
        _guard: Box::new(AbortOnDrop(serving)),
    })
}

/// The call protocol's envelopes over WebSocket, for browsers, with the limits of `[call]`.
pub async fn websocket(
    node: &Node,
    address: SocketAddr,
    server: CallServer,
) -> Result<Running, String> {
    let listener = tokio::net::TcpListener::bind(address)
        .await
        .map_err(|err| format!("cannot listen for WebSocket on {address}: {err}"))?;
    let address = listener.local_addr().map_err(|err| err.to_string())?;
    let limits = WebSocketLimits::from_settings(&node.config.static_config().call);
    let adapter = WebSocketAdapter::new(server).limits(limits);
    let serving = tokio::spawn(async move {
        if let Err(err) = adapter.serve(listener).await {
            tracing::error!(%err, "the WebSocket listener stopped");
        }
    });
    Ok(Running {
        name: "websocket",
        address,
        _guard: Box::new(AbortOnDrop(serving)),
    })
}

/// Every service as an irpc actor, to allow-listed nodes over QUIC.
pub fn irpc(node: &Node, identity: &NodeIdentity, address: SocketAddr) -> Result<Running, String> {
    let settings = &node.config.static_config().irpc;
    let listener = IrpcListener::builder(node.env.clone(), node.identities.clone())
        .limits(IrpcLimits::from_settings(settings))
        .serve::<EchoProtocol>()
        .and_then(|b| b.serve::<AuthProtocol>())
        .and_then(|b| b.serve::<ConfigProtocol>())
        .and_then(|b| b.bind(address, identity, settings.quic_config()))
        .map_err(|err| err.message)?;
    Ok(Running {
        name: "irpc",
        address: listener.local_addr(),
        _guard: Box::new(listener),
    })
}

/// HTTP (`POST /v1/{namespace}/{op}`, SSE, `/openapi.json`) with MCP at `/mcp`.
pub async fn http(node: &Node, address: SocketAddr) -> Result<Running, String> {
    let listener = tokio::net::TcpListener::bind(address)
        .await
        .map_err(|err| format!("cannot listen for HTTP on {address}: {err}"))?;
    let address = listener.local_addr().map_err(|err| err.to_string())?;
    let settings = &node.config.static_config().http;
    let mut adapter = HttpAdapter::new(node.env.clone())
        .identities(Arc::clone(&node.identities))
        .limits(HttpLimits::from_settings(settings))
        .mcp_session_rate_limits(Arc::new(RateLimiter::new(node.config.shared())));
    if let Some(hosts) = &settings.mcp_allowed_hosts {
        adapter = adapter.mcp_allowed_hosts(hosts.clone());
    }
    let serving = tokio::spawn(async move {
        if let Err(err) = adapter.serve(listener).await {
            tracing::error!(%err, "the HTTP listener stopped");
        }
    });
    Ok(Running {
        name: "http",
        address,
        _guard: Box::new(AbortOnDrop(serving)),
    })
}

/// DNS TXT queries under the configured zone, on UDP and TCP at one address.
pub async fn dns(node: &Node, address: SocketAddr) -> Result<Running, String> {
    let (udp, tcp) = DnsAdapter::bind(address)
        .await
        .map_err(|err| format!("cannot listen for DNS (UDP and TCP) on {address}: {err}"))?;
    let address = udp.local_addr().map_err(|err| err.to_string())?;
    let adapter = DnsAdapter::new(node.env.clone())
        .zone(&node.config.static_config().dns_zone)
        .map_err(|err| format!("the DNS zone is not usable: {err}"))?;
    let serving = tokio::spawn(async move {
        if let Err(err) = adapter.serve(udp, Some(tcp)).await {
            tracing::error!(%err, "the DNS listener stopped");
        }
    });
    Ok(Running {
        name: "dns",
        address,
        _guard: Box::new(AbortOnDrop(serving)),
    })
}

/// A server for the call protocol, shared by QUIC and WebSocket, with the frame limits and
/// the read timeout of `[call]`.
pub fn call_server(node: &Node) -> CallServer {
    CallServer::new(node.env.clone(), Arc::clone(&node.identities))
        .with_settings(&node.config.static_config().call)
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
