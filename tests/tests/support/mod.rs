//! Nodes in their own processes, for the call-protocol tests.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use alknet_runtime::call::{CallConfig, CallEndpoint, Connection, NodeIdentity, PeerKey};

/// A `call-node` process; killed when dropped.
pub struct NodeProcess {
    child: Child,
    pub addr: SocketAddr,
    pub ws: Option<SocketAddr>,
    pub fingerprint: String,
}

/// Write `identity`'s key where a node process can read it.
pub fn key_file(identity: &NodeIdentity) -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    let path = std::env::temp_dir().join(format!(
        "alknet-call-test-{}-{}.pem",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    ));
    std::fs::write(&path, identity.private_key_pem()).unwrap();
    path
}

impl NodeProcess {
    /// Start a `call-node` with `identity` and these flags; returns once it serves.
    pub fn start(identity: &NodeIdentity, args: &[String]) -> NodeProcess {
        let key = key_file(identity);
        // `ALKNET_CALL_NODE` runs the tests against another build of the node (an older
        // commit's, to see a test fail before its fix).
        let binary = std::env::var_os("ALKNET_CALL_NODE").map_or_else(
            || PathBuf::from(env!("CARGO_BIN_EXE_call-node")),
            PathBuf::from,
        );
        let mut flags = vec!["--key".to_string(), key.display().to_string()];
        flags.extend_from_slice(args);
        let node = NodeProcess::spawn(&binary, &flags);
        assert_eq!(node.fingerprint, identity.fingerprint());
        std::fs::remove_file(key).ok();
        node
    }

    /// Start `binary` (`call-node` or `irpc-node`) with `args`; returns once it prints
    /// `listening ADDR FINGERPRINT` (and `ws ADDR`, when `args` hold `--ws`).
    pub fn spawn(binary: &Path, args: &[String]) -> NodeProcess {
        let mut child = Command::new(binary)
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|err| panic!("{} starts: {err}", binary.display()));
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let first = lines.next().expect("the node prints its address").unwrap();
        let mut words = first.split_whitespace().skip(1);
        let addr = words.next().unwrap().parse().unwrap();
        let fingerprint = words.next().unwrap().to_string();
        let ws = args.iter().any(|a| a == "--ws").then(|| {
            let line = lines.next().unwrap().unwrap();
            line.trim_start_matches("ws ").parse().unwrap()
        });
        NodeProcess {
            child,
            addr,
            ws,
            fingerprint,
        }
    }

    /// The process's id.
    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// The process's virtual memory, from `/proc`.
    pub fn virtual_memory_bytes(&self) -> u64 {
        self.status_bytes("VmSize:")
    }

    /// The process's resident memory, from `/proc`.
    pub fn rss_bytes(&self) -> u64 {
        self.status_bytes("VmRSS:")
    }

    /// The most resident memory the process has had, from `/proc`.
    pub fn peak_rss_bytes(&self) -> u64 {
        self.status_bytes("VmHWM:")
    }

    /// A line of `/proc/PID/status` given in kB, in bytes.
    fn status_bytes(&self, field: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        let kib: u64 = status
            .lines()
            .find_map(|line| line.strip_prefix(field))
            .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or_else(|| panic!("{field} in /proc/PID/status"));
        kib * 1024
    }

    /// Kill the process now.
    pub fn kill(&mut self) {
        self.child.kill().ok();
        self.child.wait().ok();
    }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// This test process as a node: its own identity and endpoint.
pub struct TestNode {
    pub identity: NodeIdentity,
    pub endpoint: CallEndpoint,
}

impl TestNode {
    pub fn new() -> TestNode {
        TestNode::with_identity(NodeIdentity::generate().unwrap())
    }

    pub fn with_identity(identity: NodeIdentity) -> TestNode {
        TestNode::with_config(identity, CallConfig::default())
    }

    pub fn with_config(identity: NodeIdentity, config: CallConfig) -> TestNode {
        let endpoint =
            CallEndpoint::bind("127.0.0.1:0".parse().unwrap(), &identity, config).unwrap();
        TestNode { identity, endpoint }
    }

    /// `--allow` for this node's key as `who`.
    pub fn allow(&self, who: &str) -> [String; 2] {
        [
            "--allow".into(),
            format!("{}={who}", self.identity.fingerprint()),
        ]
    }

    pub async fn connect(&self, node: &NodeProcess) -> Connection {
        self.connect_to(node.addr, &node.fingerprint).await
    }

    /// Connect to the node at `addr` whose key is `fingerprint`.
    pub async fn connect_to(&self, addr: SocketAddr, fingerprint: &str) -> Connection {
        self.endpoint
            .connect(addr, PeerKey::Pinned(fingerprint.to_string()))
            .await
            .unwrap()
    }
}

pub fn args<const N: usize>(items: [&str; N]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

/// Wait until `condition` holds, failing after 5 s.
pub async fn until<F: std::future::Future<Output = bool>>(what: &str, condition: impl Fn() -> F) {
    tokio::time::timeout(Duration::from_secs(5), async {
        while !condition().await {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("timed out waiting until {what}"));
}

/// The API key of `user:browser`, the WebSocket tests' caller.
pub const BROWSER_KEY: &str = "alk_ws-key-of-the-browser-user";

/// A WebSocket speaking the call protocol.
pub type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A `call-node` serving `services` (such as `echo,gate`) over QUIC and WebSocket, which
/// admits [`BROWSER_KEY`] as `user:browser`, with `extra` flags.
pub fn browser_node(services: &str, extra: &[&str]) -> NodeProcess {
    let browser = format!("{BROWSER_KEY}=user:browser");
    let mut flags = args(["--serve", services, "--api-key", &browser, "--ws"]);
    flags.extend(extra.iter().map(|s| s.to_string()));
    NodeProcess::start(&NodeIdentity::generate().unwrap(), &flags)
}

/// Open a WebSocket to `node`'s `/call`, with `Authorization: Bearer {bearer}` and
/// `Origin: {origin}` when given: the socket, or how the handshake failed.
pub async fn open_websocket(
    node: &NodeProcess,
    bearer: Option<&str>,
    origin: Option<&str>,
) -> Result<Socket, tokio_tungstenite::tungstenite::Error> {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let url = format!(
        "ws://{}/call",
        node.ws.expect("the node listens for WebSocket")
    );
    let mut request = url.into_client_request().unwrap();
    if let Some(bearer) = bearer {
        let value = format!("Bearer {bearer}").parse().unwrap();
        request.headers_mut().insert("Authorization", value);
    }
    if let Some(origin) = origin {
        request
            .headers_mut()
            .insert("Origin", origin.parse().unwrap());
    }
    tokio_tungstenite::connect_async(request)
        .await
        .map(|(socket, _)| socket)
}

/// A `call-node` with `identity` serving `front`, which `tester` may call as
/// `user:tester`: it mounts `back` as `worker-1` and serves `routes` (namespaces) from it,
/// with `extra` flags.
pub fn front_node(
    tester: &TestNode,
    identity: &NodeIdentity,
    back: &NodeProcess,
    routes: &[&str],
    extra: &[&str],
) -> NodeProcess {
    let mut flags = args(["--serve", "front"]);
    flags.extend(tester.allow("user:tester"));
    flags.extend(args([
        "--peer",
        &format!("worker-1={}@{}", back.addr, back.fingerprint),
    ]));
    for namespace in routes {
        flags.extend(args(["--route", &format!("{namespace}=worker-1")]));
    }
    flags.extend(extra.iter().map(|s| s.to_string()));
    NodeProcess::start(identity, &flags)
}
