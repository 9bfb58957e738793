//! The notes node as its author runs it: the crate's own binary (a three-line `main` over
//! the node and CLI libraries), started with a configuration file, called by the clients
//! a user would pick — curl, the Python MCP SDK, the CLI over QUIC and WebSocket, dig, and
//! an irpc client in another process — reloaded, its schemas exported and checked, and
//! stopped with a call in flight.

use std::path::Path;
use std::process::Output;
use std::time::{Duration, Instant};

use alknet_runtime::quic::NodeIdentity;
use alknet_tests::adapters::{self, dig, mcp_session};
use alknet_tests::new_api_key;
use alknet_tests::served::Served;
use serde_json::{Value, json};

const NODE: &str = env!("CARGO_BIN_EXE_notes-node");
const IRPC_CLIENT: &str = env!("CARGO_BIN_EXE_notes-irpc");

const LISTEN: &str = r#"
[listen]
http = "127.0.0.1:0"
call = "127.0.0.1:0"
websocket = "127.0.0.1:0"
dns = "127.0.0.1:0"
irpc = "127.0.0.1:0"

[node]
drain_ms = 5000
"#;

/// `notes-node serve` on `config`.
fn start(config: &str) -> Served {
    Served::start(Path::new(NODE), config, &[])
}

/// What the tests ask of a running node.
trait NotesNode {
    fn http(&self, operation: &str) -> String;
    fn signal(&self, signal: libc::c_int);
}

impl NotesNode for Served {
    fn http(&self, operation: &str) -> String {
        format!("http://{}/v1/notes/{operation}", self.address("http"))
    }

    fn signal(&self, signal: libc::c_int) {
        assert_eq!(
            unsafe { libc::kill(self.child.id() as libc::pid_t, signal) },
            0
        );
    }
}

/// `curl -X POST -d BODY URL`: the status and the body as JSON.
async fn post(url: &str, body: &str) -> (u16, Value) {
    let header = "content-type: application/json";
    let (status, body) = adapters::curl(&["-X", "POST", "-H", header, "-d", body, url]).await;
    (
        status.parse().unwrap(),
        serde_json::from_str(&body).unwrap_or(Value::Null),
    )
}

/// The node's own command line, as another process.
async fn cli(args: &[&str]) -> Output {
    tokio::process::Command::new(NODE)
        .args(args)
        .output()
        .await
        .expect("notes-node runs")
}

fn stdout_json(output: &Output) -> Value {
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "the command failed: {text}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON: {text}: {e}"))
}

