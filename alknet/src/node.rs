//! [`Node`]: a configuration, a key, the services you mount, and every transport the
//! configuration lists — served with one call, reloaded live, stopped gracefully.
//!
//! ```no_run
//! use alknet::Node;
//! use alknet_example::{EchoProtocol, EchoService};
//! use alknet_runtime::config::ConfigServiceImpl;
//!
//! # async fn demo() -> Result<(), alknet::NodeError> {
//! let config = ConfigServiceImpl::from_file(std::path::Path::new("node.toml"))?;
//! Node::builder(config)
//!     .local(EchoProtocol::local(EchoService::default()))
//!     .build()?
//!     .serve() // every [listen] address; SIGHUP reloads; SIGTERM or Ctrl-C stops
//!     .await
//! # }
//! ```

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use alknet_auth::{AuthProtocol, AuthService, AuthServiceIdentities};
use alknet_config::{ConfigProtocol, ConfigService};
use alknet_runtime::adapters::http::Readiness;
use alknet_runtime::call::{CallConfig, CallEndpoint, CallsBack, PeerKey, PeerLinks, RemoteNode};
use alknet_runtime::config::{
    ConfigError, ConfigServiceImpl, ConfigSource, PeerPath, Placement, ReloadPart,
};
use alknet_runtime::futures::future::BoxFuture;
use alknet_runtime::quic::NodeIdentity;
use alknet_runtime::service_path::{IrpcLink, IrpcServing, IrpcTarget};
use alknet_runtime::{
    Admission, Admit, Admitting, BuildError, CallError, ConfigIdentityProvider, Credential,
    DispatchPath, Drain, Identity, IdentityProvider, KeyHolder, LocalService, NodePolicy,
    OperationEnv, OperationEnvBuilder, Protocol, ServiceSpec,
};
use alknet_secret::{SecretProtocol, SecretService};
use alknet_storage::{
    DEFAULT_MAX_STALE, IDENTITY_GRAPH, StorageIdentityProvider, StorageProtocol, StorageService,
};

use crate::transports::{self, Running};

/// Why a node could not be assembled, started or run: one sentence naming the problem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeError(String);

impl NodeError {
    /// An error with this message.
    pub fn new(message: impl Into<String>) -> Self {
        NodeError(message.into())
    }
}

impl fmt::Display for NodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for NodeError {}

impl From<ConfigError> for NodeError {
    fn from(err: ConfigError) -> Self {
        NodeError(err.to_string())
    }
}

impl From<BuildError> for NodeError {
    fn from(err: BuildError) -> Self {
        NodeError(err.to_string())
    }
}

impl From<String> for NodeError {
    fn from(message: String) -> Self {
        NodeError(message)
    }
}

/// Assembles a [`Node`]: from [`Node::builder`].
///
/// The services you add come first, in the order added; then, unless left out, the node's
/// own `auth` (credentials), `config` (the live configuration), `secret` (the node's
/// seed, locked until `secret/unlock`) and `storage` (graphs on SQLite, in the file
/// `[storage] file` names) services. Outside calls
/// pass the configuration's forwarding policy and rate limits ([`NodePolicy`]), then the
/// admission steps you add.
pub struct NodeBuilder {
    config: Arc<ConfigServiceImpl>,
    env: OperationEnvBuilder,
    irpc: Vec<IrpcServing>,
    admission: Vec<Arc<dyn Admission>>,
    identities: Option<Arc<dyn IdentityProvider>>,
    auth: bool,
    config_service: bool,
    secret: bool,
    storage: bool,
    watch_interval: Duration,
    remotes: Vec<RemoteMount>,
    routes: Vec<(String, String)>,
    /// The services `[services]` places on a peer, mounted once the node's key is known.
    elsewhere: Vec<OnPeer>,
    /// The services `[services]` turns off here.
    off: Vec<String>,
}

/// Where a service that does not run here is (`[services]`).
enum Away {
    Off,
    On(String, PeerPath),
}

/// A service reached over irpc on a peer, and its link.
#[derive(Clone)]
struct IrpcPlacement {
    namespace: String,
    peer: String,
    link: IrpcLink,
}

/// A service that runs on a peer ([`Placement::Peer`]).
struct OnPeer {
    spec: ServiceSpec,
    peer: String,
    over: PeerPath,
    /// How to reach it over irpc, when its protocol has the irpc path.
    irpc: Option<IrpcServing>,
}

/// A node of the cluster mounted over the call protocol: reached, and its services learnt,
/// when the node is connected ([`NodeBuilder::connect`]).
struct RemoteMount {
    name: String,
    address: SocketAddr,
    fingerprint: String,
}

