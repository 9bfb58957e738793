//! [`ConfigServiceImpl`]: holds the live [`DynamicConfig`] and reloads it.

use std::fmt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use arc_swap::ArcSwap;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{ConfigError, DEFAULT_CONFIG, DynamicConfig, StaticConfig, parse};

/// Where a node's configuration comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigSource {
    /// A TOML file, read again on every reload.
    File(PathBuf),
    /// [`DEFAULT_CONFIG`](super::DEFAULT_CONFIG), built into the binary.
    Embedded,
    /// Text given at start (tests, generated configs); a reload finds it unchanged.
    Inline {
        /// The text.
        text: String,
        /// What errors call it.
        origin: String,
    },
}

impl fmt::Display for ConfigSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigSource::File(path) => write!(f, "{}", path.display()),
            ConfigSource::Embedded => f.write_str("embedded default"),
            ConfigSource::Inline { origin, .. } => f.write_str(origin),
        }
    }
}

/// Which part of the dynamic configuration a reload replaces; the file is always parsed
/// and validated whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReloadPart {
    /// Every dynamic setting.
    All,
    /// Only the forwarding policy.
    Forwarding,
    /// Only the rate limits.
    RateLimits,
}

/// What a successful reload did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ReloadReport {
    /// The generation now in force (unchanged when nothing changed).
    pub generation: u64,
    /// The sections that changed, such as `api_keys` or `forwarding`.
    pub changed: Vec<String>,
    /// Whether static settings (listen addresses, node key, DNS zone) changed in the file:
    /// they take effect only after a restart.
    pub restart_required: bool,
}

/// The configuration's state, for status displays.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ConfigStatus {
    /// The file, or `embedded default`.
    pub source: String,
    /// The generation in force.
    pub generation: u64,
    /// Reloads refused since start.
    pub failed_reloads: u64,
    /// Why the last refused reload was refused, until a reload succeeds.
    pub last_error: Option<String>,
}

/// Holds a node's configuration: the [`StaticConfig`] read at start, and the
/// [`DynamicConfig`] in an `ArcSwap` that readers load lock-free on every call.
///
/// A reload parses and validates the whole source first; only a valid configuration is
/// swapped in, atomically. Whoever loaded the old snapshot keeps it until they drop it, so
/// calls in flight finish under the configuration they started with.
pub struct ConfigServiceImpl {
    source: ConfigSource,
    static_config: StaticConfig,
    dynamic: Arc<ArcSwap<DynamicConfig>>,
    /// Serializes reloads, and remembers what the last one saw.
    reloads: Mutex<ReloadState>,
}

impl fmt::Debug for ConfigServiceImpl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConfigServiceImpl")
            .field("source", &self.source.to_string())
            .field("generation", &self.dynamic.load().generation)
            .finish_non_exhaustive()
    }
}

/// How long a changed file must hold still before the watcher applies it (at most half
/// the watch interval).
const SETTLE: Duration = Duration::from_millis(100);

struct ReloadState {
    /// SHA-256 of the source text last read, so the watcher reloads only on change.
    seen: [u8; 32],
    failed: u64,
    last_error: Option<String>,
}

impl ConfigServiceImpl {
    /// Load a TOML file.
    pub fn from_file(path: impl Into<PathBuf>) -> Result<Self, ConfigError> {
        Self::load(ConfigSource::File(path.into()))
    }

    /// The embedded default: every transport on loopback, no credentials.
    pub fn embedded() -> Self {
        match Self::load(ConfigSource::Embedded) {
            Ok(config) => config,
            // The default is a checked-in file that a unit test parses.
            Err(err) => unreachable!("the embedded default configuration is invalid: {err}"),
        }
    }

    /// Load configuration text; `origin` names it in errors.
    pub fn from_text(
        text: impl Into<String>,
        origin: impl Into<String>,
    ) -> Result<Self, ConfigError> {
        Self::load(ConfigSource::Inline {
            text: text.into(),
            origin: origin.into(),
        })
    }

    /// Load from `source`.
    pub fn load(source: ConfigSource) -> Result<Self, ConfigError> {
        let text = read(&source)?;
        let (static_config, mut dynamic) = parse(&text, &source.to_string())?;
        dynamic.generation = 1;
        Ok(ConfigServiceImpl {
            source,
            static_config,
            dynamic: Arc::new(ArcSwap::from_pointee(dynamic)),
            reloads: Mutex::new(ReloadState {
                seen: Sha256::digest(text.as_bytes()).into(),
                failed: 0,
                last_error: None,
            }),
        })
    }

    /// The live dynamic configuration, to share with identity providers and rate limiters.
    pub fn shared(&self) -> Arc<ArcSwap<DynamicConfig>> {
        self.dynamic.clone()
    }

    /// The dynamic configuration in force now.
    pub fn snapshot(&self) -> Arc<DynamicConfig> {
        self.dynamic.load_full()
    }

    /// The settings read at start.
    pub fn static_config(&self) -> &StaticConfig {
        &self.static_config
    }

    /// Where the configuration comes from.
    pub fn source(&self) -> &ConfigSource {
        &self.source
    }

    /// Read, parse and validate the source, then swap in `part` of it. A source that does
    /// not parse or validate changes nothing: the error says why and names the line.
    pub fn reload(&self, part: ReloadPart) -> Result<ReloadReport, ConfigError> {
        let mut state = self.state();
        let text = read(&self.source);
        if part == ReloadPart::All
            && let Ok(text) = &text
        {
            state.seen = Sha256::digest(text.as_bytes()).into();
        }
        self.apply(&mut state, text, part)
    }

