//! `create_node` and `get_node` through `OperationEnv`, each against the same SQL a user
//! would run by hand with rusqlite on a database file the store made; and how long a
//! change takes from its write to a `watch`.
//!
//! Run with `cargo bench -p alknet-storage --bench storage`; the ratios are printed at the end.

use std::hint::black_box;
use std::path::Path;
use std::time::{Duration, Instant};

use alknet_runtime::futures::StreamExt;
use alknet_runtime::{Caller, Identity, Json, OperationEnv, ResourceGrant};
use alknet_storage::{
    Attributes, Limits, Node, SqliteStore, StorageClient, StorageProtocol, StorageService,
};
use criterion::{Criterion, criterion_group};
use rusqlite::{Connection, OptionalExtension, TransactionBehavior};
use serde_json::{Map, Value, json};

#[path = "../../../alknet-runtime/benches/support/mod.rs"]
mod support;

const GROUP: &str = "storage";
const GRAPH: &str = "g";
const PROBE: &str = "probe";
/// How many calls the throughput benchmarks keep in flight.
const IN_FLIGHT: usize = 64;

/// The time `calls` take on `runtime`, IN_FLIGHT at a time, each answered without error.
fn in_flight<T, E: std::fmt::Debug>(
    runtime: &tokio::runtime::Runtime,
    calls: impl Iterator<Item = impl Future<Output = Result<T, E>>>,
) -> Duration {
    runtime.block_on(async {
        let start = Instant::now();
        alknet_runtime::futures::stream::iter(calls)
            .buffer_unordered(IN_FLIGHT)
            .for_each(|answer| async move {
                black_box(answer.unwrap());
            })
            .await;
        start.elapsed()
    })
}

fn attributes() -> Map<String, Value> {
    json!({ "name": "Ada", "age": 36, "tags": ["math", "engines"] })
        .as_object()
        .unwrap()
        .clone()
}

/// A connection to a database the store made (so the schema and its triggers are the
/// store's), configured as the store configures its own.
fn raw_connection(path: &Path) -> Connection {
    drop(SqliteStore::open(path, Limits::default()).unwrap());
    let conn = Connection::open(path).unwrap();
    let mode: String = conn
        .query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
    conn.pragma_update(None, "synchronous", "NORMAL").unwrap();
    conn.pragma_update(None, "foreign_keys", true).unwrap();
    conn.execute(
        "INSERT INTO graphs (id, attributes, revision) VALUES (?1, '{}', 1)",
        [GRAPH],
    )
    .unwrap();
    conn
}

/// What `create_node` runs, by hand: in one IMMEDIATE transaction, check the graph, insert
/// the node (the trigger logs the change), read the log's head, commit.
fn raw_create_node(
    conn: &mut Connection,
    graph: &str,
    id: &str,
    node_type: &str,
    attributes: &Map<String, Value>,
) -> rusqlite::Result<u64> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let graph_exists = tx
        .prepare_cached("SELECT 1 FROM graphs WHERE id = ?1")?
        .exists([graph])?;
    assert!(graph_exists, "no graph `{graph}`");
    let text = serde_json::to_string(attributes).unwrap();
    let made = tx
        .prepare_cached(
            "INSERT INTO nodes (graph, id, type, attributes, revision) VALUES (?1, ?2, ?3, ?4, 1) \
             ON CONFLICT DO NOTHING",
        )?
        .execute((graph, id, node_type, &text))?;
    assert_eq!(made, 1, "node `{id}` exists already");
    let head: Option<i64> = tx
        .prepare_cached("SELECT seq FROM sqlite_sequence WHERE name = 'changes'")?
        .query_row([], |row| row.get(0))
        .optional()?;
    tx.commit()?;
    Ok(head.unwrap_or(0) as u64)
}

/// What `get_node` runs, by hand: the row by (graph, id), its attributes parsed.
fn raw_get_node(conn: &Connection, graph: &str, id: &str) -> rusqlite::Result<Node> {
    let (node, text) = conn
        .prepare_cached(
            "SELECT graph, id, type, attributes, revision FROM nodes WHERE graph = ?1 AND id = ?2",
        )?
        .query_row([graph, id], |row| {
            Ok((
                Node {
                    graph: row.get(0)?,
                    id: row.get(1)?,
                    r#type: row.get(2)?,
                    attributes: Json::default(),
                    revision: row.get::<_, i64>(4)? as u64,
                },
                row.get::<_, String>(3)?,
            ))
        })?;
    Ok(Node {
        attributes: Json(serde_json::from_str(&text).unwrap()),
        ..node
    })
}

