//! `#[alk_type]` on an enum, used as an output and as an item.

#![deny(missing_docs, warnings)]

use alknet_runtime::prelude::*;

/// A traffic light.
#[alk_type]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Light {
    /// Stop.
    Red,
    /// Wait.
    Amber,
    /// Go.
    Green {
        /// For how many seconds.
        seconds: u32,
    },
}

/// Watches a traffic light.
#[alk_service(namespace = "lights", version = "0.1.0")]
pub enum LightsProtocol {
    /// The light now.
    #[alk_operation(query, output = Light)]
    Current,

    /// Every change of the light.
    #[alk_operation(subscription, item = Light)]
    Changes,
}

struct Lights;

impl LightsHandler for Lights {
    async fn current(&self, _ctx: &OperationContext, _request: Current) -> Result<Light, CallError> {
        Ok(Light::Green { seconds: 30 })
    }

    async fn changes(
        &self,
        _ctx: &OperationContext,
        _request: Changes,
    ) -> Result<ItemStream<Light>, CallError> {
        Ok(Box::pin(alknet_runtime::futures::stream::iter([
            Ok(Light::Red),
            Ok(Light::Amber),
        ])))
    }
}

fn main() {
    let env = OperationEnv::builder()
        .local(LightsProtocol::local(Lights))
        .build()
        .unwrap();
    let client = LightsClient::new(env);
    let _ = client.current();
    let _ = client.changes();
}
