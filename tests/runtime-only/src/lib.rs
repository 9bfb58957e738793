//! A service crate whose only dependency is `alknet-runtime`: it proves the generated code
//! names nothing else, and compiles clean under `deny(missing_docs, warnings)`.

#![deny(missing_docs, warnings)]

use alknet_runtime::prelude::*;

/// A running total.
#[alk_type]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Total {
    /// The sum so far.
    pub sum: i64,
}

/// Keeps a running total.
#[alk_service(namespace = "tally", version = "2.1.0")]
pub enum TallyProtocol {
    /// Add to the total.
    #[alk_operation(mutation, output = Total)]
    Add {
        /// How much to add.
        amount: i64,
    },
    /// Read the total.
    #[alk_operation(query, output = Total)]
    Read,
    /// Stream the total each time it changes, starting with its current value.
    #[alk_operation(subscription, item = Total)]
    Watch,
}

/// The `tally` service.
#[derive(Default)]
pub struct Tally {
    total: std::sync::Mutex<i64>,
}

impl TallyHandler for Tally {
    async fn add(&self, _ctx: &OperationContext, request: Add) -> Result<Total, CallError> {
        let mut total = self.total.lock().unwrap();
        *total = total
            .checked_add(request.amount)
            .ok_or_else(|| CallError::invalid_input("the total would overflow"))?;
        Ok(Total { sum: *total })
    }

    async fn read(&self, _ctx: &OperationContext, _request: Read) -> Result<Total, CallError> {
        Ok(Total {
            sum: *self.total.lock().unwrap(),
        })
    }

    async fn watch(
        &self,
        _ctx: &OperationContext,
        _request: Watch,
    ) -> Result<ItemStream<Total>, CallError> {
        let sum = *self.total.lock().unwrap();
        Ok(Box::pin(alknet_runtime::futures::stream::iter([Ok(
            Total { sum },
        )])))
    }
}
