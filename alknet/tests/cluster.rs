//! The seeds' topology as a real network: `examples/cluster/`'s five configurations, each
//! served by the `alknet` binary in a Linux network namespace of its own, with its own
//! address, joined by veth links to one bridge (this process sits on the bridge too, as
//! the outside caller). Needs root (`ip netns`), as CI has; `docs/topology.md` says how to
//! run it by hand.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use alknet_runtime::call::{CallConfig, CallEndpoint, CallOptions};
use alknet_runtime::quic::{NodeIdentity, PeerKey};
use alknet_tests::adapters::{curl, dig, mcp_session};
use alknet_tests::netns::Network;
use alknet_tests::served::{Served, output_of};
use serde_json::Value;

/// The roles, in the order their addresses are given (`.1` to `.5`), and the ports
/// `examples/cluster/` gives each.
const ROLES: [(&str, &[u16]); 5] = [
    ("auth", &[4434, 4435]),
    ("secret", &[4444, 4445]),
    ("head", &[8080, 4433, 4480, 5353]),
    ("worker-1", &[4533]),
    ("worker-2", &[4543]),
];

const PASSPHRASE: &str = "correct horse battery staple";

/// The hosts of [`ROLES`], on a network of their own.
fn network() -> Network {
    let roles: Vec<&str> = ROLES.iter().map(|(role, _)| *role).collect();
    Network::new(&roles)
}

/// `role`'s configuration from `examples/cluster/`, with the cluster's fingerprints and
/// every role's addresses in `network`.
fn configuration(network: &Network, role: &str, fingerprints: &[(&str, String)]) -> String {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/cluster");
    let mut text = std::fs::read_to_string(example.join(format!("{role}.toml"))).unwrap();
    for (name, ports) in ROLES {
        for port in ports {
            let address = format!("{}:{port}", network.address(name));
            text = text.replace(&format!("127.0.0.1:{port}"), &address);
        }
    }
    // A host name alone (MCP's allowed hosts) is the node's own.
    text = text.replace("\"127.0.0.1\"", &format!("\"{}\"", network.address(role)));
    for (name, fingerprint) in fingerprints {
        let placeholder = format!("{}_FINGERPRINT", name.to_uppercase().replace('-', "_"));
        text = text.replace(&placeholder, fingerprint);
    }
    text
}

/// `alknet serve` on `role`'s host, in `dir` (where the configurations name their files).
fn serve(network: &Network, role: &str, dir: &Path) -> Served {
    let mut command = network.command(role, env!("CARGO_BIN_EXE_alknet"));
    command.current_dir(dir);
    Served::run(command, &dir.join(format!("{role}.toml")))
}

/// `alknet ARGS` in `dir`, as the operator on that node's files; what it printed.
fn alknet(dir: &Path, args: &[&str], envs: &[(&str, &str)]) -> String {
    let mut command = Command::new(env!("CARGO_BIN_EXE_alknet"));
    command
        .args(args)
        .envs(envs.iter().copied())
        .current_dir(dir);
    output_of(command)
}

/// `keys add-node` on the auth node's storage.
fn add_node(dir: &Path, fingerprint: &str, identity: &str, grants: &[&str]) {
    let mut args = vec![
        "keys",
        "add-node",
        "--config",
        "auth.toml",
        "--fingerprint",
        fingerprint,
        "--identity",
        identity,
    ];
    args.extend_from_slice(grants);
    alknet(dir, &args, &[]);
}

/// `POST /v1/{operation}` on the head, as `key`: the status, the body as JSON, the time.
async fn post(head: &str, key: &str, operation: &str, input: &str) -> (String, Value, Duration) {
    let started = Instant::now();
    let (status, body) = curl(&[
        "-H",
        &format!("authorization: Bearer {key}"),
        "-H",
        "content-type: application/json",
        "-d",
        input,
        &format!("http://{head}/v1/{operation}"),
    ])
    .await;
    let body = serde_json::from_str(&body).unwrap_or(Value::String(body));
    (status, body, started.elapsed())
}

