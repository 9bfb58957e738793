//! The node's services, assembled in one place: the quickstart, the schema commands and
//! `alknet serve` all mount exactly these; [`serve`] starts the adapters' listeners.

use std::net::SocketAddr;
use std::sync::Arc;

use alknet_example::{EchoProtocol, EchoService};
use alknet_runtime::adapters::dns::DnsAdapter;
use alknet_runtime::adapters::http::HttpAdapter;
use alknet_runtime::{BuildError, IdentityProvider, OperationEnv, ServiceSpec};

/// An `OperationEnv` with every service of the node mounted in-process.
pub fn env() -> Result<OperationEnv, BuildError> {
    OperationEnv::builder()
        .local(EchoProtocol::local(EchoService::default()))
        .build()
}

/// The spec of every service of the node, in the order they are mounted.
pub fn services() -> Result<Vec<ServiceSpec>, BuildError> {
    Ok(env()?.services().cloned().collect())
}

/// Where [`serve`] listens. A listener left `None` is not started.
#[derive(Debug, Clone, Default)]
pub struct Listeners {
    /// HTTP (and MCP at `/mcp`).
    pub http: Option<SocketAddr>,
    /// DNS, on UDP and TCP at the same address.
    pub dns: Option<SocketAddr>,
    /// The zone DNS answers for.
    pub dns_zone: String,
}

/// The addresses [`serve`] bound, once it is listening.
#[derive(Debug, Clone, Copy)]
pub struct Bound {
    /// The HTTP listener's address, if started.
    pub http: Option<SocketAddr>,
    /// The DNS listener's address, if started.
    pub dns: Option<SocketAddr>,
}

/// Bind the listeners of `listeners` for `env`, report their addresses to `bound`, then
/// serve until one of them fails.
pub async fn serve(
    env: OperationEnv,
    identities: Arc<dyn IdentityProvider>,
    listeners: Listeners,
    bound: impl FnOnce(Bound),
) -> std::io::Result<()> {
    let mut tasks = tokio::task::JoinSet::new();
    let mut addresses = Bound {
        http: None,
        dns: None,
    };
    if let Some(addr) = listeners.http {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        addresses.http = Some(listener.local_addr()?);
        let adapter = HttpAdapter::new(env.clone()).identities(identities);
        tasks.spawn(adapter.serve(listener));
    }
    if let Some(addr) = listeners.dns {
        let udp = tokio::net::UdpSocket::bind(addr).await?;
        let local = udp.local_addr()?;
        let tcp = tokio::net::TcpListener::bind(local).await?;
        addresses.dns = Some(local);
        let adapter = DnsAdapter::new(env).zone(&listeners.dns_zone)?;
        tasks.spawn(adapter.serve(udp, Some(tcp)));
    }
    bound(addresses);
    match tasks.join_next().await {
        Some(outcome) => outcome.map_err(std::io::Error::other)?,
        None => Ok(()),
    }
}
