use alknet_runtime::OperationEnv;
use alknet_runtime::futures::StreamExt;
use alknet_runtime::serde_json::json;
use alknet_runtime_only::{Tally, TallyClient, TallyProtocol, Total};

#[tokio::test]
async fn invoked_by_json_and_by_its_typed_client() {
    let env = OperationEnv::builder()
        .local(TallyProtocol::local(Tally::default()))
        .build()
        .unwrap();
    let reply = env.invoke("tally", "add", json!({"amount": 5})).await;
    assert_eq!(reply.result.unwrap(), json!({"sum": 5}));
    let tally = TallyClient::new(env.clone());
    assert_eq!(tally.add(-2).await.unwrap(), Total { sum: 3 });
    assert_eq!(tally.read().await.unwrap(), Total { sum: 3 });
    let items: Vec<_> = tally.watch().await.unwrap().collect().await;
    assert_eq!(items, vec![Ok(Total { sum: 3 })]);
    assert_eq!(env.spec("tally", "read").unwrap().version, "2.1.0");
}

#[test]
fn the_crate_depends_on_alknet_runtime_alone() {
    let manifest =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml")).unwrap();
    let dependencies: Vec<&str> = manifest
        .split("\n[dependencies]\n")
        .nth(1)
        .unwrap()
        .lines()
        .take_while(|line| !line.starts_with('['))
        .filter(|line| !line.trim().is_empty())
        .collect();
    assert_eq!(dependencies, ["alknet-runtime.workspace = true"]);
}
