//! `alknet serve`: load the configuration, assemble the node, keep the configuration live
//! (SIGHUP, the file changing, `config/reload`), report the listeners, run until stopped.

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use alknet::node::Node;

use crate::transports::{self, Running};
use alknet_runtime::config::{ConfigServiceImpl, ConfigSource, ReloadPart};
use tokio::signal::unix::{SignalKind, signal};

/// The configuration at `path`, or the embedded default.
pub fn load_config(path: Option<&Path>) -> Result<ConfigServiceImpl, String> {
    match path {
        Some(path) => ConfigServiceImpl::from_file(path).map_err(|err| err.to_string()),
        None => Ok(ConfigServiceImpl::embedded()),
    }
}

/// Serve the node's services as MCP tools over stdin/stdout, for an MCP client that spawns
/// the node; callers are anonymous (stdio carries no credentials).
pub fn mcp_stdio(config: Option<&Path>) -> Result<ExitCode, String> {
    let config = Arc::new(load_config(config)?);
    runtime(&config)?.block_on(async {
        let node = Node::new(config)?;
        alknet_runtime::adapters::mcp::McpAdapter::new(node.env)
            .serve_stdio()
            .await
            .map_err(|err| format!("MCP over stdio failed: {err}"))?;
        Ok(ExitCode::SUCCESS)
    })
}

pub fn run(config: Option<&Path>, watch_interval: Duration) -> Result<ExitCode, String> {
    let config = Arc::new(load_config(config)?);
    runtime(&config)?.block_on(serve(config, watch_interval))
}

/// The runtime a node runs on: threads for every core (or `[node] worker_threads`), so
/// connections are served in parallel and no one long step stalls the others.
fn runtime(config: &ConfigServiceImpl) -> Result<tokio::runtime::Runtime, String> {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if let Some(threads) = config.static_config().worker_threads {
        builder.worker_threads(threads.get());
    }
    builder
        .enable_all()
        .build()
        .map_err(|err| format!("cannot start a tokio runtime: {err}"))
}

async fn serve(
    config: Arc<ConfigServiceImpl>,
    watch_interval: Duration,
) -> Result<ExitCode, String> {
    let node = Node::new(config.clone())?;
    let mut hangups =
        signal(SignalKind::hangup()).map_err(|err| format!("cannot watch for SIGHUP: {err}"))?;
    let mut terminate = signal(SignalKind::terminate())
        .map_err(|err| format!("cannot watch for SIGTERM: {err}"))?;
    let watcher = match config.source() {
        ConfigSource::File(_) => Some(config.clone().watch(watch_interval)),
        _ => None,
    };

    let running = start(&node).await?;
    report(&node, &running, watch_interval);
    tracing::info!(
        source = %config.source(),
        generation = config.snapshot().generation,
        "node ready"
    );
    loop {
        tokio::select! {
            // The outcome is logged; a failed reload keeps the running configuration.
            _ = hangups.recv() => { let _ = config.reload_logged("SIGHUP", ReloadPart::All); }
            _ = terminate.recv() => break,
            _ = tokio::signal::ctrl_c() => break,
        }
    }
    if let Some(watcher) = watcher {
        watcher.abort();
    }
    drop(running);
    tracing::info!("node stopped");
    Ok(ExitCode::SUCCESS)
}

/// Start every transport the configuration gives an address.
async fn start(node: &Node) -> Result<Vec<Running>, String> {
    let listen = &node.config.static_config().listen;
    let identity = &node.identity;
    let server = transports::call_server(node);
    let mut running = Vec::new();
    if let Some(address) = listen.call {
        running.push(transports::call(node, identity, address, server.clone())?);
    }
    if let Some(address) = listen.websocket {
        running.push(transports::websocket(node, address, server.clone()).await?);
    }
    if let Some(address) = listen.irpc {
        running.push(transports::irpc(node, identity, address)?);
    }
    if let Some(address) = listen.http {
        running.push(transports::http(node, address).await?);
    }
    if let Some(address) = listen.dns {
        running.push(transports::dns(node, address).await?);
    }
    println!("node key: {}", identity.fingerprint());
    Ok(running)
}

/// What the node serves, where, and a first command to try.
fn report(node: &Node, running: &[Running], watch_interval: Duration) {
    let config = &node.config;
    println!(
        "alknet node ready (configuration: {}, generation {})",
        config.source(),
        config.snapshot().generation
    );
    let namespaces: Vec<&str> = node.env.services().map(|s| s.namespace.as_str()).collect();
    println!("services: {}", namespaces.join(", "));
    println!("listeners:");
    for transport in running {
        println!("  {:<10} {}", transport.name, transport.address);
    }
    match config.source() {
        ConfigSource::File(path) => println!(
            "reload: SIGHUP, `config/reload`, or save {} (checked every {} ms)",
            path.display(),
            watch_interval.as_millis()
        ),
        _ => println!("reload: none needed (embedded default); use --config FILE"),
    }
    match running.iter().find(|transport| transport.name == "http") {
        Some(http) => println!(
            "try: curl -X POST -d '{{\"text\": \"hello\"}}' http://{}/v1/echo/say",
            http.address
        ),
        None => println!("try: alknet call echo/say '{{\"text\": \"hello\"}}'"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn workers(text: &str) -> usize {
        let config = ConfigServiceImpl::from_text(text, "test").unwrap();
        runtime(&config).unwrap().metrics().num_workers()
    }

    #[test]
    fn the_node_runs_on_the_threads_the_configuration_asks_for_else_one_per_core() {
        assert_eq!(workers("[node]\nworker_threads = 3\n"), 3);
        if std::env::var_os("TOKIO_WORKER_THREADS").is_none() {
            let cores = std::thread::available_parallelism().unwrap().get();
            assert_eq!(workers(""), cores);
        }
    }
}
