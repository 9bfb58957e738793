//! The `auth` service on every dispatch path (local, irpc in-process).

use std::path::PathBuf;
use std::sync::Arc;

use alknet_auth::{AuthProtocol, AuthService};
use alknet_runtime::config::ConfigServiceImpl;
use alknet_runtime::credentials::{api_key_hash, sign_token, unix_now};
use alknet_runtime::ed25519_dalek::SigningKey;
use alknet_runtime::testing::each_path;
use alknet_runtime::{Caller, Identity, ResponseEnvelope, codes, key_fingerprint};
use serde_json::{Value, json};

const KEY: &str = "alk_authTestKey0123456789abcdefghijklmnopqrstu";

fn config_text(scopes: &str) -> String {
    let signer = SigningKey::from_bytes(&[42u8; 32]);
    let public: String = signer
        .verifying_key()
        .to_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!(
        "[[api_keys]]\nid = \"app\"\nhash = \"{}\"\nidentity = \"svc:app\"\nscopes = [{scopes}]\n\n\
         [[public_keys]]\nfingerprint = \"{}\"\nidentity = \"node:w1\"\n\n\
         [[token_keys]]\nkey_id = \"deploy\"\npublic_key = \"{public}\"\nidentity = \"user:deploy\"\n",
        api_key_hash(KEY),
        key_fingerprint(&[9u8; 32]),
    )
}

/// A fresh file with the starting configuration for each path, and the service over it.
fn fixture() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("node.toml");
    (dir, path)
}

fn output(envelope: &ResponseEnvelope) -> &Value {
    envelope.result.as_ref().expect("the call failed")
}

fn error_code(envelope: &ResponseEnvelope) -> &str {
    &envelope
        .result
        .as_ref()
        .expect_err("the call succeeded")
        .code
}

#[tokio::test]
async fn verifies_credentials_answers_access_questions_and_reloads_keys_on_every_path() {
    let (_dir, path) = fixture();
    let make = || {
        std::fs::write(&path, config_text("\"auth:admin\"")).unwrap();
        let config = Arc::new(ConfigServiceImpl::from_file(&path).unwrap());
        AuthProtocol::local(AuthService::new(config))
    };
    let token = sign_token(&SigningKey::from_bytes(&[42u8; 32]), "deploy", unix_now());
    let stale = sign_token(
        &SigningKey::from_bytes(&[42u8; 32]),
        "deploy",
        unix_now() - 3600,
    );
    each_path::<AuthProtocol, _, _>(make, |env| {
        let (path, token, stale) = (path.clone(), token.clone(), stale.clone());
        async move {
            let mut seen = Vec::new();
            let admin = env.with_caller(
                Caller::new().identity(Identity::new("user:ops").with_scopes(["auth:admin"])),
            );
            let verifier = env.with_caller(
                Caller::new().identity(Identity::new("node:gateway").with_scopes(["auth:verify"])),
            );

            // Checking a credential answers with its identity: anonymous callers, and
            // callers without `auth:verify`, may not ask.
            let who = Caller::new().identity(Identity::new("user:nobody"));
            for (caller, code) in [
                (env.clone(), codes::UNAUTHENTICATED),
                (env.with_caller(who), codes::FORBIDDEN),
            ] {
                for (operation, input) in [
                    ("verify_api_key", json!({"key": KEY})),
                    ("verify_token", json!({"token": token})),
                    ("verify_pubkey", json!({"public_key": "09".repeat(32)})),
                ] {
                    let refused = caller.invoke("auth", operation, input).await;
                    assert_eq!(error_code(&refused), code, "{operation}");
                    seen.push(refused);
                }
            }

            let ok = verifier
                .invoke("auth", "verify_api_key", json!({"key": KEY}))
                .await;
            assert_eq!(output(&ok)["identity"]["id"], "svc:app");
            seen.push(ok);
            let bad = verifier
                .invoke("auth", "verify_api_key", json!({"key": "alk_"}))
                .await;
            assert_eq!(output(&bad)["valid"], false);
            assert!(
                output(&bad)["reason"]
                    .as_str()
                    .unwrap()
                    .contains("too short")
            );
            seen.push(bad);

            let ok = verifier
                .invoke("auth", "verify_token", json!({"token": token}))
                .await;
            assert_eq!(output(&ok)["identity"]["id"], "user:deploy");
            seen.push(ok);
            let mut late = verifier
                .invoke("auth", "verify_token", json!({"token": stale}))
                .await;
            assert!(
                output(&late)["reason"]
                    .as_str()
                    .unwrap()
                    .contains("outside the ±300 s window")
            );
            // The sentence counts the token's age in seconds, which can tick between one
            // path and the next; the paths are compared on everything else.
            if let Ok(output) = &mut late.result {
                output["reason"] = json!("outside the ±300 s window");
            }
            seen.push(late);

            // verify_pubkey takes a fingerprint or the key.
            let by_key = admin
                .invoke(
                    "auth",
                    "verify_pubkey",
                    json!({"public_key": "09".repeat(32)}),
                )
                .await;
            assert_eq!(output(&by_key)["identity"]["id"], "node:w1");
            seen.push(by_key);
            let by_fp = admin
                .invoke(
                    "auth",
                    "verify_pubkey",
                    json!({"fingerprint": key_fingerprint(&[8u8; 32])}),
                )
                .await;
            assert_eq!(output(&by_fp)["valid"], false);
            seen.push(by_fp);
            let neither = admin.invoke("auth", "verify_pubkey", json!({})).await;
            assert_eq!(error_code(&neither), codes::INVALID_INPUT);
            seen.push(neither);

            let me = admin.invoke("auth", "whoami", json!(null)).await;
            assert_eq!(output(&me)["id"], "user:ops");
            seen.push(me);
            let nobody = env.invoke("auth", "whoami", json!(null)).await;
            assert_eq!(output(&nobody), &Value::Null);
            seen.push(nobody);

            for (caller, operation, code) in [
                (&env, "auth/reload_keys", Some("UNAUTHENTICATED")),
                (&admin, "auth/reload_keys", None),
                (&env, "auth/whoami", None),
                (&env, "auth/missing", Some("NOT_FOUND")),
            ] {
                let answer = caller
                    .invoke("auth", "check_access", json!({"operation": operation}))
                    .await;
                assert_eq!(output(&answer)["allowed"], code.is_none(), "{operation}");
                assert_eq!(output(&answer)["code"].as_str(), code, "{operation}");
                seen.push(answer);
            }

            // Reload: the key loses its scope for the next lookup.
            let refused = env.invoke("auth", "reload_keys", json!(null)).await;
            assert_eq!(error_code(&refused), codes::UNAUTHENTICATED);
            seen.push(refused);
            std::fs::write(&path, config_text("")).unwrap();
            let reloaded = admin.invoke("auth", "reload_keys", json!(null)).await;
            assert_eq!(output(&reloaded)["changed"], json!(["api_keys"]));
            seen.push(reloaded);
            let after = admin
                .invoke("auth", "verify_api_key", json!({"key": KEY}))
                .await;
            assert_eq!(output(&after)["identity"]["scopes"], json!([]));
            seen.push(after);

            std::fs::write(&path, "[[api_keys]]\nid = 1\n").unwrap();
            let broken = admin.invoke("auth", "reload_keys", json!(null)).await;
            let err = broken.result.as_ref().unwrap_err();
            assert_eq!(err.code, "INVALID_CONFIG");
            assert_eq!(err.details.as_ref().unwrap()["line"], 2);
            seen.push(broken);
            seen
        }
    })
    .await;
}
