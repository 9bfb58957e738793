//! Configuration (SPEC §6): one TOML file, split into [`StaticConfig`] (read once; restart
//! to change) and [`DynamicConfig`] (swapped atomically on reload), and the
//! [`ConfigServiceImpl`] that loads, validates and reloads it.
//!
//! ```
//! use alknet_runtime::config::{ConfigServiceImpl, ForwardingAction};
//!
//! let config = ConfigServiceImpl::embedded();
//! assert_eq!(config.static_config().dns_zone, "alk.dev");
//! let snapshot = config.snapshot();
//! assert_eq!(snapshot.forwarding.default, ForwardingAction::Local);
//!
//! let broken = ConfigServiceImpl::from_text("[listen]\ncall = 4433\n", "inline");
//! assert_eq!(broken.unwrap_err().line, Some(2));
//! ```
//!
//! `docs/configuration.md` describes every setting.

use std::collections::BTreeMap;
use std::fmt;
use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::time::Duration;

mod dynamic;
mod file;
mod forwarding;
mod placement;
mod service;
pub(crate) mod time;

pub use dynamic::{
    ApiKeyEntry, DynamicConfig, Peer, ProxyHeader, ProxyNetwork, Rate, RateLimits, TokenKey,
};
pub use file::{
    CallSettings, CredentialEntries, DEFAULT_AUTH_CACHE, HttpSettings, IrpcSettings, Listen,
    SecretSettings, StorageSettings,
};
pub use forwarding::{ForwardingAction, ForwardingPolicy, ForwardingRule};
pub use placement::{PeerPath, Placement};
pub use service::{ConfigServiceImpl, ConfigSource, ConfigStatus, ReloadPart, ReloadReport};
pub use time::parse_datetime;

/// The embedded default configuration: every transport on loopback, no credentials.
pub const DEFAULT_CONFIG: &str = include_str!("default.toml");

/// The most threads `[node] worker_threads` may ask for.
pub const MAX_WORKER_THREADS: usize = 1024;

/// How long a stopping node waits for the calls in flight, unless `[node] drain_ms` says.
pub const DEFAULT_DRAIN_TIME: Duration = Duration::from_secs(10);

/// Settings read once at start: listen addresses, the node's key, the DNS zone, the HTTP
/// adapter's, the call protocol's and the irpc listener's limits, the seed file's settings,
/// where services run.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct StaticConfig {
    /// Where each transport listens.
    pub listen: Listen,
    /// The file holding the node's Ed25519 secret key; absent: a fresh key each start.
    pub node_key: Option<PathBuf>,
    /// How many threads run the node's tasks; absent: tokio's default (the environment
    /// variable `TOKIO_WORKER_THREADS`, else one per CPU core). At most
    /// [`MAX_WORKER_THREADS`].
    pub worker_threads: Option<NonZeroUsize>,
    /// How long a stopping node lets the calls in flight finish before it ends them with
    /// `UNAVAILABLE` (`[node] drain_ms`; default [`DEFAULT_DRAIN_TIME`]).
    pub drain_time: Duration,
    /// The zone the DNS adapter answers for.
    pub dns_zone: String,
    /// The HTTP adapter's limits and MCP's allowed `Host` names.
    pub http: HttpSettings,
    /// The call protocol's limits.
    pub call: CallSettings,
    /// The irpc listener's limits.
    pub irpc: IrpcSettings,
    /// The `secret` service's seed file and its sealing and unlocking settings.
    pub secret: SecretSettings,
    /// The `storage` service's database and limits.
    pub storage: StorageSettings,
    /// Where services run (`[services]`), by namespace; a namespace not named runs here.
    pub services: BTreeMap<String, Placement>,
}

/// Why a configuration was refused: where, on which line, and what is wrong.
#[derive(
    Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize, schemars::JsonSchema,
)]
pub struct ConfigError {
    /// The file (or `embedded default`) the text came from.
    pub origin: String,
    /// The 1-based line of the problem, when it has one.
    pub line: Option<usize>,
    /// What is wrong, in one sentence.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "{}, line {line}: {}", self.origin, self.message),
            None => write!(f, "{}: {}", self.origin, self.message),
        }
    }
}

impl std::error::Error for ConfigError {}

impl ConfigError {
    /// The message of the `INVALID_CONFIG` error a reload operation answers with for this
    /// error (whose details are the error itself).
    pub fn not_reloaded(&self) -> String {
        format!("the configuration was not reloaded: {self}")
    }
}

/// Where a node keeps its files when the configuration names none (the `secret` seed, the
/// `storage` database): `alknet` under `$XDG_DATA_HOME`, else under `~/.local/share`; none
/// when neither variable is set.
pub fn data_dir() -> Option<std::path::PathBuf> {
    let data = std::env::var_os("XDG_DATA_HOME")
        .filter(|dir| !dir.is_empty())
        .map(std::path::PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME").map(|home| std::path::Path::new(&home).join(".local/share"))
        })?;
    Some(data.join("alknet"))
}

/// Parse and validate configuration text; `origin` names it in errors.
pub fn parse(text: &str, origin: &str) -> Result<(StaticConfig, DynamicConfig), ConfigError> {
    file::parse(text, origin)
}
