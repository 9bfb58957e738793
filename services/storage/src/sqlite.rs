//! [`SqliteStore`]: the [`Store`] on SQLite. One writer connection and a few readers over a
//! file in WAL mode (readers never wait for the writer); foreign keys hold edges to their
//! nodes and nodes to their graphs; triggers write the change log, so every change is
//! logged however it came about, a cascade's included.

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, RwLock, TryLockError};

use rusqlite::config::DbConfig;
use rusqlite::types::Value as SqlValue;
use rusqlite::{Connection, OpenFlags, OptionalExtension, Row, TransactionBehavior};
use serde_json::{Map, Value};

use crate::store::{Limits, NeighbourQuery, NodeQuery, Store, StoreError, Written, check_size};
use crate::{
    Action, Applied, Attributes, Change, Deleted, Direction, Edge, Entity, Graph, Json,
    LogPosition, Neighbour, Node, UpdateMode, Write, merge_patch, new_id,
};

/// The schema, one migration per version: version `n` is `MIGRATIONS[n - 1]`. A migration
/// is never changed once released; a change to the schema is a new one.
const MIGRATIONS: &[&str] = &[include_str!("migrations/1.sql")];

impl From<rusqlite::Error> for StoreError {
    fn from(err: rusqlite::Error) -> Self {
        StoreError::Database(err.to_string())
    }
}

/// The [`Store`] on SQLite.
pub struct SqliteStore {
    writer: Mutex<Connection>,
    /// Empty for a database in memory, which only the writer's connection can see.
    readers: Vec<Mutex<Connection>>,
    next_reader: AtomicUsize,
    limits: Limits,
    cursor_key: [u8; 32],
    /// The attributes `index_attributes` keeps indexed.
    indexed: RwLock<Vec<String>>,
}

impl SqliteStore {
    /// The database at `path`, made if it is not there, migrated to this version's schema.
    pub fn open(path: &Path, limits: Limits) -> Result<Self, StoreError> {
        let named =
            |err: rusqlite::Error| StoreError::Database(format!("{}: {err}", path.display()));
        if let Some(dir) = path.parent().filter(|dir| !dir.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|err| StoreError::Database(format!("{}: {err}", dir.display())))?;
        }
        let mut writer = Connection::open(path).map_err(named)?;
        configure(&writer, &limits).map_err(named)?;
        let mode: String = writer
            .query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0))
            .map_err(named)?;
        if mode != "wal" {
            return Err(StoreError::Database(format!(
                "{}: the database cannot use WAL mode (it is in `{mode}` mode)",
                path.display()
            )));
        }
        migrate(&mut writer).map_err(|err| match err {
            StoreError::Database(message) => {
                StoreError::Database(format!("{}: {message}", path.display()))
            }
            other => other,
        })?;
        let readers = (0..limits.readers)
            .map(|_| {
                let reader = Connection::open_with_flags(
                    path,
                    OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
                )?;
                configure(&reader, &limits)?;
                Ok(Mutex::new(reader))
            })
            .collect::<Result<Vec<_>, rusqlite::Error>>()
            .map_err(named)?;
        Self::over(writer, readers, limits)
    }

    /// A database in memory: gone when the store is dropped.
    pub fn in_memory(limits: Limits) -> Result<Self, StoreError> {
        let mut writer = Connection::open_in_memory()?;
        configure(&writer, &limits)?;
        migrate(&mut writer)?;
        Self::over(writer, Vec::new(), limits)
    }

    fn over(
        writer: Connection,
        readers: Vec<Mutex<Connection>>,
        limits: Limits,
    ) -> Result<Self, StoreError> {
        let key: Vec<u8> = writer.query_row(
            "SELECT value FROM meta WHERE key = 'cursor_key'",
            [],
            |row| row.get(0),
        )?;
        let cursor_key = key.try_into().map_err(|_| {
            StoreError::Database("the database's cursor key is not 32 bytes".to_string())
        })?;
        Ok(SqliteStore {
            writer: Mutex::new(writer),
            readers,
            next_reader: AtomicUsize::new(0),
            limits,
            cursor_key,
            indexed: RwLock::default(),
        })
    }

    /// The schema version of the database: the last migration applied.
    pub fn schema_version(&self) -> Result<u32, StoreError> {
        version(&self.writer())
    }

    /// The schema version this build migrates to.
    pub const SCHEMA_VERSION: u32 = MIGRATIONS.len() as u32;

    fn writer(&self) -> MutexGuard<'_, Connection> {
        self.writer
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn indexed(&self) -> std::sync::RwLockReadGuard<'_, Vec<String>> {
        self.indexed
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// A reader's connection: the first free one from this call's turn on, or, when all
    /// are busy, the turn's once it is free; the writer's when there are no readers.
    fn reader(&self) -> MutexGuard<'_, Connection> {
        if self.readers.is_empty() {
            return self.writer();
        }
        let turn = self.next_reader.fetch_add(1, Ordering::Relaxed);
        let count = self.readers.len();
        (0..count)
            .find_map(
                |step| match self.readers[(turn + step) % count].try_lock() {
                    Ok(conn) => Some(conn),
                    Err(TryLockError::Poisoned(poisoned)) => Some(poisoned.into_inner()),
                    Err(TryLockError::WouldBlock) => None,
                },
            )
            .unwrap_or_else(|| {
                self.readers[turn % count]
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner())
            })
    }

    /// One transaction, a savepoint per batch: a batch that fails rolls back to its
    /// savepoint alone. An error here (the commit's, say) is every batch's.
    fn commit_each(
        &self,
        conn: &mut Connection,
        batches: &[&[Write]],
    ) -> Result<Vec<Result<Written, StoreError>>, StoreError> {
        let mut tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut results = Vec::with_capacity(batches.len());
        let mut head = None;
        for writes in batches {
            let savepoint = tx.savepoint()?;
            match apply_all(&savepoint, writes, &self.limits) {
                Ok(written) => {
                    savepoint.commit()?;
                    head = Some(written.head());
                    results.push(Ok(written));
                }
                // Dropping the savepoint rolls it back.
                Err(err) => results.push(Err(err)),
            }
        }
        if let Some(head) = head {
            prune(&tx, head, self.limits.change_log_keep)?;
        }
        tx.commit()?;
        Ok(results)
    }
}

