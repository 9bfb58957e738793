//! Bad input, wrong kinds, panics and undeclared errors: a clear error with a code, never a
//! crash.

use alknet_example::{EchoProtocol, EchoService};
use alknet_runtime::{BuildError, OperationEnv, codes};
use alknet_tests::probe::{Probe, ProbeProtocol};
use futures::StreamExt;
use serde_json::json;

fn env() -> OperationEnv {
    OperationEnv::builder()
        .local(EchoProtocol::local(EchoService::default()))
        .local(ProbeProtocol::local(Probe::default()))
        .build()
        .unwrap()
}

#[tokio::test]
async fn invalid_input_names_the_field() {
    let env = env();
    let wrong_type = env
        .invoke("echo", "say", json!({"text": 5}))
        .await
        .result
        .unwrap_err();
    assert_eq!(wrong_type.code, codes::INVALID_INPUT);
    assert_eq!(wrong_type.details, Some(json!({"field": "text"})));
    assert!(
        wrong_type.message.contains("`text`"),
        "{}",
        wrong_type.message
    );

    let missing = env
        .invoke("echo", "say", json!({}))
        .await
        .result
        .unwrap_err();
    assert_eq!(missing.code, codes::INVALID_INPUT);
    assert_eq!(missing.details, Some(json!({"field": "text"})));
    assert!(
        missing.message.contains("missing field `text`"),
        "{}",
        missing.message
    );

    for not_an_object in [json!(["positional"]), json!("text"), json!(5)] {
        let err = env
            .invoke("echo", "say", not_an_object)
            .await
            .result
            .unwrap_err();
        assert_eq!(err.code, codes::INVALID_INPUT);
        assert!(
            err.message.contains("expected a JSON object"),
            "{}",
            err.message
        );
    }
}

#[tokio::test]
async fn null_input_stands_for_no_fields() {
    let env = env();
    let reply = env.invoke("probe", "ids", json!({"nest": false})).await;
    assert!(reply.is_ok());
    assert!(
        env.invoke("probe", "boom", json!(null)).await.error_code() != Some(codes::INVALID_INPUT)
    );
}

#[tokio::test]
async fn unknown_namespace_and_operation_are_not_found() {
    let env = env();
    for (ns, op) in [("nope", "say"), ("echo", "nope"), ("", "")] {
        let err = env.invoke(ns, op, json!({})).await.result.unwrap_err();
        assert_eq!(err.code, codes::NOT_FOUND, "{ns}/{op}");
        assert!(
            err.message.contains(&format!("{ns}/{op}")),
            "{}",
            err.message
        );
    }
}

#[tokio::test]
async fn kinds_are_enforced_both_ways() {
    let env = env();
    let err = env
        .invoke("echo", "ticks", json!({"count": 1}))
        .await
        .result
        .unwrap_err();
    assert_eq!(err.code, codes::INVALID_OPERATION_TYPE);
    let mut items = env.subscribe("echo", "say", json!({"text": "x"})).await;
    let err = items.next().await.unwrap().unwrap_err();
    assert_eq!(err.code, codes::INVALID_OPERATION_TYPE);
    assert!(items.next().await.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_becomes_internal_and_the_env_keeps_serving() {
    let env = env();
    for _ in 0..3 {
        let err = env
            .invoke("probe", "boom", json!({}))
            .await
            .result
            .unwrap_err();
        assert_eq!(err.code, codes::INTERNAL);
        assert!(
            !err.message.contains("exploded"),
            "panic messages stay in the logs: {}",
            err.message
        );
        assert!(
            env.invoke("echo", "say", json!({"text": "still here"}))
                .await
                .is_ok()
        );
    }
}

#[tokio::test]
async fn a_panic_inside_a_subscription_ends_it_with_internal() {
    let env = env();
    let items: Vec<_> = env
        .subscribe("probe", "sputter", json!({}))
        .await
        .collect()
        .await;
    assert_eq!(items.len(), 2, "{items:?}");
    assert_eq!(items[0], Ok(json!(0)));
    assert_eq!(items[1].as_ref().unwrap_err().code, codes::INTERNAL);
}

#[tokio::test]
async fn undeclared_error_codes_become_internal_keeping_the_original() {
    let env = env();
    let err = env
        .invoke("probe", "undeclared", json!({}))
        .await
        .result
        .unwrap_err();
    assert_eq!(err.code, codes::INTERNAL);
    let details = err.details.unwrap();
    assert_eq!(details["original_code"], "SURPRISE");
    assert_eq!(details["original_message"], "nobody declared this");
}

#[tokio::test]
async fn declared_error_codes_pass_through_with_details() {
    let err = env()
        .invoke("echo", "shout", json!({"text": "   "}))
        .await
        .result
        .unwrap_err();
    assert_eq!(err.code, "EMPTY_TEXT");
    assert_eq!(err.details, Some(json!({"whitespace": 3})));
}

#[test]
fn a_namespace_can_be_mounted_once() {
    let err = OperationEnv::builder()
        .local(EchoProtocol::local(EchoService::default()))
        .local(EchoProtocol::local(EchoService::default()))
        .build()
        .unwrap_err();
    assert_eq!(err, BuildError::DuplicateNamespace("echo".into()));
    assert!(err.to_string().contains("`echo`"));
}
