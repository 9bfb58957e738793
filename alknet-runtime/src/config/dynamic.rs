//! The settings a node applies without restarting: [`DynamicConfig`].

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use ed25519_dalek::VerifyingKey;
use ipnet::IpNet;
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
    /// How long a node whose `auth` service runs on a peer keeps each answer about a
    /// credential it got there (`[auth] cache_ms`).
    pub auth_cache: Duration,
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
    /// Where it listens for the irpc path, for the services `[services]` places on it
    /// `over = "irpc"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub irpc: Option<String>,
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
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RateLimits {
    /// Per authenticated identity.
    #[serde(default)]
    pub per_identity: Option<Rate>,
    /// Per client network: an IPv4 address's first `ipv4_prefix` bits, an IPv6 address's
    /// first `ipv6_prefix` bits.
    #[serde(default)]
    pub per_ip: Option<Rate>,
    /// How many leading bits of an IPv4 address name its bucket (0 to 32; default 32: each
    /// address its own).
    #[serde(default = "default_ipv4_prefix")]
    #[schemars(range(max = 32))]
    pub ipv4_prefix: u8,
    /// How many leading bits of an IPv6 address name its bucket (0 to 128; default 64: one
    /// bucket per /64, the block one host is commonly given).
    #[serde(default = "default_ipv6_prefix")]
    #[schemars(range(max = 128))]
    pub ipv6_prefix: u8,
    /// The reverse proxies whose word on the client's address is taken: addresses or CIDR
    /// networks. Only a request whose TCP peer is one of them is counted against the
    /// address its `proxy_header` names; every other request against its TCP peer.
    #[serde(default)]
    pub trusted_proxies: Vec<ProxyNetwork>,
    /// The header the trusted proxies record the client's address in.
    #[serde(default)]
    pub proxy_header: ProxyHeader,
}

impl Default for RateLimits {
    fn default() -> Self {
        RateLimits {
            per_identity: None,
            per_ip: None,
            ipv4_prefix: default_ipv4_prefix(),
            ipv6_prefix: default_ipv6_prefix(),
            trusted_proxies: Vec::new(),
            proxy_header: ProxyHeader::default(),
        }
    }
}

fn default_ipv4_prefix() -> u8 {
    32
}

fn default_ipv6_prefix() -> u8 {
    64
}

/// An address or a CIDR network of trusted proxies: `192.0.2.10`, `10.0.0.0/8`,
/// `2001:db8::/32`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(try_from = "String", into = "String")]
#[schemars(with = "String")]
pub struct ProxyNetwork(IpNet);

impl ProxyNetwork {
    /// Whether `address` is in the network.
    pub fn contains(&self, address: &IpAddr) -> bool {
        self.0.contains(address)
    }
}

impl TryFrom<String> for ProxyNetwork {
    type Error = String;
    fn try_from(text: String) -> Result<Self, String> {
        text.parse::<IpNet>()
            .or_else(|_| text.parse::<IpAddr>().map(IpNet::from))
            .map(|network| ProxyNetwork(network.trunc()))
            .map_err(|_| {
                format!(
                    "`{text}` is not an IP address or CIDR network (such as `192.0.2.10` or `10.0.0.0/8`)"
                )
            })
    }
}

impl From<ProxyNetwork> for String {
    fn from(network: ProxyNetwork) -> String {
        network.0.to_string()
    }
}

/// Where a reverse proxy records the client's address.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum ProxyHeader {
    /// `X-Forwarded-For: client, proxy1, proxy2`.
    #[default]
    #[serde(rename = "x-forwarded-for")]
    XForwardedFor,
    /// RFC 7239's `Forwarded: for=client, for=proxy1`.
    #[serde(rename = "forwarded")]
    Forwarded,
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
        note(
            self.token_window != other.token_window || self.auth_cache != other.auth_cache,
            "auth",
        );
        note(self.api_keys != other.api_keys, "api_keys");
        note(self.public_keys != other.public_keys, "public_keys");
        note(self.token_keys != other.token_keys, "token_keys");
        note(self.peers != other.peers, "peers");
        note(self.forwarding != other.forwarding, "forwarding");
        note(self.rate_limits != other.rate_limits, "rate_limits");
        changed
    }
}