impl NodeBuilder {
    /// Serve a service in this process (`XProtocol::local(handler)`), or reach one
    /// through an irpc client (`XProtocol::service(client)`). A service served in this
    /// process is also served to other nodes on the irpc listener, when the configuration
    /// gives it an address.
    ///
    /// Where the configuration's `[services]` places the service elsewhere, it is reached
    /// there instead (or, `"off"`, not served); `service` is dropped.
    pub fn local(mut self, service: impl Into<LocalService>) -> Self {
        let service = service.into();
        let irpc = service.extension::<IrpcServing>().copied();
        match self.away(&service.spec().namespace) {
            None => {
                self.irpc.extend(irpc);
                self.env = self.env.local(service);
                self
            }
            Some(away) => self.elsewhere(service.spec().clone(), irpc, away),
        }
    }

    /// Where `[services]` places `namespace`, when that is not here.
    fn away(&self, namespace: &str) -> Option<Away> {
        match self.config.static_config().services.get(namespace)? {
            Placement::Local => None,
            Placement::Off => Some(Away::Off),
            Placement::Peer { peer, over } => Some(Away::On(peer.clone(), *over)),
        }
    }

    /// Note a service that does not run here: off, or reached on a peer at `finish`.
    fn elsewhere(mut self, spec: ServiceSpec, irpc: Option<IrpcServing>, away: Away) -> Self {
        match away {
            Away::Off => self.off.push(spec.namespace),
            Away::On(peer, over) => self.elsewhere.push(OnPeer {
                spec,
                peer,
                over,
                irpc,
            }),
        }
        self
    }

    /// One of the node's own services: made by `open` if it runs here.
    fn own<P: alknet_runtime::service_path::IrpcProtocol>(
        self,
        open: impl FnOnce() -> Result<LocalService, NodeError>,
    ) -> Result<Self, NodeError> {
        Ok(match self.away(P::NAMESPACE) {
            None => self.local(open()?),
            Some(away) => {
                self.elsewhere(ServiceSpec::of::<P>(), Some(IrpcServing::of::<P>()), away)
            }
        })
    }

    /// Serve the namespace of `spec` along a dispatch path of your own.
    pub fn mount(mut self, spec: ServiceSpec, path: impl DispatchPath) -> Self {
        self.env = self.env.mount(spec, path);
        self
    }

    /// Anything else the env builder can do — mount a remote node (`.remote(..)`), route a
    /// namespace to it (`.route(..)`) — applied in order with the other mounts.
    pub fn env(
        mut self,
        assemble: impl FnOnce(OperationEnvBuilder) -> OperationEnvBuilder,
    ) -> Self {
        self.env = assemble(self.env);
        self
    }

    /// Mount the node at `address`, whose key is `fingerprint` (`ed25519:…`), as the
    /// namespace `name`: `name/echo/say` runs `/echo/say` there, as this node (the peer
    /// must know this node's key). The peer is reached, and what this node may call there
    /// learnt, by [`NodeBuilder::connect`]; the node serves the peer's calls back on the
    /// same connection. A lost connection is made again, and a changed catalog mounted
    /// in place of the old one (see [`RemoteNode::dial`]).
    pub fn remote(mut self, name: &str, address: SocketAddr, fingerprint: &str) -> Self {
        self.remotes.push(RemoteMount {
            name: name.to_string(),
            address,
            fingerprint: fingerprint.to_string(),
        });
        self
    }

    /// Serve `namespace` on the node mounted as `node_name` (with [`NodeBuilder::remote`]
    /// or `.env(|b| b.remote(..))`): local and outside calls of `namespace` go there.
    pub fn route(mut self, namespace: &str, node_name: &str) -> Self {
        self.routes
            .push((namespace.to_string(), node_name.to_string()));
        self
    }

    /// Run `step` for every outside call, after the node's forwarding policy and rate
    /// limits and the steps added before it: an API-gateway check, an audit log.
    pub fn admission(mut self, step: impl Admission) -> Self {
        self.admission.push(Arc::new(step));
        self
    }

    /// Resolve callers' credentials with `provider` instead of the configuration's
    /// `[[api_keys]]`, `[[public_keys]]` and `[[token_keys]]`.
    pub fn identities(mut self, provider: Arc<dyn IdentityProvider>) -> Self {
        self.identities = Some(provider);
        self
    }

    /// Leave out the `auth` service (its operations verify credentials).
    pub fn without_auth(mut self) -> Self {
        self.auth = false;
        self
    }

    /// Leave out the `config` service (its operations read and reload the
    /// configuration; the node still reloads on SIGHUP and when its file changes).
    pub fn without_config_service(mut self) -> Self {
        self.config_service = false;
        self
    }

    /// Leave out the `secret` service (the node's seed, from the file `[secret] file`
    /// names; see docs/secret.md).
    pub fn without_secret(mut self) -> Self {
        self.secret = false;
        self
    }

    /// Leave out the `storage` service (graphs on SQLite, in the file `[storage] file`
    /// names; see docs/storage.md).
    pub fn without_storage(mut self) -> Self {
        self.storage = false;
        self
    }

