//! The remote path of [`OperationEnv`]: a node mounted over a call-protocol connection,
//! and namespaces routed to it.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use futures::FutureExt;
use futures::future::BoxFuture;
use serde_json::Value;

use super::client::{CallOptions, Connection};
use super::quic::CallEndpoint;
use super::server::CallServer;
use crate::quic::{PeerKey, Redial};
use crate::{
    BuildError, CallError, DispatchPath, OperationContext, OperationEnvBuilder, OperationSpec,
    ServiceSpec, ValueStream, schema,
};

/// A peer node and the operations it lets this node call, learnt from its
/// `services/schema` when the node is discovered.
///
/// The catalog is mounted as it was read then: mounting needs each operation's kind, access
/// control, declared errors and schemas before any call is made (for the typed path, the
/// `calls` rules, and access checks on this side). A node reached with
/// [`dial`](Self::dial) is dialled again when its connection is lost — on the next call,
/// backing off while it is away (its calls fail at once with `UNAVAILABLE`) — and its
/// catalog read again on each new connection: a change is logged (`WARN`), naming what a
/// restart would mount.
#[derive(Clone)]
pub struct RemoteNode {
    link: Arc<Link>,
    catalog: Arc<Vec<ServiceSpec>>,
}

/// The connection to a remote node, and how to make it again.
struct Link {
    current: ArcSwap<Connection>,
    dial: Option<Dial>,
    /// Serves the peer's calls back on each connection, while someone holds [`CallsBack`].
    back: Mutex<Option<Back>>,
}

struct Dial {
    endpoint: CallEndpoint,
    address: SocketAddr,
    key: PeerKey,
    /// Held while dialling, so calls made meanwhile wait for that one attempt.
    dialing: tokio::sync::Mutex<()>,
    redial: Redial,
}

struct Back {
    server: CallServer,
    serving: tokio::task::JoinHandle<()>,
}

/// Serves a remote node's calls back on this node's connection to it — the one made now and
/// each made after a loss — until dropped. From [`RemoteNode::serve_back`].
pub struct CallsBack(Arc<Link>);

impl Drop for CallsBack {
    fn drop(&mut self) {
        let back = self.0.back.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(back) = back {
            back.serving.abort();
        }
    }
}

impl RemoteNode {
    /// Ask the peer on `connection` what this node may call there. Calls go on that
    /// connection alone: once it is lost they fail; [`dial`](Self::dial) makes a node
    /// that reconnects.
    pub async fn discover(connection: Connection) -> Result<Self, CallError> {
        let catalog = catalog(&connection).await?;
        Ok(RemoteNode {
            link: Arc::new(Link {
                current: ArcSwap::from_pointee(connection),
                dial: None,
                back: Mutex::new(None),
            }),
            catalog: Arc::new(catalog),
        })
    }

    /// Connect from `endpoint` to the node at `address`, which must prove `key`, and ask it
    /// what this node may call there; connect again whenever the connection is lost.
    pub async fn dial(
        endpoint: CallEndpoint,
        address: SocketAddr,
        key: PeerKey,
    ) -> Result<Self, CallError> {
        let connection = endpoint.connect(address, key.clone()).await?;
        let mut node = Self::discover(connection).await?;
        let link = Arc::get_mut(&mut node.link).expect("a node just made has one link");
        link.dial = Some(Dial {
            endpoint,
            address,
            key,
            dialing: tokio::sync::Mutex::new(()),
            redial: Redial::default(),
        });
        Ok(node)
    }

    /// The services the peer serves to this node.
    pub fn services(&self) -> &[ServiceSpec] {
        &self.catalog
    }

    /// The connection to the peer now (closed, if it was lost and no call has needed it
    /// since).
    pub fn connection(&self) -> Connection {
        Connection::clone(&self.link.current.load())
    }

