//! Access control: checked once for the outside caller; nested calls run with the calling
//! service's authority, or else the caller's own identity; internal operations stay inside.

use alknet_runtime::{Caller, Identity, OperationEnv, ResourceGrant, codes};
use alknet_tests::{orders, relay, vault};
use serde_json::{Value, json};

fn env() -> OperationEnv {
    OperationEnv::builder()
        .local(vault::VaultProtocol::local(vault::Vault))
        .local(orders::OrdersProtocol::local(orders::Orders))
        .local(relay::RelayProtocol::local(relay::Relay))
        .build()
        .unwrap()
}

async fn code(env: &OperationEnv, ns: &str, op: &str, input: Value) -> Option<String> {
    env.invoke(ns, op, input)
        .await
        .error_code()
        .map(str::to_string)
}

fn as_identity(env: &OperationEnv, identity: Identity) -> OperationEnv {
    env.with_caller(Caller::new().identity(identity))
}

#[tokio::test]
async fn open_operation_admits_anonymous_callers() {
    let reply = env().invoke("vault", "motd", json!({})).await;
    assert_eq!(reply.result.unwrap(), json!("welcome"));
}

#[tokio::test]
async fn restricted_operation_without_identity_is_unauthenticated() {
    let env = env();
    for op in ["read", "rotate", "graph"] {
        assert_eq!(
            code(&env, "vault", op, json!({})).await.as_deref(),
            Some(codes::UNAUTHENTICATED),
            "{op}"
        );
    }
}

#[tokio::test]
async fn wrong_scopes_are_forbidden_right_scopes_pass() {
    let env = env();
    let nobody = as_identity(&env, Identity::new("user:nobody"));
    for op in ["read", "rotate", "graph"] {
        assert_eq!(
            code(&nobody, "vault", op, json!({})).await.as_deref(),
            Some(codes::FORBIDDEN),
            "{op}"
        );
    }
    let reader = as_identity(&env, Identity::new("user:ada").with_scopes(["vault:read"]));
    assert_eq!(
        reader
            .invoke("vault", "read", json!({}))
            .await
            .result
            .unwrap(),
        json!("secret for user:ada")
    );
    let root = as_identity(&env, Identity::new("user:root").with_scopes(["root"]));
    assert_eq!(
        code(&root, "vault", "rotate", json!({})).await,
        None,
        "one of any_scopes suffices"
    );
    let grapher = as_identity(
        &env,
        Identity::new("user:g").with_resources([ResourceGrant::new("graph", ["read"])]),
    );
    assert_eq!(code(&grapher, "vault", "graph", json!({})).await, None);
}

#[tokio::test]
async fn forbidden_message_names_the_missing_scope() {
    let env = as_identity(&env(), Identity::new("user:nobody"));
    let err = env
        .invoke("vault", "read", json!({}))
        .await
        .result
        .unwrap_err();
    assert!(err.message.contains("vault:read"), "{}", err.message);
}

#[tokio::test]
async fn nested_call_without_authority_cannot_escalate() {
    // `relay` declares no authority: its nested calls run as its caller.
    let env = env();
    let anonymous = env
        .invoke("relay", "forward", json!({"ns": "vault", "op": "read"}))
        .await;
    assert_eq!(
        anonymous.result.unwrap(),
        json!({"error": codes::UNAUTHENTICATED})
    );
    let nobody = as_identity(&env, Identity::new("user:nobody"));
    let reply = nobody
        .invoke("relay", "forward", json!({"ns": "vault", "op": "read"}))
        .await;
    assert_eq!(reply.result.unwrap(), json!({"error": codes::FORBIDDEN}));
    let reader = as_identity(&env, Identity::new("user:ada").with_scopes(["vault:read"]));
    let reply = reader
        .invoke("relay", "forward", json!({"ns": "vault", "op": "read"}))
        .await;
    assert_eq!(
        reply.result.unwrap(),
        json!({"output": "secret for user:ada"})
    );
}

#[tokio::test]
async fn declared_authority_allows_what_it_grants_and_nothing_more() {
    // `orders` holds `vault:read` as its authority; an anonymous caller of `orders` reaches
    // `vault/read` through it, as the service, but not `vault/rotate`.
    let env = env();
    let reply = env.invoke("orders", "forward", json!({"op": "read"})).await;
    assert_eq!(
        reply.result.unwrap(),
        json!({"output": "secret for service:orders"})
    );
    let reply = env
        .invoke("orders", "forward", json!({"op": "rotate"}))
        .await;
    assert_eq!(reply.result.unwrap(), json!({"error": codes::FORBIDDEN}));
}

#[tokio::test]
async fn nested_call_outside_the_allowed_list_is_not_found() {
    let env = env();
    // `orders` may call vault/read, vault/peek and vault/rotate only.
    let reply = env.invoke("orders", "forward", json!({"op": "motd"})).await;
    assert_eq!(reply.result.unwrap(), json!({"error": codes::NOT_FOUND}));
    // `relay` may call `vault/*` but nothing in `orders`.
    let reply = env
        .invoke("relay", "forward", json!({"ns": "orders", "op": "forward"}))
        .await;
    assert_eq!(reply.result.unwrap(), json!({"error": codes::NOT_FOUND}));
}

#[tokio::test]
async fn internal_operations_are_unreachable_from_outside_but_serve_nested_calls() {
    let env = env();
    let outside = env
        .invoke("vault", "peek", json!({}))
        .await
        .result
        .unwrap_err();
    let unknown = env
        .invoke("vault", "nope", json!({}))
        .await
        .result
        .unwrap_err();
    assert_eq!(outside.code, codes::NOT_FOUND);
    // An outsider cannot tell an internal operation from a missing one.
    assert_eq!(outside.message.replace("peek", "nope"), unknown.message);
    let reply = env.invoke("orders", "forward", json!({"op": "peek"})).await;
    assert_eq!(reply.result.unwrap(), json!({"output": "peeked"}));
}

#[tokio::test]
async fn forwarded_for_is_kept_for_audit_but_grants_nothing() {
    let env = env().with_caller(Caller::new().forwarded_for("user:root"));
    assert_eq!(
        code(&env, "vault", "read", json!({})).await.as_deref(),
        Some(codes::UNAUTHENTICATED)
    );
}
