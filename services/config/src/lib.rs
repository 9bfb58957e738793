//! `config`: reads and reloads the node's dynamic configuration, backed by
//! [`ConfigServiceImpl`]. `config/reload` is the admin reload trigger.
//!
//! ```
//! use std::sync::Arc;
//! use alknet_config::{ConfigClient, ConfigProtocol, ConfigService};
//! use alknet_runtime::config::{ConfigServiceImpl, ForwardingAction};
//! use alknet_runtime::{Caller, Identity, OperationEnv};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let config = Arc::new(ConfigServiceImpl::embedded());
//! let env = OperationEnv::builder()
//!     .local(ConfigProtocol::local(ConfigService::new(config)))
//!     .build()
//!     .unwrap();
//! let admin = env.with_caller(Caller::new().identity(Identity::new("user:ops").with_scopes(["config:admin"])));
//! let policy = ConfigClient::new(admin).get_forwarding_policy().await.unwrap();
//! assert_eq!(policy.default, ForwardingAction::Local);
//! # }
//! ```

#![deny(missing_docs, warnings)]

use std::sync::Arc;

use alknet_runtime::config::{
    ConfigError, ConfigServiceImpl, ConfigStatus, ForwardingPolicy, RateLimits, ReloadPart,
    ReloadReport,
};
use alknet_runtime::prelude::*;

/// Reads and reloads the node's dynamic configuration.
#[alk_service(namespace = "config", version = "1.0.0")]
pub enum ConfigProtocol {
    /// The forwarding policy in force: the rules in order, and the default.
    #[alk_operation(query, output = ForwardingPolicy, any_scopes = ["config:read", "config:admin"])]
    GetForwardingPolicy,

    /// The rate limits in force.
    #[alk_operation(query, output = RateLimits, any_scopes = ["config:read", "config:admin"])]
    GetRateLimits,

    /// Where the configuration comes from, its generation, and why the last reload failed.
    #[alk_operation(query, output = ConfigStatus, any_scopes = ["config:read", "config:admin"])]
    Status,

    /// Re-read the file and apply only its forwarding policy (the whole file must be valid).
    #[alk_operation(
        mutation,
        idempotent,
        output = ReloadReport,
        scopes = ["config:admin"],
        error(code = "INVALID_CONFIG", status = 422, details = ConfigError, description = "the configuration file does not parse or validate; nothing changed")
    )]
    ReloadForwardingPolicy,

    /// Re-read the file and apply only its rate limits (the whole file must be valid).
    #[alk_operation(
        mutation,
        idempotent,
        output = ReloadReport,
        scopes = ["config:admin"],
        error(code = "INVALID_CONFIG", status = 422, details = ConfigError, description = "the configuration file does not parse or validate; nothing changed")
    )]
    ReloadRateLimits,

    /// Re-read the file and apply every dynamic setting.
    #[alk_operation(
        mutation,
        idempotent,
        output = ReloadReport,
        scopes = ["config:admin"],
        error(code = "INVALID_CONFIG", status = 422, details = ConfigError, description = "the configuration file does not parse or validate; nothing changed")
    )]
    Reload,
}

/// The `config` service.
pub struct ConfigService {
    config: Arc<ConfigServiceImpl>,
}

impl ConfigService {
    /// Serve `config`.
    pub fn new(config: Arc<ConfigServiceImpl>) -> Self {
        ConfigService { config }
    }

    fn apply_reload(&self, trigger: &str, part: ReloadPart) -> Result<ReloadReport, CallError> {
        self.config
            .reload_logged(trigger, part)
            .map_err(|err| ConfigErrors::invalid_config(err.not_reloaded(), err))
    }
}

impl ConfigHandler for ConfigService {
    async fn get_forwarding_policy(
        &self,
        _ctx: &OperationContext,
        _request: GetForwardingPolicy,
    ) -> Result<ForwardingPolicy, CallError> {
        Ok(self.config.snapshot().forwarding.clone())
    }

    async fn get_rate_limits(
        &self,
        _ctx: &OperationContext,
        _request: GetRateLimits,
    ) -> Result<RateLimits, CallError> {
        Ok(self.config.snapshot().rate_limits.clone())
    }

    async fn status(
        &self,
        _ctx: &OperationContext,
        _request: Status,
    ) -> Result<ConfigStatus, CallError> {
        Ok(self.config.status())
    }

    async fn reload_forwarding_policy(
        &self,
        _ctx: &OperationContext,
        _request: ReloadForwardingPolicy,
    ) -> Result<ReloadReport, CallError> {
        self.apply_reload("config/reload_forwarding_policy", ReloadPart::Forwarding)
    }

    async fn reload_rate_limits(
        &self,
        _ctx: &OperationContext,
        _request: ReloadRateLimits,
    ) -> Result<ReloadReport, CallError> {
        self.apply_reload("config/reload_rate_limits", ReloadPart::RateLimits)
    }

    async fn reload(
        &self,
        _ctx: &OperationContext,
        _request: Reload,
    ) -> Result<ReloadReport, CallError> {
        self.apply_reload("config/reload", ReloadPart::All)
    }
}