    /// [`reload`](Self::reload), logging the outcome with what triggered it (`SIGHUP`,
    /// `config/reload`, ...): how every trigger reloads.
    pub fn reload_logged(
        &self,
        trigger: &str,
        part: ReloadPart,
    ) -> Result<ReloadReport, ConfigError> {
        let outcome = self.reload(part);
        log_reload(trigger, &outcome);
        outcome
    }

    /// Reload everything if the source changed since it was last read; `None` if it did not.
    pub fn reload_if_changed(&self) -> Option<Result<ReloadReport, ConfigError>> {
        self.reload_if_changed_to(None)
    }

    /// [`reload_if_changed`](Self::reload_if_changed); with `expected`, only if the source
    /// still reads as the content of that digest.
    fn reload_if_changed_to(
        &self,
        expected: Option<&[u8; 32]>,
    ) -> Option<Result<ReloadReport, ConfigError>> {
        let mut state = self.state();
        let text = read(&self.source);
        if let Ok(text) = &text {
            let digest: [u8; 32] = Sha256::digest(text.as_bytes()).into();
            if digest == state.seen || expected.is_some_and(|expected| *expected != digest) {
                return None;
            }
            state.seen = digest;
        }
        Some(self.apply(&mut state, text, ReloadPart::All))
    }

    /// Whether the source reads differently from what was last read: `Some` with the
    /// digest of what it reads now (`Some(None)` if it cannot be read), `None` if unchanged.
    fn unseen_digest(&self) -> Option<Option<[u8; 32]>> {
        match read(&self.source) {
            Ok(text) => {
                let digest: [u8; 32] = Sha256::digest(text.as_bytes()).into();
                (digest != self.state().seen).then_some(Some(digest))
            }
            Err(_) => Some(None),
        }
    }

    /// Check the source every `every` and reload when it changed. Runs until the returned
    /// task is aborted. Outcomes are logged (`tracing`).
    ///
    /// The first check is one interval after the call (the source was just read). A
    /// changed file is applied only once it holds still: it must read the same twice,
    /// 100 ms (at most half the interval) apart. A save is often more than one write —
    /// truncate, then write — and a file caught between them (empty, or cut short) parses
    /// as a different, valid configuration; applying it would drop settings for a moment
    /// and raise the generation twice for one save. A file still changing is looked at
    /// again at the next check.
    pub fn watch(self: Arc<Self>, every: Duration) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            let start = tokio::time::Instant::now() + every;
            let mut ticks = tokio::time::interval_at(start, every);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let settle = (every / 2).min(SETTLE);
            loop {
                ticks.tick().await;
                let Some(digest) = self.unseen_digest() else {
                    continue;
                };
                tokio::time::sleep(settle).await;
                if let Some(outcome) = self.reload_if_changed_to(digest.as_ref()) {
                    log_reload("file changed", &outcome);
                }
            }
        })
    }

    /// The configuration's state.
    pub fn status(&self) -> ConfigStatus {
        let state = self.state();
        ConfigStatus {
            source: self.source.to_string(),
            generation: self.dynamic.load().generation,
            failed_reloads: state.failed,
            last_error: state.last_error.clone(),
        }
    }

    fn state(&self) -> MutexGuard<'_, ReloadState> {
        // The state is a few counters: one a panicking thread left behind is still usable.
        self.reloads
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn apply(
        &self,
        state: &mut ReloadState,
        text: Result<String, ConfigError>,
        part: ReloadPart,
    ) -> Result<ReloadReport, ConfigError> {
        let parsed = text.and_then(|text| parse(&text, &self.source.to_string()));
        let (static_config, fresh) = match parsed {
            Ok(parsed) => parsed,
            Err(err) => {
                state.failed += 1;
                state.last_error = Some(err.to_string());
                return Err(err);
            }
        };
        state.last_error = None;
        let current = self.dynamic.load_full();
        let mut next = (*current).clone();
        match part {
            ReloadPart::All => {
                next = DynamicConfig {
                    generation: 0,
                    ..fresh
                }
            }
            ReloadPart::Forwarding => next.forwarding = fresh.forwarding,
            ReloadPart::RateLimits => next.rate_limits = fresh.rate_limits,
        }
        let changed: Vec<String> = current
            .changed_sections(&next)
            .into_iter()
            .map(str::to_string)
            .collect();
        let generation = if changed.is_empty() {
            current.generation
        } else {
            next.generation = current.generation + 1;
            self.dynamic.store(Arc::new(next));
            current.generation + 1
        };
        Ok(ReloadReport {
            generation,
            changed,
            restart_required: static_config != self.static_config,
        })
    }
}

/// Log a reload's outcome; `trigger` says what started it (`SIGHUP`, `file changed`, ...).
fn log_reload(trigger: &str, outcome: &Result<ReloadReport, ConfigError>) {
    match outcome {
        Ok(report) if report.changed.is_empty() => {
            tracing::info!(
                trigger,
                generation = report.generation,
                "configuration unchanged"
            )
        }
        Ok(report) => tracing::info!(
            trigger,
            generation = report.generation,
            changed = %report.changed.join(","),
            restart_required = report.restart_required,
            "configuration reloaded"
        ),
        Err(err) => {
            tracing::warn!(trigger, error = %err, "configuration reload refused; the previous configuration stays in force")
        }
    }
}

fn read(source: &ConfigSource) -> Result<String, ConfigError> {
    match source {
        ConfigSource::File(path) => std::fs::read_to_string(path).map_err(|err| ConfigError {
            origin: path.display().to_string(),
            line: None,
            message: format!("cannot read the configuration file: {err}"),
        }),
        ConfigSource::Embedded => Ok(DEFAULT_CONFIG.to_string()),
        ConfigSource::Inline { text, .. } => Ok(text.clone()),
    }
}
