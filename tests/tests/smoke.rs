use alknet_example::{EchoClient, EchoProtocol, EchoService};
use alknet_runtime::futures::StreamExt;
use alknet_runtime::prelude::*;
use serde_json::json;

#[tokio::test]
async fn smoke() {
    let env = OperationEnv::builder()
        .local(EchoProtocol::local(EchoService::default()))
        .build()
        .unwrap();
    let r = env.invoke("echo", "say", json!({"text": "hi"})).await;
    println!("{}", serde_json::to_string(&r).unwrap());
    let r = env.invoke("echo", "say", json!({"text": 5})).await;
    println!("{}", serde_json::to_string(&r).unwrap());
    let r = env.invoke("echo", "say", json!({})).await;
    println!("{}", serde_json::to_string(&r).unwrap());
    let r = env.invoke("echo", "shout", json!({"text": "  "})).await;
    println!("{}", serde_json::to_string(&r).unwrap());
    let r = env.invoke("echo", "served", json!(null)).await;
    println!("{}", serde_json::to_string(&r).unwrap());
    let r = env.invoke("echo", "ticks", json!(null)).await;
    println!("{}", serde_json::to_string(&r).unwrap());
    let mut s = env.subscribe("echo", "ticks", json!({"count": 3})).await;
    while let Some(i) = s.next().await {
        println!("{i:?}");
    }
    let c = EchoClient::new(env.clone());
    println!("{:?}", c.say("yo".into()).await);
    let mut t = c.ticks(2, 1).await.unwrap();
    while let Some(i) = t.next().await {
        println!("{i:?}");
    }
    for op in env.operations() {
        println!("{}", serde_json::to_string(op).unwrap());
    }
}
