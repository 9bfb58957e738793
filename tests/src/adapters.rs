//! What the adapter tests share: a node ([`alknet::Node`]) serving the test services on
//! loopback on every transport, and drivers for the real clients (`dig`, the MCP SDKs).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use alknet::{Node, NodeBuilder};
use alknet_example::{EchoProtocol, EchoService};
use alknet_runtime::adapters::dns::DnsAdapter;
use alknet_runtime::call::{CallConfig, CallEndpoint, Connection, NodeIdentity, PeerKey};
use alknet_runtime::config::ConfigServiceImpl;
use alknet_runtime::credentials::api_key_hash;
use alknet_runtime::{IdentityProvider, OperationEnv};
use serde_json::Value;

use crate::probe::{Probe, ProbeProtocol};
use crate::vault::{Vault, VaultProtocol};

/// An API key for `user:reader`, who holds `vault:read`.
pub const READER: &str = "alk_reader-key-of-the-adapter-tests";
/// An API key for `user:admin`, who holds `echo:admin` and `vault:read`.
pub const ADMIN: &str = "alk_admin-key-of-the-adapter-tests";

/// `echo`, `vault` and `probe`, mounted in-process (for a test that drives an adapter
/// itself).
pub fn env(probe: Probe) -> OperationEnv {
    OperationEnv::builder()
        .local(EchoProtocol::local(EchoService::default()))
        .local(VaultProtocol::local(Vault))
        .local(ProbeProtocol::local(probe))
        .build()
        .expect("the test services mount")
}

/// The tests' configuration: HTTP (with MCP at `/mcp`), DNS (under `alk.dev`) and the
/// call protocol on loopback ports, [`READER`] and [`ADMIN`] as API keys, and `settings`,
/// more of the configuration (such as an `[http]` section of limits).
pub fn config(settings: &str) -> ConfigServiceImpl {
    let text = format!(
        r#"[listen]
http = "127.0.0.1:0"
dns = "127.0.0.1:0"
call = "127.0.0.1:0"

[[api_keys]]
id = "reader"
hash = "{reader}"
identity = "user:reader"
scopes = ["vault:read"]

[[api_keys]]
id = "admin"
hash = "{admin}"
identity = "user:admin"
scopes = ["echo:admin", "vault:read"]

{settings}"#,
        reader = api_key_hash(READER),
        admin = api_key_hash(ADMIN),
    );
    ConfigServiceImpl::from_text(text, "the adapter tests' configuration")
        .unwrap_or_else(|err| panic!("{err}"))
}

/// A node over [`config`]`(settings)`, without the node's own `auth`, `config`, `secret`
/// and `storage` services: the tests see only theirs.
pub fn node_builder(settings: &str) -> NodeBuilder {
    Node::builder(config(settings))
        .without_auth()
        .without_config_service()
        .without_secret()
        .without_storage()
}

/// [`node_builder`] with `echo`, `vault` and `probe`.
pub fn node(probe: Probe, settings: &str) -> NodeBuilder {
    node_builder(settings)
        .local(EchoProtocol::local(EchoService::default()))
        .local(VaultProtocol::local(Vault))
        .local(ProbeProtocol::local(probe))
}

/// A started node: where it listens, and what it serves. It serves until the test's
/// runtime ends.
pub struct Served {
    /// HTTP, with MCP at `/mcp`.
    pub http: SocketAddr,
    /// DNS, UDP and TCP.
    pub dns: SocketAddr,
    /// The call protocol over QUIC.
    pub call: SocketAddr,
    /// The node's key fingerprint, which its callers pin.
    pub fingerprint: String,
    /// Every service of the node, admitting outside calls with its policy.
    pub env: OperationEnv,
    /// The node's credentials.
    pub identities: Arc<dyn IdentityProvider>,
}

impl Served {
    /// A call-protocol connection over QUIC from an endpoint whose key the node does not
    /// know: its calls are anonymous unless they carry an `auth_token`.
    pub async fn connect_call(&self) -> Connection {
        let client = CallEndpoint::bind(
            "127.0.0.1:0".parse().expect("a loopback address"),
            &NodeIdentity::generate().expect("a node key"),
            CallConfig::default(),
        )
        .expect("bind a loopback port");
        client
            .connect(self.call, PeerKey::Pinned(self.fingerprint.clone()))
            .await
            .unwrap_or_else(|err| panic!("connect to the test node: {err}"))
    }
}

