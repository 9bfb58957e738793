//! The remote path of [`OperationEnv`]: a node mounted over a call-protocol connection,
//! and namespaces routed to it.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, Weak};

use arc_swap::ArcSwap;
use futures::FutureExt;
use futures::future::BoxFuture;
use serde_json::Value;

use super::client::{CallOptions, Connection};
use super::quic::CallEndpoint;
use super::server::CallServer;
use crate::quic::{PeerKey, Redial};
use crate::{
    BuildError, CallError, DispatchPath, Mount, OperationContext, OperationEnvBuilder,
    OperationSpec, ServiceSpec, ValueStream, schema,
};

/// A peer node and the operations it lets this node call, learnt from its
/// `services/schema` when the node is discovered.
///
/// Mounting needs each operation's kind, access control, declared errors and schemas
/// before any call is made (for the typed path, the `calls` rules, and access checks on
/// this side), so the catalog is read first. A node reached with [`dial`](Self::dial) is
/// dialled again when its connection is lost — in the background, and by the next call,
/// backing off while it is away (its calls fail at once with `UNAVAILABLE`) — and its
/// catalog read again on each new connection: where it changed, the namespaces mounted on
/// it serve the new operations from then on ([`Mount::replace`]), and the change is logged.
#[derive(Clone)]
pub struct RemoteNode {
    link: Arc<Link>,
}

/// The connection to a remote node, and how to make it again.
struct Link {
    current: ArcSwap<Connection>,
    /// What the peer lets this node call, as last read.
    catalog: ArcSwap<Vec<ServiceSpec>>,
    dial: Option<Dial>,
    /// Serves the peer's calls back on each connection, while someone holds [`CallsBack`].
    back: Mutex<Option<Back>>,
    /// Where envs serve the node, to follow a change of its catalog.
    mounts: Mutex<Vec<(Mount, Serves)>>,
}

/// What a namespace mounted on a remote node serves of it.
#[derive(Clone)]
enum Serves {
    /// Every operation, each under its id: `name/echo/say` is `/echo/say` there.
    Whole,
    /// The operations of one of its namespaces, under their own names.
    Namespace,
}

impl Serves {
    /// The operations of `namespace`, as this mount serves them from `catalog`; `None` if
    /// the node serves nothing of a routed namespace.
    fn spec(&self, namespace: &str, catalog: &[ServiceSpec], peer: &str) -> Option<ServiceSpec> {
        match self {
            Serves::Whole => Some(whole_node(namespace, catalog, peer)),
            Serves::Namespace => catalog.iter().find(|s| s.namespace == namespace).cloned(),
        }
    }

    /// The `operationId` on the node of the operation `op` of this mount.
    fn target(&self, op: &OperationSpec) -> String {
        match self {
            Serves::Whole => format!("/{}", op.name),
            Serves::Namespace => format!("/{}", op.id),
        }
    }
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
                catalog: ArcSwap::from_pointee(catalog),
                dial: None,
                back: Mutex::new(None),
                mounts: Mutex::new(Vec::new()),
            }),
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
        tokio::spawn(keep_up(Arc::downgrade(&node.link)));
        Ok(node)
    }

    /// The services the peer serves to this node, as last read.
    pub fn services(&self) -> Arc<Vec<ServiceSpec>> {
        self.link.catalog.load_full()
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
        tokio::spawn(async move { node.follow_catalog(&connection_now).await });
        Ok(connection)
    }

    /// Read the peer's catalog on a new connection; where it changed, serve the new one
    /// on every namespace mounted on the node.
    async fn follow_catalog(&self, connection: &Connection) {
        let peer = connection.peer_fingerprint();
        let now = match catalog(connection).await {
            Ok(now) => now,
            Err(err) => {
                return tracing::warn!(
                    peer,
                    "reading the remote node's catalog again failed: {}",
                    err.message
                );
            }
        };
        // Under the lock, and only for the connection that is current: two reconnects in a
        // row must not leave the older catalog mounted.
        let mut mounts = self.link.mounts.lock().unwrap_or_else(|p| p.into_inner());
        if self.link.current.load().quic().stable_id() != connection.quic().stable_id() {
            return;
        }
        let before = self.link.catalog.swap(Arc::new(now.clone()));
        if *before == now {
            return;
        }
        let ids = |catalog: &[ServiceSpec]| -> Vec<String> {
            catalog
                .iter()
                .flat_map(|s| s.operations.iter().map(|op| op.id.clone()))
                .collect()
        };
        let (was, is) = (ids(&before), ids(&now));
        let added: Vec<&String> = is.iter().filter(|id| !was.contains(id)).collect();
        let gone: Vec<&String> = was.iter().filter(|id| !is.contains(id)).collect();
        tracing::info!(
            peer,
            ?added,
            ?gone,
            "the remote node serves another catalog: mounted it"
        );
        mounts.retain(|(mount, serves)| {
            let namespace = mount.namespace();
            let spec = serves.spec(namespace, &now, peer).unwrap_or_else(|| {
                let why = format!(
                    "`{namespace}` on the node {peer}, which serves none of its operations now."
                );
                no_operations(namespace, why)
            });
            // An env that is gone needs no more news.
            mount.replace(spec).is_ok()
        });
    }
}