    /// How often a node serving a configuration file checks it for changes (default 1 s).
    pub fn config_watch_interval(mut self, interval: Duration) -> Self {
        self.watch_interval = interval;
        self
    }

    /// Finish assembly: the node's key (from `[node] key`, or a fresh one), its policy,
    /// its env. A node that mounts remote nodes ([`NodeBuilder::remote`]) must reach them
    /// first: build it with [`NodeBuilder::connect`].
    pub fn build(self) -> Result<Node, NodeError> {
        if let Some(remote) = self.remotes.first() {
            return Err(NodeError::new(format!(
                "the node mounts the remote node `{}`, which must be reached first: build it with `.connect().await` instead of `.build()`",
                remote.name
            )));
        }
        let identity = node_identity(&self.config)?;
        let call_config = CallConfig::from_settings(&self.config.static_config().call);
        self.finish(identity, call_config, Vec::new())
    }

    /// Reach every remote node ([`NodeBuilder::remote`]), learn what this node may call
    /// there, mount it, and finish assembly as [`NodeBuilder::build`] does. A peer that
    /// does not answer within `[call] handshake_timeout_ms` fails the build.
    pub async fn connect(mut self) -> Result<Node, NodeError> {
        let identity = node_identity(&self.config)?;
        let call_config = CallConfig::from_settings(&self.config.static_config().call);
        let remotes = std::mem::take(&mut self.remotes);
        let mut connections = Vec::new();
        if !remotes.is_empty() {
            let mut endpoints: Vec<CallEndpoint> = Vec::new();
            for remote in remotes {
                let local = outgoing_address(remote.address);
                let bound = endpoints.iter().find(|e| e.local_addr().ip() == local.ip());
                let endpoint = match bound {
                    Some(endpoint) => endpoint.clone(),
                    None => {
                        let endpoint = CallEndpoint::bind(local, &identity, call_config.clone())
                            .map_err(|err| err.message)?;
                        endpoints.push(endpoint.clone());
                        endpoint
                    }
                };
                let unreachable = |why: String| {
                    NodeError::new(format!(
                        "the remote node `{}` ({}) cannot be mounted: {why}",
                        remote.name, remote.address
                    ))
                };
                let key = PeerKey::Pinned(remote.fingerprint.clone());
                let node = RemoteNode::dial(endpoint, remote.address, key)
                    .await
                    .map_err(|err| unreachable(err.message))?;
                self.env = self.env.remote(&remote.name, node.clone());
                connections.push((remote.name.clone(), node));
            }
        }
        self.finish(identity, call_config, connections)
    }

    fn finish(
        mut self,
        identity: NodeIdentity,
        call_config: CallConfig,
        remote_connections: Vec<(String, RemoteNode)>,
    ) -> Result<Node, NodeError> {
        let config = self.config.clone();
        for (namespace, node_name) in std::mem::take(&mut self.routes) {
            self.env = self.env.route(&namespace, &node_name);
        }
        let node_identities = NodeIdentities::default();
        let auth_on_peer = match self.away(<AuthProtocol as Protocol>::NAMESPACE) {
            Some(Away::On(peer, _)) if self.auth => Some(peer),
            _ => None,
        };
        if self.auth {
            let auth =
                AuthService::new(config.clone()).with_identities(Arc::new(node_identities.clone()));
            self = self.own::<AuthProtocol>(|| Ok(AuthProtocol::local(auth)))?;
        }
        if self.config_service {
            let service = ConfigService::new(config.clone());
            self = self.own::<ConfigProtocol>(|| Ok(ConfigProtocol::local(service)))?;
        }
        if self.secret {
            self = self.own::<SecretProtocol>(|| {
                let secret = SecretService::open(&config.static_config().secret)
                    .map_err(|err| NodeError::new(format!("the `secret` service: {err}")))?;
                Ok(SecretProtocol::local(secret))
            })?;
        }
        let settings = &config.static_config().storage;
        let mut commits = None;
        if self.storage {
            self = self.own::<StorageProtocol>(|| {
                let storage = StorageService::open(settings)
                    .map_err(|err| NodeError::new(format!("the `storage` service: {err}")))?;
                if settings.identities {
                    storage.ensure_graph(IDENTITY_GRAPH).map_err(|err| {
                        NodeError::new(format!("the `storage` graph `{IDENTITY_GRAPH}`: {err}"))
                    })?;
                }
                commits = Some(storage.commits());
                Ok(StorageProtocol::local(storage))
            })?;
        }
        let peers = PeerLinks::new(identity.clone(), call_config.clone());
        let mut placed = ForwardedOnce::default();
        let (mut irpc_links, mut call_peers) = (Vec::new(), Vec::new());
        for on_peer in std::mem::take(&mut self.elsewhere) {
            let (namespace, peer) = (on_peer.spec.namespace.clone(), on_peer.peer.clone());
            placed.0.insert(namespace.clone(), peer.clone());
            let (env, link) = mount_on_peer(self.env, on_peer, &config, &peers, &identity)?;
            self.env = env;
            match link {
                Some(link) => irpc_links.push(IrpcPlacement {
                    namespace,
                    peer,
                    link,
                }),
                None => call_peers.push(peer),
            }
        }
        // Peers reached only over irpc have no call-protocol link for readiness to check.
        let irpc_only_peers: Vec<String> = irpc_links
            .iter()
            .map(|placement| placement.peer.clone())
            .filter(|peer| !call_peers.contains(peer))
            .collect();
        let drain = Drain::new();
        let mut env = self
            .env
            .config(config.shared())
            .drain(drain.clone())
            .admission(NodePolicy::new(config.shared()).forward_through(peers.clone()));
        if !placed.0.is_empty() {
            env = env.admission(placed);
        }
        for step in self.admission {
            env = env.admission(step);
        }
        let env = env.build()?;
        check_placements(&config, &env, &self.off)?;
        let identities: Arc<dyn IdentityProvider> = match (self.identities, auth_on_peer) {
            (Some(provider), _) => provider,
            (None, Some(peer)) if settings.identities => {
                return Err(NodeError::new(format!(
                    "[storage] identities resolves callers in storage, but [services] places `auth` on `{peer}`, which then resolves them: leave one out"
                )));
            }
            (None, Some(_)) => Arc::new(AuthServiceIdentities::new(&env, config.shared())),
            (None, None) if settings.identities => {
                let max_stale = settings
                    .identities_max_stale_ms
                    .map_or(DEFAULT_MAX_STALE, |ms| Duration::from_millis(ms.get()));
                let provider = StorageIdentityProvider::new(&env, IDENTITY_GRAPH, config.shared())
                    .max_stale(max_stale);
                Arc::new(match commits {
                    Some(commits) => provider.with_commits(commits),
                    None => provider,
                })
            }
            (None, None) => Arc::new(ConfigIdentityProvider::new(config.shared())),
        };
        node_identities.set(identities.clone());
        Ok(Node {
            identities,
            env,
            identity,
            irpc: self.irpc,
            irpc_links,
            irpc_only_peers,
            remote_connections,
            peers,
            call_config,
            drain,
            watch_interval: self.watch_interval,
            config,
        })
    }
}

