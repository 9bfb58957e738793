//! The node's policy for outside calls (`NodePolicy`): rate limits and the forwarding
//! policy of the live configuration, enforced through every adapter over real transports
//! (reqwest over HTTP, QUIC for the call protocol, `dig` for DNS, WebSocket), with nodes
//! in this process on loopback.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use alknet::Listeners;
use alknet_example::{EchoProtocol, EchoService};
use alknet_runtime::call::{CallOptions, NodeIdentity};
use alknet_runtime::config::{ConfigServiceImpl, ReloadPart};
use alknet_runtime::credentials::api_key_hash;
use alknet_runtime::{CallError, codes};
use alknet_tests::adapters::dig;
use alknet_tests::front::{Front, FrontProtocol};
use alknet_tests::gate::{Gate, GateProtocol, Seen};
use futures::{SinkExt, StreamExt};
use reqwest::StatusCode;
use serde_json::{Value, json};
use support::TestNode;
use tokio_tungstenite::tungstenite::Message;

mod support;

/// The API key of `user:ada`.
const ADA: &str = "alk_ada-0123456789abcdef0123456789";
/// The API key of `user:bob`.
const BOB: &str = "alk_bob-0123456789abcdef0123456789";

/// A node in this process ([`alknet::Node`]): `echo`, `gate` and `front` behind the
/// node's policy over its configuration file, served over the call protocol (QUIC),
/// WebSocket, HTTP and DNS.
struct Node {
    config: Arc<ConfigServiceImpl>,
    file: PathBuf,
    /// The file's static part (listen addresses, the node's key), which reloads keep.
    statics: String,
    identity: NodeIdentity,
    call: SocketAddr,
    ws: SocketAddr,
    http: String,
    dns: SocketAddr,
    _listeners: Listeners,
}

/// A fresh config file path.
fn config_file() -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    std::env::temp_dir().join(format!(
        "alknet-policy-test-{}-{}.toml",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    ))
}

/// The config sections every test node has: the keys of `user:ada` and `user:bob`.
fn keys() -> String {
    format!(
        "[[api_keys]]\nid = \"ada\"\nhash = \"{}\"\nidentity = \"user:ada\"\n\n\
         [[api_keys]]\nid = \"bob\"\nhash = \"{}\"\nidentity = \"user:bob\"\n\n",
        api_key_hash(ADA),
        api_key_hash(BOB)
    )
}

/// `[[public_keys]]`: `identity` proves itself as `who`.
fn allow(identity: &NodeIdentity, who: &str) -> String {
    format!(
        "[[public_keys]]\nfingerprint = \"{}\"\nidentity = \"{who}\"\n\n",
        identity.fingerprint()
    )
}

/// `[[public_keys]]`: `identity` is the cluster node `who`, whose `forwarded_for` is believed.
fn cluster(identity: &NodeIdentity, who: &str) -> String {
    format!(
        "[[public_keys]]\nfingerprint = \"{}\"\nidentity = \"{who}\"\ncluster = true\n\n",
        identity.fingerprint()
    )
}

/// `[[peers]]`: the node `name` at `address` with `identity`'s key.
fn peer(name: &str, address: SocketAddr, identity: &NodeIdentity) -> String {
    format!(
        "[[peers]]\nname = \"{name}\"\naddress = \"{address}\"\nfingerprint = \"{}\"\n\n",
        identity.fingerprint()
    )
}

impl Node {
    async fn start(dynamic: &str) -> Node {
        Node::start_as(NodeIdentity::generate().unwrap(), dynamic).await
    }

