//! ConfigIdentityProvider and RateLimiter against a live configuration: API keys, key
//! fingerprints, signed tokens, reloads, rate limits.

use std::sync::Arc;
use std::time::Duration;

use alknet_runtime::config::{ConfigServiceImpl, ReloadPart};
use alknet_runtime::credentials::{api_key_hash, new_api_key, sign_token, unix_now};
use alknet_runtime::ed25519_dalek::SigningKey;
use alknet_runtime::prelude::*;
use alknet_runtime::{
    ConfigIdentityProvider, Credential, IdentityProvider, RateLimiter, codes, key_fingerprint,
};
use serde_json::json;

struct Node {
    _dir: tempfile::TempDir,
    path: std::path::PathBuf,
    config: ConfigServiceImpl,
    provider: ConfigIdentityProvider,
}

fn node(text: &str) -> Node {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("node.toml");
    std::fs::write(&path, text).unwrap();
    let config = ConfigServiceImpl::from_file(&path).unwrap();
    let provider = ConfigIdentityProvider::new(config.shared());
    Node {
        _dir: dir,
        path,
        config,
        provider,
    }
}

impl Node {
    fn rewrite(&self, text: &str) {
        std::fs::write(&self.path, text).unwrap();
        self.config.reload(ReloadPart::All).unwrap();
    }

    async fn resolve(&self, credential: Credential<'_>) -> Result<Arc<Identity>, CallError> {
        self.provider.resolve(credential).await
    }
}

fn api_key(id: &str, key: &str, scopes: &str, expires: Option<&str>) -> String {
    let expires = expires
        .map(|e| format!("expires = {e}\n"))
        .unwrap_or_default();
    format!(
        "[[api_keys]]\nid = \"{id}\"\nhash = \"{}\"\nidentity = \"svc:{id}\"\nscopes = [{scopes}]\n{expires}",
        api_key_hash(key)
    )
}

fn refused(result: Result<Arc<Identity>, CallError>, why: &str) {
    let err = result.expect_err("the credential was accepted");
    assert_eq!(err.code, codes::UNAUTHENTICATED);
    assert!(
        err.message.contains(why),
        "`{}` does not say `{why}`",
        err.message
    );
}

#[tokio::test]
async fn an_api_key_resolves_to_its_identity_and_nothing_else_does() {
    let key = new_api_key().unwrap();
    let node = node(&api_key(
        "ci",
        &key,
        "\"echo:admin\"",
        Some("2999-01-01T00:00:00Z"),
    ));
    let ci = node.resolve(Credential::ApiKey(&key)).await.unwrap();
    assert_eq!(ci.id, "svc:ci");
    assert!(ci.has_scope("echo:admin"));

    let other = new_api_key().unwrap();
    refused(node.resolve(Credential::ApiKey(&other)).await, "not valid");
    // One character changed.
    let mut tampered = key.clone().into_bytes();
    let last = tampered.len() - 1;
    tampered[last] = if tampered[last] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered).unwrap();
    refused(
        node.resolve(Credential::ApiKey(&tampered)).await,
        "not valid",
    );
    // The key without its prefix, or presented as a token.
    refused(
        node.resolve(Credential::ApiKey(&key[4..])).await,
        "starts with `alk_`",
    );
    refused(node.resolve(Credential::Token(&key)).await, "malformed");
}

#[tokio::test]
async fn a_key_verified_once_is_recognised_again_only_while_its_configuration_holds() {
    let (first, second) = (new_api_key().unwrap(), new_api_key().unwrap());
    let both = format!(
        "{}{}",
        api_key("first", &first, "\"a\"", None),
        api_key("second", &second, "\"b\"", None)
    );
    let node = node(&both);
    // Each resolves to its own entry, the first time (SHA-256) and again (its MAC).
    for _ in 0..3 {
        assert_eq!(
            node.resolve(Credential::ApiKey(&first)).await.unwrap().id,
            "svc:first"
        );
        assert_eq!(
            node.resolve(Credential::ApiKey(&second)).await.unwrap().id,
            "svc:second"
        );
    }

    // A reload that drops a key refuses it at once; one that changes a key's scopes or
    // expiry applies to the next lookup.
    node.rewrite(&format!(
        "{}{}",
        api_key("second", &second, "\"c\"", None),
        api_key("third", &new_api_key().unwrap(), "", None)
    ));
    refused(node.resolve(Credential::ApiKey(&first)).await, "not valid");
    let second_now = node.resolve(Credential::ApiKey(&second)).await.unwrap();
    assert!(second_now.has_scope("c") && !second_now.has_scope("b"));
    node.rewrite(&api_key(
        "second",
        &second,
        "",
        Some("2001-01-01T00:00:00Z"),
    ));
    refused(
        node.resolve(Credential::ApiKey(&second)).await,
        "the API key `second` expired",
    );
    node.rewrite(&both);
    assert_eq!(
        node.resolve(Credential::ApiKey(&first)).await.unwrap().id,
        "svc:first"
    );
}

