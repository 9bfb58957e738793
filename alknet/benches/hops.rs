//! What one hop adds: `echo/say` over the call protocol straight to the node that serves it,
//! against the same call made to a head that places `echo` on that node (`[services]`) and
//! reaches it over the call protocol, or over irpc. One call at a time, on loopback.
//!
//! Run with `cargo bench -p alknet --bench hops`; the ratios and the time each hop adds are
//! printed at the end.

use std::path::Path;

use alknet::{Listeners, Node};
use alknet_example::{EchoProtocol, EchoService};
use alknet_runtime::call::{CallConfig, CallEndpoint, Connection, PeerKey};
use alknet_runtime::config::ConfigServiceImpl;
use alknet_runtime::quic::NodeIdentity;
use criterion::{Criterion, criterion_group};
use serde_json::json;

#[path = "../../alknet-runtime/benches/support/mod.rs"]
mod support;

const GROUP: &str = "hops";

fn key(dir: &Path, name: &str) -> String {
    let key = NodeIdentity::generate().unwrap();
    std::fs::write(dir.join(format!("{name}.key")), key.private_key_pem()).unwrap();
    key.fingerprint().to_string()
}

/// A node over `text` with `echo`, started; it serves until the process ends.
async fn start(dir: &Path, name: &str, text: String) -> (Node, Listeners) {
    let config = format!(
        "[node]\nkey = {:?}\n\n[storage]\nin_memory = true\n\n{text}",
        dir.join(format!("{name}.key"))
    );
    let node = Node::builder(ConfigServiceImpl::from_text(config, name).unwrap())
        .local(EchoProtocol::local(EchoService::default()))
        .without_secret()
        .build()
        .unwrap();
    let listeners = node.start().await.unwrap();
    (node, listeners)
}

/// Connections to the node serving `echo`, and to a head in front of it over each path.
async fn connections() -> [Connection; 3] {
    let dir = tempfile::tempdir().unwrap().keep();
    let (far, head) = (key(&dir, "far"), key(&dir, "head"));
    let trusted = format!(
        "[[public_keys]]\nfingerprint = \"{head}\"\nidentity = \"node:head\"\ncluster = true\n"
    );
    let listen = "[listen]\ncall = \"127.0.0.1:0\"\nirpc = \"127.0.0.1:0\"\n\n";
    let (far_node, far_up) = start(&dir, "far", format!("{listen}{trusted}")).await;
    let (call, irpc) = (
        far_up.address("call").unwrap(),
        far_up.address("irpc").unwrap(),
    );
    let head_over = |over: &str| {
        format!(
            "[listen]\ncall = \"127.0.0.1:0\"\n\n[services]\necho = {{ peer = \"far\", over = \"{over}\" }}\n\n\
             [[peers]]\nname = \"far\"\naddress = \"{call}\"\nirpc = \"{irpc}\"\nfingerprint = \"{far}\"\n"
        )
    };
    let (call_head, call_up) = start(&dir, "head", head_over("call")).await;
    let (irpc_head, irpc_up) = start(&dir, "head", head_over("irpc")).await;
    let client = NodeIdentity::generate().unwrap();
    let endpoint = CallEndpoint::bind(
        "127.0.0.1:0".parse().unwrap(),
        &client,
        CallConfig::default(),
    )
    .unwrap();
    let mut connections = Vec::new();
    for (node, up) in [
        (&far_node, &far_up),
        (&call_head, &call_up),
        (&irpc_head, &irpc_up),
    ] {
        let address = up.address("call").unwrap();
        let pinned = PeerKey::Pinned(node.identity().fingerprint().to_string());
        connections.push(endpoint.connect(address, pinned).await.unwrap());
    }
    // The nodes and the endpoint must outlive the benchmark.
    std::mem::forget((
        far_node, far_up, call_head, call_up, irpc_head, irpc_up, endpoint,
    ));
    connections.try_into().unwrap_or_else(|_| unreachable!())
}

fn hops(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let [direct, call_hop, irpc_hop] = runtime.block_on(connections());
    let say = |connection: Connection| async move {
        connection
            .call("/echo/say", json!({ "text": "hello, alknet" }))
            .await
            .unwrap()
    };
    let mut group = c.benchmark_group(GROUP);
    for (name, connection) in [
        ("direct", direct),
        ("call_hop", call_hop),
        ("irpc_hop", irpc_hop),
    ] {
        group.bench_function(name, |b| {
            b.to_async(&runtime).iter(|| say(connection.clone()))
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().output_directory(&support::output_directory());
    targets = hops
}

fn main() {
    benches();
    Criterion::default().final_summary();
    for hop in ["call_hop", "irpc_hop"] {
        support::report(GROUP, hop, "direct", None);
        if let (Some(hop_ns), Some(direct_ns)) = (
            support::median_ns(GROUP, hop),
            support::median_ns(GROUP, "direct"),
        ) {
            println!("added by {hop}: {:.1} µs", (hop_ns - direct_ns) / 1000.0);
        }
    }
}
