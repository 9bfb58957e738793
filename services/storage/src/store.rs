//! What the service asks of a database engine: [`Store`], and the errors it answers with.
//! SQLite ([`crate::sqlite::SqliteStore`]) is the one engine; another implements this trait.

use alknet_runtime::config::StorageSettings;

use crate::{Applied, Change, Edge, Graph, LogPosition, Neighbour, Node, Write};

/// A database of graphs, their nodes and edges, and a log of every change to them.
///
/// Calls block: the service runs each on a blocking thread. Every read sees every write
/// that returned before it began. [`Store::write`] is atomic (all of its writes or none) and
/// appends one change per graph, node or edge it touches to the log, with sequence numbers
/// that grow in the order writes commit.
pub trait Store: Send + Sync + 'static {
    /// Whether reads have connections of their own, apart from the writer's: a read then
    /// never waits for a write.
    fn has_readers(&self) -> bool;
    /// One graph.
    fn graph(&self, id: &str) -> Result<Graph, StoreError>;
    /// Graphs by id, after `after`.
    fn graphs(&self, after: Option<&str>, limit: usize) -> Result<Vec<Graph>, StoreError>;
    /// One node.
    fn node(&self, graph: &str, id: &str) -> Result<Node, StoreError>;
    /// Nodes matching `query`, by id, after `after`.
    fn nodes(
        &self,
        query: &NodeQuery<'_>,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Node>, StoreError>;
    /// One edge.
    fn edge(&self, graph: &str, id: &str) -> Result<Edge, StoreError>;
    /// The edges at a node (and the node at each one's other end), by edge id, after
    /// `after`.
    fn neighbours(
        &self,
        query: &NeighbourQuery<'_>,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Neighbour>, StoreError>;
    /// Apply `writes` in one transaction; on an error, none of them.
    fn write(&self, writes: &[Write]) -> Result<Written, StoreError> {
        self.write_each(&[writes])
            .pop()
            .expect("one batch, one result")
    }
    /// Apply each of `batches` as [`write`](Store::write) does, all or nothing, and leave
    /// the other batches be when one fails; a result per batch, in order. What a store can
    /// commit together is here, so that many writers cost fewer commits.
    fn write_each(&self, batches: &[&[Write]]) -> Vec<Result<Written, StoreError>>;
    /// The changes to `graph` after sequence number `after`, oldest first.
    fn changes(&self, graph: &str, after: u64, limit: usize) -> Result<Vec<Change>, StoreError>;
    /// The log's newest sequence number, and the oldest one it still holds.
    fn log(&self) -> Result<LogPosition, StoreError>;
    /// The key that authenticates this database's page cursors: kept with the data, so a
    /// cursor outlives a restart and is refused by another database.
    fn cursor_key(&self) -> &[u8; 32];
    /// Keep exactly the top-level attributes `keys` indexed for `list_nodes` filters: make
    /// the indexes that are missing, drop those no longer named. Each key passed
    /// [`is_attribute_key`].
    fn index_attributes(&self, keys: &[String]) -> Result<(), StoreError>;
}

/// What a [`Store::write`] did: one record per write, and where the log stood after each.
#[derive(Debug)]
pub struct Written {
    /// What each write made, changed or removed.
    pub applied: Vec<Applied>,
    /// The sequence number of each write's last change (each write changes one graph).
    pub seqs: Vec<u64>,
}

impl Written {
    /// The sequence number of the last change the writes logged.
    pub fn head(&self) -> u64 {
        self.seqs.last().copied().unwrap_or(0)
    }
}

/// The limits a store keeps to, from `[storage]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// The largest attributes of one graph, node or edge, as JSON text, in bytes.
    pub max_attributes_bytes: usize,
    /// How many writes one `apply` may hold.
    pub max_writes_per_apply: usize,
    /// How many changes the log keeps.
    pub change_log_keep: u64,
    /// How long a write waits for a database another process holds.
    pub busy_timeout: std::time::Duration,
    /// How many connections serve reads beside the writer.
    pub readers: usize,
    /// How often the service reads the log's head while it writes nothing, so that
    /// changes another process writes to the database reach `watch`.
    pub poll: std::time::Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits::from_settings(&StorageSettings::default())
    }
}

