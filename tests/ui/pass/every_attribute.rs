//! A service that uses every attribute, compiled under the strictest lints a service crate
//! may choose.

#![deny(missing_docs, warnings)]
#![deny(clippy::all)]

use alknet_runtime::futures::stream;
use alknet_runtime::prelude::*;

/// A new user, as the wrapped request of `accounts/register`.
#[alk_type]
#[derive(Debug, Clone)]
pub struct Registration {
    /// The name to register.
    pub name: String,
    /// The email to confirm.
    pub email: String,
}

/// A registered user.
#[alk_type]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    /// The user's id.
    pub id: u64,
    /// The user's name.
    pub name: String,
}

/// Why a name was refused.
#[alk_type]
#[derive(Debug, Clone)]
pub struct NameTaken {
    /// A free name close to the one asked for.
    pub suggestion: String,
}

/// One event of `accounts/events`.
#[alk_type]
#[derive(Debug, Clone)]
pub struct AccountEvent {
    /// The user it concerns.
    pub user: u64,
}

/// Manages user accounts.
#[alk_service(
    namespace = "accounts",
    version = "2.1.0-beta.1",
    authority(scopes = ["accounts:admin", "mail:send"], resources = ["user:*", "mailbox:send"]),
    calls = ["mail/send", "audit/*"]
)]
pub enum AccountsProtocol {
    /// Look a user up by id.
    #[alk_operation(query, output = User, scopes = ["accounts:read"], resource = "user:read")]
    Get {
        /// The id.
        id: u64,
    },

    /// Register a new user.
    ///
    /// Sends a confirmation email.
    #[alk_operation(
        mutation,
        output = User,
        any_scopes = ["accounts:write", "accounts:admin"],
        timeout = "5s",
        error(code = "NAME_TAKEN", status = 409, details = NameTaken, description = "the name is in use"),
        error(code = "BAD_EMAIL", status = 422, description = "the email is not deliverable")
    )]
    Register(Registration),

    /// Rename a user; the fields are left undocumented on purpose.
    #[alk_operation(
        name = "rename_user",
        output = User,
        idempotent,
        timeout = "250ms",
        error(code = "NAME_TAKEN", status = 409, details = NameTaken, description = "the name is in use")
    )]
    Rename { id: u64, name: String },

    /// How many users there are.
    #[alk_operation(query, output = u64, internal)]
    Count,

    /// Forget every user; only the runtime's own tools call it.
    #[alk_operation(internal, timeout = "2m")]
    Reset {},

    /// Account events as they happen.
    #[alk_operation(subscription, item = AccountEvent, scopes = ["accounts:read"])]
    Events {
        /// Only events of this user.
        #[serde(default)]
        user: Option<u64>,
    },
}

/// Accounts kept nowhere.
pub struct Accounts;

impl AccountsHandler for Accounts {
    async fn get(&self, _ctx: &OperationContext, request: Get) -> Result<User, CallError> {
        Ok(User {
            id: request.id,
            name: "ada".into(),
        })
    }

    async fn register(
        &self,
        _ctx: &OperationContext,
        request: Registration,
    ) -> Result<User, CallError> {
        if request.email.is_empty() {
            return Err(AccountsErrors::bad_email("no email"));
        }
        if request.name == "root" {
            let suggestion = "root2".into();
            return Err(AccountsErrors::name_taken("taken", NameTaken { suggestion }));
        }
        Ok(User {
            id: 1,
            name: request.name,
        })
    }

    async fn rename(&self, _ctx: &OperationContext, request: Rename) -> Result<User, CallError> {
        Ok(User {
            id: request.id,
            name: request.name,
        })
    }

    async fn count(&self, _ctx: &OperationContext, _request: Count) -> Result<u64, CallError> {
        Ok(0)
    }

    async fn reset(&self, _ctx: &OperationContext, _request: Reset) -> Result<(), CallError> {
        Ok(())
    }

    async fn events(
        &self,
        _ctx: &OperationContext,
        request: Events,
    ) -> Result<ItemStream<AccountEvent>, CallError> {
        let user = request.user.unwrap_or(0);
        Ok(Box::pin(stream::iter([Ok(AccountEvent { user })])))
    }
}

fn main() {
    let env = OperationEnv::builder()
        .local(AccountsProtocol::local(Accounts))
        .build()
        .unwrap();
    let client = AccountsClient::new(env);
    let _ = client.get(1);
    let _ = client.register(Registration {
        name: "ada".into(),
        email: "ada@example.com".into(),
    });
    let _ = client.rename(1, "grace".into());
    let _ = client.count();
    let _ = client.reset();
    let _ = client.events(None);
    assert_eq!(AccountsErrors::NAME_TAKEN, "NAME_TAKEN");
}