    /// Serve `server` to the peer on this node's connection to it, and on every one made
    /// again after a loss, until the returned [`CallsBack`] is dropped.
    pub fn serve_back(&self, server: CallServer) -> CallsBack {
        let serving = self.connection().serve(server.clone());
        *self.link.back.lock().unwrap_or_else(|p| p.into_inner()) = Some(Back { server, serving });
        CallsBack(self.link.clone())
    }

    /// A connection that is up: the current one, or one made again now.
    async fn live(&self) -> Result<Connection, CallError> {
        let current = self.connection();
        let Some(dial) = &self.link.dial else {
            return Ok(current);
        };
        if current.quic().close_reason().is_none() {
            return Ok(current);
        }
        let _dialing = dial.dialing.lock().await;
        let current = self.connection();
        if current.quic().close_reason().is_none() {
            return Ok(current);
        }
        dial.redial.ready().map_err(CallError::unavailable)?;
        let connected = dial.endpoint.connect(dial.address, dial.key.clone()).await;
        dial.redial.record(&connected);
        let connection = connected?;
        self.link.current.store(Arc::new(connection.clone()));
        if let Some(back) = &mut *self.link.back.lock().unwrap_or_else(|p| p.into_inner()) {
            back.serving.abort();
            back.serving = connection.serve(back.server.clone());
        }
        let (node, connection_now) = (self.clone(), connection.clone());
        tokio::spawn(async move { node.compare_catalog(&connection_now).await });
        Ok(connection)
    }

    /// Read the peer's catalog on a new connection, and say how it differs from the one
    /// mounted.
    async fn compare_catalog(&self, connection: &Connection) {
        let peer = connection.peer_fingerprint();
        match catalog(connection).await {
            Ok(now) if now == *self.catalog => {}
            Ok(now) => {
                let ids = |catalog: &[ServiceSpec]| -> Vec<String> {
                    catalog
                        .iter()
                        .flat_map(|s| s.operations.iter().map(|op| op.id.clone()))
                        .collect()
                };
                let (mounted, served) = (ids(&self.catalog), ids(&now));
                let added: Vec<&String> =
                    served.iter().filter(|id| !mounted.contains(id)).collect();
                let gone: Vec<&String> = mounted.iter().filter(|id| !served.contains(id)).collect();
                tracing::warn!(
                    peer,
                    ?added,
                    ?gone,
                    "the remote node serves another catalog since it was mounted: operations gone answer NOT_FOUND there; restart this node to mount the new ones"
                );
            }
            Err(err) => tracing::warn!(
                peer,
                "reading the remote node's catalog again failed: {}",
                err.message
            ),
        }
    }
}

/// What the peer on `connection` lets this node call: its `services/schema`.
async fn catalog(connection: &Connection) -> Result<Vec<ServiceSpec>, CallError> {
    let listed = connection.call("/services/schema", Value::Null).await?;
    let Value::Array(documents) = listed else {
        return Err(CallError::internal(
            "the peer's `services/schema` is not a list of service documents",
        ));
    };
    documents
        .iter()
        .map(schema::service_spec)
        .collect::<Result<Vec<ServiceSpec>, String>>()
        .map_err(|e| CallError::internal(format!("the peer's `services/schema` is unusable: {e}")))
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
        let (node, targets) = (self.node.clone(), self.targets.clone());
        async move {
            let target = &targets[ctx.operation_index()];
            node.live().await?.call_with(target, input, &options).await
        }
        .boxed()
    }

    fn subscribe(
        &self,
        ctx: OperationContext,
        input: Value,
    ) -> BoxFuture<'static, Result<ValueStream, CallError>> {
        let options = call_options(&ctx);
        let (node, targets) = (self.node.clone(), self.targets.clone());
        async move {
            let target = &targets[ctx.operation_index()];
            Ok(node
                .live()
                .await?
                .subscribe_with(target, input, &options)
                .await)
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
                node.connection().peer_fingerprint()
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
