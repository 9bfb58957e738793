//! The `secret` service as a node serves it: each of its errors as the HTTP status it
//! declares, binary fields as base64 on the wire, and its tools over MCP with the official
//! SDKs (Python and TypeScript).

use std::path::Path;

use alknet::Node;
use alknet_runtime::credentials::api_key_hash;
use alknet_tests::adapters::{McpClient, Served, config, curl, mcp_session_with, serve};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};

/// An API key for `user:keeper`, who holds `secret:admin`.
const KEEPER: &str = "alk_keeper-key-of-the-secret-tests";
const PASSPHRASE: &str = "correct horse battery staple";
/// The wait after the first wrong passphrase: long enough that a second attempt right
/// after it is refused, short enough to wait out.
const BACKOFF_MS: u64 = 300;

/// A node serving only `secret`, its seed file in `dir`, with a cheap Argon2id.
async fn node(dir: &Path) -> Served {
    let settings = format!(
        r#"[[api_keys]]
id = "keeper"
hash = "{hash}"
identity = "user:keeper"
scopes = ["secret:admin"]

[secret]
file = "{file}"
kdf_memory_kib = 1024
kdf_target_ms = 0
unlock_backoff_ms = {BACKOFF_MS}
"#,
        hash = api_key_hash(KEEPER),
        file = dir.join("secret.json").display(),
    );
    serve(
        Node::builder(config(&settings))
            .without_auth()
            .without_config_service()
            .without_storage(),
    )
    .await
}

/// `POST /v1/secret/{operation}` with `input`, as `token` (none: anonymous): the status
/// and the body.
async fn post(served: &Served, token: Option<&str>, operation: &str, input: Value) -> (u16, Value) {
    let url = format!("http://{}/v1/secret/{operation}", served.http);
    let body = input.to_string();
    let mut args = vec![
        "-X",
        "POST",
        "-H",
        "content-type: application/json",
        "-d",
        &body,
    ];
    let authorization = token.map(|token| format!("authorization: Bearer {token}"));
    if let Some(header) = &authorization {
        args.extend(["-H", header]);
    }
    args.push(&url);
    let (status, body) = curl(&args).await;
    let body = serde_json::from_str(&body).unwrap_or_else(|err| panic!("{body}: {err}"));
    (status.parse().unwrap(), body)
}

/// As [`KEEPER`].
async fn keeper(served: &Served, operation: &str, input: Value) -> (u16, Value) {
    post(served, Some(KEEPER), operation, input).await
}

fn code(body: &Value) -> &str {
    body["error"]["code"]
        .as_str()
        .unwrap_or_else(|| panic!("not an error: {body}"))
}

