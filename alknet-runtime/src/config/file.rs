//! The configuration file: TOML in, a validated [`StaticConfig`] and [`DynamicConfig`] out,
//! or an error naming the line.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::num::{NonZeroU32, NonZeroU64, NonZeroUsize};
use std::ops::Range;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use ed25519_dalek::VerifyingKey;
use serde::Deserialize;
use toml::Spanned;

use super::dynamic::{ApiKeyEntry, DynamicConfig, Peer, RateLimits, TokenKey};
use super::placement::{PeerPath, Placement};
use super::time::unix_seconds;
use super::{
    ConfigError, DEFAULT_DRAIN_TIME, ForwardingAction, ForwardingPolicy, ForwardingRule,
    MAX_WORKER_THREADS, StaticConfig,
};
use crate::encoding::from_hex;
use crate::{Identity, KeyHolder, ResourceGrant};

/// Parse and validate a whole file. `origin` names it in errors.
pub(crate) fn parse(
    text: &str,
    origin: &str,
) -> Result<(StaticConfig, DynamicConfig), ConfigError> {
    let file: File = toml::from_str(text).map_err(|err| ConfigError {
        origin: origin.to_string(),
        line: err.span().map(|span| line_of(text, span.start)),
        message: err.message().trim_end().to_string(),
    })?;
    file.validate(&|offset| line_of(text, offset))
        .map_err(|(span, message)| ConfigError {
            origin: origin.to_string(),
            line: Some(line_of(text, span.start)),
            message,
        })
}

fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    listen: Listen,
    #[serde(default)]
    node: NodeSection,
    #[serde(default)]
    dns: DnsSection,
    #[serde(default)]
    http: HttpSettings,
    #[serde(default)]
    call: CallSettings,
    #[serde(default)]
    irpc: IrpcSettings,
    #[serde(default)]
    secret: SecretSettings,
    #[serde(default)]
    storage: StorageSettings,
    #[serde(default)]
    services: BTreeMap<String, Spanned<Placement>>,
    #[serde(default)]
    auth: AuthSection,
    #[serde(default)]
    api_keys: Vec<Spanned<ApiKeyFile>>,
    #[serde(default)]
    public_keys: Vec<Spanned<PublicKeyFile>>,
    #[serde(default)]
    token_keys: Vec<Spanned<TokenKeyFile>>,
    #[serde(default)]
    peers: Vec<Spanned<PeerFile>>,
    #[serde(default)]
    forwarding: ForwardingFile,
    #[serde(default)]
    rate_limits: Option<Spanned<RateLimits>>,
}

/// Where each transport listens; an absent transport is not started.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct Listen {
    /// The QUIC call protocol (UDP).
    pub call: Option<SocketAddr>,
    /// The call protocol over WebSocket.
    pub websocket: Option<SocketAddr>,
    /// HTTP and MCP (streamable HTTP at `/mcp`).
    pub http: Option<SocketAddr>,
    /// DNS TXT queries (UDP).
    pub dns: Option<SocketAddr>,
    /// The irpc service path (QUIC), for other nodes of the cluster.
    pub irpc: Option<SocketAddr>,
}

