//! Each type without `#[alk_type]` is one error, on the type as the declaration writes it:
//! inside a container, behind a path, as an item, as error details, in a request field.

use alknet_runtime::prelude::*;

mod model {
    pub struct Task {
        pub title: String,
    }
}

pub struct Tick;

pub struct Taken {
    pub id: u64,
}

/// Keeps tasks.
#[alk_service(namespace = "tasks", version = "1.0.0")]
pub enum TasksProtocol {
    /// All tasks.
    #[alk_operation(query, output = Vec<model::Task>)]
    List,
    /// Add one.
    #[alk_operation(
        mutation,
        output = u64,
        error(code = "TAKEN", status = 409, details = Taken, description = "the title is taken")
    )]
    Add { title: String, after: Option<(u64, Tick)> },
    /// A tick every second.
    #[alk_operation(subscription, item = Tick)]
    Ticks,
}

fn main() {}
