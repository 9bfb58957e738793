#![deny(missing_docs, warnings)]
//! `Json` carries what postcard cannot.

use alknet_runtime::prelude::*;
use alknet_runtime::serde_json::{Map, Value};

/// A node of a graph.
#[alk_type]
#[derive(Debug, Clone)]
pub struct Node {
    /// Free-form attributes.
    pub attributes: Json<Map<String, Value>>,
}

/// Stores things.
#[alk_service(namespace = "store", version = "1.0.0")]
pub enum StoreProtocol {
    /// Put a document.
    #[alk_operation(mutation, output = Json)]
    Put {
        /// The document.
        document: Json,
        /// Its node.
        node: Node,
    },
}

fn main() {}