impl Limits {
    /// The limits `settings` give: each one present, the default for each one absent.
    pub fn from_settings(settings: &StorageSettings) -> Self {
        Limits {
            max_attributes_bytes: settings.max_attributes_bytes.map_or(64 * 1024, |n| n.get()),
            max_writes_per_apply: settings.max_writes_per_apply.map_or(1000, |n| n.get()),
            change_log_keep: settings.change_log_keep.map_or(100_000, |n| n.get()),
            busy_timeout: std::time::Duration::from_millis(
                settings.busy_timeout_ms.map_or(5000, |n| n.get()),
            ),
            readers: settings.readers.map_or(4, |n| n.get()),
            poll: std::time::Duration::from_millis(settings.poll_ms.map_or(1000, |n| n.get())),
        }
    }
}

/// Refuse attributes of `id` that are `bytes` long as JSON text, past the limit.
pub fn check_size(id: &str, bytes: usize, limits: &Limits) -> Result<(), StoreError> {
    if bytes <= limits.max_attributes_bytes {
        return Ok(());
    }
    Err(StoreError::TooLarge {
        id: id.to_string(),
        bytes,
        limit: limits.max_attributes_bytes,
    })
}

/// Whether `key` can name a top-level attribute in a filter or an index: 1 to 64 ASCII
/// letters, digits, `_` and `-`, so a store can write it into a JSON path as it is.
pub fn is_attribute_key(key: &str) -> bool {
    !key.is_empty()
        && key.len() <= 64
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-'))
}

/// Which nodes to list.
#[derive(Debug)]
pub struct NodeQuery<'a> {
    /// The graph.
    pub graph: &'a str,
    /// Only nodes of this type.
    pub node_type: Option<&'a str>,
    /// Only nodes whose top-level attribute equals each of these (validated scalars).
    pub filter: &'a [(String, serde_json::Value)],
}

/// Which edges at a node to list.
#[derive(Debug)]
pub struct NeighbourQuery<'a> {
    /// The graph.
    pub graph: &'a str,
    /// The node.
    pub node: &'a str,
    /// Edges from it, to it, or both.
    pub direction: crate::Direction,
    /// Only edges of this type.
    pub edge_type: Option<&'a str>,
}

/// Why a store refused or failed. `entity` is `graph`, `node` or `edge`; `graph` and `id`
/// name what was looked for.
#[allow(missing_docs)]
#[derive(Debug, Clone, PartialEq)]
pub enum StoreError {
    /// No graph with this id.
    GraphNotFound { graph: String },
    /// No node with this id in the graph.
    NodeNotFound { graph: String, id: String },
    /// No edge with this id in the graph.
    EdgeNotFound { graph: String, id: String },
    /// A graph, node or edge with this id exists already.
    AlreadyExists { entity: &'static str, id: String },
    /// The write expected revision `expected`; it is at `current`.
    Conflict {
        entity: &'static str,
        id: String,
        expected: u64,
        current: u64,
    },
    /// Attributes `bytes` long as JSON text, past `limit`.
    TooLarge {
        id: String,
        bytes: usize,
        limit: usize,
    },
    /// The log no longer holds the changes after `after`; it starts at `oldest`.
    Pruned { after: u64, oldest: u64 },
    /// Write `index` (from 0) of several failed with `error`.
    InWrite {
        index: usize,
        error: Box<StoreError>,
    },
    /// The database failed; the message says how.
    Database(String),
    /// `[storage]` asks for what the store cannot do; the message says what.
    Settings(String),
}

impl std::fmt::Display for StoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", crate::store_error(self.clone()).message)
    }
}

impl std::error::Error for StoreError {}