fn storage(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let env = OperationEnv::builder()
        .local(StorageProtocol::local(
            StorageService::file(&dir.path().join("storage.sqlite3")).unwrap(),
        ))
        .build()
        .unwrap();
    let env = env.with_caller(Caller::new().identity(
        Identity::new("svc:bench").with_resources([ResourceGrant::new("graph", ["read", "write"])]),
    ));
    let client = StorageClient::new(env.clone());
    let attributes = attributes();
    let typed_attributes: Attributes = Json(attributes.clone());
    runtime.block_on(async {
        client
            .create_graph(GRAPH.into(), Default::default())
            .await
            .unwrap();
        client
            .create_node(
                GRAPH.into(),
                Some(PROBE.into()),
                "person".into(),
                typed_attributes.clone(),
            )
            .await
            .unwrap();
    });

    let raw_dir = tempfile::tempdir().unwrap();
    let mut raw = raw_connection(&raw_dir.path().join("raw.sqlite3"));
    raw_create_node(&mut raw, GRAPH, PROBE, "person", &attributes).unwrap();

    // Every created node gets a new id: a counter per benchmark.
    let (mut typed_n, mut json_n, mut raw_n) = (0u64, 0u64, 0u64);
    let mut group = c.benchmark_group(GROUP);
    group.bench_function("create_node_typed", |b| {
        b.to_async(&runtime).iter(|| {
            typed_n += 1;
            let id = format!("t{typed_n}");
            let (client, attributes) = (&client, &typed_attributes);
            async move {
                black_box(
                    client
                        .create_node(
                            GRAPH.into(),
                            Some(id),
                            "person".into(),
                            black_box(attributes).clone(),
                        )
                        .await
                        .unwrap(),
                )
            }
        })
    });
    group.bench_function("create_node_json", |b| {
        b.to_async(&runtime).iter(|| {
            json_n += 1;
            let input = json!({
                "graph": GRAPH,
                "id": format!("j{json_n}"),
                "type": "person",
                "attributes": black_box(&attributes),
            });
            let env = &env;
            async move { black_box(env.invoke("storage", "create_node", input).await) }
        })
    });
    group.bench_function("create_node_raw", |b| {
        b.iter(|| {
            raw_n += 1;
            let id = format!("r{raw_n}");
            black_box(
                raw_create_node(&mut raw, GRAPH, &id, "person", black_box(&attributes)).unwrap(),
            )
        })
    });
    group.bench_function("get_node_typed", |b| {
        b.to_async(&runtime).iter(|| async {
            black_box(
                client
                    .get_node(GRAPH.into(), black_box(PROBE).into())
                    .await
                    .unwrap(),
            )
        })
    });
    group.bench_function("get_node_json", |b| {
        b.to_async(&runtime).iter(|| async {
            let input = json!({ "graph": GRAPH, "id": black_box(PROBE) });
            black_box(env.invoke("storage", "get_node", input).await)
        })
    });
    group.bench_function("get_node_raw", |b| {
        b.iter(|| black_box(raw_get_node(&raw, GRAPH, black_box(PROBE)).unwrap()))
    });

    // Throughput: as many calls as the machine does at once. The service on a runtime with
    // a worker per core, IN_FLIGHT calls at a time; by hand, reads on as many threads as the
    // store has read connections, each thread with its own, in a loop (on this machine's
    // two cores, two such threads read no faster than one, four about three times as fast).
    // Time per call, so the ratio compares like with the ones above.
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    let parallel = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(cores)
        .enable_all()
        .build()
        .unwrap();
    group.bench_function("get_node_typed_in_flight", |b| {
        b.iter_custom(|iters| {
            in_flight(
                &parallel,
                (0..iters).map(|_| client.get_node(GRAPH.into(), black_box(PROBE).into())),
            )
        })
    });
    let mut in_flight_n = 0u64;
    group.bench_function("create_node_typed_in_flight", |b| {
        b.iter_custom(|iters| {
            let first = in_flight_n;
            in_flight_n += iters;
            in_flight(
                &parallel,
                (first..first + iters).map(|n| {
                    client.create_node(
                        GRAPH.into(),
                        Some(format!("f{n}")),
                        "person".into(),
                        black_box(&typed_attributes).clone(),
                    )
                }),
            )
        })
    });
    let readers = Limits::default().readers;
    let mut raw_readers: Vec<Connection> = (0..readers)
        .map(|_| Connection::open(raw_dir.path().join("raw.sqlite3")).unwrap())
        .collect();
    group.bench_function("get_node_raw_threads", |b| {
        b.iter_custom(|iters| {
            let share = iters.div_ceil(readers as u64);
            let start = Instant::now();
            std::thread::scope(|scope| {
                for conn in &mut raw_readers {
                    scope.spawn(move || {
                        for _ in 0..share {
                            black_box(raw_get_node(conn, GRAPH, black_box(PROBE)).unwrap());
                        }
                    });
                }
            });
            start.elapsed()
        })
    });

    // From now on: the changes before this one are not this watch's.
    let mut watch = runtime.block_on(client.watch(GRAPH.into(), None)).unwrap();
    let mut watch_n = 0u64;
    group.bench_function("watch_latency", |b| {
        b.iter_custom(|iters| {
            runtime.block_on(async {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    watch_n += 1;
                    let id = format!("w{watch_n}");
                    let start = Instant::now();
                    client
                        .create_node(
                            GRAPH.into(),
                            Some(id.clone()),
                            "person".into(),
                            typed_attributes.clone(),
                        )
                        .await
                        .unwrap();
                    let change = watch.next().await.expect("the watch goes on").unwrap();
                    total += start.elapsed();
                    assert_eq!(change.id, id);
                }
                total
            })
        })
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().output_directory(&support::output_directory());
    targets = storage
}

fn main() {
    benches();
    Criterion::default().final_summary();
    // The target: at least 0.8x raw rusqlite's throughput, so at most 1.25x its
    // time per call. SQLite takes one writer at a time: raw's best is one connection in a loop.
    let target = Some(("<= 1.25x", 1.25));
    support::report(GROUP, "create_node_typed", "create_node_raw", None);
    support::report(
        GROUP,
        "create_node_typed_in_flight",
        "create_node_raw",
        target,
    );
    support::report(GROUP, "create_node_json", "create_node_raw", None);
    support::report(GROUP, "get_node_typed", "get_node_raw", None);
    support::report(GROUP, "get_node_json", "get_node_raw", None);
    support::report(
        GROUP,
        "get_node_typed_in_flight",
        "get_node_raw_threads",
        target,
    );
    support::report(GROUP, "watch_latency", "create_node_typed", None);
    if let Some(ns) = support::median_ns(GROUP, "watch_latency") {
        println!(
            "{GROUP}: watch_latency median {:.1} µs from a write's start to its change on a watch",
            ns / 1000.0
        );
    }
}