/// A node: its configuration, its key, its services, and the transports it serves them on.
///
/// Every transport with an address in `[listen]` is served: HTTP (with MCP at `/mcp`),
/// the call protocol over QUIC and WebSocket, DNS, and the irpc listener (for every
/// service mounted in this process). See `docs/guide.md`, "Serve your service".
pub struct Node {
    config: Arc<ConfigServiceImpl>,
    identity: NodeIdentity,
    env: OperationEnv,
    identities: Arc<dyn IdentityProvider>,
    irpc: Vec<IrpcServing>,
    /// The services `[services]` reaches over irpc, and how each link stands.
    irpc_links: Vec<IrpcPlacement>,
    /// The peers only those services use: no call-protocol link to them is expected.
    irpc_only_peers: Vec<String>,
    /// The remote nodes mounted, by mount name, whose calls back are served on this node's
    /// connections to them.
    remote_connections: Vec<(String, RemoteNode)>,
    /// The connections to `[[peers]]` that the forwarding policy uses.
    peers: PeerLinks,
    /// `[call]`, for the node's call endpoint and its connections to other nodes.
    call_config: CallConfig,
    drain: Drain,
    watch_interval: Duration,
}

impl Node {
    /// Start assembling a node over `config` (a file with
    /// [`ConfigServiceImpl::from_file`], or [`ConfigServiceImpl::embedded`]).
    pub fn builder(config: impl Into<Arc<ConfigServiceImpl>>) -> NodeBuilder {
        NodeBuilder {
            config: config.into(),
            env: OperationEnv::builder(),
            irpc: Vec::new(),
            admission: Vec::new(),
            identities: None,
            auth: true,
            config_service: true,
            secret: true,
            storage: true,
            watch_interval: DEFAULT_WATCH_INTERVAL,
            remotes: Vec::new(),
            routes: Vec::new(),
            elsewhere: Vec::new(),
            off: Vec::new(),
        }
    }

    /// The configuration, live.
    pub fn config(&self) -> &Arc<ConfigServiceImpl> {
        &self.config
    }

    /// The node's key: what its listeners prove, and how it connects to its peers.
    pub fn identity(&self) -> &NodeIdentity {
        &self.identity
    }

    /// `[call]`: the limits and QUIC settings of the node's call endpoint and of its
    /// connections to other nodes.
    pub(crate) fn call_config(&self) -> &CallConfig {
        &self.call_config
    }

    /// Every service of the node, admitting outside calls with the node's policy.
    pub fn env(&self) -> &OperationEnv {
        &self.env
    }

    /// Resolves the credentials callers present.
    pub fn identities(&self) -> &Arc<dyn IdentityProvider> {
        &self.identities
    }

