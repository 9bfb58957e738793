//! Every service's suite on every dispatch path: local, irpc in-process and irpc over
//! loopback QUIC. The paths must answer with the same envelopes, request ids aside.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use alknet_example::{EchoProtocol, EchoService};
use alknet_runtime::testing::{DispatchPath, ServedEnv, collect, each_path};
use alknet_runtime::{Caller, Identity, OperationEnv, ResourceGrant, codes};
use alknet_tests::probe::{Probe, ProbeProtocol, ProbeState};
use alknet_tests::until;
use alknet_tests::vault::{Vault, VaultProtocol};
use futures::StreamExt;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn echo_agrees_on_every_path() {
    each_path::<EchoProtocol, _, _>(
        || EchoProtocol::local(EchoService::default()),
        |env| async move {
            let admin = env.with_caller(
                Caller::new().identity(Identity::new("admin").with_scopes(["echo:admin"])),
            );
            let mut seen = vec![
                env.invoke("echo", "say", json!({"text": "héllo"})).await,
                env.invoke("echo", "say", json!({"text": 5})).await,
                env.invoke("echo", "say", json!([1])).await,
                env.invoke("echo", "shout", json!({"text": "quiet"})).await,
                env.invoke("echo", "shout", json!({"text": "  "})).await,
                env.invoke("echo", "served", json!({})).await,
                admin.invoke("echo", "served", json!({})).await,
                env.invoke("echo", "ticks", json!({"count": 2})).await,
                env.invoke("echo", "nope", json!({})).await,
            ];
            seen.extend(collect(env.subscribe("echo", "ticks", json!({"count": 3})).await).await);
            seen.extend(collect(env.subscribe("echo", "say", json!({"text": "x"})).await).await);
            assert!(seen[0].is_ok() && seen[6].is_ok(), "{seen:?}");
            seen
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identities_and_access_agree_on_every_path() {
    each_path::<VaultProtocol, _, _>(
        || VaultProtocol::local(Vault),
        |env| async move {
            let reader = env.with_caller(
                Caller::new().identity(Identity::new("user:ada").with_scopes(["vault:read"])),
            );
            let grapher = env.with_caller(Caller::new().identity(
                Identity::new("user:g").with_resources([ResourceGrant::new("graph", ["read"])]),
            ));
            let seen = vec![
                env.invoke("vault", "motd", json!(null)).await,
                env.invoke("vault", "read", json!({})).await,
                reader.invoke("vault", "read", json!({})).await,
                reader.invoke("vault", "rotate", json!({})).await,
                grapher.invoke("vault", "graph", json!({})).await,
                env.invoke("vault", "peek", json!({})).await,
            ];
            assert_eq!(
                seen[2].result,
                Ok(json!("secret for user:ada")),
                "the identity crossed the path"
            );
            assert_eq!(seen[5].error_code(), Some(codes::NOT_FOUND));
            seen
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_agree_on_every_path() {
    each_path::<ProbeProtocol, _, _>(
        || ProbeProtocol::local(Probe::default()),
        |env| async move {
            let mut seen = vec![
                env.invoke("probe", "boom", json!({})).await,
                env.invoke("probe", "undeclared", json!({})).await,
                env.invoke("probe", "slow", json!({"ms": 5_000})).await,
                env.invoke("probe", "relay", json!({"take": 2})).await,
            ];
            seen.extend(collect(env.subscribe("probe", "sputter", json!({})).await).await);
            assert_eq!(seen[0].error_code(), Some(codes::INTERNAL));
            assert_eq!(seen[2].error_code(), Some(codes::TIMEOUT));
            seen
        },
    )
    .await;
}

/// A probe on `path`, and what it saw.
async fn probe_on(path: DispatchPath) -> (ServedEnv, Arc<ProbeState>) {
    let probe = Probe::default();
    let state = probe.0.clone();
    (
        path.env::<ProbeProtocol>(ProbeProtocol::local(probe)).await,
        state,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_caller_cancels_the_handler_on_every_path() {
    for path in DispatchPath::ALL {
        let (env, state) = probe_on(path).await;
        let call =
            tokio::spawn(async move { env.invoke("probe", "hang", json!({"depth": 1})).await });
        until("both handlers run", || {
            state.started.load(Ordering::SeqCst) == 2
        })
        .await;
        call.abort();
        until(&format!("both handlers are cancelled on {path}"), || {
            state.dropped.load(Ordering::SeqCst) == 2
        })
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_a_subscription_stops_the_producer_on_every_path() {
    for path in DispatchPath::ALL {
        let (env, state) = probe_on(path).await;
        let mut items = env.subscribe("probe", "forever", json!({})).await;
        for expected in 0..3u64 {
            assert_eq!(
                items.next().await.unwrap().unwrap(),
                json!(expected),
                "{path}"
            );
        }
        drop(items);
        // In flight when the consumer left: at most what the channel buffers, plus one.
        tokio::time::sleep(Duration::from_millis(50)).await;
        let produced = state.produced.load(Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(
            state.produced.load(Ordering::SeqCst),
            produced,
            "{path}: the producer stopped"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_that_never_finishes_does_not_hold_up_others_on_every_path() {
    for path in DispatchPath::ALL {
        let (env, state) = probe_on(path).await;
        let stuck = {
            let env: OperationEnv = (*env).clone();
            tokio::spawn(async move { env.invoke("probe", "hang", json!({"depth": 0})).await })
        };
        until("the stuck handler runs", || {
            state.started.load(Ordering::SeqCst) == 1
        })
        .await;
        let answered = tokio::time::timeout(
            Duration::from_secs(5),
            env.invoke("probe", "ids", json!({"nest": false})),
        )
        .await;
        assert!(
            answered
                .expect("served while another request is stuck")
                .is_ok(),
            "{path}"
        );
        stuck.abort();
    }
}
