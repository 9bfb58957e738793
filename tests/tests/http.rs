//! The HTTP adapter with real clients: reqwest and curl.

use std::sync::atomic::Ordering;
use std::time::Duration;

use alknet_runtime::adapters::http::HttpLimits;
use alknet_runtime::futures::StreamExt;
use alknet_runtime::schema;
use alknet_tests::adapters::{ADMIN, READER, curl, env, serve};
use alknet_tests::probe::Probe;
use reqwest::StatusCode;
use serde_json::{Value, json};

/// A node with the test services over `settings` (an `[http]` section, or nothing): its
/// base URL, and its `probe`.
async fn node(settings: &str) -> (String, Probe) {
    let probe = Probe::default();
    let served = serve(alknet_tests::adapters::node(probe.clone(), settings)).await;
    (format!("http://{}", served.http), probe)
}

async fn post(base: &str, path: &str, body: &str, token: Option<&str>) -> (StatusCode, Value) {
    let mut request = reqwest::Client::new()
        .post(format!("{base}{path}"))
        .body(body.to_string());
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.expect("the node answers");
    let status = response.status();
    (status, response.json().await.expect("a JSON body"))
}

/// Asserts the error body of SPEC §9 and returns its `error` object.
fn error(body: &Value, code: &str) -> Value {
    let error = &body["error"];
    assert_eq!(error["code"], code, "{body}");
    assert!(
        error["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{body}"
    );
    assert!(error["retryable"].is_boolean(), "{body}");
    assert!(error.get("details").is_some(), "{body}");
    assert_eq!(
        error["request_id"].as_str().map(str::len),
        Some(32),
        "{body}"
    );
    error.clone()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_call_answers_its_output_and_request_id() {
    let (base, _) = node("").await;
    let response = reqwest::Client::new()
        .post(format!("{base}/v1/echo/say"))
        .json(&json!({"text": "hi"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let id = response.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_string();
    assert_eq!(id.len(), 32, "the call's request id: {id}");
    assert!(id.parse::<alknet_runtime::RequestId>().is_ok(), "{id}");
    assert_eq!(
        response.json::<Value>().await.unwrap(),
        json!({"text": "hi", "length": 2})
    );

    // A client's own request id is echoed back, on success and failure alike.
    for path in ["/v1/echo/say", "/v1/echo/nope"] {
        let response = reqwest::Client::new()
            .post(format!("{base}{path}"))
            .header("x-request-id", "client-42")
            .body(r#"{"text": "x"}"#)
            .send()
            .await
            .unwrap();
        assert_eq!(response.headers()["x-request-id"], "client-42");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn errors_have_the_status_and_body_of_the_spec() {
    let (base, _) = node("").await;

    let (status, body) = post(&base, "/v1/echo/nope", "{}", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    error(&body, "NOT_FOUND");

    let (status, body) = post(&base, "/v1/vault/peek", "", None).await;
    assert_eq!(
        status,
        StatusCode::NOT_FOUND,
        "internal operations do not exist outside"
    );
    error(&body, "NOT_FOUND");

    let (status, body) = post(&base, "/v1/echo/say", r#"{"text": "#, None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "malformed JSON");
    let err = error(&body, "INVALID_INPUT");
    assert!(
        err["message"].as_str().unwrap().contains("not valid JSON"),
        "{err}"
    );

    let (status, body) = post(&base, "/v1/echo/say", r#"{"text": 42}"#, None).await;
    assert_eq!(
        status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "a schema mismatch"
    );
    assert_eq!(error(&body, "INVALID_INPUT")["details"]["field"], "text");

    let (status, body) = post(&base, "/v1/echo/say", "", None).await;
    assert_eq!(
        status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "an empty body is no input"
    );
    assert!(
        error(&body, "INVALID_INPUT")["message"]
            .as_str()
            .unwrap()
            .contains("text")
    );

    let (status, body) = post(&base, "/v1/echo/shout", r#"{"text": "  "}"#, None).await;
    assert_eq!(status.as_u16(), 422, "the declared status of EMPTY_TEXT");
    assert_eq!(
        error(&body, "EMPTY_TEXT")["details"],
        json!({"whitespace": 2})
    );

    let (status, body) = post(&base, "/v1/probe/boom", "", None).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    error(&body, "INTERNAL");

    let (status, body) = post(&base, "/v1/probe/slow", r#"{"ms": 2000}"#, None).await;
    assert_eq!(
        status,
        StatusCode::GATEWAY_TIMEOUT,
        "the operation's own 50 ms limit"
    );
    assert_eq!(error(&body, "TIMEOUT")["retryable"], true);

    // The node kept serving after the panic.
    let (status, _) = post(&base, "/v1/echo/say", r#"{"text": "still here"}"#, None).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread")]
async fn bearer_tokens_pick_the_caller() {
    let (base, _) = node("").await;

    let (status, body) = post(&base, "/v1/vault/read", "", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    error(&body, "UNAUTHENTICATED");

    let (status, body) = post(&base, "/v1/vault/read", "", Some("wrong")).await;
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "a token the provider refuses"
    );
    error(&body, "UNAUTHENTICATED");

    let (status, body) = post(&base, "/v1/vault/read", "", Some(READER)).await;
    assert_eq!(
        (status, body),
        (StatusCode::OK, json!("secret for user:reader"))
    );

    let (status, body) = post(&base, "/v1/vault/rotate", "", Some(READER)).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    error(&body, "FORBIDDEN");

    let (status, body) = post(&base, "/v1/echo/served", "", Some(ADMIN)).await;
    assert_eq!(status, StatusCode::OK, "an API key: {body}");

    let response = reqwest::Client::new()
        .post(format!("{base}/v1/echo/say"))
        .header("authorization", "Basic dXNlcjpwdw==")
        .body(r#"{"text": "x"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.status(),
        StatusCode::UNAUTHORIZED,
        "only Bearer is understood"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn limits_are_enforced_with_the_documented_errors() {
    let (base, probe) = node(
        "[http]\nmax_body_bytes = 64\nrequest_timeout_ms = 300\nmax_concurrent_requests = 1\n",
    )
    .await;

    let big = json!({"text": "x".repeat(100)}).to_string();
    let (status, body) = post(&base, "/v1/echo/say", &big, None).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(error(&body, "RESOURCE_EXHAUSTED")["retryable"], false);

    // Without a Content-Length (chunked), the limit holds while reading.
    let chunks = alknet_runtime::futures::stream::iter(
        (0..10).map(|_| Ok::<_, std::io::Error>("0123456789".to_string())),
    );
    let response = reqwest::Client::new()
        .post(format!("{base}/v1/echo/say"))
        .body(reqwest::Body::wrap_stream(chunks))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);

    // The request timeout cancels the handler and answers 504; meanwhile a second request
    // is turned away at once.
    let hang = tokio::spawn({
        let base = base.clone();
        async move { post(&base, "/v1/probe/hang", r#"{"depth": 0}"#, None).await }
    });
    while probe.0.started.load(Ordering::SeqCst) == 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let response = reqwest::Client::new()
        .post(format!("{base}/v1/echo/say"))
        .body(r#"{"text": "x"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(response.headers()["retry-after"], "1");
    let body: Value = response.json().await.unwrap();
    assert_eq!(error(&body, "RESOURCE_EXHAUSTED")["retryable"], true);

    let (status, body) = hang.await.unwrap();
    assert_eq!(status, StatusCode::GATEWAY_TIMEOUT);
    error(&body, "TIMEOUT");
    assert_eq!(
        probe.0.dropped.load(Ordering::SeqCst),
        1,
        "the handler was cancelled"
    );
}

/// The events of an SSE body: (event name, data).
fn events(text: &str) -> Vec<(String, String)> {
    text.split("\n\n")
        .filter(|block| !block.trim().is_empty())
        .filter_map(|block| {
            let mut name = "message".to_string();
            let mut data = None;
            for line in block.lines() {
                if let Some(value) = line.strip_prefix("event: ") {
                    name = value.to_string();
                } else if let Some(value) = line.strip_prefix("data: ") {
                    data = Some(value.to_string());
                } else if line == "data:" {
                    data = Some(String::new());
                }
            }
            data.map(|data| (name, data))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn subscriptions_stream_server_sent_events() {
    let (base, probe) = node("").await;

    let response = reqwest::Client::new()
        .post(format!("{base}/v1/echo/ticks"))
        .body(r#"{"count": 3}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let text = response.text().await.unwrap();
    assert_eq!(
        events(&text)[..3],
        [
            ("message".into(), r#"{"n":1}"#.into()),
            ("message".into(), r#"{"n":2}"#.into()),
            ("message".into(), r#"{"n":3}"#.into()),
        ]
    );
    assert_eq!(events(&text)[3].0, "completed");
    let end: Value = serde_json::from_str(&events(&text)[3].1).unwrap();
    assert_eq!(end["request_id"].as_str().map(str::len), Some(32));

    // A failure mid-stream is an `error` event, and the stream ends there.
    let text = reqwest::Client::new()
        .post(format!("{base}/v1/probe/sputter"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let sputtered = events(&text);
    assert_eq!(sputtered[0], ("message".into(), "0".into()));
    assert_eq!(sputtered[1].0, "error");
    error(&serde_json::from_str(&sputtered[1].1).unwrap(), "INTERNAL");
    assert_eq!(sputtered.len(), 2, "{text}");

    // A failure before the first item is an ordinary error response.
    let (status, body) = post(&base, "/v1/echo/ticks", r#"{"count": "x"}"#, None).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    error(&body, "INVALID_INPUT");

    // A client that goes away cancels the subscription: its producer stops.
    let response = reqwest::Client::new()
        .post(format!("{base}/v1/probe/forever"))
        .send()
        .await
        .unwrap();
    let mut body = response.bytes_stream();
    let mut seen = String::new();
    while events(&seen).len() < 3 {
        seen.push_str(&String::from_utf8_lossy(
            &body.next().await.unwrap().unwrap(),
        ));
    }
    drop(body);
    let mut last = probe.0.produced.load(Ordering::SeqCst);
    loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let now = probe.0.produced.load(Ordering::SeqCst);
        if now == last {
            break;
        }
        last = now;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        probe.0.produced.load(Ordering::SeqCst),
        last,
        "the producer stopped"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn listings_openapi_and_health() {
    let probe = Probe::default();
    let served = serve(alknet_tests::adapters::node(probe, "")).await;
    let env = served.env;
    let base = format!("http://{}", served.http);
    let client = reqwest::Client::new();

    let list = |token: Option<&'static str>| {
        let mut request = client.get(format!("{base}/v1/operations"));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        async move { request.send().await.unwrap().json::<Value>().await.unwrap() }
    };
    let anonymous = list(None).await;
    let ops = anonymous["operations"].as_array().unwrap();
    let find = |ops: &[Value], id: &str| ops.iter().find(|op| op["id"] == id).cloned();
    assert!(
        find(ops, "vault/peek").is_none(),
        "internal operations are not listed"
    );
    let external = env.operations().filter(|op| op.is_external()).count();
    assert_eq!(ops.len(), external);
    let say = find(ops, "echo/say").unwrap();
    assert_eq!(say["path"], "/v1/echo/say");
    assert_eq!(
        (say["requires_auth"].clone(), say["callable"].clone()),
        (json!(false), json!(true))
    );
    let served = find(ops, "echo/served").unwrap();
    assert_eq!(
        (served["requires_auth"].clone(), served["callable"].clone()),
        (json!(true), json!(false))
    );
    assert_eq!(find(ops, "echo/ticks").unwrap()["streams"], true);
    let admin = list(Some(ADMIN)).await;
    assert_eq!(
        find(admin["operations"].as_array().unwrap(), "echo/served").unwrap()["callable"],
        true
    );

    let openapi: Value = client
        .get(format!("{base}/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(openapi, schema::openapi(env.services()));

    let health = client.get(format!("{base}/healthz")).send().await.unwrap();
    assert_eq!(health.status(), StatusCode::OK);
    assert_eq!(
        health.json::<Value>().await.unwrap(),
        json!({"status": "ok"})
    );

    let response = client.get(format!("{base}/nowhere")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    error(&response.json().await.unwrap(), "NOT_FOUND");

    let response = client
        .get(format!("{base}/v1/echo/say"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert!(response.headers().contains_key("allow"));
    error(&response.json().await.unwrap(), "NOT_FOUND");
}

#[tokio::test(flavor = "multi_thread")]
async fn curl_calls_streams_and_fails_as_documented() {
    let (base, _) = node("").await;

    let (status, body) = curl(&[
        "-X",
        "POST",
        "-d",
        r#"{"text":"hi"}"#,
        &format!("{base}/v1/echo/say"),
    ])
    .await;
    assert_eq!(status, "200");
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap(),
        json!({"text": "hi", "length": 2})
    );

    let (status, body) = curl(&[
        "-X",
        "POST",
        "-H",
        &format!("Authorization: Bearer {READER}"),
        &format!("{base}/v1/vault/read"),
    ])
    .await;
    assert_eq!(
        (status.as_str(), body.as_str()),
        ("200", r#""secret for user:reader""#)
    );

    let (status, body) = curl(&["-X", "POST", "-d", "{oops", &format!("{base}/v1/echo/say")]).await;
    assert_eq!(status, "400");
    error(&serde_json::from_str(&body).unwrap(), "INVALID_INPUT");

    let (status, body) = curl(&[
        "-N",
        "-X",
        "POST",
        "-d",
        r#"{"count":2}"#,
        &format!("{base}/v1/echo/ticks"),
    ])
    .await;
    assert_eq!(status, "200");
    assert_eq!(events(&body).len(), 3, "two items and the end: {body}");
}

/// A client that connects from `source`, another loopback address than the default
/// 127.0.0.1, so the per-address limits see two callers.
fn client_from(source: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(source.parse::<std::net::IpAddr>().unwrap())
        .build()
        .unwrap()
}

/// A raw TCP connection from `source` to `addr`.
async fn connect_from(source: &str, addr: &str) -> tokio::net::TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(format!("{source}:0").parse().unwrap()).unwrap();
    socket.connect(addr.parse().unwrap()).await.unwrap()
}

/// Everything the server sends until it closes the connection (or resets it).
async fn read_to_close(stream: &mut tokio::net::TcpStream) -> String {
    use tokio::io::AsyncReadExt;
    let mut seen = Vec::new();
    let mut buffer = [0; 1024];
    loop {
        match stream.read(&mut buffer).await {
            Ok(0) | Err(_) => break,
            Ok(n) => seen.extend_from_slice(&buffer[..n]),
        }
    }
    String::from_utf8_lossy(&seen).into_owned()
}

/// Sends `head`, then `trickle` one byte at a time every 100 ms, until the server closes
/// the connection; returns what it answered and when it closed.
async fn trickle(addr: String, head: &str, trickle: &'static [u8]) -> (String, Duration) {
    use tokio::io::AsyncWriteExt;
    let started = std::time::Instant::now();
    let stream = connect_from("127.0.0.1", &addr).await;
    let (mut reader, mut writer) = stream.into_split();
    writer.write_all(head.as_bytes()).await.unwrap();
    let writing = tokio::spawn(async move {
        for byte in trickle {
            tokio::time::sleep(Duration::from_millis(100)).await;
            if writer.write_all(&[*byte]).await.is_err() {
                break;
            }
        }
        // Stay connected without sending anything more.
        tokio::time::sleep(Duration::from_secs(30)).await;
    });
    let mut seen = Vec::new();
    let _ = tokio::io::AsyncReadExt::read_to_end(&mut reader, &mut seen).await;
    writing.abort();
    (
        String::from_utf8_lossy(&seen).into_owned(),
        started.elapsed(),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn slow_clients_hold_no_call_slot_and_are_closed_after_the_timeouts() {
    let (base, _) = node(
        "[http]\nheader_read_timeout_ms = 600\nbody_read_timeout_ms = 600\nmax_concurrent_requests = 1\n",
    )
    .await;
    let addr = base.trim_start_matches("http://").to_string();
    let many = b"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx";

    // One client trickles its headers, another its body to `/v1`, a third its body to
    // `/mcp`, each a byte every 100 ms for far longer than the timeouts.
    let headers = tokio::spawn(trickle(
        addr.clone(),
        "POST /v1/echo/say HTTP/1.1\r\nhost: localhost\r\n",
        many,
    ));
    let body = tokio::spawn(trickle(
        addr.clone(),
        "POST /v1/echo/say HTTP/1.1\r\nhost: localhost\r\ncontent-length: 200\r\n\r\n",
        many,
    ));
    let mcp = tokio::spawn(trickle(
        addr.clone(),
        "POST /mcp HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\naccept: application/json, text/event-stream\r\ncontent-length: 200\r\n\r\n",
        many,
    ));

    // Meanwhile the only call slot is free for a caller who sends its request whole.
    tokio::time::sleep(Duration::from_millis(250)).await;
    let (status, body_of_say) = post(&base, "/v1/echo/say", r#"{"text": "hi"}"#, None).await;
    assert_eq!(status, StatusCode::OK, "{body_of_say}");
    // A body that arrives in pieces, all within the timeout, is read.
    let pieces = alknet_runtime::futures::stream::iter([r#"{"text""#, r#": "hi"}"#]).then(
        |piece| async move {
            tokio::time::sleep(Duration::from_millis(100)).await;
            Ok::<_, std::io::Error>(piece)
        },
    );
    let response = reqwest::Client::new()
        .post(format!("{base}/v1/echo/say"))
        .body(reqwest::Body::wrap_stream(pieces))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);

    // The header trickler is cut off without an answer; the body tricklers are told.
    let (answer, after) = headers.await.unwrap();
    assert_eq!(answer, "", "no request, no answer");
    assert!(after < Duration::from_secs(3), "closed after {after:?}");
    for (route, trickler) in [("/v1", body), ("/mcp", mcp)] {
        let (answer, after) = trickler.await.unwrap();
        assert!(answer.starts_with("HTTP/1.1 408"), "{route}: {answer}");
        let error_body: Value =
            serde_json::from_str(&answer[answer.find("\r\n\r\n").unwrap() + 4..]).unwrap();
        let err = error(&error_body, "TIMEOUT");
        assert!(err["message"].as_str().unwrap().contains("600 ms"), "{err}");
        assert!(
            after < Duration::from_secs(3),
            "{route}: closed after {after:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn calls_are_capped_per_address() {
    let probe = Probe::default();
    let state = probe.0.clone();
    let served = serve(alknet_tests::adapters::node(
        probe,
        "[http]\nmax_concurrent_requests_per_address = 1\n",
    ))
    .await;
    let base = format!("http://{}", served.http);
    let hanging = tokio::spawn({
        let base = base.clone();
        async move { post(&base, "/v1/probe/hang", r#"{"depth": 0}"#, None).await }
    });
    alknet_tests::until("the handler started", || {
        state.started.load(Ordering::SeqCst) == 1
    })
    .await;
    let say = |from: &str| {
        client_from(from)
            .post(format!("{base}/v1/echo/say"))
            .body(r#"{"text": "hi"}"#)
            .send()
    };
    let refused = say("127.0.0.1").await.unwrap();
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(refused.headers()["retry-after"], "1");
    let body: Value = refused.json().await.unwrap();
    let err = error(&body, "RESOURCE_EXHAUSTED");
    assert!(
        err["message"].as_str().unwrap().contains("127.0.0.1"),
        "{err}"
    );
    assert_eq!(say("127.0.0.2").await.unwrap().status(), StatusCode::OK);
    hanging.abort();
    alknet_tests::until("the handler was cancelled", || {
        state.dropped.load(Ordering::SeqCst) == 1
    })
    .await;
    assert_eq!(say("127.0.0.1").await.unwrap().status(), StatusCode::OK);
}

/// Opens `echo/ticks` with a tick a minute: a subscription that stays open and quiet.
async fn quiet_subscription(base: &str, from: &str, token: Option<&str>) -> reqwest::Response {
    let mut request = client_from(from)
        .post(format!("{base}/v1/echo/ticks"))
        .body(r#"{"count": 2, "interval_ms": 60000}"#);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    request.send().await.unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn open_subscriptions_are_capped_per_address_and_per_identity() {
    let (base, _) = node(
        "[http]
max_concurrent_requests = 1
max_open_subscriptions = 5
max_open_subscriptions_per_address = 2
max_open_subscriptions_per_identity = 1
",
    )
    .await;

    // Up to the address's limit, subscriptions open; one more is turned away.
    let first = quiet_subscription(&base, "127.0.0.1", None).await;
    let _second = quiet_subscription(&base, "127.0.0.1", None).await;
    assert_eq!(
        (first.status(), _second.status()),
        (StatusCode::OK, StatusCode::OK)
    );
    let refused = quiet_subscription(&base, "127.0.0.1", None).await;
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(refused.headers()["retry-after"], "1");
    let err = error(&refused.json().await.unwrap(), "RESOURCE_EXHAUSTED");
    let message = err["message"].as_str().unwrap();
    assert!(
        message.contains("127.0.0.1") && message.contains("2 open subscriptions"),
        "{err}"
    );

    // Another address still gets through, and the subscriptions hold no call slot.
    assert_eq!(
        quiet_subscription(&base, "127.0.0.2", None).await.status(),
        StatusCode::OK
    );
    let (status, _) = post(&base, "/v1/echo/say", r#"{"text": "hi"}"#, None).await;
    assert_eq!(status, StatusCode::OK);

    // One identity gets its own limit, from any address.
    let reader = quiet_subscription(&base, "127.0.0.3", Some(READER)).await;
    assert_eq!(reader.status(), StatusCode::OK);
    let refused = quiet_subscription(&base, "127.0.0.4", Some(READER)).await;
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    let err = error(&refused.json().await.unwrap(), "RESOURCE_EXHAUSTED");
    assert!(
        err["message"].as_str().unwrap().contains("`user:reader`"),
        "{err}"
    );

    // A subscription whose client goes away frees its slot.
    drop(first);
    let mut reopened = quiet_subscription(&base, "127.0.0.1", None).await;
    for _ in 0..50 {
        if reopened.status() == StatusCode::OK {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        reopened = quiet_subscription(&base, "127.0.0.1", None).await;
    }
    assert_eq!(reopened.status(), StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_quiet_subscription_is_closed_after_the_idle_timeout_and_a_slow_one_is_not() {
    let (base, _) = node(
        "[http]\nsubscription_idle_timeout_ms = 500\nmax_open_subscriptions_per_address = 1\n",
    )
    .await;

    let started = std::time::Instant::now();
    let quiet = quiet_subscription(&base, "127.0.0.1", None).await;
    assert_eq!(quiet.status(), StatusCode::OK);
    let text = quiet.text().await.unwrap();
    let after = started.elapsed();
    let seen = events(&text);
    assert_eq!(seen.len(), 1, "{text}");
    assert_eq!(seen[0].0, "error");
    let err = error(&serde_json::from_str(&seen[0].1).unwrap(), "TIMEOUT");
    assert_eq!(err["retryable"], true);
    assert!(err["message"].as_str().unwrap().contains("500 ms"), "{err}");
    assert!(
        after >= Duration::from_millis(500) && after < Duration::from_secs(5),
        "closed after {after:?}"
    );

    // Its slot is free again; a subscription with an item every 200 ms lasts longer than
    // the idle timeout and ends normally.
    let slow = client_from("127.0.0.1")
        .post(format!("{base}/v1/echo/ticks"))
        .body(r#"{"count": 4, "interval_ms": 200}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(slow.status(), StatusCode::OK);
    let text = slow.text().await.unwrap();
    let names: Vec<_> = events(&text).into_iter().map(|(name, _)| name).collect();
    assert_eq!(
        names,
        ["message", "message", "message", "message", "completed"],
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn connections_are_capped_per_address() {
    use tokio::io::AsyncWriteExt;
    let (base, _) = node("[http]\nmax_connections_per_address = 2\n").await;
    let addr = base.trim_start_matches("http://").to_string();

    let mut first = connect_from("127.0.0.1", &addr).await;
    let mut second = connect_from("127.0.0.1", &addr).await;
    let mut third = connect_from("127.0.0.1", &addr).await;
    let answer = read_to_close(&mut third).await;
    assert!(answer.starts_with("HTTP/1.1 429"), "{answer}");
    let body: Value =
        serde_json::from_str(&answer[answer.find("\r\n\r\n").unwrap() + 4..]).unwrap();
    let err = error(&body, "RESOURCE_EXHAUSTED");
    assert!(
        err["message"].as_str().unwrap().contains("2 connections"),
        "{err}"
    );

    // The two within the limit are served; another address is too.
    second
        .write_all(b"GET /healthz HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n")
        .await
        .unwrap();
    assert!(read_to_close(&mut second).await.starts_with("HTTP/1.1 200"));
    let health = client_from("127.0.0.2")
        .get(format!("{base}/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), StatusCode::OK);
    first.shutdown().await.unwrap();
    drop(first);
    let mut served = None;
    for _ in 0..50 {
        let mut again = connect_from("127.0.0.1", &addr).await;
        again
            .write_all(b"GET /healthz HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n")
            .await
            .unwrap();
        let answer = read_to_close(&mut again).await;
        if answer.starts_with("HTTP/1.1 200") {
            served = Some(answer);
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(served.is_some(), "a closed connection frees its place");
}

#[tokio::test(flavor = "multi_thread")]
async fn graceful_shutdown_answers_calls_in_progress_and_ends_subscriptions() {
    let limits = HttpLimits {
        request_timeout: Duration::from_millis(800),
        ..HttpLimits::default()
    };
    let probe = Probe::default();
    let state = probe.0.clone();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let base = format!("http://{addr}");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let adapter = alknet_runtime::adapters::http::HttpAdapter::new(env(probe)).limits(limits);
    let serving = tokio::spawn(adapter.serve_with_shutdown(listener, async {
        let _ = stopped.await;
    }));

    let subscription = quiet_subscription(&base, "127.0.0.1", None).await;
    assert_eq!(subscription.status(), StatusCode::OK);
    let hanging = tokio::spawn({
        let base = base.clone();
        async move { post(&base, "/v1/probe/hang", r#"{"depth": 0}"#, None).await }
    });
    alknet_tests::until("the handler started", || {
        state.started.load(Ordering::SeqCst) == 1
    })
    .await;
    stop.send(()).unwrap();

    let text = subscription.text().await.unwrap();
    let seen = events(&text);
    assert_eq!(seen.len(), 1, "{text}");
    error(&serde_json::from_str(&seen[0].1).unwrap(), "UNAVAILABLE");
    // The call in progress still gets its answer (its timeout, here).
    let (status, body) = hanging.await.unwrap();
    assert_eq!(status, StatusCode::GATEWAY_TIMEOUT, "{body}");
    tokio::time::timeout(Duration::from_secs(5), serving)
        .await
        .expect("the server stops once its connections have closed")
        .unwrap()
        .unwrap();
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "no more connections are accepted"
    );
}

/// What an `EventSource` (the `eventsource` npm package, `interop/ts/sse_client.mjs`) saw
/// at `url`: `{"events": [{type, id, data}], "closed"}`.
async fn event_source(url: &str) -> Value {
    let dir = alknet_tests::adapters::ts_interop_dir();
    let output = tokio::process::Command::new("node")
        .arg(dir.join("sse_client.mjs"))
        .arg(url)
        .current_dir(dir)
        .output()
        .await
        .expect("node runs");
    assert!(
        output.status.success(),
        "the EventSource client failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn an_event_source_subscribes_with_get_and_stops_after_the_end() {
    let (base, _) = node("").await;
    let input = r#"{"count":3,"interval_ms":0}"#;
    let query: String = url_escape(input);
    let seen = event_source(&format!("{base}/v1/echo/ticks?input={query}")).await;
    let events = seen["events"].as_array().unwrap();
    let messages: Vec<(&Value, &Value)> = events
        .iter()
        .filter(|e| e["type"] == "message")
        .map(|e| (&e["id"], &e["data"]))
        .collect();
    // Each item once, numbered: the EventSource reconnected after `completed` (this client
    // did not close), was answered 204 and stopped, without running the subscription again.
    assert_eq!(
        messages,
        [
            (&json!("1"), &json!(r#"{"n":1}"#)),
            (&json!("2"), &json!(r#"{"n":2}"#)),
            (&json!("3"), &json!(r#"{"n":3}"#)),
        ],
        "{seen}"
    );
    let completed = events.iter().find(|e| e["type"] == "completed").unwrap();
    assert_eq!(completed["id"], "end");
    assert_eq!(seen["closed"], true, "{seen}");

    // A failure mid-stream: the `error` event carries the error body, and ends it too.
    let seen = event_source(&format!("{base}/v1/probe/sputter")).await;
    let events = seen["events"].as_array().unwrap();
    assert_eq!(events[0]["data"], "0", "{seen}");
    assert_eq!(events[1]["type"], "error");
    assert_eq!(events[1]["id"], "end");
    let body: Value = serde_json::from_str(events[1]["data"].as_str().unwrap()).unwrap();
    error(&body, "INTERNAL");
    assert_eq!(seen["closed"], true, "{seen}");

    // The GET form is for subscriptions only; bad input is refused before any stream.
    let client = reqwest::Client::new();
    let response = client
        .get(format!("{base}/v1/echo/say"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(response.headers()["allow"], "POST");
    let response = client
        .get(format!(
            "{base}/v1/echo/ticks?input={}",
            url_escape(r#"{"count":"x"}"#)
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let response = client
        .get(format!("{base}/v1/echo/ticks?input=not-json"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
}

/// `text` percent-encoded for a query string, every byte but letters and digits escaped.
fn url_escape(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}
