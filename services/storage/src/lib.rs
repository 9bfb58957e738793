//! `storage`: graphs, nodes and edges with JSON attributes, on SQLite, and a durable log
//! of their changes that `watch` follows and resumes.
//!
//! ```
//! use alknet_runtime::{Caller, Identity, Json, OperationEnv, ResourceGrant};
//! use alknet_storage::{StorageClient, StorageProtocol, StorageService};
//! use serde_json::json;
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let env = OperationEnv::builder()
//!     .local(StorageProtocol::local(StorageService::in_memory().unwrap()))
//!     .build()
//!     .unwrap();
//! let writer = Identity::new("user:ops").with_resources([ResourceGrant::new("graph", ["read", "write"])]);
//! let storage = StorageClient::new(env.with_caller(Caller::new().identity(writer)));
//!
//! storage.create_graph("people".into(), Default::default()).await.unwrap();
//! let attributes = Json(json!({"name": "Ada"}).as_object().unwrap().clone());
//! let ada = storage
//!     .create_node("people".into(), Some("ada".into()), "person".into(), attributes)
//!     .await
//!     .unwrap();
//! assert_eq!(ada.revision, 1);
//! let found = storage.get_node("people".into(), "ada".into()).await.unwrap();
//! assert_eq!(found.attributes["name"], "Ada");
//! # }
//! ```

#![deny(missing_docs, warnings)]

mod cursor;
mod identities;
mod sqlite;
mod store;
mod threads;

use std::collections::VecDeque;
use std::path::Path;
use std::sync::Arc;

use alknet_runtime::config::StorageSettings;
use alknet_runtime::futures::stream;
use alknet_runtime::prelude::*;
use serde_json::{Map, Value};
use threads::StoreThreads;

pub use identities::{DEFAULT_MAX_STALE, IDENTITY_GRAPH, StorageIdentityProvider};

pub use sqlite::SqliteStore;
pub use store::{Limits, NeighbourQuery, NodeQuery, Store, StoreError, Written, is_attribute_key};

/// Attributes: a JSON object.
pub type Attributes = Json<Map<String, Value>>;

/// A graph: a namespace of nodes and edges.
#[alk_type]
#[derive(Debug, Clone, PartialEq)]
pub struct Graph {
    /// Its id.
    pub id: String,
    /// Its attributes.
    pub attributes: Attributes,
    /// 1 when made; graphs are not updated.
    pub revision: u64,
}

/// A node of a graph.
#[alk_type]
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    /// The graph it is in.
    pub graph: String,
    /// Its id, unique in the graph.
    pub id: String,
    /// Its type, such as `person`.
    pub r#type: String,
    /// Its attributes.
    pub attributes: Attributes,
    /// 1 when made, and one more with each update.
    pub revision: u64,
}

/// An edge from one node of a graph to another.
#[alk_type]
#[derive(Debug, Clone, PartialEq)]
pub struct Edge {
    /// The graph it is in.
    pub graph: String,
    /// Its id, unique in the graph.
    pub id: String,
    /// Its type, such as `knows`.
    pub r#type: String,
    /// The node it leaves.
    pub from: String,
    /// The node it reaches.
    pub to: String,
    /// Its attributes.
    pub attributes: Attributes,
    /// 1 when made.
    pub revision: u64,
}

/// What a delete removed.
#[alk_type]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deleted {
    /// The id of what was deleted.
    pub id: String,
    /// Its revision when it was deleted.
    pub revision: u64,
    /// The nodes that went with it (a graph's).
    pub nodes: u64,
    /// The edges that went with it (a graph's, or a node's own).
    pub edges: u64,
}

/// An edge at a node, and the node at its other end.
#[alk_type]
#[derive(Debug, Clone, PartialEq)]
pub struct Neighbour {
    /// The edge.
    pub edge: Edge,
    /// The node at the edge's other end (for an edge from a node to itself, the node).
    pub node: Node,
}

/// A page of graphs.
#[alk_type]
#[derive(Debug, Clone, PartialEq)]
pub struct GraphPage {
    /// The graphs, by id.
    pub items: Vec<Graph>,
    /// The cursor of the next page; none on the last.
    pub next: Option<String>,
}

/// A page of nodes.
#[alk_type]
#[derive(Debug, Clone, PartialEq)]
pub struct NodePage {
    /// The nodes, by id.
    pub items: Vec<Node>,
    /// The cursor of the next page; none on the last.
    pub next: Option<String>,
}

/// A page of neighbours.
#[alk_type]
#[derive(Debug, Clone, PartialEq)]
pub struct NeighbourPage {
    /// The edges and the nodes at their other ends, by edge id.
    pub items: Vec<Neighbour>,
    /// The cursor of the next page; none on the last.
    pub next: Option<String>,
}

/// Which edges of a node.
#[alk_type]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// The edges that leave it.
    #[default]
    Outgoing,
    /// The edges that reach it.
    Incoming,
    /// Both.
    Both,
}

/// How an update treats the attributes it is given.
#[alk_type]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum UpdateMode {
    /// A JSON merge patch (RFC 7386): the keys given are set, a `null` removes its key,
    /// and objects merge key by key.
    #[default]
    Merge,
    /// The attributes given are the node's attributes.
    Replace,
}

