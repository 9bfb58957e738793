//! The call protocol between nodes in separate processes (SPEC §7).

mod support;

use std::time::{Duration, Instant};

use alknet_runtime::call::{
    CallOptions, Connection, DEFAULT_MAX_FRAME_SIZE, Event, EventEnvelope, FrameReader,
};
use alknet_runtime::codes;
use alknet_tests::gate::{HangCounts as Counts, Seen};
use futures::StreamExt;
use serde_json::{Value, json};
use support::{NodeProcess, TestNode, args, front_node, until};

fn worker(
    tester: &TestNode,
    extra: &[String],
) -> (alknet_runtime::call::NodeIdentity, NodeProcess) {
    let identity = alknet_runtime::call::NodeIdentity::generate().unwrap();
    let mut flags = args(["--serve", "echo,gate"]);
    flags.extend(tester.allow("user:tester"));
    flags.extend_from_slice(extra);
    let process = NodeProcess::start(&identity, &flags);
    (identity, process)
}

async fn counts(connection: &Connection) -> Counts {
    serde_json::from_value(connection.call("/gate/counts", json!({})).await.unwrap()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_remote_call_a_subscription_an_error_and_the_listing() {
    let tester = TestNode::new();
    let (_, node) = worker(&tester, &[]);
    let peer = tester.connect(&node).await;

    let said = peer.call("/echo/say", json!({"text": "hi"})).await.unwrap();
    assert_eq!(said, json!({"text": "hi", "length": 2}));

    let ticks: Vec<Value> = peer
        .subscribe_with("/echo/ticks", json!({"count": 3}), &CallOptions::new())
        .await
        .map(Result::unwrap)
        .collect()
        .await;
    assert_eq!(ticks, [json!({"n": 1}), json!({"n": 2}), json!({"n": 3})]);

    let err = peer
        .call("/echo/shout", json!({"text": "  "}))
        .await
        .unwrap_err();
    assert_eq!(err.code, "EMPTY_TEXT");
    assert_eq!(err.details, Some(json!({"whitespace": 2})));
    let err = peer.call("/echo/say", json!({"txt": 1})).await.unwrap_err();
    assert_eq!(err.code, codes::INVALID_INPUT);
    assert!(err.message.contains("text"), "{}", err.message);
    let err = peer.call("/echo/nope", json!({})).await.unwrap_err();
    assert_eq!(err.code, codes::NOT_FOUND);
    let err = peer.call("/echo/served", json!({})).await.unwrap_err();
    assert_eq!(err.code, codes::FORBIDDEN, "the tester lacks echo:admin");

    let listed = peer.call("/services/list", json!({})).await.unwrap();
    let ids: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|op| op["operationId"].as_str().unwrap())
        .collect();
    assert!(
        ids.contains(&"/echo/say") && ids.contains(&"/gate/hang"),
        "{ids:?}"
    );
    assert!(
        !ids.contains(&"/echo/served"),
        "operations the caller may not call are not listed"
    );
    let schema = peer
        .call("/services/schema", json!({"operationId": "/echo/say"}))
        .await
        .unwrap();
    // The service document, holding the one operation.
    assert_eq!(schema["namespace"], "echo");
    assert_eq!(
        schema["operations"]
            .as_object()
            .unwrap()
            .keys()
            .collect::<Vec<_>>(),
        ["say"]
    );
    assert_eq!(schema["operations"]["say"]["kind"], "query");
    let id = "https://alk.dev/schemas/services/echo.json";
    assert_eq!(schema["schema"]["$id"], id);
    assert_eq!(
        schema["operations"]["say"]["input"]["$ref"],
        format!("{id}#/$defs/say.input")
    );
    assert!(
        schema["schema"]["$defs"]["Say"]["properties"]["text"].is_object(),
        "{schema}"
    );
    let all = peer.call("/services/schema", json!({})).await.unwrap();
    let echo = all
        .as_array()
        .unwrap()
        .iter()
        .find(|document| document["namespace"] == "echo")
        .unwrap();
    assert!(echo["operations"].get("say").is_some(), "{echo}");
    assert!(
        echo["operations"].get("served").is_none(),
        "operations the caller may not call are left out"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nested_call_crosses_nodes_as_the_calling_node() {
    let tester = TestNode::new();
    let front_identity = alknet_runtime::call::NodeIdentity::generate().unwrap();
    let (_, back) = worker(
        &tester,
        &args([
            "--cluster",
            &format!("{}=node:front", front_identity.fingerprint()),
        ]),
    );
    let front = front_node(&tester, &front_identity, &back, &["gate", "echo"], &[]);
    let peer = tester.connect(&front).await;

    let seen: Seen =
        serde_json::from_value(peer.call("/front/whoami", json!({})).await.unwrap()).unwrap();
    assert_eq!(seen.identity.as_deref(), Some("node:front"));
    assert_eq!(seen.forwarded_for.as_deref(), Some("user:tester"));

    assert_eq!(
        peer.call("/front/shout", json!({"text": "hey"}))
            .await
            .unwrap(),
        json!("HEY")
    );
    let mounted = peer
        .call("/worker-1/echo/say", json!({"text": "via the mount"}))
        .await
        .unwrap();
    assert_eq!(mounted["length"], 13);
    let err = peer
        .call("/front/shout", json!({"text": " "}))
        .await
        .unwrap_err();
    assert_eq!(
        err.code,
        codes::INTERNAL,
        "front does not declare EMPTY_TEXT"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aborting_a_call_cancels_its_nested_call_on_the_other_node() {
    let tester = TestNode::new();
    let front_identity = alknet_runtime::call::NodeIdentity::generate().unwrap();
    let (_, back) = worker(
        &tester,
        &args([
            "--allow",
            &format!("{}=node:front", front_identity.fingerprint()),
        ]),
    );
    let front = front_node(&tester, &front_identity, &back, &["gate"], &[]);
    let to_front = tester.connect(&front).await;
    let to_back = tester.connect(&back).await;

    let call = tokio::spawn({
        let to_front = to_front.clone();
        async move { to_front.call("/front/hang", json!({})).await }
    });
    until("the nested call runs on the back node", || async {
        counts(&to_back).await.started == 1
    })
    .await;
    assert_eq!(counts(&to_back).await.dropped, 0);
    call.abort();
    until("the back node cancels it", || async {
        counts(&to_back).await.dropped == 1
    })
    .await;

    // A deadline travels too: the back node gives up when the front's caller would.
    let options = CallOptions::new().timeout(Duration::from_millis(200));
    let err = to_front
        .call_with("/front/hang", json!({}), &options)
        .await
        .unwrap_err();
    assert_eq!(err.code, codes::TIMEOUT);
    until("the timed-out nested call is cancelled", || async {
        counts(&to_back).await
            == Counts {
                started: 2,
                dropped: 2,
            }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_peer_fails_every_call_in_flight_with_unavailable_within_a_second() {
    let tester = TestNode::new();
    let (_, mut node) = worker(&tester, &[]);
    let peer = tester.connect(&node).await;
    let calls: Vec<_> = (0..3)
        .map(|_| {
            let peer = peer.clone();
            tokio::spawn(async move { peer.call("/gate/hang", json!({})).await })
        })
        .collect();
    until("the calls run", || async {
        let other = tester.connect(&node).await;
        counts(&other).await.started == 3
    })
    .await;
    let killed = Instant::now();
    node.kill();
    for call in calls {
        let err = tokio::time::timeout(Duration::from_secs(2), call)
            .await
            .expect("nothing hangs")
            .unwrap()
            .unwrap_err();
        assert_eq!(err.code, codes::UNAVAILABLE, "{err}");
        assert!(err.retryable);
    }
    let elapsed = killed.elapsed();
    eprintln!("the calls failed {elapsed:?} after the kill");
    assert!(elapsed < Duration::from_secs(1), "took {elapsed:?}");
    let err = peer
        .call("/echo/say", json!({"text": "late"}))
        .await
        .unwrap_err();
    assert_eq!(err.code, codes::UNAVAILABLE);
}

/// Send raw bytes on a new stream of `connection` and read the first answer.
async fn raw_exchange(connection: &Connection, bytes: &[u8]) -> EventEnvelope {
    let (mut send, recv) = connection.quic().open_bi().await.unwrap();
    send.write_all(bytes).await.unwrap();
    let frame = FrameReader::new(recv, DEFAULT_MAX_FRAME_SIZE)
        .next()
        .await
        .unwrap()
        .unwrap();
    EventEnvelope::decode(&frame).unwrap()
}

fn framed(json: &str) -> Vec<u8> {
    let mut bytes = (json.len() as u32).to_be_bytes().to_vec();
    bytes.extend_from_slice(json.as_bytes());
    bytes
}

fn error_of(envelope: EventEnvelope) -> alknet_runtime::CallError {
    match envelope.event {
        Event::Error(err) => err,
        other => panic!("expected call.error, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_larger_than_the_stream_window_arrives_whole_beside_small_calls() {
    let tester = TestNode::new();
    let (_, node) = worker(&tester, &[]);
    let peer = tester.connect(&node).await;
    // 4 MiB: more than QUIC lets one stream send before the peer grants more, so the
    // request is written in parts, after the calls that started with it have their turn.
    let text = "a".repeat(4 << 20);
    let large = tokio::spawn({
        let peer = peer.clone();
        async move { peer.call("/echo/say", json!({ "text": text })).await }
    });
    let small = futures::future::join_all(
        (0..16).map(|i| peer.call("/echo/say", json!({ "text": "x".repeat(i) }))),
    )
    .await;
    for (i, answer) in small.into_iter().enumerate() {
        assert_eq!(answer.unwrap()["length"], i);
    }
    let answer = large.await.unwrap().unwrap();
    assert_eq!(answer["length"], 4 << 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frame_over_the_limit_is_refused_and_the_connections_other_calls_go_on() {
    let tester = TestNode::new();
    let (_, node) = worker(&tester, &args(["--call", "max_frame_bytes=1024"]));
    let peer = tester.connect(&node).await;
    let hanging = tokio::spawn({
        let peer = peer.clone();
        async move { peer.call("/gate/hang", json!({})).await }
    });
    until("a call is in flight", || async {
        counts(&peer).await.started == 1
    })
    .await;

    let mut big = 2048u32.to_be_bytes().to_vec();
    big.extend_from_slice(&[b' '; 100]);
    let answer = raw_exchange(&peer, &big).await;
    let err = error_of(answer);
    assert_eq!(err.code, codes::RESOURCE_EXHAUSTED);
    assert!(!err.retryable);
    assert!(
        err.message.contains("2048") && err.message.contains("1024"),
        "{}",
        err.message
    );

    let text = "x".repeat(2000);
    let err = peer
        .call("/echo/say", json!({"text": text}))
        .await
        .unwrap_err();
    assert_eq!(err.code, codes::RESOURCE_EXHAUSTED);

    assert_eq!(
        peer.call("/echo/say", json!({"text": "ok"})).await.unwrap()["length"],
        2
    );
    assert_eq!(
        counts(&peer).await,
        Counts {
            started: 1,
            dropped: 0
        },
        "the hanging call goes on"
    );
    assert!(!hanging.is_finished());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_json_and_unknown_event_types_get_a_clear_error_and_the_connection_stays() {
    let tester = TestNode::new();
    let (_, node) = worker(&tester, &[]);
    let peer = tester.connect(&node).await;

    let err = error_of(raw_exchange(&peer, &framed("{not json")).await);
    assert_eq!(err.code, codes::INVALID_INPUT);
    assert!(err.message.contains("JSON"), "{}", err.message);

    let answer = raw_exchange(
        &peer,
        &framed(r#"{"type":"call.dance","id":"7","payload":{}}"#),
    )
    .await;
    assert_eq!(answer.id, "7");
    let err = error_of(answer);
    assert_eq!(err.code, codes::INVALID_INPUT);
    assert!(
        err.message.contains("unknown event type `call.dance`"),
        "{}",
        err.message
    );

    let answer = raw_exchange(
        &peer,
        &framed(r#"{"type":"call.completed","id":"8","payload":{}}"#),
    )
    .await;
    assert!(
        error_of(answer)
            .message
            .contains("must start with `call.requested`")
    );

    let answer = raw_exchange(
        &peer,
        &framed(r#"{"type":"call.requested","id":"9","payload":{"input":{}}}"#),
    )
    .await;
    assert!(error_of(answer).message.contains("operationId"));

    assert_eq!(
        peer.call("/echo/say", json!({"text": "still"}))
            .await
            .unwrap()["length"],
        5
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caller_that_follows_its_request_with_anything_but_an_abort_is_answered_and_cancelled() {
    let tester = TestNode::new();
    let (_, node) = worker(&tester, &[]);
    let peer = tester.connect(&node).await;
    let request =
        framed(r#"{"type":"call.requested","id":"1","payload":{"operationId":"/gate/hang"}}"#);
    let again =
        framed(r#"{"type":"call.requested","id":"1","payload":{"operationId":"/gate/hang"}}"#);
    let is_the_violation = |envelope: EventEnvelope| {
        assert_eq!(envelope.id, "1");
        let err = error_of(envelope);
        assert_eq!(err.code, codes::INVALID_INPUT);
        assert!(
            err.message
                .contains("only `call.aborted` may follow `call.requested`"),
            "{}",
            err.message
        );
    };

    // Both frames at once: the call is refused as it arrives.
    is_the_violation(raw_exchange(&peer, &[request.clone(), again.clone()].concat()).await);

    // The second frame while the call runs: the call is cancelled and the caller told why.
    let before = counts(&peer).await;
    let (mut send, mut recv) = peer.quic().open_bi().await.unwrap();
    send.write_all(&request).await.unwrap();
    until("the call runs", || async {
        counts(&peer).await.started == before.started + 1
    })
    .await;
    send.write_all(&again).await.unwrap();
    let frame = FrameReader::new(&mut recv, DEFAULT_MAX_FRAME_SIZE)
        .next()
        .await
        .unwrap()
        .unwrap();
    is_the_violation(EventEnvelope::decode(&frame).unwrap());
    until("the call is cancelled", || async {
        counts(&peer).await.dropped == before.dropped + 1
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_peer_calls_anonymously_unless_its_call_carries_a_valid_token() {
    let tester = TestNode::new();
    let (_, node) = worker(
        &tester,
        &args([
            "--api-key",
            "alk_s3cret-key-of-the-token-holder=user:token-holder",
        ]),
    );
    let stranger = TestNode::new();
    let peer = stranger.connect(&node).await;

    // Open operations answer a stranger, as on HTTP; restricted ones want a credential.
    let said = peer.call("/echo/say", json!({"text": "hi"})).await.unwrap();
    assert_eq!(said["length"], 2);
    let seen = peer.call("/gate/whoami", json!({})).await.unwrap();
    assert_eq!(seen["identity"], json!(null), "anonymous: {seen}");
    let listed = peer.call("/services/list", json!({})).await.unwrap();
    let listed: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|op| op["operationId"].as_str().unwrap())
        .collect();
    assert!(listed.contains(&"/echo/say"), "{listed:?}");
    assert!(!listed.contains(&"/echo/served"), "{listed:?}");
    let err = peer.call("/echo/served", json!({})).await.unwrap_err();
    assert_eq!(err.code, codes::UNAUTHENTICATED, "{err}");

    let with_token = CallOptions::new().auth_token("alk_s3cret-key-of-the-token-holder");
    let seen = peer
        .call_with("/gate/whoami", json!({}), &with_token)
        .await
        .unwrap();
    assert_eq!(seen["identity"], "user:token-holder");

    let wrong = CallOptions::new().auth_token("guess");
    let err = peer
        .call_with("/gate/whoami", json!({}), &wrong)
        .await
        .unwrap_err();
    assert_eq!(err.code, codes::UNAUTHENTICATED);

    // A token takes precedence over a known key.
    let known = tester.connect(&node).await;
    let seen = known
        .call_with("/gate/whoami", json!({}), &with_token)
        .await
        .unwrap();
    assert_eq!(seen["identity"], "user:token-holder");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_nodes_call_each_other_on_one_connection() {
    use std::sync::Arc;

    use alknet_example::{EchoProtocol, EchoService};
    use alknet_runtime::call::CallServer;
    use alknet_runtime::{Identity, OperationEnv, StaticIdentities};
    use alknet_tests::gate::{Gate, GateProtocol};

    let dialer = TestNode::new();
    let listener = TestNode::new();
    let allow = |node: &TestNode, id: &str| {
        Arc::new(StaticIdentities::new().with_key(node.identity.fingerprint(), Identity::new(id)))
    };
    let accepted = tokio::spawn({
        let endpoint = listener.endpoint.clone();
        async move { endpoint.accept().await.unwrap().unwrap() }
    });
    let dialled = dialer
        .endpoint
        .connect(
            listener.endpoint.local_addr(),
            alknet_runtime::call::PeerKey::Pinned(listener.identity.fingerprint().into()),
        )
        .await
        .unwrap();
    assert_eq!(dialled.peer_fingerprint(), listener.identity.fingerprint());
    let gate_env = OperationEnv::builder()
        .local(GateProtocol::local(Gate::default()))
        .build()
        .unwrap();
    dialled.serve(CallServer::new(gate_env, allow(&listener, "node:listener")));
    let accepted = accepted.await.unwrap();
    assert_eq!(accepted.peer_fingerprint(), dialer.identity.fingerprint());
    let echo_env = OperationEnv::builder()
        .local(EchoProtocol::local(EchoService::default()))
        .build()
        .unwrap();
    accepted.serve(CallServer::new(echo_env, allow(&dialer, "node:dialer")));

    // One connection, both directions at once.
    let (forward, backward) = tokio::join!(
        dialled.call("/echo/say", json!({"text": "there"})),
        accepted.call("/gate/whoami", json!({})),
    );
    assert_eq!(forward.unwrap()["length"], 5);
    assert_eq!(backward.unwrap()["identity"], "node:listener");

    // A pinned key that does not match is refused during the handshake.
    let other = TestNode::new();
    let wrong = dialer
        .endpoint
        .connect(
            other.endpoint.local_addr(),
            alknet_runtime::call::PeerKey::Pinned(dialer.identity.fingerprint().into()),
        )
        .await;
    assert_eq!(wrong.err().unwrap().code, codes::UNAVAILABLE);
}