#[tokio::test]
async fn the_users_service_answers_on_every_transport() {
    let (api_key, entry) = new_api_key(Path::new(NODE), "tester", &[]);
    let node = start(&format!("{LISTEN}\n{entry}"));

    let (status, added) = post(&node.http("add"), r#"{"text": "buy milk"}"#).await;
    assert_eq!(
        (status, &added),
        (200, &json!({"id": 1, "text": "buy milk"}))
    );
    let (status, missing) = post(&node.http("get"), r#"{"id": 9}"#).await;
    assert_eq!(status, 404);
    assert_eq!(missing["error"]["code"], "NO_SUCH_NOTE");
    assert_eq!(missing["error"]["details"], json!({"id": 9}));

    let mcp = format!("http://{}/mcp", node.address("http"));
    let session = mcp_session(
        &["--http", &mcp],
        None,
        &json!([{"name": "notes.add", "arguments": {"text": "call mum"}}]),
    )
    .await;
    let tools: Vec<&str> = session["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|tool| tool["name"].as_str().unwrap())
        .collect();
    assert!(tools.contains(&"notes.list"), "{tools:?}");
    assert_eq!(
        session["results"][0]["structured"],
        json!({"id": 2, "text": "call mum"})
    );

    let quic = cli(&[
        "call",
        "--node",
        &node.address("call").to_string(),
        "--node-key",
        &node.fingerprint,
        "--api-key",
        &api_key,
        "notes/list",
    ])
    .await;
    assert_eq!(
        stdout_json(&quic),
        json!([{"id": 1, "text": "buy milk"}, {"id": 2, "text": "call mum"}])
    );
    let ws = format!("ws://{}/call", node.address("websocket"));
    let websocket = cli(&[
        "call",
        "--ws",
        &ws,
        "--api-key",
        &api_key,
        "notes/get",
        r#"{"id": 2}"#,
    ])
    .await;
    assert_eq!(
        stdout_json(&websocket),
        json!({"id": 2, "text": "call mum"})
    );

    let answer = dig(node.address("dns"), "list.notes.alk.dev", "TXT", &[]).await;
    assert_eq!(answer.status, "NOERROR");
    let listed: Value = serde_json::from_str(&answer.txt.concat()).unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 2, "{listed}");
}

#[tokio::test]
async fn another_process_calls_over_irpc_once_a_reload_admits_its_key() {
    let node = start(LISTEN);
    let client = NodeIdentity::generate().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("client.pem");
    std::fs::write(&key, client.private_key_pem()).unwrap();
    let add = |text: &str| {
        let (address, key) = (node.address("irpc").to_string(), key.clone());
        let (fingerprint, text) = (node.fingerprint.clone(), text.to_string());
        async move {
            tokio::process::Command::new(IRPC_CLIENT)
                .arg(address)
                .arg(fingerprint)
                .arg(key)
                .arg(text)
                .output()
                .await
                .expect("notes-irpc runs")
        }
    };

    let refused = add("too early").await;
    assert!(!refused.status.success(), "an unknown key was served");

    let admitted = format!(
        "{LISTEN}\n[[public_keys]]\nfingerprint = \"{}\"\nidentity = \"node:notes-client\"\n",
        client.fingerprint()
    );
    std::fs::write(&node.config, admitted).unwrap();
    node.signal(libc::SIGHUP);
    let deadline = Instant::now() + Duration::from_secs(10);
    let added = loop {
        let output = add("over irpc").await;
        if output.status.success() {
            break stdout_json(&output);
        }
        assert!(
            Instant::now() < deadline,
            "the reloaded key was never admitted: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(added, json!({"id": 1, "text": "over irpc"}));
}

#[tokio::test]
async fn its_schemas_export_and_check_clean() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().to_str().unwrap();
    let exported = cli(&["schema", "export", "--out", out]).await;
    assert!(exported.status.success(), "{exported:?}");
    let document: Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("services/notes.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(document["namespace"], "notes");
    assert!(Path::new(out).join("openapi.json").exists());
    let checked = cli(&["schema", "check", "--dir", out]).await;
    assert!(
        checked.status.success(),
        "schema check of its own export failed: {}{}",
        String::from_utf8_lossy(&checked.stdout),
        String::from_utf8_lossy(&checked.stderr)
    );
}

#[tokio::test]
async fn a_call_in_flight_completes_when_the_node_is_stopped() {
    let mut node = start(LISTEN);
    post(&node.http("add"), r#"{"text": "one"}"#).await;
    let count = node.http("count");
    let in_flight = tokio::spawn(async move { post(&count, r#"{"ms": 1500}"#).await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    node.signal(libc::SIGTERM);
    tokio::time::sleep(Duration::from_millis(200)).await;

    let (status, refused) = post(&node.http("list"), "{}").await;
    assert_eq!(status, 503, "a call made while stopping: {refused}");
    assert_eq!(refused["error"]["code"], "UNAVAILABLE");

    assert_eq!(in_flight.await.unwrap(), (200, json!(1)));
    let stopped = tokio::task::spawn_blocking(move || {
        let status = node.child.wait().unwrap();
        (status, node)
    });
    let (status, _node) = tokio::time::timeout(Duration::from_secs(5), stopped)
        .await
        .expect("the node stops once its calls are done")
        .unwrap();
    assert!(status.success(), "{status}");
}
