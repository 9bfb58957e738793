//! [`Admission`]: the steps an [`OperationEnv`](crate::OperationEnv) runs for every outside
//! call before it is served — the node's forwarding policy and rate limits
//! (`NodePolicy`, feature `node`), an API-gateway check, an audit log.

use std::net::IpAddr;
use std::sync::Arc;

use crate::{CallError, DispatchPath, Identity, OperationSpec};

/// One step of admitting outside calls, run by the env for every call an adapter makes on
/// behalf of an outside caller ([`OperationEnv::with_caller`](crate::OperationEnv::with_caller)),
/// after the operation is resolved and its access control passed, before the handler runs.
/// Nested calls (a handler calling through its context) are never admitted again.
///
/// Mount steps with [`OperationEnvBuilder::admission`](crate::OperationEnvBuilder::admission);
/// they run in the order mounted. A step refuses a call with an error (which the caller
/// receives as it is), or lets it through: to be served here, or sent along another
/// [`DispatchPath`] (a peer, for a forwarding policy). The first step that sends a call
/// elsewhere decides where it goes; later steps still run, and may refuse it.
///
/// ```
/// use alknet_runtime::prelude::*;
/// use alknet_runtime::{Admission, Admit, Admitting, codes};
/// use alknet_example::{EchoProtocol, EchoService};
///
/// /// Closes the node to anonymous callers, whatever an operation's own access says.
/// struct MembersOnly;
///
/// impl Admission for MembersOnly {
///     fn admit(&self, call: &Admitting<'_>) -> Result<Admit, CallError> {
///         match call.identity {
///             Some(_) => Ok(Admit::Here),
///             None => Err(CallError::unauthenticated(format!(
///                 "`{}` is for members only", call.operation.id
///             ))),
///         }
///     }
/// }
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let env = OperationEnv::builder()
///     .local(EchoProtocol::local(EchoService::default()))
///     .admission(MembersOnly)
///     .build()
///     .unwrap();
/// let anonymous = env.with_caller(Caller::new());
/// let refused = anonymous.invoke("echo", "say", serde_json::json!({"text": "hi"})).await;
/// assert_eq!(refused.result.unwrap_err().code, codes::UNAUTHENTICATED);
/// let member = env.with_caller(Caller::new().identity(Identity::new("user:ada")));
/// assert!(member.invoke("echo", "say", serde_json::json!({"text": "hi"})).await.result.is_ok());
/// # }
/// ```
pub trait Admission: Send + Sync + 'static {
    /// Refuse `call`, or say where it is served.
    fn admit(&self, call: &Admitting<'_>) -> Result<Admit, CallError>;
}

/// What an [`Admission`] step knows of the call it admits.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct Admitting<'a> {
    /// The operation called.
    pub operation: &'a OperationSpec,
    /// Who calls, as the adapter resolved the credential; `None` for an anonymous caller.
    pub identity: Option<&'a Identity>,
    /// The network address the call came from, as the transport saw it.
    pub peer_addr: Option<IpAddr>,
    /// Who the call was forwarded for, when a cluster node forwarded it here (adapters set
    /// it only for a cluster node's calls). A step that forwards should serve such a call
    /// here: it was already routed where it entered the cluster.
    pub forwarded_for: Option<&'a str>,
}

/// Where an admitted call is served.
#[derive(Clone)]
pub enum Admit {
    /// By this env, on the path the operation's namespace is mounted with.
    Here,
    /// Along another path: the same operation, with the same context, served elsewhere.
    Via(Arc<dyn DispatchPath>),
}

impl std::fmt::Debug for Admit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Admit::Here => f.write_str("Here"),
            Admit::Via(_) => f.write_str("Via(..)"),
        }
    }
}

/// The steps of an env, run in order.
#[derive(Default, Clone)]
pub(crate) struct AdmissionSteps(Vec<Arc<dyn Admission>>);

impl AdmissionSteps {
    pub(crate) fn push(&mut self, step: Arc<dyn Admission>) {
        self.0.push(step);
    }

    pub(crate) fn admit(&self, call: &Admitting<'_>) -> Result<Admit, CallError> {
        let mut admitted = Admit::Here;
        for step in &self.0 {
            let here = step.admit(call)?;
            if matches!(admitted, Admit::Here) {
                admitted = here;
            }
        }
        Ok(admitted)
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// A step shared with other envs (or kept to look at later) admits as itself.
impl<T: Admission + ?Sized> Admission for Arc<T> {
    fn admit(&self, call: &Admitting<'_>) -> Result<Admit, CallError> {
        (**self).admit(call)
    }
}
