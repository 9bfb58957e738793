//! The MCP adapter over streamable HTTP, with the official MCP SDKs (Python and
//! TypeScript) as the clients.

use std::sync::atomic::Ordering::SeqCst;

use alknet_tests::adapters::{ADMIN, McpClient, mcp_session_with, node, serve};
use alknet_tests::probe::Probe;
use alknet_tests::until;
use serde_json::{Value, json};

async fn url() -> String {
    let addr = serve(node(Probe::default(), "")).await.http;
    format!("http://{addr}/mcp")
}

fn tool<'a>(session: &'a Value, name: &str) -> Option<&'a Value> {
    session["tools"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == name)
}

#[tokio::test(flavor = "multi_thread")]
async fn tools_are_the_external_operations_the_caller_may_call() {
    let url = url().await;
    for client in McpClient::ALL {
        tools_listed_to(client, &url).await;
    }
}

async fn tools_listed_to(client: McpClient, url: &str) {
    let session = mcp_session_with(client, &["--http", url], None, &json!([])).await;

    let say = tool(&session, "echo.say").expect("echo.say is a tool");
    assert_eq!(say["description"], "Echo the text back with its length.");
    assert_eq!(say["read_only"], true);
    assert_eq!(say["input_schema"]["required"], json!(["text"]));
    assert_eq!(say["output_schema"]["type"], "object");
    let boom = tool(&session, "probe.boom").unwrap();
    assert_eq!(boom["read_only"], false, "a mutation");
    assert_eq!(boom["destructive"], true, "a mutation may destroy");
    assert_eq!(boom["idempotent"], false);
    let slow = tool(&session, "probe.slow").unwrap();
    assert_eq!(slow["destructive"], false, "an idempotent mutation");
    assert_eq!(slow["idempotent"], true);
    // A string output is wrapped in an object, as MCP requires.
    let shout = tool(&session, "echo.shout").unwrap();
    assert_eq!(
        shout["output_schema"]["properties"]["result"]["type"],
        "string"
    );
    assert_eq!(shout["output_schema"]["required"], json!(["result"]));

    assert!(
        tool(&session, "echo.ticks").is_none(),
        "subscriptions are left out"
    );
    assert!(
        tool(&session, "vault.peek").is_none(),
        "internal operations are left out"
    );
    assert!(
        tool(&session, "echo.served").is_none(),
        "anonymous callers may not call it"
    );
    assert!(tool(&session, "vault.read").is_none());

    let admin = mcp_session_with(client, &["--http", url], Some(ADMIN), &json!([])).await;
    assert!(
        tool(&admin, "echo.served").is_some(),
        "the bearer token picks the caller"
    );
    assert!(tool(&admin, "vault.read").is_some());
}

#[tokio::test(flavor = "multi_thread")]
async fn calls_answer_structured_content_and_errors_are_tool_results() {
    let url = url().await;
    for client in McpClient::ALL {
        calls_by(client, &url).await;
    }
}

/// Each SDK checks `structuredContent` against the tool's `outputSchema` (the TypeScript
/// one even on an `isError` result): an error result must pass those checks.
async fn calls_by(client: McpClient, url: &str) {
    let calls = json!([
        {"name": "echo.say", "arguments": {"text": "hi"}},
        {"name": "echo.shout", "arguments": {"text": "hi"}},
        {"name": "echo.shout", "arguments": {"text": "  "}},
        {"name": "echo.say", "arguments": {"text": 42}},
        {"name": "echo.nope", "arguments": {}},
        {"name": "echo.served", "arguments": {}},
        {"name": "probe.boom", "arguments": {}},
        {"name": "probe.slow", "arguments": {"ms": 2000}},
    ]);
    let session = mcp_session_with(client, &["--http", url], None, &calls).await;
    let results = session["results"].as_array().unwrap();

    assert_eq!(results[0]["is_error"], false);
    assert_eq!(results[0]["structured"], json!({"text": "hi", "length": 2}));
    assert_eq!(results[0]["text"], json!({"text": "hi", "length": 2}));

    assert_eq!(results[1]["structured"], json!({"result": "HI"}));
    assert_eq!(
        results[1]["text"], "HI",
        "the text rendering is the bare output"
    );

    let code = |i: usize| {
        assert_eq!(results[i]["is_error"], true, "{client:?}: {}", results[i]);
        assert_eq!(
            results[i]["structured"],
            json!(null),
            "the error is text alone"
        );
        let error = &results[i]["text"]["error"];
        assert_eq!(error["request_id"].as_str().map(str::len), Some(32));
        error["code"].as_str().unwrap().to_string()
    };
    assert_eq!(code(2), "EMPTY_TEXT");
    assert_eq!(
        results[2]["text"]["error"]["details"],
        json!({"whitespace": 2})
    );
    assert_eq!(code(3), "INVALID_INPUT");
    assert_eq!(results[3]["text"]["error"]["details"]["field"], "text");
    assert_eq!(code(4), "NOT_FOUND");
    assert_eq!(code(5), "UNAUTHENTICATED");
    assert_eq!(code(6), "INTERNAL");
    assert_eq!(code(7), "TIMEOUT");
}