    /// The spec of every mounted service, in the order mounted.
    pub fn services(&self) -> Vec<ServiceSpec> {
        self.env.services().cloned().collect()
    }

    /// Bind every transport `[listen]` gives an address, and start serving. The node
    /// serves until the returned [`Listeners`] are stopped or dropped.
    pub async fn start(&self) -> Result<Listeners, NodeError> {
        let listen = &self.config.static_config().listen;
        let server = transports::call_server(self);
        let mut running = Vec::new();
        if let Some(address) = listen.call {
            running.push(transports::call(self, address, server.clone())?);
        }
        if let Some(address) = listen.websocket {
            running.push(transports::websocket(self, address, server.clone()).await?);
        }
        if let Some(address) = listen.irpc {
            running.push(transports::irpc(self, &self.irpc, address)?);
        }
        if let Some(address) = listen.dns {
            running.push(transports::dns(self, address).await?);
        }
        // Last, so that `/readyz` can name every listener: each is bound by now.
        if let Some(address) = listen.http {
            let mut listening: Vec<&'static str> = running.iter().map(|r| r.name).collect();
            listening.push("http");
            let drain = self.drain.clone();
            let remotes = self.remote_connections.clone();
            let (peers, config) = (self.peers.clone(), self.config.shared());
            let (irpc_links, irpc_only) = (self.irpc_links.clone(), self.irpc_only_peers.clone());
            let readiness = move || {
                let ready = listening.iter().fold(Readiness::new(), |ready, name| {
                    ready.check(format!("listen.{name}"), true)
                });
                let ready = remotes.iter().fold(ready, |ready, (name, node)| {
                    let check = format!("remote.{name}");
                    match node.connection().quic().close_reason() {
                        None => ready.check(check, true),
                        Some(reason) => ready.check_detail(
                            check,
                            false,
                            format!("the connection to the mounted node closed: {reason}"),
                        ),
                    }
                });
                let ready = irpc_links.iter().fold(ready, |ready, placed| {
                    let check = format!("irpc.{}", placed.namespace);
                    match placed.link.readiness() {
                        Ok(()) => ready.check(check, true),
                        Err(why) => ready.check_detail(
                            check,
                            false,
                            format!("`{}` on peer `{}`: {why}", placed.namespace, placed.peer),
                        ),
                    }
                });
                let dynamic = config.load();
                // A peer only irpc placements use has its own checks above; its call-protocol
                // listener matters only if a forwarding rule sends calls there.
                let call_peers: Vec<_> = dynamic
                    .peers
                    .iter()
                    .filter(|peer| {
                        !irpc_only.contains(&peer.name)
                            || dynamic
                                .forwarding
                                .rules
                                .iter()
                                .any(|rule| rule.peer.as_deref() == Some(peer.name.as_str()))
                    })
                    .cloned()
                    .collect();
                let ready = peers
                    .readiness(&call_peers)
                    .into_iter()
                    .fold(ready, |ready, peer| {
                        let check = format!("peer.{}", peer.name);
                        match peer.detail {
                            None => ready.check(check, peer.ready),
                            Some(detail) => ready.check_detail(check, peer.ready, detail),
                        }
                    });
                match drain.is_closed() {
                    false => ready.check("calls", true),
                    true => ready.check_detail(
                        "calls",
                        false,
                        "the node is stopping and takes no new calls",
                    ),
                }
            };
            running.push(transports::http(self, address, readiness).await?);
        }
        let calls_back = self
            .remote_connections
            .iter()
            .map(|(_, node)| node.serve_back(server.clone()))
            .collect();
        Ok(Listeners {
            running,
            calls_back,
            drain: self.drain.clone(),
            drain_time: self.config.static_config().drain_time,
        })
    }

