//! `alknet mcp-stdio`, spawned by the official MCP SDKs' stdio clients (Python and
//! TypeScript).

use alknet_tests::adapters::{McpClient, mcp_session_with};
use serde_json::json;

#[tokio::test(flavor = "multi_thread")]
async fn an_mcp_client_spawns_the_node_lists_its_tools_and_calls_one() {
    for client in McpClient::ALL {
        spawned_by(client).await;
    }
}

async fn spawned_by(client: McpClient) {
    let calls = json!([
        {"name": "echo.say", "arguments": {"text": "over stdio"}},
        {"name": "echo.shout", "arguments": {"text": ""}},
    ]);
    let session = mcp_session_with(
        client,
        &["--stdio", env!("CARGO_BIN_EXE_alknet"), "mcp-stdio"],
        None,
        &calls,
    )
    .await;
    let names: Vec<&str> = session["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    // Every external query or mutation of the node that an anonymous caller may call.
    let node = alknet::Node::builder(alknet_runtime::config::ConfigServiceImpl::embedded())
        .local(alknet_example::EchoProtocol::local(
            alknet_example::EchoService::default(),
        ))
        .build()
        .unwrap();
    let env = node.env();
    let expected: Vec<String> = env
        .operations()
        .filter(|op| op.access.is_open())
        .filter_map(|op| op.bindings().mcp_tool)
        .collect();
    assert!(expected.iter().any(|name| name == "echo.say"));
    assert_eq!(names, expected, "{client:?}: the anonymous caller's tools");
    let results = session["results"].as_array().unwrap();
    assert_eq!(
        results[0]["structured"],
        json!({"text": "over stdio", "length": 10})
    );
    assert_eq!(results[1]["is_error"], true, "{client:?}");
    // The error is text: `structuredContent` must match the output schema, an error doesn't.
    assert_eq!(results[1]["structured"], json!(null), "{client:?}");
    assert_eq!(results[1]["text"]["error"]["code"], "EMPTY_TEXT");
}