/// The SQL of a node listing and its parameters. A filter names its attribute in a literal
/// JSON path, the expression `index_attributes` indexes; a listing that filters on an
/// `indexed` attribute reads by that index (without being told, SQLite walks the graph's
/// nodes by id, which spares it a sort but reads every node).
fn node_query(
    query: &NodeQuery<'_>,
    indexed: &[String],
    after: Option<&str>,
    limit: usize,
) -> Result<(String, Vec<SqlValue>), StoreError> {
    let mut sql = String::from("SELECT graph, id, type, attributes, revision FROM nodes");
    if let Some((key, _)) = query.filter.iter().find(|(key, _)| indexed.contains(key)) {
        sql.push_str(&format!(" INDEXED BY \"{ATTRIBUTE_INDEX}{key}\""));
    }
    sql.push_str(" WHERE graph = ?1 AND id > ?2");
    let mut params = vec![
        SqlValue::Text(query.graph.to_string()),
        SqlValue::Text(after.unwrap_or("").to_string()),
    ];
    if let Some(node_type) = query.node_type {
        params.push(SqlValue::Text(node_type.to_string()));
        sql.push_str(&format!(" AND type = ?{}", params.len()));
    }
    for (key, value) in query.filter {
        let path = attribute_path(key);
        let (json_type, bound) = match value {
            Value::Null => ("'null'", None),
            Value::Bool(true) => ("'true'", None),
            Value::Bool(false) => ("'false'", None),
            Value::Number(n) if n.is_f64() => (
                "'real'",
                Some(SqlValue::Real(n.as_f64().unwrap_or(f64::NAN))),
            ),
            Value::Number(n) => match n.as_i64() {
                Some(i) => ("'integer'", Some(SqlValue::Integer(i))),
                // Above i64: SQLite holds it as a real.
                None => (
                    "'real'",
                    Some(SqlValue::Real(n.as_f64().unwrap_or(f64::NAN))),
                ),
            },
            Value::String(s) => ("'text'", Some(SqlValue::Text(s.clone()))),
            Value::Array(_) | Value::Object(_) => {
                return Err(StoreError::Database(format!(
                    "the filter's `{key}` is not a scalar"
                )));
            }
        };
        sql.push_str(&format!(" AND json_type(attributes, {path}) = {json_type}"));
        if let Some(bound) = bound {
            params.push(bound);
            sql.push_str(&format!(
                " AND json_extract(attributes, {path}) = ?{}",
                params.len()
            ));
        }
    }
    params.push(SqlValue::Integer(limit as i64));
    sql.push_str(&format!(" ORDER BY id LIMIT ?{}", params.len()));
    Ok((sql, params))
}

