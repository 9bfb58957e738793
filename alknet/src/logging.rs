//! Structured logs on stderr, filtered by `ALKNET_LOG` (`info` by default; for example
//! `debug` or `warn,alknet=debug`).

use std::io::IsTerminal;

use tracing_subscriber::filter::Targets;
use tracing_subscriber::prelude::*;

/// Send the process's `tracing` events to stderr, filtered by `ALKNET_LOG`: what
/// [`cli::run`](crate::cli::run) does first. A program that serves a [`Node`](crate::Node)
/// without the CLI calls it (or installs a subscriber of its own) to see the node's logs.
pub fn init() -> Result<(), String> {
    let spec = std::env::var("ALKNET_LOG").unwrap_or_else(|_| "info".to_string());
    let filter: Targets = spec
        .parse()
        .map_err(|err| format!("ALKNET_LOG=`{spec}` is not a log filter: {err}"))?;
    tracing_subscriber::registry()
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_target(false)
                .with_ansi(std::io::stderr().is_terminal()),
        )
        .with(filter)
        .try_init()
        .map_err(|err| format!("cannot start logging: {err}"))
}
