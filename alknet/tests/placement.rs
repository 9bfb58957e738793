//! `[services]`: a head whose `echo` runs on a worker — the `alknet` binary in a process of
//! its own — reached over the call protocol and over irpc. The head starts while the
//! worker is down, the worker comes, is killed (`SIGKILL`: no goodbye on the wire) and
//! comes back; the head is never restarted.

use std::net::UdpSocket;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use alknet::Node;
use alknet_example::{EchoProtocol, EchoService};
use alknet_runtime::Credential;
use alknet_runtime::config::{ConfigServiceImpl, ReloadPart};
use alknet_runtime::quic::NodeIdentity;
use alknet_tests::adapters::curl;
use alknet_tests::served::{Served, output_of};
use serde_json::{Value, json};

/// A UDP port nothing listens on now.
fn free_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn write_key(path: &Path) -> String {
    let key = NodeIdentity::generate().unwrap();
    std::fs::write(path, key.private_key_pem()).unwrap();
    key.fingerprint().to_string()
}

/// `alknet serve` on `config`, in a process of its own; killed (`SIGKILL`) when dropped.
fn serve(config: &Path) -> Served {
    Served::run(Command::new(env!("CARGO_BIN_EXE_alknet")), config)
}

/// The worker: `echo` on the call protocol and irpc, for the head's key.
fn start_worker(dir: &Path, call: u16, irpc: u16, head: &str) -> Served {
    let config = dir.join("worker.toml");
    std::fs::write(
        &config,
        format!(
            "[node]\nkey = {:?}\n\n[listen]\ncall = \"127.0.0.1:{call}\"\nirpc = \"127.0.0.1:{irpc}\"\n\n\
             [services]\nsecret = \"off\"\nstorage = \"off\"\n\n\
             [[public_keys]]\nfingerprint = \"{head}\"\nidentity = \"node:head\"\ncluster = true\n",
            dir.join("worker.key")
        ),
    )
    .unwrap();
    serve(&config)
}

/// The configuration of a head serving nothing of its own but `echo`, which `[services]`
/// places on the worker at those ports with that key.
fn head_config(dir: &Path, over: &str, call: u16, irpc: u16, worker: &str) -> String {
    format!(
        "[node]\nkey = {:?}\n\n[[peers]]\nname = \"worker\"\naddress = \"127.0.0.1:{call}\"\nirpc = \"127.0.0.1:{irpc}\"\nfingerprint = \"{worker}\"\n\n\
         [services]\necho = {{ peer = \"worker\", over = \"{over}\" }}\n",
        dir.join("head.key")
    )
}

/// That head.
fn head(dir: &Path, over: &str, call: u16, irpc: u16, worker: &str) -> Node {
    let config = head_config(dir, over, call, irpc, worker);
    head_over(ConfigServiceImpl::from_text(config, "head's").unwrap())
}

fn head_over(config: ConfigServiceImpl) -> Node {
    Node::builder(config)
        .local(EchoProtocol::local(EchoService::default()))
        .without_secret()
        .without_storage()
        .build()
        .unwrap()
}

async fn say(node: &Node, text: &str) -> (Result<Value, String>, Duration) {
    let started = Instant::now();
    let answer = node
        .env()
        .invoke("echo", "say", json!({ "text": text }))
        .await;
    let result = answer
        .result
        .map_err(|err| format!("{}: {}", err.code, err.message));
    (result, started.elapsed())
}

