use alknet_runtime::prelude::*;

/// Why a name was refused.
#[alk_type]
#[derive(Debug, Clone)]
pub struct NameTaken {
    /// A free name.
    pub suggestion: String,
}

/// Manages accounts.
#[alk_service(namespace = "accounts", version = "1.0.0")]
pub enum AccountsProtocol {
    /// Register a user.
    #[alk_operation(error(code = "NAME_TAKEN", status = 409, details = NameTaken, description = "the name is in use"))]
    Register { name: String },
    /// Rename a user.
    #[alk_operation(error(code = "NAME_TAKEN", status = 409, details = String, description = "the name is in use"))]
    Rename { name: String },
    /// Adopt a name.
    #[alk_operation(error(code = "NAME_TAKEN", status = 409, description = "the name is in use"))]
    Adopt { name: String },
}

fn main() {}
