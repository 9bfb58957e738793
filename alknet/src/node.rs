//! The node's services, assembled in one place: `serve`, `call`, the quickstart and the
//! schema commands all mount exactly these.

use std::sync::Arc;

use alknet_auth::{AuthProtocol, AuthService};
use alknet_config::{ConfigProtocol, ConfigService};
use alknet_example::{EchoProtocol, EchoService};
use alknet_runtime::config::ConfigServiceImpl;
use alknet_runtime::quic::NodeIdentity;
use alknet_runtime::{
    ConfigIdentityProvider, IdentityProvider, NodePolicy, OperationEnv, ServiceSpec,
};

/// A node: its configuration, its key, its services, and what adapters need to admit
/// callers.
pub struct Node {
    /// The configuration, reloadable.
    pub config: Arc<ConfigServiceImpl>,
    /// The node's key: what its listeners prove, and how it connects to its peers.
    pub identity: NodeIdentity,
    /// Every service of the node, mounted in-process, admitting outside calls with the
    /// configuration's forwarding policy and rate limits.
    pub env: OperationEnv,
    /// Resolves the credentials callers present, against the live configuration.
    pub identities: Arc<dyn IdentityProvider>,
}

impl Node {
    /// Assemble a node over `config`, with the key its configuration names (or a fresh
    /// one).
    pub fn new(config: Arc<ConfigServiceImpl>) -> Result<Node, String> {
        let identity = node_identity(&config)?;
        let policy = NodePolicy::new(config.shared()).forward_as(identity.clone());
        let env = OperationEnv::builder()
            .local(EchoProtocol::local(EchoService::default()))
            .local(AuthProtocol::local(AuthService::new(config.clone())))
            .local(ConfigProtocol::local(ConfigService::new(config.clone())))
            .policy(policy)
            .build()
            .map_err(|err| err.to_string())?;
        Ok(Node {
            identities: Arc::new(ConfigIdentityProvider::new(config.shared())),
            identity,
            config,
            env,
        })
    }
}

/// The node's key: from the configured file, or a fresh one each start.
fn node_identity(config: &ConfigServiceImpl) -> Result<NodeIdentity, String> {
    match &config.static_config().node_key {
        Some(path) => {
            let pem = std::fs::read_to_string(path)
                .map_err(|err| format!("cannot read the node key {}: {err}", path.display()))?;
            NodeIdentity::from_pem(&pem).map_err(|err| {
                format!(
                    "the node key {} is not usable: {}; a node key is an Ed25519 key in PKCS#8 PEM (`-----BEGIN PRIVATE KEY-----`), as `alknet keys node --out FILE` writes",
                    path.display(),
                    err.message
                )
            })
        }
        None => NodeIdentity::generate().map_err(|err| err.message),
    }
}

/// An `OperationEnv` with every service of the node mounted in-process, on the embedded
/// default configuration.
pub fn env() -> Result<OperationEnv, String> {
    Ok(Node::new(Arc::new(ConfigServiceImpl::embedded()))?.env)
}

/// The spec of every service of the node, in the order they are mounted.
pub fn services() -> Result<Vec<ServiceSpec>, String> {
    Ok(env()?.services().cloned().collect())
}
