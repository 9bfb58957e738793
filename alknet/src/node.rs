//! The node's services, assembled in one place: the quickstart, the schema commands and
//! (later) `alknet serve` all mount exactly these.

use alknet_example::{EchoProtocol, EchoService};
use alknet_runtime::{BuildError, OperationEnv, ServiceSpec};

/// An `OperationEnv` with every service of the node mounted in-process.
pub fn env() -> Result<OperationEnv, BuildError> {
    OperationEnv::builder()
        .local(EchoProtocol::local(EchoService::default()))
        .build()
}

/// The spec of every service of the node, in the order they are mounted.
pub fn services() -> Result<Vec<ServiceSpec>, BuildError> {
    Ok(env()?.services().cloned().collect())
}