/// One write of an `apply`.
#[alk_type]
#[derive(Debug, Clone)]
#[serde(rename_all = "snake_case")]
pub enum Write {
    /// `create_graph`.
    CreateGraph(CreateGraph),
    /// `delete_graph`.
    DeleteGraph(DeleteGraph),
    /// `create_node`.
    CreateNode(CreateNode),
    /// `update_node`.
    UpdateNode(UpdateNode),
    /// `delete_node`.
    DeleteNode(DeleteNode),
    /// `create_edge`.
    CreateEdge(CreateEdge),
    /// `delete_edge`.
    DeleteEdge(DeleteEdge),
}

impl Write {
    /// The graph the write changes.
    pub fn graph(&self) -> &str {
        match self {
            Write::CreateGraph(w) => &w.graph,
            Write::DeleteGraph(w) => &w.graph,
            Write::CreateNode(w) => &w.graph,
            Write::UpdateNode(w) => &w.graph,
            Write::DeleteNode(w) => &w.graph,
            Write::CreateEdge(w) => &w.graph,
            Write::DeleteEdge(w) => &w.graph,
        }
    }
}

/// What one write of an `apply` made, changed or removed.
#[alk_type]
#[derive(Debug, Clone, PartialEq)]
#[serde(rename_all = "snake_case")]
pub enum Applied {
    /// A graph made.
    Graph(Graph),
    /// A node made or updated.
    Node(Node),
    /// An edge made.
    Edge(Edge),
    /// A graph, node or edge deleted.
    Deleted(Deleted),
}

/// What a change was made to.
#[alk_type]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Entity {
    /// A graph.
    Graph,
    /// A node.
    Node,
    /// An edge.
    Edge,
}

/// What a change did.
#[alk_type]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Made it.
    Created,
    /// Changed its attributes.
    Updated,
    /// Removed it.
    Deleted,
}

/// One entry of the change log.
#[alk_type]
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    /// Its sequence number: larger for every later change, across all graphs.
    pub seq: u64,
    /// The graph it is in.
    pub graph: String,
    /// What was changed.
    pub entity: Entity,
    /// How.
    pub action: Action,
    /// The id of what was changed.
    pub id: String,
    /// Its revision after the change (before it, for a delete).
    pub revision: u64,
    /// The graph, node or edge after the change, as `get_*` returns it; none for a delete.
    pub record: Option<Json>,
}

/// Where the change log stands.
#[alk_type]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogPosition {
    /// The newest change's sequence number (0: none yet): `watch` from here sees only
    /// what comes after.
    pub head: u64,
    /// The oldest sequence number the log still holds: `watch` can resume from one before
    /// it, and no earlier.
    pub oldest: u64,
}

/// The details of `CONFLICT`.
#[alk_type]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevisionConflict {
    /// The id of the node, edge or graph.
    pub id: String,
    /// The revision the write expected.
    pub expected: u64,
    /// Its revision now.
    pub current: u64,
}

/// The details of `ATTRIBUTES_TOO_LARGE`.
#[alk_type]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TooLarge {
    /// The attributes' size as JSON text, in bytes.
    pub bytes: u64,
    /// The limit, in bytes (`[storage] max_attributes_bytes`).
    pub limit: u64,
}

/// The details of `CHANGES_PRUNED`.
#[alk_type]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pruned {
    /// The oldest sequence number the log still holds.
    pub oldest: u64,
}

