//! A graceful stop: calls in flight finish, new ones and the ones past the drain time end
//! with `UNAVAILABLE`, subscriptions included.

use std::time::Duration;

use alknet_runtime::futures::{StreamExt, stream};
use alknet_runtime::prelude::*;
use alknet_runtime::{Drain, codes};
use serde_json::json;

/// Takes its time.
#[alk_service(namespace = "slow", version = "1.0.0")]
pub enum SlowProtocol {
    /// Answer `ms` after it was called.
    #[alk_operation(query, output = u64)]
    Wait { ms: u64 },

    /// A tick every 10 ms, forever.
    #[alk_operation(subscription, item = u64)]
    Ticks,
}

struct Slow;

impl SlowHandler for Slow {
    async fn wait(&self, _ctx: &OperationContext, request: Wait) -> Result<u64, CallError> {
        tokio::time::sleep(Duration::from_millis(request.ms)).await;
        Ok(request.ms)
    }

    async fn ticks(&self, _ctx: &OperationContext, _: Ticks) -> Result<ItemStream<u64>, CallError> {
        let ticks = stream::iter(0..).then(|n| async move {
            tokio::time::sleep(Duration::from_millis(10)).await;
            Ok(n)
        });
        Ok(Box::pin(ticks))
    }
}

fn env(drain: &Drain) -> OperationEnv {
    OperationEnv::builder()
        .local(SlowProtocol::local(Slow))
        .drain(drain.clone())
        .build()
        .unwrap()
}

#[tokio::test]
async fn a_call_in_flight_finishes_and_a_new_one_is_refused() {
    let drain = Drain::new();
    let env = env(&drain);
    let in_flight = tokio::spawn({
        let env = env.clone();
        async move { env.invoke("slow", "wait", json!({"ms": 200})).await }
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(drain.in_flight(), 1);
    let stopping = tokio::spawn({
        let drain = drain.clone();
        async move { drain.stop(Duration::from_secs(5)).await }
    });
    tokio::time::sleep(Duration::from_millis(20)).await;
    let refused = env.invoke("slow", "wait", json!({"ms": 0})).await;
    let refused = refused.result.unwrap_err();
    assert_eq!(refused.code, codes::UNAVAILABLE);
    assert!(refused.retryable);
    assert!(
        refused.message.contains("shutting down"),
        "{}",
        refused.message
    );

    assert_eq!(in_flight.await.unwrap().result.unwrap(), json!(200));
    assert_eq!(stopping.await.unwrap(), 0, "nothing was left to cut");
    assert_eq!(drain.in_flight(), 0);
}

#[tokio::test]
async fn calls_past_the_drain_time_end_with_unavailable_and_so_do_subscriptions() {
    let drain = Drain::new();
    let env = env(&drain);
    let call = tokio::spawn({
        let env = env.clone();
        async move { env.invoke("slow", "wait", json!({"ms": 60_000})).await }
    });
    let mut ticks = env.subscribe("slow", "ticks", json!({})).await;
    assert!(ticks.next().await.unwrap().is_ok());
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert_eq!(drain.in_flight(), 2);

    let stopping = tokio::spawn({
        let drain = drain.clone();
        async move { drain.stop(Duration::from_millis(100)).await }
    });
    let last = loop {
        match ticks
            .next()
            .await
            .expect("the subscription ends with an error, not silence")
        {
            Ok(_) => continue,
            Err(err) => break err,
        }
    };
    assert_eq!(last.code, codes::UNAVAILABLE);
    assert!(ticks.next().await.is_none());
    drop(ticks);
    let cut = call.await.unwrap().result.unwrap_err();
    assert_eq!(cut.code, codes::UNAVAILABLE);
    assert!(cut.message.contains("shut down before"), "{}", cut.message);
    assert_eq!(stopping.await.unwrap(), 2);
    assert_eq!(drain.in_flight(), 0);
}

#[tokio::test]
async fn an_env_without_a_drain_serves_as_before() {
    let plain = OperationEnv::builder()
        .local(SlowProtocol::local(Slow))
        .build()
        .unwrap();
    assert_eq!(
        plain
            .invoke("slow", "wait", json!({"ms": 0}))
            .await
            .result
            .unwrap(),
        json!(0)
    );
}
