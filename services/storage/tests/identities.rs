//! `StorageIdentityProvider` against `ConfigIdentityProvider`: the same identities, given
//! to each (as configuration text, and as nodes of a storage graph), resolve alike for
//! every kind of credential; and a key deleted from storage is refused on the next call.

use std::fmt::Write as _;
use std::sync::Arc;

use alknet_runtime::config::ConfigServiceImpl;
use alknet_runtime::credentials::{
    api_key_hash, key_to_hex, new_api_key, new_signing_key, sign_token,
};
use alknet_runtime::{
    Caller, ConfigIdentityProvider, Credential, Identity, IdentityProvider, OperationEnv,
    ResourceGrant,
};
use alknet_storage::{
    Commits, IDENTITY_GRAPH, StorageIdentityProvider, StorageProtocol, StorageService,
};
use proptest::prelude::*;
use serde_json::{Value, json};

/// One identity set: what each credential kind is given.
#[derive(Debug, Clone)]
struct Spec {
    /// Per API key: its scopes, whether it has a resource grant, and its expiry (none, in
    /// the past, in the future).
    api_keys: Vec<(Vec<String>, bool, Option<bool>)>,
    /// Per public key: its scopes and whether it is a cluster node.
    public_keys: Vec<(Vec<String>, bool)>,
    /// Per token key: its scopes.
    token_keys: Vec<Vec<String>>,
}

fn scopes() -> impl Strategy<Value = Vec<String>> {
    proptest::collection::vec("[a-z]{1,6}:(read|write|admin)", 0..3)
}

fn spec() -> impl Strategy<Value = Spec> {
    (
        proptest::collection::vec(
            (scopes(), any::<bool>(), proptest::option::of(any::<bool>())),
            0..5,
        ),
        proptest::collection::vec((scopes(), any::<bool>()), 0..4),
        proptest::collection::vec(scopes(), 0..3),
    )
        .prop_map(|(api_keys, public_keys, token_keys)| Spec {
            api_keys,
            public_keys,
            token_keys,
        })
}

/// The secrets of a set, made once, and the same set as configuration text and as storage
/// writes.
struct Made {
    api_keys: Vec<String>,
    fingerprints: Vec<String>,
    signers: Vec<(String, alknet_runtime::ed25519_dalek::SigningKey)>,
    toml: String,
    writes: Vec<Value>,
}

fn quoted(list: &[String]) -> String {
    let items: Vec<String> = list.iter().map(|s| format!("{s:?}")).collect();
    format!("[{}]", items.join(", "))
}

fn make(spec: &Spec) -> Made {
    let mut made = Made {
        api_keys: Vec::new(),
        fingerprints: Vec::new(),
        signers: Vec::new(),
        toml: String::new(),
        writes: Vec::new(),
    };
    let node = |node_type: &str, id: &str, attributes: Value| json!({"create_node": {"graph": IDENTITY_GRAPH, "id": id, "type": node_type, "attributes": attributes}});
    for (n, (scopes, grant, expires)) in spec.api_keys.iter().enumerate() {
        let key = new_api_key().unwrap();
        let (id, identity, hash) = (format!("key-{n}"), format!("user:{n}"), api_key_hash(&key));
        let resources: Vec<String> = grant
            .then(|| "graph:read".to_string())
            .into_iter()
            .collect();
        let expires = expires.map(|future| {
            if future {
                "2999-01-01T00:00:00Z"
            } else {
                "2001-01-01T00:00:00Z"
            }
        });
        write!(
            made.toml,
            "[[api_keys]]\nid = \"{id}\"\nhash = \"{hash}\"\nidentity = \"{identity}\"\nscopes = {}\nresources = {}\n",
            quoted(scopes),
            quoted(&resources)
        )
        .unwrap();
        let mut attributes =
            json!({"hash": hash, "identity": identity, "scopes": scopes, "resources": resources});
        if let Some(expires) = expires {
            // A TOML date and time there; a string in JSON.
            writeln!(made.toml, "expires = {expires}").unwrap();
            attributes["expires"] = json!(expires);
        }
        made.writes.push(node("api_key", &id, attributes));
        made.api_keys.push(key);
    }
    for (n, (scopes, cluster)) in spec.public_keys.iter().enumerate() {
        let key = new_signing_key().unwrap();
        let fingerprint = alknet_runtime::key_fingerprint(key.verifying_key().as_bytes());
        let identity = format!("node:{n}");
        write!(
            made.toml,
            "[[public_keys]]\nfingerprint = \"{fingerprint}\"\nidentity = \"{identity}\"\nscopes = {}\ncluster = {cluster}\n",
            quoted(scopes)
        )
        .unwrap();
        made.writes.push(node(
            "public_key",
            &fingerprint,
            json!({"identity": identity, "scopes": scopes, "cluster": cluster}),
        ));
        made.fingerprints.push(fingerprint);
    }
    for (n, scopes) in spec.token_keys.iter().enumerate() {
        let key = new_signing_key().unwrap();
        let (key_id, identity) = (format!("signer-{n}"), format!("svc:{n}"));
        let public_key = key_to_hex(key.verifying_key().as_bytes());
        write!(
            made.toml,
            "[[token_keys]]\nkey_id = \"{key_id}\"\npublic_key = \"{public_key}\"\nidentity = \"{identity}\"\nscopes = {}\n",
            quoted(scopes)
        )
        .unwrap();
        made.writes.push(node(
            "token_key",
            &key_id,
            json!({"public_key": public_key, "identity": identity, "scopes": scopes}),
        ));
        made.signers.push((key_id, key));
    }
    made
}

