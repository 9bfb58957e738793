//! irpc over QUIC between processes: peers are authenticated by key before any request is
//! read, a lost peer fails calls at once, and limits hold per stream. (Envelope parity,
//! cancellation and concurrency over QUIC run in `paths.rs`, on every path.)

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use alknet_example::{EchoClient, EchoProtocol};
use alknet_runtime::quic::{NodeIdentity, QuicConfig};
use alknet_runtime::service_path::connect;
use alknet_runtime::{CallError, OperationEnv, codes};
use alknet_tests::probe::{ProbeClient, ProbeProtocol};

/// An `irpc-node` process, killed when dropped.
struct Node {
    child: Child,
    addr: SocketAddr,
    fingerprint: String,
}

impl Node {
    fn start(allow: &NodeIdentity, extra: &[&str]) -> Node {
        let mut child = Command::new(env!("CARGO_BIN_EXE_irpc-node"))
            .args(["--allow", allow.fingerprint()])
            .args(extra)
            .stdout(Stdio::piped())
            .spawn()
            .expect("irpc-node starts");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let mut words = line.split_whitespace().skip(1);
        let addr = words.next().expect("an address").parse().unwrap();
        let fingerprint = words.next().expect("a fingerprint").to_string();
        Node {
            child,
            addr,
            fingerprint,
        }
    }

    fn env(&self, identity: &NodeIdentity) -> OperationEnv {
        let config = QuicConfig::default();
        let probe =
            connect::<ProbeProtocol>(self.addr, &self.fingerprint, identity, &config).unwrap();
        let echo =
            connect::<EchoProtocol>(self.addr, &self.fingerprint, identity, &config).unwrap();
        OperationEnv::builder()
            .service(ProbeProtocol::service(probe))
            .service(EchoProtocol::service(echo))
            .build()
            .unwrap()
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_allowed_peer_is_served_over_quic() {
    let client = NodeIdentity::generate().unwrap();
    let node = Node::start(&client, &[]);
    let echo = EchoClient::new(node.env(&client));
    assert_eq!(echo.say("over quic".into()).await.unwrap().length, 9);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_key_is_refused_before_any_request_is_read() {
    let allowed = NodeIdentity::generate().unwrap();
    let stranger = NodeIdentity::generate().unwrap();
    let node = Node::start(&allowed, &[]);
    let err = EchoClient::new(node.env(&stranger))
        .say("let me in".into())
        .await
        .unwrap_err();
    assert_eq!(err.code, codes::UNAVAILABLE, "{err}");
    assert!(
        err.message.contains("not allowed"),
        "the refusal says why: {}",
        err.message
    );
    // The allowed key still gets in.
    assert!(
        EchoClient::new(node.env(&allowed))
            .say("me".into())
            .await
            .is_ok()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_killed_mid_call_fails_the_call_with_unavailable_within_a_second() {
    let client = NodeIdentity::generate().unwrap();
    let mut node = Node::start(&client, &[]);
    let probe = ProbeClient::new(node.env(&client));
    assert!(probe.ids(false).await.is_ok(), "connected");
    let pending = tokio::spawn(async move { probe.hang(0, false).await });
    tokio::time::sleep(Duration::from_millis(100)).await;
    node.child.kill().unwrap();
    let killed = Instant::now();
    let outcome = tokio::time::timeout(Duration::from_secs(5), pending)
        .await
        .expect("the call ends");
    let err: CallError = outcome.unwrap().unwrap_err();
    assert_eq!(err.code, codes::UNAVAILABLE, "{err}");
    assert!(err.retryable);
    assert!(
        killed.elapsed() < Duration::from_secs(1),
        "took {:?}",
        killed.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_request_is_refused_and_the_connections_other_calls_carry_on() {
    let client = NodeIdentity::generate().unwrap();
    let node = Node::start(&client, &["--max-request", "1024"]);
    let env = node.env(&client);
    let probe = ProbeClient::new(env.clone());
    let echo = EchoClient::new(env);
    let hanging = {
        let probe = probe.clone();
        tokio::spawn(async move { probe.hang(0, false).await })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    let err = echo.say("x".repeat(4096)).await.unwrap_err();
    assert_eq!(err.code, codes::RESOURCE_EXHAUSTED, "{err}");
    assert!(!err.retryable);
    assert!(
        err.message.contains("1024"),
        "names the limit: {}",
        err.message
    );
    assert!(
        echo.say("small".into()).await.is_ok(),
        "the next call works"
    );
    assert!(
        !hanging.is_finished(),
        "the call in flight was not disturbed"
    );
    hanging.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_larger_than_the_stream_window_arrives_whole_beside_small_calls() {
    let client = NodeIdentity::generate().unwrap();
    let node = Node::start(&client, &[]);
    let echo = EchoClient::new(node.env(&client));
    // 4 MiB: more than QUIC lets one stream send before the peer grants more, so the
    // request is written in parts, after the requests that started with it have their turn.
    let large = tokio::spawn({
        let echo = echo.clone();
        async move { echo.say("a".repeat(4 << 20)).await }
    });
    let small = futures::future::join_all((0..16).map(|i| echo.say("x".repeat(i)))).await;
    for (i, answer) in small.into_iter().enumerate() {
        assert_eq!(answer.unwrap().length, i as u64);
    }
    assert_eq!(large.await.unwrap().unwrap().length, 4 << 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_undecodable_request_gets_invalid_input_on_its_own_stream() {
    let client = NodeIdentity::generate().unwrap();
    let node = Node::start(&client, &[]);
    let connection = alknet_runtime::quic::connect(
        node.addr,
        &node.fingerprint,
        &client,
        &alknet_runtime::service_path::alpn::<EchoProtocol>(),
        &QuicConfig::default(),
    )
    .await
    .unwrap();
    let (mut send, mut recv) = connection.open_bi().await.unwrap();
    // A length prefix of 4, then four bytes that are no `EchoProtocolRpc`.
    send.write_all(&[4, 0xff, 0xff, 0xff, 0xff]).await.unwrap();
    send.finish().unwrap();
    let answer = recv.read_to_end(64 * 1024).await.unwrap();
    let (length, body) = postcard::take_from_bytes::<u64>(&answer).unwrap();
    assert_eq!(length as usize, body.len());
    let refused: Result<(), CallError> = postcard::from_bytes(body).unwrap();
    let err = refused.unwrap_err();
    assert_eq!(err.code, codes::INVALID_INPUT, "{err}");
    // The connection still serves the protocol.
    assert!(
        EchoClient::new(node.env(&client))
            .say("still".into())
            .await
            .is_ok()
    );
}