/// Graphs of nodes and edges with JSON attributes, and a log of their changes.
#[alk_service(namespace = "storage", version = "1.0.0")]
pub enum StorageProtocol {
    /// Make a graph.
    #[alk_operation(
        mutation,
        output = Graph,
        resource = "graph:write",
        error(code = "ALREADY_EXISTS", status = 409, description = "a graph, node or edge with this id exists already"),
        error(code = "ATTRIBUTES_TOO_LARGE", status = 413, details = TooLarge, description = "the attributes are larger than `[storage] max_attributes_bytes`")
    )]
    CreateGraph {
        /// Its id: 1 to 128 of `A-Z a-z 0-9 _ - . :`.
        graph: String,
        /// Its attributes.
        #[serde(default)]
        attributes: Attributes,
    },

    /// One graph.
    #[alk_operation(
        query,
        output = Graph,
        resource = "graph:read",
        error(code = "GRAPH_NOT_FOUND", status = 404, description = "there is no graph with this id")
    )]
    GetGraph {
        /// Its id.
        graph: String,
    },

    /// The graphs, by id, a page at a time.
    #[alk_operation(query, output = GraphPage, resource = "graph:read",
        error(code = "INVALID_CURSOR", status = 422, description = "the cursor was altered, or it is another listing's")
    )]
    ListGraphs {
        /// At most this many (default 100, at most 1000).
        #[serde(default)]
        limit: Option<u32>,
        /// Where the previous page ended (its `next`).
        #[serde(default)]
        cursor: Option<String>,
    },

    /// Delete a graph and everything in it.
    #[alk_operation(
        mutation,
        idempotent,
        output = Deleted,
        resource = "graph:write",
        error(code = "GRAPH_NOT_FOUND", status = 404, description = "there is no graph with this id"),
        error(code = "CONFLICT", status = 409, details = RevisionConflict, description = "`if_revision` is not the current revision: it was changed since it was read")
    )]
    DeleteGraph {
        /// Its id.
        graph: String,
        /// Delete only if this is its revision.
        #[serde(default)]
        if_revision: Option<u64>,
    },

    /// Make a node.
    #[alk_operation(
        mutation,
        output = Node,
        resource = "graph:write",
        error(code = "GRAPH_NOT_FOUND", status = 404, description = "there is no graph with this id"),
        error(code = "ALREADY_EXISTS", status = 409, description = "a graph, node or edge with this id exists already"),
        error(code = "ATTRIBUTES_TOO_LARGE", status = 413, details = TooLarge, description = "the attributes are larger than `[storage] max_attributes_bytes`")
    )]
    CreateNode {
        /// The graph.
        graph: String,
        /// Its id (1 to 128 of `A-Z a-z 0-9 _ - . :`); absent: 32 random hex digits.
        #[serde(default)]
        id: Option<String>,
        /// Its type: 1 to 64 of `A-Z a-z 0-9 _ - . :`.
        r#type: String,
        /// Its attributes.
        #[serde(default)]
        attributes: Attributes,
    },

    /// One node.
    #[alk_operation(
        query,
        output = Node,
        resource = "graph:read",
        error(code = "NODE_NOT_FOUND", status = 404, description = "there is no node with this id in the graph")
    )]
    GetNode {
        /// The graph.
        graph: String,
        /// Its id.
        id: String,
    },

    /// Change a node's attributes: merged (by default) or replaced. Its revision grows by one.
    #[alk_operation(
        mutation,
        output = Node,
        resource = "graph:write",
        error(code = "NODE_NOT_FOUND", status = 404, description = "there is no node with this id in the graph"),
        error(code = "CONFLICT", status = 409, details = RevisionConflict, description = "`if_revision` is not the current revision: it was changed since it was read"),
        error(code = "ATTRIBUTES_TOO_LARGE", status = 413, details = TooLarge, description = "the attributes are larger than `[storage] max_attributes_bytes`")
    )]
    UpdateNode {
        /// The graph.
        graph: String,
        /// Its id.
        id: String,
        /// The attributes: a merge patch, or the new attributes.
        attributes: Attributes,
        /// Merge (the default) or replace.
        #[serde(default)]
        mode: UpdateMode,
        /// Update only if this is its revision.
        #[serde(default)]
        if_revision: Option<u64>,
    },

    /// Delete a node and its edges.
    #[alk_operation(
        mutation,
        idempotent,
        output = Deleted,
        resource = "graph:write",
        error(code = "NODE_NOT_FOUND", status = 404, description = "there is no node with this id in the graph"),
        error(code = "CONFLICT", status = 409, details = RevisionConflict, description = "`if_revision` is not the current revision: it was changed since it was read")
    )]
    DeleteNode {
        /// The graph.
        graph: String,
        /// Its id.
        id: String,
        /// Delete only if this is its revision.
        #[serde(default)]
        if_revision: Option<u64>,
    },

    /// The nodes of a graph, by id, a page at a time: of one type, and whose top-level
    /// attributes equal the `filter`'s (strings, numbers, booleans or null).
    #[alk_operation(
        query,
        output = NodePage,
        resource = "graph:read",
        error(code = "GRAPH_NOT_FOUND", status = 404, description = "there is no graph with this id"),
        error(code = "INVALID_CURSOR", status = 422, description = "the cursor was altered, or it is another listing's")
    )]
    ListNodes {
        /// The graph.
        graph: String,
        /// Only nodes of this type.
        #[serde(default)]
        r#type: Option<String>,
        /// Only nodes whose attribute `key` equals `value`, for each key of the filter
        /// (at most 8; keys of `A-Z a-z 0-9 _ -`).
        #[serde(default)]
        filter: Attributes,
        /// At most this many (default 100, at most 1000).
        #[serde(default)]
        limit: Option<u32>,
        /// Where the previous page ended (its `next`).
        #[serde(default)]
        cursor: Option<String>,
    },

    /// Make an edge between two nodes of a graph.
    #[alk_operation(
        mutation,
        output = Edge,
        resource = "graph:write",
        error(code = "GRAPH_NOT_FOUND", status = 404, description = "there is no graph with this id"),
        error(code = "NODE_NOT_FOUND", status = 404, description = "there is no node with this id in the graph"),
        error(code = "ALREADY_EXISTS", status = 409, description = "a graph, node or edge with this id exists already"),
        error(code = "ATTRIBUTES_TOO_LARGE", status = 413, details = TooLarge, description = "the attributes are larger than `[storage] max_attributes_bytes`")
    )]
    CreateEdge {
        /// The graph.
        graph: String,
        /// Its id (1 to 128 of `A-Z a-z 0-9 _ - . :`); absent: 32 random hex digits.
        #[serde(default)]
        id: Option<String>,
        /// Its type: 1 to 64 of `A-Z a-z 0-9 _ - . :`.
        r#type: String,
        /// The node it leaves.
        from: String,
        /// The node it reaches.
        to: String,
        /// Its attributes.
        #[serde(default)]
        attributes: Attributes,
    },

    /// One edge.
    #[alk_operation(
        query,
        output = Edge,
        resource = "graph:read",
        error(code = "EDGE_NOT_FOUND", status = 404, description = "there is no edge with this id in the graph")
    )]
    GetEdge {
        /// The graph.
        graph: String,
        /// Its id.
        id: String,
    },

    /// Delete an edge.
    #[alk_operation(
        mutation,
        idempotent,
        output = Deleted,
        resource = "graph:write",
        error(code = "EDGE_NOT_FOUND", status = 404, description = "there is no edge with this id in the graph"),
        error(code = "CONFLICT", status = 409, details = RevisionConflict, description = "`if_revision` is not the current revision: it was changed since it was read")
    )]
    DeleteEdge {
        /// The graph.
        graph: String,
        /// Its id.
        id: String,
        /// Delete only if this is its revision.
        #[serde(default)]
        if_revision: Option<u64>,
    },

    /// The edges at a node, by edge id, a page at a time, each with the node at its other
    /// end.
    #[alk_operation(
        query,
        output = NeighbourPage,
        resource = "graph:read",
        error(code = "NODE_NOT_FOUND", status = 404, description = "there is no node with this id in the graph"),
        error(code = "INVALID_CURSOR", status = 422, description = "the cursor was altered, or it is another listing's")
    )]
    Neighbours {
        /// The graph.
        graph: String,
        /// The node.
        node: String,
        /// The edges that leave it (the default), reach it, or both.
        #[serde(default)]
        direction: Direction,
        /// Only edges of this type.
        #[serde(default)]
        r#type: Option<String>,
        /// At most this many (default 100, at most 1000).
        #[serde(default)]
        limit: Option<u32>,
        /// Where the previous page ended (its `next`).
        #[serde(default)]
        cursor: Option<String>,
    },

    /// Several writes as one transaction: all of them, in order, or none. A failure names
    /// the write (from 0) in its message.
    #[alk_operation(
        mutation,
        output = Vec<Applied>,
        resource = "graph:write",
        error(code = "GRAPH_NOT_FOUND", status = 404, description = "there is no graph with this id"),
        error(code = "NODE_NOT_FOUND", status = 404, description = "there is no node with this id in the graph"),
        error(code = "EDGE_NOT_FOUND", status = 404, description = "there is no edge with this id in the graph"),
        error(code = "ALREADY_EXISTS", status = 409, description = "a graph, node or edge with this id exists already"),
        error(code = "CONFLICT", status = 409, details = RevisionConflict, description = "`if_revision` is not the current revision: it was changed since it was read"),
        error(code = "ATTRIBUTES_TOO_LARGE", status = 413, details = TooLarge, description = "the attributes are larger than `[storage] max_attributes_bytes`")
    )]
    Apply {
        /// The writes (at most `[storage] max_writes_per_apply`, 1000 by default).
        writes: Vec<Write>,
    },

    /// Where the change log stands: its newest sequence number and the oldest it holds.
    #[alk_operation(query, output = LogPosition, resource = "graph:read")]
    ChangeLog,

    /// The changes to a graph as they commit, in order: after `since` (a sequence number
    /// this watch or `change_log` gave), or from now. A watcher that resumes with the last
    /// `seq` it saw gets every later change once.
    #[alk_operation(
        subscription,
        item = Change,
        resource = "graph:read",
        error(code = "CHANGES_PRUNED", status = 410, details = Pruned, description = "the log no longer holds the changes after `since`: read the graph again and watch from `change_log`'s head")
    )]
    Watch {
        /// The graph.
        graph: String,
        /// The last sequence number seen; absent: only changes from now.
        #[serde(default)]
        since: Option<u64>,
    },
}