/// The HTTP adapter's limits, MCP's session limits and the `Host` names MCP answers at
/// `/mcp`; an absent setting keeps the adapter's default (`HttpLimits::default`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct HttpSettings {
    /// The largest request body accepted, in bytes (default 1 MiB).
    pub max_body_bytes: Option<NonZeroUsize>,
    /// How long a query or mutation may take, in milliseconds (default 30000).
    pub request_timeout_ms: Option<NonZeroU64>,
    /// How long a client has to send a request's headers, and how long an idle keep-alive
    /// connection stays open, in milliseconds (default 10000).
    pub header_read_timeout_ms: Option<NonZeroU64>,
    /// How long a client has to send a request's body, in milliseconds (default 30000).
    pub body_read_timeout_ms: Option<NonZeroU64>,
    /// How many connections are open at once (default 4096).
    pub max_connections: Option<NonZeroUsize>,
    /// How many connections one address may hold open (default 256).
    pub max_connections_per_address: Option<NonZeroUsize>,
    /// How many calls are served at once; more are turned away (default 1024).
    pub max_concurrent_requests: Option<NonZeroUsize>,
    /// How many calls one identity may have in progress (default 128).
    pub max_concurrent_requests_per_identity: Option<NonZeroUsize>,
    /// How many calls one address may have in progress (default 128).
    pub max_concurrent_requests_per_address: Option<NonZeroUsize>,
    /// How many subscriptions stream at once (default 1024).
    pub max_open_subscriptions: Option<NonZeroUsize>,
    /// How many subscriptions one identity may hold open (default 32).
    pub max_open_subscriptions_per_identity: Option<NonZeroUsize>,
    /// How many subscriptions one address may hold open (default 32).
    pub max_open_subscriptions_per_address: Option<NonZeroUsize>,
    /// How long a subscription may send nothing before it is closed, in milliseconds
    /// (default 300000).
    pub subscription_idle_timeout_ms: Option<NonZeroU64>,
    /// How many MCP sessions are open at once (default 1024).
    pub mcp_max_sessions: Option<NonZeroUsize>,
    /// How many MCP sessions one address may hold open (default 16).
    pub mcp_max_sessions_per_address: Option<NonZeroUsize>,
    /// How long an unused MCP session lives, in milliseconds (default 300000).
    pub mcp_session_idle_timeout_ms: Option<NonZeroU64>,
    /// The `Host` names (`name` or `name:port`) MCP answers; default: loopback names only,
    /// against DNS rebinding. A node reached by name must list it.
    pub mcp_allowed_hosts: Option<Vec<String>>,
    /// Serve `GET /metrics` (the Prometheus text exposition of every call's metrics) on the
    /// HTTP listener, to anyone who reaches it; default off, and no metrics are recorded.
    #[serde(default)]
    pub metrics: bool,
}

/// The call protocol's limits (QUIC and WebSocket); an absent setting keeps the default.
/// A peer is *unauthenticated* while the identity provider does not know its key (or, on
/// WebSocket, its bearer token) and none of its calls carried an `auth_token` it accepted.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct CallSettings {
    /// The largest frame (or WebSocket message) read from an authenticated peer, and from
    /// the peers this node calls (default 16 MiB).
    pub max_frame_bytes: Option<NonZeroUsize>,
    /// The largest frame (or WebSocket message) read from an unauthenticated peer
    /// (default 1 MiB).
    pub unauthenticated_max_frame_bytes: Option<NonZeroUsize>,
    /// How many calls an authenticated peer may have open on one QUIC connection
    /// (default 1024).
    pub max_concurrent_calls: Option<NonZeroU32>,
    /// How many calls an unauthenticated peer may have open on one QUIC connection
    /// (default 16).
    pub unauthenticated_max_concurrent_calls: Option<NonZeroU32>,
    /// The bytes of frames in transit one QUIC connection may hold (default 64 MiB).
    pub connection_buffer_bytes: Option<NonZeroUsize>,
    /// The bytes of frames in transit all authenticated peers (and this node's own calls)
    /// may hold together (default 1 GiB).
    pub node_buffer_bytes: Option<NonZeroUsize>,
    /// The bytes of frames in transit all unauthenticated peers may hold together
    /// (default 64 MiB).
    pub unauthenticated_buffer_bytes: Option<NonZeroUsize>,
    /// How many peers' QUIC connections the node accepts at once (default 4096).
    pub max_connections: Option<NonZeroUsize>,
    /// How many of those may come from one IP address (default 64).
    pub max_connections_per_address: Option<NonZeroUsize>,
    /// How long a QUIC handshake may take, either way, and how long a WebSocket client
    /// has to send its upgrade request's headers, in milliseconds (default 1000).
    pub handshake_timeout_ms: Option<NonZeroU64>,
    /// How long a QUIC connection may go without a packet from its peer before it is
    /// declared lost, in milliseconds (default 600); an idle connection is pinged every
    /// third of it.
    pub idle_timeout_ms: Option<NonZeroU64>,
    /// How long a frame (or WebSocket message) may take to arrive whole, from its first
    /// byte, in milliseconds (default 10000); a slower one is given up and what it held
    /// freed.
    pub frame_read_timeout_ms: Option<NonZeroU64>,
    /// The `Origin`s (`scheme://host[:port]`, or `"*"` for any) a browser may open a
    /// WebSocket from; an upgrade without `Origin` (not a browser) is always accepted.
    /// Default: only pages served from the host the WebSocket is reached at (the
    /// request's `Host`).
    pub websocket_allowed_origins: Option<Vec<String>>,
}

