//! Dropping or aborting a call cancels every nested call below it.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use alknet_runtime::OperationEnv;
use alknet_tests::probe::{Probe, ProbeProtocol, ProbeState};
use alknet_tests::until;
use futures::StreamExt;
use serde_json::json;

fn env() -> (OperationEnv, Arc<ProbeState>) {
    let probe = Probe::default();
    let state = probe.0.clone();
    let env = OperationEnv::builder()
        .local(ProbeProtocol::local(probe))
        .build()
        .unwrap();
    (env, state)
}

async fn aborting_the_root_cancels_every_descendant(spawn: bool) {
    let (env, state) = env();
    let root = tokio::spawn(async move {
        env.invoke("probe", "hang", json!({"depth": 2, "spawn": spawn}))
            .await
    });
    until("the root, child and grandchild run", || {
        state.started.load(Ordering::SeqCst) == 3
    })
    .await;
    assert_eq!(state.dropped.load(Ordering::SeqCst), 0);
    root.abort();
    until("all three are cancelled", || {
        state.dropped.load(Ordering::SeqCst) == 3
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aborting_a_parent_cancels_its_grandchildren() {
    aborting_the_root_cancels_every_descendant(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aborting_a_parent_cancels_grandchildren_running_on_their_own_tasks() {
    aborting_the_root_cancels_every_descendant(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_call_future_cancels_it() {
    let (env, state) = env();
    let call = env.invoke("probe", "hang", json!({"depth": 1, "spawn": true}));
    let timed_out = tokio::time::timeout(Duration::from_millis(50), call).await;
    assert!(timed_out.is_err());
    until("both are cancelled", || {
        state.dropped.load(Ordering::SeqCst) == 2
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_a_subscription_stops_its_producer() {
    let (env, state) = env();
    let mut items = env.subscribe("probe", "forever", json!({})).await;
    for expected in 0..3u64 {
        assert_eq!(items.next().await.unwrap().unwrap(), json!(expected));
    }
    drop(items);
    let produced = state.produced.load(Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(30)).await;
    assert_eq!(
        state.produced.load(Ordering::SeqCst),
        produced,
        "nothing is produced after the drop"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nested_subscription_lasts_as_long_as_its_stream() {
    let (env, _) = env();
    let reply = env.invoke("probe", "relay", json!({"take": 3})).await;
    assert_eq!(reply.result.unwrap(), json!([0, 1, 2]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nested_call_started_after_its_parent_ended_is_aborted() {
    let (env, state) = env();
    assert!(env.invoke("probe", "orphan", json!({})).await.is_ok());
    until("the orphaned call ends", || {
        state.orphan.lock().unwrap().is_some()
    })
    .await;
    assert_eq!(
        *state.orphan.lock().unwrap(),
        Some(Err("ABORTED".to_string()))
    );
    assert_eq!(
        state.started.load(Ordering::SeqCst),
        0,
        "its handler never ran"
    );
}