/// A streamable HTTP session driven by hand, JSON-RPC message by message, for what the SDK
/// client does not expose: cancelling a call and watching the HTTP exchange.
struct RawSession {
    client: reqwest::Client,
    url: String,
    session: String,
}

/// An `initialize` request, from `client`.
async fn initialize(client: &reqwest::Client, url: &str) -> reqwest::Response {
    let initialize = json!({
        "jsonrpc": "2.0", "id": 1, "method": "initialize",
        "params": {
            "protocolVersion": "2025-06-18",
            "capabilities": {},
            "clientInfo": {"name": "alknet-tests", "version": "0"}
        }
    });
    client
        .post(url)
        .header("accept", "application/json, text/event-stream")
        .json(&initialize)
        .send()
        .await
        .unwrap()
}

impl RawSession {
    async fn open(url: &str) -> RawSession {
        RawSession::open_from(url, "127.0.0.1").await
    }

    /// A session opened from the loopback address `source`.
    async fn open_from(url: &str, source: &str) -> RawSession {
        let client = reqwest::Client::builder()
            .local_address(source.parse::<std::net::IpAddr>().unwrap())
            .build()
            .unwrap();
        let response = initialize(&client, url).await;
        assert!(response.status().is_success(), "{}", response.status());
        let session = response.headers()["mcp-session-id"]
            .to_str()
            .unwrap()
            .to_string();
        let body = response.text().await.unwrap();
        assert!(body.contains("serverInfo"), "{body}");
        let raw = RawSession {
            client,
            url: url.to_string(),
            session,
        };
        let initialized = raw
            .send(json!({"jsonrpc": "2.0", "method": "notifications/initialized"}))
            .await;
        assert_eq!(initialized.status(), 202);
        raw
    }

    /// Close the session (`DELETE`).
    async fn close(&self) {
        let closed = self
            .client
            .delete(&self.url)
            .header("mcp-session-id", &self.session)
            .send()
            .await
            .unwrap();
        assert_eq!(closed.status(), 200, "clients expect 200 or 204");
    }

