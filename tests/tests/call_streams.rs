//! Long subscriptions and large items over every call-protocol path: QUIC, WebSocket, a
//! node that forwards by its policy, and a mounted (`.remote`) or routed (`.route`) node.
//! Item sizes cross every buffer: 1 byte, 1 KiB ± 1, 64 KiB, 1 MiB.

mod support;

use std::time::Duration;

use alknet::Listeners;
use alknet_example::{EchoProtocol, EchoService};
use alknet_runtime::call::{CallConfig, CallOptions, Connection, NodeIdentity};
use alknet_runtime::config::ConfigServiceImpl;
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use support::{BROWSER_KEY, NodeProcess, TestNode, args, browser_node, front_node, open_websocket};
use tokio_tungstenite::tungstenite::Message;

const SIZES: [u64; 6] = [1, 1023, 1024, 1025, 64 * 1024, 1024 * 1024];
const TICKS: u64 = 10_000;

/// Megabytes of JSON in debug builds on a loaded machine can stall a process for longer
/// than the default idle timeout (600 ms); these tests are about framing, not liveness.
/// A `[call]` setting (and `call-node --call`).
const IDLE_TIMEOUT: &str = "idle_timeout_ms=10000";

fn patient_config() -> CallConfig {
    CallConfig {
        idle_timeout: Duration::from_secs(10),
        keep_alive: Duration::from_millis(2500),
        ..CallConfig::default()
    }
}

/// A tester whose connections wait out a stalled peer.
fn patient_tester() -> TestNode {
    TestNode::with_config(NodeIdentity::generate().unwrap(), patient_config())
}

/// `echo/ticks` counted to 10,000, in order.
fn check_ticks(items: &[Value]) {
    assert_eq!(items.len() as u64, TICKS);
    for (i, item) in items.iter().enumerate() {
        assert_eq!(item, &json!({"n": i + 1}));
    }
}

/// Three items of `echo/blobs` of `size` bytes, each whole and in its place.
fn check_blobs(size: u64, items: &[Value]) {
    assert_eq!(items.len(), 3, "size {size}");
    for (i, item) in items.iter().enumerate() {
        let n = i as u64 + 1;
        assert_eq!(item["n"], n);
        let text = item["text"].as_str().unwrap();
        let letter = char::from(b'a' + (n % 26) as u8);
        assert_eq!(text.len() as u64, size);
        assert!(
            text.chars().all(|c| c == letter),
            "item {n} of size {size} is mixed up"
        );
    }
}

/// Every subscription of the test over `connection`, calling `prefix` + `/echo/…`, with
/// items of `sizes`.
async fn check_over_quic(connection: &Connection, prefix: &str, sizes: &[u64]) {
    let subscribe = |operation: &str, input: Value| {
        let operation = format!("{prefix}/echo/{operation}");
        async move {
            connection
                .subscribe_with(&operation, input, &CallOptions::new())
                .await
                .map(|item| item.unwrap_or_else(|err| panic!("{operation}: {err}")))
                .collect::<Vec<Value>>()
                .await
        }
    };
    check_ticks(&subscribe("ticks", json!({"count": TICKS})).await);
    for &size in sizes {
        check_blobs(
            size,
            &subscribe("blobs", json!({"count": 3, "size": size})).await,
        );
    }
}

/// A node in this process ([`alknet::Node`]) with `identity`'s key, serving `echo` over
/// QUIC as patiently as the tester, with `dynamic` configuration: the node and its
/// listeners.
async fn echo_node_here(identity: &NodeIdentity, dynamic: &str) -> (alknet::Node, Listeners) {
    let key = support::key_file(identity);
    let text = format!(
        "[node]\nkey = {key:?}\n[listen]\ncall = \"127.0.0.1:0\"\n[call]\n{IDLE_TIMEOUT}\n\n{dynamic}"
    );
    let node = alknet::Node::builder(ConfigServiceImpl::from_text(text, "the test node").unwrap())
        .local(EchoProtocol::local(EchoService::default()))
        .without_storage()
        .build()
        .unwrap();
    std::fs::remove_file(key).ok();
    let listeners = node.start().await.unwrap();
    (node, listeners)
}