/// `post` until it answers `status`, for at most `within`.
async fn post_until(
    head: &str,
    key: &str,
    operation: &str,
    input: &str,
    status: &str,
    within: Duration,
) -> Value {
    let started = Instant::now();
    loop {
        let (got, body, _) = post(head, key, operation, input).await;
        if got == status {
            return body;
        }
        assert!(
            started.elapsed() < within,
            "{operation}: still {got} {body} after {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_seeds_topology_runs_as_a_network_of_namespaces() {
    let network = network();
    let dir = tempfile::tempdir().unwrap();
    let keys: Vec<(&str, NodeIdentity)> = ROLES
        .iter()
        .map(|(role, _)| (*role, NodeIdentity::generate().unwrap()))
        .collect();
    let fingerprints: Vec<(&str, String)> = keys
        .iter()
        .map(|(role, key)| (*role, key.fingerprint().to_string()))
        .collect();
    let fingerprint = |role: &str| {
        fingerprints
            .iter()
            .find(|(r, _)| *r == role)
            .unwrap()
            .1
            .clone()
    };
    for (role, key) in &keys {
        std::fs::write(
            dir.path().join(format!("{role}.key")),
            key.private_key_pem(),
        )
        .unwrap();
        let config = configuration(&network, role, &fingerprints);
        std::fs::write(dir.path().join(format!("{role}.toml")), config).unwrap();
    }

    // The operator's set-up, as auth.toml's comment says: the head's key, a worker's key
    // (not a cluster node's), and a caller's API key, kept in the auth node's storage.
    let path = dir.path();
    let head_key = fingerprint("head");
    add_node(
        path,
        &head_key,
        "node:head",
        &["--scope", "auth:verify", "--cluster"],
    );
    add_node(path, &fingerprint("worker-1"), "node:worker-1", &[]);
    let added = alknet(
        path,
        &[
            "keys",
            "add",
            "--config",
            "auth.toml",
            "--id",
            "ci",
            "--scope",
            "secret:use",
            "--scope",
            "echo:admin",
            "--scope",
            "notary:use",
            "--resource",
            "graph:*",
        ],
        &[],
    );
    let ci = added
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with("alk_"))
        .unwrap()
        .to_string();
    alknet(
        path,
        &["secret", "init", "--config", "secret.toml"],
        &[("ALKNET_SECRET_PASSPHRASE", PASSPHRASE)],
    );

    let _auth = serve(&network, "auth", path);
    let secret = serve(&network, "secret", path);
    let _workers = [
        serve(&network, "worker-1", path),
        serve(&network, "worker-2", path),
    ];
    let head_node = serve(&network, "head", path);
    let head = head_node.address("http").to_string();
    assert!(head.starts_with(&network.address("head")), "{head}");

    // Every peer is reached: readiness says so.
    let started = Instant::now();
    loop {
        let (status, body) = curl(&[&format!("http://{head}/readyz")]).await;
        if status == "200" {
            // Each link by what it carries: irpc for auth and secret, the call protocol to
            // the workers.
            let checks: Value = serde_json::from_str(&body).unwrap();
            let mut names: Vec<&str> = checks["checks"]
                .as_array()
                .unwrap()
                .iter()
                .filter_map(|check| check["name"].as_str())
                .filter(|name| !name.starts_with("listen.") && *name != "calls")
                .collect();
            names.sort();
            assert_eq!(
                names,
                ["irpc.auth", "irpc.secret", "peer.worker-1", "peer.worker-2"]
            );
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "not ready: {body}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // The caller is resolved on the auth node; echo runs on worker-1, shout on worker-2.
    let (status, said, _) = post(&head, &ci, "echo/say", r#"{"text": "over the network"}"#).await;
    assert_eq!(
        (status.as_str(), &said["text"]),
        ("200", &Value::from("over the network")),
        "{said}"
    );
    let (status, shouted, _) = post(&head, &ci, "echo/shout", r#"{"text": "hey"}"#).await;
    assert_eq!((status.as_str(), &shouted), ("200", &Value::from("HEY")));
    let (status, _, _) = post(&head, "alk_unknown", "echo/served", "{}").await;
    assert_eq!(status, "401");

    // The seed is on the secret node: unlocked there, a key derived there.
    let (status, unlocked, _) = post(
        &head,
        &ci,
        "secret/unlock",
        &format!(r#"{{"passphrase": "{PASSPHRASE}"}}"#),
    )
    .await;
    assert_eq!(status, "200", "{unlocked}");
    let derive = r#"{"path": "m/44'/1234'/0'"}"#;
    let (status, derived, _) = post(&head, &ci, "secret/public_key", derive).await;
    assert_eq!(status, "200", "{derived}");

    // One operation across the cluster: `notary/notarize` on the head asks the auth node
    // who the caller is, has the secret node sign, writes to the head's storage and has
    // worker-1 echo — each nested call as the caller.
    let (status, note, _) = post(&head, &ci, "notary/notarize", r#"{"text": "signed"}"#).await;
    assert_eq!(status, "200", "{note}");
    assert_eq!(
        (&note["signer"], &note["echoed"]),
        (&Value::from("key:ci"), &Value::from("signed"))
    );
    let verify = serde_json::json!({
        "path": alknet_example::notary::NOTARY_KEY_PATH,
        "message": alknet_runtime::Binary(b"signed".to_vec()),
        "signature": note["signature"],
    });
    let (status, verified, _) = post(&head, &ci, "secret/verify", &verify.to_string()).await;
    assert_eq!(
        (status.as_str(), &verified["valid"]),
        ("200", &Value::Bool(true)),
        "{verified}"
    );
    let kept = serde_json::json!({"graph": "notary", "id": note["id"]});
    let (status, kept, _) = post(&head, &ci, "storage/get_node", &kept.to_string()).await;
    assert_eq!(
        (status.as_str(), &kept["attributes"]["signer"]),
        ("200", &Value::from("key:ci")),
        "{kept}"
    );

    // Storage is the head's own.
    let (status, graph, _) =
        post(&head, &ci, "storage/create_graph", r#"{"graph": "orders"}"#).await;
    assert_eq!(status, "200", "{graph}");

    // Every transport of the head reaches the workers: MCP (the Python SDK), DNS (dig) and
    // the call protocol over WebSocket (`alknet call --ws`).
    let calls = serde_json::json!([{"name": "echo.say", "arguments": {"text": "mcp"}}]);
    let session = mcp_session(
        &["--http", &format!("http://{head}/mcp")],
        Some(&ci),
        &calls,
    )
    .await;
    assert_eq!(
        session["results"][0]["structured"]["text"], "mcp",
        "{session}"
    );
    // `{"text":"hi"}`, base64url.
    let dns = dig(
        head_node.address("dns"),
        "eyJ0ZXh0IjoiaGkifQ.say.echo.alk.dev",
        "TXT",
        &[],
    )
    .await;
    assert_eq!(
        (dns.status.as_str(), dns.json()["text"].clone()),
        ("NOERROR", Value::from("hi"))
    );
    let websocket = format!("ws://{}/call", head_node.address("websocket"));
    let said = alknet(
        path,
        &["call", "--ws", &websocket, "echo/say", r#"{"text": "ws"}"#],
        &[],
    );
    assert!(said.contains("\"ws\""), "{said}");

    // The listing is the cluster's: the operations of every role.
    let (status, listing) = curl(&[&format!("http://{head}/v1/operations")]).await;
    assert_eq!(status, "200");
    for operation in [
        "echo/say",
        "secret/sign",
        "storage/get_node",
        "auth/whoami",
        "config/status",
    ] {
        assert!(
            listing.contains(&format!("\"{operation}\"")),
            "{operation} is not listed"
        );
    }

    // The secret node is killed: its operations answer UNAVAILABLE within 1 s, and work
    // again when it is back (locked: the seed was in its memory only).
    drop(secret);
    let (status, body, took) = post(&head, &ci, "secret/status", "{}").await;
    assert_eq!(status, "503", "{body}");
    assert_eq!(body["error"]["code"], "UNAVAILABLE", "{body}");
    assert!(took < Duration::from_secs(1), "took {took:?}");
    let (_, again, took) = post(&head, &ci, "secret/status", "{}").await;
    assert!(took < Duration::from_secs(1), "took {took:?}: {again}");
    let _secret = serve(&network, "secret", path);
    let status = post_until(
        &head,
        &ci,
        "secret/status",
        "{}",
        "200",
        Duration::from_secs(5),
    )
    .await;
    assert_eq!(status["state"], "locked", "{status}");

    // A worker's key is an outside caller's at the head: what it asserts about whom it
    // calls for is ignored, and its calls run as its own identity.
    let worker = &keys.iter().find(|(role, _)| *role == "worker-1").unwrap().1;
    let from = format!("{}:0", network.outside()).parse().unwrap();
    let endpoint = CallEndpoint::bind(from, worker, CallConfig::default()).unwrap();
    let head_call = head_node.address("call");
    let connection = endpoint
        .connect(head_call, PeerKey::Pinned(head_key.clone()))
        .await
        .unwrap();
    let whoami = connection
        .call_with(
            "/auth/whoami",
            Value::Null,
            &CallOptions::new().forwarded_for("key:ci"),
        )
        .await
        .unwrap();
    assert_eq!(whoami["id"], "node:worker-1", "{whoami}");
    // The call protocol on the head reaches what the workers serve, too.
    let said = connection
        .call("/echo/say", serde_json::json!({"text": "quic"}))
        .await
        .unwrap();
    assert_eq!(said["text"], "quic");
}
