//! The HTTP adapter with real clients: reqwest and curl.

use std::sync::atomic::Ordering;
use std::time::Duration;

use alknet_runtime::adapters::http::HttpLimits;
use alknet_runtime::futures::StreamExt;
use alknet_runtime::schema;
use alknet_tests::adapters::{ADMIN, READER, env, serve_http};
use alknet_tests::probe::Probe;
use reqwest::StatusCode;
use serde_json::{Value, json};

async fn node(limits: HttpLimits) -> (String, Probe) {
    let probe = Probe::default();
    let addr = serve_http(env(probe.clone()), limits).await;
    (format!("http://{addr}"), probe)
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
    let (base, _) = node(HttpLimits::default()).await;
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
    let (base, _) = node(HttpLimits::default()).await;

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
    let (base, _) = node(HttpLimits::default()).await;

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
    let limits = HttpLimits {
        max_body_bytes: 64,
        request_timeout: Duration::from_millis(300),
        max_concurrent_requests: 1,
    };
    let (base, probe) = node(limits).await;

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
    let (base, probe) = node(HttpLimits::default()).await;

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
    let env = env(probe);
    let addr = serve_http(env.clone(), HttpLimits::default()).await;
    let base = format!("http://{addr}");
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

async fn curl(args: &[&str]) -> (String, String) {
    let output = tokio::process::Command::new("curl")
        .args(["--silent", "--show-error", "--write-out", "\n%{http_code}"])
        .args(args)
        .output()
        .await
        .expect("curl runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let text = String::from_utf8(output.stdout).unwrap();
    let (body, status) = text.rsplit_once('\n').unwrap();
    (status.to_string(), body.to_string())
}

#[tokio::test(flavor = "multi_thread")]
async fn curl_calls_streams_and_fails_as_documented() {
    let (base, _) = node(HttpLimits::default()).await;

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
        "Authorization: Bearer reader-token",
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
