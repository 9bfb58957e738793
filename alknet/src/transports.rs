//! The transports a [`Node`] starts, one function each, all over the node's env and
//! identity provider. Each returns what keeps it running and the address it listens on.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use alknet_runtime::RateLimiter;
use alknet_runtime::adapters::dns::DnsAdapter;
use alknet_runtime::adapters::http::{HttpAdapter, HttpLimits};
use alknet_runtime::call::{CallConfig, CallEndpoint, CallServer};
use alknet_runtime::quic::QuicConfig;
use alknet_runtime::service_path::{IrpcLimits, IrpcListener, IrpcServing};

use crate::node::{Node, NodeError};

/// A running transport: its name, where it listens, and how to stop it.
pub(crate) struct Running {
    pub(crate) name: &'static str,
    pub(crate) address: SocketAddr,
    stop: Stop,
}

enum Stop {
    /// Dropped: the transport ends at once.
    Drop(Box<dyn Send>),
    /// Told to stop accepting, then given a moment to close its connections.
    Graceful {
        signal: tokio::sync::oneshot::Sender<()>,
        serving: tokio::task::JoinHandle<()>,
    },
}

/// How long a transport told to stop gets to close its connections.
const CLOSE_GRACE: Duration = Duration::from_secs(1);

impl Running {
    pub(crate) async fn stop(self) {
        match self.stop {
            Stop::Drop(guard) => drop(guard),
            Stop::Graceful { signal, serving } => {
                let _ = signal.send(());
                let aborting = serving.abort_handle();
                if tokio::time::timeout(CLOSE_GRACE, serving).await.is_err() {
                    aborting.abort();
                }
            }
        }
    }
}

/// The call protocol over QUIC (ALPN `alknet/call/1`), with the limits of `[call]`.
pub(crate) fn call(
    node: &Node,
    address: SocketAddr,
    server: CallServer,
) -> Result<Running, NodeError> {
    let config = CallConfig::from_settings(&node.config().static_config().call);
    let endpoint =
        CallEndpoint::bind(address, node.identity(), config).map_err(|err| err.message)?;
    let address = endpoint.local_addr();
    let serving = endpoint.serve(server);
    Ok(Running {
        name: "call",
        address,
        stop: Stop::Drop(Box::new(AbortOnDrop(serving))),
    })
}

/// The call protocol's envelopes over WebSocket, for browsers.
pub(crate) async fn websocket(
    address: SocketAddr,
    server: CallServer,
) -> Result<Running, NodeError> {
    let listener = tokio::net::TcpListener::bind(address)
        .await
        .map_err(|err| format!("cannot listen for WebSocket on {address}: {err}"))?;
    let address = listener.local_addr().map_err(|err| err.to_string())?;
    let app = alknet_runtime::call::websocket_router(server);
    let (signal, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(async move {
        let app = app.into_make_service_with_connect_info::<SocketAddr>();
        let shutdown = async move {
            let _ = stopped.await;
        };
        if let Err(err) = axum::serve(listener, app)
            .with_graceful_shutdown(shutdown)
            .await
        {
            tracing::error!(%err, "the WebSocket listener stopped");
        }
    });
    Ok(Running {
        name: "websocket",
        address,
        stop: Stop::Graceful { signal, serving },
    })
}

/// Every service served in this process, as an irpc actor, to allow-listed nodes over
/// QUIC.
pub(crate) fn irpc(
    node: &Node,
    services: &[IrpcServing],
    address: SocketAddr,
) -> Result<Running, NodeError> {
    let settings = &node.config().static_config().irpc;
    let mut limits = IrpcLimits::default();
    if let Some(bytes) = settings.max_request_bytes {
        limits.max_request_size = bytes.get();
    }
    let mut quic = QuicConfig::default();
    if let Some(streams) = settings.max_concurrent_streams {
        quic.max_concurrent_streams = streams.get();
    }
    let mut builder =
        IrpcListener::builder(node.env().clone(), node.identities().clone()).limits(limits);
    for serving in services {
        builder = builder
            .serve_registered(serving)
            .map_err(|err| err.message)?;
    }
    let listener = builder
        .bind(address, node.identity(), quic)
        .map_err(|err| err.message)?;
    Ok(Running {
        name: "irpc",
        address: listener.local_addr(),
        stop: Stop::Drop(Box::new(listener)),
    })
}

/// HTTP (`POST /v1/{namespace}/{op}`, SSE, `/openapi.json`) with MCP at `/mcp`.
pub(crate) async fn http(node: &Node, address: SocketAddr) -> Result<Running, NodeError> {
    let listener = tokio::net::TcpListener::bind(address)
        .await
        .map_err(|err| format!("cannot listen for HTTP on {address}: {err}"))?;
    let address = listener.local_addr().map_err(|err| err.to_string())?;
    let settings = &node.config().static_config().http;
    let mut adapter = HttpAdapter::new(node.env().clone())
        .identities(Arc::clone(node.identities()))
        .limits(HttpLimits::from_settings(settings))
        .mcp_session_rate_limits(Arc::new(RateLimiter::new(node.config().shared())));
    if let Some(hosts) = &settings.mcp_allowed_hosts {
        adapter = adapter.mcp_allowed_hosts(hosts.clone());
    }
    let (signal, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(async move {
        let shutdown = async move {
            let _ = stopped.await;
        };
        if let Err(err) = adapter.serve_with_shutdown(listener, shutdown).await {
            tracing::error!(%err, "the HTTP listener stopped");
        }
    });
    Ok(Running {
        name: "http",
        address,
        stop: Stop::Graceful { signal, serving },
    })
}

/// DNS TXT queries under the configured zone, on UDP and TCP at one address.
pub(crate) async fn dns(node: &Node, address: SocketAddr) -> Result<Running, NodeError> {
    let (udp, tcp) = DnsAdapter::bind(address)
        .await
        .map_err(|err| format!("cannot listen for DNS (UDP and TCP) on {address}: {err}"))?;
    let address = udp.local_addr().map_err(|err| err.to_string())?;
    let adapter = DnsAdapter::new(node.env().clone())
        .zone(&node.config().static_config().dns_zone)
        .map_err(|err| format!("the DNS zone is not usable: {err}"))?;
    let serving = tokio::spawn(async move {
        if let Err(err) = adapter.serve(udp, Some(tcp)).await {
            tracing::error!(%err, "the DNS listener stopped");
        }
    });
    Ok(Running {
        name: "dns",
        address,
        stop: Stop::Drop(Box::new(AbortOnDrop(serving))),
    })
}

/// A server for the call protocol, shared by QUIC and WebSocket, with the frame limits of
/// `[call]`.
pub(crate) fn call_server(node: &Node) -> CallServer {
    let settings = &node.config().static_config().call;
    let mut server = CallServer::new(node.env().clone(), Arc::clone(node.identities()));
    if let Some(bytes) = settings.max_frame_bytes {
        server = server.max_frame_size(bytes.get());
    }
    if let Some(bytes) = settings.unauthenticated_max_frame_bytes {
        server = server.unauthenticated_max_frame_size(bytes.get());
    }
    server
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