#[tokio::test]
async fn the_prefix_alone_never_authenticates() {
    // Even a configuration that stores the hash of the bare prefix (or of a short key)
    // cannot be matched: the shape is checked before any lookup.
    let text = format!(
        "{}{}",
        api_key("bare", "alk_", "", None),
        api_key("short", "alk_abc", "", None)
    );
    let node = node(&text);
    refused(node.resolve(Credential::ApiKey("alk_")).await, "too short");
    refused(
        node.resolve(Credential::ApiKey("alk_abc")).await,
        "too short",
    );
}

#[tokio::test]
async fn an_expired_api_key_is_refused_naming_it() {
    let key = new_api_key().unwrap();
    let node = node(&api_key("old", &key, "", Some("2001-01-01T00:00:00Z")));
    refused(
        node.resolve(Credential::ApiKey(&key)).await,
        "the API key `old` expired at 978307200",
    );
}

#[tokio::test]
async fn a_public_key_resolves_by_its_fingerprint() {
    let fingerprint = key_fingerprint(&[9u8; 32]);
    let node = node(&format!(
        "[[public_keys]]\nfingerprint = \"{}\"\nidentity = \"node:w1\"\nscopes = [\"auth:verify\"]\n",
        fingerprint.to_uppercase().replace("ED25519", "ed25519")
    ));
    let w1 = node
        .resolve(Credential::KeyFingerprint(&fingerprint))
        .await
        .unwrap();
    assert_eq!(w1.id, "node:w1");
    refused(
        node.resolve(Credential::KeyFingerprint(&key_fingerprint(&[8u8; 32])))
            .await,
        "is not allowed",
    );
}

fn token_node(window: Option<u64>) -> (Node, SigningKey) {
    let key = SigningKey::from_bytes(&[42u8; 32]);
    let public: String = key
        .verifying_key()
        .to_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let auth = window
        .map(|w| format!("[auth]\ntoken_window_secs = {w}\n"))
        .unwrap_or_default();
    let node = node(&format!(
        "{auth}[[token_keys]]\nkey_id = \"deploy\"\npublic_key = \"{public}\"\nidentity = \"user:deploy\"\nscopes = [\"auth:admin\"]\n"
    ));
    (node, key)
}

#[tokio::test]
async fn a_token_signed_now_resolves_and_one_outside_the_window_does_not() {
    let (node, key) = token_node(None);
    let now = unix_now();
    for at in [now, now - 299, now + 299] {
        let who = node
            .resolve(Credential::Token(&sign_token(&key, "deploy", at)))
            .await
            .unwrap();
        assert_eq!(who.id, "user:deploy");
    }
    refused(
        node.resolve(Credential::Token(&sign_token(&key, "deploy", now - 400)))
            .await,
        "s ago, outside the ±300 s window",
    );
    refused(
        node.resolve(Credential::Token(&sign_token(&key, "deploy", now + 400)))
            .await,
        "in the future, outside the ±300 s window",
    );

    // The window is configurable.
    let (narrow, key) = token_node(Some(10));
    refused(
        narrow
            .resolve(Credential::Token(&sign_token(&key, "deploy", now - 30)))
            .await,
        "±10 s",
    );
}