/// Every credential worth asking about for `made`: each valid one, and the ways each
/// kind can be wrong.
fn credentials(made: &Made) -> Vec<(String, bool)> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let stranger = new_signing_key().unwrap();
    let mut all: Vec<(String, bool)> = Vec::new();
    // (text, is a fingerprint)
    for key in &made.api_keys {
        all.push((key.clone(), false));
        let mut wrong = key.clone();
        let last = wrong.pop().unwrap();
        wrong.push(if last == 'a' { 'b' } else { 'a' });
        all.push((wrong, false));
    }
    all.push((new_api_key().unwrap(), false));
    all.push(("alk_short".to_string(), false));
    for fingerprint in &made.fingerprints {
        all.push((fingerprint.clone(), true));
    }
    all.push((alknet_runtime::key_fingerprint(&[9; 32]), true));
    for (key_id, key) in &made.signers {
        all.push((sign_token(key, key_id, now), false));
        all.push((sign_token(key, key_id, now - 3600), false));
        all.push((sign_token(&stranger, key_id, now), false));
    }
    all.push((sign_token(&stranger, "nobody", now), false));
    all.push(("alkt1.garbage".to_string(), false));
    all
}

type Answer = Result<(Identity, bool), (String, String)>;

async fn answer(provider: &dyn IdentityProvider, credential: &str, fingerprint: bool) -> Answer {
    if fingerprint {
        return provider
            .resolve_key(credential)
            .await
            .map(|holder| ((*holder.identity).clone(), holder.cluster))
            .map_err(|err| (err.code.to_string(), err.message.to_string()));
    }
    provider
        .resolve(Credential::bearer(credential))
        .await
        .map(|identity| ((*identity).clone(), false))
        .map_err(|err| (err.code.to_string(), err.message.to_string()))
}

/// An answer with the age in a stale token's error left out: the clock may pass a second
/// between the two resolutions.
fn without_seconds(answer: Answer) -> Answer {
    answer.map_err(|(code, message)| {
        let message = match message.split_once(" s ago") {
            Some((before, after)) => format!(
                "{} s ago{after}",
                before.trim_end_matches(|c: char| c.is_ascii_digit())
            ),
            None => message,
        };
        (code, message)
    })
}

/// A storage service in memory, and what it has committed.
fn storage_env() -> (OperationEnv, Commits) {
    let service = StorageService::in_memory().unwrap();
    let commits = service.commits();
    let env = OperationEnv::builder()
        .local(StorageProtocol::local(service))
        .build()
        .unwrap();
    (env, commits)
}

fn writer(env: &OperationEnv) -> OperationEnv {
    env.with_caller(Caller::new().identity(
        Identity::new("user:ops").with_resources([ResourceGrant::new("graph", ["read", "write"])]),
    ))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(16))]

    #[test]
    fn the_same_identities_resolve_alike_from_config_and_from_storage(spec in spec()) {
        let made = make(&spec);
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(async {
            let config = ConfigServiceImpl::from_text(made.toml.clone(), "the parity test").unwrap();
            let from_config = ConfigIdentityProvider::new(config.shared());

            let (env, _) = storage_env();
            let writer = writer(&env);
            let made_graph = writer.invoke("storage", "create_graph", json!({"graph": IDENTITY_GRAPH})).await;
            assert!(made_graph.result.is_ok());
            if !made.writes.is_empty() {
                let applied = writer.invoke("storage", "apply", json!({"writes": made.writes})).await;
                assert!(applied.result.is_ok(), "{applied:?}");
            }
            let empty = ConfigServiceImpl::from_text(String::new(), "no credentials").unwrap();
            let from_storage = StorageIdentityProvider::start(&env, IDENTITY_GRAPH, empty.shared()).await.unwrap();

            for (credential, fingerprint) in credentials(&made) {
                let expected = answer(&from_config, &credential, fingerprint).await;
                let got = answer(&from_storage, &credential, fingerprint).await;
                assert_eq!(without_seconds(got), without_seconds(expected), "{credential}");
            }
        });
    }
}