/// How many changes `watch` reads from the log at a time.
const WATCH_BATCH: usize = 256;
const DEFAULT_PAGE: u32 = 100;
const MAX_PAGE: u32 = 1000;
/// The most attributes a `list_nodes` filter may compare.
const MAX_FILTER_KEYS: usize = 8;

/// The `storage` service over a [`Store`].
pub struct StorageService {
    store: Arc<dyn Store>,
    threads: StoreThreads,
    limits: Limits,
    /// The log's head after the last write (this service's or, polled, another
    /// process's): what wakes `watch`. Watches end when the service is gone.
    head: Arc<tokio::sync::watch::Sender<u64>>,
    commits: Commits,
}

/// The sequence number of each graph's last change committed by one [`StorageService`],
/// known the moment the write returns: what lets a reader in the same process, such as
/// [`StorageIdentityProvider::with_commits`], tell that it has not yet seen a write.
#[derive(Clone, Default)]
pub struct Commits(Arc<std::sync::Mutex<std::collections::HashMap<String, u64>>>);

impl Commits {
    /// The sequence number of `graph`'s last change committed since the service started
    /// (0: none).
    pub fn last(&self, graph: &str) -> u64 {
        let last = self
            .0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        last.get(graph).copied().unwrap_or(0)
    }

    fn record(&self, writes: &[Write], seqs: &[u64]) {
        let mut last = self
            .0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        for (write, &seq) in writes.iter().zip(seqs) {
            match last.get_mut(write.graph()) {
                Some(known) => *known = (*known).max(seq),
                None => {
                    last.insert(write.graph().to_string(), seq);
                }
            }
        }
    }
}

