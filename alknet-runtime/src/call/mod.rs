//! The call protocol (SPEC §7): JSON [`EventEnvelope`]s between nodes and from clients in
//! any language, over QUIC ([`CallEndpoint`]) and WebSocket (feature `websocket`).
//!
//! - [`CallServer`] serves an [`OperationEnv`](crate::OperationEnv) to peers;
//! - [`Connection`] calls a peer, and can serve it on the same connection;
//! - [`RemoteNode`] mounts a peer into an `OperationEnv` with
//!   [`OperationEnvBuilder::remote`](crate::OperationEnvBuilder::remote) and
//!   [`route`](crate::OperationEnvBuilder::route).
//!
//! `docs/call-protocol.md` is the wire specification.

mod budget;
mod client;
mod peers;
mod quic;
mod remote;
mod server;
#[cfg(feature = "websocket")]
mod websocket;
mod wire;

/// Node identities and key pinning live in [`crate::quic`]; re-exported for the call protocol's users.
pub use crate::quic::{NodeIdentity, PeerKey};
pub use client::{CallOptions, Connection};
pub use peers::{PeerLinks, PeerReadiness};
pub use quic::{CallConfig, CallEndpoint};
pub use remote::{CallsBack, RemoteNode};
pub use server::{CallServer, DEFAULT_UNAUTHENTICATED_MAX_FRAME_SIZE, ListedOperation};
#[cfg(feature = "websocket")]
pub use websocket::{WebSocketAdapter, WebSocketLimits};
pub use wire::{
    ALPN, CallRequested, DEFAULT_FRAME_READ_TIMEOUT, DEFAULT_MAX_FRAME_SIZE, DecodeError, Event,
    EventEnvelope, FrameError, FrameReader, write_frame,
};

/// The QUIC implementation, for what [`Connection::quic`] exposes.
pub use noq;
