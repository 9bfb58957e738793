//! The transports `alknet serve` starts, one function each, all over the node's env and
//! identity provider. Each returns what keeps it running and the address it listens on.

use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::sync::Arc;
use std::time::Duration;

use alknet::node::Node;
use alknet_auth::AuthProtocol;
use alknet_config::ConfigProtocol;
use alknet_example::EchoProtocol;
use alknet_runtime::adapters::dns::DnsAdapter;
use alknet_runtime::adapters::http::{HttpAdapter, HttpLimits};
use alknet_runtime::call::{CallConfig, CallEndpoint, CallServer};
use alknet_runtime::quic::{NodeIdentity, QuicConfig};
use alknet_runtime::service_path::{IrpcLimits, IrpcListener};

/// A running transport: its name, where it listens, and what to hold to keep it up.
pub struct Running {
    pub name: &'static str,
    pub address: SocketAddr,
    _guard: Box<dyn Send>,
}

/// The call protocol over QUIC (ALPN `alknet/call/1`).
pub fn call(
    identity: &NodeIdentity,
    address: SocketAddr,
    server: CallServer,
) -> Result<Running, String> {
    let endpoint =
        CallEndpoint::bind(address, identity, CallConfig::default()).map_err(|err| err.message)?;
    let address = endpoint.local_addr();
    let serving = endpoint.serve(server);
    Ok(Running {
        name: "call",
        address,
        _guard: Box::new(AbortOnDrop(serving)),
    })
}

/// The call protocol's envelopes over WebSocket, for browsers.
pub async fn websocket(address: SocketAddr, server: CallServer) -> Result<Running, String> {
    let listener = tokio::net::TcpListener::bind(address)
        .await
        .map_err(|err| format!("cannot listen for WebSocket on {address}: {err}"))?;
    let address = listener.local_addr().map_err(|err| err.to_string())?;
    let app = alknet_runtime::call::websocket_router(server);
    let serving = tokio::spawn(async move {
        let app = app.into_make_service_with_connect_info::<SocketAddr>();
        if let Err(err) = axum::serve(listener, app).await {
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
    let mut limits = IrpcLimits::default();
    if let Some(bytes) = settings.max_request_bytes {
        limits.max_request_size = bytes.get();
    }
    let mut quic = QuicConfig::default();
    if let Some(streams) = settings.max_concurrent_streams {
        quic.max_concurrent_streams = streams.get();
    }
    let listener = IrpcListener::builder(node.env.clone(), node.identities.clone())
        .limits(limits)
        .serve::<EchoProtocol>()
        .and_then(|b| b.serve::<AuthProtocol>())
        .and_then(|b| b.serve::<ConfigProtocol>())
        .and_then(|b| b.bind(address, identity, quic))
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
    let defaults = HttpLimits::default();
    let limits = HttpLimits {
        max_body_bytes: settings
            .max_body_bytes
            .map_or(defaults.max_body_bytes, NonZeroUsize::get),
        request_timeout: settings
            .request_timeout_ms
            .map_or(defaults.request_timeout, |ms| {
                Duration::from_millis(ms.get())
            }),
        max_concurrent_requests: settings
            .max_concurrent_requests
            .map_or(defaults.max_concurrent_requests, NonZeroUsize::get),
    };
    let mut adapter = HttpAdapter::new(node.env.clone())
        .identities(Arc::clone(&node.identities))
        .limits(limits);
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
    let udp = tokio::net::UdpSocket::bind(address)
        .await
        .map_err(|err| format!("cannot listen for DNS on {address}: {err}"))?;
    let address = udp.local_addr().map_err(|err| err.to_string())?;
    let tcp = tokio::net::TcpListener::bind(address)
        .await
        .map_err(|err| format!("cannot listen for DNS over TCP on {address}: {err}"))?;
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

/// A server for the call protocol, shared by QUIC and WebSocket.
pub fn call_server(node: &Node) -> CallServer {
    CallServer::new(node.env.clone(), Arc::clone(&node.identities))
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