impl StorageService {
    /// The service over the database `settings` name: a file (made, and migrated to this
    /// version, if need be), or memory alone when they say `in_memory`.
    pub fn open(settings: &StorageSettings) -> Result<Self, StoreError> {
        if let Some(key) = settings
            .indexed_attributes
            .iter()
            .find(|key| !is_attribute_key(key))
        {
            return Err(StoreError::Settings(format!(
                "`[storage] indexed_attributes`: `{}` cannot be indexed: a key is 1 to 64 of `A-Z a-z 0-9 _ -`",
                key.escape_debug()
            )));
        }
        let limits = Limits::from_settings(settings);
        let store = if settings.in_memory {
            SqliteStore::in_memory(limits.clone())?
        } else {
            let path = match &settings.file {
                Some(path) => path.clone(),
                None => alknet_runtime::config::data_dir()
                    .ok_or_else(|| {
                        StoreError::Settings(
                            "neither XDG_DATA_HOME nor HOME is set: give `[storage] file`".into(),
                        )
                    })?
                    .join("storage.sqlite3"),
            };
            SqliteStore::open(&path, limits.clone())?
        };
        store.index_attributes(&settings.indexed_attributes)?;
        Self::with_store(Arc::new(store), limits)
    }

    /// The service over a database in memory, with the default limits.
    pub fn in_memory() -> Result<Self, StoreError> {
        Self::open(&StorageSettings {
            in_memory: true,
            ..StorageSettings::default()
        })
    }

    /// The service over a database file at `path`, with the default limits.
    pub fn file(path: &Path) -> Result<Self, StoreError> {
        Self::open(&StorageSettings {
            file: Some(path.to_path_buf()),
            ..StorageSettings::default()
        })
    }

    /// The service over another engine's [`Store`].
    pub fn with_store(store: Arc<dyn Store>, limits: Limits) -> Result<Self, StoreError> {
        let head = Arc::new(tokio::sync::watch::Sender::new(store.log()?.head));
        let polled = Arc::downgrade(&head);
        let on_head = move |at| {
            if let Some(head) = polled.upgrade() {
                advance(&head, at);
            }
        };
        Ok(StorageService {
            threads: StoreThreads::start(store.clone(), limits.readers, limits.poll, on_head)?,
            store,
            limits,
            head,
            commits: Commits::default(),
        })
    }

    /// Make `graph` unless it exists, before the service serves (a node makes the graph its
    /// identities are kept in this way).
    pub fn ensure_graph(&self, graph: &str) -> Result<(), StoreError> {
        let write = Write::CreateGraph(CreateGraph {
            graph: graph.to_string(),
            attributes: Attributes::default(),
        });
        match self.store.write(&[write]) {
            Ok(written) => {
                self.advance_head(written.head());
                Ok(())
            }
            Err(StoreError::AlreadyExists { .. }) => Ok(()),
            Err(err) => Err(err),
        }
    }

    /// Each graph's last committed change, as this service's writes return.
    pub fn commits(&self) -> Commits {
        self.commits.clone()
    }

    fn advance_head(&self, head: u64) {
        advance(&self.head, head);
    }

    async fn read<T: Send + 'static>(
        &self,
        work: impl FnOnce(&dyn Store) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, CallError> {
        self.threads.read(work).await
    }

    /// [`read`](Self::read) of one row by its key ([`StoreThreads::read_point`]).
    async fn read_point<T: Send + 'static>(
        &self,
        work: impl FnOnce(&dyn Store) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, CallError> {
        self.threads.read_point(work).await
    }

    async fn write(&self, writes: Vec<Write>) -> Result<Vec<Applied>, CallError> {
        for (index, write) in writes.iter().enumerate() {
            self.check_write(write)
                .map_err(|err| in_write(&writes, index, err))?;
        }
        let (writes, written) = self.threads.write(writes).await?;
        self.commits.record(&writes, &written.seqs);
        self.advance_head(written.head());
        Ok(written.applied)
    }

    async fn write_one(&self, write: Write) -> Result<Applied, CallError> {
        let mut applied = self.write(vec![write]).await?;
        Ok(applied.pop().expect("one write, one record"))
    }