/// Call until `echo/say` answers, for at most 5 s (a peer back is reached within the
/// longest redial delay, 2 s).
async fn say_until_answered(node: &Node, text: &str) -> Duration {
    let started = Instant::now();
    loop {
        match say(node, text).await.0 {
            Ok(output) => {
                assert_eq!(output["text"], text);
                return started.elapsed();
            }
            Err(err) if started.elapsed() < Duration::from_secs(5) => {
                assert!(err.starts_with("UNAVAILABLE"), "{err}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(err) => panic!("the worker was not reached again within 5 s: {err}"),
        }
    }
}

fn assert_unavailable_at_once(
    over: &str,
    what: &str,
    (result, took): (Result<Value, String>, Duration),
) {
    let err = result.expect_err(what);
    assert!(err.starts_with("UNAVAILABLE"), "{over}, {what}: {err}");
    assert!(
        took < Duration::from_secs(1),
        "{over}, {what}: took {took:?}: {err}"
    );
}

async fn a_service_on_a_peer_follows_the_peer(over: &str) {
    let dir = tempfile::tempdir().unwrap();
    let head_key = write_key(&dir.path().join("head.key"));
    let worker_key = write_key(&dir.path().join("worker.key"));
    let (call, irpc) = (free_port(), free_port());
    let head = head(dir.path(), over, call, irpc, &worker_key);

    // The head lists `echo` as its own, from the declaration, with the worker down.
    let echo = head.services().into_iter().find(|s| s.namespace == "echo");
    assert!(echo.is_some_and(|echo| echo.operations.iter().any(|op| op.name == "say")));
    assert_unavailable_at_once(over, "before the worker started", say(&head, "early").await);
    // Calls while the redial waits fail at once, naming why the last attempt failed.
    let (again, took) = say(&head, "early").await;
    assert!(took < Duration::from_millis(100), "{over}: {took:?}");
    assert!(again.unwrap_err().contains("next attempt in"), "{over}");

    let worker = start_worker(dir.path(), call, irpc, &head_key);
    say_until_answered(&head, "hello").await;
    // A call ending on the worker passes its policy as a cluster node's: the head's.
    for n in 0..20 {
        assert_eq!(
            say(&head, &format!("n{n}")).await.0.unwrap()["text"],
            format!("n{n}")
        );
    }

    // Killed: no CONNECTION_CLOSE reaches the head; the connection's idle timeout (600 ms
    // after the last keep-alive) ends it, and every call after that fails at once.
    drop(worker);
    let (result, took) = say(&head, "gone").await;
    assert!(result.is_err(), "{over}: the killed worker answered");
    assert!(
        took < Duration::from_secs(1),
        "{over}: the first call after the kill took {took:?}"
    );
    assert_unavailable_at_once(over, "after the kill", say(&head, "gone").await);

    let _back = start_worker(dir.path(), call, irpc, &head_key);
    let took = say_until_answered(&head, "back").await;
    assert!(
        took < Duration::from_secs(3),
        "{over}: reached again after {took:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_on_a_peer_over_the_call_protocol_follows_the_peer() {
    a_service_on_a_peer_follows_the_peer("call").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_on_a_peer_over_irpc_follows_the_peer() {
    a_service_on_a_peer_follows_the_peer("irpc").await;
}

/// The worker moves — another process, with another key, at other ports — and the head's
/// `[[peers]]` entry is changed and reloaded: calls reach the worker where it is now,
/// without a restart of the head.
async fn a_peer_that_moved_is_reached_after_a_reload(over: &str) {
    let dir = tempfile::tempdir().unwrap();
    let head_key = write_key(&dir.path().join("head.key"));
    let (old, new) = (dir.path().join("old"), dir.path().join("new"));
    std::fs::create_dir_all(&old).unwrap();
    std::fs::create_dir_all(&new).unwrap();
    let (old_key, new_key) = (
        write_key(&old.join("worker.key")),
        write_key(&new.join("worker.key")),
    );
    let (old_ports, new_ports) = ((free_port(), free_port()), (free_port(), free_port()));
    let config = dir.path().join("head.toml");
    let text = head_config(dir.path(), over, old_ports.0, old_ports.1, &old_key);
    std::fs::write(&config, text).unwrap();
    let head = head_over(ConfigServiceImpl::from_file(&config).unwrap());

    let old_worker = start_worker(&old, old_ports.0, old_ports.1, &head_key);
    say_until_answered(&head, "before").await;
    let _new_worker = start_worker(&new, new_ports.0, new_ports.1, &head_key);
    drop(old_worker);
    let text = head_config(dir.path(), over, new_ports.0, new_ports.1, &new_key);
    std::fs::write(&config, text).unwrap();
    head.config().reload(ReloadPart::All).unwrap();
    let took = say_until_answered(&head, "moved").await;
    assert!(
        took < Duration::from_secs(3),
        "{over}: reached after {took:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_moved_is_reached_over_the_call_protocol_after_a_reload() {
    a_peer_that_moved_is_reached_after_a_reload("call").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_moved_is_reached_over_irpc_after_a_reload() {
    a_peer_that_moved_is_reached_after_a_reload("irpc").await;
}

#[test]
fn a_placement_naming_a_service_the_node_lacks_is_refused_naming_what_it_has() {
    let config = "[services]\nnotes = \"off\"\n";
    let err = Node::builder(ConfigServiceImpl::from_text(config, "inline").unwrap())
        .without_secret()
        .without_storage()
        .build()
        .err()
        .expect("an unknown namespace is refused");
    assert_eq!(
        err.to_string(),
        "[services] places `notes`, which this node does not have; it has `auth`, `config`"
    );
}

fn alknet(args: &[&str]) -> String {
    let mut command = Command::new(env!("CARGO_BIN_EXE_alknet"));
    command.args(args);
    output_of(command)
}

/// `keys add` on the auth node's database: the key it prints.
fn add_key(config: &str, id: &str) -> String {
    let printed = alknet(&[
        "keys",
        "add",
        "--config",
        config,
        "--id",
        id,
        "--scope",
        "echo:admin",
    ]);
    let key = printed
        .lines()
        .map(str::trim)
        .find(|line| line.starts_with("alk_"));
    key.expect("keys add prints the key").to_string()
}

async fn resolve(head: &Node, key: &str) -> Result<String, String> {
    let resolved = head.identities().resolve(Credential::ApiKey(key)).await;
    resolved
        .map(|identity| identity.id.clone())
        .map_err(|err| format!("{}: {}", err.code, err.message))
}

/// `resolve` until `done` holds of the answer, for at most `within`.
async fn resolve_until(
    head: &Node,
    key: &str,
    within: Duration,
    done: impl Fn(&Result<String, String>) -> bool,
) -> Result<String, String> {
    let started = Instant::now();
    loop {
        let answer = resolve(head, key).await;
        if done(&answer) {
            return answer;
        }
        assert!(
            started.elapsed() < within,
            "still {answer:?} after {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The seeds' auth node — identities in SQLite, served over irpc — with the head's key
/// kept there as a cluster node's, holding `scopes`/`resources`, and two API keys.
struct AuthNode {
    config: std::path::PathBuf,
    irpc: u16,
    key: String,
    ci: String,
    deploy: String,
}

impl AuthNode {
    fn prepare(dir: &Path, head_key: &str, grant: &[&str]) -> AuthNode {
        let key = write_key(&dir.join("auth.key"));
        let irpc = free_port();
        let config = dir.join("auth.toml");
        std::fs::write(
            &config,
            format!(
                "[node]\nkey = {:?}\n\n[listen]\nirpc = \"127.0.0.1:{irpc}\"\n\n[storage]\nfile = {:?}\nidentities = true\npoll_ms = 100\n\n[services]\nsecret = \"off\"\n",
                dir.join("auth.key"),
                dir.join("auth.sqlite3")
            ),
        )
        .unwrap();
        let path = config.to_str().unwrap();
        let mut add_node = vec![
            "keys",
            "add-node",
            "--config",
            path,
            "--fingerprint",
            head_key,
            "--identity",
            "node:head",
            "--cluster",
        ];
        add_node.extend_from_slice(grant);
        alknet(&add_node);
        let (ci, deploy) = (add_key(path, "ci"), add_key(path, "deploy"));
        AuthNode {
            config,
            irpc,
            key,
            ci,
            deploy,
        }
    }

    fn start(&self) -> Served {
        serve(&self.config)
    }

    fn revoke(&self, id: &str) {
        alknet(&[
            "keys",
            "revoke",
            "--config",
            self.config.to_str().unwrap(),
            "--id",
            id,
        ]);
    }

    /// A head reaching `namespace` there over irpc, with `settings` besides.
    fn head(&self, dir: &Path, namespace: &str, settings: &str) -> Node {
        let config = format!(
            "[node]\nkey = {:?}\n\n[[peers]]\nname = \"auth\"\naddress = \"127.0.0.1:1\"\nirpc = \"127.0.0.1:{}\"\nfingerprint = \"{}\"\n\n\
             [services]\n{namespace} = {{ peer = \"auth\", over = \"irpc\" }}\n\n{settings}",
            dir.join("head.key"),
            self.irpc,
            self.key
        );
        Node::builder(ConfigServiceImpl::from_text(config, "head's").unwrap())
            .local(EchoProtocol::local(EchoService::default()))
            .without_secret()
            .build()
            .unwrap()
    }
}

/// The head asks the auth node's `auth` service (over irpc) about each credential and keeps
/// each answer for `[auth] cache_ms`: a key revoked there is refused here once its answer
/// is older than that, and, with the auth node away, nothing is resolved past it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_head_resolves_callers_through_the_auth_service_on_the_auth_node() {
    let dir = tempfile::tempdir().unwrap();
    let head_key = write_key(&dir.path().join("head.key"));
    let auth = AuthNode::prepare(dir.path(), &head_key, &["--scope", "auth:verify"]);
    let auth_node = auth.start();
    let head = auth.head(
        dir.path(),
        "auth",
        "[auth]\ncache_ms = 500\n\n[storage]\nin_memory = true\n",
    );
    assert_eq!(resolve(&head, &auth.ci).await, Ok("key:ci".to_string()));
    assert_eq!(
        resolve(&head, &auth.deploy).await,
        Ok("key:deploy".to_string())
    );
    let unknown = resolve(&head, "alk_unknown").await.unwrap_err();
    assert!(unknown.starts_with("UNAUTHENTICATED"), "{unknown}");

    // Revoked on the auth node (by another process, which its poll notices): refused here
    // once the answer kept is older than 500 ms.
    let revoked = Instant::now();
    auth.revoke("ci");
    let refused = resolve_until(&head, &auth.ci, Duration::from_secs(5), Result::is_err).await;
    assert!(refused.unwrap_err().starts_with("UNAUTHENTICATED"));
    assert!(
        revoked.elapsed() < Duration::from_secs(2),
        "{:?}",
        revoked.elapsed()
    );

    // The auth node is killed: answers kept are used up, then the head cannot resolve.
    drop(auth_node);
    let gone = resolve_until(&head, &auth.deploy, Duration::from_secs(3), Result::is_err).await;
    assert!(gone.unwrap_err().starts_with("UNAVAILABLE"));

    // Back: resolved again, without restarting the head.
    let _back = auth.start();
    let again = resolve_until(&head, &auth.deploy, Duration::from_secs(5), Result::is_ok).await;
    assert_eq!(again, Ok("key:deploy".to_string()));
}

/// `/readyz` of a head whose `auth` is on a peer over irpc: the irpc link is checked —
/// not ready, naming why, while the auth node is down; ready once it is up, without a
/// call — and the peer's call-protocol address (nothing listens there) is not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_follows_an_irpc_placement_and_not_the_peers_call_listener() {
    let dir = tempfile::tempdir().unwrap();
    let head_key = write_key(&dir.path().join("head.key"));
    let auth = AuthNode::prepare(dir.path(), &head_key, &["--scope", "auth:verify"]);
    let http = free_port();
    let head = auth.head(
        dir.path(),
        "auth",
        &format!("[listen]\nhttp = \"127.0.0.1:{http}\"\n\n[storage]\nin_memory = true\n"),
    );
    let _listeners = head.start().await.unwrap();
    let readyz = || async {
        let (status, body) = curl(&[&format!("http://127.0.0.1:{http}/readyz")]).await;
        let body: Value = serde_json::from_str(&body).unwrap();
        let check = |name: &str| {
            body["checks"]
                .as_array()
                .unwrap()
                .iter()
                .find(|check| check["name"] == name)
                .cloned()
        };
        assert_eq!(check("peer.auth"), None, "{body}");
        (status, check("irpc.auth").expect("an irpc.auth check"))
    };

    let (status, check) = readyz().await;
    assert_eq!((status.as_str(), &check["ready"]), ("503", &json!(false)));
    let detail = check["detail"].as_str().unwrap();
    assert!(detail.starts_with("`auth` on peer `auth`: "), "{detail}");

    let _auth_node = auth.start();
    let started = Instant::now();
    loop {
        let (status, check) = readyz().await;
        if status == "200" {
            assert_eq!(check["ready"], json!(true));
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "{check}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A node may instead keep a copy of the identities with `[storage] identities` over the
/// auth node's `storage`: it follows revocations with `watch`, and trusts its copy for
/// `identities_max_stale_ms` once the auth node is gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_resolves_callers_against_identities_in_storage_on_a_peer() {
    let dir = tempfile::tempdir().unwrap();
    let head_key = write_key(&dir.path().join("head.key"));
    let auth = AuthNode::prepare(dir.path(), &head_key, &["--resource", "graph:read"]);
    let auth_node = auth.start();
    let head = auth.head(
        dir.path(),
        "storage",
        "[storage]\nidentities = true\nidentities_max_stale_ms = 1500\n",
    );
    assert_eq!(resolve(&head, &auth.ci).await, Ok("key:ci".to_string()));
    assert_eq!(
        resolve(&head, &auth.deploy).await,
        Ok("key:deploy".to_string())
    );
    assert!(
        resolve(&head, "alk_unknown")
            .await
            .unwrap_err()
            .starts_with("UNAUTHENTICATED")
    );

    auth.revoke("ci");
    let refused = resolve_until(&head, &auth.ci, Duration::from_secs(5), Result::is_err).await;
    assert!(refused.unwrap_err().starts_with("UNAUTHENTICATED"));

    // The auth node is killed: its last identities are trusted for 1.5 s, then not.
    drop(auth_node);
    let lost = Instant::now();
    assert_eq!(
        resolve(&head, &auth.deploy).await,
        Ok("key:deploy".to_string())
    );
    let stale = resolve_until(&head, &auth.deploy, Duration::from_secs(5), Result::is_err).await;
    let err = stale.unwrap_err();
    assert!(
        err.starts_with("UNAVAILABLE") && err.contains("1500 ms"),
        "{err}"
    );
    assert!(
        lost.elapsed() >= Duration::from_millis(1500),
        "{:?}",
        lost.elapsed()
    );

    let _back = auth.start();
    let again = resolve_until(&head, &auth.deploy, Duration::from_secs(10), Result::is_ok).await;
    assert_eq!(again, Ok("key:deploy".to_string()));
}

/// The `[[peers]]` and `[forwarding]` of docs/configuration.md's example, as written there
/// but for the peer's address and key.
fn documented_forwarding(address: &str, fingerprint: &str) -> String {
    let doc = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/configuration.md"),
    )
    .unwrap();
    let start = doc
        .find("# Another node.\n")
        .expect("the example has a peer");
    let end = start + doc[start..].find("# Token buckets").unwrap();
    let example = &doc[start..end];
    assert!(example.contains("operations = \"storage/*\""), "{example}");
    example.replace("127.0.0.1:4533", address).replace(
        "ed25519:8c0cc17a04942cc4f8e0fe0b302606d3108860c126428ba2ceeb5f9ed41c2b05",
        fingerprint,
    )
}

/// docs/configuration.md's forwarding example, run: `storage/*` goes to `worker-1`, a
/// `guest:*` caller is refused everything, anything else is served here.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_documented_forwarding_example_works_as_written() {
    use alknet_runtime::credentials::{api_key_hash, new_api_key};

    let dir = tempfile::tempdir().unwrap();
    let head_key = write_key(&dir.path().join("head.key"));
    let worker_key = write_key(&dir.path().join("worker.key"));
    let call = free_port();
    let worker_config = dir.path().join("worker.toml");
    std::fs::write(
        &worker_config,
        format!(
            "[node]\nkey = {:?}\n\n[listen]\ncall = \"127.0.0.1:{call}\"\n\n[storage]\nin_memory = true\n\n[services]\nsecret = \"off\"\n\n\
             [[public_keys]]\nfingerprint = \"{head_key}\"\nidentity = \"node:head\"\ncluster = true\nresources = [\"graph:*\"]\n",
            dir.path().join("worker.key")
        ),
    )
    .unwrap();
    // A call forwarded over the call protocol is checked there as the head's own identity
    // (docs/configuration.md): the head's key holds what the forwarded callers need.
    let worker = serve(&worker_config);

    let (ci, guest) = (new_api_key().unwrap(), new_api_key().unwrap());
    let config = format!(
        "[node]\nkey = {:?}\n\n[storage]\nin_memory = true\n\n\
         [[api_keys]]\nid = \"ci\"\nhash = \"{}\"\nidentity = \"key:ci\"\nresources = [\"graph:*\"]\n\n\
         [[api_keys]]\nid = \"guest\"\nhash = \"{}\"\nidentity = \"guest:visitor\"\nresources = [\"graph:*\"]\n\n{}",
        dir.path().join("head.key"),
        api_key_hash(&ci),
        api_key_hash(&guest),
        documented_forwarding(&format!("127.0.0.1:{call}"), &worker_key)
    );
    let head = Node::builder(ConfigServiceImpl::from_text(config, "head's").unwrap())
        .local(EchoProtocol::local(EchoService::default()))
        .without_secret()
        .build()
        .unwrap();
    let as_caller = |key: &str| {
        let identities = head.identities().clone();
        let key = key.to_string();
        let env = head.env().clone();
        async move {
            let identity = identities.resolve(Credential::ApiKey(&key)).await.unwrap();
            env.with_caller(alknet_runtime::Caller::new().identity(identity))
        }
    };
    let ci_env = as_caller(&ci).await;
    let created = ci_env
        .invoke("storage", "create_graph", json!({"graph": "orders"}))
        .await;
    assert!(created.is_ok(), "{:?}", created.result);
    let got = ci_env
        .invoke("storage", "get_graph", json!({"graph": "orders"}))
        .await;
    assert!(got.is_ok(), "{:?}", got.result);
    // Served here: echo.
    assert!(
        ci_env
            .invoke("echo", "say", json!({"text": "here"}))
            .await
            .is_ok()
    );

    // The guest is refused by the second rule, naming it.
    let guest_env = as_caller(&guest).await;
    let refused = guest_env.invoke("echo", "say", json!({"text": "no"})).await;
    let err = refused.result.unwrap_err();
    assert_eq!(err.code, "FORBIDDEN");
    assert!(
        err.message.contains("rule 2 of [forwarding]"),
        "{}",
        err.message
    );

    // The graph was made on worker-1: without it, storage calls fail, echo does not.
    drop(worker);
    let gone = ci_env
        .invoke("storage", "get_graph", json!({"graph": "orders"}))
        .await;
    assert_eq!(gone.error_code(), Some("UNAVAILABLE"), "{:?}", gone.result);
    assert!(
        ci_env
            .invoke("echo", "say", json!({"text": "still here"}))
            .await
            .is_ok()
    );
}

/// A node mounted whole (`NodeBuilder::remote`) is dialled again after it was lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_remote_mount_is_dialled_again_after_its_node_comes_back() {
    let dir = tempfile::tempdir().unwrap();
    let head_key = write_key(&dir.path().join("head.key"));
    let worker_key = write_key(&dir.path().join("worker.key"));
    let (call, irpc) = (free_port(), free_port());
    let worker = start_worker(dir.path(), call, irpc, &head_key);
    let config = format!("[node]\nkey = {:?}\n", dir.path().join("head.key"));
    let address = format!("127.0.0.1:{call}").parse().unwrap();
    let head = Node::builder(ConfigServiceImpl::from_text(config, "head's").unwrap())
        .without_secret()
        .without_storage()
        .remote("far", address, &worker_key)
        .connect()
        .await
        .unwrap();
    let far_say = |text: &'static str| {
        let env = head.env().clone();
        async move {
            let started = Instant::now();
            let answer = env.invoke("far", "echo/say", json!({ "text": text })).await;
            (answer, started.elapsed())
        }
    };
    assert!(far_say("first").await.0.is_ok());

    drop(worker);
    let (answer, took) = far_say("gone").await;
    assert!(
        answer.result.is_err() && took < Duration::from_secs(1),
        "{took:?}"
    );
    let (answer, took) = far_say("gone").await;
    assert_eq!(
        answer.error_code(),
        Some("UNAVAILABLE"),
        "{:?}",
        answer.result
    );
    assert!(took < Duration::from_secs(1), "{took:?}");

    let _back = start_worker(dir.path(), call, irpc, &head_key);
    let started = Instant::now();
    loop {
        let (answer, _) = far_say("back").await;
        if answer.is_ok() {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "{:?}",
            answer.result
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Two nodes that place `echo` on each other cannot bounce a call: the second node refuses
/// to send on a call a cluster node forwarded to it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_is_forwarded_once_between_nodes_that_place_a_service_on_each_other() {
    let dir = tempfile::tempdir().unwrap();
    let (a_key, b_key) = (
        write_key(&dir.path().join("a.key")),
        write_key(&dir.path().join("b.key")),
    );
    let (a_call, b_call) = (free_port(), free_port());
    let config = |me: &str, call: u16, other: &str, other_call: u16, other_key: &str| {
        format!(
            "[node]\nkey = {:?}\n\n[listen]\ncall = \"127.0.0.1:{call}\"\n\n[services]\necho = {{ peer = \"{other}\" }}\n\n\
             [[peers]]\nname = \"{other}\"\naddress = \"127.0.0.1:{other_call}\"\nfingerprint = \"{other_key}\"\n\n\
             [[public_keys]]\nfingerprint = \"{other_key}\"\nidentity = \"node:{other}\"\ncluster = true\n",
            dir.path().join(format!("{me}.key"))
        )
    };
    let b_config = dir.path().join("b.toml");
    std::fs::write(&b_config, config("b", b_call, "a", a_call, &a_key)).unwrap();
    let _b = serve(&b_config);
    let a = Node::builder(
        ConfigServiceImpl::from_text(config("a", a_call, "b", b_call, &b_key), "a's").unwrap(),
    )
    .local(EchoProtocol::local(EchoService::default()))
    .without_secret()
    .without_storage()
    .build()
    .unwrap();
    let _a_up = a.start().await.unwrap();

    let started = Instant::now();
    let (result, _) = say(&a, "ping-pong").await;
    let err = result.unwrap_err();
    assert!(err.starts_with("FORBIDDEN"), "{err}");
    assert!(
        err.contains("sends `echo` on to `a`") && err.contains("a call is forwarded once"),
        "{err}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
}