fn bytes(value: &Value) -> Vec<u8> {
    STANDARD
        .decode(
            value
                .as_str()
                .unwrap_or_else(|| panic!("not base64: {value}")),
        )
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn every_error_is_its_declared_http_status_and_binary_is_base64() {
    let dir = tempfile::tempdir().unwrap();
    let served = node(dir.path()).await;
    let path = "m/44'/1234'/0'";

    let (status, body) = post(&served, None, "status", json!({})).await;
    assert_eq!((status, code(&body)), (401, "UNAUTHENTICATED"));
    let (status, body) = keeper(&served, "status", json!({})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["state"], "uninitialized");

    let (status, body) = keeper(&served, "sign", json!({"path": path, "message": ""})).await;
    assert_eq!((status, code(&body)), (423, "LOCKED"));
    let (status, body) = keeper(&served, "unlock", json!({"passphrase": PASSPHRASE})).await;
    assert_eq!((status, code(&body)), (409, "NOT_INITIALIZED"));

    let (status, body) = keeper(&served, "init", json!({"passphrase": PASSPHRASE})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["mnemonic"].as_str().unwrap().split(' ').count(), 24);
    let fingerprint = body["fingerprint"].clone();
    let (status, body) = keeper(&served, "init", json!({"passphrase": PASSPHRASE})).await;
    assert_eq!((status, code(&body)), (409, "ALREADY_INITIALIZED"));

    // A message across a 1 KiB boundary, as base64 in and out.
    let message: Vec<u8> = (0..1025u32).map(|i| (i % 251) as u8).collect();
    let encoded = STANDARD.encode(&message);
    let (status, signed) = keeper(&served, "sign", json!({"path": path, "message": encoded})).await;
    assert_eq!(status, 200, "{signed}");
    assert_eq!(bytes(&signed["signature"]).len(), 64);
    let verify = |message: &str| json!({"public_key": signed["public_key"], "message": message, "signature": signed["signature"]});
    let (_, verified) = keeper(&served, "verify", verify(&encoded)).await;
    assert_eq!(verified["valid"], true, "{verified}");
    let (_, verified) = keeper(&served, "verify", verify(&STANDARD.encode(b"other"))).await;
    assert_eq!(verified["valid"], false, "{verified}");
    let (status, body) = keeper(
        &served,
        "sign",
        json!({"path": path, "message": "not base64!"}),
    )
    .await;
    assert_eq!((status, code(&body)), (422, "INVALID_INPUT"));

    // 64 KiB through encrypt and back, and the statuses decrypt declares.
    let plaintext = STANDARD.encode(vec![7u8; 64 * 1024]);
    let input =
        json!({"key_name": "notes", "plaintext": plaintext, "aad": STANDARD.encode(b"row 1")});
    let (status, sealed) = keeper(&served, "encrypt", input).await;
    assert_eq!(status, 200, "{sealed}");
    let decrypt =
        |aad: &[u8]| json!({"ciphertext": sealed["ciphertext"], "aad": STANDARD.encode(aad)});
    let (status, opened) = keeper(&served, "decrypt", decrypt(b"row 1")).await;
    assert_eq!(status, 200, "{opened}");
    assert_eq!(opened["plaintext"], plaintext);
    let (status, body) = keeper(&served, "decrypt", decrypt(b"row 2")).await;
    assert_eq!((status, code(&body)), (422, "AAD_MISMATCH"));
    let (status, body) = keeper(&served, "rotate", json!({"key_name": "notes"})).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = keeper(
        &served,
        "retire",
        json!({"key_name": "notes", "version": 2}),
    )
    .await;
    assert_eq!((status, code(&body)), (409, "CURRENT_KEY_VERSION"));
    let (status, body) = keeper(
        &served,
        "retire",
        json!({"key_name": "notes", "version": 1}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = keeper(&served, "decrypt", decrypt(b"row 1")).await;
    assert_eq!((status, code(&body)), (410, "RETIRED_KEY_VERSION"));
    assert_eq!(body["error"]["details"]["key_version"], 1);

    // Locking, and the backoff after a wrong passphrase.
    let (status, body) = keeper(&served, "lock", json!({})).await;
    assert_eq!((status, &body["state"]), (200, &json!("locked")));
    let (status, body) = keeper(&served, "sign", json!({"path": path, "message": ""})).await;
    assert_eq!((status, code(&body)), (423, "LOCKED"));
    let (status, body) = keeper(&served, "unlock", json!({"passphrase": "not the one"})).await;
    assert_eq!((status, code(&body)), (403, "WRONG_PASSPHRASE"));
    assert_eq!(body["error"]["details"]["failed_unlocks"], 1);
    let (status, body) = keeper(&served, "unlock", json!({"passphrase": PASSPHRASE})).await;
    assert_eq!((status, code(&body)), (429, "TOO_MANY_ATTEMPTS"));
    let wait = body["error"]["details"]["retry_after_ms"].as_u64().unwrap();
    assert!(wait > 0 && wait <= BACKOFF_MS, "{body}");
    tokio::time::sleep(std::time::Duration::from_millis(wait + 20)).await;
    let (status, body) = keeper(&served, "unlock", json!({"passphrase": PASSPHRASE})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["state"], "unlocked");
    assert_eq!(body["fingerprint"], fingerprint);

    // The private-key export is internal: not served.
    let (status, body) = keeper(&served, "export_private_key", json!({"path": path})).await;
    assert_eq!((status, code(&body)), (404, "NOT_FOUND"));
}

#[tokio::test(flavor = "multi_thread")]
async fn its_tools_over_mcp_take_and_give_base64_and_fail_as_tool_results() {
    let dir = tempfile::tempdir().unwrap();
    let served = node(dir.path()).await;
    let (status, body) = keeper(&served, "init", json!({"passphrase": PASSPHRASE})).await;
    assert_eq!(status, 200, "{body}");
    let url = format!("http://{}/mcp", served.http);
    let message = STANDARD.encode(b"signed over MCP");
    let calls = json!([
        {"name": "secret.sign", "arguments": {"path": "m/0'", "message": message}},
        {"name": "secret.decrypt", "arguments": {"ciphertext": STANDARD.encode(b"too short")}},
        {"name": "secret.lock", "arguments": {}},
        {"name": "secret.sign", "arguments": {"path": "m/0'", "message": message}},
        {"name": "secret.unlock", "arguments": {"passphrase": PASSPHRASE}},
    ]);
    for client in McpClient::ALL {
        let session = mcp_session_with(client, &["--http", &url], Some(KEEPER), &calls).await;
        let tool = |name: &str| {
            session["tools"]
                .as_array()
                .unwrap()
                .iter()
                .find(|tool| tool["name"] == name)
                .cloned()
        };
        let sign = tool("secret.sign").expect("secret.sign is a tool");
        assert_eq!(sign["idempotent"], true, "{client:?}");
        assert!(
            tool("secret.export_private_key").is_none(),
            "{client:?}: internal operations are not tools"
        );

        let results = session["results"].as_array().unwrap();
        assert_eq!(results[0]["is_error"], false, "{client:?}: {}", results[0]);
        assert_eq!(bytes(&results[0]["structured"]["signature"]).len(), 64);
        let error = |i: usize| {
            assert_eq!(results[i]["is_error"], true, "{client:?}: {}", results[i]);
            results[i]["text"]["error"]["code"]
                .as_str()
                .unwrap()
                .to_string()
        };
        assert_eq!(error(1), "INVALID_INPUT");
        assert_eq!(results[2]["structured"]["state"], "locked");
        assert_eq!(error(3), "LOCKED");
        assert_eq!(results[4]["structured"]["state"], "unlocked");
    }
    // The unauthenticated see none of its tools.
    let anonymous = mcp_session_with(McpClient::ALL[0], &["--http", &url], None, &json!([])).await;
    assert!(
        anonymous["tools"]
            .as_array()
            .unwrap()
            .iter()
            .all(|tool| !tool["name"].as_str().unwrap().starts_with("secret.")),
        "{anonymous}"
    );
}
