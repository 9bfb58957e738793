//! A bounded load test over the call protocol (SPEC §13): 10,000 calls in flight at once
//! against a node in its own process, every one answered with its own output, and the
//! node's memory measured before and after.

mod support;

use std::collections::HashSet;
use std::time::Duration;

use futures::StreamExt;
use futures::stream::FuturesUnordered;
use serde_json::json;
use support::{NodeProcess, TestNode, args};

/// Calls in flight at once.
const CALLS: usize = 10_000;
/// Connections they share: a few callers, as a head with a handful of links would have.
const CONNECTIONS: usize = 4;
/// What the node may keep after the load: it holds no state per finished call, so what
/// remains is allocator slack and the connections' buffers.
const RETAINED_LIMIT_KIB: u64 = 64 * 1024;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_concurrent_calls_are_all_answered_and_the_node_gives_its_memory_back() {
    let caller = TestNode::new();
    let node = NodeProcess::start(
        &alknet_runtime::call::NodeIdentity::generate().unwrap(),
        &[args(["--serve", "echo"]), caller.allow("svc:load").to_vec()].concat(),
    );
    let mut connections = Vec::new();
    for _ in 0..CONNECTIONS {
        connections.push(caller.connect(&node).await);
    }
    // One call on each connection first, so the baseline includes what a connection costs.
    for connection in &connections {
        connection
            .call("/echo/say", json!({"text": "warm"}))
            .await
            .unwrap();
    }
    let before = node.rss_bytes() / 1024;

    let mut calls: FuturesUnordered<_> = (0..CALLS)
        .map(|n| {
            let connection = connections[n % CONNECTIONS].clone();
            async move {
                let text = format!("call {n}");
                let output = connection.call("/echo/say", json!({ "text": text })).await;
                (n, text, output)
            }
        })
        .collect();
    let mut answered = HashSet::new();
    let run = async {
        while let Some((n, text, output)) = calls.next().await {
            let output = output.unwrap_or_else(|err| panic!("call {n} failed: {err}"));
            assert_eq!(
                output["text"],
                text.as_str(),
                "call {n} got another's answer"
            );
            assert!(answered.insert(n), "call {n} was answered twice");
        }
    };
    tokio::time::timeout(Duration::from_secs(120), run)
        .await
        .expect("10,000 calls are answered within 2 minutes");
    assert_eq!(answered.len(), CALLS, "every call is answered");
    let peak = node.peak_rss_bytes() / 1024;

    // The node still serves, and has let go of what the load needed.
    connections[0]
        .call("/echo/say", json!({"text": "after"}))
        .await
        .unwrap();
    let after = node.rss_bytes() / 1024;
    eprintln!(
        "load: {CALLS} calls over {CONNECTIONS} connections; node RSS before {before} KiB, \
         peak {peak} KiB, after {after} KiB"
    );
    assert!(
        after.saturating_sub(before) < RETAINED_LIMIT_KIB,
        "the node kept {} KiB after the load (before {before} KiB, after {after} KiB)",
        after.saturating_sub(before)
    );
}