/// What every connection sets: foreign keys enforced, a busy timeout, a stable query plan,
/// and the statement cache sized for this store's queries.
fn configure(conn: &Connection, limits: &Limits) -> rusqlite::Result<()> {
    conn.busy_timeout(limits.busy_timeout)?;
    conn.pragma_update(None, "foreign_keys", true)?;
    // Without it SQLite prepares a cached statement again each time its parameters are
    // bound when they might change the plan (an `ORDER BY` with a bound `WHERE`: the
    // listings and the change log), which costs more than the query.
    conn.set_db_config(DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG, true)?;
    // A commit waits for the WAL to reach the OS, not the disk: a write acknowledged
    // survives the process being killed; the last ones may not survive a power cut.
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.set_prepared_statement_cache_capacity(32);
    Ok(())
}

fn version(conn: &Connection) -> Result<u32, StoreError> {
    let table: Option<String> = conn
        .query_row(
            "SELECT name FROM sqlite_schema WHERE type = 'table' AND name = 'schema_migrations'",
            [],
            |row| row.get(0),
        )
        .optional()?;
    if table.is_none() {
        return Ok(0);
    }
    Ok(conn.query_row(
        "SELECT COALESCE(MAX(version), 0) FROM schema_migrations",
        [],
        |row| row.get(0),
    )?)
}

/// Bring the database to [`SqliteStore::SCHEMA_VERSION`], one migration per transaction.
fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    let at = version(conn)?;
    if at > SqliteStore::SCHEMA_VERSION {
        return Err(StoreError::Database(format!(
            "the database is at schema version {at}, newer than this build's {}: open it with the alknet that wrote it, or a newer one",
            SqliteStore::SCHEMA_VERSION
        )));
    }
    for (index, migration) in MIGRATIONS.iter().enumerate().skip(at as usize) {
        let to = index as u32 + 1;
        let tx = conn.transaction_with_behavior(TransactionBehavior::Exclusive)?;
        tx.execute_batch(migration).map_err(|err| {
            StoreError::Database(format!("migration to schema version {to}: {err}"))
        })?;
        tx.execute(
            "INSERT INTO schema_migrations (version, applied_at) VALUES (?1, unixepoch())",
            [to],
        )?;
        tx.commit()?;
        tracing::info!(target: "alknet::storage", version = to, "migrated the database");
    }
    Ok(())
}

impl Store for SqliteStore {
    fn has_readers(&self) -> bool {
        !self.readers.is_empty()
    }

    fn graph(&self, id: &str) -> Result<Graph, StoreError> {
        graph(&self.reader(), id)?.ok_or_else(|| StoreError::GraphNotFound {
            graph: id.to_string(),
        })
    }

    fn graphs(&self, after: Option<&str>, limit: usize) -> Result<Vec<Graph>, StoreError> {
        let conn = self.reader();
        let mut statement = conn.prepare_cached(
            "SELECT id, attributes, revision FROM graphs WHERE id > ?1 ORDER BY id LIMIT ?2",
        )?;
        let rows = statement
            .query_map((after.unwrap_or(""), limit as i64), graph_row)?
            .collect::<Result<Vec<_>, _>>()?;
        rows.into_iter().map(|row| row.parse()).collect()
    }

    fn node(&self, graph: &str, id: &str) -> Result<Node, StoreError> {
        node(&self.reader(), graph, id)?.ok_or_else(|| StoreError::NodeNotFound {
            graph: graph.to_string(),
            id: id.to_string(),
        })
    }

    fn nodes(
        &self,
        query: &NodeQuery<'_>,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Node>, StoreError> {
        let (sql, params) = node_query(query, &self.indexed(), after, limit)?;
        let conn = self.reader();
        let rows = conn
            .prepare_cached(&sql)?
            .query_map(rusqlite::params_from_iter(params), node_row)?
            .collect::<Result<Vec<_>, _>>()?;
        if rows.is_empty() && graph(&conn, query.graph)?.is_none() {
            return Err(StoreError::GraphNotFound {
                graph: query.graph.to_string(),
            });
        }
        rows.into_iter().map(|row| row.parse()).collect()
    }

    fn edge(&self, graph: &str, id: &str) -> Result<Edge, StoreError> {
        edge(&self.reader(), graph, id)?.ok_or_else(|| StoreError::EdgeNotFound {
            graph: graph.to_string(),
            id: id.to_string(),
        })
    }

