//! Request ids, parents, and deadlines as calls nest.

use std::collections::HashSet;
use std::time::Duration;

use alknet_runtime::{Caller, OperationEnv, RequestId, codes};
use alknet_tests::probe::{IdReport, Probe, ProbeClient, ProbeProtocol};
use serde_json::json;

fn env() -> OperationEnv {
    OperationEnv::builder()
        .local(ProbeProtocol::local(Probe::default()))
        .build()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_ids_are_unique_under_ten_thousand_concurrent_calls() {
    let env = env();
    let calls = (0..10_000).map(|_| {
        let env = env.clone();
        tokio::spawn(async move { env.invoke("probe", "ids", json!({"nest": true})).await })
    });
    let mut ids = HashSet::new();
    for call in futures::future::join_all(calls).await {
        let reply = call.unwrap();
        let report: IdReport = serde_json::from_value(reply.result.unwrap()).unwrap();
        assert_eq!(
            report.id,
            reply.request_id.to_string(),
            "the envelope carries the call's id"
        );
        let nested = report.nested.unwrap();
        assert_eq!(nested.parent.as_deref(), Some(report.id.as_str()));
        assert!(report.parent.is_none());
        assert!(ids.insert(report.id));
        assert!(ids.insert(nested.id));
    }
    assert_eq!(ids.len(), 20_000);
}

#[tokio::test]
async fn typed_and_json_calls_get_their_own_ids() {
    let env = env();
    let probe = ProbeClient::new(env.clone());
    let a = probe.ids(false).await.unwrap();
    let b = probe.ids(false).await.unwrap();
    assert_ne!(a.id, b.id);
}

#[tokio::test]
async fn an_outside_caller_may_give_the_ids_its_call_runs_under() {
    let (id, parent) = (RequestId::next(), RequestId::next());
    let env = env().with_caller(Caller::new().request_id(id).parent_request_id(parent));
    let reply = env.invoke("probe", "ids", json!({"nest": true})).await;
    assert_eq!(
        reply.request_id, id,
        "the envelope carries the id the call ran under"
    );
    let report: IdReport = serde_json::from_value(reply.result.unwrap()).unwrap();
    assert_eq!(report.id, id.to_string());
    assert_eq!(report.parent, Some(parent.to_string()));
    let nested = report.nested.unwrap();
    assert_eq!(nested.parent, Some(id.to_string()));
    assert_ne!(nested.id, id.to_string(), "a nested call gets a fresh id");

    let typed = ProbeClient::new(env.clone()).ids(false).await.unwrap();
    assert_eq!(
        (typed.id, typed.parent),
        (id.to_string(), Some(parent.to_string()))
    );
    assert_eq!(
        env.subscribe("probe", "forever", json!({}))
            .await
            .request_id(),
        id
    );
    // A refused call answers with it too.
    assert_eq!(
        env.invoke("probe", "nothing", json!({})).await.request_id,
        id
    );
}

#[tokio::test]
async fn deadlines_shrink_as_calls_nest() {
    let env = env().with_caller(Caller::new().timeout(Duration::from_secs(2)));
    let remaining: Vec<Option<u64>> = serde_json::from_value(
        env.invoke("probe", "remaining", json!({"nest": true}))
            .await
            .result
            .unwrap(),
    )
    .unwrap();
    let [Some(root), Some(child), Some(limited)] = remaining[..] else {
        panic!("every call has a deadline: {remaining:?}")
    };
    assert!(root <= 2_000 && root > 1_000, "{root}");
    assert!(
        child <= root,
        "a nested call inherits its parent's deadline: {child} > {root}"
    );
    assert!(limited <= 100, "its own 100 ms limit is tighter: {limited}");
}

#[tokio::test]
async fn no_deadline_unless_someone_sets_one() {
    let remaining = env()
        .invoke("probe", "remaining", json!({"nest": true}))
        .await
        .result
        .unwrap();
    assert_eq!(remaining[0], json!(null));
    assert_eq!(remaining[1], json!(null));
    assert!(remaining[2].as_u64().unwrap() <= 100);
}

#[tokio::test]
async fn the_timeout_attribute_is_enforced() {
    let env = env();
    let started = tokio::time::Instant::now();
    let err = env
        .invoke("probe", "slow", json!({"ms": 10_000}))
        .await
        .result
        .unwrap_err();
    assert_eq!(err.code, codes::TIMEOUT);
    assert!(err.retryable);
    assert!(started.elapsed() < Duration::from_secs(2));
    assert!(env.invoke("probe", "slow", json!({"ms": 1})).await.is_ok());
}

#[tokio::test]
async fn a_caller_deadline_is_enforced() {
    let env = env().with_caller(Caller::new().timeout(Duration::from_millis(20)));
    let err = env
        .invoke("probe", "hang", json!({"depth": 2}))
        .await
        .result
        .unwrap_err();
    assert_eq!(err.code, codes::TIMEOUT);
}