    fn check_write(&self, write: &Write) -> Result<(), CallError> {
        match write {
            Write::CreateGraph(w) => {
                check_id("graph", &w.graph)?;
                self.check_attributes(&w.graph, &w.attributes)
            }
            Write::DeleteGraph(w) => check_id("graph", &w.graph),
            Write::CreateNode(w) => {
                check_id("graph", &w.graph)?;
                if let Some(id) = &w.id {
                    check_id("node id", id)?;
                }
                check_type(&w.r#type)?;
                self.check_attributes(w.id.as_deref().unwrap_or("the new node"), &w.attributes)
            }
            Write::UpdateNode(w) => {
                check_id("graph", &w.graph)?;
                check_id("node id", &w.id)?;
                // A patch over the limit is refused before the database is touched; the
                // store checks the attributes a merge makes.
                self.check_attributes(&w.id, &w.attributes)
            }
            Write::DeleteNode(w) => {
                check_id("graph", &w.graph)?;
                check_id("node id", &w.id)
            }
            Write::CreateEdge(w) => {
                check_id("graph", &w.graph)?;
                if let Some(id) = &w.id {
                    check_id("edge id", id)?;
                }
                check_type(&w.r#type)?;
                check_id("node id", &w.from)?;
                check_id("node id", &w.to)?;
                self.check_attributes(w.id.as_deref().unwrap_or("the new edge"), &w.attributes)
            }
            Write::DeleteEdge(w) => {
                check_id("graph", &w.graph)?;
                check_id("edge id", &w.id)
            }
        }
    }

    fn check_attributes(&self, id: &str, attributes: &Attributes) -> Result<(), CallError> {
        let bytes = serde_json::to_vec(&attributes.0)
            .map_err(|err| CallError::internal(format!("encode attributes: {err}")))?
            .len();
        store::check_size(id, bytes, &self.limits).map_err(store_error)
    }

    fn page(&self, limit: Option<u32>) -> Result<usize, CallError> {
        match limit.unwrap_or(DEFAULT_PAGE) {
            0 => Err(CallError::invalid_input(
                "`limit` is 0: ask for at least one",
            )),
            n if n > MAX_PAGE => Err(CallError::invalid_input(format!(
                "`limit` is {n}: a page holds at most {MAX_PAGE}"
            ))),
            n => Ok(n as usize),
        }
    }

    fn after(&self, query: &str, cursor: Option<&str>) -> Result<Option<String>, CallError> {
        cursor
            .map(|cursor| {
                cursor::decode(self.store.cursor_key(), query, cursor).ok_or_else(|| {
                    StorageErrors::invalid_cursor(
                        "the cursor was altered, or it belongs to another listing: pass the `next` of the previous page unchanged, with the same query",
                    )
                })
            })
            .transpose()
    }

    fn next<T>(
        &self,
        query: &str,
        items: &[T],
        limit: usize,
        id: impl Fn(&T) -> &str,
    ) -> Option<String> {
        (items.len() == limit)
            .then(|| items.last())
            .flatten()
            .map(|last| cursor::encode(self.store.cursor_key(), query, id(last)))
    }
}

impl StorageHandler for StorageService {
    async fn create_graph(
        &self,
        _ctx: &OperationContext,
        request: CreateGraph,
    ) -> Result<Graph, CallError> {
        match self.write_one(Write::CreateGraph(request)).await? {
            Applied::Graph(graph) => Ok(graph),
            other => Err(unexpected(other)),
        }
    }

    async fn get_graph(
        &self,
        _ctx: &OperationContext,
        request: GetGraph,
    ) -> Result<Graph, CallError> {
        check_id("graph", &request.graph)?;
        self.read_point(move |store| store.graph(&request.graph))
            .await
    }

    async fn list_graphs(
        &self,
        _ctx: &OperationContext,
        request: ListGraphs,
    ) -> Result<GraphPage, CallError> {
        let limit = self.page(request.limit)?;
        let query = "graphs";
        let after = self.after(query, request.cursor.as_deref())?;
        let items = self
            .read(move |store| store.graphs(after.as_deref(), limit))
            .await?;
        let next = self.next(query, &items, limit, |graph| &graph.id);
        Ok(GraphPage { items, next })
    }

    async fn delete_graph(
        &self,
        _ctx: &OperationContext,
        request: DeleteGraph,
    ) -> Result<Deleted, CallError> {
        deleted(self.write_one(Write::DeleteGraph(request)).await?)
    }

    async fn create_node(
        &self,
        _ctx: &OperationContext,
        request: CreateNode,
    ) -> Result<Node, CallError> {
        match self.write_one(Write::CreateNode(request)).await? {
            Applied::Node(node) => Ok(node),
            other => Err(unexpected(other)),
        }
    }

    async fn get_node(&self, _ctx: &OperationContext, request: GetNode) -> Result<Node, CallError> {
        check_id("graph", &request.graph)?;
        check_id("node id", &request.id)?;
        self.read_point(move |store| store.node(&request.graph, &request.id))
            .await
    }

    async fn update_node(
        &self,
        _ctx: &OperationContext,
        request: UpdateNode,
    ) -> Result<Node, CallError> {
        match self.write_one(Write::UpdateNode(request)).await? {
            Applied::Node(node) => Ok(node),
            other => Err(unexpected(other)),
        }
    }

    async fn delete_node(
        &self,
        _ctx: &OperationContext,
        request: DeleteNode,
    ) -> Result<Deleted, CallError> {
        deleted(self.write_one(Write::DeleteNode(request)).await?)
    }

    async fn list_nodes(
        &self,
        _ctx: &OperationContext,
        request: ListNodes,
    ) -> Result<NodePage, CallError> {
        check_id("graph", &request.graph)?;
        if let Some(node_type) = &request.r#type {
            check_type(node_type)?;
        }
        let filter = check_filter(request.filter.0)?;
        let limit = self.page(request.limit)?;
        // The listing a cursor belongs to: everything but the page's size and position.
        let query = serde_json::to_string(&("nodes", &request.graph, &request.r#type, &filter))
            .map_err(|err| CallError::internal(format!("encode the query: {err}")))?;
        let after = self.after(&query, request.cursor.as_deref())?;
        let (graph, node_type) = (request.graph, request.r#type);
        let items = self
            .read(move |store| {
                let query = NodeQuery {
                    graph: &graph,
                    node_type: node_type.as_deref(),
                    filter: &filter,
                };
                store.nodes(&query, after.as_deref(), limit)
            })
            .await?;
        let next = self.next(&query, &items, limit, |node| &node.id);
        Ok(NodePage { items, next })
    }

    async fn create_edge(
        &self,
        _ctx: &OperationContext,
        request: CreateEdge,
    ) -> Result<Edge, CallError> {
        match self.write_one(Write::CreateEdge(request)).await? {
            Applied::Edge(edge) => Ok(edge),
            other => Err(unexpected(other)),
        }
    }

    async fn get_edge(&self, _ctx: &OperationContext, request: GetEdge) -> Result<Edge, CallError> {
        check_id("graph", &request.graph)?;
        check_id("edge id", &request.id)?;
        self.read_point(move |store| store.edge(&request.graph, &request.id))
            .await
    }

    async fn delete_edge(
        &self,
        _ctx: &OperationContext,
        request: DeleteEdge,
    ) -> Result<Deleted, CallError> {
        deleted(self.write_one(Write::DeleteEdge(request)).await?)
    }

    async fn neighbours(
        &self,
        _ctx: &OperationContext,
        request: Neighbours,
    ) -> Result<NeighbourPage, CallError> {
        check_id("graph", &request.graph)?;
        check_id("node id", &request.node)?;
        if let Some(edge_type) = &request.r#type {
            check_type(edge_type)?;
        }
        let limit = self.page(request.limit)?;
        let query = serde_json::to_string(&(
            "neighbours",
            &request.graph,
            &request.node,
            request.direction,
            &request.r#type,
        ))
        .map_err(|err| CallError::internal(format!("encode the query: {err}")))?;
        let after = self.after(&query, request.cursor.as_deref())?;
        let (graph, node, direction, edge_type) = (
            request.graph,
            request.node,
            request.direction,
            request.r#type,
        );
        let items = self
            .read(move |store| {
                let query = NeighbourQuery {
                    graph: &graph,
                    node: &node,
                    direction,
                    edge_type: edge_type.as_deref(),
                };
                store.neighbours(&query, after.as_deref(), limit)
            })
            .await?;
        let next = self.next(&query, &items, limit, |neighbour| &neighbour.edge.id);
        Ok(NeighbourPage { items, next })
    }

    async fn apply(
        &self,
        _ctx: &OperationContext,
        request: Apply,
    ) -> Result<Vec<Applied>, CallError> {
        if request.writes.len() > self.limits.max_writes_per_apply {
            return Err(CallError::invalid_input(format!(
                "{} writes: one `apply` holds at most {} (`[storage] max_writes_per_apply`)",
                request.writes.len(),
                self.limits.max_writes_per_apply
            )));
        }
        self.write(request.writes).await
    }

    async fn change_log(
        &self,
        _ctx: &OperationContext,
        _request: ChangeLog,
    ) -> Result<LogPosition, CallError> {
        self.read(|store| store.log()).await
    }

    async fn watch(
        &self,
        _ctx: &OperationContext,
        request: Watch,
    ) -> Result<ItemStream<Change>, CallError> {
        check_id("graph", &request.graph)?;
        let mut heads = self.head.subscribe();
        let since = match request.since {
            Some(since) => since,
            None => *heads.borrow_and_update(),
        };
        let mut watching = Watching {
            threads: self.threads.clone(),
            graph: Arc::from(request.graph),
            last: since,
            ready: VecDeque::new(),
            heads,
            ended: false,
        };
        // The first read answers the call, so a `since` the log no longer holds is the
        // call's error rather than its first item.
        watching.fill().await?;
        Ok(Box::pin(stream::unfold(watching, Watching::next)))
    }
}

/// Tell the watches the log's head is at `at`. Writes return in any order and a poll may
/// read the head before a write's own return: the head only moves on.
fn advance(head: &tokio::sync::watch::Sender<u64>, at: u64) {
    head.send_if_modified(|known| {
        let newer = at > *known;
        *known = (*known).max(at);
        newer
    });
}

/// One `watch`: the changes read and not yet sent, and the last sequence number passed on.
struct Watching {
    threads: StoreThreads,
    graph: Arc<str>,
    last: u64,
    ready: VecDeque<Change>,
    heads: tokio::sync::watch::Receiver<u64>,
    ended: bool,
}

impl Watching {
    /// Read the changes after `last`, up to a batch; when there are none, `last` moves to
    /// the head seen before the read, since every change up to it had committed.
    async fn fill(&mut self) -> Result<(), CallError> {
        let head = *self.heads.borrow_and_update();
        let (graph, after) = (self.graph.clone(), self.last);
        let changes = self
            .threads
            .read(move |store| store.changes(&graph, after, WATCH_BATCH))
            .await?;
        if changes.is_empty() {
            self.last = self.last.max(head);
        }
        self.ready.extend(changes);
        Ok(())
    }

    async fn next(mut self) -> Option<(Result<Change, CallError>, Self)> {
        loop {
            if let Some(change) = self.ready.pop_front() {
                self.last = change.seq;
                return Some((Ok(change), self));
            }
            if self.ended {
                return None;
            }
            if *self.heads.borrow() <= self.last && self.heads.changed().await.is_err() {
                // The service is gone: nothing more will be written.
                return None;
            }
            if let Err(err) = self.fill().await {
                self.ended = true;
                return Some((Err(err), self));
            }
        }
    }
}

/// The error a call answers with for a store's.
pub(crate) fn store_error(err: StoreError) -> CallError {
    match err {
        StoreError::GraphNotFound { graph } => {
            StorageErrors::graph_not_found(format!("there is no graph `{graph}`"))
        }
        StoreError::NodeNotFound { graph, id } => {
            StorageErrors::node_not_found(format!("there is no node `{id}` in graph `{graph}`"))
        }
        StoreError::EdgeNotFound { graph, id } => {
            StorageErrors::edge_not_found(format!("there is no edge `{id}` in graph `{graph}`"))
        }
        StoreError::AlreadyExists { entity, id } => {
            StorageErrors::already_exists(format!("a {entity} `{id}` exists already"))
        }
        StoreError::Conflict {
            entity,
            id,
            expected,
            current,
        } => StorageErrors::conflict(
            format!("{entity} `{id}` is at revision {current}, not {expected}: read it again"),
            RevisionConflict {
                id,
                expected,
                current,
            },
        ),
        StoreError::TooLarge { id, bytes, limit } => StorageErrors::attributes_too_large(
            format!(
                "the attributes of `{id}` are {bytes} bytes of JSON: at most {limit} (`[storage] max_attributes_bytes`)"
            ),
            TooLarge {
                bytes: bytes as u64,
                limit: limit as u64,
            },
        ),
        StoreError::Pruned { after, oldest } => StorageErrors::changes_pruned(
            format!(
                "the change log starts at {oldest}: the changes after {after} were dropped; read the graph again and watch from `change_log`'s head"
            ),
            Pruned { oldest },
        ),
        StoreError::InWrite { index, error } => {
            let mut err = store_error(*error);
            err.message = format!("write {index}: {}", err.message);
            err
        }
        StoreError::Database(message) => CallError::internal(format!("the database: {message}")),
        StoreError::Settings(message) => CallError::internal(message),
    }
}

/// An error found checking write `index` of `writes`, named by its place when there are
/// several.
fn in_write(writes: &[Write], index: usize, mut err: CallError) -> CallError {
    if writes.len() > 1 {
        err.message = format!("write {index}: {}", err.message);
    }
    err
}

fn deleted(applied: Applied) -> Result<Deleted, CallError> {
    match applied {
        Applied::Deleted(deleted) => Ok(deleted),
        other => Err(unexpected(other)),
    }
}

fn unexpected(applied: Applied) -> CallError {
    CallError::internal(format!("the store answered a write with {applied:?}"))
}

/// The longest id of a graph, node or edge.
pub const MAX_ID_LEN: usize = 128;
/// The longest type of a node or edge.
pub const MAX_TYPE_LEN: usize = 64;

fn id_chars(text: &str) -> bool {
    text.bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b':'))
}

fn check_id(what: &str, id: &str) -> Result<(), CallError> {
    if !id.is_empty() && id.len() <= MAX_ID_LEN && id_chars(id) {
        return Ok(());
    }
    Err(CallError::invalid_input(format!(
        "`{}` is not a {what}: 1 to {MAX_ID_LEN} of `A-Z a-z 0-9 _ - . :`",
        id.escape_debug()
    )))
}

fn check_type(text: &str) -> Result<(), CallError> {
    if !text.is_empty() && text.len() <= MAX_TYPE_LEN && id_chars(text) {
        return Ok(());
    }
    Err(CallError::invalid_input(format!(
        "`{}` is not a type: 1 to {MAX_TYPE_LEN} of `A-Z a-z 0-9 _ - . :`",
        text.escape_debug()
    )))
}

/// A filter's keys and values, checked: keys the store can name in a JSON path as they
/// are, values it compares as scalars.
fn check_filter(filter: Map<String, Value>) -> Result<Vec<(String, Value)>, CallError> {
    if filter.len() > MAX_FILTER_KEYS {
        return Err(CallError::invalid_input(format!(
            "the filter has {} keys: at most {MAX_FILTER_KEYS}",
            filter.len()
        )));
    }
    filter
        .into_iter()
        .map(|(key, value)| {
            if !is_attribute_key(&key) {
                return Err(CallError::invalid_input(format!(
                    "`{}` cannot be filtered on: a filter key is 1 to 64 of `A-Z a-z 0-9 _ -`",
                    key.escape_debug()
                )));
            }
            if value.is_object() || value.is_array() {
                return Err(CallError::invalid_input(format!(
                    "the filter's `{key}` is an object or array: filters compare strings, numbers, booleans and null"
                )));
            }
            Ok((key, value))
        })
        .collect()
}

/// A new id: 128 random bits in hex.
fn new_id() -> Result<String, StoreError> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes)
        .map_err(|err| StoreError::Database(format!("no randomness for a new id: {err}")))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// RFC 7386: `patch` merged into `target`.