    fn neighbours(
        &self,
        query: &NeighbourQuery<'_>,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Neighbour>, StoreError> {
        let (at, other) = match query.direction {
            Direction::Outgoing => ("e.source = ?2", "e.target"),
            Direction::Incoming => ("e.target = ?2", "e.source"),
            Direction::Both => (
                "(e.source = ?2 OR e.target = ?2)",
                "CASE WHEN e.source = ?2 THEN e.target ELSE e.source END",
            ),
        };
        let sql = format!(
            "SELECT e.graph, e.id, e.type, e.source, e.target, e.attributes, e.revision, \
                    n.graph, n.id, n.type, n.attributes, n.revision \
             FROM edges e JOIN nodes n ON n.graph = e.graph AND n.id = {other} \
             WHERE e.graph = ?1 AND {at} AND e.id > ?3 AND (?4 IS NULL OR e.type = ?4) \
             ORDER BY e.id LIMIT ?5"
        );
        let conn = self.reader();
        let rows = conn
            .prepare_cached(&sql)?
            .query_map(
                (
                    query.graph,
                    query.node,
                    after.unwrap_or(""),
                    query.edge_type,
                    limit as i64,
                ),
                |row| Ok((edge_row(row)?, node_row_at(row, 7)?)),
            )?
            .collect::<Result<Vec<_>, _>>()?;
        if rows.is_empty() && node(&conn, query.graph, query.node)?.is_none() {
            return Err(StoreError::NodeNotFound {
                graph: query.graph.to_string(),
                id: query.node.to_string(),
            });
        }
        rows.into_iter()
            .map(|(edge, node)| {
                Ok(Neighbour {
                    edge: edge.parse()?,
                    node: node.parse()?,
                })
            })
            .collect()
    }

    fn write_each(&self, batches: &[&[Write]]) -> Vec<Result<Written, StoreError>> {
        let mut conn = self.writer();
        self.commit_each(&mut conn, batches)
            .unwrap_or_else(|err| batches.iter().map(|_| Err(err.clone())).collect())
    }

    fn changes(&self, graph: &str, after: u64, limit: usize) -> Result<Vec<Change>, StoreError> {
        let mut conn = self.reader();
        // One snapshot for both reads: the log cannot be pruned between them.
        let tx = conn.transaction()?;
        let pruned = pruned_through(&tx)?;
        if after < pruned {
            return Err(StoreError::Pruned {
                after,
                oldest: pruned + 1,
            });
        }
        let rows = tx
            .prepare_cached(
                "SELECT seq, graph, entity, action, id, revision, record FROM changes \
                 WHERE graph = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3",
            )?
            .query_map((graph, after as i64, limit as i64), |row| {
                Ok((
                    row.get::<_, i64>(0)?,
                    row.get::<_, String>(1)?,
                    row.get::<_, String>(2)?,
                    row.get::<_, String>(3)?,
                    row.get::<_, String>(4)?,
                    row.get::<_, i64>(5)?,
                    row.get::<_, Option<String>>(6)?,
                ))
            })?
            .collect::<Result<Vec<_>, _>>()?;
        drop(tx);
        rows.into_iter()
            .map(|(seq, graph, entity, action, id, revision, record)| {
                Ok(Change {
                    seq: seq as u64,
                    graph,
                    entity: match entity.as_str() {
                        "graph" => Entity::Graph,
                        "node" => Entity::Node,
                        "edge" => Entity::Edge,
                        other => return Err(corrupt(format!("a change to a `{other}`"))),
                    },
                    action: match action.as_str() {
                        "created" => Action::Created,
                        "updated" => Action::Updated,
                        "deleted" => Action::Deleted,
                        other => return Err(corrupt(format!("a change that `{other}`"))),
                    },
                    id,
                    revision: revision as u64,
                    record: record
                        .map(|text| serde_json::from_str(&text).map(Json))
                        .transpose()
                        .map_err(|err| corrupt(format!("a change's record: {err}")))?,
                })
            })
            .collect()
    }

    fn log(&self) -> Result<LogPosition, StoreError> {
        let mut conn = self.reader();
        let tx = conn.transaction()?;
        Ok(LogPosition {
            head: head(&tx)?,
            oldest: pruned_through(&tx)? + 1,
        })
    }

    fn cursor_key(&self) -> &[u8; 32] {
        &self.cursor_key
    }