/// The irpc listener's limits; an absent setting keeps the listener's default.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct IrpcSettings {
    /// The largest request accepted, in bytes (default 16 MiB); a larger one is refused
    /// with `RESOURCE_EXHAUSTED` before it is read.
    pub max_request_bytes: Option<NonZeroU64>,
    /// How many requests one connection may have in flight at once (default 1024): QUIC's
    /// stream limit, so a peer's further requests wait until one of them is done.
    pub max_concurrent_streams: Option<NonZeroU32>,
}

/// The `secret` service's settings (`[secret]`); an absent setting keeps the service's
/// default.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct SecretSettings {
    /// The sealed seed's file; absent: `alknet/secret.json` under `$XDG_DATA_HOME` (or
    /// `~/.local/share`).
    pub file: Option<PathBuf>,
    /// The memory Argon2id uses to derive the sealing key from a new seed's passphrase,
    /// in KiB (default 65536, 64 MiB).
    pub kdf_memory_kib: Option<NonZeroU32>,
    /// How long deriving that key should take at least, in milliseconds (default 250):
    /// `init` raises Argon2id's passes until it does, on the machine it runs on.
    pub kdf_target_ms: Option<u64>,
    /// The wait after the first wrong passphrase, in milliseconds (default 1000); it
    /// doubles with each further one.
    pub unlock_backoff_ms: Option<NonZeroU64>,
    /// The longest wait between attempts, in milliseconds (default 300000, 5 minutes).
    pub unlock_backoff_max_ms: Option<NonZeroU64>,
    /// Refuse core dumps of this process (`RLIMIT_CORE` 0 and not dumpable), so the seed
    /// cannot leave through one; for a node that holds a seed.
    #[serde(default)]
    pub refuse_core_dumps: bool,
}

/// The `storage` service's settings (`[storage]`); an absent setting keeps the service's
/// default.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct StorageSettings {
    /// The SQLite database file; absent: `alknet/storage.sqlite3` under `$XDG_DATA_HOME`
    /// (or `~/.local/share`).
    pub file: Option<PathBuf>,
    /// Keep the database in memory only: nothing is written to disk, and everything is
    /// gone when the node stops.
    #[serde(default)]
    pub in_memory: bool,
    /// The largest attributes of one graph, node or edge, as JSON text, in bytes
    /// (default 65536).
    pub max_attributes_bytes: Option<NonZeroUsize>,
    /// How many writes one `apply` may hold (default 1000).
    pub max_writes_per_apply: Option<NonZeroUsize>,
    /// How many changes the change log keeps for `watch` to resume from (default
    /// 100000); older ones are dropped.
    pub change_log_keep: Option<NonZeroU64>,
    /// How long a write waits for the database when another process holds it, in
    /// milliseconds (default 5000).
    pub busy_timeout_ms: Option<NonZeroU64>,
    /// How many connections serve reads beside the one writer (default 4).
    pub readers: Option<NonZeroUsize>,
    /// How often, in milliseconds, the service looks for changes another process wrote to
    /// the database file (default 1000): they reach `watch`, and so the identities kept in
    /// storage, within it.
    pub poll_ms: Option<NonZeroU64>,
    /// The top-level node attributes `list_nodes` filters are served by an index for; a
    /// filter on any other attribute reads every node of the graph (of the type, when the
    /// listing names one). Indexes made for keys no longer listed are dropped at start.
    #[serde(default)]
    pub indexed_attributes: Vec<String>,
    /// Resolve callers against the identities kept in this node's `storage` (the graph
    /// `identities`), instead of the file's `[[api_keys]]`, `[[public_keys]]` and
    /// `[[token_keys]]`; `alknet keys add|list|revoke` manage them.
    #[serde(default)]
    pub identities: bool,
    /// How long, in milliseconds, callers are still resolved against the last copy of
    /// those identities once the `storage` service holding them cannot be reached (default
    /// 10000); after it, `UNAVAILABLE` until it can.
    pub identities_max_stale_ms: Option<NonZeroU64>,
}