fn merge_patch(target: &mut Map<String, Value>, patch: Map<String, Value>) {
    for (key, value) in patch {
        match value {
            Value::Null => {
                target.remove(&key);
            }
            Value::Object(patch) => {
                let entry = target
                    .entry(key)
                    .or_insert_with(|| Value::Object(Map::new()));
                if !entry.is_object() {
                    *entry = Value::Object(Map::new());
                }
                let Value::Object(inner) = entry else {
                    unreachable!("made an object above")
                };
                merge_patch(inner, patch);
            }
            value => {
                target.insert(key, value);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn object(value: Value) -> Map<String, Value> {
        value.as_object().unwrap().clone()
    }

    #[test]
    fn merge_patch_follows_rfc_7386() {
        // RFC 7386 §3's example.
        let mut target = object(json!({
            "title": "Goodbye!",
            "author": {"givenName": "John", "familyName": "Doe"},
            "tags": ["example", "sample"],
            "content": "This will be unchanged"
        }));
        merge_patch(
            &mut target,
            object(json!({
                "title": "Hello!",
                "phoneNumber": "+01-123-456-7890",
                "author": {"familyName": null},
                "tags": ["example"]
            })),
        );
        assert_eq!(
            Value::Object(target),
            json!({
                "title": "Hello!",
                "author": {"givenName": "John"},
                "tags": ["example"],
                "content": "This will be unchanged",
                "phoneNumber": "+01-123-456-7890"
            })
        );
    }
}