    fn index_attributes(&self, keys: &[String]) -> Result<(), StoreError> {
        let mut conn = self.writer();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let existing = tx
            .prepare("SELECT name FROM sqlite_schema WHERE type = 'index'")?
            .query_map([], |row| row.get::<_, String>(0))?
            .collect::<Result<Vec<_>, _>>()?;
        for name in &existing {
            let Some(key) = name.strip_prefix(ATTRIBUTE_INDEX) else {
                continue;
            };
            if !keys.iter().any(|kept| kept == key) {
                tx.execute_batch(&format!("DROP INDEX \"{name}\""))?;
            }
        }
        for key in keys {
            // The same expression as `node_query`'s filter: only then can SQLite use it.
            tx.execute_batch(&format!(
                "CREATE INDEX IF NOT EXISTS \"{ATTRIBUTE_INDEX}{key}\" \
                 ON nodes (graph, json_extract(attributes, {}), type, id)",
                attribute_path(key)
            ))?;
        }
        tx.commit()?;
        *self
            .indexed
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = keys.to_vec();
        Ok(())
    }
}

/// The prefix of the indexes `index_attributes` keeps; the attribute's key follows it.
const ATTRIBUTE_INDEX: &str = "nodes_by_attribute:";

/// A top-level attribute's JSON path, as an SQL literal. The key passed
/// [`is_attribute_key`](crate::is_attribute_key), so it needs no escaping.
fn attribute_path(key: &str) -> String {
    format!("'$.\"{key}\"'")
}

/// The newest change's sequence number: AUTOINCREMENT's counter, which pruning leaves be.
fn head(conn: &Connection) -> Result<u64, StoreError> {
    let seq: Option<i64> = conn
        .prepare_cached("SELECT seq FROM sqlite_sequence WHERE name = 'changes'")?
        .query_row([], |row| row.get(0))
        .optional()?;
    Ok(seq.unwrap_or(0) as u64)
}

/// The last sequence number the log dropped (0: none).
fn pruned_through(conn: &Connection) -> Result<u64, StoreError> {
    let through: i64 = conn
        .prepare_cached("SELECT value FROM meta WHERE key = 'pruned_through'")?
        .query_row([], |row| row.get(0))?;
    Ok(through as u64)
}

/// Drop the changes older than the `keep` newest.
fn prune(tx: &Connection, head: u64, keep: u64) -> Result<(), StoreError> {
    let through = head.saturating_sub(keep);
    if through > pruned_through(tx)? {
        tx.prepare_cached("DELETE FROM changes WHERE seq <= ?1")?
            .execute([through as i64])?;
        tx.prepare_cached("UPDATE meta SET value = ?1 WHERE key = 'pruned_through'")?
            .execute([through as i64])?;
    }
    Ok(())
}

/// `writes` in order, each error named by its write's place when there are several.
fn apply_all(tx: &Connection, writes: &[Write], limits: &Limits) -> Result<Written, StoreError> {
    let mut written = Written {
        applied: Vec::with_capacity(writes.len()),
        seqs: Vec::with_capacity(writes.len()),
    };
    for (index, write) in writes.iter().enumerate() {
        let applied = apply(tx, write, limits).map_err(|error| match writes.len() {
            1 => error,
            _ => StoreError::InWrite {
                index,
                error: Box::new(error),
            },
        })?;
        written.applied.push(applied);
        written.seqs.push(head(tx)?);
    }
    Ok(written)
}

