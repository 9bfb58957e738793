//! The JSON path, the typed path and the typed client agree.

use alknet_example::{Echo, EchoClient, EchoProtocol, EchoService, Say, Tick, Ticks};
use alknet_runtime::{Caller, Identity, OperationEnv, OperationKind, Visibility, codes};
use futures::StreamExt;
use serde_json::json;

fn env() -> OperationEnv {
    OperationEnv::builder()
        .local(EchoProtocol::local(EchoService::default()))
        .build()
        .unwrap()
}

#[tokio::test]
async fn json_typed_and_client_give_the_same_answer() {
    let env = env();
    let json = env
        .invoke("echo", "say", json!({"text": "héllo"}))
        .await
        .result
        .unwrap();
    let typed = env
        .call(Say {
            text: "héllo".into(),
        })
        .await
        .unwrap();
    let client = EchoClient::new(env.clone())
        .say("héllo".into())
        .await
        .unwrap();
    let expected = Echo {
        text: "héllo".into(),
        length: 6,
    };
    assert_eq!(serde_json::from_value::<Echo>(json).unwrap(), expected);
    assert_eq!(typed, expected);
    assert_eq!(client, expected);
}

#[tokio::test]
async fn typed_calls_get_the_same_errors() {
    let env = env();
    let client = EchoClient::new(env.clone());
    assert_eq!(
        client.served().await.unwrap_err().code,
        codes::UNAUTHENTICATED
    );
    let admin = EchoClient::new(
        env.with_caller(Caller::new().identity(Identity::new("a").with_scopes(["echo:admin"]))),
    );
    assert!(admin.served().await.unwrap() >= 1);
    assert_eq!(
        client.shout(" ".into()).await.unwrap_err().code,
        "EMPTY_TEXT"
    );
}

#[tokio::test]
async fn subscriptions_stream_typed_and_json() {
    let env = env();
    let json: Vec<_> = env
        .subscribe("echo", "ticks", json!({"count": 3}))
        .await
        .collect()
        .await;
    assert_eq!(
        json,
        vec![
            Ok(json!({"n": 1})),
            Ok(json!({"n": 2})),
            Ok(json!({"n": 3}))
        ]
    );
    let typed: Vec<_> = env
        .stream(Ticks {
            count: 2,
            interval_ms: 0,
        })
        .await
        .unwrap()
        .collect()
        .await;
    assert_eq!(typed, vec![Ok(Tick { n: 1 }), Ok(Tick { n: 2 })]);
    let client: Vec<_> = EchoClient::new(env)
        .ticks(1, 0)
        .await
        .unwrap()
        .collect()
        .await;
    assert_eq!(client, vec![Ok(Tick { n: 1 })]);
}

#[test]
fn specs_describe_every_operation() {
    let env = env();
    let ids: Vec<_> = env.operations().map(|op| op.id.as_str()).collect();
    assert_eq!(
        ids,
        [
            "echo/say",
            "echo/shout",
            "echo/ticks",
            "echo/served",
            "echo/blobs"
        ]
    );
    let say = env.spec("echo", "say").unwrap();
    assert_eq!(say.kind, OperationKind::Query);
    assert_eq!(say.visibility, Visibility::External);
    assert_eq!(say.description, "Echo the text back with its length.");
    assert_eq!(say.version, "1.0.0");
    assert_eq!(
        say.input_schema["$schema"],
        "https://json-schema.org/draft/2020-12/schema"
    );
    assert_eq!(
        say.input_schema["properties"]["text"]["description"],
        "The text to echo."
    );
    assert_eq!(say.input_schema["required"], json!(["text"]));
    assert_eq!(say.output_schema["required"], json!(["text", "length"]));
    let shout = env.spec("echo", "shout").unwrap();
    assert_eq!(shout.errors.len(), 1);
    assert_eq!(shout.errors[0].code, "EMPTY_TEXT");
    assert_eq!(shout.errors[0].http_status, 422);
    assert_eq!(
        shout.errors[0].schema.as_ref().unwrap()["title"],
        "EmptyText"
    );
    let ticks = env.spec("echo", "ticks").unwrap();
    assert_eq!(ticks.kind, OperationKind::Subscription);
    assert_eq!(
        ticks.output_schema["title"], "Tick",
        "a subscription's output schema is its item's"
    );
    assert!(ticks.bindings().mcp_tool.is_none());
    let served = env.spec("echo", "served").unwrap();
    assert_eq!(served.access.scopes, ["echo:admin"]);
}

#[tokio::test]
async fn envelopes_serialize_as_documented() {
    let reply = env().invoke("echo", "say", json!({"text": "a"})).await;
    let value = serde_json::to_value(&reply).unwrap();
    assert_eq!(value["output"], json!({"text": "a", "length": 1}));
    assert_eq!(value["request_id"].as_str().unwrap().len(), 32);
    assert!(value.get("error").is_none());
}