/// The node `name` mounted whole: each of `catalog`'s operations under its id.
fn whole_node(name: &str, catalog: &[ServiceSpec], peer: &str) -> ServiceSpec {
    let operations = catalog
        .iter()
        .flat_map(|service| &service.operations)
        .map(|op| OperationSpec {
            id: format!("{name}/{}", op.id),
            namespace: name.to_string(),
            name: op.id.clone(),
            ..op.clone()
        })
        .collect();
    let description = format!("The node `{name}` ({peer}), over the call protocol.");
    ServiceSpec {
        operations,
        ..no_operations(name, description)
    }
}

/// A namespace a remote node serves nothing of: mounted, with no operations.
fn no_operations(namespace: &str, description: String) -> ServiceSpec {
    ServiceSpec {
        namespace: namespace.to_string(),
        version: "0.0.0".to_string(),
        description,
        authority: None,
        calls: Vec::new(),
        operations: Vec::new(),
    }
}

/// Dial `link`'s node again whenever its connection is lost, until the link is dropped: a
/// node that comes back is reconnected (its catalog read again) without waiting for a
/// call.
async fn keep_up(link: Weak<Link>) {
    loop {
        let Some(closed) = link
            .upgrade()
            .map(|link| link.current.load().quic().on_closed())
        else {
            return;
        };
        closed.await;
        loop {
            let Some(link) = link.upgrade() else { return };
            let node = RemoteNode { link };
            if node.live().await.is_ok() {
                break;
            }
            let wait = node.link.dial.as_ref().map(|dial| dial.redial.wait());
            drop(node);
            tokio::time::sleep(wait.unwrap_or(Redial::FIRST_DELAY)).await;
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

/// Serves a namespace by calling a peer.
struct RemotePath {
    node: RemoteNode,
    serves: Serves,
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
        let (node, target) = (self.node.clone(), self.serves.target(ctx.operation()));
        async move { node.live().await?.call_with(&target, input, &options).await }.boxed()
    }

    fn subscribe(
        &self,
        ctx: OperationContext,
        input: Value,
    ) -> BoxFuture<'static, Result<ValueStream, CallError>> {
        let options = call_options(&ctx);
        let (node, target) = (self.node.clone(), self.serves.target(ctx.operation()));
        async move {
            Ok(node
                .live()
                .await?
                .subscribe_with(&target, input, &options)
                .await)
        }
        .boxed()
    }

    fn mounted(&self, mount: Mount) {
        let mut mounts = self
            .node
            .link
            .mounts
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        mounts.push((mount, self.serves.clone()));
    }
}

impl OperationEnvBuilder {
    /// Mount the peer `node` as the namespace `name`: `invoke(name, "storage/get_node", ..)`
    /// runs `/storage/get_node` on it. Its operations keep their kind, access control,
    /// declared errors and schemas; the peer checks this node's own identity again.
    pub fn remote(self, name: &str, node: RemoteNode) -> Self {
        let spec = whole_node(name, &node.services(), node.connection().peer_fingerprint());
        self.mount(
            spec,
            RemotePath {
                node,
                serves: Serves::Whole,
            },
        )
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
        let served = node.services();
        let Some(spec) = served.iter().find(|s| s.namespace == namespace).cloned() else {
            return self.fail(BuildError::Mount {
                namespace: namespace.to_string(),
                reason: format!("the node `{node_name}` serves no operation of `{namespace}` that this node may call"),
            });
        };
        self.mount(
            spec,
            RemotePath {
                node,
                serves: Serves::Namespace,
            },
        )
    }
}