// The irpc listener's types live in `service_path`; their settings are read here, beside
// the section they come from.
#[cfg(all(feature = "irpc", feature = "quic"))]
impl crate::service_path::IrpcLimits {
    /// The limits a node's `[irpc]` settings give: each setting present, the default for
    /// each one absent.
    pub fn from_settings(settings: &IrpcSettings) -> Self {
        let defaults = Self::default();
        Self {
            max_request_size: settings
                .max_request_bytes
                .map_or(defaults.max_request_size, NonZeroU64::get),
        }
    }
}

#[cfg(all(feature = "irpc", feature = "quic"))]
impl IrpcSettings {
    /// The QUIC settings of the irpc listener's endpoint: its stream limit from
    /// `max_concurrent_streams`, the rest at their defaults.
    pub fn quic_config(&self) -> crate::quic::QuicConfig {
        let defaults = crate::quic::QuicConfig::default();
        crate::quic::QuicConfig {
            max_concurrent_streams: self
                .max_concurrent_streams
                .map_or(defaults.max_concurrent_streams, NonZeroU32::get),
            ..defaults
        }
    }
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct NodeSection {
    key: Option<PathBuf>,
    worker_threads: Option<WorkerThreads>,
    drain_ms: Option<u64>,
}

#[derive(Deserialize)]
#[serde(try_from = "u64")]
struct WorkerThreads(NonZeroUsize);

impl TryFrom<u64> for WorkerThreads {
    type Error = String;
    fn try_from(threads: u64) -> Result<Self, String> {
        usize::try_from(threads)
            .ok()
            .filter(|&threads| threads <= MAX_WORKER_THREADS)
            .and_then(NonZeroUsize::new)
            .map(WorkerThreads)
            .ok_or_else(|| {
                format!(
                    "worker_threads is {threads}: it must be between 1 and {MAX_WORKER_THREADS} (leave it out for one per CPU core)"
                )
            })
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DnsSection {
    #[serde(default = "default_zone")]
    zone: Name,
}

impl Default for DnsSection {
    fn default() -> Self {
        DnsSection {
            zone: Name(default_zone_text()),
        }
    }
}

fn default_zone() -> Name {
    Name(default_zone_text())
}

fn default_zone_text() -> String {
    "alk.dev".to_string()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AuthSection {
    #[serde(default = "default_window")]
    token_window_secs: WindowSecs,
    #[serde(default = "default_auth_cache")]
    cache_ms: u64,
}

/// How long a node keeps an answer from the `auth` service on a peer, unless `[auth]
/// cache_ms` says.
pub const DEFAULT_AUTH_CACHE: Duration = Duration::from_secs(5);

fn default_auth_cache() -> u64 {
    DEFAULT_AUTH_CACHE.as_millis() as u64
}

#[derive(Deserialize)]
#[serde(try_from = "u64")]
struct WindowSecs(u64);

impl TryFrom<u64> for WindowSecs {
    type Error = String;
    fn try_from(secs: u64) -> Result<Self, String> {
        match secs {
            1..=86_400 => Ok(WindowSecs(secs)),
            _ => Err(format!(
                "token_window_secs is {secs}: it must be between 1 and 86400 seconds"
            )),
        }
    }
}

impl Default for AuthSection {
    fn default() -> Self {
        AuthSection {
            token_window_secs: default_window(),
            cache_ms: default_auth_cache(),
        }
    }
}

fn default_window() -> WindowSecs {
    WindowSecs(300)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ApiKeyFile {
    id: Name,
    hash: Sha256Hash,
    identity: Name,
    #[serde(default)]
    scopes: Vec<Name>,
    #[serde(default)]
    resources: Vec<Grant>,
    #[serde(default)]
    expires: Option<Expiry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PublicKeyFile {
    fingerprint: Fingerprint,
    identity: Name,
    #[serde(default)]
    scopes: Vec<Name>,
    #[serde(default)]
    resources: Vec<Grant>,
    #[serde(default)]
    cluster: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenKeyFile {
    key_id: TokenKeyId,
    public_key: PublicKeyHex,
    identity: Name,
    #[serde(default)]
    scopes: Vec<Name>,
    #[serde(default)]
    resources: Vec<Grant>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PeerFile {
    name: Name,
    address: SocketAddr,
    fingerprint: Fingerprint,
    #[serde(default)]
    irpc: Option<SocketAddr>,
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ForwardingFile {
    #[serde(default)]
    default: Option<Spanned<ForwardingAction>>,
    #[serde(default)]
    rules: Vec<Spanned<ForwardingRule>>,
}

/// A name: not empty, no whitespace.
#[derive(Deserialize)]
#[serde(try_from = "String")]
struct Name(String);

impl TryFrom<String> for Name {
    type Error = String;
    fn try_from(text: String) -> Result<Self, String> {
        if text.is_empty() || text.chars().any(char::is_whitespace) {
            return Err(format!(
                "`{text}` must be non-empty and contain no whitespace"
            ));
        }
        Ok(Name(text))
    }
}

/// A token key id: a name without `.`, which separates a token's parts.
#[derive(Deserialize)]
#[serde(try_from = "String")]
struct TokenKeyId(String);

impl TryFrom<String> for TokenKeyId {
    type Error = String;
    fn try_from(text: String) -> Result<Self, String> {
        let valid = !text.is_empty()
            && text
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | ':'));
        if !valid {
            return Err(format!(
                "the key id `{text}` may use only letters, digits, `-`, `_` and `:`"
            ));
        }
        Ok(TokenKeyId(text))
    }
}

#[derive(Deserialize)]
#[serde(try_from = "String")]
struct Sha256Hash([u8; 32]);

impl TryFrom<String> for Sha256Hash {
    type Error = String;
    fn try_from(text: String) -> Result<Self, String> {
        text.strip_prefix("sha256:")
            .and_then(from_hex::<32>)
            .map(Sha256Hash)
            .ok_or_else(|| {
                format!(
                    "`{text}` is not a key hash: expected `sha256:` and 64 hex digits (`alknet keys new` prints one)"
                )
            })
    }
}

#[derive(Deserialize)]
#[serde(try_from = "String")]
struct Fingerprint(String);

impl TryFrom<String> for Fingerprint {
    type Error = String;
    fn try_from(text: String) -> Result<Self, String> {
        match text.strip_prefix("ed25519:").and_then(from_hex::<32>) {
            Some(digest) => Ok(Fingerprint(format!(
                "ed25519:{}",
                crate::encoding::hex(&digest)
            ))),
            None => Err(format!(
                "`{text}` is not a key fingerprint: expected `ed25519:` and 64 hex digits"
            )),
        }
    }
}

#[derive(Deserialize)]
#[serde(try_from = "String")]
struct PublicKeyHex(VerifyingKey);

impl TryFrom<String> for PublicKeyHex {
    type Error = String;
    fn try_from(text: String) -> Result<Self, String> {
        let bytes = from_hex::<32>(&text).ok_or_else(|| {
            format!("`{text}` is not an Ed25519 public key: expected 64 hex digits")
        })?;
        VerifyingKey::from_bytes(&bytes)
            .map(PublicKeyHex)
            .map_err(|_| format!("`{text}` is not a valid Ed25519 public key"))
    }
}

/// A resource grant written `type:action`, `*` allowed in either part.
#[derive(Deserialize)]
#[serde(try_from = "String")]
struct Grant(ResourceGrant);

impl TryFrom<String> for Grant {
    type Error = String;
    fn try_from(text: String) -> Result<Self, String> {
        match text.split_once(':') {
            Some((resource, action))
                if !resource.is_empty() && !action.is_empty() && !action.contains(':') =>
            {
                Ok(Grant(ResourceGrant::new(resource, [action])))
            }
            _ => Err(format!(
                "`{text}` is not a resource grant: expected `type:action`, such as `graph:read` or `graph:*`"
            )),
        }
    }
}

/// A key's expiry: a TOML date and time, or the same written as a string (which is how
/// JSON, and so the `storage` service, carries one).
#[derive(Deserialize)]
#[serde(try_from = "toml::Value")]
struct Expiry(i64);

impl TryFrom<toml::Value> for Expiry {
    type Error = String;
    fn try_from(value: toml::Value) -> Result<Self, String> {
        let datetime = match value {
            toml::Value::Datetime(datetime) => datetime,
            toml::Value::String(text) => text.parse().map_err(|_| {
                format!("`{text}` is not a date and time, such as `2027-01-01T00:00:00Z`")
            })?,
            other => {
                return Err(format!(
                    "`expires` is a {}: it must be a date and time, such as `2027-01-01T00:00:00Z`",
                    other.type_str()
                ));
            }
        };
        unix_seconds(&datetime).map(Expiry)
    }
}

impl From<ApiKeyFile> for ApiKeyEntry {
    fn from(key: ApiKeyFile) -> Self {
        ApiKeyEntry {
            id: key.id.0,
            hash: key.hash.0,
            identity: identity(key.identity, key.scopes, key.resources),
            expires_at: key.expires.map(|e| e.0),
        }
    }
}

impl PublicKeyFile {
    fn into_entry(self) -> (String, KeyHolder) {
        let holder = KeyHolder {
            identity: identity(self.identity, self.scopes, self.resources),
            cluster: self.cluster,
        };
        (self.fingerprint.0, holder)
    }
}

impl TokenKeyFile {
    fn into_entry(self) -> (String, TokenKey) {
        let token_key = TokenKey {
            public_key: self.public_key.0,
            identity: identity(self.identity, self.scopes, self.resources),
        };
        (self.key_id.0, token_key)
    }
}

/// Credentials in the shape of a configuration file's `[[api_keys]]`, `[[public_keys]]`
/// and `[[token_keys]]` entries, from somewhere other than the file (the `storage` service
/// keeps them as nodes), each a JSON object with the fields its entry has. They are read by
/// the code that reads the file's, so they resolve exactly as the same entries would there.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CredentialEntries {
    /// `[[api_keys]]` entries: `id`, `hash`, `identity`, `scopes`, `resources`, `expires`.
    pub api_keys: Vec<serde_json::Value>,
    /// `[[public_keys]]` entries: `fingerprint`, `identity`, `scopes`, `resources`,
    /// `cluster`.
    pub public_keys: Vec<serde_json::Value>,
    /// `[[token_keys]]` entries: `key_id`, `public_key`, `identity`, `scopes`, `resources`.
    pub token_keys: Vec<serde_json::Value>,
}

impl DynamicConfig {
    /// This configuration with its API keys, public keys and token keys replaced by
    /// `entries`, and why each entry that does not read was left out (its list, its place
    /// in it, and what is wrong).
    pub fn with_credentials(&self, entries: CredentialEntries) -> (DynamicConfig, Vec<String>) {
        fn read<T: serde::de::DeserializeOwned>(
            list: &str,
            entries: Vec<serde_json::Value>,
            refused: &mut Vec<String>,
        ) -> Vec<T> {
            entries
                .into_iter()
                .enumerate()
                .filter_map(|(index, entry)| {
                    serde_json::from_value(entry)
                        .map_err(|err| refused.push(format!("{list} entry {index}: {err}")))
                        .ok()
                })
                .collect()
        }
        let mut refused = Vec::new();
        let api_keys: Vec<ApiKeyFile> = read("[[api_keys]]", entries.api_keys, &mut refused);
        let public_keys: Vec<PublicKeyFile> =
            read("[[public_keys]]", entries.public_keys, &mut refused);
        let token_keys: Vec<TokenKeyFile> =
            read("[[token_keys]]", entries.token_keys, &mut refused);
        let config = DynamicConfig {
            api_keys: api_keys.into_iter().map(ApiKeyEntry::from).collect(),
            public_keys: public_keys
                .into_iter()
                .map(PublicKeyFile::into_entry)
                .collect(),
            token_keys: token_keys
                .into_iter()
                .map(TokenKeyFile::into_entry)
                .collect(),
            ..self.clone()
        };
        (config, refused)
    }
}

fn identity(id: Name, scopes: Vec<Name>, resources: Vec<Grant>) -> Arc<Identity> {
    Arc::new(
        Identity::new(id.0)
            .with_scopes(scopes.into_iter().map(|s| s.0))
            .with_resources(resources.into_iter().map(|g| g.0)),
    )
}

type Invalid = (Range<usize>, String);

/// Remembers where each unique value was first seen.
fn check_unique<'a>(
    seen: &mut HashMap<&'a str, usize>,
    value: &'a str,
    what: &str,
    span: &Range<usize>,
    text_line: &dyn Fn(usize) -> usize,
) -> Result<(), Invalid> {
    if let Some(&first) = seen.get(value) {
        return Err((
            span.clone(),
            format!(
                "{what} `{value}` is already defined on line {}",
                text_line(first)
            ),
        ));
    }
    seen.insert(value, span.start);
    Ok(())
}

impl File {
    /// Checks across entries; `line` turns an offset into the line duplicates point back to.
    fn validate(
        self,
        line: &dyn Fn(usize) -> usize,
    ) -> Result<(StaticConfig, DynamicConfig), Invalid> {
        let mut ids = HashMap::new();
        let mut hashes = HashSet::new();
        for key in &self.api_keys {
            check_unique(
                &mut ids,
                &key.get_ref().id.0,
                "the API key id",
                &key.span(),
                line,
            )?;
            if !hashes.insert(key.get_ref().hash.0) {
                return Err((
                    key.span(),
                    format!(
                        "the API key `{}` has the same hash as an earlier key",
                        key.get_ref().id.0
                    ),
                ));
            }
        }
        let mut fingerprints = HashMap::new();
        for key in &self.public_keys {
            let fp = &key.get_ref().fingerprint.0;
            check_unique(&mut fingerprints, fp, "the public key", &key.span(), line)?;
        }
        let mut key_ids = HashMap::new();
        for key in &self.token_keys {
            let id = &key.get_ref().key_id.0;
            check_unique(&mut key_ids, id, "the token key id", &key.span(), line)?;
        }
        let mut peer_names = HashMap::new();
        for peer in &self.peers {
            let name = &peer.get_ref().name.0;
            check_unique(&mut peer_names, name, "the peer", &peer.span(), line)?;
        }
        if let Some(default) = &self.forwarding.default
            && *default.get_ref() == ForwardingAction::Forward
        {
            return Err((
                default.span(),
                "the default action cannot be `forward`: it names no peer; forward with a rule (`operations = \"*\"`, `peer = …`) instead".to_string(),
            ));
        }
        for rule in &self.forwarding.rules {
            validate_rule(rule.get_ref(), &peer_names).map_err(|msg| (rule.span(), msg))?;
        }
        for (namespace, placement) in &self.services {
            let Placement::Peer { peer, over } = placement.get_ref() else {
                continue;
            };
            let Some(entry) = self
                .peers
                .iter()
                .find(|entry| entry.get_ref().name.0 == *peer)
            else {
                return Err((
                    placement.span(),
                    format!(
                        "[services] places `{namespace}` on `{peer}`, which is not a peer in [[peers]]"
                    ),
                ));
            };
            if *over == PeerPath::Irpc && entry.get_ref().irpc.is_none() {
                return Err((
                    placement.span(),
                    format!(
                        "[services] reaches `{namespace}` over irpc on `{peer}`, whose [[peers]] entry has no `irpc` address"
                    ),
                ));
            }
        }
        if let Some(limits) = &self.rate_limits {
            let rates = [
                ("per_identity", limits.get_ref().per_identity),
                ("per_ip", limits.get_ref().per_ip),
            ];
            if let Some((name, _)) = rates
                .iter()
                .find(|(_, rate)| rate.is_some_and(|r| r.per_second == 0 || r.burst == 0))
            {
                return Err((
                    limits.span(),
                    format!(
                        "rate_limits.{name} needs per_second and burst of at least 1 (leave it out to not limit)"
                    ),
                ));
            }
            let prefixes = [
                ("ipv4_prefix", limits.get_ref().ipv4_prefix, 32),
                ("ipv6_prefix", limits.get_ref().ipv6_prefix, 128),
            ];
            if let Some((name, bits, most)) = prefixes.iter().find(|(_, bits, most)| bits > most) {
                return Err((
                    limits.span(),
                    format!("rate_limits.{name} is {bits}: an address has only {most} bits"),
                ));
            }
        }
        Ok(self.into_configs())
    }

    fn into_configs(self) -> (StaticConfig, DynamicConfig) {
        let static_config = StaticConfig {
            listen: self.listen,
            node_key: self.node.key,
            worker_threads: self.node.worker_threads.map(|threads| threads.0),
            drain_time: self
                .node
                .drain_ms
                .map_or(DEFAULT_DRAIN_TIME, Duration::from_millis),
            dns_zone: self.dns.zone.0,
            http: self.http,
            call: self.call,
            irpc: self.irpc,
            secret: self.secret,
            storage: self.storage,
            services: self
                .services
                .into_iter()
                .map(|(namespace, placement)| (namespace, placement.into_inner()))
                .collect(),
        };
        let dynamic = DynamicConfig {
            generation: 0,
            token_window: Duration::from_secs(self.auth.token_window_secs.0),
            auth_cache: Duration::from_millis(self.auth.cache_ms),
            api_keys: self
                .api_keys
                .into_iter()
                .map(|key| ApiKeyEntry::from(key.into_inner()))
                .collect(),
            public_keys: self
                .public_keys
                .into_iter()
                .map(|key| key.into_inner().into_entry())
                .collect(),
            token_keys: self
                .token_keys
                .into_iter()
                .map(|key| key.into_inner().into_entry())
                .collect(),
            peers: self
                .peers
                .into_iter()
                .map(|peer| {
                    let peer = peer.into_inner();
                    Peer {
                        name: peer.name.0,
                        address: peer.address.to_string(),
                        fingerprint: peer.fingerprint.0,
                        irpc: peer.irpc.map(|address| address.to_string()),
                    }
                })
                .collect(),
            forwarding: ForwardingPolicy {
                default: self
                    .forwarding
                    .default
                    .map(Spanned::into_inner)
                    .unwrap_or_default(),
                rules: self
                    .forwarding
                    .rules
                    .into_iter()
                    .map(Spanned::into_inner)
                    .collect(),
            },
            rate_limits: self
                .rate_limits
                .map(Spanned::into_inner)
                .unwrap_or_default(),
        };
        (static_config, dynamic)
    }
}

fn validate_rule(rule: &ForwardingRule, peers: &HashMap<&str, usize>) -> Result<(), String> {
    for pattern in std::iter::once(&rule.operations).chain(&rule.identities) {
        if pattern.is_empty() || pattern[..pattern.len() - 1].contains('*') {
            return Err(format!(
                "the pattern `{pattern}` may use `*` only at its end (`echo/*`, `user:*`, `*`)"
            ));
        }
    }
    match (rule.action, &rule.peer) {
        (ForwardingAction::Forward, None) => {
            Err("a `forward` rule needs a `peer` to forward to".to_string())
        }
        (ForwardingAction::Forward, Some(peer)) if !peers.contains_key(peer.as_str()) => Err(
            format!("the rule forwards to `{peer}`, which is not a peer in [[peers]]"),
        ),
        (ForwardingAction::Local | ForwardingAction::Deny, Some(_)) => {
            Err("only a `forward` rule takes a `peer`".to_string())
        }
        _ => Ok(()),
    }
}