    /// Serve until SIGTERM or Ctrl-C, then stop gracefully (see [`Listeners::stop`]).
    /// SIGHUP, `config/reload` and changes to the configuration file reload it.
    pub async fn serve(self) -> Result<(), NodeError> {
        use tokio::signal::unix::{SignalKind, signal};
        let mut terminate = signal(SignalKind::terminate())
            .map_err(|err| NodeError::new(format!("cannot watch for SIGTERM: {err}")))?;
        self.serve_with_shutdown(async move {
            tokio::select! {
                _ = terminate.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        })
        .await
    }

    /// Serve until `shutdown` resolves, then stop gracefully. SIGHUP and changes to the
    /// configuration file reload it.
    pub async fn serve_with_shutdown(
        self,
        shutdown: impl Future<Output = ()>,
    ) -> Result<(), NodeError> {
        use tokio::signal::unix::{SignalKind, signal};
        let mut hangups = signal(SignalKind::hangup())
            .map_err(|err| NodeError::new(format!("cannot watch for SIGHUP: {err}")))?;
        let watcher = match self.config.source() {
            ConfigSource::File(_) => Some(self.config.clone().watch(self.watch_interval)),
            _ => None,
        };
        let listeners = self.start().await?;
        self.report(&listeners);
        let mut shutdown = std::pin::pin!(shutdown);
        loop {
            tokio::select! {
                // The outcome is logged; a failed reload keeps the running configuration.
                _ = hangups.recv() => { let _ = self.config.reload_logged("SIGHUP", ReloadPart::All); }
                () = &mut shutdown => break,
            }
        }
        if let Some(watcher) = watcher {
            watcher.abort();
        }
        listeners.stop().await;
        Ok(())
    }

    /// Serve the node's services as MCP tools over stdin/stdout, for an MCP client that
    /// spawns the node; callers are anonymous (stdio carries no credentials).
    pub async fn serve_mcp_stdio(self) -> Result<(), NodeError> {
        alknet_runtime::adapters::mcp::McpAdapter::new(self.env)
            .serve_stdio()
            .await
            .map_err(|err| NodeError::new(format!("MCP over stdio failed: {err}")))
    }

    /// What the node serves, where, and a first command to try: on stdout, for the person
    /// who started it, and in the log.
    fn report(&self, listeners: &Listeners) {
        let config = &self.config;
        println!("node key: {}", self.identity.fingerprint());
        println!(
            "alknet node ready (configuration: {}, generation {})",
            config.source(),
            config.snapshot().generation
        );
        let namespaces: Vec<&str> = self.env.services().map(|s| s.namespace.as_str()).collect();
        println!("services: {}", namespaces.join(", "));
        println!("listeners:");
        for (name, address) in listeners.addresses() {
            println!("  {name:<10} {address}");
        }
        match config.source() {
            ConfigSource::File(path) => println!(
                "reload: SIGHUP, `config/reload`, or save {} (checked every {} ms)",
                path.display(),
                self.watch_interval.as_millis()
            ),
            _ => println!("reload: none needed (embedded default); use --config FILE"),
        }
        if let Some(http) = listeners.address("http") {
            println!("try: curl http://{http}/v1/operations");
        }
        tracing::info!(
            source = %config.source(),
            generation = config.snapshot().generation,
            key = %self.identity.fingerprint(),
            "node ready"
        );
    }
}

/// How often the configuration file is checked for changes, unless the builder says.
const DEFAULT_WATCH_INTERVAL: Duration = Duration::from_secs(1);

/// A node's running transports: from [`Node::start`]. Dropping them stops them at once;
/// [`Listeners::stop`] stops them gracefully.
pub struct Listeners {
    running: Vec<Running>,
    /// The remote nodes' calls on the connections this node made to them.
    calls_back: Vec<CallsBack>,
    drain: Drain,
    drain_time: Duration,
}

impl Listeners {
    /// Each transport's name (`http`, `call`, `websocket`, `irpc`, `dns`) and the address
    /// it listens on, in the order started.
    pub fn addresses(&self) -> impl Iterator<Item = (&'static str, SocketAddr)> + '_ {
        self.running
            .iter()
            .map(|running| (running.name, running.address))
    }

    /// Where the transport `name` listens, if it runs.
    pub fn address(&self, name: &str) -> Option<SocketAddr> {
        self.addresses()
            .find(|(running, _)| *running == name)
            .map(|(_, address)| address)
    }

    /// Stop gracefully: new outside calls answer `UNAVAILABLE` from now on; the calls in
    /// flight get `[node] drain_ms` to finish; those still running then end with
    /// `UNAVAILABLE`; then every listener closes.
    pub async fn stop(self) {
        let in_flight = self.drain.in_flight();
        tracing::info!(
            in_flight,
            drain_ms = self.drain_time.as_millis() as u64,
            "node stopping: no new calls; waiting for the calls in flight"
        );
        let cut = self.drain.stop(self.drain_time).await;
        if cut > 0 {
            tracing::warn!(
                cut,
                "calls still running after the drain time ended with UNAVAILABLE"
            );
        }
        for running in self.running {
            running.stop().await;
        }
        drop(self.calls_back);
        tracing::info!("node stopped");
    }
}

/// Where this node's connections to a remote node at `peer` come from: loopback for a
/// loopback peer (nothing is opened beyond the machine), any address otherwise.
fn outgoing_address(peer: SocketAddr) -> SocketAddr {
    use std::net::{Ipv4Addr, Ipv6Addr};
    let ip = match (peer.is_ipv4(), peer.ip().is_loopback()) {
        (true, true) => Ipv4Addr::LOCALHOST.into(),
        (true, false) => Ipv4Addr::UNSPECIFIED.into(),
        (false, true) => Ipv6Addr::LOCALHOST.into(),
        (false, false) => Ipv6Addr::UNSPECIFIED.into(),
    };
    SocketAddr::new(ip, 0)
}

/// Refuses an outside call a cluster node forwarded here whose service this node sends on
/// to a peer (`[services]`): a call is forwarded once, as the forwarding policy's are, so two
/// nodes placing a service on each other cannot bounce a call between them.
#[derive(Default)]
struct ForwardedOnce(HashMap<String, String>);

impl Admission for ForwardedOnce {
    fn admit(&self, call: &Admitting<'_>) -> Result<Admit, CallError> {
        let namespace = &call.operation.namespace;
        match (call.forwarded_for, self.0.get(namespace)) {
            (Some(_), Some(peer)) => Err(CallError::forbidden(format!(
                "`{}` came forwarded from a cluster node, and this node sends `{namespace}` on to `{peer}` ([services]): a call is forwarded once; reach `{namespace}` where it runs",
                call.operation.id
            ))),
            _ => Ok(Admit::Here),
        }
    }
}

/// The node's identity provider as its own `auth` service verifies with: the service is
/// mounted before the provider, which may read the env, exists.
#[derive(Clone, Default)]
struct NodeIdentities(Arc<std::sync::OnceLock<Arc<dyn IdentityProvider>>>);

impl NodeIdentities {
    fn set(&self, identities: Arc<dyn IdentityProvider>) {
        // Set once, when the node is assembled.
        let _ = self.0.set(identities);
    }

