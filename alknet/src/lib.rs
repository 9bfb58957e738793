//! alknet as a library: serve your own services everywhere.
//!
//! - [`Node`]: a configuration, a key, your services and the node's own (`auth`,
//!   `config`), served on every transport the configuration lists with one call, with
//!   live reload and a graceful stop.
//! - [`logging`]: the node's structured logs on stderr, as the CLI starts them.
//! - [`cli`]: the whole `alknet` command line (`serve`, `call`, `mcp-stdio`, `schema`,
//!   `keys`) for your node, so a binary's `main` is one line.
//!
//! The `alknet` binary is [`cli::run`] over the example `echo` service.

pub mod cli;
pub mod logging;
pub mod node;
mod transports;

pub use node::{Listeners, Node, NodeBuilder, NodeError};