    async fn send(&self, message: Value) -> reqwest::Response {
        self.client
            .post(&self.url)
            .header("accept", "application/json, text/event-stream")
            .header("mcp-session-id", &self.session)
            .json(&message)
            .send()
            .await
            .unwrap()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cancelled_notification_cancels_the_handler() {
    let probe = Probe::default();
    let state = probe.0.clone();
    let addr = serve(node(probe, "")).await.http;
    let mcp = RawSession::open(&format!("http://{addr}/mcp")).await;

    let call = mcp
        .send(json!({
            "jsonrpc": "2.0", "id": 2, "method": "tools/call",
            "params": {"name": "probe.hang", "arguments": {"depth": 2}}
        }))
        .await;
    assert!(call.status().is_success());
    until("the handler and its nested calls started", || {
        state.started.load(SeqCst) == 3
    })
    .await;
    assert_eq!(state.dropped.load(SeqCst), 0);

    let cancelled = mcp
        .send(json!({
            "jsonrpc": "2.0", "method": "notifications/cancelled",
            "params": {"requestId": 2, "reason": "the user gave up"}
        }))
        .await;
    assert_eq!(cancelled.status(), 202);
    until("the handler and its nested calls were cancelled", || {
        state.dropped.load(SeqCst) == 3
    })
    .await;

    // The session carries on.
    let listed = mcp
        .send(json!({"jsonrpc": "2.0", "id": 3, "method": "tools/list"}))
        .await
        .text()
        .await
        .unwrap();
    assert!(listed.contains("echo.say"), "{listed}");
}

#[tokio::test(flavor = "multi_thread")]
async fn tool_calls_share_the_http_concurrency_limit() {
    let probe = Probe::default();
    let state = probe.0.clone();
    let addr = serve(node(probe, "[http]\nmax_concurrent_requests = 1\n"))
        .await
        .http;
    let mcp = RawSession::open(&format!("http://{addr}/mcp")).await;
    let say = || {
        reqwest::Client::new()
            .post(format!("http://{addr}/v1/echo/say"))
            .json(&json!({"text": "hi"}))
            .send()
    };

    // A call over `POST /v1` holds the only slot while its handler hangs…
    let hanging = tokio::spawn(
        reqwest::Client::new()
            .post(format!("http://{addr}/v1/probe/hang"))
            .json(&json!({"depth": 0}))
            .send(),
    );
    until("the handler started", || state.started.load(SeqCst) == 1).await;
    // …so a tool call is turned away at once, as a tool result; listing is not a call.
    let refused = mcp
        .send(json!({
            "jsonrpc": "2.0", "id": 2, "method": "tools/call",
            "params": {"name": "echo.say", "arguments": {"text": "hi"}}
        }))
        .await
        .text()
        .await
        .unwrap();
    let result = sse_result(&refused);
    assert_eq!(result["isError"], true, "{result}");
    assert!(result.get("structuredContent").is_none(), "{result}");
    let text = result["content"][0]["text"].as_str().unwrap();
    let body: Value = serde_json::from_str(text).unwrap();
    let error = &body["error"];
    assert_eq!(error["code"], "RESOURCE_EXHAUSTED");
    assert_eq!(error["retryable"], true);
    assert_eq!(error["details"]["retry_after_ms"], 1000);
    let listed = mcp
        .send(json!({"jsonrpc": "2.0", "id": 3, "method": "tools/list"}))
        .await;
    assert!(listed.status().is_success(), "{}", listed.status());

    hanging.abort();
    until("the handler was cancelled", || {
        state.dropped.load(SeqCst) == 1
    })
    .await;

    // A tool call in progress holds the slot the same way.
    let call = mcp
        .send(json!({
            "jsonrpc": "2.0", "id": 4, "method": "tools/call",
            "params": {"name": "probe.hang", "arguments": {"depth": 0}}
        }))
        .await;
    assert!(call.status().is_success());
    until("the tool's handler started", || {
        state.started.load(SeqCst) == 2
    })
    .await;
    let turned_away = say().await.unwrap();
    assert_eq!(turned_away.status(), 429);
    assert_eq!(turned_away.headers()["retry-after"], "1");

    // Cancelling the tool call frees it.
    mcp.send(json!({
        "jsonrpc": "2.0", "method": "notifications/cancelled",
        "params": {"requestId": 4}
    }))
    .await;
    until("the tool's handler was cancelled", || {
        state.dropped.load(SeqCst) == 2
    })
    .await;
    assert_eq!(say().await.unwrap().status(), 200);
}

/// The JSON-RPC result in a streamable HTTP answer (an SSE stream of one message).
fn sse_result(body: &str) -> Value {
    let data = body
        .lines()
        .filter_map(|line| line.strip_prefix("data:"))
        .map(str::trim)
        .find(|data| !data.is_empty())
        .unwrap_or_else(|| panic!("no message in {body}"));
    let message: Value = serde_json::from_str(data).unwrap();
    message["result"].clone()
}

#[tokio::test(flavor = "multi_thread")]
async fn only_allowed_host_names_reach_mcp() {
    let url = |addr| format!("http://{addr}/mcp");
    let initialize = |host: &str, addr: std::net::SocketAddr| {
        reqwest::Client::new()
            .post(url(addr))
            .header("host", host)
            .header("accept", "application/json, text/event-stream")
            .json(&json!({
                "jsonrpc": "2.0", "id": 1, "method": "initialize",
                "params": {
                    "protocolVersion": "2025-06-18",
                    "capabilities": {},
                    "clientInfo": {"name": "alknet-tests", "version": "0"}
                }
            }))
            .send()
    };

    // By default only loopback names, against DNS rebinding.
    let default = serve(node(Probe::default(), "")).await.http;
    let refused = initialize("node.example", default).await.unwrap();
    assert_eq!(refused.status(), 403);
    let loopback = initialize("localhost", default).await.unwrap();
    assert!(loopback.status().is_success(), "{}", loopback.status());

    // A node reached by name lists it.
    let named = serve(node(
        Probe::default(),
        "[http]\nmcp_allowed_hosts = [\"node.example\"]\n",
    ))
    .await
    .http;
    let allowed = initialize("node.example", named).await.unwrap();
    assert!(allowed.status().is_success(), "{}", allowed.status());
    let refused = initialize("localhost", named).await.unwrap();
    assert_eq!(refused.status(), 403);
}

/// An `initialize` from `source` that the node turns away: its error body.
async fn refused_initialize(url: &str, source: &str) -> Value {
    let client = reqwest::Client::builder()
        .local_address(source.parse::<std::net::IpAddr>().unwrap())
        .build()
        .unwrap();
    let response = initialize(&client, url).await;
    assert_eq!(response.status(), 429);
    assert_eq!(response.headers()["retry-after"], "1");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "RESOURCE_EXHAUSTED", "{body}");
    assert_eq!(body["error"]["retryable"], true, "{body}");
    body
}

#[tokio::test(flavor = "multi_thread")]
async fn sessions_are_capped_in_all_and_per_address() {
    let addr = serve(node(
        Probe::default(),
        "[http]\nmcp_max_sessions = 3\nmcp_max_sessions_per_address = 2\n",
    ))
    .await
    .http;
    let url = format!("http://{addr}/mcp");

    let first = RawSession::open_from(&url, "127.0.0.1").await;
    let _second = RawSession::open_from(&url, "127.0.0.1").await;
    let body = refused_initialize(&url, "127.0.0.1").await;
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("127.0.0.1") && message.contains("2 open MCP sessions"),
        "{body}"
    );