    fn get(&self) -> Result<&Arc<dyn IdentityProvider>, CallError> {
        self.0
            .get()
            .ok_or_else(|| CallError::unavailable("the node is still being assembled"))
    }
}

impl IdentityProvider for NodeIdentities {
    fn resolve<'a>(
        &'a self,
        credential: Credential<'a>,
    ) -> BoxFuture<'a, Result<Arc<Identity>, CallError>> {
        Box::pin(async move { self.get()?.resolve(credential).await })
    }

    fn resolve_key<'a>(
        &'a self,
        fingerprint: &'a str,
    ) -> BoxFuture<'a, Result<KeyHolder, CallError>> {
        Box::pin(async move { self.get()?.resolve_key(fingerprint).await })
    }
}

/// Mount a service that runs on a peer: over the call protocol, a connection made when
/// first needed and again after a loss, to wherever the live `[[peers]]` has the peer;
/// over irpc, the same to wherever the live `[[peers]]` has the peer's `irpc` address and
/// key (and how that connection stands, for readiness).
fn mount_on_peer(
    env: OperationEnvBuilder,
    on_peer: OnPeer,
    config: &ConfigServiceImpl,
    peers: &PeerLinks,
    identity: &NodeIdentity,
) -> Result<(OperationEnvBuilder, Option<IrpcLink>), NodeError> {
    let OnPeer {
        spec,
        peer,
        over,
        irpc,
    } = on_peer;
    let namespace = spec.namespace.clone();
    let cannot = |why: String| {
        NodeError::new(format!(
            "[services] places `{namespace}` on `{peer}`, but {why}"
        ))
    };
    match over {
        PeerPath::Call => Ok((
            env.mount_shared(spec, peers.named(&peer, config.shared())),
            None,
        )),
        PeerPath::Irpc => {
            let irpc = irpc.ok_or_else(|| {
                cannot("its protocol has no irpc path (the runtime's `irpc` feature is off where it is declared)".to_string())
            })?;
            // The live `[[peers]]` entry, read again before each connection.
            let (shared, name) = (config.shared(), peer.clone());
            let target: IrpcTarget = Arc::new(move || {
                let dynamic = shared.load();
                let entry = dynamic
                    .peers
                    .iter()
                    .find(|entry| entry.name == name)
                    .ok_or_else(|| format!("[[peers]] has no peer `{name}`"))?;
                let address = entry
                    .irpc
                    .as_deref()
                    .ok_or_else(|| format!("the [[peers]] entry `{name}` has no `irpc` address"))?;
                let addr = address.parse().map_err(|err| {
                    format!("the `irpc` address `{address}` of the [[peers]] entry `{name}` is not an address: {err}")
                })?;
                Ok((addr, entry.fingerprint.clone()))
            });
            let settings = &config.static_config().irpc;
            let (service, link) = irpc
                .reach(target, identity, &settings.quic_config())
                .map_err(|err| cannot(err.message))?;
            Ok((env.local(service), Some(link)))
        }
    }
}

/// Every namespace `[services]` names must be one the node has (here, on a peer, or off).
fn check_placements(
    config: &ConfigServiceImpl,
    env: &OperationEnv,
    off: &[String],
) -> Result<(), NodeError> {
    let mut known: Vec<&str> = env.services().map(|s| s.namespace.as_str()).collect();
    known.extend(off.iter().map(String::as_str));
    match config
        .static_config()
        .services
        .keys()
        .find(|namespace| !known.contains(&namespace.as_str()))
    {
        Some(unknown) => Err(NodeError::new(format!(
            "[services] places `{unknown}`, which this node does not have; it has {}",
            known
                .iter()
                .map(|namespace| format!("`{namespace}`"))
                .collect::<Vec<_>>()
                .join(", ")
        ))),
        None => Ok(()),
    }
}

