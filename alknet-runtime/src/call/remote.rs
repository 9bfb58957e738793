//! The remote path of [`OperationEnv`]: a node mounted over a call-protocol connection,
//! and namespaces routed to it.

use std::sync::Arc;

use futures::FutureExt;
use futures::future::BoxFuture;
use serde_json::Value;

use super::client::{CallOptions, Connection};
use crate::{
    BuildError, CallError, DispatchPath, OperationContext, OperationEnvBuilder, OperationSpec,
    ServiceSpec, ValueStream, schema,
};

/// A peer node and the operations it lets this node call, learnt from its
/// `services/schema` when the node is discovered.
///
/// The catalog is read once: mounting needs each operation's kind, access control,
/// declared errors and schemas before any call is made (for the typed path, the `calls`
/// rules, and access checks on this side). Discover the node again to see new operations.
#[derive(Clone)]
pub struct RemoteNode {
    connection: Connection,
    catalog: Arc<Vec<ServiceSpec>>,
}

impl RemoteNode {
    /// Ask the peer on `connection` what this node may call there.
    pub async fn discover(connection: Connection) -> Result<Self, CallError> {
        let listed = connection.call("/services/schema", Value::Null).await?;
        let Value::Array(documents) = listed else {
            return Err(CallError::internal(
                "the peer's `services/schema` is not a list of service documents",
            ));
        };
        let catalog = documents
            .iter()
            .map(schema::service_spec)
            .collect::<Result<Vec<ServiceSpec>, String>>()
            .map_err(|e| {
                CallError::internal(format!("the peer's `services/schema` is unusable: {e}"))
            })?;
        Ok(RemoteNode {
            connection,
            catalog: Arc::new(catalog),
        })
    }

    /// The services the peer serves to this node.
    pub fn services(&self) -> &[ServiceSpec] {
        &self.catalog
    }

    /// The connection to the peer.
    pub fn connection(&self) -> &Connection {
        &self.connection
    }
}

/// Serves a namespace by calling a peer: operation `index` is `targets[index]` there.
struct RemotePath {
    node: RemoteNode,
    targets: Arc<[String]>,
}

/// The options of a call this node makes to a peer on behalf of `ctx`'s caller: the
/// call's remaining deadline, its request id and its parent's (so the peer's logs join
/// this node's), and in `forwarded_for` who it is for — the original caller if the call
/// was already made for someone, else the caller's identity, else `anonymous`. Always
/// set, so the peer knows the call was forwarded and never forwards it again.
pub(crate) fn call_options(ctx: &OperationContext) -> CallOptions {
    let mut options = CallOptions::new().request_id(ctx.request_id());
    if let Some(parent) = ctx.parent_request_id() {
        options = options.parent_request_id(parent);
    }
    if let Some(remaining) = ctx.remaining() {
        options = options.timeout(remaining);
    }
    let on_behalf_of = ctx
        .forwarded_for()
        .or_else(|| ctx.identity().map(|identity| identity.id.as_str()))
        .unwrap_or("anonymous");
    options.forwarded_for(on_behalf_of)
}

impl DispatchPath for RemotePath {
    fn invoke(
        &self,
        ctx: OperationContext,
        input: Value,
    ) -> BoxFuture<'static, Result<Value, CallError>> {
        let options = call_options(&ctx);
        let (connection, targets) = (self.node.connection.clone(), self.targets.clone());
        async move {
            let target = &targets[ctx.operation_index()];
            connection.call_with(target, input, &options).await
        }
        .boxed()
    }

    fn subscribe(
        &self,
        ctx: OperationContext,
        input: Value,
    ) -> BoxFuture<'static, Result<ValueStream, CallError>> {
        let options = call_options(&ctx);
        let (connection, targets) = (self.node.connection.clone(), self.targets.clone());
        async move {
            let target = &targets[ctx.operation_index()];
            Ok(connection.subscribe_with(target, input, &options).await)
        }
        .boxed()
    }
}

impl OperationEnvBuilder {
    /// Mount the peer `node` as the namespace `name`: `invoke(name, "storage/get_node", ..)`
    /// runs `/storage/get_node` on it. Its operations keep their kind, access control,
    /// declared errors and schemas; the peer checks this node's own identity again.
    pub fn remote(self, name: &str, node: RemoteNode) -> Self {
        let operations: Vec<(OperationSpec, String)> = node
            .catalog
            .iter()
            .flat_map(|service| &service.operations)
            .map(|op| {
                let target = op.bindings().call_protocol;
                let spec = OperationSpec {
                    id: format!("{name}/{}", op.id),
                    namespace: name.to_string(),
                    name: op.id.clone(),
                    ..op.clone()
                };
                (spec, target)
            })
            .collect();
        let spec = ServiceSpec {
            namespace: name.to_string(),
            version: "0.0.0".to_string(),
            description: format!(
                "The node `{name}` ({}), over the call protocol.",
                node.connection.peer_fingerprint()
            ),
            authority: None,
            calls: Vec::new(),
            operations: Vec::new(),
        };
        mount_remote(self, spec, node, operations)
    }

    /// Serve `namespace` on the node mounted as `node_name` (with
    /// [`OperationEnvBuilder::remote`], earlier): handlers' `invoke(namespace, ..)` goes
    /// there without them knowing.
    pub fn route(self, namespace: &str, node_name: &str) -> Self {
        let Some(node) = self
            .mounted::<RemotePath>(node_name)
            .map(|path| path.node.clone())
        else {
            return self.fail(BuildError::Mount {
                namespace: namespace.to_string(),
                reason: format!("no remote node is mounted as `{node_name}`; mount it with `.remote(\"{node_name}\", node)` first"),
            });
        };
        let Some(service) = node
            .catalog
            .iter()
            .find(|s| s.namespace == namespace)
            .cloned()
        else {
            return self.fail(BuildError::Mount {
                namespace: namespace.to_string(),
                reason: format!("the node `{node_name}` serves no operation of `{namespace}` that this node may call"),
            });
        };
        let operations = service
            .operations
            .iter()
            .map(|op| (op.clone(), op.bindings().call_protocol))
            .collect();
        let spec = ServiceSpec {
            operations: Vec::new(),
            ..service
        };
        mount_remote(self, spec, node, operations)
    }
}

fn mount_remote(
    builder: OperationEnvBuilder,
    mut spec: ServiceSpec,
    node: RemoteNode,
    operations: Vec<(OperationSpec, String)>,
) -> OperationEnvBuilder {
    let (specs, targets): (Vec<_>, Vec<_>) = operations.into_iter().unzip();
    spec.operations = specs;
    builder.mount(
        spec,
        RemotePath {
            node,
            targets: targets.into(),
        },
    )
}
