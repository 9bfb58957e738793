//! The transports a [`Node`] starts, one function each, all over the node's env and
//! identity provider. Each returns what keeps it running and the address it listens on.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use alknet_runtime::RateLimiter;
use alknet_runtime::adapters::dns::DnsAdapter;
use alknet_runtime::adapters::http::Readiness;
use alknet_runtime::adapters::http::{HttpAdapter, HttpLimits};
use alknet_runtime::call::{CallEndpoint, CallServer, WebSocketAdapter, WebSocketLimits};
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
    let endpoint = CallEndpoint::bind(address, node.identity(), node.call_config().clone())
        .map_err(|err| err.message)?;
    let address = endpoint.local_addr();
    let serving = endpoint.serve(server);
    Ok(Running {
        name: "call",
        address,
        stop: Stop::Drop(Box::new((AbortOnDrop(serving), CloseOnDrop(endpoint)))),
    })
}

/// The call protocol's envelopes over WebSocket, for browsers, with the connection limits
/// and allowed origins of `[call]`.
pub(crate) async fn websocket(
    node: &Node,
    address: SocketAddr,
    server: CallServer,
) -> Result<Running, NodeError> {
    let listener = tokio::net::TcpListener::bind(address)
        .await
        .map_err(|err| format!("cannot listen for WebSocket on {address}: {err}"))?;
    let address = listener.local_addr().map_err(|err| err.to_string())?;
    let limits = WebSocketLimits::from_settings(&node.config().static_config().call);
    let adapter = WebSocketAdapter::new(server).limits(limits);
    let (signal, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(async move {
        let shutdown = async move {
            let _ = stopped.await;
        };
        if let Err(err) = adapter.serve_with_shutdown(listener, shutdown).await {
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
    let mut builder = IrpcListener::builder(node.env().clone(), node.identities().clone())
        .limits(IrpcLimits::from_settings(settings));
    for serving in services {
        builder = builder
            .serve_registered(serving)
            .map_err(|err| err.message)?;
    }
    let listener = builder
        .bind(address, node.identity(), settings.quic_config())
        .map_err(|err| err.message)?;
    Ok(Running {
        name: "irpc",
        address: listener.local_addr(),
        stop: Stop::Drop(Box::new(listener)),
    })
}

/// HTTP (`POST /v1/{namespace}/{op}`, SSE, `/openapi.json`, `/healthz`, `/readyz`, and
/// `/metrics` when `[http] metrics` says) with MCP at `/mcp`. `readiness` answers
/// `/readyz`.
pub(crate) async fn http(
    node: &Node,
    address: SocketAddr,
    readiness: impl Fn() -> Readiness + Send + Sync + 'static,
) -> Result<Running, NodeError> {
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
    if settings.metrics {
        adapter = adapter.metrics(alknet_runtime::telemetry::prometheus()?);
    }
    adapter = adapter.readiness(readiness);
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

/// A server for the call protocol, shared by QUIC and WebSocket, with the frame limits and
/// timeouts of `[call]`.
pub(crate) fn call_server(node: &Node) -> CallServer {
    CallServer::new(node.env().clone(), Arc::clone(node.identities()))
        .with_settings(&node.config().static_config().call)
}

/// A task that ends when this is dropped.
pub(crate) struct AbortOnDrop(pub(crate) tokio::task::JoinHandle<()>);

/// Closes a call endpoint's connections when dropped: peers learn at once that the node
/// stopped, rather than when their idle timeout ends.
struct CloseOnDrop(CallEndpoint);

impl Drop for CloseOnDrop {
    fn drop(&mut self) {
        self.0.close();
    }
}

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