fn echo_worker(tester: &TestNode, extra: &[String]) -> NodeProcess {
    let mut flags = args(["--serve", "echo", "--call", IDLE_TIMEOUT]);
    flags.extend(tester.allow("user:tester"));
    flags.extend_from_slice(extra);
    NodeProcess::start(&NodeIdentity::generate().unwrap(), &flags)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_subscriptions_and_large_items_arrive_whole_over_quic() {
    let tester = patient_tester();
    let node = echo_worker(&tester, &[]);
    check_over_quic(&tester.connect(&node).await, "", &SIZES).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_subscriptions_and_large_items_arrive_whole_through_a_mounted_and_a_routed_node() {
    let tester = patient_tester();
    let front_identity = NodeIdentity::generate().unwrap();
    let back = echo_worker(
        &tester,
        &args([
            "--allow",
            &format!("{}=node:front", front_identity.fingerprint()),
        ]),
    );
    let front = front_node(
        &tester,
        &front_identity,
        &back,
        &["echo"],
        &["--call", IDLE_TIMEOUT],
    );
    let connection = tester.connect(&front).await;
    // `.route`: the front serves `echo` from the worker; `.remote`: `/worker-1/echo/…`.
    check_over_quic(&connection, "", &SIZES).await;
    check_over_quic(&connection, "/worker-1", &SIZES).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_subscriptions_and_large_items_arrive_whole_through_a_forwarding_node() {
    let back_identity = NodeIdentity::generate().unwrap();
    let front_identity = NodeIdentity::generate().unwrap();
    let (_back, back) = echo_node_here(
        &back_identity,
        &format!(
            "[[public_keys]]\nfingerprint = \"{}\"\nidentity = \"node:front\"\n",
            front_identity.fingerprint()
        ),
    )
    .await;
    let tester = patient_tester();
    let (_front, front) = echo_node_here(
        &front_identity,
        &format!(
            "[[public_keys]]\nfingerprint = \"{}\"\nidentity = \"user:tester\"\n\n\
             [[peers]]\nname = \"back\"\naddress = \"{}\"\nfingerprint = \"{}\"\n\n\
             [[forwarding.rules]]\noperations = \"echo/*\"\naction = \"forward\"\npeer = \"back\"\n",
            tester.identity.fingerprint(),
            back.address("call").unwrap(),
            back_identity.fingerprint()
        ),
    )
    .await;
    let connection = tester
        .connect_to(front.address("call").unwrap(), front_identity.fingerprint())
        .await;
    // The forwarder's link to its peer is as patient as the tester's own connection: a
    // debug build re-encoding megabytes on a loaded machine can outlast the default idle
    // timeout (600 ms), which is the link's QUIC settings, now the node's to choose.
    check_over_quic(&connection, "", &SIZES).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_subscriptions_and_large_items_arrive_whole_over_websocket() {
    let node = browser_node("echo", &[]);
    let mut socket = open_websocket(&node, Some(BROWSER_KEY), None)
        .await
        .unwrap();
    let mut subscribe = async |id: &str, operation: &str, input: Value| {
        let request = json!({"type": "call.requested", "id": id,
            "payload": {"operationId": format!("/echo/{operation}"), "input": input}});
        socket
            .send(Message::text(request.to_string()))
            .await
            .unwrap();
        let mut items = Vec::new();
        loop {
            let Message::Text(text) = socket.next().await.unwrap().unwrap() else {
                continue;
            };
            let event: Value = serde_json::from_str(&text).unwrap();
            assert_eq!(event["id"], id);
            match event["type"].as_str().unwrap() {
                "call.responded" => items.push(event["payload"]["output"].clone()),
                "call.completed" => return items,
                _ => panic!("{event}"),
            }
        }
    };
    check_ticks(&subscribe("t", "ticks", json!({"count": TICKS})).await);
    for size in SIZES {
        let items = subscribe(
            &format!("b{size}"),
            "blobs",
            json!({"count": 3, "size": size}),
        )
        .await;
        check_blobs(size, &items);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_item_over_the_bound_of_echo_blobs_is_invalid_input() {
    let tester = patient_tester();
    let node = echo_worker(&tester, &[]);
    let connection = tester.connect(&node).await;
    let at_the_bound = json!({"count": 1, "size": alknet_example::MAX_BLOB_SIZE});
    let items: Vec<_> = connection
        .subscribe_with("/echo/blobs", at_the_bound, &CallOptions::new())
        .await
        .collect()
        .await;
    assert_eq!(items.len(), 1);
    assert!(items[0].is_ok(), "{:?}", items[0].as_ref().err());
    let over = json!({"count": 1, "size": alknet_example::MAX_BLOB_SIZE + 1});
    let items: Vec<_> = connection
        .subscribe_with("/echo/blobs", over, &CallOptions::new())
        .await
        .collect()
        .await;
    let err = items[0].as_ref().unwrap_err();
    assert_eq!(err.code, alknet_runtime::codes::INVALID_INPUT);
    assert!(err.message.contains("at most 4194304 bytes"), "{err}");
}

/// Items ready together share a write; an item alone is sent at once, not held until the
/// next: the first of two ticks 1.5 s apart arrives long before the second is made.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_item_alone_is_sent_as_soon_as_it_is_ready_over_quic() {
    let tester = patient_tester();
    let node = echo_worker(&tester, &[]);
    let connection = tester.connect(&node).await;
    let started = std::time::Instant::now();
    let input = json!({"count": 2, "interval_ms": 1500});
    let mut ticks = connection
        .subscribe_with("/echo/ticks", input, &CallOptions::new())
        .await;
    let first = ticks.next().await.unwrap().unwrap();
    let at = started.elapsed();
    assert_eq!(first["n"], 1);
    assert!(
        at < Duration::from_millis(2700),
        "the first tick came after {at:?}"
    );
    assert_eq!(ticks.next().await.unwrap().unwrap()["n"], 2);
    assert!(ticks.next().await.is_none());
}

/// `echo/ticks` of 10 ticks 200 ms apart, with a 450 ms deadline: two ticks, then `TIMEOUT`.
const SLOW_TICKS: &str = r#"{"type":"call.requested","id":"d","payload":{"operationId":"/echo/ticks","input":{"count":10,"interval_ms":200},"deadline":450}}"#;

/// What a subscription past its deadline sent: its items, then its last event.
fn check_deadline(items: usize, last: &Value, elapsed: Duration) {
    assert_eq!(items, 2, "the ticks before the deadline");
    assert_eq!(last["type"], "call.error", "{last}");
    assert_eq!(last["payload"]["code"], "TIMEOUT", "{last}");
    assert!(
        elapsed < Duration::from_millis(1500),
        "ended after {elapsed:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscription_past_its_deadline_ends_with_timeout_over_quic() {
    use alknet_runtime::call::{DEFAULT_MAX_FRAME_SIZE, FrameReader};
    let tester = patient_tester();
    let node = echo_worker(&tester, &[]);
    let connection = tester.connect(&node).await;
    // By hand: alknet's own caller watches the deadline too, and would hide the callee's.
    let started = std::time::Instant::now();
    let (mut send, recv) = connection.quic().open_bi().await.unwrap();
    let mut frame = (SLOW_TICKS.len() as u32).to_be_bytes().to_vec();
    frame.extend_from_slice(SLOW_TICKS.as_bytes());
    send.write_all(&frame).await.unwrap();
    send.finish().unwrap();
    let mut frames = FrameReader::new(recv, DEFAULT_MAX_FRAME_SIZE);
    let mut events = Vec::new();
    while let Some(frame) = frames.next().await.unwrap() {
        events.push(serde_json::from_slice::<Value>(&frame).unwrap());
    }
    let last = events.pop().expect("an event");
    check_deadline(events.len(), &last, started.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscription_past_its_deadline_ends_with_timeout_over_websocket() {
    let node = browser_node("echo", &[]);
    let mut socket = open_websocket(&node, Some(BROWSER_KEY), None)
        .await
        .unwrap();
    let started = std::time::Instant::now();
    socket.send(Message::text(SLOW_TICKS)).await.unwrap();
    let mut items = 0;
    let last = loop {
        let Message::Text(text) = socket.next().await.unwrap().unwrap() else {
            continue;
        };
        let event: Value = serde_json::from_str(&text).unwrap();
        if event["type"] == "call.responded" {
            items += 1;
        } else {
            break event;
        }
    };
    check_deadline(items, &last, started.elapsed());

    // `deadline: 0` has passed already: a call that must wait answers `TIMEOUT` (a
    // subscription before its first item), one done without waiting still answers.
    let zero = |id: &str, operation: &str, input: Value| {
        json!({"type": "call.requested", "id": id,
            "payload": {"operationId": operation, "input": input, "deadline": 0}})
        .to_string()
    };
    socket
        .send(Message::text(zero(
            "z1",
            "/echo/ticks",
            json!({"count": 3, "interval_ms": 50}),
        )))
        .await
        .unwrap();
    socket
        .send(Message::text(zero(
            "z2",
            "/echo/say",
            json!({"text": "now"}),
        )))
        .await
        .unwrap();
    let mut answers = std::collections::BTreeMap::new();
    while answers.len() < 2 {
        let Message::Text(text) = socket.next().await.unwrap().unwrap() else {
            continue;
        };
        let event: Value = serde_json::from_str(&text).unwrap();
        let previous = answers.insert(event["id"].as_str().unwrap().to_string(), event);
        assert!(previous.is_none(), "one event per call: {previous:?}");
    }
    assert_eq!(answers["z1"]["type"], "call.error", "{}", answers["z1"]);
    assert_eq!(answers["z1"]["payload"]["code"], "TIMEOUT");
    assert_eq!(answers["z2"]["type"], "call.responded", "{}", answers["z2"]);
}
