//! `[services]`: where each service a node has runs — here, nowhere, or on a peer.

use std::fmt;

use serde::de::{self, MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};

/// Where one service runs, as `[services]` places it. A service the table does not name
/// runs here.
///
/// ```toml
/// [services]
/// config = "local"                               # here (the default)
/// storage = "off"                                # not on this node
/// secret = { peer = "secret-node", over = "irpc" }
/// echo = { peer = "worker-1" }                   # over the call protocol
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Placement {
    /// In this process.
    Local,
    /// Not on this node: its operations are not served here.
    Off,
    /// On a peer: calls go there, and the service is listed here as if it ran here.
    Peer {
        /// The `[[peers]]` entry it runs on.
        peer: String,
        /// How it is reached.
        over: PeerPath,
    },
}

/// How a service placed on a peer is reached.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PeerPath {
    /// The JSON call protocol over QUIC, to the peer's `address`: any peer that serves it.
    #[default]
    Call,
    /// The irpc path (postcard over QUIC), to the peer's `irpc` address: typed calls cross
    /// without JSON; the peer must be this same service, built from the same declaration.
    Irpc,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct OnPeer {
    peer: String,
    #[serde(default)]
    over: PeerPath,
}

impl<'de> Deserialize<'de> for Placement {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct PlacementVisitor;

        impl<'de> Visitor<'de> for PlacementVisitor {
            type Value = Placement;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(
                    "`\"local\"`, `\"off\"`, or a peer: `{ peer = \"name\", over = \"call\" | \"irpc\" }`",
                )
            }

            fn visit_str<E: de::Error>(self, value: &str) -> Result<Placement, E> {
                match value {
                    "local" => Ok(Placement::Local),
                    "off" => Ok(Placement::Off),
                    other => Err(E::custom(format!(
                        "`{other}` is no placement: use \"local\", \"off\", or `{{ peer = \"name\" }}` to reach the service on a peer"
                    ))),
                }
            }

            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Placement, A::Error> {
                let OnPeer { peer, over } =
                    OnPeer::deserialize(de::value::MapAccessDeserializer::new(map))?;
                Ok(Placement::Peer { peer, over })
            }
        }

        deserializer.deserialize_any(PlacementVisitor)
    }
}
