//! The `alknet` command line, for your own services: `serve`, `call`, `mcp-stdio`,
//! `schema export|check|diff`, `secret …` and `keys …`, over the node your services make.
//!
//! A binary that serves its own services is one call:
//!
//! ```no_run
//! use alknet_example::{EchoProtocol, EchoService};
//!
//! fn main() -> std::process::ExitCode {
//!     alknet::cli::run(|node| node.local(EchoProtocol::local(EchoService::default())))
//! }
//! ```
//!
//! `services` receives a [`NodeBuilder`] over the configuration the command was given
//! (`--config FILE`, or the embedded default) and mounts what the node serves; every
//! command works on exactly that node. To add commands of your own, flatten [`Command`]
//! into your own `clap` parser and hand it to [`execute`].

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use alknet_runtime::config::ConfigServiceImpl;
use clap::{Args, Parser, Subcommand};

use crate::node::{Node, NodeBuilder, NodeError};

mod call;
mod keys;
mod schema;
mod secret;

/// Parse the process's arguments, start logging, and run the command on the node
/// `services` assembles. Returns the process's exit code; an error is printed on stderr
/// as `NAME: message`.
pub fn run(services: impl FnOnce(NodeBuilder) -> NodeBuilder) -> ExitCode {
    let cli = Cli::parse();
    execute(cli.command, services)
}

/// Run one command (parsed by you, when [`Command`] is part of your own parser).
pub fn execute(command: Command, services: impl FnOnce(NodeBuilder) -> NodeBuilder) -> ExitCode {
    if let Err(message) = crate::logging::init() {
        eprintln!("{}: {message}", program());
        return ExitCode::FAILURE;
    }
    let assemble = |config: ConfigServiceImpl| services(Node::builder(config));
    match command.run(assemble) {
        Ok(code) => code,
        Err(message) => {
            eprintln!("{}: {message}", program());
            ExitCode::FAILURE
        }
    }
}

/// The binary's name, as error messages start.
fn program() -> String {
    std::env::args_os()
        .next()
        .as_deref()
        .map(Path::new)
        .and_then(Path::file_name)
        .map_or_else(
            || "alknet".to_string(),
            |name| name.to_string_lossy().into_owned(),
        )
}

