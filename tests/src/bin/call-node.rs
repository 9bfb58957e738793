//! A node for the call-protocol tests, started in its own process:
//!
//! ```text
//! call-node --key FILE [--serve echo,gate,front] [--allow FINGERPRINT=ID[#SCOPE,..]]
//!           [--cluster FINGERPRINT=ID[#SCOPE,..]] [--token TOKEN=ID[#SCOPE,..]]
//!           [--peer NAME=ADDR@FINGERPRINT] [--route NS=NAME] [--max-frame BYTES]
//!           [--unauthenticated-max-frame BYTES] [--limit NAME=VALUE] [--ws]
//!           [--origin ORIGIN]
//! ```
//!
//! `--allow` admits an outside caller's key, `--cluster` a cluster node's (whose
//! `forwarded_for` is believed). `--limit` sets a field of `CallConfig`:
//! `unauthenticated_max_concurrent_calls`, `connection_buffer`, `endpoint_buffer`,
//! `unauthenticated_buffer`, `max_connections`, `max_connections_per_address`,
//! `idle_timeout_ms` (the keep-alive a quarter of it), `handshake_timeout_ms` (also the
//! WebSocket's header timeout) or `frame_read_timeout_ms` (the server's too). The WebSocket
//! listener has the QUIC endpoint's connection caps; `--origin` allows a page's origin
//! (repeat for several; none: the default, same host only).
//!
//! Prints `listening <addr> <fingerprint>` (and `ws <addr>` with `--ws`) once it serves,
//! then runs until killed.

use std::net::SocketAddr;
use std::sync::Arc;

use alknet_example::{EchoProtocol, EchoService};
use alknet_runtime::call::{
    CallConfig, CallEndpoint, CallServer, NodeIdentity, PeerKey, RemoteNode, WebSocketAdapter,
    WebSocketLimits,
};
use alknet_runtime::{Identity, OperationEnv, StaticIdentities};
use alknet_tests::front::{Front, FrontProtocol};
use alknet_tests::gate::{Gate, GateProtocol};

fn identity(spec: &str) -> Identity {
    let (id, scopes) = spec.split_once('#').unwrap_or((spec, ""));
    Identity::new(id).with_scopes(scopes.split(',').filter(|s| !s.is_empty()))
}

fn pair(arg: &str) -> (&str, &str) {
    arg.split_once('=')
        .unwrap_or_else(|| panic!("`{arg}` should be NAME=VALUE"))
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let mut key = None;
    let mut serve = Vec::new();
    let mut identities = StaticIdentities::new();
    let mut peers = Vec::new();
    let mut routes = Vec::new();
    let mut max_frame = None;
    let mut unauthenticated_max_frame = None;
    let mut config = CallConfig::default();
    let mut ws = false;
    let mut origins: Option<Vec<String>> = None;
    while let Some(flag) = args.next() {
        let mut value = || {
            args.next()
                .unwrap_or_else(|| panic!("{flag} needs a value"))
        };
        match flag.as_str() {
            "--key" => key = Some(std::fs::read_to_string(value())?),
            "--serve" => serve.extend(value().split(',').map(str::to_string)),
            "--allow" => {
                let arg = value();
                let (fingerprint, who) = pair(&arg);
                identities = identities.with_key(fingerprint, identity(who));
            }
            "--cluster" => {
                let arg = value();
                let (fingerprint, who) = pair(&arg);
                identities = identities.with_cluster_key(fingerprint, identity(who));
            }
            "--token" => {
                let arg = value();
                let (token, who) = pair(&arg);
                identities = identities.with_token(token, identity(who));
            }
            "--peer" => peers.push(value()),
            "--route" => routes.push(value()),
            "--max-frame" => max_frame = Some(value().parse()?),
            "--unauthenticated-max-frame" => unauthenticated_max_frame = Some(value().parse()?),
            "--limit" => {
                let arg = value();
                let (name, number) = pair(&arg);
                let number: usize = number.parse()?;
                match name {
                    "unauthenticated_max_concurrent_calls" => {
                        config.unauthenticated_max_concurrent_calls = number.try_into()?;
                    }
                    "connection_buffer" => config.connection_buffer = number,
                    "endpoint_buffer" => config.endpoint_buffer = number,
                    "unauthenticated_buffer" => config.unauthenticated_buffer = number,
                    "max_connections" => config.max_connections = number,
                    "max_connections_per_address" => config.max_connections_per_address = number,
                    "idle_timeout_ms" => {
                        config.idle_timeout = std::time::Duration::from_millis(number as u64);
                        config.keep_alive = config.idle_timeout / 4;
                    }
                    "handshake_timeout_ms" => {
                        config.handshake_timeout = std::time::Duration::from_millis(number as u64);
                    }
                    "frame_read_timeout_ms" => {
                        config.frame_read_timeout = std::time::Duration::from_millis(number as u64);
                    }
                    other => panic!("unknown limit {other}"),
                }
            }
            "--ws" => ws = true,
            "--origin" => origins.get_or_insert_with(Vec::new).push(value()),
            other => panic!("unknown flag {other}"),
        }
    }
    let node = NodeIdentity::from_pem(&key.expect("--key is required"))?;
    let endpoint = CallEndpoint::bind("127.0.0.1:0".parse()?, &node, config.clone())?;

    let mut builder = OperationEnv::builder();
    for name in &serve {
        builder = match name.as_str() {
            "echo" => builder.local(EchoProtocol::local(EchoService::default())),
            "gate" => builder.local(GateProtocol::local(Gate::default())),
            "front" => builder.local(FrontProtocol::local(Front)),
            other => panic!("unknown service {other}"),
        };
    }
    let mut connections = Vec::new();
    for peer in &peers {
        let (name, target) = pair(peer);
        let (addr, fingerprint) = target.split_once('@').expect("ADDR@FINGERPRINT");
        let addr: SocketAddr = addr.parse()?;
        let connection = endpoint
            .connect(addr, PeerKey::Pinned(fingerprint.to_string()))
            .await?;
        builder = builder.remote(name, RemoteNode::discover(connection.clone()).await?);
        connections.push(connection);
    }
    for route in &routes {
        let (namespace, node_name) = pair(route);
        builder = builder.route(namespace, node_name);
    }
    let env = builder.build()?;
    let mut server =
        CallServer::new(env, Arc::new(identities)).frame_read_timeout(config.frame_read_timeout);
    if let Some(max_frame) = max_frame {
        server = server.max_frame_size(max_frame);
    }
    if let Some(max_frame) = unauthenticated_max_frame {
        server = server.unauthenticated_max_frame_size(max_frame);
    }
    // Peers this node dialled may call it back on the same connection.
    for connection in &connections {
        connection.serve(server.clone());
    }
    let serving = endpoint.serve(server.clone());
    println!("listening {} {}", endpoint.local_addr(), node.fingerprint());
    if ws {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        println!("ws {}", listener.local_addr()?);
        let limits = WebSocketLimits::from_config(&config, origins);
        tokio::spawn(WebSocketAdapter::new(server).limits(limits).serve(listener));
    }
    serving.await?;
    Ok(())
}
