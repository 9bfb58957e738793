//! The MCP adapter over streamable HTTP, with the official MCP Python SDK as the client.

use alknet_runtime::adapters::http::HttpLimits;
use alknet_tests::adapters::{ADMIN, env, mcp_session, serve_http};
use alknet_tests::probe::Probe;
use serde_json::{Value, json};

async fn url() -> String {
    let addr = serve_http(env(Probe::default()), HttpLimits::default()).await;
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
    let session = mcp_session(&["--http", &url], None, &json!([])).await;

    let say = tool(&session, "echo.say").expect("echo.say is a tool");
    assert_eq!(say["description"], "Echo the text back with its length.");
    assert_eq!(say["read_only"], true);
    assert_eq!(say["input_schema"]["required"], json!(["text"]));
    assert_eq!(say["output_schema"]["type"], "object");
    assert_eq!(
        tool(&session, "probe.boom").unwrap()["read_only"],
        false,
        "a mutation"
    );
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

    let admin = mcp_session(&["--http", &url], Some(ADMIN), &json!([])).await;
    assert!(
        tool(&admin, "echo.served").is_some(),
        "the bearer token picks the caller"
    );
    assert!(tool(&admin, "vault.read").is_some());
}

#[tokio::test(flavor = "multi_thread")]
async fn calls_answer_structured_content_and_errors_are_tool_results() {
    let url = url().await;
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
    let session = mcp_session(&["--http", &url], None, &calls).await;
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
        assert_eq!(results[i]["is_error"], true, "{}", results[i]);
        assert_eq!(results[i]["structured"], results[i]["text"]);
        let error = &results[i]["structured"]["error"];
        assert_eq!(error["request_id"].as_str().map(str::len), Some(32));
        error["code"].as_str().unwrap().to_string()
    };
    assert_eq!(code(2), "EMPTY_TEXT");
    assert_eq!(
        results[2]["structured"]["error"]["details"],
        json!({"whitespace": 2})
    );
    assert_eq!(code(3), "INVALID_INPUT");
    assert_eq!(
        results[3]["structured"]["error"]["details"]["field"],
        "text"
    );
    assert_eq!(code(4), "NOT_FOUND");
    assert_eq!(code(5), "UNAUTHENTICATED");
    assert_eq!(code(6), "INTERNAL");
    assert_eq!(code(7), "TIMEOUT");
}