    // Another address still gets through, up to the total.
    let other = RawSession::open_from(&url, "127.0.0.2").await;
    let listed = other
        .send(json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"}))
        .await
        .text()
        .await
        .unwrap();
    assert!(listed.contains("echo.say"), "{listed}");
    let body = refused_initialize(&url, "127.0.0.3").await;
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("limit of 3"),
        "{body}"
    );

    // A closed session frees its place.
    first.close().await;
    RawSession::open_from(&url, "127.0.0.1").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_idle_session_expires_and_frees_its_place() {
    let addr = serve(node(
        Probe::default(),
        "[http]\nmcp_max_sessions_per_address = 1\nmcp_session_idle_timeout_ms = 500\n",
    ))
    .await
    .http;
    let url = format!("http://{addr}/mcp");

    let session = RawSession::open(&url).await;
    refused_initialize(&url, "127.0.0.1").await;
    tokio::time::sleep(std::time::Duration::from_millis(1200)).await;
    let expired = session
        .send(json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"}))
        .await;
    assert_eq!(expired.status(), 404, "the session is gone");
    // Its place is free: a new session opens and works.
    let renewed = RawSession::open(&url).await;
    let listed = renewed
        .send(json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"}))
        .await;
    assert!(listed.status().is_success(), "{}", listed.status());
}

#[tokio::test(flavor = "multi_thread")]
async fn opening_sessions_is_rate_limited_per_address() {
    let addr = serve(node(
        Probe::default(),
        "[rate_limits]\nper_ip = { per_second = 1, burst = 2 }\n",
    ))
    .await
    .http;
    let url = format!("http://{addr}/mcp");

    RawSession::open_from(&url, "127.0.0.1").await;
    RawSession::open_from(&url, "127.0.0.1").await;
    let body = refused_initialize(&url, "127.0.0.1").await;
    assert!(
        body["error"]["details"]["retry_after_ms"].as_u64().unwrap() > 0,
        "{body}"
    );
    RawSession::open_from(&url, "127.0.0.2").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_refused_bearer_token_is_401_with_www_authenticate() {
    let url = url().await;
    let refused = reqwest::Client::new()
        .post(&url)
        .header("authorization", "Bearer not-a-token")
        .header("accept", "application/json, text/event-stream")
        .json(&json!({
            "jsonrpc": "2.0", "id": 1, "method": "initialize",
            "params": {
                "protocolVersion": "2025-06-18",
                "capabilities": {},
                "clientInfo": {"name": "alknet-tests", "version": "0"}
            }
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 401);
    let challenge = refused.headers()["www-authenticate"].to_str().unwrap();
    assert!(challenge.starts_with("Bearer "), "{challenge}");
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["error"]["code"], "UNAUTHENTICATED");

    // The TypeScript SDK sees the refusal when it connects, not an `initialize` that worked.
    let session = mcp_session_with(
        McpClient::TypeScript,
        &["--http", &url],
        Some("not-a-token"),
        &json!([]),
    )
    .await;
    let refused = &session["refused"];
    assert_eq!(refused["code"], 401, "{session}");
}
