//! The gateway as its user runs it: a notes node (here, in the test's process) serves
//! `notes` over the call protocol; `notes-gateway serve`, in its own process, mounts it;
//! curl calls `notes` on the gateway over HTTP, and the note is kept on the notes node.

use std::path::Path;

use alknet::Node;
use alknet_runtime::config::ConfigServiceImpl;
use alknet_runtime::quic::NodeIdentity;
use alknet_tests::adapters::curl;
use alknet_tests::served::Served;
use notes_node::{Notes, NotesProtocol};
use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_serves_the_notes_of_the_node_it_mounts() {
    let gateway_key = NodeIdentity::generate().unwrap();
    let notes = Node::builder(
        ConfigServiceImpl::from_text(
            format!(
                "[listen]\ncall = \"127.0.0.1:0\"\n\n\
                 [[public_keys]]\nfingerprint = \"{}\"\nidentity = \"node:gateway\"\ncluster = true\n",
                gateway_key.fingerprint()
            ),
            "the notes node's configuration",
        )
        .unwrap(),
    )
    .local(NotesProtocol::local(Notes::default()))
    .build()
    .unwrap();
    let listening = notes.start().await.unwrap();
    let notes_address = listening.address("call").unwrap().to_string();

    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("gateway.key");
    std::fs::write(&key_file, gateway_key.private_key_pem()).unwrap();
    let gateway = Served::start(
        Path::new(env!("CARGO_BIN_EXE_notes-gateway")),
        &format!(
            "[node]\nkey = {:?}\n[listen]\nhttp = \"127.0.0.1:0\"\n",
            key_file
        ),
        &[
            ("NOTES_NODE", &notes_address),
            ("NOTES_NODE_KEY", notes.identity().fingerprint()),
        ],
    );
    assert_eq!(gateway.fingerprint, gateway_key.fingerprint());

    let add = format!("http://{}/v1/notes/add", gateway.address("http"));
    let (status, body) = curl(&["--data", r#"{"text": "via the gateway"}"#, &add]).await;
    assert_eq!(status, "200", "{body}");
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap(),
        json!({"id": 1, "text": "via the gateway"})
    );
    let kept = notes.env().invoke("notes", "list", json!({})).await;
    assert_eq!(
        kept.result.unwrap(),
        json!([{"id": 1, "text": "via the gateway"}])
    );

    // A declared error crosses the mount with its code and details.
    let get = format!("http://{}/v1/notes/get", gateway.address("http"));
    let (status, body) = curl(&["--data", r#"{"id": 9}"#, &get]).await;
    assert_eq!(status, "404", "{body}");
    let error: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(error["error"]["code"], "NO_SUCH_NOTE");
    assert_eq!(error["error"]["details"], json!({"id": 9}));

    // Readiness names the mounted node, and says when its connection is gone.
    let readyz = format!("http://{}/readyz", gateway.address("http"));
    let remote_check = |body: &str| {
        let answer: Value = serde_json::from_str(body).unwrap();
        answer["checks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|check| check["name"] == "remote.notes-node")
            .cloned()
            .unwrap_or_else(|| panic!("no check `remote.notes-node` in {answer}"))
    };
    let (status, body) = curl(&[&readyz]).await;
    assert_eq!(status, "200", "{body}");
    assert_eq!(remote_check(&body)["ready"], true);
    listening.stop().await;
    drop(notes);
    let mut answer = (String::new(), String::new());
    for _ in 0..50 {
        answer = curl(&[&readyz]).await;
        if answer.0 == "503" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let (status, body) = answer;
    assert_eq!(status, "503", "{body}");
    let check = remote_check(&body);
    assert_eq!(check["ready"], false);
    assert!(
        check["detail"]
            .as_str()
            .unwrap()
            .starts_with("the connection to the mounted node closed"),
        "{check}"
    );
}