/// Build and start `node`.
pub async fn serve(node: NodeBuilder) -> Served {
    let node = node.build().unwrap_or_else(|err| panic!("{err}"));
    let listeners = node.start().await.unwrap_or_else(|err| panic!("{err}"));
    let address = |name: &str| {
        listeners
            .address(name)
            .unwrap_or_else(|| panic!("the test node listens for {name}"))
    };
    let served = Served {
        http: address("http"),
        dns: address("dns"),
        call: address("call"),
        fingerprint: node.identity().fingerprint().to_string(),
        env: node.env().clone(),
        identities: node.identities().clone(),
    };
    tokio::spawn(async move {
        let _running = (node, listeners);
        std::future::pending::<()>().await
    });
    served
}

/// Serve `env` over DNS (UDP and TCP on one loopback port) under `alk.dev`, for a test
/// of the DNS adapter with services of its own.
pub async fn serve_dns(env: OperationEnv) -> SocketAddr {
    let (udp, tcp) = DnsAdapter::bind(([127, 0, 0, 1], 0).into())
        .await
        .expect("bind a loopback port for UDP and TCP");
    let addr = udp.local_addr().expect("a bound address");
    tokio::spawn(DnsAdapter::new(env).serve(udp, Some(tcp)));
    addr
}

/// `curl --silent --show-error ARGS..`: the status code and the body.
pub async fn curl(args: &[&str]) -> (String, String) {
    let output = tokio::process::Command::new("curl")
        .args(["--silent", "--show-error", "--write-out", "\n%{http_code}"])
        .args(args)
        .output()
        .await
        .expect("curl runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let text = String::from_utf8(output.stdout).unwrap();
    let (body, status) = text.rsplit_once('\n').unwrap();
    (status.to_string(), body.to_string())
}

/// What `dig` answered.
#[derive(Debug, Clone, PartialEq)]
pub struct DigAnswer {
    /// The response code, such as `NOERROR` or `NXDOMAIN`.
    pub status: String,
    /// The header flags, such as `qr aa rd tc`.
    pub flags: Vec<String>,
    /// The TXT strings of each answer record, joined.
    pub txt: Vec<String>,
}

impl DigAnswer {
    /// The single TXT record's text as JSON.
    pub fn json(&self) -> Value {
        assert_eq!(self.txt.len(), 1, "one TXT record: {self:?}");
        serde_json::from_str(&self.txt[0]).expect("the TXT record holds JSON")
    }
}

/// Ask `dig` for `name` (`type`, such as `TXT`) at `server`, over UDP; `extra` adds options
/// such as `+tcp` or `+bufsize=512`.
pub async fn dig(server: SocketAddr, name: &str, record_type: &str, extra: &[&str]) -> DigAnswer {
    let output = tokio::process::Command::new("dig")
        .arg(format!("@{}", server.ip()))
        .args(["-p", &server.port().to_string(), name, record_type])
        .args([
            "+noall",
            "+comments",
            "+answer",
            "+tries=1",
            "+time=5",
            "+ignore",
        ])
        .args(extra)
        .output()
        .await
        .expect("dig runs (scripts/test installs it: apt package bind9-dnsutils)");
    let text = String::from_utf8_lossy(&output.stdout).to_string();
    assert!(output.status.success(), "dig failed: {text}");
    let status = text
        .split("status: ")
        .nth(1)
        .and_then(|rest| rest.split(',').next())
        .unwrap_or_else(|| panic!("no status in dig's answer: {text}"))
        .to_string();
    let flags = text
        .split("flags: ")
        .nth(1)
        .and_then(|rest| rest.split(';').next())
        .unwrap_or_default()
        .split_whitespace()
        .map(str::to_string)
        .collect();
    let txt = text
        .lines()
        .filter(|line| !line.starts_with(';'))
        // dig separates the columns with tabs, or spaces after a long name.
        .filter_map(|line| {
            let at = line.find("TXT\t").or_else(|| line.find("TXT "))?;
            Some(line[at + 4..].trim_start())
        })
        .map(unquote_txt)
        .collect();
    DigAnswer { status, flags, txt }
}

/// base64url without padding (RFC 4648 §5), as a DNS input label is written.
pub fn base64url(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk.iter().fold(0u32, |n, b| (n << 8) | u32::from(*b)) << (8 * (3 - chunk.len()));
        for i in 0..=chunk.len() {
            out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

/// The strings of one TXT record in dig's presentation format, unescaped and joined.
fn unquote_txt(text: &str) -> String {
    let mut bytes = Vec::new();
    let mut chars = text.bytes().peekable();
    let mut quoted = false;
    while let Some(b) = chars.next() {
        match b {
            b'"' => quoted = !quoted,
            b'\\' => {
                let next = chars.next().expect("an escape has a character");
                if next.is_ascii_digit() {
                    let digits = [next, chars.next().unwrap(), chars.next().unwrap()];
                    bytes.push(std::str::from_utf8(&digits).unwrap().parse::<u8>().unwrap());
                } else {
                    bytes.push(next);
                }
            }
            b' ' if !quoted => {}
            _ => bytes.push(b),
        }
    }
    String::from_utf8(bytes).expect("TXT strings joined are UTF-8")
}

/// The workspace's Python with the MCP SDK (`./.venv`, which scripts/test creates).
pub fn python() -> PathBuf {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let python = root.join(".venv/bin/python");
    assert!(
        python.exists(),
        "{} is missing: run ./scripts/test once to install the interop tools",
        python.display()
    );
    python
}

/// The workspace's Node packages (`tests/interop/ts/node_modules`, which scripts/test
/// installs), the directory the TypeScript clients run in.
pub fn ts_interop_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("interop/ts");
    assert!(
        dir.join("node_modules").exists(),
        "{} is missing: run ./scripts/test once to install the interop tools",
        dir.join("node_modules").display()
    );
    dir
}

/// An official MCP SDK, as a client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum McpClient {
    /// The Python SDK (`mcp`), `interop/python/mcp_client.py`.
    Python,
    /// The TypeScript SDK (`@modelcontextprotocol/sdk`), `interop/ts/mcp_client.mjs`.
    TypeScript,
}

impl McpClient {
    /// Both SDKs.
    pub const ALL: [McpClient; 2] = [McpClient::Python, McpClient::TypeScript];

    fn command(self) -> tokio::process::Command {
        match self {
            McpClient::Python => {
                let mut command = tokio::process::Command::new(python());
                command.arg(
                    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("interop/python/mcp_client.py"),
                );
                command
            }
            McpClient::TypeScript => {
                let dir = ts_interop_dir();
                let mut command = tokio::process::Command::new("node");
                command.arg(dir.join("mcp_client.mjs")).current_dir(dir);
                command
            }
        }
    }
}

/// [`mcp_session_with`] the Python SDK.
pub async fn mcp_session(target: &[&str], token: Option<&str>, calls: &Value) -> Value {
    mcp_session_with(McpClient::Python, target, token, calls).await
}

/// Run an MCP SDK's client against `target` (`["--http", url]` or `["--stdio", command,
/// ..]`): it lists the tools and makes each call of `calls` (`[{"name", "arguments"}]`),
/// with the SDK checking every result against the tool's `outputSchema`. Returns
/// `{"tools": [...], "results": [{"is_error", "structured", "text"}]}`; the TypeScript
/// client returns `{"refused": {name, code, message}}` when the server refuses to connect.
pub async fn mcp_session_with(
    client: McpClient,
    target: &[&str],
    token: Option<&str>,
    calls: &Value,
) -> Value {
    let mut command = client.command();
    command.args(["--calls", &calls.to_string()]);
    if let Some(token) = token {
        command.args(["--token", token]);
    }
    // Last: `--stdio` takes every argument after it.
    command.args(target);
    let output = command.output().await.expect("the MCP client runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "the {client:?} MCP client failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("the {client:?} MCP client printed {stdout}: {e}"))
}
