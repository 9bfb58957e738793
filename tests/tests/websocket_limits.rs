//! The WebSocket listener under attack and in a browser's hands: slow headers, slow
//! messages, too many connections, pages from other origins, anonymous callers.

mod support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use support::{NodeProcess, Socket, browser_node, open_websocket};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::{self, Message};

fn ws_node(extra: &[&str]) -> NodeProcess {
    browser_node("echo", extra)
}

/// Open a socket, with `origin` if given; the handshake's outcome.
async fn open(node: &NodeProcess, origin: Option<&str>) -> Result<Socket, tungstenite::Error> {
    open_websocket(node, None, origin).await
}

/// The HTTP status a refused handshake was answered with, and its error body's code.
fn refusal(outcome: Result<impl Sized, tungstenite::Error>) -> (u16, String) {
    match outcome {
        Err(tungstenite::Error::Http(response)) => {
            let body: Value =
                serde_json::from_slice(response.body().as_deref().unwrap_or_default()).unwrap();
            (
                response.status().as_u16(),
                body["error"]["code"].as_str().unwrap().to_string(),
            )
        }
        Err(other) => panic!("refused otherwise: {other}"),
        Ok(_) => panic!("the handshake succeeded"),
    }
}

/// A raw TCP connection that has done the upgrade by hand, so a test may send any bytes.
async fn raw_upgrade(addr: SocketAddr) -> TcpStream {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let request = format!(
        "GET /call HTTP/1.1\r\nHost: {addr}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    while !response.ends_with(b"\r\n\r\n") {
        let mut byte = [0];
        stream.read_exact(&mut byte).await.unwrap();
        response.push(byte[0]);
    }
    let response = String::from_utf8(response).unwrap();
    assert!(response.starts_with("HTTP/1.1 101"), "{response}");
    // RFC 6455's own example key and its answer.
    assert!(
        response.contains("s3pPLMBiTxaQ9kYGzzhZRbK+xOo="),
        "{response}"
    );
    stream
}

/// The header of a masked client text frame of `len` bytes, with a zero mask.
fn masked_text_header(len: u16) -> Vec<u8> {
    let mut header = vec![0x81, 0x80 | 126];
    header.extend_from_slice(&len.to_be_bytes());
    header.extend_from_slice(&[0, 0, 0, 0]);
    header
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_that_arrives_too_slowly_closes_the_socket_with_1008() {
    let node = ws_node(&["--call", "frame_read_timeout_ms=800"]);
    let mut stream = raw_upgrade(node.ws.unwrap()).await;
    // A whole ping, then a message of 1000 bytes of which 100 come, then a byte every
    // 100 ms: the message's clock started with its first byte.
    stream.write_all(&[0x89, 0x80, 0, 0, 0, 0]).await.unwrap();
    let started = Instant::now();
    stream.write_all(&masked_text_header(1000)).await.unwrap();
    stream.write_all(&[b' '; 100]).await.unwrap();
    let (mut reader, mut writer) = stream.into_split();
    let trickle = tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_millis(100)).await;
            if writer.write_all(b" ").await.is_err() {
                break;
            }
        }
    });
    let read = tokio::time::timeout(Duration::from_secs(10), async {
        let error = server_frame(&mut reader).await;
        let close = server_frame(&mut reader).await;
        (error, close)
    });
    let ((text, error), (close, reason)) = read.await.expect("the socket is closed in time");
    trickle.abort();
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_millis(800) && elapsed < Duration::from_secs(5),
        "took {elapsed:?}"
    );
    assert_eq!(text, 0x1, "a text message first");
    let error: Value = serde_json::from_slice(&error).unwrap();
    assert_eq!(error["type"], "call.error");
    assert_eq!(error["payload"]["code"], "TIMEOUT");
    assert_eq!(close, 0x8, "then a close frame");
    assert_eq!(u16::from_be_bytes([reason[0], reason[1]]), 1008);
    let reason = String::from_utf8_lossy(&reason[2..]);
    assert!(reason.contains("not whole within 800 ms"), "{reason}");
}

/// The next unmasked frame from the server that is not a pong: its opcode and payload.
async fn server_frame(reader: &mut (impl AsyncReadExt + Unpin)) -> (u8, Vec<u8>) {
    loop {
        let (opcode, payload) = any_server_frame(reader).await;
        if opcode != 0xA {
            return (opcode, payload);
        }
    }
}

async fn any_server_frame(reader: &mut (impl AsyncReadExt + Unpin)) -> (u8, Vec<u8>) {
    let mut head = [0; 2];
    reader.read_exact(&mut head).await.unwrap();
    let len = match head[1] & 0x7f {
        126 => u64::from(reader.read_u16().await.unwrap()),
        127 => reader.read_u64().await.unwrap(),
        len => u64::from(len),
    };
    let mut payload = vec![0; len as usize];
    reader.read_exact(&mut payload).await.unwrap();
    (head[0] & 0x0f, payload)
}

