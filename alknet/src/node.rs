//! The node's services, assembled in one place: `serve`, `call`, the quickstart and the
//! schema commands all mount exactly these.

use std::sync::Arc;

use alknet_auth::{AuthProtocol, AuthService};
use alknet_config::{ConfigProtocol, ConfigService};
use alknet_example::{EchoProtocol, EchoService};
use alknet_runtime::config::ConfigServiceImpl;
use alknet_runtime::{
    BuildError, ConfigIdentityProvider, IdentityProvider, OperationEnv, RateLimiter, ServiceSpec,
};

/// A node: its configuration, its services, and what adapters need to admit callers.
pub struct Node {
    /// The configuration, reloadable.
    pub config: Arc<ConfigServiceImpl>,
    /// Every service of the node, mounted in-process.
    pub env: OperationEnv,
    /// Resolves the credentials callers present, against the live configuration.
    pub identities: Arc<dyn IdentityProvider>,
    /// The rate limits adapters enforce, from the live configuration.
    pub rate_limiter: Arc<RateLimiter>,
}

impl Node {
    /// Assemble a node over `config`.
    pub fn new(config: Arc<ConfigServiceImpl>) -> Result<Node, BuildError> {
        let env = OperationEnv::builder()
            .local(EchoProtocol::local(EchoService::default()))
            .local(AuthProtocol::local(AuthService::new(config.clone())))
            .local(ConfigProtocol::local(ConfigService::new(config.clone())))
            .build()?;
        Ok(Node {
            identities: Arc::new(ConfigIdentityProvider::new(config.shared())),
            rate_limiter: Arc::new(RateLimiter::new(config.shared())),
            config,
            env,
        })
    }
}

/// An `OperationEnv` with every service of the node mounted in-process, on the embedded
/// default configuration.
pub fn env() -> Result<OperationEnv, BuildError> {
    Ok(Node::new(Arc::new(ConfigServiceImpl::embedded()))?.env)
}

/// The spec of every service of the node, in the order they are mounted.
pub fn services() -> Result<Vec<ServiceSpec>, BuildError> {
    Ok(env()?.services().cloned().collect())
}