#[derive(Parser)]
#[command(version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// The node's commands.
#[derive(Subcommand)]
pub enum Command {
    /// Run the node: every transport `[listen]` gives an address, on the embedded default
    /// configuration or `--config`. Reloads the configuration on SIGHUP, on
    /// `config/reload`, and when the file changes; SIGTERM or Ctrl-C stops it gracefully.
    Serve {
        /// The TOML configuration file (see docs/configuration.md).
        #[arg(long)]
        config: Option<PathBuf>,
        /// How often to check the configuration file for changes, in milliseconds.
        #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(10..))]
        watch_interval_ms: u64,
    },
    /// Call any operation of the node's services and print the output: in-process, or on a
    /// running node over the call protocol (`--node`), HTTP (`--http`) or WebSocket (`--ws`).
    Call {
        /// The operation, `namespace/operation` (for example `echo/say`).
        operation: String,
        /// The input as JSON; `-` or nothing reads it from stdin when stdin is not a terminal.
        input: Option<String>,
        #[command(flatten)]
        target: Target,
    },
    /// The node's seed (the `secret` service): make it, unlock it, lock it, ask its state.
    /// A passphrase comes from `ALKNET_SECRET_PASSPHRASE` or a prompt, never an argument.
    #[command(subcommand)]
    Secret(SecretCommand),
    /// Make credentials.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Serve the node's services as MCP tools over stdin/stdout, for an MCP client to spawn.
    McpStdio {
        /// The TOML configuration file (see docs/configuration.md).
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Export and check the JSON Schemas and the OpenAPI document of the node's services.
    #[command(subcommand)]
    Schema(SchemaCommand),
}

/// Where a call goes: the node `services` assembles in this process (over `--config`), or
/// a running node over the call protocol (`--node`), HTTP (`--http`) or WebSocket (`--ws`).
#[derive(Args, Debug, Clone, Default)]
pub struct Target {
    /// The configuration file the node in this process is assembled over (its credentials,
    /// its `[secret] file`).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Call as the identity of this API key.
    #[arg(long, env = "ALKNET_API_KEY")]
    pub api_key: Option<String>,
    /// Call as the identity of this signed token.
    #[arg(long, env = "ALKNET_TOKEN")]
    pub token: Option<String>,
    /// Call a running node over the call protocol (QUIC) at this address, such as
    /// 127.0.0.1:4433, instead of a node assembled in this process.
    #[arg(long, requires = "node_key")]
    pub node: Option<std::net::SocketAddr>,
    /// The key of the node named by --node (`ed25519:…`, printed by `serve`).
    #[arg(long, requires = "node")]
    pub node_key: Option<String>,
    /// Call a running node over HTTP at this base URL, such as http://127.0.0.1:8080
    /// (`POST /v1/{namespace}/{op}`; subscriptions as Server-Sent Events).
    #[arg(long, conflicts_with = "node")]
    pub http: Option<String>,
    /// Call a running node over the call protocol on a WebSocket at this URL, such as
    /// ws://127.0.0.1:4480/call.
    #[arg(long, conflicts_with_all = ["node", "http"])]
    pub ws: Option<String>,
}

/// Who a command in this process runs as when it is given no credential: whoever can run
/// it can read and write the node's files (its seed, its database), which is all this
/// identity may do there.
fn operator() -> alknet_runtime::Identity {
    alknet_runtime::Identity::new("local:operator")
        .with_scopes(["secret:admin"])
        .with_resources([alknet_runtime::ResourceGrant::new("graph", ["*"])])
}

impl Target {
    /// Whether the call goes to a running node rather than one assembled in this process.
    pub fn is_running_node(&self) -> bool {
        self.node.is_some() || self.http.is_some() || self.ws.is_some()
    }
}

/// `secret …`.
#[derive(Subcommand)]
pub enum SecretCommand {
    /// Make the node's seed and seal it under a passphrase (asked twice): a new seed, whose
    /// 24 words are printed this once, or with `--import` one restored from its words. In
    /// this process, on the seed file the configuration names, or on a running node.
    Init {
        /// Restore the seed from its mnemonic (from `ALKNET_SECRET_MNEMONIC` or a prompt).
        #[arg(long)]
        import: bool,
        #[command(flatten)]
        target: Target,
    },
    /// Open a running node's seed into its memory.
    Unlock {
        #[command(flatten)]
        target: Target,
    },
    /// Zero a running node's seed in its memory, and every key derived from it.
    Lock {
        #[command(flatten)]
        target: Target,
    },
    /// Whether the node has a seed, whether it is unlocked, and its public fingerprint.
    Status {
        #[command(flatten)]
        target: Target,
    },
}

/// `keys …`.
#[derive(Subcommand)]
pub enum KeysCommand {
    /// Make an API key: prints the key once, and the configuration entry with its hash.
    New {
        /// The key's name in the configuration (unique; logs use it).
        #[arg(long, default_value = "key-1")]
        id: String,
        /// The identity the key authenticates (default `key:<id>`).
        #[arg(long)]
        identity: Option<String>,
        /// A scope to grant (repeat for several).
        #[arg(long = "scope")]
        scopes: Vec<String>,
        /// A resource grant, `type:action` (repeat for several).
        #[arg(long = "resource")]
        resources: Vec<String>,
        /// When the key stops working, such as `2027-01-01T00:00:00Z`.
        #[arg(long)]
        expires: Option<String>,
    },
    /// Make an API key kept in the node's storage (`[storage] identities = true`): prints
    /// the key once. In this process, on the database the configuration names, or on a
    /// running node as a caller holding `graph:write`.
    Add {
        /// The key's name (unique; logs use it).
        #[arg(long)]
        id: String,
        /// The identity the key authenticates (default `key:<id>`).
        #[arg(long)]
        identity: Option<String>,
        /// A scope to grant (repeat for several).
        #[arg(long = "scope")]
        scopes: Vec<String>,
        /// A resource grant, `type:action` (repeat for several).
        #[arg(long = "resource")]
        resources: Vec<String>,
        /// When the key stops working, such as `2027-01-01T00:00:00Z`.
        #[arg(long)]
        expires: Option<String>,
        #[command(flatten)]
        target: Target,
    },
    /// Let another node's key (its fingerprint, as `keys node` printed it) authenticate
    /// to the node through its storage (`[storage] identities = true`): the node keys of
    /// a cluster kept on its auth node. Where `keys add` does it, so does this.
    AddNode {
        /// The key's fingerprint, `ed25519:` and 64 hex digits.
        #[arg(long)]
        fingerprint: String,
        /// The identity the key authenticates, such as `node:head`.
        #[arg(long)]
        identity: String,
        /// A scope to grant (repeat for several).
        #[arg(long = "scope")]
        scopes: Vec<String>,
        /// A resource grant, `type:action` (repeat for several).
        #[arg(long = "resource")]
        resources: Vec<String>,
        /// A node of this cluster: its calls' `forwarded_for` and request ids are believed
        /// (see docs/configuration.md, "Cluster nodes and outside callers").
        #[arg(long)]
        cluster: bool,
        #[command(flatten)]
        target: Target,
    },
    /// The API keys kept in the node's storage (their hashes, never the keys).
    List {
        #[command(flatten)]
        target: Target,
    },
    /// Remove an API key (or a node key) from the node's storage: refused from the next
    /// call on.
    Revoke {
        /// The key's name (a node key's: its fingerprint).
        #[arg(long)]
        id: String,
        #[command(flatten)]
        target: Target,
    },
    /// Make a key that signs tokens: writes its secret to a new file (owner-only) and
    /// prints the `[[token_keys]]` entry that accepts its tokens.
    SigningKey {
        /// The key id tokens name (letters, digits, `-`, `_`, `:`).
        #[arg(long)]
        key_id: String,
        /// The file to create for the secret key; it must not exist.
        #[arg(long)]
        out: PathBuf,
        /// The identity the key's tokens authenticate.
        #[arg(long)]
        identity: String,
        /// A scope to grant (repeat for several).
        #[arg(long = "scope")]
        scopes: Vec<String>,
        /// A resource grant, `type:action` (repeat for several).
        #[arg(long = "resource")]
        resources: Vec<String>,
    },
    /// Make a node key: writes it to a new file (PKCS#8 PEM, owner-only) for `[node] key`
    /// and prints its fingerprint, the one peers pin.
    Node {
        /// The file to create for the key; it must not exist.
        #[arg(long)]
        out: PathBuf,
    },
    /// Sign a token now (valid within the node's window, ±300 s by default) and print it.
    Token {
        /// The key id of the signing key.
        #[arg(long)]
        key_id: String,
        /// The file `keys signing-key` wrote.
        #[arg(long)]
        secret_file: PathBuf,
    },
}

/// `schema …`.
#[derive(Subcommand)]
pub enum SchemaCommand {
    /// Write `services/{namespace}.json`, `index.json` and `openapi.json`; refuses to
    /// overwrite a document with a breaking change unless the service's major version went up.
    Export {
        /// The schema directory.
        #[arg(long, default_value = "schemas")]
        out: PathBuf,
    },
    /// Fail when the committed files differ from what the code generates (showing the
    /// diff), or when the code breaks a committed service without a major version bump.
    Check {
        /// The schema directory.
        #[arg(long, default_value = "schemas")]
        dir: PathBuf,
    },
    /// Classify every change between two service documents (or two schema directories)
    /// as breaking or compatible; fails if any is breaking.
    Diff {
        /// The old document or directory.
        old: PathBuf,
        /// The new document or directory.
        new: PathBuf,
    },
}

impl Command {
    fn run(
        self,
        assemble: impl FnOnce(ConfigServiceImpl) -> NodeBuilder,
    ) -> Result<ExitCode, String> {
        match self {
            Command::Serve {
                config,
                watch_interval_ms,
            } => {
                let config = load_config(config.as_deref())?;
                runtime(&config)?
                    .block_on(async {
                        assemble(config)
                            .config_watch_interval(Duration::from_millis(watch_interval_ms))
                            .connect()
                            .await?
                            .serve()
                            .await?;
                        Ok::<_, NodeError>(ExitCode::SUCCESS)
                    })
                    .map_err(|err| err.to_string())
            }
            Command::McpStdio { config } => {
                let config = load_config(config.as_deref())?;
                runtime(&config)?
                    .block_on(async {
                        assemble(config).connect().await?.serve_mcp_stdio().await?;
                        Ok::<_, NodeError>(ExitCode::SUCCESS)
                    })
                    .map_err(|err| err.to_string())
            }
            Command::Call {
                operation,
                input,
                target,
            } => call::run(
                call::CallRequest {
                    operation,
                    input: call::read_input(input.as_deref())?,
                    target,
                    operator: None,
                },
                assemble,
            ),
            Command::Secret(command) => secret::run(command, assemble),
            Command::Keys(KeysCommand::New {
                id,
                identity,
                scopes,
                resources,
                expires,
            }) => keys::new(keys::NewKey {
                id,
                identity,
                scopes,
                resources,
                expires,
            }),
            Command::Keys(KeysCommand::Add {
                id,
                identity,
                scopes,
                resources,
                expires,
                target,
            }) => keys::add(
                keys::NewKey {
                    id,
                    identity,
                    scopes,
                    resources,
                    expires,
                },
                target,
                assemble,
            ),
            Command::Keys(KeysCommand::AddNode {
                fingerprint,
                identity,
                scopes,
                resources,
                cluster,
                target,
            }) => keys::add_node(
                &fingerprint,
                keys::Grants {
                    identity,
                    scopes,
                    resources,
                },
                cluster,
                target,
                assemble,
            ),
            Command::Keys(KeysCommand::List { target }) => keys::list_stored(target, assemble),
            Command::Keys(KeysCommand::Revoke { id, target }) => {
                keys::revoke(&id, target, assemble)
            }
            Command::Keys(KeysCommand::SigningKey {
                key_id,
                out,
                identity,
                scopes,
                resources,
            }) => keys::signing_key(
                &key_id,
                keys::Grants {
                    identity,
                    scopes,
                    resources,
                },
                &out,
            ),
            Command::Keys(KeysCommand::Node { out }) => keys::node(&out),
            Command::Keys(KeysCommand::Token {
                key_id,
                secret_file,
            }) => keys::token(&key_id, &secret_file),
            Command::Schema(SchemaCommand::Export { out }) => {
                schema::export(&services(assemble)?, &out)
            }
            Command::Schema(SchemaCommand::Check { dir }) => {
                schema::check(&services(assemble)?, &dir)
            }
            Command::Schema(SchemaCommand::Diff { old, new }) => schema::diff(&old, &new),
        }
    }
}

/// The configuration at `path`, or the embedded default.
fn load_config(path: Option<&Path>) -> Result<ConfigServiceImpl, String> {
    match path {
        Some(path) => ConfigServiceImpl::from_file(path).map_err(|err| err.to_string()),
        None => Ok(ConfigServiceImpl::embedded()),
    }
}

/// The spec of every service the node mounts, on the embedded default configuration.
fn services(
    assemble: impl FnOnce(ConfigServiceImpl) -> NodeBuilder,
) -> Result<Vec<alknet_runtime::ServiceSpec>, String> {
    let node = assemble(ConfigServiceImpl::embedded())
        .build()
        .map_err(|err| format!("cannot assemble the node's services: {err}"))?;
    Ok(node.services())
}

/// The runtime a node runs on: threads for every core (or `[node] worker_threads`), so
/// connections are served in parallel and no one long step stalls the others.
fn runtime(config: &ConfigServiceImpl) -> Result<tokio::runtime::Runtime, String> {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if let Some(threads) = config.static_config().worker_threads {
        builder.worker_threads(threads.get());
    }
    builder
        .enable_all()
        .build()
        .map_err(|err| format!("cannot start a tokio runtime: {err}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn workers(text: &str) -> usize {
        let config = ConfigServiceImpl::from_text(text, "test").unwrap();
        runtime(&config).unwrap().metrics().num_workers()
    }

    #[test]
    fn the_node_runs_on_the_threads_the_configuration_asks_for_else_one_per_core() {
        assert_eq!(workers("[node]\nworker_threads = 3\n"), 3);
        if std::env::var_os("TOKIO_WORKER_THREADS").is_none() {
            let cores = std::thread::available_parallelism().unwrap().get();
            assert_eq!(workers(""), cores);
        }
    }
}