    async fn start_as(identity: NodeIdentity, dynamic: &str) -> Node {
        let file = config_file();
        let key = support::key_file(&identity);
        let statics = format!(
            "[node]\nkey = {key:?}\n[listen]\ncall = \"127.0.0.1:0\"\nwebsocket = \"127.0.0.1:0\"\n\
             http = \"127.0.0.1:0\"\ndns = \"127.0.0.1:0\"\n\n"
        );
        std::fs::write(&file, format!("{statics}{}{dynamic}", keys())).unwrap();
        let node = alknet::Node::builder(ConfigServiceImpl::from_file(&file).unwrap())
            .local(EchoProtocol::local(EchoService::default()))
            .local(GateProtocol::local(Gate::default()))
            .local(FrontProtocol::local(Front))
            .without_storage()
            .build()
            .unwrap();
        std::fs::remove_file(key).ok();
        let listeners = node.start().await.unwrap();
        let address = |name| listeners.address(name).unwrap();
        Node {
            config: node.config().clone(),
            file,
            statics,
            identity,
            call: address("call"),
            ws: address("websocket"),
            http: format!("http://{}", address("http")),
            dns: address("dns"),
            _listeners: listeners,
        }
    }

    /// Replace the dynamic part of the file and reload it, as `config/reload` would.
    fn reload(&self, dynamic: &str) {
        std::fs::write(&self.file, format!("{}{}{dynamic}", self.statics, keys())).unwrap();
        self.config
            .reload(ReloadPart::All)
            .expect("the new configuration is valid");
    }

    async fn post(&self, path: &str, body: Value, key: Option<&str>) -> reqwest::Response {
        let mut request = reqwest::Client::new()
            .post(format!("{}{path}", self.http))
            .json(&body);
        if let Some(key) = key {
            request = request.bearer_auth(key);
        }
        request.send().await.expect("the node answers")
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        std::fs::remove_file(&self.file).ok();
    }
}

/// A rate-limit refusal: `RESOURCE_EXHAUSTED`, retryable, with a positive retry hint.
fn assert_rate_limited(err: &Value) -> u64 {
    assert_eq!(err["code"], codes::RESOURCE_EXHAUSTED, "{err}");
    assert_eq!(err["retryable"], true, "{err}");
    let ms = err["details"]["retry_after_ms"]
        .as_u64()
        .expect("a retry hint");
    assert!(ms > 0, "{err}");
    ms
}

fn as_json(err: &CallError) -> Value {
    serde_json::to_value(err).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_answers_429_with_retry_after_per_ip_and_a_reload_that_raises_the_limit_lets_calls_through()
 {
    let node = Node::start("[rate_limits]\nper_ip = { per_second = 1, burst = 2 }\n").await;
    let say = json!({"text": "hi"});
    for _ in 0..2 {
        let response = node.post("/v1/echo/say", say.clone(), None).await;
        assert_eq!(response.status(), StatusCode::OK);
    }
    // Authenticated or not, the third call from the same address is over the limit.
    let response = node.post("/v1/echo/say", say.clone(), Some(ADA)).await;
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry_after: u64 = response.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let body: Value = response.json().await.unwrap();
    let ms = assert_rate_limited(&body["error"]);
    assert_eq!(retry_after, ms.div_ceil(1000), "whole seconds, rounded up");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("127.0.0.1"),
        "{body}"
    );

    node.reload("[rate_limits]\nper_ip = { per_second = 1000, burst = 1000 }\n");
    tokio::time::sleep(Duration::from_millis(50)).await;
    for _ in 0..10 {
        let response = node.post("/v1/echo/say", say.clone(), None).await;
        assert_eq!(response.status(), StatusCode::OK);
    }
}

