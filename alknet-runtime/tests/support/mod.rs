//! What more than one of the runtime's tests serves.

use alknet_runtime::prelude::*;

/// Hands its input back, so what a caller gets is what the serving node received.
#[alk_service(namespace = "relay", version = "1.0.0")]
pub enum RelayProtocol {
    /// Answer `value` unchanged.
    #[alk_operation(query, output = Json)]
    Back {
        /// Any JSON.
        value: Json,
    },
}

/// The `relay` service.
pub struct Relay;

impl RelayHandler for Relay {
    async fn back(&self, _ctx: &OperationContext, request: Back) -> Result<Json, CallError> {
        Ok(request.value)
    }
}