/// The node's key: from the configured file, or a fresh one each start.
fn node_identity(config: &ConfigServiceImpl) -> Result<NodeIdentity, NodeError> {
    match &config.static_config().node_key {
        Some(path) => {
            let pem = std::fs::read_to_string(path).map_err(|err| {
                NodeError::new(format!(
                    "cannot read the node key {}: {err}",
                    path.display()
                ))
            })?;
            NodeIdentity::from_pem(&pem).map_err(|err| {
                NodeError::new(format!(
                    "the node key {} is not usable: {}; a node key is an Ed25519 key in PKCS#8 PEM (`-----BEGIN PRIVATE KEY-----`), as `alknet keys node --out FILE` writes",
                    path.display(),
                    err.message
                ))
            })
        }
        None => NodeIdentity::generate().map_err(|err| NodeError::new(err.message)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A node mounting `far` at `address`, under a key nobody holds.
    fn mounting_far(address: SocketAddr) -> NodeBuilder {
        let key = format!("ed25519:{}", "0".repeat(64));
        Node::builder(ConfigServiceImpl::embedded()).remote("far", address, &key)
    }

    #[test]
    fn a_node_that_mounts_a_remote_node_is_built_by_connecting() {
        let err = mounting_far("127.0.0.1:9".parse().unwrap())
            .build()
            .err()
            .expect("build refuses remote mounts");
        assert!(
            err.to_string().contains("`far`") && err.to_string().contains(".connect().await"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn a_remote_node_that_never_answers_fails_the_build_naming_it() {
        // A socket that takes QUIC's packets and answers none.
        let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let address = silent.local_addr().unwrap();
        let err = mounting_far(address)
            .connect()
            .await
            .err()
            .expect("the handshake times out");
        assert!(
            err.to_string().starts_with(&format!(
                "the remote node `far` ({address}) cannot be mounted:"
            )),
            "{err}"
        );
    }

    /// `/readyz` until `done` holds of its status and its check `peer.b`, or 10 s passed.
    async fn peer_check(base: &str, done: impl Fn(&str, &serde_json::Value) -> bool) {
        let mut last = String::new();
        for _ in 0..100 {
            let (status, body) = alknet_tests::adapters::curl(&[&format!("{base}/readyz")]).await;
            let answer: serde_json::Value = serde_json::from_str(&body).unwrap();
            let check = answer["checks"]
                .as_array()
                .unwrap()
                .iter()
                .find(|check| check["name"] == "peer.b")
                .cloned()
                .unwrap_or_else(|| panic!("no check `peer.b` in {answer}"));
            if done(&status, &check) {
                return;
            }
            last = format!("{status} {check}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("readiness never came to what was awaited; last: {last}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn readiness_names_each_peer_and_follows_its_connection() {
        let dir = tempfile::tempdir().unwrap();
        let key_file = dir.path().join("b.key");
        let key = NodeIdentity::generate().unwrap();
        std::fs::write(&key_file, key.private_key_pem()).unwrap();
        let b_at = |address: &str| {
            let config = format!("[node]\nkey = {key_file:?}\n[listen]\ncall = \"{address}\"\n");
            Node::builder(ConfigServiceImpl::from_text(config, "b's").unwrap())
                .build()
                .unwrap()
        };
        let b = b_at("127.0.0.1:0");
        let b_listening = b.start().await.unwrap();
        let b_address = b_listening.address("call").unwrap();
        let config = format!(
            "[listen]\nhttp = \"127.0.0.1:0\"\n\n[[peers]]\nname = \"b\"\naddress = \"{b_address}\"\nfingerprint = \"{}\"\n",
            b.identity().fingerprint()
        );
        let a = Node::builder(ConfigServiceImpl::from_text(config, "a's").unwrap())
            .build()
            .unwrap();
        let a_listening = a.start().await.unwrap();
        let base = format!("http://{}", a_listening.address("http").unwrap());

        // Before any call is forwarded, the first answer begins connecting.
        let (status, body) = alknet_tests::adapters::curl(&[&format!("{base}/readyz")]).await;
        assert_eq!(status, "503", "{body}");
        assert!(body.contains("not connected yet: connecting"), "{body}");
        peer_check(&base, |status, check| {
            status == "200" && check["ready"] == true
        })
        .await;

        // The peer goes away: not ready, saying why.
        b_listening.stop().await;
        drop(b);
        peer_check(&base, |status, check| {
            status == "503" && check["ready"] == false && check["detail"] != "connecting"
        })
        .await;

        // It comes back where it was (once its old endpoint has let go of the port): ready
        // again, with no call forwarded to it.
        let mut back = None;
        for _ in 0..100 {
            let node = b_at(&b_address.to_string());
            if let Ok(listening) = node.start().await {
                back = Some((node, listening));
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let _back = back.expect("the peer binds its old address again");
        peer_check(&base, |status, check| {
            status == "200" && check["ready"] == true
        })
        .await;
    }
}