/// `POST /v1/echo/say` from this test (127.0.0.1) claiming to be for `client`.
async fn say_for(node: &Node, client: &str) -> reqwest::Response {
    reqwest::Client::new()
        .post(format!("{}/v1/echo/say", node.http))
        .header("x-forwarded-for", client)
        .json(&json!({"text": "hi"}))
        .send()
        .await
        .expect("the node answers")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn x_forwarded_for_names_the_client_only_when_the_peer_is_a_trusted_proxy() {
    // 127.0.0.1 is no proxy: whatever it claims, its calls count against 127.0.0.1.
    let node = Node::start("[rate_limits]\nper_ip = { per_second = 1, burst = 1 }\n").await;
    assert_eq!(say_for(&node, "203.0.113.1").await.status(), StatusCode::OK);
    let response = say_for(&node, "203.0.113.2").await;
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    let body: Value = response.json().await.unwrap();
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.starts_with("the address 127.0.0.1 "), "{message}");

    // Once it is a trusted proxy, each client it names has its own bucket.
    node.reload(
        "[rate_limits]\nper_ip = { per_second = 1, burst = 1 }\ntrusted_proxies = [\"127.0.0.0/8\"]\n",
    );
    assert_eq!(say_for(&node, "203.0.113.1").await.status(), StatusCode::OK);
    assert_eq!(say_for(&node, "203.0.113.2").await.status(), StatusCode::OK);
    let response = say_for(&node, "203.0.113.1").await;
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    let body: Value = response.json().await.unwrap();
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.starts_with("the address 203.0.113.1 "), "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_identity_has_its_own_bucket_over_http_and_the_call_protocol() {
    let tester = TestNode::new();
    let node = Node::start(&format!(
        "{}[rate_limits]\nper_identity = {{ per_second = 1, burst = 1 }}\n",
        allow(&tester.identity, "user:tester")
    ))
    .await;
    let say = json!({"text": "hi"});

    assert_eq!(
        node.post("/v1/echo/say", say.clone(), Some(ADA))
            .await
            .status(),
        StatusCode::OK
    );
    let refused = node.post("/v1/echo/say", say.clone(), Some(ADA)).await;
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(refused.headers().contains_key("retry-after"));
    let body: Value = refused.json().await.unwrap();
    assert_rate_limited(&body["error"]);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("user:ada"),
        "{body}"
    );
    // An anonymous caller is not Ada.
    let response = node.post("/v1/echo/say", say.clone(), None).await;
    assert_eq!(response.status(), StatusCode::OK);

    // The call protocol: the key's identity has its bucket too.
    let connection = tester
        .connect_to(node.call, node.identity.fingerprint())
        .await;
    connection.call("/echo/say", say.clone()).await.unwrap();
    let err = connection.call("/echo/say", say.clone()).await.unwrap_err();
    assert_rate_limited(&as_json(&err));
    // A per-call token is another identity (Bob), with its own bucket.
    let as_bob = CallOptions::new().auth_token(BOB);
    connection
        .call_with("/echo/say", say.clone(), &as_bob)
        .await
        .unwrap();
    // Listings are not calls.
    connection
        .call("/services/list", json!({}))
        .await
        .expect("listing is not rate limited");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dns_and_websocket_callers_are_limited_by_their_address() {
    let node = Node::start("[rate_limits]\nper_ip = { per_second = 1, burst = 1 }\n").await;

    let answer = dig(node.dns, "motd.gate.alk.dev", "TXT", &[]).await;
    assert_eq!(answer.status, "NXDOMAIN", "gate has no motd: {answer:?}");
    let name = format!(
        "{}.say.echo.alk.dev",
        alknet_tests::adapters::base64url(br#"{"text":"hi"}"#)
    );
    // NXDOMAIN above made no call, so the bucket is still full.
    let answer = dig(node.dns, &name, "TXT", &[]).await;
    assert_eq!(answer.status, "NOERROR", "{answer:?}");
    let answer = dig(node.dns, &name, "TXT", &[]).await;
    assert_eq!(answer.status, "REFUSED", "{answer:?}");
    assert_rate_limited(&answer.json()["error"]);

    // WebSocket: the upgrade's TCP peer is the address; the same loopback bucket is empty.
    let (mut socket, _) = tokio_tungstenite::connect_async(format!("ws://{}/call", node.ws))
        .await
        .unwrap();
    // Three calls at once: with a burst of 1, at most one gets through.
    for id in ["1", "2", "3"] {
        let request = json!({"type": "call.requested", "id": id, "payload": {
            "operationId": "/echo/say", "input": {"text": "hi"}, "auth_token": ADA}});
        socket
            .send(Message::text(request.to_string()))
            .await
            .unwrap();
    }
    let mut refused = 0;
    for _ in 0..3 {
        let reply = loop {
            if let Message::Text(text) = socket.next().await.unwrap().unwrap() {
                break serde_json::from_str::<Value>(&text).unwrap();
            }
        };
        if reply["type"] == "call.error" {
            assert_rate_limited(&reply["payload"]);
            refused += 1;
        } else {
            assert_eq!(reply["type"], "call.responded", "{reply}");
        }
    }
    assert!(refused >= 2, "{refused} of 3 calls were refused");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deny_rule_is_forbidden_over_http_and_the_call_protocol_and_nested_calls_pass() {
    let tester = TestNode::new();
    let node = Node::start(&format!(
        "{}[[forwarding.rules]]\noperations = \"front/*\"\naction = \"local\"\n\n\
         [[forwarding.rules]]\noperations = \"gate/*\"\nidentities = \"user:*\"\naction = \"deny\"\n\n\
         [rate_limits]\nper_identity = {{ per_second = 1, burst = 2 }}\n",
        allow(&tester.identity, "user:tester")
    ))
    .await;

    let response = node.post("/v1/gate/whoami", json!({}), Some(ADA)).await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], codes::FORBIDDEN);
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("gate/whoami") && message.contains("rule 2"),
        "{message}"
    );
    // The rule names `user:*`; an anonymous caller is not matched.
    let response = node.post("/v1/gate/whoami", json!({}), None).await;
    assert_eq!(response.status(), StatusCode::OK);

    let connection = tester
        .connect_to(node.call, node.identity.fingerprint())
        .await;
    let err = connection
        .call("/gate/whoami", json!({}))
        .await
        .unwrap_err();
    assert_eq!(err.code, codes::FORBIDDEN, "{err:?}");

    // `front/whoami` calls `gate/whoami` as a nested call: neither denied nor counted.
    // Denied calls spent no tokens, so the tester has both of its calls left.
    for _ in 0..2 {
        let seen: Seen =
            serde_json::from_value(connection.call("/front/whoami", json!({})).await.unwrap())
                .unwrap();
        assert_eq!(seen.identity.as_deref(), Some("user:tester"));
    }
    let err = connection
        .call("/front/whoami", json!({}))
        .await
        .unwrap_err();
    assert_rate_limited(&as_json(&err));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forward_rule_sends_the_call_to_the_peer_once_follows_reloads_and_fails_fast_when_the_peer_is_gone()
 {
    let tester = TestNode::new();
    let a_key = NodeIdentity::generate().unwrap();
    let b_key = NodeIdentity::generate().unwrap();
    let b_allows = format!(
        "{}{}",
        allow(&tester.identity, "user:tester"),
        cluster(&a_key, "node:a")
    );
    let b = Node::start_as(b_key.clone(), &b_allows).await;
    let forwarding_to = |to: &Node| {
        format!(
            "{}{}{}[[forwarding.rules]]\noperations = \"gate/*\"\naction = \"forward\"\npeer = \"b\"\n\n\
             [[forwarding.rules]]\noperations = \"echo/ticks\"\naction = \"forward\"\npeer = \"b\"\n",
            allow(&tester.identity, "user:tester"),
            cluster(&b_key, "node:b"),
            peer("b", to.call, &to.identity),
        )
    };
    let a = Node::start_as(a_key.clone(), &forwarding_to(&b)).await;
    let to_a = tester.connect_to(a.call, a.identity.fingerprint()).await;

    // B answers, seeing A's node key as the caller and the tester as who it is for.
    let seen: Seen =
        serde_json::from_value(to_a.call("/gate/whoami", json!({})).await.unwrap()).unwrap();
    assert_eq!(seen.identity.as_deref(), Some("node:a"));
    assert_eq!(seen.forwarded_for.as_deref(), Some("user:tester"));
    // The same through HTTP, for an anonymous caller.
    let response = a.post("/v1/gate/whoami", json!({}), None).await;
    assert_eq!(response.status(), StatusCode::OK);
    let seen: Seen = response.json().await.unwrap();
    assert_eq!(seen.identity.as_deref(), Some("node:a"));
    assert_eq!(seen.forwarded_for.as_deref(), Some("anonymous"));
    // Subscriptions are forwarded too.
    let ticks: Vec<Value> = to_a
        .subscribe_with("/echo/ticks", json!({"count": 2}), &CallOptions::new())
        .await
        .map(Result::unwrap)
        .collect()
        .await;
    assert_eq!(ticks, [json!({"n": 1}), json!({"n": 2})]);
    // `echo/say` is not forwarded: A serves it.
    to_a.call("/echo/say", json!({"text": "here"}))
        .await
        .unwrap();

    // B forwards `gate/*` back to A: only the one-hop rule keeps the two from looping.
    // A call to A lands on B and is served there; a call to B lands on A, served there.
    b.reload(&format!(
        "{b_allows}{}[[forwarding.rules]]\noperations = \"gate/*\"\naction = \"forward\"\npeer = \"a\"\n",
        peer("a", a.call, &a_key),
    ));
    let seen: Seen =
        serde_json::from_value(to_a.call("/gate/whoami", json!({})).await.unwrap()).unwrap();
    assert_eq!(seen.identity.as_deref(), Some("node:a"));
    let to_b = tester.connect_to(b.call, b.identity.fingerprint()).await;
    let seen: Seen =
        serde_json::from_value(to_b.call("/gate/whoami", json!({})).await.unwrap()).unwrap();
    assert_eq!(seen.identity.as_deref(), Some("node:b"));
    assert_eq!(seen.forwarded_for.as_deref(), Some("user:tester"));

    // A reload that points `b` at another node (another address and key): the next
    // forwarded call goes there.
    let c = Node::start(&allow(&a_key, "node:a@c")).await;
    a.reload(&forwarding_to(&c));
    let seen: Seen =
        serde_json::from_value(to_a.call("/gate/whoami", json!({})).await.unwrap()).unwrap();
    assert_eq!(seen.identity.as_deref(), Some("node:a@c"));

    // A peer that never answers: UNAVAILABLE, naming the peer, within a second or so. The
    // socket stays bound (and silent) until the end, so no other process can take its port
    // and answer in its place.
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let nobody = silent.local_addr().unwrap();
    a.reload(&format!(
        "{}{}[[forwarding.rules]]\noperations = \"gate/*\"\naction = \"forward\"\npeer = \"b\"\n",
        allow(&tester.identity, "user:tester"),
        peer("b", nobody, &b_key),
    ));
    let started = Instant::now();
    let err = to_a.call("/gate/whoami", json!({})).await.unwrap_err();
    assert_eq!(err.code, codes::UNAVAILABLE, "{err:?}");
    assert!(err.retryable);
    assert!(err.message.contains("`b`"), "{}", err.message);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_a_cluster_nodes_forwarded_for_is_believed_and_anyone_elses_is_dropped() {
    let outsider = TestNode::new();
    let member = TestNode::new();
    let a_key = NodeIdentity::generate().unwrap();
    let b_key = NodeIdentity::generate().unwrap();
    let b = Node::start_as(b_key.clone(), &cluster(&a_key, "node:a")).await;
    let a = Node::start_as(
        a_key,
        &format!(
            "{}{}{}[[forwarding.rules]]\noperations = \"gate/*\"\naction = \"forward\"\npeer = \"b\"\n",
            allow(&outsider.identity, "user:outsider"),
            cluster(&member.identity, "node:member"),
            peer("b", b.call, &b_key),
        ),
    )
    .await;
    let claim = CallOptions::new().forwarded_for("user:root");
    let seen = |value: Value| serde_json::from_value::<Seen>(value).unwrap();

    // An outside key's claim changes nothing: `gate/*` is still forwarded (not served
    // here as a call that says it was forwarded already), for the caller itself...
    let to_a = outsider.connect_to(a.call, a.identity.fingerprint()).await;
    let forwarded = seen(
        to_a.call_with("/gate/whoami", json!({}), &claim)
            .await
            .unwrap(),
    );
    assert_eq!(
        forwarded.identity.as_deref(),
        Some("node:a"),
        "{forwarded:?}"
    );
    assert_eq!(forwarded.forwarded_for.as_deref(), Some("user:outsider"));
    // ...and what is served here sees no `forwarded_for`.
    let local = seen(
        to_a.call_with("/front/whoami", json!({}), &claim)
            .await
            .unwrap(),
    );
    assert_eq!(
        local,
        Seen {
            identity: Some("user:outsider".into()),
            forwarded_for: None
        }
    );

    // Over WebSocket, a bearer's claim is dropped too.
    let (mut socket, _) = tokio_tungstenite::connect_async(format!("ws://{}/call", a.ws))
        .await
        .unwrap();
    let request = json!({"type": "call.requested", "id": "1", "payload": {
        "operationId": "/front/whoami", "input": {}, "auth_token": ADA,
        "forwarded_for": "user:root"}});
    socket
        .send(Message::text(request.to_string()))
        .await
        .unwrap();
    let reply = loop {
        if let Message::Text(text) = socket.next().await.unwrap().unwrap() {
            break serde_json::from_str::<Value>(&text).unwrap();
        }
    };
    assert_eq!(reply["type"], "call.responded", "{reply}");
    assert_eq!(
        seen(reply["payload"]["output"].clone()),
        Seen {
            identity: Some("user:ada".into()),
            forwarded_for: None
        }
    );

    // A cluster node's claim stands: the call arrived forwarded, so it is served here
    // (one hop), with the `forwarded_for` it was given.
    let to_a = member.connect_to(a.call, a.identity.fingerprint()).await;
    let landed = seen(
        to_a.call_with("/gate/whoami", json!({}), &claim)
            .await
            .unwrap(),
    );
    assert_eq!(
        landed,
        Seen {
            identity: Some("node:member".into()),
            forwarded_for: Some("user:root".into())
        }
    );
    let local = seen(
        to_a.call_with("/front/whoami", json!({}), &claim)
            .await
            .unwrap(),
    );
    assert_eq!(local.forwarded_for.as_deref(), Some("user:root"));
    // Not beside an `auth_token`: the call is the token holder's, an outside caller's.
    let with_token = claim.clone().auth_token(ADA);
    let local = seen(
        to_a.call_with("/front/whoami", json!({}), &with_token)
            .await
            .unwrap(),
    );
    assert_eq!(
        local,
        Seen {
            identity: Some("user:ada".into()),
            forwarded_for: None
        }
    );

    // The marker is read per call: demoted by a reload, the same connection's claim is
    // dropped from its next call.
    a.reload(&format!(
        "{}{}[[forwarding.rules]]\noperations = \"gate/*\"\naction = \"forward\"\npeer = \"b\"\n",
        allow(&member.identity, "node:member"),
        peer("b", b.call, &b_key),
    ));
    let local = seen(
        to_a.call_with("/front/whoami", json!({}), &claim)
            .await
            .unwrap(),
    );
    assert_eq!(local.forwarded_for, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_mcp_tool_call_over_the_limit_is_a_rate_limited_tool_result() {
    let node = Node::start("[rate_limits]\nper_identity = { per_second = 1, burst = 2 }\n").await;
    let say = json!({"name": "echo.say", "arguments": {"text": "hi"}});
    let session = alknet_tests::adapters::mcp_session(
        &["--http", &format!("{}/mcp", node.http)],
        Some(ADA),
        &json!([say, say, say]),
    )
    .await;
    let results = session["results"].as_array().unwrap();
    assert_eq!(results[0]["is_error"], false, "{}", results[0]);
    assert_eq!(results[1]["is_error"], false, "{}", results[1]);
    assert_eq!(results[2]["is_error"], true, "{}", results[2]);
    assert_rate_limited(&results[2]["text"]["error"]);
    // Another identity has its own bucket.
    let session = alknet_tests::adapters::mcp_session(
        &["--http", &format!("{}/mcp", node.http)],
        Some(BOB),
        &json!([say]),
    )
    .await;
    assert_eq!(session["results"][0]["is_error"], false);

    // Per address: the client's address reaches the policy through MCP's HTTP requests.
    let node = Node::start("[rate_limits]\nper_ip = { per_second = 1, burst = 1 }\n").await;
    let session = alknet_tests::adapters::mcp_session(
        &["--http", &format!("{}/mcp", node.http)],
        None,
        &json!([say, say]),
    )
    .await;
    assert_eq!(session["results"][0]["is_error"], false);
    assert_rate_limited(&session["results"][1]["text"]["error"]);
}