fn apply(tx: &Connection, write: &Write, limits: &Limits) -> Result<Applied, StoreError> {
    match write {
        Write::CreateGraph(w) => {
            let attributes = encode(&w.graph, &w.attributes, limits)?;
            let made = tx
                .prepare_cached(
                    "INSERT INTO graphs (id, attributes, revision) VALUES (?1, ?2, 1) ON CONFLICT DO NOTHING",
                )?
                .execute((&w.graph, &attributes))?;
            if made == 0 {
                return Err(StoreError::AlreadyExists {
                    entity: "graph",
                    id: w.graph.clone(),
                });
            }
            Ok(Applied::Graph(Graph {
                id: w.graph.clone(),
                attributes: w.attributes.clone(),
                revision: 1,
            }))
        }
        Write::DeleteGraph(w) => {
            let found = graph(tx, &w.graph)?.ok_or_else(|| StoreError::GraphNotFound {
                graph: w.graph.clone(),
            })?;
            expect_revision("graph", &w.graph, w.if_revision, found.revision)?;
            let (nodes, edges): (i64, i64) = tx
                .prepare_cached(
                    "SELECT (SELECT count(*) FROM nodes WHERE graph = ?1), \
                            (SELECT count(*) FROM edges WHERE graph = ?1)",
                )?
                .query_row([&w.graph], |row| Ok((row.get(0)?, row.get(1)?)))?;
            tx.prepare_cached("DELETE FROM graphs WHERE id = ?1")?
                .execute([&w.graph])?;
            Ok(Applied::Deleted(Deleted {
                id: w.graph.clone(),
                revision: found.revision,
                nodes: nodes as u64,
                edges: edges as u64,
            }))
        }
        Write::CreateNode(w) => {
            if graph(tx, &w.graph)?.is_none() {
                return Err(StoreError::GraphNotFound {
                    graph: w.graph.clone(),
                });
            }
            let id = match &w.id {
                Some(id) => id.clone(),
                None => new_id()?,
            };
            let attributes = encode(&id, &w.attributes, limits)?;
            let made = tx
                .prepare_cached(
                    "INSERT INTO nodes (graph, id, type, attributes, revision) VALUES (?1, ?2, ?3, ?4, 1) \
                     ON CONFLICT DO NOTHING",
                )?
                .execute((&w.graph, &id, &w.r#type, &attributes))?;
            if made == 0 {
                return Err(StoreError::AlreadyExists { entity: "node", id });
            }
            Ok(Applied::Node(Node {
                graph: w.graph.clone(),
                id,
                r#type: w.r#type.clone(),
                attributes: w.attributes.clone(),
                revision: 1,
            }))
        }
        Write::UpdateNode(w) => {
            let mut found = node(tx, &w.graph, &w.id)?.ok_or_else(|| StoreError::NodeNotFound {
                graph: w.graph.clone(),
                id: w.id.clone(),
            })?;
            expect_revision("node", &w.id, w.if_revision, found.revision)?;
            match w.mode {
                UpdateMode::Replace => found.attributes = w.attributes.clone(),
                UpdateMode::Merge => merge_patch(&mut found.attributes.0, w.attributes.0.clone()),
            }
            let attributes = encode(&w.id, &found.attributes, limits)?;
            tx.prepare_cached(
                "UPDATE nodes SET attributes = ?3, revision = revision + 1 WHERE graph = ?1 AND id = ?2",
            )?
            .execute((&w.graph, &w.id, &attributes))?;
            found.revision += 1;
            Ok(Applied::Node(found))
        }
        Write::DeleteNode(w) => {
            let found = node(tx, &w.graph, &w.id)?.ok_or_else(|| StoreError::NodeNotFound {
                graph: w.graph.clone(),
                id: w.id.clone(),
            })?;
            expect_revision("node", &w.id, w.if_revision, found.revision)?;
            let edges: i64 = tx
                .prepare_cached(
                    "SELECT count(*) FROM edges WHERE graph = ?1 AND (source = ?2 OR target = ?2)",
                )?
                .query_row((&w.graph, &w.id), |row| row.get(0))?;
            tx.prepare_cached("DELETE FROM nodes WHERE graph = ?1 AND id = ?2")?
                .execute((&w.graph, &w.id))?;
            Ok(Applied::Deleted(Deleted {
                id: w.id.clone(),
                revision: found.revision,
                nodes: 0,
                edges: edges as u64,
            }))
        }
        Write::CreateEdge(w) => {
            if graph(tx, &w.graph)?.is_none() {
                return Err(StoreError::GraphNotFound {
                    graph: w.graph.clone(),
                });
            }
            for end in [&w.from, &w.to] {
                if !node_exists(tx, &w.graph, end)? {
                    return Err(StoreError::NodeNotFound {
                        graph: w.graph.clone(),
                        id: end.clone(),
                    });
                }
            }
            let id = match &w.id {
                Some(id) => id.clone(),
                None => new_id()?,
            };
            let attributes = encode(&id, &w.attributes, limits)?;
            let made = tx
                .prepare_cached(
                    "INSERT INTO edges (graph, id, type, source, target, attributes, revision) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, 1) ON CONFLICT DO NOTHING",
                )?
                .execute((&w.graph, &id, &w.r#type, &w.from, &w.to, &attributes))?;
            if made == 0 {
                return Err(StoreError::AlreadyExists { entity: "edge", id });
            }
            Ok(Applied::Edge(Edge {
                graph: w.graph.clone(),
                id,
                r#type: w.r#type.clone(),
                from: w.from.clone(),
                to: w.to.clone(),
                attributes: w.attributes.clone(),
                revision: 1,
            }))
        }
        Write::DeleteEdge(w) => {
            let found = edge(tx, &w.graph, &w.id)?.ok_or_else(|| StoreError::EdgeNotFound {
                graph: w.graph.clone(),
                id: w.id.clone(),
            })?;
            expect_revision("edge", &w.id, w.if_revision, found.revision)?;
            tx.prepare_cached("DELETE FROM edges WHERE graph = ?1 AND id = ?2")?
                .execute((&w.graph, &w.id))?;
            Ok(Applied::Deleted(Deleted {
                id: w.id.clone(),
                revision: found.revision,
                nodes: 0,
                edges: 0,
            }))
        }
    }
}

fn expect_revision(
    entity: &'static str,
    id: &str,
    expected: Option<u64>,
    current: u64,
) -> Result<(), StoreError> {
    match expected {
        Some(expected) if expected != current => Err(StoreError::Conflict {
            entity,
            id: id.to_string(),
            expected,
            current,
        }),
        _ => Ok(()),
    }
}

/// Attributes as the JSON text the database keeps, within the limit.
fn encode(id: &str, attributes: &Attributes, limits: &Limits) -> Result<String, StoreError> {
    let text = serde_json::to_string(&attributes.0)
        .map_err(|err| StoreError::Database(format!("encode attributes: {err}")))?;
    check_size(id, text.len(), limits)?;
    Ok(text)
}

fn corrupt(what: String) -> StoreError {
    StoreError::Database(format!(
        "the database holds {what}, which this build cannot read"
    ))
}

/// A row, before its attributes are parsed (which `query_map`'s closure cannot fail with).
struct Unparsed<T> {
    record: T,
    attributes: String,
}

impl<T: WithAttributes> Unparsed<T> {
    fn parse(mut self) -> Result<T, StoreError> {
        let attributes: Map<String, Value> = serde_json::from_str(&self.attributes)
            .map_err(|err| corrupt(format!("attributes that are not a JSON object ({err})")))?;
        *self.record.attributes() = Json(attributes);
        Ok(self.record)
    }
}

trait WithAttributes {
    fn attributes(&mut self) -> &mut Attributes;
}

impl WithAttributes for Graph {
    fn attributes(&mut self) -> &mut Attributes {
        &mut self.attributes
    }
}

impl WithAttributes for Node {
    fn attributes(&mut self) -> &mut Attributes {
        &mut self.attributes
    }
}

impl WithAttributes for Edge {
    fn attributes(&mut self) -> &mut Attributes {
        &mut self.attributes
    }
}

fn graph_row(row: &Row<'_>) -> rusqlite::Result<Unparsed<Graph>> {
    Ok(Unparsed {
        record: Graph {
            id: row.get(0)?,
            attributes: Json::default(),
            revision: row.get::<_, i64>(2)? as u64,
        },
        attributes: row.get(1)?,
    })
}

fn node_row(row: &Row<'_>) -> rusqlite::Result<Unparsed<Node>> {
    node_row_at(row, 0)
}

/// A node from the five columns of `row` from `at`: graph, id, type, attributes, revision.
fn node_row_at(row: &Row<'_>, at: usize) -> rusqlite::Result<Unparsed<Node>> {
    Ok(Unparsed {
        record: Node {
            graph: row.get(at)?,
            id: row.get(at + 1)?,
            r#type: row.get(at + 2)?,
            attributes: Json::default(),
            revision: row.get::<_, i64>(at + 4)? as u64,
        },
        attributes: row.get(at + 3)?,
    })
}

fn edge_row(row: &Row<'_>) -> rusqlite::Result<Unparsed<Edge>> {
    Ok(Unparsed {
        record: Edge {
            graph: row.get(0)?,
            id: row.get(1)?,
            r#type: row.get(2)?,
            from: row.get(3)?,
            to: row.get(4)?,
            attributes: Json::default(),
            revision: row.get::<_, i64>(6)? as u64,
        },
        attributes: row.get(5)?,
    })
}

fn graph(conn: &Connection, id: &str) -> Result<Option<Graph>, StoreError> {
    conn.prepare_cached("SELECT id, attributes, revision FROM graphs WHERE id = ?1")?
        .query_row([id], graph_row)
        .optional()?
        .map(Unparsed::parse)
        .transpose()
}

fn node(conn: &Connection, graph: &str, id: &str) -> Result<Option<Node>, StoreError> {
    conn.prepare_cached(
        "SELECT graph, id, type, attributes, revision FROM nodes WHERE graph = ?1 AND id = ?2",
    )?
    .query_row([graph, id], node_row)
    .optional()?
    .map(Unparsed::parse)
    .transpose()
}

fn node_exists(conn: &Connection, graph: &str, id: &str) -> Result<bool, StoreError> {
    Ok(conn
        .prepare_cached("SELECT 1 FROM nodes WHERE graph = ?1 AND id = ?2")?
        .exists([graph, id])?)
}

fn edge(conn: &Connection, graph: &str, id: &str) -> Result<Option<Edge>, StoreError> {
    conn.prepare_cached(
        "SELECT graph, id, type, source, target, attributes, revision FROM edges \
         WHERE graph = ?1 AND id = ?2",
    )?
    .query_row([graph, id], edge_row)
    .optional()?
    .map(Unparsed::parse)
    .transpose()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// The plan SQLite makes for a listing, its steps joined.
    fn plan(store: &SqliteStore, query: &NodeQuery<'_>) -> String {
        let (sql, params) = node_query(query, &store.indexed(), None, 100).unwrap();
        let conn = store.reader();
        let mut statement = conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
        let steps = statement
            .query_map(rusqlite::params_from_iter(params), |row| {
                row.get::<_, String>(3)
            })
            .unwrap()
            .collect::<Result<Vec<_>, _>>()
            .unwrap();
        steps.join("; ")
    }

    #[test]
    fn an_indexed_attribute_serves_its_filter_with_or_without_a_type() {
        let store = SqliteStore::in_memory(Limits::default()).unwrap();
        let filter = [("email".to_string(), json!("ada@example.com"))];
        let untyped = NodeQuery {
            graph: "g",
            node_type: None,
            filter: &filter,
        };
        let typed = NodeQuery {
            node_type: Some("person"),
            ..untyped
        };
        for query in [&untyped, &typed] {
            let plan = plan(&store, query);
            assert!(!plan.contains(ATTRIBUTE_INDEX), "{plan}");
        }

        store
            .index_attributes(&["email".to_string(), "age".to_string()])
            .unwrap();
        let untyped_plan = plan(&store, &untyped);
        assert!(
            untyped_plan.contains("USING INDEX nodes_by_attribute:email (graph=? AND <expr>=?)"),
            "{untyped_plan}"
        );
        // With the type, the index gives the nodes in id order: no sort.
        let typed_plan = plan(&store, &typed);
        assert_eq!(
            typed_plan,
            "SEARCH nodes USING INDEX nodes_by_attribute:email \
             (graph=? AND <expr>=? AND type=? AND id>?)"
        );

        store.index_attributes(&["age".to_string()]).unwrap();
        for query in [&untyped, &typed] {
            let plan = plan(&store, query);
            assert!(!plan.contains(ATTRIBUTE_INDEX), "{plan}");
        }
        let numeric = [("age".to_string(), json!(36))];
        let plan = plan(
            &store,
            &NodeQuery {
                filter: &numeric,
                ..untyped
            },
        );
        assert!(
            plan.contains("USING INDEX nodes_by_attribute:age (graph=? AND <expr>=?"),
            "{plan}"
        );
    }

    fn create_node(id: &str) -> Write {
        Write::CreateNode(crate::CreateNode {
            graph: "g".into(),
            id: Some(id.into()),
            r#type: "person".into(),
            attributes: Default::default(),
        })
    }

    #[test]
    fn a_batch_that_fails_among_others_committed_together_leaves_no_trace_and_theirs_commit() {
        let store = SqliteStore::in_memory(Limits::default()).unwrap();
        store
            .write(&[Write::CreateGraph(crate::CreateGraph {
                graph: "g".into(),
                attributes: Default::default(),
            })])
            .unwrap();
        let first = [create_node("a")];
        // Its second write fails: `a` exists by then.
        let failing = [create_node("b"), create_node("a")];
        let last = [create_node("c")];
        let results = store.write_each(&[&first, &failing, &last]);

        let first = results[0].as_ref().unwrap();
        assert!(matches!(
            &results[1],
            Err(StoreError::InWrite { index: 1, error })
                if matches!(**error, StoreError::AlreadyExists { entity: "node", .. })
        ));
        let last = results[2].as_ref().unwrap();
        // The failed batch's change was rolled back with its sequence number.
        assert_eq!(last.seqs, [first.head() + 1]);
        assert!(matches!(
            store.node("g", "b"),
            Err(StoreError::NodeNotFound { .. })
        ));
        for id in ["a", "c"] {
            store.node("g", id).unwrap();
        }
        let logged: Vec<String> = store
            .changes("g", 1, 10)
            .unwrap()
            .into_iter()
            .map(|change| change.id)
            .collect();
        assert_eq!(logged, ["a", "c"]);
    }
}
