//! The settings a node applies without restarting: [`DynamicConfig`].

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use ed25519_dalek::VerifyingKey;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::ForwardingPolicy;
use crate::{Identity, KeyHolder};

/// Keys, peers, forwarding policy and rate limits: everything a reload may change.
///
/// Readers hold one snapshot (`Arc<DynamicConfig>`) for as long as they need it; a reload
/// swaps in a new one and never edits a snapshot in place.
#[derive(Debug, Clone, PartialEq)]
pub struct DynamicConfig {
    /// Counts successful loads from 1; every reload that applies a change raises it.
    pub generation: u64,
    /// How far a signed token's timestamp may be from the node's clock.
    pub token_window: Duration,
    /// API keys, by their SHA-256 hashes.
    pub api_keys: Vec<ApiKeyEntry>,
    /// Public keys by fingerprint (`ed25519:<hex>`): who holds each, and whether it is a
    /// cluster node (`cluster = true`).
    pub public_keys: HashMap<String, KeyHolder>,
    /// The keys that sign tokens, by key id.
    pub token_keys: HashMap<String, TokenKey>,
    /// The nodes this node knows.
    pub peers: Vec<Peer>,
    /// Where calls go: served here, forwarded to a peer, or refused.
    pub forwarding: ForwardingPolicy,
    /// How many calls an identity and an IP address may make.
    pub rate_limits: RateLimits,
}

/// An API key as the configuration keeps it: never the key, only its SHA-256.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKeyEntry {
    /// The key's name, unique in the file; logs and errors use it, never the key.
    pub id: String,
    /// SHA-256 of the whole key, `alk_` included.
    pub hash: [u8; 32],
    /// Who the key authenticates.
    pub identity: Arc<Identity>,
    /// When the key stops working, in Unix seconds.
    pub expires_at: Option<i64>,
}

/// A key that signs tokens, and the identity its tokens authenticate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenKey {
    /// The Ed25519 public key signatures are checked against.
    pub public_key: VerifyingKey,
    /// Who a token signed by the key authenticates.
    pub identity: Arc<Identity>,
}

/// Another node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Peer {
    /// The name calls and forwarding rules use for it.
    pub name: String,
    /// Where it listens for the call protocol.
    pub address: String,
    /// The fingerprint of its key; a connection to it must prove this key.
    pub fingerprint: String,
}

/// A token bucket's settings: `per_second` calls on average, `burst` at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Rate {
    /// Calls per second, on average.
    pub per_second: u32,
    /// Calls allowed at once after a quiet spell.
    pub burst: u32,
}

/// The rate limits adapters enforce; an absent limit does not limit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RateLimits {
    /// Per authenticated identity.
    #[serde(default)]
    pub per_identity: Option<Rate>,
    /// Per client IP address.
    #[serde(default)]
    pub per_ip: Option<Rate>,
}

impl DynamicConfig {
    /// The names of the sections that differ between `self` and `other`.
    pub fn changed_sections(&self, other: &DynamicConfig) -> Vec<&'static str> {
        let mut changed = Vec::new();
        let mut note = |differs: bool, name| {
            if differs {
                changed.push(name)
            }
        };
        note(self.token_window != other.token_window, "auth");
        note(self.api_keys != other.api_keys, "api_keys");
        note(self.public_keys != other.public_keys, "public_keys");
        note(self.token_keys != other.token_keys, "token_keys");
        note(self.peers != other.peers, "peers");
        note(self.forwarding != other.forwarding, "forwarding");
        note(self.rate_limits != other.rate_limits, "rate_limits");
        changed
    }
}