#[tokio::test]
async fn a_key_deleted_from_storage_is_refused_on_the_next_call() {
    let (env, commits) = storage_env();
    let writer = writer(&env);
    let empty = ConfigServiceImpl::from_text(String::new(), "no credentials").unwrap();
    // Started before the graph exists: no identities yet.
    let provider = StorageIdentityProvider::start(&env, IDENTITY_GRAPH, empty.shared())
        .await
        .unwrap()
        .with_commits(commits);
    let key = new_api_key().unwrap();
    assert!(provider.resolve(Credential::ApiKey(&key)).await.is_err());

    writer
        .invoke("storage", "create_graph", json!({"graph": IDENTITY_GRAPH}))
        .await;
    let added = writer
        .invoke(
            "storage",
            "create_node",
            json!({"graph": IDENTITY_GRAPH, "id": "ci", "type": "api_key",
                   "attributes": {"hash": api_key_hash(&key), "identity": "svc:ci", "scopes": ["echo:admin"]}}),
        )
        .await;
    assert!(added.result.is_ok(), "{added:?}");
    let ci = provider.resolve(Credential::ApiKey(&key)).await.unwrap();
    assert_eq!(
        (ci.id.as_str(), ci.has_scope("echo:admin")),
        ("svc:ci", true)
    );

    let revoked = writer
        .invoke(
            "storage",
            "delete_node",
            json!({"graph": IDENTITY_GRAPH, "id": "ci"}),
        )
        .await;
    assert!(revoked.result.is_ok());
    let refused = provider
        .resolve(Credential::ApiKey(&key))
        .await
        .unwrap_err();
    assert_eq!(refused.code, "UNAUTHENTICATED");

    // An entry that does not read is left out, and the others still resolve.
    let other = new_api_key().unwrap();
    let writes = json!({"writes": [
        {"create_node": {"graph": IDENTITY_GRAPH, "id": "broken", "type": "api_key", "attributes": {"hash": "sha256:nope", "identity": "svc:x"}}},
        {"create_node": {"graph": IDENTITY_GRAPH, "id": "ok", "type": "api_key", "attributes": {"hash": api_key_hash(&other), "identity": "svc:ok"}}},
    ]});
    assert!(
        writer
            .invoke("storage", "apply", writes)
            .await
            .result
            .is_ok()
    );
    assert_eq!(
        provider
            .resolve(Credential::ApiKey(&other))
            .await
            .unwrap()
            .id,
        "svc:ok"
    );
    let _: Arc<dyn IdentityProvider> = Arc::new(provider);
}

#[tokio::test]
async fn a_key_another_service_adds_to_the_file_resolves_within_the_poll() {
    let dir = tempfile::tempdir().unwrap();
    let settings = alknet_runtime::config::StorageSettings {
        file: Some(dir.path().join("db.sqlite3")),
        poll_ms: std::num::NonZeroU64::new(50),
        ..Default::default()
    };
    let env_over_file = || {
        OperationEnv::builder()
            .local(StorageProtocol::local(
                StorageService::open(&settings).unwrap(),
            ))
            .build()
            .unwrap()
    };
    // The node's service, and another over the same file: to SQLite, as another process
    // (`alknet keys add --config` while the node runs) would be.
    let (node, other) = (env_over_file(), env_over_file());
    let empty = ConfigServiceImpl::from_text(String::new(), "no credentials").unwrap();
    let provider = StorageIdentityProvider::start(&node, IDENTITY_GRAPH, empty.shared())
        .await
        .unwrap();
    let key = new_api_key().unwrap();
    let other = writer(&other);
    other
        .invoke("storage", "create_graph", json!({"graph": IDENTITY_GRAPH}))
        .await;
    let added = other
        .invoke(
            "storage",
            "create_node",
            json!({"graph": IDENTITY_GRAPH, "id": "ci", "type": "api_key",
                   "attributes": {"hash": api_key_hash(&key), "identity": "svc:ci"}}),
        )
        .await;
    assert!(added.result.is_ok(), "{added:?}");
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
    while provider.resolve(Credential::ApiKey(&key)).await.is_err() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the key is not resolved 5 s after another writer added it"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}