#[tokio::test]
async fn a_tampered_token_is_refused() {
    let (node, key) = token_node(None);
    let now = unix_now();
    let token = sign_token(&key, "deploy", now);
    let (message, signature) = token.rsplit_once('.').unwrap();

    // A later timestamp under the old signature.
    let moved = format!("alkt1.deploy.{}.{signature}", now + 1);
    refused(
        node.resolve(Credential::Token(&moved)).await,
        "signature does not verify",
    );
    // One signature character changed.
    let mut sig = signature.to_string().into_bytes();
    sig[10] = if sig[10] == b'A' { b'B' } else { b'A' };
    let flipped = format!("{message}.{}", String::from_utf8(sig).unwrap());
    refused(
        node.resolve(Credential::Token(&flipped)).await,
        "signature does not verify",
    );
    // Signed by another key.
    let stranger = SigningKey::from_bytes(&[1u8; 32]);
    refused(
        node.resolve(Credential::Token(&sign_token(&stranger, "deploy", now)))
            .await,
        "signature does not verify",
    );
    // A key id the node does not know.
    refused(
        node.resolve(Credential::Token(&sign_token(&key, "ops", now)))
            .await,
        "not a token key",
    );
}

/// A service with a slow, scoped operation: long enough for a reload to happen mid-call.
#[alk_service(namespace = "vault", version = "1.0.0")]
pub enum VaultProtocol {
    /// Wait, then report who the call ran as.
    #[alk_operation(query, output = String, scopes = ["vault:read"])]
    Read {
        /// How long to take.
        ms: u64,
    },
}

struct Vault;

impl VaultHandler for Vault {
    async fn read(&self, ctx: &OperationContext, request: Read) -> Result<String, CallError> {
        tokio::time::sleep(Duration::from_millis(request.ms)).await;
        Ok(ctx.identity().map(|i| i.id.clone()).unwrap_or_default())
    }
}

#[tokio::test]
async fn a_reload_changes_what_new_calls_may_do_and_leaves_calls_in_flight_alone() {
    let key = new_api_key().unwrap();
    let node = node(&api_key("app", &key, "\"vault:read\"", None));
    let env = OperationEnv::builder()
        .local(VaultProtocol::local(Vault))
        .build()
        .unwrap();
    // What an adapter does per request: resolve the credential, then call as that caller.
    let call = |ms: u64| {
        let (env, node, key) = (env.clone(), &node, key.clone());
        async move {
            let identity = node.resolve(Credential::ApiKey(&key)).await?;
            env.with_caller(Caller::new().identity(identity))
                .invoke("vault", "read", json!({ "ms": ms }))
                .await
                .result
        }
    };
    let in_flight = tokio::spawn({
        let identity = node.resolve(Credential::ApiKey(&key)).await.unwrap();
        let env = env.with_caller(Caller::new().identity(identity));
        async move {
            env.invoke("vault", "read", json!({ "ms": 200 }))
                .await
                .result
        }
    });
    tokio::time::sleep(Duration::from_millis(50)).await;

    // The scope is taken away while the call runs.
    node.rewrite(&api_key("app", &key, "", None));
    let refused = call(0).await.unwrap_err();
    assert_eq!(refused.code, codes::FORBIDDEN);
    assert_eq!(in_flight.await.unwrap().unwrap(), json!("svc:app"));

    // Then the key is revoked: new calls cannot even authenticate.
    node.rewrite("");
    assert_eq!(call(0).await.unwrap_err().code, codes::UNAUTHENTICATED);
    // And given back: new calls work again.
    node.rewrite(&api_key("app", &key, "\"vault:read\"", None));
    assert_eq!(call(0).await.unwrap(), json!("svc:app"));
}

#[tokio::test]
async fn a_rate_limit_refuses_with_resource_exhausted_and_a_retry_hint_and_follows_reloads() {
    let limits = |burst: u32| {
        format!("[rate_limits]\nper_identity = {{ per_second = 2, burst = {burst} }}\n")
    };
    let node = node(&limits(2));
    let limiter = RateLimiter::new(node.config.shared());
    let ada = Identity::new("user:ada");
    limiter.check(Some(&ada), None).unwrap();
    limiter.check(Some(&ada), None).unwrap();
    let err = limiter.check(Some(&ada), None).unwrap_err();
    assert_eq!(err.code, codes::RESOURCE_EXHAUSTED);
    assert!(err.retryable);
    let wait = err.details.as_ref().unwrap()["retry_after_ms"]
        .as_u64()
        .unwrap();
    assert!((1..=500).contains(&wait), "retry after {wait} ms");
    assert!(
        err.message
            .contains("`user:ada` exceeded the rate limit of 2 calls per second"),
        "{}",
        err.message
    );

    // A reload that removes the limit applies to the next call.
    node.rewrite("");
    for _ in 0..100 {
        limiter.check(Some(&ada), None).unwrap();
    }
}