/// Whether the node closes `stream` (EOF or reset) within `limit`.
async fn closed_within(stream: &mut TcpStream, limit: Duration) -> bool {
    let mut buffer = [0; 1024];
    let read = tokio::time::timeout(limit, async {
        loop {
            match stream.read(&mut buffer).await {
                Ok(0) | Err(_) => return,
                Ok(_) => continue,
            }
        }
    });
    read.await.is_ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_upgrade_headers_are_cut_at_the_header_timeout() {
    let node = ws_node(&["--call", "handshake_timeout_ms=500"]);
    let addr = node.ws.unwrap();
    let started = Instant::now();
    let mut silent = TcpStream::connect(addr).await.unwrap();
    let mut slow = TcpStream::connect(addr).await.unwrap();
    slow.write_all(b"GET /call HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    assert!(closed_within(&mut silent, Duration::from_secs(5)).await);
    assert!(closed_within(&mut slow, Duration::from_secs(5)).await);
    let elapsed = started.elapsed();
    assert!(elapsed >= Duration::from_millis(500), "took {elapsed:?}");
    // A client that sends its upgrade at once is served, and its socket outlives the
    // header timeout: it is no longer reading headers.
    let mut socket = open(&node, None).await.unwrap();
    tokio::time::sleep(Duration::from_millis(800)).await;
    let said = call(&mut socket, "/echo/say", json!({"text": "hi"})).await;
    assert_eq!(said["payload"]["output"]["length"], 2, "{said}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_sockets_count_against_the_connection_caps_until_they_close() {
    let node = ws_node(&["--call", "max_connections_per_address=2"]);
    let first = open(&node, None).await.unwrap();
    let _second = open(&node, None).await.unwrap();
    let (status, code) = refusal(open(&node, None).await);
    assert_eq!((status, code.as_str()), (429, "RESOURCE_EXHAUSTED"));
    drop(first);
    support::until("a closed socket gives its place back", || async {
        open(&node, None).await.is_ok()
    })
    .await;

    let node = ws_node(&[
        "--call",
        "max_connections=1",
        "--call",
        "max_connections_per_address=10",
    ]);
    let _only = open(&node, None).await.unwrap();
    let (status, _) = refusal(open(&node, None).await);
    assert_eq!(status, 429, "the node takes one connection in all");
}

async fn call(
    socket: &mut tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<TcpStream>>,
    operation: &str,
    input: Value,
) -> Value {
    let request = json!({"type": "call.requested", "id": "1", "payload": {"operationId": operation, "input": input}});
    socket
        .send(Message::text(request.to_string()))
        .await
        .unwrap();
    loop {
        match socket.next().await.unwrap().unwrap() {
            Message::Text(text) => return serde_json::from_str(&text).unwrap(),
            Message::Ping(_) | Message::Pong(_) => continue,
            other => panic!("unexpected {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_from_other_origins_are_refused_before_the_upgrade() {
    let node = ws_node(&[]);
    let own = format!("http://{}", node.ws.unwrap());
    // No Origin: no browser page. The page's own host: its own page.
    open(&node, None).await.unwrap();
    open(&node, Some(&own)).await.unwrap();
    for foreign in ["http://evil.example", "null", "http://127.0.0.1:1"] {
        let (status, code) = refusal(open(&node, Some(foreign)).await);
        assert_eq!((status, code.as_str()), (403, "FORBIDDEN"), "{foreign}");
    }

    let node = ws_node(&["--origin", "https://app.example"]);
    open(&node, Some("https://app.example")).await.unwrap();
    open(&node, Some("HTTPS://APP.EXAMPLE")).await.unwrap();
    open(&node, None).await.unwrap();
    let own = format!("http://{}", node.ws.unwrap());
    let (status, _) = refusal(open(&node, Some(&own)).await);
    assert_eq!(status, 403, "a list replaces the same-host default");
    let (status, _) = refusal(open(&node, Some("https://app.example.evil")).await);
    assert_eq!(status, 403);

    let node = ws_node(&["--origin", "*"]);
    open(&node, Some("http://evil.example")).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anonymous_sockets_reach_open_operations_and_a_refused_bearer_is_401() {
    let node = ws_node(&[]);
    let mut anonymous = open(&node, None).await.unwrap();
    let said = call(&mut anonymous, "/echo/say", json!({"text": "hi"})).await;
    assert_eq!(said["payload"]["output"]["length"], 2, "{said}");
    let listed = call(&mut anonymous, "/services/list", json!({})).await;
    let listed = listed["payload"]["output"]
        .as_array()
        .unwrap_or_else(|| panic!("{listed}"))
        .clone();
    assert!(listed.iter().any(|op| op["operationId"] == "/echo/say"));
    assert!(
        !listed.iter().any(|op| op["operationId"] == "/echo/served"),
        "only what an anonymous caller may call"
    );
    let restricted = call(&mut anonymous, "/echo/served", json!({})).await;
    assert_eq!(
        restricted["payload"]["code"], "UNAUTHENTICATED",
        "{restricted}"
    );

    let (status, code) = refusal(open_websocket(&node, Some("guess"), None).await);
    assert_eq!((status, code.as_str()), (401, "UNAUTHENTICATED"));
}
