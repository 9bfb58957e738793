//! `alknet serve` and `alknet mcp-stdio`: the node's services behind the adapters.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;

use alknet::node::{self, Listeners};
use alknet_runtime::StaticIdentities;
use alknet_runtime::adapters::mcp::McpAdapter;

/// Serve HTTP (+ MCP at `/mcp`) and DNS until the process is stopped, printing each
/// listener's address and a first command to try.
pub fn serve(
    http: Option<SocketAddr>,
    dns: Option<SocketAddr>,
    zone: String,
) -> Result<ExitCode, String> {
    let runtime = runtime()?;
    runtime.block_on(async {
        let env = node::env().map_err(|err| err.to_string())?;
        // No credentials are configured yet: anonymous callers reach the open operations.
        let identities = Arc::new(StaticIdentities::new());
        let listeners = Listeners {
            http,
            dns,
            dns_zone: zone.clone(),
        };
        node::serve(env, identities, listeners, |bound| {
            if let Some(addr) = bound.http {
                println!("http  http://{addr}  (MCP at http://{addr}/mcp)");
                println!("      curl -X POST -d '{{\"text\":\"hi\"}}' http://{addr}/v1/echo/say");
            }
            if let Some(addr) = bound.dns {
                println!("dns   {addr} (udp+tcp), zone {zone}");
                println!(
                    "      dig @{} -p {} eyJ0ZXh0IjoiaGkifQ.say.echo.{zone} TXT",
                    addr.ip(),
                    addr.port()
                );
            }
        })
        .await
        .map_err(|err| format!("a listener failed: {err}"))?;
        Ok(ExitCode::SUCCESS)
    })
}

/// Serve MCP over stdin/stdout, for an MCP client that spawns the node.
pub fn mcp_stdio() -> Result<ExitCode, String> {
    let runtime = runtime()?;
    runtime.block_on(async {
        let env = node::env().map_err(|err| err.to_string())?;
        McpAdapter::new(env)
            .serve_stdio()
            .await
            .map_err(|err| format!("MCP over stdio failed: {err}"))?;
        Ok(ExitCode::SUCCESS)
    })
}

fn runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|err| format!("cannot start a tokio runtime: {err}"))
}
